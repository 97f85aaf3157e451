# -*- test-case-name: tests.test_tls_server -*-
"""
OpenSSL context settings shared by servers and clients: protocol versions,
cipher lists and safe options.

pyOpenSSL refuses to change a context once a connection was made from it,
so every setting here is applied while the context is built.
"""

from __future__ import annotations

from typing import Any, Iterable, List, Optional, Sequence, Tuple

from OpenSSL import SSL, crypto

from linkerpy.tls.config import TLS_PROTOCOLS

#: OpenSSL version numbers of the C{protocols:} names.
PROTOCOL_VERSIONS = {
    "TLSv1": SSL.TLS1_VERSION,
    "TLSv1.1": SSL.TLS1_1_VERSION,
    "TLSv1.2": SSL.TLS1_2_VERSION,
    "TLSv1.3": SSL.TLS1_3_VERSION,
}

#: Versions that OpenSSL 3 refuses at its default security level.
LEGACY_PROTOCOLS = frozenset({"TLSv1", "TLSv1.1"})

#: TLS 1.2 cipher suites used when C{ciphers} is not given: forward-secret
#: AEAD suites only.  TLS 1.3 suites are OpenSSL's defaults.
DEFAULT_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"

#: Added when TLS 1.0 or 1.1 is enabled: those versions have no AEAD suites.
LEGACY_CIPHERS = "ECDHE+AES+SHA1"

_BASE_OPTIONS = SSL.OP_NO_SSLv2 | SSL.OP_NO_SSLv3 | SSL.OP_NO_COMPRESSION
_BASE_OPTIONS |= getattr(SSL, "OP_NO_RENEGOTIATION", 0)


def protocolRange(protocols: Sequence[str]) -> Tuple[int, int]:
    """
    The (minimum, maximum) OpenSSL versions for a C{protocols:} list (the
    config check guarantees a contiguous range).
    """
    ordered = sorted(protocols, key=TLS_PROTOCOLS.index)
    return PROTOCOL_VERSIONS[ordered[0]], PROTOCOL_VERSIONS[ordered[-1]]


def describeProtocols(protocols: Sequence[str]) -> str:
    """
    C{TLSv1.2, TLSv1.3} for messages.
    """
    return ", ".join(sorted(protocols, key=TLS_PROTOCOLS.index))


def usesLegacyProtocols(protocols: Iterable[str]) -> bool:
    """
    Whether TLS 1.0 or 1.1 is enabled (they need OpenSSL security level 0).
    """
    return any(p in LEGACY_PROTOCOLS for p in protocols)


def splitCiphers(ciphers: Sequence[str]) -> Tuple[List[str], List[str]]:
    """
    Split configured cipher names into TLS 1.2-and-older names and TLS 1.3
    suite names (C{TLS_AES_128_GCM_SHA256}), which OpenSSL configures
    separately.
    """
    legacy: List[str] = []
    modern: List[str] = []
    for name in ciphers:
        (modern if name.startswith("TLS_") else legacy).append(name)
    return legacy, modern


def checkCiphers(ciphers: Sequence[str]) -> List[Tuple[int, str]]:
    """
    Check each configured cipher name against this OpenSSL.

    @return: C{(index, message)} for every name OpenSSL does not know.
    """
    problems = []
    for i, name in enumerate(ciphers):
        ctx = SSL.Context(SSL.TLS_METHOD)
        try:
            if name.startswith("TLS_"):
                if not hasattr(ctx, "set_tls13_ciphersuites"):
                    problems.append((i, f"TLS 1.3 suite {name!r} cannot be chosen with this pyOpenSSL"))
                    continue
                ctx.set_tls13_ciphersuites(name.encode("ascii"))
            else:
                ctx.set_cipher_list(name.encode("ascii"))
        except (SSL.Error, UnicodeEncodeError):
            problems.append((i, f"unknown cipher {name!r} (use OpenSSL names, e.g. ECDHE-RSA-AES128-GCM-SHA256)"))
    return problems


