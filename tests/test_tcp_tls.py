"""
Tests for the TCP router and TLS over real sockets: SNI passthrough to TLS
origins, TLS termination with a certificate per server name, client
certificates, and TLS origination (right and wrong names).
"""

from __future__ import annotations

import os
from typing import Any, Dict, List

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from tests.support import waitUntil
from tests.test_tcp_router import NO_REQUEUES
from tests.test_tcp_support import Client, EchoOrigin, connect, listen, metric, startTcpRouter, tempdir

TIMEOUT = 240


class TLSTests(TestCase):
    """
    SNI passthrough, TLS termination and TLS origination over real sockets.
    """

    timeout = TIMEOUT

    def setUp(self) -> None:
        from linkerpy.tls.testing import newCA, writeCA, writeLeaf

        self.dir = tempdir(self)
        self.ca = newCA()
        self.caPath = writeCA(self.ca, os.path.join(self.dir, "ca.pem"))
        self.certs = {name: writeLeaf(self.dir, name, self.ca, name) for name in ("a.example", "b.example", "origin.example")}

    def serverTLS(self, name: str, **extra: Any) -> Any:
        from linkerpy.tls.config import ServerTlsConfig
        from linkerpy.tls.server import ServerTLS

        files = self.certs[name]
        return ServerTLS(ServerTlsConfig(certPath=files.cert, keyPath=files.key, **extra), reactor)

    def clientTLS(self, name: str) -> Any:
        from twisted.internet import ssl

        with open(self.caPath, "rb") as f:
            trust = ssl.Certificate.loadPEM(f.read())
        return ssl.optionsForClientTLS(name, trustRoot=trust)

    def router(self, raw: Dict[str, Any]) -> Any:
        return startTcpRouter(self, raw)

    @defer.inlineCallbacks
    def talk(self, port: int, name: str, payload: bytes = b"hello") -> Any:
        client = yield connect(self, port, Client(payload), tls=self.clientTLS(name))
        yield waitUntil(lambda: client.received == payload or client.lost is not None, 60, "the echo")
        self.assertEqual(client.received, payload)
        from linkerpy.tls.testing import altNamesOf

        seen = altNamesOf(client.transport.getPeerCertificate())[0]
        client.transport.loseConnection()
        yield client.done
        return seen

    @defer.inlineCallbacks
    def test_sniPassthrough(self) -> Any:
        """
        A passthrough server sends each TLS connection to the origin named
        by its SNI; each origin answers with its own certificate (verified
        by the client) and the router holds no key at all.
        """
        a = listen(self, EchoOrigin, tls=self.serverTLS("a.example"))
        b = listen(self, EchoOrigin, tls=self.serverTLS("b.example"))
        router = self.router(
            {
                "identifier": {"kind": "io.l5d.tls.sni"},
                "dtab": f"/svc/a.example => /$/inet/127.0.0.1/{a.port}; /svc/b.example => /$/inet/127.0.0.1/{b.port}",
                "servers": [{"port": 0}],
            }
        )
        self.assertEqual(router.serverTLS, {})
        seenA = yield self.talk(router.ports[0], "a.example", b"to a")
        seenB = yield self.talk(router.ports[0], "b.example", b"to b")
        self.assertEqual((seenA, seenB), ("a.example", "b.example"))
        self.assertEqual((len(a.connections), len(b.connections)), (1, 1))
        self.assertEqual(metric(router, "rt/tcp/service/svc/a.example/connects"), 1)
        self.assertEqual(metric(router, "rt/tcp/service/svc/b.example/connects"), 1)

    @defer.inlineCallbacks
    def test_tlsTerminationBySni(self) -> Any:
        """
        A TLS-terminating server presents the certificate of the requested
        name and routes the decrypted bytes by that name to plain origins.
        """
        a = listen(self, lambda: _Tag(b"A:"))
        b = listen(self, lambda: _Tag(b"B:"))
        certs = self.certs
        router = self.router(
            {
                "identifier": {"kind": "io.l5d.tls.sni"},
                "dtab": f"/svc/a.example => /$/inet/127.0.0.1/{a.port}; /svc/b.example => /$/inet/127.0.0.1/{b.port}",
                "servers": [
                    {
                        "port": 0,
                        "tls": {
                            "certPath": certs["a.example"].cert,
                            "keyPath": certs["a.example"].key,
                            "sni": [{"serverNames": ["b.example"], "certPath": certs["b.example"].cert, "keyPath": certs["b.example"].key}],
                        },
                    }
                ],
            }
        )
        client = yield connect(self, router.ports[0], Client(b"x"), tls=self.clientTLS("b.example"))
        yield waitUntil(lambda: client.received == b"B:x", 60, "B's answer")
        from linkerpy.tls.testing import altNamesOf

        self.assertEqual(altNamesOf(client.transport.getPeerCertificate()), ["b.example"])
        client.transport.loseConnection()
        yield client.done
        self.assertEqual(len(a.connections), 0)

    @defer.inlineCallbacks
    def test_clientCertificateRequired(self) -> Any:
        """
        A TLS-terminating server with requireClientAuth refuses a client
        without a certificate during the handshake: nothing is routed and the
        failure is counted; a client with one is relayed.
        """
        from linkerpy.tls.testing import ProbeClient, newCA, writeCA, writeLeaf

        clientCA = newCA()
        clientCAPath = writeCA(clientCA, os.path.join(self.dir, "client-ca.pem"))
        clientCert = writeLeaf(self.dir, "client", clientCA, "client.example")
        origin = listen(self, EchoOrigin)
        files = self.certs["a.example"]
        router = self.router(
            {
                "dtab": f"/svc/a => /$/inet/127.0.0.1/{origin.port}",
                "servers": [
                    {
                        "port": 0,
                        "dstName": "/svc/a",
                        "tls": {"certPath": files.cert, "keyPath": files.key, "caCertPath": clientCAPath, "requireClientAuth": True},
                    }
                ],
            }
        )
        anonymous = yield connect(self, router.ports[0], Client(b"let me in"), tls=ProbeClient("a.example"))
        yield anonymous.done
        self.assertEqual(anonymous.received, b"")
        server = f"rt/tcp/server/127.0.0.1/{router.ports[0]}"
        yield waitUntil(lambda: metric(router, f"{server}/handshake_failures") == 1, 60, "the failed handshake to be counted")
        self.assertEqual(len(origin.connections), 0)
        known = yield connect(self, router.ports[0], Client(b"hello"), tls=ProbeClient("a.example", clientCert=clientCert))
        yield waitUntil(lambda: known.received == b"hello", 60, "the echo")
        known.transport.loseConnection()
        yield known.done
        self.assertEqual(len(origin.connections), 1)

    @defer.inlineCallbacks
    def test_tlsOrigination(self) -> Any:
        """
        client.tls makes the router speak TLS to the origin, checking its
        name; a wrong commonName fails the connect (counted) and the client
        connection is closed without a byte.
        """
        origin = listen(self, EchoOrigin, tls=self.serverTLS("origin.example"))
        same = listen(self, EchoOrigin, tls=self.serverTLS("origin.example"))
        raw = {
            "dtab": f"/svc/good => /$/inet/127.0.0.1/{origin.port}; /svc/bad => /$/inet/127.0.0.1/{same.port}",
            "servers": [{"port": 0, "dstName": "/svc/good"}, {"port": 0, "dstName": "/svc/bad"}],
            "client": {
                "kind": "io.l5d.static",
                "configs": [
                    {"prefix": "/", "requeueBudget": NO_REQUEUES},
                    {"prefix": f"/$/inet/127.0.0.1/{origin.port}", "tls": {"commonName": "origin.example", "trustCerts": [self.caPath]}},
                    {"prefix": f"/$/inet/127.0.0.1/{same.port}", "tls": {"commonName": "other.example", "trustCerts": [self.caPath]}},
                ],
            },
        }
        router = self.router(raw)
        client = yield connect(self, router.ports[0], Client(b"secret"))
        yield waitUntil(lambda: client.received == b"secret", 60, "the echo over TLS")
        client.transport.loseConnection()
        yield client.done
        self.assertEqual(len(origin.connections), 1)
        self.assertTrue(origin.connections[0].transport is not None)
        from twisted.logger import formatEvent, globalLogPublisher

        messages: List[str] = []
        observer = lambda event: messages.append(formatEvent(event))  # noqa: E731
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        bad = yield connect(self, router.ports[1], Client(b"secret"))
        yield bad.done
        self.assertTrue(any("name mismatch" in m and "other.example" in m for m in messages), messages)
        self.assertEqual(bad.received, b"")
        self.assertEqual(metric(router, f"rt/tcp/client/$/inet/127.0.0.1/{same.port}/connect_failures"), 1)
        self.assertEqual(metric(router, f"rt/tcp/client/$/inet/127.0.0.1/{same.port}/connects"), 0)
        self.assertEqual(metric(router, f"rt/tcp/server/127.0.0.1/{router.ports[1]}/failures"), 1)


class _Tag(EchoOrigin):
    def __init__(self, tag: bytes) -> None:
        self.tag = tag

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(self.tag + data)
