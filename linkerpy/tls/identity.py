# -*- test-case-name: tests.test_tls_identity -*-
"""
What the data plane learns from a TLS connection: the client's verified
certificate, the negotiated ALPN protocol, the requested server name, and
Linkerd's C{x-forwarded-client-cert} header value.
"""

from __future__ import annotations

import hashlib
from typing import Any, List, Optional

from cryptography import x509
from cryptography.hazmat.primitives import serialization

#: The header carrying the client certificate summary.
FORWARD_CLIENT_CERT_HEADER = b"x-forwarded-client-cert"


def peerCertificate(transport: Any) -> Optional[x509.Certificate]:
    """
    The client certificate of a TLS server connection, if the client sent
    one.

    A server built from a L{linkerpy.tls.server.ServerTLS} only asks for
    client certificates when C{caCertPath} is set, and then refuses the
    handshake unless the certificate verifies against it; so a certificate
    returned here has been verified.

    @param transport: the transport of the application protocol (a
        C{TLSMemoryBIOProtocol}), or anything else (then L{None}).
    @return: the certificate (C{cryptography}), or L{None}.
    """
    get = getattr(transport, "getPeerCertificate", None)
    if get is None:
        return None
    try:
        certificate = get()
    except Exception:
        return None
    if certificate is None:
        return None
    if isinstance(certificate, x509.Certificate):
        return certificate
    return certificate.to_cryptography()


def negotiatedProtocol(transport: Any) -> Optional[bytes]:
    """
    The ALPN protocol negotiated on a TLS connection (C{b"h2"}), or L{None}
    when none was (or the transport is not TLS, or the handshake is not
    done).
    """
    try:
        return getattr(transport, "negotiatedProtocol", None)
    except Exception:
        return None


def requestedServerName(transport: Any) -> Optional[str]:
    """
    The server name (SNI) the client asked for on a TLS server connection,
    lower-cased, or L{None}.
    """
    getHandle = getattr(transport, "getHandle", None)
    if getHandle is None:
        return None
    try:
        name = getHandle().get_servername()
    except Exception:
        return None
    if not name:
        return None
    return name.decode("ascii", "replace").lower()


def forwardClientCertHeader(certificate: x509.Certificate) -> bytes:
    """
    Linkerd's C{x-forwarded-client-cert} value for a client certificate::

        Hash=<SHA-256 of the DER certificate, upper-case hex>;SAN=<uri>;DNS=<name>;Subject="<DN>"

    Each URI subjectAltName adds a C{;SAN=} element and each DNS one a
    C{;DNS=} element, in the order the certificate lists them (other kinds of
    subjectAltName are left out); C{Subject} is the RFC 4514 distinguished
    name, most specific part first (C{CN=client,O=Acme,C=US}), omitted when
    empty.  Characters outside printable ASCII are written C{\\XX} (hex) so
    that the value is always a valid header value.

    Compute it once per connection, not per request.
    """
    der = certificate.public_bytes(serialization.Encoding.DER)
    parts: List[str] = ["Hash=" + hashlib.sha256(der).hexdigest().upper()]
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        for name in san:
            if isinstance(name, x509.UniformResourceIdentifier):
                parts.append("SAN=" + _headerSafe(name.value))
            elif isinstance(name, x509.DNSName):
                parts.append("DNS=" + _headerSafe(name.value))
    try:
        subject = certificate.subject.rfc4514_string()
    except Exception:
        subject = ""
    if subject:
        parts.append('Subject="' + _headerSafe(subject) + '"')
    return ";".join(parts).encode("ascii")


def _headerSafe(text: str) -> str:
    if all(" " <= c <= "~" for c in text):
        return text
    out = []
    for c in text:
        if " " <= c <= "~":
            out.append(c)
        else:
            out.extend(f"\\{b:02X}" for b in c.encode("utf-8"))
    return "".join(out)