def newContext(protocols: Sequence[str], server: bool = False) -> SSL.Context:
    """
    A fresh context with linkerpy's baseline: TLS only (no SSLv2/3), no
    compression, no renegotiation, the given version range.

    Call L{setCiphers} last, once everything else is configured: some
    pyOpenSSL releases treat a context whose cipher list was set as used,
    and refuse (or warn about) later changes.

    @param protocols: enabled versions (names from L{TLS_PROTOCOLS}).
    @param server: prefer the server's cipher order.
    """
    ctx = SSL.Context(SSL.TLS_METHOD)
    options = _BASE_OPTIONS
    if server:
        options |= SSL.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_options(options)
    ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
    low, high = protocolRange(protocols)
    ctx.set_min_proto_version(low)
    ctx.set_max_proto_version(high)
    return ctx


def setCiphers(ctx: SSL.Context, protocols: Sequence[str], ciphers: Optional[Sequence[str]] = None) -> None:
    """
    Set the cipher suites (and, for TLS 1.0/1.1, OpenSSL's security level 0).

    @param ciphers: OpenSSL cipher names, or L{None} for L{DEFAULT_CIPHERS}.
    """
    legacy = usesLegacyProtocols(protocols)
    if ciphers:
        old, modern = splitCiphers(ciphers)
        cipherString = ":".join(old) if old else DEFAULT_CIPHERS
        if modern and hasattr(ctx, "set_tls13_ciphersuites"):
            ctx.set_tls13_ciphersuites(":".join(modern).encode("ascii"))
    else:
        cipherString = DEFAULT_CIPHERS + (":" + LEGACY_CIPHERS if legacy else "")
    if legacy:
        # OpenSSL 3 disables TLS 1.0/1.1 (SHA-1 signatures) above level 0.
        cipherString += ":@SECLEVEL=0"
    ctx.set_cipher_list(cipherString.encode("ascii"))


# pyOpenSSL >= 24.3 takes cryptography objects (and deprecates its own);
# older releases only take X509/PKey.  Try the new form first.


def useCertificate(ctx: SSL.Context, certificate: Any) -> None:
    """
    Set the context's certificate (a C{cryptography} certificate).
    """
    try:
        ctx.use_certificate(certificate)
    except TypeError:
        ctx.use_certificate(crypto.X509.from_cryptography(certificate))


def addChainCertificate(ctx: SSL.Context, certificate: Any) -> None:
    """
    Append a certificate to the chain sent after the context's certificate.
    """
    try:
        ctx.add_extra_chain_cert(certificate)
    except TypeError:
        ctx.add_extra_chain_cert(crypto.X509.from_cryptography(certificate))


def usePrivateKey(ctx: SSL.Context, key: Any) -> None:
    """
    Set the context's private key (a C{cryptography} key).
    """
    try:
        ctx.use_privatekey(key)
    except TypeError:
        ctx.use_privatekey(crypto.PKey.from_cryptography_key(key))


def useIdentity(ctx: SSL.Context, identity: Any) -> None:
    """
    Present an L{linkerpy.tls.pem.Identity}: certificate, chain and key.

    @raise SSL.Error: OpenSSL refused them.
    """
    useCertificate(ctx, identity.certificate)
    for extra in identity.chain:
        addChainCertificate(ctx, extra)
    usePrivateKey(ctx, identity.privateKey)
    ctx.check_privatekey()


def trustCertificates(ctx: SSL.Context, certificates: Sequence[Any], advertise: bool = False) -> None:
    """
    Add CA certificates to the context's trust store.

    @param advertise: also name them as acceptable client certificate
        issuers (servers asking for client certificates).
    """
    store = ctx.get_cert_store()
    for certificate in certificates:
        store.add_cert(crypto.X509.from_cryptography(certificate))
        if advertise:
            try:
                ctx.add_client_ca(certificate)
            except TypeError:
                ctx.add_client_ca(crypto.X509.from_cryptography(certificate))
