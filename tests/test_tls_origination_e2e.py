"""
End-to-end tests of TLS origination by the HTTP router (C{client.tls}), run
as C{twistd -n linkerpy} with curl as the client and TLS origins in the
test process: the right name (200), a wrong name, an untrusted CA, and an
origin that requires a client certificate (with and without one).
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Tuple
from urllib.parse import unquote

from twisted.internet import defer, reactor, utils
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.support import TwistdProcess
from tests.test_tcp_e2e import requireTool
from tests.test_tcp_support import tempdir

TIMEOUT = 600


class Answer(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"text/plain")
        peer = request.transport.getPeerCertificate() if hasattr(request.transport, "getPeerCertificate") else None
        who = b"anonymous"
        if peer is not None:
            from linkerpy.tls.testing import commonNameOf

            who = (commonNameOf(peer) or "?").encode()
        return b"secure origin; client " + who + b"\n"


class OriginationEndToEndTests(TestCase):
    """
    An HTTP router originating TLS to origins with various certificates.
    """

    timeout = TIMEOUT

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        from linkerpy.tls.testing import newCA, writeCA, writeLeaf

        self.curl = requireTool(self, "curl")
        directory = tempdir(self)
        ca = newCA()
        caPath = writeCA(ca, os.path.join(directory, "ca.pem"))
        origin = writeLeaf(directory, "origin", ca, "origin.example", commonName="origin.example")
        stranger = newCA()
        untrusted = writeLeaf(directory, "untrusted", stranger, "origin.example", commonName="origin.example")
        clientCA = newCA()
        clientCAPath = writeCA(clientCA, os.path.join(directory, "client-ca.pem"))
        client = writeLeaf(directory, "client", clientCA, "router.example", commonName="router.example")
        self.ports: Dict[str, int] = {
            "good": self.origin(origin),
            "wrongcn": self.origin(origin),
            "untrusted": self.origin(untrusted),
            "mtls": self.origin(origin, clientCAPath),
            "mtlsnocert": self.origin(origin, clientCAPath),
        }
        dtab = "; ".join(f"/svc/{name} => /$/inet/127.0.0.1/{port}" for name, port in self.ports.items())

        def entry(name: str, **tls: Any) -> Dict[str, Any]:
            return {"prefix": f"/$/inet/127.0.0.1/{self.ports[name]}", "tls": dict({"trustCerts": [caPath]}, **tls)}

        config = {
            "admin": {"ip": "127.0.0.1", "port": 0},
            "routers": [
                {
                    "protocol": "http",
                    "label": "out",
                    "dtab": dtab,
                    "servers": [{"ip": "127.0.0.1", "port": 0}],
                    "client": {
                        "kind": "io.l5d.static",
                        "configs": [
                            {"prefix": "/", "requeueBudget": {"minRetriesPerSec": 0, "percentCanRetry": 0.0}},
                            entry("good", commonName="origin.example"),
                            entry("wrongcn", commonName="wrong.example"),
                            entry("untrusted", commonName="origin.example"),
                            entry("mtls", commonName="origin.example", clientAuth={"certPath": client.cert, "keyPath": client.key}),
                            entry("mtlsnocert", commonName="origin.example"),
                        ],
                    },
                }
            ],
        }
        self.proc = TwistdProcess(config)
        self.addCleanup(self.proc.stop)
        yield self.proc.start(waitFor=("admin", "router out"))
        self.port = self.proc.routerPort("out")

    def origin(self, files: Any, clientCA: Any = None) -> int:
        from linkerpy.tls.config import ServerTlsConfig
        from linkerpy.tls.server import ServerTLS, wrapServerFactory

        config = ServerTlsConfig(
            certPath=files.cert,
            keyPath=files.key,
            caCertPath=clientCA,
            requireClientAuth=clientCA is not None,
            reloadIntervalMs=0,
        )
        port = reactor.listenTCP(0, wrapServerFactory(Site(Answer()), ServerTLS(config, reactor)), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port.getHost().port

    @defer.inlineCallbacks
    def get(self, name: str) -> Any:
        """
        curl through the router; fire with C{(status, headers, body)}.
        """
        out, err, code = yield utils.getProcessOutputAndValue(
            self.curl, ["-sS", "-i", "--max-time", "120", "-H", f"Host: {name}", f"http://127.0.0.1:{self.port}/"], env=os.environ
        )
        self.assertEqual(code, 0, err)
        head, _, body = out.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers: List[Tuple[str, str]] = []
        for line in lines[1:]:
            key, _, value = line.partition(b":")
            headers.append((key.strip().lower().decode(), value.strip().decode("latin-1")))
        return status, dict(headers), body

    @defer.inlineCallbacks
    def test_rightName(self) -> Any:
        """
        With the right commonName and CA the request gets the origin's 200.
        """
        status, _, body = yield self.get("good")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"secure origin; client anonymous\n")

    @defer.inlineCallbacks
    def test_wrongName(self) -> Any:
        """
        A certificate for another name: 502 whose l5d-err says name mismatch.
        """
        status, headers, body = yield self.get("wrongcn")
        self.assertEqual(status, 502)
        err = unquote(headers["l5d-err"])
        self.assertIn("name mismatch", err)
        self.assertIn("expected 'wrong.example'", err)
        self.assertIn(b"name mismatch", body)

    @defer.inlineCallbacks
    def test_untrustedCA(self) -> Any:
        """
        A certificate from an unknown CA: 502 whose l5d-err says untrusted.
        """
        status, headers, _ = yield self.get("untrusted")
        self.assertEqual(status, 502)
        self.assertIn("untrusted certificate", unquote(headers["l5d-err"]))

    @defer.inlineCallbacks
    def test_clientAuth(self) -> Any:
        """
        An origin that requires a client certificate gets the router's
        (200, the origin sees its name); without clientAuth the request
        fails with 502 saying the client certificate was rejected.
        """
        status, _, body = yield self.get("mtls")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"secure origin; client router.example\n")
        status, headers, _ = yield self.get("mtlsnocert")
        self.assertEqual(status, 502)
        err = unquote(headers["l5d-err"])
        self.assertIn("client certificate rejected", err)
        self.assertIn("none is configured", err)
