# -*- test-case-name: tests.test_tls_server -*-
"""
Reading PEM certificates and private keys, with errors a user can act on.

Every failure is a L{PemError} naming the file; the callers (server and
client) turn it into a L{linkerpy.config.errors.ConfigError} whose key path
is the configuration key that named the file.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from linkerpy.config.errors import ConfigError, Problem, joinPath

#: Larger files are refused: certificates and keys are a few kilobytes.
MAX_PEM_BYTES = 1024 * 1024

_PEM_MARK = b"-----BEGIN "


class PemError(Exception):
    """
    A certificate or key file could not be used.

    @ivar key: the configuration key (relative, e.g. C{keyPath}) that named
        the file, or L{None}.
    @ivar message: the explanation, starting with the file name.
    """

    def __init__(self, message: str, key: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.key = key
        self.more: List["PemError"] = []

    def all(self) -> List["PemError"]:
        """
        This error and the others found with it.
        """
        return [self] + self.more


def _raiseAll(errors: List[PemError]) -> None:
    if errors:
        first = errors[0]
        first.more = errors[1:]
        raise first


def readPem(path: str, key: Optional[str] = None) -> bytes:
    """
    Read a PEM file.

    @param path: the file.
    @param key: the configuration key naming it, for the error.
    @raise PemError: the file is missing, unreadable, too large or not PEM.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PEM_BYTES + 1)
    except FileNotFoundError:
        raise PemError(f"{path}: no such file", key)
    except IsADirectoryError:
        raise PemError(f"{path}: is a directory, expected a PEM file", key)
    except PermissionError:
        raise PemError(f"{path}: permission denied (the file is not readable by this process)", key)
    except OSError as e:
        raise PemError(f"{path}: cannot be read: {e.strerror or e}", key)
    if len(data) > MAX_PEM_BYTES:
        raise PemError(f"{path}: larger than {MAX_PEM_BYTES} bytes, not a certificate or key file", key)
    if _PEM_MARK not in data:
        if not data.strip():
            raise PemError(f"{path}: is empty, expected PEM", key)
        if data[:1] == b"\x30":
            raise PemError(
                f"{path}: looks like DER (binary), expected PEM; convert it with "
                f"'openssl x509 -inform der' (certificates) or 'openssl pkey -inform der' (keys)",
                key,
            )
        raise PemError(f"{path}: not a PEM file (no '-----BEGIN ...-----' line)", key)
    return data


def parseCertificates(data: bytes, path: str, key: Optional[str] = None) -> List[x509.Certificate]:
    """
    Parse every certificate in PEM data.

    @raise PemError: there is no certificate, or one is malformed (for
        example a half-written file).
    """
    if b"-----BEGIN CERTIFICATE-----" not in data:
        if b"PRIVATE KEY-----" in data:
            raise PemError(f"{path}: contains a private key, expected a certificate", key)
        raise PemError(f"{path}: contains no '-----BEGIN CERTIFICATE-----' block", key)
    try:
        return list(x509.load_pem_x509_certificates(data))
    except ValueError as e:
        raise PemError(f"{path}: malformed certificate ({_short(e)})", key)


def parsePrivateKey(data: bytes, path: str, key: Optional[str] = None) -> Any:
    """
    Parse a PEM private key: PKCS#8 (C{BEGIN PRIVATE KEY}), PKCS#1 (C{BEGIN
    RSA PRIVATE KEY}) or SEC1 (C{BEGIN EC PRIVATE KEY}).

    @return: a C{cryptography} private key.
    @raise PemError: no key, an encrypted key, or a malformed one.
    """
    if b"PRIVATE KEY-----" not in data:
        if b"-----BEGIN CERTIFICATE-----" in data:
            raise PemError(f"{path}: contains a certificate, expected a private key", key)
        raise PemError(f"{path}: contains no '-----BEGIN ... PRIVATE KEY-----' block", key)
    if b"ENCRYPTED PRIVATE KEY" in data or b"Proc-Type: 4,ENCRYPTED" in data:
        raise PemError(f"{path}: the private key is encrypted; give an unencrypted key", key)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise PemError(f"{path}: malformed private key ({_short(e)})", key)
    except Exception as e:  # cryptography.exceptions.UnsupportedAlgorithm
        raise PemError(f"{path}: unsupported private key ({_short(e)})", key)


def keyMatchesCertificate(certificate: x509.Certificate, privateKey: Any) -> bool:
    """
    Whether C{privateKey} is the key of C{certificate}.
    """
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        return bool(certificate.public_key().public_bytes(*spki) == privateKey.public_key().public_bytes(*spki))
    except Exception:
        return False


