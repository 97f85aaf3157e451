# -*- test-case-name: tests.test_tls_client -*-
"""
Explaining why TLS to an origin failed, in words a user understands.

Certificate problems are diagnosed while the handshake runs (see
L{linkerpy.tls.client}) and arrive as a L{TLSOriginationError}; everything
else (alerts from the origin, version mismatches, a plaintext origin)
arrives as an C{OpenSSL.SSL.Error} whose reason strings
L{explainTLSFailure} translates.
"""

from __future__ import annotations

import datetime
from typing import Any, Iterable, List, Optional, Sequence, Tuple

from OpenSSL import SSL

from linkerpy.tls.pem import describeName, subjectAltNames

#: Kinds of failure (the C{kind} attribute).
UNTRUSTED = "untrusted-certificate"
NAME_MISMATCH = "name-mismatch"
EXPIRED = "expired-certificate"
NOT_YET_VALID = "certificate-not-yet-valid"
BAD_CERTIFICATE = "bad-certificate"
CLIENT_CERT_REJECTED = "client-certificate-rejected"
PROTOCOL_MISMATCH = "protocol-mismatch"
NOT_TLS = "not-tls"
NO_ALPN = "no-common-application-protocol"
HANDSHAKE_FAILED = "handshake-failed"
BAD_NAME = "bad-server-name"


class TLSOriginationError(Exception):
    """
    TLS to an origin failed.

    @ivar reason: what failed, for a user (the text for C{l5d-err}).
    @ivar kind: one of the module's kind constants.
    @ivar serverName: the name the certificate was checked against, if any.
    """

    def __init__(self, reason: str, kind: str = HANDSHAKE_FAILED, serverName: Optional[str] = None):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.serverName = serverName

    def __str__(self) -> str:
        return self.reason

    def __repr__(self) -> str:
        return f"TLSOriginationError({self.reason!r}, kind={self.kind!r})"


# X509_V_ERR_* codes (stable OpenSSL ABI) that get their own wording.
_UNABLE_TO_GET_ISSUER_CERT = 2
_CERT_SIGNATURE_FAILURE = 7
_CERT_NOT_YET_VALID = 9
_CERT_HAS_EXPIRED = 10
_DEPTH_ZERO_SELF_SIGNED_CERT = 18
_SELF_SIGNED_CERT_IN_CHAIN = 19
_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
_UNABLE_TO_VERIFY_LEAF_SIGNATURE = 21
_CERT_CHAIN_TOO_LONG = 22
_CERT_REVOKED = 23
_INVALID_CA = 24
_INVALID_PURPOSE = 26
_CERT_UNTRUSTED = 27
_CERT_REJECTED = 28

_OTHER_VERIFY_ERRORS = {
    _CERT_SIGNATURE_FAILURE: "its signature does not verify",
    _CERT_CHAIN_TOO_LONG: "the certificate chain is too long",
    _CERT_REVOKED: "it has been revoked",
    _INVALID_CA: "an issuer in the chain is not a CA certificate",
    _INVALID_PURPOSE: "it is not valid for TLS server authentication (key usage)",
    _CERT_UNTRUSTED: "it is not trusted for TLS server authentication",
    _CERT_REJECTED: "it is rejected for TLS server authentication",
}


def _when(moment: Optional[datetime.datetime]) -> str:
    if moment is None:
        return "?"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _validity(certificate: Any) -> Tuple[Optional[datetime.datetime], Optional[datetime.datetime]]:
    try:
        return certificate.not_valid_before_utc, certificate.not_valid_after_utc
    except AttributeError:  # cryptography < 42
        return certificate.not_valid_before, certificate.not_valid_after


