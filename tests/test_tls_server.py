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
from twisted.logger import globalLogPublisher
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


class BadFileTests(_Base):
    """
    Start-up validation of files.
    """

    def assertProblem(self, key: str, fragment: str, **kw: Any) -> ConfigError:
        e = self.assertRaises(ConfigError, self.server, **kw)
        paths = [p.path for p in e.problems]
        self.assertIn(f"servers[0].tls.{key}", paths)
        self.assertIn(fragment, str(e))
        return e

    def test_missingCertificate(self) -> None:
        """
        A missing certificate file is reported at C{certPath} with the file.
        """
        path = os.path.join(self.dir, "nope.crt")
        e = self.assertProblem("certPath", "no such file", certPath=path)
        self.assertIn(path, str(e))

    def test_missingKey(self) -> None:
        """
        A missing key file is reported at C{keyPath}.
        """
        self.assertProblem("keyPath", "nope.key", keyPath=os.path.join(self.dir, "nope.key"))

    def test_directory(self) -> None:
        """
        A directory where a file is expected is reported.
        """
        self.assertProblem("certPath", "is a directory", certPath=self.dir)

    def test_unreadable(self) -> None:
        """
        A file this process cannot read is reported as such.
        """
        path = os.path.join(self.dir, "secret.key")
        writeBytes(path, b"-----BEGIN PRIVATE KEY-----\n")
        os.chmod(path, 0)
        try:
            with open(path, "rb"):
                readable = True
        except PermissionError:
            readable = False
        if readable:
            os.chmod(path, 0o600)
            self.skipTest("running as a user who can read any file (root)")
        self.assertProblem("keyPath", "permission denied", keyPath=path)

    def test_parentNotDirectory(self) -> None:
        """
        A path that cannot be opened for another reason is reported with the
        system's explanation.
        """
        self.assertProblem("certPath", "Not a directory", certPath=os.path.join(self.default.cert, "x"))

    def test_notPem(self) -> None:
        """
        A file without PEM blocks is reported as not PEM.
        """
        path = os.path.join(self.dir, "junk.crt")
        writeBytes(path, b"hello world\n")
        self.assertProblem("certPath", "not a PEM file", certPath=path)

    def test_der(self) -> None:
        """
        A DER certificate is recognised and the conversion suggested.
        """
        from cryptography.hazmat.primitives.serialization import Encoding

        path = os.path.join(self.dir, "cert.der")
        writeBytes(path, self.default.certificate.public_bytes(Encoding.DER))
        self.assertProblem("certPath", "looks like DER", certPath=path)

    def test_empty(self) -> None:
        """
        An empty file is reported as empty.
        """
        path = os.path.join(self.dir, "empty.key")
        writeBytes(path, b"")
        self.assertProblem("keyPath", "is empty", keyPath=path)

    def test_truncatedCertificate(self) -> None:
        """
        A half-written certificate is reported as malformed.
        """
        path = os.path.join(self.dir, "half.crt")
        with open(self.default.cert, "rb") as f:
            data = f.read()
        writeBytes(path, data[: len(data) // 2])
        self.assertProblem("certPath", "malformed certificate", certPath=path)

    def test_swappedFiles(self) -> None:
        """
        A key where the certificate belongs (and the reverse) is explained.
        """
        e = self.assertRaises(
            ConfigError, self.server, certPath=self.default.key, keyPath=self.default.cert
        )
        self.assertIn("contains a private key, expected a certificate", str(e))
        self.assertIn("contains a certificate, expected a private key", str(e))
        self.assertEqual(len(e.problems), 2)

    def test_keyMismatch(self) -> None:
        """
        A key that does not belong to the certificate is reported at
        C{keyPath}, naming both files.
        """
        other = self.leaf("other", "other.example.com")
        e = self.assertProblem("keyPath", "does not match the certificate", keyPath=other.key)
        self.assertIn(other.key, str(e))
        self.assertIn(self.default.cert, str(e))

    def test_encryptedKey(self) -> None:
        """
        An encrypted key is refused with an explanation.
        """
        from cryptography.hazmat.primitives import serialization

        with open(self.default.key, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), None)
        path = os.path.join(self.dir, "enc.key")
        writeBytes(
            path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret"),
            ),
        )
        self.assertProblem("keyPath", "encrypted", keyPath=path)

    def test_sniPaths(self) -> None:
        """
        Problems in an SNI entry name the entry's key.
        """
        self.assertProblem(
            "sni[0].keyPath",
            "missing.key",
            sni=(SniCertificate(("a.example.com",), self.default.cert, os.path.join(self.dir, "missing.key")),),
        )

    def test_caPath(self) -> None:
        """
        A missing CA file is reported at C{caCertPath}.
        """
        self.assertProblem("caCertPath", "no such file", caCertPath=os.path.join(self.dir, "nope-ca.pem"))

    def test_allProblems(self) -> None:
        """
        Every bad file is reported, not only the first.
        """
        e = self.assertRaises(
            ConfigError,
            self.server,
            certPath=os.path.join(self.dir, "a"),
            caCertPath=os.path.join(self.dir, "b"),
            intermediateCertsPath=os.path.join(self.dir, "c"),
        )
        self.assertEqual(
            sorted(p.path for p in e.problems),
            ["servers[0].tls.caCertPath", "servers[0].tls.certPath", "servers[0].tls.intermediateCertsPath"],
        )


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