@attrs.frozen
class IdentityFiles:
    """
    The files of one certificate: paths and the configuration keys naming them.
    """

    certPath: str
    keyPath: str
    intermediateCertsPath: Optional[str] = None
    certKey: str = "certPath"
    keyKey: str = "keyPath"
    intermediatesKey: str = "intermediateCertsPath"

    def paths(self) -> Tuple[str, ...]:
        return tuple(p for p in (self.certPath, self.keyPath, self.intermediateCertsPath) if p)


@attrs.frozen
class Identity:
    """
    A certificate, the chain sent after it, and its private key.

    @ivar certificate: the leaf certificate (C{cryptography}).
    @ivar chain: intermediates, sent after the leaf.
    @ivar privateKey: the key (C{cryptography}).
    @ivar contents: the bytes of the files it was read from, in
        L{IdentityFiles.paths} order (compared to notice changes).
    """

    certificate: x509.Certificate
    chain: Tuple[x509.Certificate, ...]
    privateKey: Any = attrs.field(repr=False)
    contents: Tuple[bytes, ...] = attrs.field(repr=False, eq=False)


def readIdentityFiles(files: IdentityFiles) -> Tuple[bytes, ...]:
    """
    Read the files of an identity (no parsing).

    @raise PemError: one cannot be read or is not PEM (with the others in
        C{more}).
    """
    wanted = [(files.certPath, files.certKey), (files.keyPath, files.keyKey)]
    if files.intermediateCertsPath:
        wanted.append((files.intermediateCertsPath, files.intermediatesKey))
    out, errors = [], []
    for path, key in wanted:
        try:
            out.append(readPem(path, key))
        except PemError as e:
            errors.append(e)
    _raiseAll(errors)
    return tuple(out)


def parseIdentity(files: IdentityFiles, contents: Sequence[bytes]) -> Identity:
    """
    Parse the contents read by L{readIdentityFiles} and check that the key
    belongs to the certificate.

    A certificate file holding several certificates is a leaf followed by
    its chain; C{intermediateCertsPath} certificates are sent after those.

    @raise PemError: a malformed file, or a key that does not match (with
        any other problems in C{more}).
    """
    errors = []
    certs: List[x509.Certificate] = []
    key = None
    chain: List[x509.Certificate] = []
    try:
        certs = parseCertificates(contents[0], files.certPath, files.certKey)
    except PemError as e:
        errors.append(e)
    try:
        key = parsePrivateKey(contents[1], files.keyPath, files.keyKey)
    except PemError as e:
        errors.append(e)
    if files.intermediateCertsPath:
        try:
            chain = parseCertificates(contents[2], files.intermediateCertsPath, files.intermediatesKey)
        except PemError as e:
            errors.append(e)
    _raiseAll(errors)
    chain = certs[1:] + chain
    if not keyMatchesCertificate(certs[0], key):
        raise PemError(
            f"{files.keyPath}: private key does not match the certificate in {files.certPath}",
            files.keyKey,
        )
    return Identity(certs[0], tuple(chain), key, tuple(contents))


def loadIdentity(files: IdentityFiles) -> Identity:
    """
    Read and parse an identity.

    @raise PemError: see L{readIdentityFiles} and L{parseIdentity}.
    """
    return parseIdentity(files, readIdentityFiles(files))


def loadCertificates(path: str, key: Optional[str] = None) -> List[x509.Certificate]:
    """
    Read every certificate in a PEM file (a CA bundle).

    @raise PemError: see L{readPem} and L{parseCertificates}.
    """
    return parseCertificates(readPem(path, key), path, key)


def configError(errors: Sequence[PemError], basePath: str) -> ConfigError:
    """
    Build a L{ConfigError} from file problems, each under C{basePath}
    joined with the key that named the file.
    """
    return ConfigError(
        [
            Problem(joinPath(basePath, e.key) if e.key else basePath, e.message)
            for error in errors
            for e in error.all()
        ]
    )


def describeName(name: x509.Name) -> str:
    """
    A distinguished name as RFC 4514 text (C{CN=foo,O=Bar}), or
    C{<empty subject>}.
    """
    try:
        text = name.rfc4514_string()
    except Exception:
        text = ""
    return text or "<empty subject>"


def subjectAltNames(certificate: x509.Certificate) -> List[str]:
    """
    The DNS and IP subjectAltNames of a certificate as C{DNS:name} and
    C{IP:address} strings (empty when there is no such extension).
    """
    try:
        ext = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    except Exception:
        return []
    names = [f"DNS:{n}" for n in ext.get_values_for_type(x509.DNSName)]
    names += [f"IP:{a}" for a in ext.get_values_for_type(x509.IPAddress)]
    return names


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
