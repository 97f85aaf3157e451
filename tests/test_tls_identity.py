# -*- test-case-name: tests.test_tls_identity -*-
"""
Tests for L{linkerpy.tls.identity}: the peer's certificate and the
C{x-forwarded-client-cert} header.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import shutil
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from linkerpy.tls.config import ServerTlsConfig
from linkerpy.tls.identity import (
    forwardClientCertHeader,
    negotiatedProtocol,
    peerCertificate,
    requestedServerName,
)
from linkerpy.tls.server import ServerTLS
from linkerpy.tls.testing import ProbeClient, loopbackTLS, makeCertificate, newCA, writeCA, writeLeaf


def _hash(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest().upper()


class ForwardClientCertTests(SynchronousTestCase):
    """
    Tests for L{forwardClientCertHeader}.
    """

    def test_linkerdFormat(self) -> None:
        """
        The value is C{Hash=...;SAN=<uri>;DNS=<dns>...;Subject="<dn>"} with
        the SHA-256 of the DER certificate in upper-case hex, one element per
        name in certificate order, and the subject most specific part first
        (as in Linkerd's ForwardClientCertTest).
        """
        cert, _ = makeCertificate(
            [(NameOID.COUNTRY_NAME, "US"), (NameOID.COMMON_NAME, "upstream")],
            [
                x509.UniformResourceIdentifier("https://buoyant.io"),
                x509.DNSName("upstream"),
                x509.DNSName("linkerd"),
            ],
        )
        self.assertEqual(
            forwardClientCertHeader(cert),
            f'Hash={_hash(cert)};SAN=https://buoyant.io;DNS=upstream;DNS=linkerd;Subject="CN=upstream,C=US"'.encode(),
        )

    def test_interleavedOrder(self) -> None:
        """
        URI and DNS names keep the certificate's order; other kinds (IP,
        e-mail) are left out.
        """
        cert, _ = makeCertificate(
            [(NameOID.COMMON_NAME, "c")],
            [
                x509.DNSName("a.example.com"),
                x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
                x509.UniformResourceIdentifier("spiffe://cluster.local/ns/default/sa/web"),
                x509.RFC822Name("ops@example.com"),
                x509.DNSName("b.example.com"),
            ],
        )
        value = forwardClientCertHeader(cert).decode()
        self.assertEqual(
            value.split(";")[1:],
            ["DNS=a.example.com", "SAN=spiffe://cluster.local/ns/default/sa/web", "DNS=b.example.com", 'Subject="CN=c"'],
        )

    def test_noNames(self) -> None:
        """
        Without subjectAltNames or subject, only the hash is given.
        """
        cert, _ = makeCertificate()
        self.assertEqual(forwardClientCertHeader(cert), f"Hash={_hash(cert)}".encode())

    def test_escaping(self) -> None:
        """
        Characters that are not printable ASCII are written as hex escapes,
        so a certificate cannot inject header lines; RFC 4514 escapes quotes.
        """
        cert, _ = makeCertificate(
            [(NameOID.COMMON_NAME, 'evil"\r\nx-injected: 1'), (NameOID.ORGANIZATION_NAME, "Zürich")],
            [x509.DNSName("ok.example.com")],
        )
        value = forwardClientCertHeader(cert)
        self.assertNotIn(b"\r", value)
        self.assertNotIn(b"\n", value)
        self.assertTrue(all(0x20 <= b < 0x7F for b in value))
        self.assertIn(b"\\0D\\0A", value)
        self.assertIn(b'\\"', value)
        self.assertIn(b"Z\\C3\\BCrich", value)


class PeerTests(SynchronousTestCase):
    """
    Tests for L{peerCertificate}, L{negotiatedProtocol} and
    L{requestedServerName} on real TLS transports.
    """

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="linkerpy-tls-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        ca = newCA()
        caPath = writeCA(ca, os.path.join(self.dir, "ca.pem"))
        server = writeLeaf(self.dir, "server", ca, "server.example.com")
        self.client = writeLeaf(self.dir, "client", ca, "client.example.com")
        self.tls = ServerTLS(
            ServerTlsConfig(certPath=server.cert, keyPath=server.key, caCertPath=caPath),
            MemoryReactorClock(),
            alpn=[b"h2"],
        )

    def test_clientCertificate(self) -> None:
        """
        The client's certificate is returned once verified, and the header
        describes it.
        """
        lb = loopbackTLS(self.tls, ProbeClient("server.example.com", clientCert=self.client, alpn=[b"h2"]))
        cert = peerCertificate(lb.serverApp.transport)
        self.assertEqual(cert, self.client.certificate)
        self.assertIn(b";DNS=client.example.com;", forwardClientCertHeader(cert))
        self.assertEqual(negotiatedProtocol(lb.serverApp.transport), b"h2")
        self.assertEqual(requestedServerName(lb.serverApp.transport), "server.example.com")

    def test_noClientCertificate(self) -> None:
        """
        Without a client certificate there is none to report.
        """
        lb = loopbackTLS(self.tls, ProbeClient(None))
        self.assertIsNone(peerCertificate(lb.serverApp.transport))
        self.assertIsNone(negotiatedProtocol(lb.serverApp.transport))

    def test_plaintext(self) -> None:
        """
        A plaintext transport has no certificate, protocol or server name.
        """
        transport = StringTransport()
        self.assertIsNone(peerCertificate(transport))
        self.assertIsNone(negotiatedProtocol(transport))
        self.assertIsNone(requestedServerName(transport))