def describeVerifyError(errno: int, certificate: Any, depth: int, serverName: Optional[str]) -> TLSOriginationError:
    """
    Explain an OpenSSL certificate verification error.

    @param errno: the C{X509_V_ERR_*} code given to the verify callback.
    @param certificate: the certificate it concerns (C{cryptography}).
    @param depth: its position in the chain (0 is the origin's own).
    @param serverName: the expected name.
    """
    subject = describeName(certificate.subject)
    issuer = describeName(certificate.issuer)
    which = f"the origin's certificate ({subject})" if depth == 0 else f"the chain certificate {subject!r}"
    if errno == _DEPTH_ZERO_SELF_SIGNED_CERT:
        return TLSOriginationError(
            f"untrusted certificate: {which} is self-signed and not among the trusted certificates",
            UNTRUSTED,
            serverName,
        )
    if errno == _SELF_SIGNED_CERT_IN_CHAIN:
        return TLSOriginationError(
            f"untrusted certificate: the origin's chain ends in the self-signed CA {subject!r}, "
            f"which is not among the trusted certificates (unknown CA)",
            UNTRUSTED,
            serverName,
        )
    if errno in (_UNABLE_TO_GET_ISSUER_CERT, _UNABLE_TO_GET_ISSUER_CERT_LOCALLY, _UNABLE_TO_VERIFY_LEAF_SIGNATURE):
        return TLSOriginationError(
            f"untrusted certificate: {which} is issued by {issuer!r}, which is not a trusted CA "
            f"(unknown CA, or the origin does not send its intermediate certificates)",
            UNTRUSTED,
            serverName,
        )
    notBefore, notAfter = _validity(certificate)
    if errno == _CERT_HAS_EXPIRED:
        return TLSOriginationError(
            f"expired certificate: {which} expired at {_when(notAfter)}",
            EXPIRED,
            serverName,
        )
    if errno == _CERT_NOT_YET_VALID:
        return TLSOriginationError(
            f"certificate not yet valid: {which} is valid from {_when(notBefore)}",
            NOT_YET_VALID,
            serverName,
        )
    detail = _OTHER_VERIFY_ERRORS.get(errno, f"OpenSSL verification error {errno}")
    return TLSOriginationError(f"bad certificate: {which} was rejected: {detail}", BAD_CERTIFICATE, serverName)


def describeNameMismatch(serverName: str, certificate: Any) -> TLSOriginationError:
    """
    Explain that the origin's certificate does not name C{serverName}.
    """
    names = subjectAltNames(certificate)
    if names:
        shown = ", ".join(n.split(":", 1)[1] for n in names[:8])
        more = f" and {len(names) - 8} more" if len(names) > 8 else ""
        return TLSOriginationError(
            f"name mismatch: expected {serverName!r}, the certificate is for {shown}{more}",
            NAME_MISMATCH,
            serverName,
        )
    return TLSOriginationError(
        f"name mismatch: expected {serverName!r}, the certificate ({describeName(certificate.subject)}) has no "
        f"subjectAltName (names are checked against subjectAltName only, not the subject CN)",
        NAME_MISMATCH,
        serverName,
    )


def sslReasons(error: BaseException) -> List[str]:
    """
    The OpenSSL reason strings of an C{SSL.Error} (C{['tlsv1 alert unknown
    ca']}), or C{[]}.
    """
    out = []
    try:
        for entry in error.args[0]:
            out.append(str(entry[2]))
    except Exception:
        pass
    return out


def _has(reasons: Iterable[str], *fragments: str) -> bool:
    return any(f in r for r in reasons for f in fragments)


_CLIENT_CERT_ALERTS = (
    ("alert unknown ca", "the origin does not trust the CA of our client certificate (unknown CA)"),
    ("alert bad certificate", "the origin rejected our client certificate (bad certificate)"),
    ("alert certificate expired", "the origin says our client certificate has expired"),
    ("alert certificate revoked", "the origin says our client certificate is revoked"),
    ("alert unsupported certificate", "the origin does not support our client certificate type"),
    ("alert certificate unknown", "the origin rejected our client certificate (certificate unknown)"),
    ("alert access denied", "the origin denied access for our client certificate"),
    ("alert decrypt error", "the origin could not verify our client certificate signature (decrypt error)"),
)


