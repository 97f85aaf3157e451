# -*- test-case-name: tests.test_tls_server -*-
"""
Tests for L{linkerpy.tls.server}: TLS termination in memory (SNI, ALPN,
protocol floors, key formats, chains, client certificates, bad files and
reloading).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, List

from zope.interface.verify import verifyObject

from OpenSSL import SSL
from cryptography import x509
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase

from linkerpy.config.errors import ConfigError
from linkerpy.telemetry.metrics import MetricsTree
from linkerpy.tls.config import ServerTlsConfig, SniCertificate
from linkerpy.tls.identity import negotiatedProtocol, peerCertificate, requestedServerName
from linkerpy.tls.server import ServerTLS, wrapServerFactory
from linkerpy.tls.testing import (
    CertFiles,
    ProbeClient,
    altNamesOf,
    loopbackTLS,
    newCA,
    writeBytes,
    writeCA,
    writeLeaf,
)


class _Base(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="linkerpy-tls-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.ca = newCA()
        self.caPath = writeCA(self.ca, os.path.join(self.dir, "ca.pem"))
        self.default = writeLeaf(self.dir, "default", self.ca, "default.example.com")
        self.clock = MemoryReactorClock()

    def leaf(self, stem: str, *names: str, **kw: Any) -> CertFiles:
        return writeLeaf(self.dir, stem, self.ca, *names, **kw)

    def server(self, **kw: Any) -> ServerTLS:
        kw.setdefault("certPath", self.default.cert)
        kw.setdefault("keyPath", self.default.key)
        alpn = kw.pop("alpn", None)
        return ServerTLS(ServerTlsConfig(**kw), self.clock, "servers[0].tls", alpn=alpn)

    def seenNames(self, server: ServerTLS, serverName: Any = None, **kw: Any) -> List[str]:
        lb = loopbackTLS(server, ProbeClient(serverName, **kw))
        self.assertTrue(lb.clientApp.handshakeDone, lb.clientApp.lostReason)
        return altNamesOf(lb.peerCertificate())


class SniTests(_Base):
    """
    Certificates chosen by server name.
    """

    def sniServer(self) -> ServerTLS:
        a = self.leaf("a", "a.example.com")
        wild = self.leaf("wild", "*.wild.example.com")
        exact = self.leaf("exact", "x.wild.example.com")
        return self.server(
            sni=(
                SniCertificate(("a.example.com", "alias.example.com"), a.cert, a.key),
                SniCertificate(("*.wild.example.com",), wild.cert, wild.key),
                SniCertificate(("x.wild.example.com",), exact.cert, exact.key),
            )
        )

    def test_exactName(self) -> None:
        """
        A server name listed exactly selects its certificate, for each of
        the entry's names.
        """
        server = self.sniServer()
        self.assertEqual(self.seenNames(server, "a.example.com"), ["a.example.com"])
        self.assertEqual(self.seenNames(server, "alias.example.com"), ["a.example.com"])

    def test_caseInsensitive(self) -> None:
        """
        Server names match regardless of case.
        """
        self.assertEqual(self.seenNames(self.sniServer(), "A.Example.COM"), ["a.example.com"])

    def test_wildcardOneLabel(self) -> None:
        """
        C{*.wild.example.com} matches one extra label only: not two, and not
        the parent name itself.
        """
        server = self.sniServer()
        self.assertEqual(self.seenNames(server, "y.wild.example.com"), ["*.wild.example.com"])
        self.assertEqual(self.seenNames(server, "a.b.wild.example.com"), ["default.example.com"])
        self.assertEqual(self.seenNames(server, "wild.example.com"), ["default.example.com"])

    def test_exactBeatsWildcard(self) -> None:
        """
        An exact name wins over a wildcard listed earlier.
        """
        self.assertEqual(self.seenNames(self.sniServer(), "x.wild.example.com"), ["x.wild.example.com"])

    def test_defaultWithoutServerName(self) -> None:
        """
        A client that sends no server name gets the default certificate.
        """
        self.assertEqual(self.seenNames(self.sniServer(), None), ["default.example.com"])

    def test_defaultForUnknownName(self) -> None:
        """
        An unknown server name gets the default certificate.
        """
        self.assertEqual(self.seenNames(self.sniServer(), "other.example.org"), ["default.example.com"])

    def test_sniOnly(self) -> None:
        """
        Without C{certPath} the first SNI certificate is the default.
        """
        a = self.leaf("a", "a.example.com")
        b = self.leaf("b", "b.example.com")
        server = ServerTLS(
            ServerTlsConfig(
                sni=(SniCertificate(("a.example.com",), a.cert, a.key), SniCertificate(("b.example.com",), b.cert, b.key))
            ),
            self.clock,
        )
        self.assertEqual(self.seenNames(server, "b.example.com"), ["b.example.com"])
        self.assertEqual(self.seenNames(server, "c.example.com"), ["a.example.com"])
        self.assertEqual(self.seenNames(server, None), ["a.example.com"])

    def test_requestedServerName(self) -> None:
        """
        The application can read the server name the client asked for.
        """
        lb = loopbackTLS(self.sniServer(), ProbeClient("Alias.example.com"))
        self.assertEqual(requestedServerName(lb.serverApp.transport), "alias.example.com")
        lb = loopbackTLS(self.sniServer(), ProbeClient(None))
        self.assertIsNone(requestedServerName(lb.serverApp.transport))

    def test_certificateFor(self) -> None:
        """
        L{ServerTLS.certificateFor} reports the certificate a name would get.
        """
        server = self.sniServer()
        self.assertEqual(altNamesOf(server.certificateFor("q.wild.example.com")), ["*.wild.example.com"])
        self.assertEqual(altNamesOf(server.certificateFor()), ["default.example.com"])


class AlpnTests(_Base):
    """
    ALPN negotiation.
    """

    def negotiate(self, server: ServerTLS, offered: Any) -> Any:
        lb = loopbackTLS(server, ProbeClient("default.example.com", alpn=offered))
        self.assertTrue(lb.clientApp.handshakeDone, lb.clientApp.lostReason)
        self.assertEqual(negotiatedProtocol(lb.client), negotiatedProtocol(lb.serverApp.transport))
        return negotiatedProtocol(lb.serverApp.transport)

    def test_serverPreference(self) -> None:
        """
        The router's most preferred protocol that the client offers is
        chosen, whatever the client's order.
        """
        server = self.server(alpn=[b"h2", b"http/1.1"])
        self.assertEqual(self.negotiate(server, [b"http/1.1", b"h2"]), b"h2")
        self.assertEqual(self.negotiate(server, [b"http/1.1"]), b"http/1.1")

    def test_noOverlap(self) -> None:
        """
        With no protocol in common the handshake still succeeds, with no
        negotiated protocol.
        """
        self.assertIsNone(self.negotiate(self.server(alpn=[b"h2"]), [b"spdy/3"]))

    def test_noAlpn(self) -> None:
        """
        A server without ALPN protocols negotiates none.
        """
        self.assertIsNone(self.negotiate(self.server(), [b"h2"]))

    def test_configOverrides(self) -> None:
        """
        C{alpnProtocols} in the configuration replaces the router's list.
        """
        server = self.server(alpn=[b"h2", b"http/1.1"], alpnProtocols=("http/1.1",))
        self.assertEqual(server.alpnProtocols, (b"http/1.1",))
        self.assertEqual(self.negotiate(server, [b"h2", b"http/1.1"]), b"http/1.1")

    def test_alpnWithSni(self) -> None:
        """
        ALPN works on a certificate chosen by server name.
        """
        a = self.leaf("a", "a.example.com")
        server = self.server(alpn=[b"h2"], sni=(SniCertificate(("a.example.com",), a.cert, a.key),))
        lb = loopbackTLS(server, ProbeClient("a.example.com", alpn=[b"h2"]))
        self.assertEqual(altNamesOf(lb.peerCertificate()), ["a.example.com"])
        self.assertEqual(lb.client.negotiatedProtocol, b"h2")


class ProtocolTests(_Base):
    """
    Protocol versions and ciphers.
    """

    def handshake(self, server: ServerTLS, protocols: Any, **kw: Any) -> Any:
        return loopbackTLS(server, ProbeClient("default.example.com", protocols=protocols, **kw))

    def test_defaultFloor(self) -> None:
        """
        By default TLS 1.0 and 1.1 clients are refused; 1.2 and 1.3 are
        accepted.
        """
        server = self.server()
        for legacy in ("TLSv1", "TLSv1.1"):
            lb = self.handshake(server, [legacy])
            self.assertFalse(lb.clientApp.handshakeDone, legacy)
            self.assertIsInstance(lb.clientApp.lostReason.value, SSL.Error)
            self.assertIn("protocol version", str(lb.clientApp.lostReason.value))
        for modern in ("TLSv1.2", "TLSv1.3"):
            lb = self.handshake(server, [modern])
            self.assertTrue(lb.clientApp.handshakeDone, modern)
            self.assertEqual(lb.client.getHandle().get_protocol_version_name(), modern)

    def test_onlyTls13(self) -> None:
        """
        C{protocols: [TLSv1.3]} refuses TLS 1.2 clients.
        """
        server = self.server(protocols=("TLSv1.3",))
        self.assertFalse(self.handshake(server, ["TLSv1.2"]).clientApp.handshakeDone)
        self.assertTrue(self.handshake(server, ["TLSv1.3"]).clientApp.handshakeDone)

    def test_legacyWhenListed(self) -> None:
        """
        Listing TLSv1 and TLSv1.1 enables them (OpenSSL security level 0).
        """
        server = self.server(protocols=("TLSv1", "TLSv1.1", "TLSv1.2"))
        for version in ("TLSv1", "TLSv1.1"):
            lb = self.handshake(server, [version])
            self.assertTrue(lb.clientApp.handshakeDone, (version, lb.clientApp.lostReason))
            self.assertEqual(lb.client.getHandle().get_protocol_version_name(), version)

    def test_ciphers(self) -> None:
        """
        C{ciphers} restricts the TLS 1.2 suites.
        """
        rsa = self.leaf("rsa", "default.example.com", rsa=True)
        server = self.server(
            certPath=rsa.cert, keyPath=rsa.key, protocols=("TLSv1.2",), ciphers=("ECDHE-RSA-AES128-GCM-SHA256",)
        )
        lb = self.handshake(server, ["TLSv1.2"])
        self.assertEqual(lb.client.getHandle().get_cipher_name(), "ECDHE-RSA-AES128-GCM-SHA256")
        lb = self.handshake(server, ["TLSv1.2"], ciphers="ECDHE-RSA-AES256-GCM-SHA384")
        self.assertFalse(lb.clientApp.handshakeDone)

    def test_tls13Suites(self) -> None:
        """
        TLS 1.3 suite names in C{ciphers} choose the TLS 1.3 suites.
        """
        if not hasattr(SSL.Context, "set_tls13_ciphersuites"):
            self.skipTest("this pyOpenSSL cannot choose TLS 1.3 suites")
        server = self.server(ciphers=("TLS_CHACHA20_POLY1305_SHA256",))
        lb = self.handshake(server, ["TLSv1.3"])
        self.assertEqual(lb.client.getHandle().get_cipher_name(), "TLS_CHACHA20_POLY1305_SHA256")

    def test_unknownCipher(self) -> None:
        """
        An unknown cipher is a configuration error naming its index.
        """
        e = self.assertRaises(ConfigError, self.server, ciphers=("ECDHE-RSA-AES128-GCM-SHA256", "NOPE-CIPHER"))
        self.assertIn("servers[0].tls.ciphers[1]", str(e))
        self.assertIn("NOPE-CIPHER", str(e))


class KeyAndChainTests(_Base):
    """
    Key formats and certificate chains.
    """

    def test_keyFormats(self) -> None:
        """
        RSA and EC keys in PKCS#8, PKCS#1 (RSA) and SEC1 (EC) PEM all work.
        """
        for rsa in (True, False):
            for fmt in ("pkcs8", "traditional"):
                files = self.leaf(f"k-{rsa}-{fmt}", "default.example.com", rsa=rsa, keyFormat=fmt)
                with open(files.key, "rb") as f:
                    head = f.readline()
                expected = {
                    (True, "pkcs8"): b"-----BEGIN PRIVATE KEY-----\n",
                    (False, "pkcs8"): b"-----BEGIN PRIVATE KEY-----\n",
                    (True, "traditional"): b"-----BEGIN RSA PRIVATE KEY-----\n",
                    (False, "traditional"): b"-----BEGIN EC PRIVATE KEY-----\n",
                }[(rsa, fmt)]
                self.assertEqual(head, expected)
                server = self.server(certPath=files.cert, keyPath=files.key)
                self.assertEqual(self.seenNames(server, "default.example.com"), ["default.example.com"])

    def test_intermediates(self) -> None:
        """
        C{intermediateCertsPath} certificates are sent after the leaf.
        """
        intermediate = newCA(parent=self.ca)
        files = writeLeaf(self.dir, "leaf", intermediate, "default.example.com")
        assert files.chain is not None
        server = self.server(certPath=files.cert, keyPath=files.key, intermediateCertsPath=files.chain)
        lb = loopbackTLS(server, ProbeClient("default.example.com"))
        chain = lb.client.getHandle().get_peer_cert_chain(as_cryptography=True)
        self.assertEqual(len(chain), 2)
        self.assertEqual(chain[0], files.certificate)
        self.assertEqual(chain[1], x509.load_pem_x509_certificate(intermediate.cert_pem.bytes()))

    def test_chainInCertificateFile(self) -> None:
        """
        A certificate file holding the leaf followed by its chain sends the
        chain too.
        """
        intermediate = newCA(parent=self.ca)
        files = writeLeaf(self.dir, "leaf", intermediate, "default.example.com")
        assert files.chain is not None
        full = os.path.join(self.dir, "full.pem")
        with open(files.cert, "rb") as a, open(files.chain, "rb") as b:
            writeBytes(full, a.read() + b.read())
        server = self.server(certPath=full, keyPath=files.key)
        lb = loopbackTLS(server, ProbeClient("default.example.com"))
        self.assertEqual(len(lb.client.getHandle().get_peer_cert_chain()), 2)

    def test_verifyObject(self) -> None:
        """
        L{ServerTLS} provides C{IOpenSSLServerConnectionCreator}.
        """
        self.assertTrue(verifyObject(IOpenSSLServerConnectionCreator, self.server()))

    def test_wrapServerFactory(self) -> None:
        """
        L{wrapServerFactory} gives a server-side C{TLSMemoryBIOFactory} on
        the server's reactor.
        """
        server = self.server()
        inner = Factory()
        wrapped = wrapServerFactory(inner, server)
        self.assertIsInstance(wrapped, TLSMemoryBIOFactory)
        self.assertIs(wrapped.wrappedFactory, inner)
        self.assertIs(wrapped._clock, self.clock)

    def test_expiryGauge(self) -> None:
        """
        The C{expires_in_s} gauge reports the time left on the certificate
        that expires first.
        """
        metrics = MetricsTree()
        ServerTLS(
            ServerTlsConfig(certPath=self.default.cert, keyPath=self.default.key), self.clock, metrics=metrics
        )
        self.clock.advance(self.default.certificate.not_valid_after_utc.timestamp() - 100)
        self.assertAlmostEqual(metrics.gauge("expires_in_s").value, 100, delta=1)


class ClientAuthTests(_Base):
    """
    Client certificates on the server side.
    """

    def setUp(self) -> None:
        super().setUp()
        self.client = self.leaf("client", "client.example.com")
        self.stranger = writeLeaf(self.dir, "stranger", newCA(), "client.example.com")

    def connect(self, server: ServerTLS, cert: Any, protocols: Any = ("TLSv1.2", "TLSv1.3")) -> Any:
        lb = loopbackTLS(server, ProbeClient("default.example.com", clientCert=cert, protocols=protocols))
        lb.clientApp.transport.write(b"ping")
        lb.flush()
        return lb

    def test_required(self) -> None:
        """
        With C{requireClientAuth}, a client without a certificate is refused
        and nothing reaches the application (TLS 1.2 and 1.3).
        """
        server = self.server(caCertPath=self.caPath, requireClientAuth=True)
        for protocols in (["TLSv1.2"], ["TLSv1.3"]):
            lb = self.connect(server, None, protocols)
            self.assertEqual(lb.serverApp.received, b"")
            self.assertEqual(lb.clientApp.received, b"")
            self.assertIsNotNone(lb.clientApp.lostReason)

    def test_requiredAccepted(self) -> None:
        """
        A client certificate signed by C{caCertPath} is accepted and visible
        to the application.
        """
        server = self.server(caCertPath=self.caPath, requireClientAuth=True)
        lb = self.connect(server, self.client)
        self.assertEqual(lb.clientApp.received, b"ping")
        cert = peerCertificate(lb.serverApp.transport)
        self.assertEqual(cert, self.client.certificate)

    def test_untrustedRefused(self) -> None:
        """
        A client certificate from another CA is refused.
        """
        server = self.server(caCertPath=self.caPath, requireClientAuth=True)
        lb = self.connect(server, self.stranger)
        self.assertEqual(lb.serverApp.received, b"")
        self.assertIn("unknown ca", str(lb.clientApp.lostReason.value))

    def test_optional(self) -> None:
        """
        With C{caCertPath} but not C{requireClientAuth}, a certificate is
        requested but not required; one that is sent must verify.
        """
        server = self.server(caCertPath=self.caPath)
        lb = self.connect(server, None)
        self.assertEqual(lb.clientApp.received, b"ping")
        self.assertIsNone(peerCertificate(lb.serverApp.transport))
        lb = self.connect(server, self.client)
        self.assertEqual(peerCertificate(lb.serverApp.transport), self.client.certificate)
        lb = self.connect(server, self.stranger)
        self.assertEqual(lb.serverApp.received, b"")

    def test_notRequested(self) -> None:
        """
        Without C{caCertPath}, no client certificate is requested.
        """
        lb = self.connect(self.server(), self.client)
        self.assertEqual(lb.clientApp.received, b"ping")
        self.assertIsNone(peerCertificate(lb.serverApp.transport))

    def test_withSni(self) -> None:
        """
        Client certificates are required on SNI-selected certificates too.
        """
        a = self.leaf("a", "a.example.com")
        server = self.server(
            caCertPath=self.caPath, requireClientAuth=True, sni=(SniCertificate(("a.example.com",), a.cert, a.key),)
        )
        lb = loopbackTLS(server, ProbeClient("a.example.com"))
        lb.clientApp.transport.write(b"ping")
        lb.flush()
        self.assertEqual(lb.serverApp.received, b"")
        lb = loopbackTLS(server, ProbeClient("a.example.com", clientCert=self.client))
        self.assertEqual(altNamesOf(lb.peerCertificate()), ["a.example.com"])
        self.assertEqual(peerCertificate(lb.serverApp.transport), self.client.certificate)