class ReloadTests(_Base):
    """
    Certificates re-read from disk.
    """

    def setUp(self) -> None:
        super().setUp()
        self.events: List[Any] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.metrics = MetricsTree()
        self.tls = ServerTLS(
            ServerTlsConfig(
                certPath=self.default.cert, keyPath=self.default.key, caCertPath=self.caPath, reloadIntervalMs=500
            ),
            self.clock,
            metrics=self.metrics,
        )
        self.tls.startService()
        self.addCleanup(self._stop)

    def _stop(self) -> None:
        if self.tls.running:
            self.tls.stopService()

    def replaceWith(self, files: CertFiles) -> None:
        for src, dst in ((files.cert, self.default.cert), (files.key, self.default.key)):
            with open(src, "rb") as f:
                writeBytes(dst, f.read())

    def errors(self) -> List[Any]:
        return [e for e in self.events if e.get("log_level") is not None and e["log_level"].name == "error"]

    def test_newHandshakesSeeNewCertificate(self) -> None:
        """
        After the files change and the interval passes, new handshakes get
        the new certificate; before that they get the old one.
        """
        new = self.leaf("new", "new.example.com")
        self.replaceWith(new)
        self.assertEqual(self.seenNames(self.tls), ["default.example.com"])
        self.clock.advance(0.5)
        self.assertEqual(self.seenNames(self.tls), ["new.example.com"])
        self.assertEqual(self.metrics.counter("reloads").value, 1)

    def test_openConnectionsKept(self) -> None:
        """
        A connection opened before a reload keeps working after it.
        """
        lb = loopbackTLS(self.tls, ProbeClient(None))
        self.replaceWith(self.leaf("new", "new.example.com"))
        self.clock.advance(0.5)
        lb.clientApp.transport.write(b"still here")
        lb.flush()
        self.assertEqual(lb.clientApp.received, b"still here")
        self.assertIsNone(lb.clientApp.lostReason)
        self.assertEqual(altNamesOf(lb.peerCertificate()), ["default.example.com"])

    def test_halfWrittenKeepsOld(self) -> None:
        """
        A half-written certificate keeps the old one, logs once, counts a
        failure, and the complete file is picked up later.
        """
        new = self.leaf("new", "new.example.com")
        with open(new.cert, "rb") as f:
            data = f.read()
        writeBytes(self.default.cert, data[: len(data) // 2])
        self.clock.advance(0.5)
        self.clock.advance(0.5)
        self.assertEqual(self.seenNames(self.tls), ["default.example.com"])
        self.assertEqual(len(self.errors()), 1)
        self.assertIn("malformed certificate", str(self.errors()[0]["error"]))
        self.assertEqual(self.metrics.counter("reload_failures").value, 1)
        self.replaceWith(new)
        self.clock.advance(0.5)
        self.assertEqual(self.seenNames(self.tls), ["new.example.com"])

    def test_mismatchedPairKeepsOld(self) -> None:
        """
        A new certificate whose key has not been written yet keeps the old
        pair until the key arrives.
        """
        new = self.leaf("new", "new.example.com")
        with open(new.cert, "rb") as f:
            writeBytes(self.default.cert, f.read())
        self.clock.advance(0.5)
        self.assertEqual(self.seenNames(self.tls), ["default.example.com"])
        self.assertIn("does not match", str(self.errors()[0]["error"]))
        with open(new.key, "rb") as f:
            writeBytes(self.default.key, f.read())
        self.clock.advance(0.5)
        self.assertEqual(self.seenNames(self.tls), ["new.example.com"])

    def test_deletedFileKeepsOld(self) -> None:
        """
        A certificate file that disappears keeps the old certificate.
        """
        os.remove(self.default.cert)
        self.clock.advance(0.5)
        self.assertEqual(self.seenNames(self.tls), ["default.example.com"])
        self.assertIn("no such file", str(self.errors()[0]["error"]))

    def test_unchangedFilesNotReloaded(self) -> None:
        """
        Rewriting identical contents is not a reload.
        """
        self.replaceWith(self.default)
        self.clock.advance(0.5)
        self.assertEqual(self.metrics.counter("reloads").value, 0)
        self.assertEqual(self.tls.checkForChanges(), 0)

    def test_caReload(self) -> None:
        """
        A new CA file changes which client certificates are accepted.
        """
        otherCA = newCA()
        client = writeLeaf(self.dir, "client", otherCA, "client.example.com")
        tls = ServerTLS(
            ServerTlsConfig(certPath=self.default.cert, keyPath=self.default.key, caCertPath=self.caPath, requireClientAuth=True),
            self.clock,
        )

        def accepted() -> bool:
            lb = loopbackTLS(tls, ProbeClient(None, clientCert=client))
            lb.clientApp.transport.write(b"x")
            lb.flush()
            return lb.clientApp.received == b"x"

        self.assertFalse(accepted())
        writeCA(otherCA, self.caPath)
        self.assertEqual(tls.checkForChanges(), 1)
        self.assertTrue(accepted())

    def test_stopService(self) -> None:
        """
        Stopping the service stops polling.
        """
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.tls.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_noPolling(self) -> None:
        """
        C{reloadIntervalMs: 0} never polls.
        """
        clock = MemoryReactorClock()
        tls = ServerTLS(
            ServerTlsConfig(certPath=self.default.cert, keyPath=self.default.key, reloadIntervalMs=0), clock
        )
        tls.startService()
        self.assertEqual(clock.getDelayedCalls(), [])
        tls.stopService()
