# -*- test-case-name: tests.test_tls_server -*-
"""
Helpers for tests that need TLS: certificate files made with C{trustme}
(a test dependency, imported lazily), an in-memory TLS connection between
two connection creators, and a probing client creator that reports what the
server sent.

Nothing here is used by the router itself.
"""

from __future__ import annotations

import datetime
import os
from typing import Any, List, Optional, Sequence, Tuple

import attrs
from zope.interface import implementer

from OpenSSL import SSL, crypto
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet.interfaces import IHandshakeListener, IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from linkerpy.tls.contexts import PROTOCOL_VERSIONS


@attrs.frozen
class CertFiles:
    """
    Paths of a certificate written by L{writeLeaf}.

    @ivar cert: the leaf certificate (PEM).
    @ivar key: its private key.
    @ivar chain: the intermediates (PEM, possibly empty file) or L{None}.
    @ivar certificate: the parsed leaf.
    """

    cert: str
    key: str
    chain: Optional[str]
    certificate: x509.Certificate


def newCA(rsa: bool = False, parent: Any = None) -> Any:
    """
    A C{trustme.CA} (EC keys unless C{rsa}); with C{parent}, an intermediate.
    """
    import trustme

    keyType = trustme.KeyType.RSA if rsa else trustme.KeyType.ECDSA
    if parent is not None:
        return parent.create_child_ca(key_type=keyType)
    return trustme.CA(key_type=keyType)


def writeCA(ca: Any, path: str) -> str:
    """
    Write a CA's certificate to C{path}; return C{path}.
    """
    with open(path, "wb") as f:
        f.write(ca.cert_pem.bytes())
    return path


def writeLeaf(
    directory: str,
    stem: str,
    ca: Any,
    *names: str,
    keyFormat: str = "pkcs8",
    rsa: bool = False,
    commonName: Optional[str] = None,
    notBefore: Optional[datetime.datetime] = None,
    notAfter: Optional[datetime.datetime] = None,
) -> CertFiles:
    """
    Issue a leaf certificate from C{ca} and write C{stem.crt}, C{stem.key}
    and (for an intermediate C{ca}) C{stem.chain.pem} in C{directory}.

    @param names: subjectAltNames: DNS names, IP addresses, or URIs
        (C{scheme://...}).
    @param keyFormat: C{pkcs8} (C{BEGIN PRIVATE KEY}) or C{traditional}
        (PKCS#1 C{BEGIN RSA PRIVATE KEY} for RSA, SEC1 C{BEGIN EC PRIVATE
        KEY} for EC).
    """
    import trustme

    keyType = trustme.KeyType.RSA if rsa else trustme.KeyType.ECDSA
    leaf = ca.issue_cert(
        *names, common_name=commonName, not_before=notBefore, not_after=notAfter, key_type=keyType
    )
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    fmt = serialization.PrivateFormat.PKCS8 if keyFormat == "pkcs8" else serialization.PrivateFormat.TraditionalOpenSSL
    keyPem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    pems = [p.bytes() for p in leaf.cert_chain_pems]
    certPath = os.path.join(directory, stem + ".crt")
    keyPath = os.path.join(directory, stem + ".key")
    writeBytes(certPath, pems[0])
    writeBytes(keyPath, keyPem)
    chainPath = None
    if len(pems) > 1:
        chainPath = os.path.join(directory, stem + ".chain.pem")
        writeBytes(chainPath, b"".join(pems[1:]))
    return CertFiles(certPath, keyPath, chainPath, x509.load_pem_x509_certificate(pems[0]))


def writeBytes(path: str, data: bytes) -> None:
    """
    Replace a file's contents atomically (write a temporary file, rename).
    """
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def commonNameOf(certificate: Any) -> Optional[str]:
    """
    The first subject CN of a certificate (C{cryptography} or pyOpenSSL).
    """
    if isinstance(certificate, crypto.X509):
        certificate = certificate.to_cryptography()
    attrs_ = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(attrs_[0].value) if attrs_ else None


def altNamesOf(certificate: Any) -> List[str]:
    """
    The DNS subjectAltNames of a certificate (C{cryptography} or pyOpenSSL).
    """
    if isinstance(certificate, crypto.X509):
        certificate = certificate.to_cryptography()
    try:
        ext = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(ext.get_values_for_type(x509.DNSName))


