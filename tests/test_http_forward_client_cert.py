"""
forwardClientCert end to end: a TLS server with client certificates, the
x-forwarded-client-cert header built from the verified certificate, and
inbound values always removed.
"""

from __future__ import annotations

import hashlib
import shutil
import ssl
import tempfile

from cryptography.hazmat.primitives import serialization
from twisted.internet import defer
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from linkerpy.tls.testing import newCA, writeCA, writeLeaf
from tests.support import httpGet, routerPort, startLinker, startOrigin


class ForwardClientCertTests(TestCase):
    """
    x-forwarded-client-cert.
    """

    timeout = 60

    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.ca = newCA()
        self.caPath = writeCA(self.ca, f"{self.dir}/ca.pem")
        self.server = writeLeaf(self.dir, "server", self.ca, "localhost", "127.0.0.1")
        self.client = writeLeaf(self.dir, "client", self.ca, "client.example.com", commonName="web")

    def config(self, origin, forward: bool):
        return {
            "admin": {"port": 0},
            "routers": [
                {
                    "protocol": "http",
                    "dtab": f"/svc=>/$/inet/127.0.0.1/{origin.portNumber}",
                    "servers": [
                        {
                            "port": 0,
                            "tls": {
                                "certPath": self.server.cert,
                                "keyPath": self.server.key,
                                "caCertPath": self.caPath,
                                "requireClientAuth": True,
                            },
                        }
                    ],
                    "client": {"kind": "io.l5d.global", "forwardClientCert": forward},
                }
            ],
        }

    def request(self, port: int, extra: bytes = b""):
        def go():
            context = ssl.create_default_context(cafile=self.caPath)
            context.load_cert_chain(self.client.cert, self.client.key)
            import socket

            with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as s:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n" + extra + b"\r\n")
                    data = b""
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            return data
                        data += chunk

        return deferToThread(go)

    @defer.inlineCallbacks
    def test_forwarded(self):
        """
        With forwardClientCert the origin gets Hash, DNS names and Subject of the client certificate, never the client's own value.
        """
        origin = startOrigin(self, "ok")
        linker = startLinker(self, self.config(origin, True))
        raw = yield self.request(routerPort(linker), b"x-forwarded-client-cert: Hash=forged\r\n")
        self.assertTrue(raw.startswith(b"HTTP/1.1 200"), raw)
        [value] = origin.requests[0].headers[b"x-forwarded-client-cert"]
        der = self.client.certificate.public_bytes(serialization.Encoding.DER)
        self.assertTrue(value.startswith(b"Hash=" + hashlib.sha256(der).hexdigest().upper().encode()), value)
        self.assertIn(b"DNS=client.example.com", value)
        self.assertIn(b'Subject="CN=web', value)
        self.assertNotIn(b"forged", value)

    @defer.inlineCallbacks
    def test_removedWhenDisabled(self):
        """
        Without forwardClientCert an inbound x-forwarded-client-cert is removed.
        """
        origin = startOrigin(self, "ok")
        linker = startLinker(self, self.config(origin, False))
        raw = yield self.request(routerPort(linker), b"x-forwarded-client-cert: Hash=forged\r\n")
        self.assertTrue(raw.startswith(b"HTTP/1.1 200"), raw)
        self.assertNotIn(b"x-forwarded-client-cert", origin.requests[0].headers)

    @defer.inlineCallbacks
    def test_plaintextRemoved(self):
        """
        On a plaintext server an inbound x-forwarded-client-cert is removed too.
        """
        origin = startOrigin(self, "ok")
        linker = startLinker(
            self,
            {
                "admin": {"port": 0},
                "routers": [{"protocol": "http", "dtab": f"/svc=>/$/inet/127.0.0.1/{origin.portNumber}", "servers": [{"port": 0}], "client": {"kind": "io.l5d.global", "forwardClientCert": True}}],
            },
        )
        yield httpGet(f"http://127.0.0.1:{routerPort(linker)}/", headers={"Host": "web", "x-forwarded-client-cert": "Hash=forged"})
        self.assertNotIn(b"x-forwarded-client-cert", origin.requests[0].headers)


class ClientTLSFilesTests(TestCase):
    """
    Client TLS files are read when the router is built.
    """

    def test_missingTrustFile(self):
        """
        A client.tls trustCerts file that does not exist is a ConfigError naming its key path, before any port opens.
        """
        from linkerpy.config.errors import ConfigError
        from linkerpy.config.load import loadText
        from linkerpy.config.model import parseLinkerConfig
        from linkerpy.linker import Linker
        from linkerpy.plugins.registry import defaultRegistry
        from twisted.internet.testing import MemoryReactorClock

        text = (
            "admin: {port: 0}\nrouters:\n- protocol: http\n  servers: [{port: 0}]\n"
            "  client:\n    kind: io.l5d.static\n    configs:\n    - prefix: /$/inet/{host}/*\n"
            "      tls: {commonName: '{host}', trustCerts: [/nonexistent/ca.pem]}\n"
        )
        config = parseLinkerConfig(loadText(text), defaultRegistry())
        with self.assertRaises(ConfigError) as ctx:
            Linker(config, defaultRegistry(), MemoryReactorClock())
        self.assertIn("routers[0].client.configs[0].tls", str(ctx.exception))
        self.assertIn("/nonexistent/ca.pem", str(ctx.exception))