def explainTLSFailure(
    failure: Any,
    serverName: Optional[str] = None,
    protocols: Optional[Sequence[str]] = None,
    clientCertificate: Optional[bool] = None,
) -> Optional[TLSOriginationError]:
    """
    Turn the failure of a TLS connection to an origin into a
    L{TLSOriginationError}.

    @param failure: a L{twisted.python.failure.Failure} (or an exception)
        from C{connectionLost} or a connection attempt.
    @param serverName: the name the origin's certificate was checked
        against.
    @param protocols: the enabled protocol versions, for version mismatches.
    @param clientCertificate: whether a client certificate was configured
        (L{None}: unknown).
    @return: the explanation, or L{None} when the failure is not about TLS
        (connection refused, reset, timeout...).
    """
    error = getattr(failure, "value", failure)
    if isinstance(error, TLSOriginationError):
        return error
    try:
        from service_identity import VerificationError
        from service_identity.exceptions import CertificateError
    except ImportError:  # pragma: no cover
        VerificationError = CertificateError = ()  # type: ignore[assignment,misc]
    if isinstance(error, VerificationError):
        wanted = serverName or ", ".join(str(getattr(e, "mismatched_id", e)) for e in error.errors)
        return TLSOriginationError(
            f"name mismatch: the origin's certificate is not valid for {wanted!r}", NAME_MISMATCH, serverName
        )
    if isinstance(error, CertificateError):
        return TLSOriginationError(f"bad certificate: {error}", BAD_CERTIFICATE, serverName)
    if not isinstance(error, SSL.Error):
        return None
    reasons = sslReasons(error)
    text = "; ".join(reasons) or str(error)
    if _has(reasons, "certificate required"):
        return TLSOriginationError(
            "client certificate rejected: the origin requires a client certificate"
            + ("" if clientCertificate else " and none is configured (client.tls.clientAuth)"),
            CLIENT_CERT_REJECTED,
            serverName,
        )
    for fragment, message in _CLIENT_CERT_ALERTS:
        if _has(reasons, fragment):
            return TLSOriginationError(f"client certificate rejected: {message}", CLIENT_CERT_REJECTED, serverName)
    versions = ", ".join(protocols) if protocols else "its configured protocols"
    if _has(
        reasons,
        "alert protocol version",
        "unsupported protocol",
        "no protocols available",
        "wrong ssl version",
        "version too low",
        "tlsv1 alert insufficient security",
    ):
        return TLSOriginationError(
            f"protocol version mismatch: the origin accepts none of the TLS versions linkerpy "
            f"is configured for ({versions})",
            PROTOCOL_MISMATCH,
            serverName,
        )
    if _has(reasons, "wrong version number", "packet length too long", "record layer failure", "http request"):
        return TLSOriginationError(
            "the origin did not answer with TLS (is this a plaintext port?)", NOT_TLS, serverName
        )
    if _has(reasons, "no application protocol"):
        return TLSOriginationError(
            "no common application protocol: the origin accepts none of the ALPN protocols offered",
            NO_ALPN,
            serverName,
        )
    if _has(reasons, "certificate verify failed"):
        return TLSOriginationError(
            "untrusted certificate: the origin's certificate could not be verified", UNTRUSTED, serverName
        )
    if _has(reasons, "alert handshake failure", "sslv3 alert handshake failure"):
        hint = (
            "it may require a client certificate (none is configured), or share no cipher suite"
            if clientCertificate is False
            else "it shares no cipher suite, or refused our client certificate"
        )
        return TLSOriginationError(
            f"TLS handshake refused by the origin (handshake_failure alert): {hint}", HANDSHAKE_FAILED, serverName
        )
    if _has(reasons, "alert"):
        return TLSOriginationError(f"the origin aborted TLS: {text}", HANDSHAKE_FAILED, serverName)
    return TLSOriginationError(f"TLS with the origin failed: {text}", HANDSHAKE_FAILED, serverName)
