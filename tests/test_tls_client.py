# -*- test-case-name: tests.test_tls_client -*-
"""
Tests for L{linkerpy.tls.client} and L{linkerpy.tls.errors}: TLS
origination in memory, verification failures and their explanations.
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
from typing import Any, Optional

from zope.interface.verify import verifyObject

from OpenSSL import SSL
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from linkerpy.config.errors import ConfigError
from linkerpy.tls import errors
from linkerpy.tls.client import (
    ClientTLSCreator,
    ClientTLSCreators,
    substituteCommonName,
    templateVariables,
    wrapClientFactory,
)
from linkerpy.tls.config import ClientAuthConfig, ClientTlsConfig, ServerTlsConfig
from linkerpy.tls.errors import TLSOriginationError, explainTLSFailure
from linkerpy.tls.identity import peerCertificate, requestedServerName
from linkerpy.tls.server import ServerTLS
from linkerpy.tls.testing import (
    CertFiles,
    Recorder,
    loopbackTLS,
    newCA,
    utcnow,
    writeBytes,
    writeCA,
    writeLeaf,
)


class _Eager(Recorder):
    """
    A client application that writes as soon as it is connected (before the
    handshake): those bytes must never reach an unverified origin.
    """

    def connectionMade(self) -> None:
        super().connectionMade()
        self.transport.write(b"secret request")


class _Base(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="linkerpy-tls-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.ca = newCA()
        self.caPath = writeCA(self.ca, os.path.join(self.dir, "ca.pem"))
        self.origin = self.leaf("origin", "users.svc.example.com")
        self.creators = ClientTLSCreators(MemoryReactorClock())

    def leaf(self, stem: str, *names: str, ca: Any = None, **kw: Any) -> CertFiles:
        return writeLeaf(self.dir, stem, ca or self.ca, *names, **kw)

    def originServer(self, files: Optional[CertFiles] = None, alpn: Any = None, **kw: Any) -> ServerTLS:
        files = files or self.origin
        return ServerTLS(ServerTlsConfig(certPath=files.cert, keyPath=files.key, **kw), MemoryReactorClock(), alpn=alpn)

    def clientConfig(self, **kw: Any) -> ClientTlsConfig:
        kw.setdefault("commonName", "users.svc.example.com")
        kw.setdefault("trustCerts", (self.caPath,))
        return ClientTlsConfig(**kw)

    def connect(self, server: Any, config: ClientTlsConfig, captures: Any = None, address: Any = None, **kw: Any) -> Any:
        creator = self.creators.creatorFor(config, captures, address, **kw)
        assert creator is not None
        lb = loopbackTLS(server, creator, clientApp=_Eager())
        lb.creator = creator
        return lb

    def assertFails(self, lb: Any, kind: str, *fragments: str) -> TLSOriginationError:
        reason = lb.clientApp.lostReason
        self.assertIsNotNone(reason, "the connection should have failed")
        explained = lb.creator.explainFailure(reason)
        self.assertIsInstance(explained, TLSOriginationError)
        self.assertEqual(explained.kind, kind, explained.reason)
        for fragment in fragments:
            self.assertIn(fragment, explained.reason)
        self.assertEqual(explained.reason, str(explained))
        return explained

    def assertNothingReachedOrigin(self, lb: Any) -> None:
        self.assertEqual(lb.serverApp.received, b"")


class VerificationTests(_Base):
    """
    Verifying the origin's certificate, and what a failure says.
    """

    def test_success(self) -> None:
        """
        An origin whose certificate is signed by a trusted CA for the
        expected name is reached.
        """
        lb = self.connect(self.originServer(), self.clientConfig())
        self.assertTrue(lb.clientApp.handshakeDone)
        self.assertEqual(lb.serverApp.received, b"secret request")
        self.assertEqual(lb.clientApp.received, b"secret request")

    def test_trustBundle(self) -> None:
        """
        C{trustCertsBundle} can hold several CAs; any of them is trusted.
        """
        bundle = os.path.join(self.dir, "bundle.pem")
        with open(self.caPath, "rb") as f:
            writeBytes(bundle, newCA().cert_pem.bytes() + f.read())
        lb = self.connect(self.originServer(), self.clientConfig(trustCerts=(), trustCertsBundle=bundle))
        self.assertTrue(lb.clientApp.handshakeDone)

    def test_sendsServerName(self) -> None:
        """
        The commonName is sent as SNI.
        """
        lb = self.connect(self.originServer(), self.clientConfig())
        self.assertEqual(requestedServerName(lb.serverApp.transport), "users.svc.example.com")

    def test_untrusted(self) -> None:
        """
        A certificate from a CA that is not trusted fails as an untrusted
        certificate naming the issuer, and nothing is sent.
        """
        other = self.leaf("other", "users.svc.example.com", ca=newCA())
        lb = self.connect(self.originServer(other), self.clientConfig())
        error = self.assertFails(lb, errors.UNTRUSTED, "untrusted certificate", "not a trusted CA")
        self.assertIn("Testing CA", error.reason)
        self.assertNothingReachedOrigin(lb)

    def test_selfSigned(self) -> None:
        """
        A self-signed origin certificate is reported as such.
        """
        from linkerpy.tls.testing import makeCertificate
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        cert, key = makeCertificate(
            [(x509.NameOID.COMMON_NAME, "selfie")], [x509.DNSName("users.svc.example.com")]
        )
        certPath, keyPath = os.path.join(self.dir, "self.crt"), os.path.join(self.dir, "self.key")
        writeBytes(certPath, cert.public_bytes(serialization.Encoding.PEM))
        writeBytes(
            keyPath,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        server = ServerTLS(ServerTlsConfig(certPath=certPath, keyPath=keyPath), MemoryReactorClock())
        lb = self.connect(server, self.clientConfig())
        self.assertFails(lb, errors.UNTRUSTED, "self-signed", "CN=selfie")
        self.assertNothingReachedOrigin(lb)

    def test_nameMismatch(self) -> None:
        """
        A certificate for other names fails as a name mismatch saying which
        name was expected and which names the certificate has.
        """
        other = self.leaf("other", "a.example.com", "b.example.com")
        lb = self.connect(self.originServer(other), self.clientConfig())
        error = self.assertFails(
            lb, errors.NAME_MISMATCH, "expected 'users.svc.example.com'", "a.example.com, b.example.com"
        )
        self.assertEqual(error.serverName, "users.svc.example.com")
        self.assertNothingReachedOrigin(lb)

    def test_wildcardCertificate(self) -> None:
        """
        A wildcard certificate covers one label of the expected name.
        """
        wild = self.leaf("wild", "*.svc.example.com")
        lb = self.connect(self.originServer(wild), self.clientConfig())
        self.assertTrue(lb.clientApp.handshakeDone)
        lb = self.connect(self.originServer(wild), self.clientConfig(commonName="a.users.svc.example.com"))
        self.assertFails(lb, errors.NAME_MISMATCH, "*.svc.example.com")

    def test_expired(self) -> None:
        """
        An expired certificate fails as expired, with the date.
        """
        old = self.leaf(
            "old",
            "users.svc.example.com",
            notBefore=datetime.datetime(2019, 1, 1, tzinfo=datetime.timezone.utc),
            notAfter=datetime.datetime(2020, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
        )
        lb = self.connect(self.originServer(old), self.clientConfig())
        self.assertFails(lb, errors.EXPIRED, "expired", "2020-01-02 03:04:05 UTC")
        self.assertNothingReachedOrigin(lb)

    def test_notYetValid(self) -> None:
        """
        A certificate valid only from a future date fails as not yet valid.
        """
        now = utcnow()
        future = self.leaf(
            "future",
            "users.svc.example.com",
            notBefore=now + datetime.timedelta(days=2),
            notAfter=now + datetime.timedelta(days=30),
        )
        lb = self.connect(self.originServer(future), self.clientConfig())
        self.assertFails(lb, errors.NOT_YET_VALID, "not yet valid", "valid from")

    def test_missingIntermediate(self) -> None:
        """
        An origin that does not send its intermediate is untrusted, with a
        hint about intermediates; sending it fixes the handshake.
        """
        intermediate = newCA(parent=self.ca)
        files = self.leaf("leaf", "users.svc.example.com", ca=intermediate)
        lb = self.connect(self.originServer(files), self.clientConfig())
        self.assertFails(lb, errors.UNTRUSTED, "intermediate")
        lb = self.connect(self.originServer(files, intermediateCertsPath=files.chain), self.clientConfig())
        self.assertTrue(lb.clientApp.handshakeDone)

    def test_protocolMismatch(self) -> None:
        """
        No TLS version in common is a protocol version mismatch listing the
        configured versions.
        """
        lb = self.connect(self.originServer(protocols=("TLSv1.3",)), self.clientConfig(protocols=("TLSv1.2",)))
        self.assertFails(lb, errors.PROTOCOL_MISMATCH, "protocol version mismatch", "TLSv1.2")
        self.assertNothingReachedOrigin(lb)

    def test_legacyOrigin(self) -> None:
        """
        Listing TLSv1 lets linkerpy reach an origin that only speaks TLS 1.0.
        """
        server = self.originServer(protocols=("TLSv1",))
        lb = self.connect(server, self.clientConfig())
        self.assertFails(lb, errors.PROTOCOL_MISMATCH)
        lb = self.connect(server, self.clientConfig(protocols=("TLSv1", "TLSv1.1", "TLSv1.2")))
        self.assertTrue(lb.clientApp.handshakeDone, lb.clientApp.lostReason)
        self.assertEqual(lb.client.getHandle().get_protocol_version_name(), "TLSv1")

    def test_plaintextOrigin(self) -> None:
        """
        An origin that answers in plaintext is reported as not TLS, and the
        request is not sent in plaintext.
        """
        from twisted.test import iosim

        class PlainHTTP(Protocol):
            received = b""

            def dataReceived(self, data: bytes) -> None:
                self.received += data
                self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

        creator = self.creators.creatorFor(self.clientConfig())
        clock = MemoryReactorClock()
        app = _Eager()
        factory = TLSMemoryBIOFactory(creator, True, _single(app), clock=clock)
        clientTLS = factory.buildProtocol(iosim.FakeAddress())
        server = PlainHTTP()
        pump = iosim.connect(
            server, iosim.FakeTransport(server, True), clientTLS, iosim.FakeTransport(clientTLS, False), clock=clock
        )
        pump.flush()
        self.assertNotIn(b"secret request", server.received)
        self.assertTrue(server.received.startswith(b"\x16\x03"), server.received[:10])
        explained = creator.explainFailure(app.lostReason)
        self.assertEqual(explained.kind, errors.NOT_TLS)
        self.assertIn("plaintext", explained.reason)

    def test_platformTrust(self) -> None:
        """
        Without trustCerts the system CAs are used, which do not include a
        test CA.
        """
        lb = self.connect(self.originServer(), self.clientConfig(trustCerts=()))
        self.assertFails(lb, errors.UNTRUSTED)

    def test_ipAddress(self) -> None:
        """
        A commonName that is an IP address is checked against IP
        subjectAltNames and not sent as SNI.
        """
        files = self.leaf("ip", "127.0.0.1")
        lb = self.connect(self.originServer(files), self.clientConfig(commonName="127.0.0.1"))
        self.assertTrue(lb.clientApp.handshakeDone, lb.clientApp.lostReason)
        self.assertIsNone(requestedServerName(lb.serverApp.transport))
        lb = self.connect(self.originServer(files), self.clientConfig(commonName="127.0.0.2"))
        self.assertFails(lb, errors.NAME_MISMATCH, "127.0.0.1")

    def test_alpn(self) -> None:
        """
        ALPN protocols given to L{ClientTLSCreators.creatorFor} are offered.
        """
        lb = self.connect(self.originServer(alpn=[b"http/1.1", b"h2"]), self.clientConfig(), alpn=[b"h2"])
        self.assertEqual(lb.client.negotiatedProtocol, b"h2")

    def test_disableValidation(self) -> None:
        """
        With C{disableValidation} an untrusted, mismatched certificate is
        accepted, and the commonName is still sent as SNI.
        """
        other = self.leaf("other", "x.example.com", ca=newCA())
        config = ClientTlsConfig(commonName="users.svc.example.com", disableValidation=True)
        lb = self.connect(self.originServer(other), config)
        self.assertTrue(lb.clientApp.handshakeDone)
        self.assertEqual(requestedServerName(lb.serverApp.transport), "users.svc.example.com")

    def test_disableValidationHostAsServerName(self) -> None:
        """
        With C{disableValidation} and no commonName, an origin host that is
        a DNS name is sent as SNI; an IP address is not.
        """
        config = ClientTlsConfig(disableValidation=True)
        lb = self.connect(self.originServer(), config, None, ("origin.example.com", 443))
        self.assertEqual(requestedServerName(lb.serverApp.transport), "origin.example.com")
        lb = self.connect(self.originServer(), config, None, ("10.1.2.3", 443))
        self.assertTrue(lb.clientApp.handshakeDone)
        self.assertIsNone(requestedServerName(lb.serverApp.transport))

    def test_verifyObject(self) -> None:
        """
        Creators provide C{IOpenSSLClientConnectionCreator}.
        """
        creator = self.creators.creatorFor(self.clientConfig())
        self.assertTrue(verifyObject(IOpenSSLClientConnectionCreator, creator))

    def test_wrapClientFactory(self) -> None:
        """
        L{wrapClientFactory} gives a client C{TLSMemoryBIOFactory} on the
        given clock.
        """
        clock = MemoryReactorClock()
        creator = self.creators.creatorFor(self.clientConfig())
        wrapped = wrapClientFactory(_single(Recorder()), creator, clock)
        self.assertIs(wrapped._clock, clock)


class ClientAuthTests(_Base):
    """
    Presenting a client certificate, and origins that refuse it.
    """

    def setUp(self) -> None:
        super().setUp()
        self.mine = self.leaf("mine", "linkerpy.example.com")
        self.strangerCA = newCA()
        self.stranger = self.leaf("stranger", "linkerpy.example.com", ca=self.strangerCA)

    def mtlsServer(self, protocols: Any = ("TLSv1.2", "TLSv1.3")) -> ServerTLS:
        return self.originServer(caCertPath=self.caPath, requireClientAuth=True, protocols=protocols)

    def test_presented(self) -> None:
        """
        The configured client certificate is presented and accepted.
        """
        config = self.clientConfig(clientAuth=ClientAuthConfig(self.mine.cert, self.mine.key))
        lb = self.connect(self.mtlsServer(), config)
        self.assertEqual(lb.clientApp.received, b"secret request")
        self.assertEqual(peerCertificate(lb.serverApp.transport), self.mine.certificate)

    def test_intermediates(self) -> None:
        """
        A client certificate's intermediates are sent with it.
        """
        intermediate = newCA(parent=self.ca)
        files = self.leaf("inter", "linkerpy.example.com", ca=intermediate)
        config = self.clientConfig(clientAuth=ClientAuthConfig(files.cert, files.key, files.chain))
        lb = self.connect(self.mtlsServer(), config)
        self.assertEqual(lb.clientApp.received, b"secret request")

    def test_required(self) -> None:
        """
        An origin that requires a client certificate when none is configured
        is explained as such, with TLS 1.3 and TLS 1.2.
        """
        for version in ("TLSv1.3", "TLSv1.2"):
            lb = self.connect(self.mtlsServer(), self.clientConfig(protocols=(version,)))
            self.assertNothingReachedOrigin(lb)
            explained = lb.creator.explainFailure(lb.clientApp.lostReason)
            if version == "TLSv1.3":
                self.assertEqual(explained.kind, errors.CLIENT_CERT_REJECTED)
                self.assertIn("requires a client certificate and none is configured", explained.reason)
            else:
                # TLS 1.2 servers answer with a generic handshake_failure.
                self.assertEqual(explained.kind, errors.HANDSHAKE_FAILED)
                self.assertIn("client certificate", explained.reason)

    def test_refused(self) -> None:
        """
        A client certificate from a CA the origin does not trust is
        explained as rejected by the origin (TLS 1.3 and 1.2).
        """
        for version in ("TLSv1.3", "TLSv1.2"):
            config = self.clientConfig(
                protocols=(version,), clientAuth=ClientAuthConfig(self.stranger.cert, self.stranger.key)
            )
            lb = self.connect(self.mtlsServer(), config)
            self.assertNothingReachedOrigin(lb)
            self.assertFails(lb, errors.CLIENT_CERT_REJECTED, "does not trust", "client certificate")

    def test_badFiles(self) -> None:
        """
        Unusable client files are configuration errors naming their keys.
        """
        config = self.clientConfig(
            trustCerts=(self.caPath, os.path.join(self.dir, "missing-ca.pem")),
            clientAuth=ClientAuthConfig(self.mine.cert, self.stranger.key),
        )
        e = self.assertRaises(
            ConfigError, self.creators.creatorFor, config, configPath="routers[0].client.configs[0].tls"
        )
        paths = sorted(p.path for p in e.problems)
        self.assertEqual(
            paths,
            ["routers[0].client.configs[0].tls.clientAuth.keyPath", "routers[0].client.configs[0].tls.trustCerts[1]"],
        )
        self.assertIn("does not match", str(e))
        self.assertIn("missing-ca.pem", str(e))

    def test_prepare(self) -> None:
        """
        L{ClientTLSCreators.prepare} reports file problems at start-up.
        """
        config = self.clientConfig(trustCertsBundle=os.path.join(self.dir, "nope.pem"))
        e = self.assertRaises(ConfigError, self.creators.prepare, config, "client.tls")
        self.assertEqual([p.path for p in e.problems], ["client.tls.trustCertsBundle"])
        self.creators.prepare(self.clientConfig(), "client.tls")


class SubstitutionAndCacheTests(_Base):
    """
    C{{var}} substitution in commonName, and caching of creators.
    """

    def test_substitution(self) -> None:
        """
        Captures replace C{{var}}s; the result is verified and sent as SNI.
        """
        config = self.clientConfig(commonName="{service}.svc.example.com")
        lb = self.connect(self.originServer(), config, {"service": "users"})
        self.assertTrue(lb.clientApp.handshakeDone)
        self.assertEqual(requestedServerName(lb.serverApp.transport), "users.svc.example.com")
        lb = self.connect(self.originServer(), config, {"service": "orders"})
        self.assertFails(lb, errors.NAME_MISMATCH, "expected 'orders.svc.example.com'")

    def test_severalVariables(self) -> None:
        """
        Several captures can appear, also inside one label.
        """
        self.assertEqual(
            substituteCommonName("{svc}-{env}.{ns}.example.com", {"svc": "users", "env": "prod", "ns": "core"}),
            "users-prod.core.example.com",
        )
        self.assertEqual(templateVariables("{svc}-{env}.{ns}.example.com"), ("svc", "env", "ns"))
        self.assertEqual(templateVariables("plain.example.com"), ())

    def test_missingCapture(self) -> None:
        """
        A variable the prefix does not capture is an error naming it.
        """
        config = self.clientConfig(commonName="{service}.example.com")
        e = self.assertRaises(TLSOriginationError, self.creators.creatorFor, config, {"other": "x"})
        self.assertEqual(e.kind, errors.BAD_NAME)
        self.assertIn("{service}", e.reason)

    def test_invalidName(self) -> None:
        """
        A substitution that does not give a host name is an error.
        """
        config = self.clientConfig(commonName="{service}.example.com")
        e = self.assertRaises(TLSOriginationError, self.creators.creatorFor, config, {"service": "a b/c"})
        self.assertIn("not a host name", e.reason)

    def test_cachedPerName(self) -> None:
        """
        The same configuration and name give the same creator; another name
        gives another creator sharing the files already read.
        """
        config = self.clientConfig(commonName="{service}.svc.example.com")
        a = self.creators.creatorFor(config, {"service": "users"})
        self.assertIs(self.creators.creatorFor(config, {"service": "users", "unused": "x"}), a)
        os.remove(self.caPath)
        b = self.creators.creatorFor(config, {"service": "orders"})
        self.assertIsNot(a, b)
        self.assertIsInstance(b, ClientTLSCreator)
        self.assertEqual(b.serverName, "orders.svc.example.com")

    def test_cacheBounded(self) -> None:
        """
        At most C{maxCreators} creators are kept, least recently used first
        out.
        """
        creators = ClientTLSCreators(MemoryReactorClock(), maxCreators=2)
        config = self.clientConfig(commonName="{s}.example.com")
        a = creators.creatorFor(config, {"s": "a"})
        creators.creatorFor(config, {"s": "b"})
        creators.creatorFor(config, {"s": "a"})
        creators.creatorFor(config, {"s": "c"})
        self.assertIs(creators.creatorFor(config, {"s": "a"}), a)
        self.assertEqual(len(creators._creators), 2)

    def test_disabled(self) -> None:
        """
        C{enabled: false} gives no creator (plaintext).
        """
        self.assertIsNone(self.creators.creatorFor(self.clientConfig(enabled=False)))

    def test_nameRequired(self) -> None:
        """
        A validating configuration without a commonName (built in code, not
        from YAML) refuses to make a creator rather than skip the name
        check.
        """
        config = ClientTlsConfig(trustCerts=(self.caPath,))
        e = self.assertRaises(TLSOriginationError, self.creators.creatorFor, config, None, ("origin.example.com", 1))
        self.assertEqual(e.kind, errors.BAD_NAME)


class ExplainTests(SynchronousTestCase):
    """
    Tests for L{explainTLSFailure} on failures built by hand.
    """

    def sslFailure(self, reason: str) -> Failure:
        return Failure(SSL.Error([("SSL routines", "", reason)]))

    def test_notTLS(self) -> None:
        """
        Failures that are not about TLS are not explained.
        """
        self.assertIsNone(explainTLSFailure(Failure(ConnectionRefusedError())))
        self.assertIsNone(explainTLSFailure(ValueError("x")))

    def test_passThrough(self) -> None:
        """
        A L{TLSOriginationError} is returned as it is.
        """
        error = TLSOriginationError("x", errors.EXPIRED)
        self.assertIs(explainTLSFailure(Failure(error)), error)

    def test_serviceIdentity(self) -> None:
        """
        A C{service_identity} verification error is a name mismatch.
        """
        from service_identity import VerificationError
        from service_identity.hazmat import DNS_ID, DNSMismatch

        failure = Failure(VerificationError(errors=[DNSMismatch(mismatched_id=DNS_ID("a.example.com"))]))
        explained = explainTLSFailure(failure, "a.example.com")
        self.assertEqual(explained.kind, errors.NAME_MISMATCH)
        self.assertIn("a.example.com", explained.reason)

    def test_alerts(self) -> None:
        """
        OpenSSL reasons map to kinds.
        """
        cases = [
            ("wrong version number", errors.NOT_TLS),
            ("tlsv1 alert protocol version", errors.PROTOCOL_MISMATCH),
            ("unsupported protocol", errors.PROTOCOL_MISMATCH),
            ("tlsv13 alert certificate required", errors.CLIENT_CERT_REJECTED),
            ("sslv3 alert bad certificate", errors.CLIENT_CERT_REJECTED),
            ("sslv3 alert certificate expired", errors.CLIENT_CERT_REJECTED),
            ("tlsv1 alert no application protocol", errors.NO_ALPN),
            ("certificate verify failed", errors.UNTRUSTED),
            ("tlsv1 alert internal error", errors.HANDSHAKE_FAILED),
            ("something new", errors.HANDSHAKE_FAILED),
        ]
        for reason, kind in cases:
            explained = explainTLSFailure(self.sslFailure(reason), "x.example.com", ("TLSv1.2",), True)
            self.assertEqual(explained.kind, kind, reason)
            self.assertEqual(explained.serverName, "x.example.com")

    def test_unknownReasonShown(self) -> None:
        """
        An unrecognised OpenSSL reason is included in the text.
        """
        explained = explainTLSFailure(self.sslFailure("something new"))
        self.assertIn("something new", explained.reason)


def _single(protocol: Protocol) -> Any:
    from twisted.internet.protocol import Factory

    class _F(Factory):
        def buildProtocol(self, addr: Any) -> Protocol:
            protocol.factory = self
            return protocol

    return _F()