@implementer(IOpenSSLClientConnectionCreator)
class ProbeClient:
    """
    A permissive test client: verifies nothing, optionally sends SNI, ALPN
    offers, a client certificate, and limits the protocol versions.
    """

    def __init__(
        self,
        serverName: Optional[str] = None,
        alpn: Sequence[bytes] = (),
        protocols: Sequence[str] = ("TLSv1.2", "TLSv1.3"),
        clientCert: Optional[CertFiles] = None,
        ciphers: Optional[str] = None,
    ) -> None:
        ctx = SSL.Context(SSL.TLS_METHOD)
        versions = sorted(PROTOCOL_VERSIONS[p] for p in protocols)
        ctx.set_min_proto_version(versions[0])
        ctx.set_max_proto_version(versions[-1])
        ctx.set_verify(SSL.VERIFY_NONE)
        if alpn:
            ctx.set_alpn_protos(list(alpn))
        if clientCert is not None:
            ctx.use_certificate_file(clientCert.cert)
            ctx.use_privatekey_file(clientCert.key)
            if clientCert.chain:
                with open(clientCert.chain, "rb") as f:
                    for c in x509.load_pem_x509_certificates(f.read()):
                        ctx.add_extra_chain_cert(crypto.X509.from_cryptography(c))
        if versions[0] < SSL.TLS1_2_VERSION:
            ctx.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
        elif ciphers:
            ctx.set_cipher_list(ciphers.encode("ascii"))
        self._ctx = ctx
        self._serverName = serverName

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self._ctx, None)
        connection.set_app_data(tlsProtocol)
        if self._serverName:
            connection.set_tlsext_host_name(self._serverName.encode("ascii"))
        return connection


@implementer(IHandshakeListener)
class Recorder(Protocol):
    """
    Records what happens on a connection: bytes received, handshake, loss.
    """

    def __init__(self) -> None:
        self.received = b""
        self.handshakeDone = False
        self.lostReason: Optional[Failure] = None
        self.made = False

    def connectionMade(self) -> None:
        self.made = True

    def handshakeCompleted(self) -> None:
        self.handshakeDone = True

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure) -> None:
        self.lostReason = reason


class Echo(Recorder):
    """
    A recorder that writes back what it receives.
    """

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        self.transport.write(data)


@attrs.define(slots=False)
class LoopbackTLS:
    """
    Both ends of an in-memory TLS connection.

    @ivar server: the server's TLS protocol (a C{TLSMemoryBIOProtocol}).
    @ivar client: the client's TLS protocol.
    @ivar serverApp: the application protocol on the server side.
    @ivar clientApp: the application protocol on the client side.
    @ivar pump: the L{twisted.test.iosim.IOPump} moving bytes.
    """

    server: Any
    client: Any
    serverApp: Any
    clientApp: Any
    pump: Any

    def flush(self) -> "LoopbackTLS":
        self.pump.flush()
        return self

    def peerCertificate(self) -> Optional[x509.Certificate]:
        """
        The certificate the server presented to the client.
        """
        cert = self.client.getPeerCertificate()
        return cert.to_cryptography() if cert is not None else None


def loopbackTLS(
    serverCreator: Any,
    clientCreator: Any,
    serverApp: Optional[Protocol] = None,
    clientApp: Optional[Protocol] = None,
    clock: Any = None,
) -> LoopbackTLS:
    """
    Connect a TLS server and a TLS client in memory and run the handshake.

    @param clock: the clock of both TLS layers (their small writes are
        flushed by a C{callLater(0)}) and of the pump; a new
        C{MemoryReactorClock} by default.
    """
    from twisted.internet.testing import MemoryReactorClock
    from twisted.test import iosim

    if clock is None:
        clock = MemoryReactorClock()
    serverApp = serverApp if serverApp is not None else Echo()
    clientApp = clientApp if clientApp is not None else Recorder()
    serverFactory = TLSMemoryBIOFactory(serverCreator, False, _OneProtocol(serverApp), clock=clock)
    clientFactory = TLSMemoryBIOFactory(clientCreator, True, _OneProtocol(clientApp), clock=clock)
    serverTLS = serverFactory.buildProtocol(iosim.FakeAddress())
    clientTLS = clientFactory.buildProtocol(iosim.FakeAddress())
    pump = iosim.connect(
        serverTLS,
        iosim.FakeTransport(serverTLS, isServer=True),
        clientTLS,
        iosim.FakeTransport(clientTLS, isServer=False),
        greet=False,
        clock=clock,
    )
    pump.flush()
    return LoopbackTLS(serverTLS, clientTLS, serverApp, clientApp, pump)


class _OneProtocol(Factory):
    def __init__(self, protocol: Protocol) -> None:
        self._protocol = protocol

    def buildProtocol(self, addr: Any) -> Protocol:
        self._protocol.factory = self
        return self._protocol


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def pemChain(files: CertFiles) -> Tuple[bytes, ...]:
    """
    The PEM bytes of a leaf's certificate and chain files.
    """
    out = []
    for p in (files.cert, files.chain):
        if p:
            with open(p, "rb") as f:
                out.append(f.read())
    return tuple(out)


def makeCertificate(
    subject: Sequence[Tuple[Any, str]] = (),
    altNames: Sequence[Any] = (),
) -> Tuple[x509.Certificate, Any]:
    """
    A self-signed EC certificate with any subject and subjectAltNames (for
    cases C{trustme} cannot express, such as URI names).

    @param subject: C{(NameOID.X, value)} pairs, in DER order.
    @param altNames: C{x509.GeneralName} instances.
    @return: the certificate and its key.
    """
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(oid, value) for oid, value in subject])
    now = utcnow()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if altNames:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(altNames)), critical=False)
    return builder.sign(key, hashes.SHA256()), key
