# -*- test-case-name: tests.test_tls -*-
"""
Typed TLS configuration for servers (C{servers[].tls}), clients
(C{client.tls}) and the admin server.
"""

from __future__ import annotations

import re
from typing import Iterator, Optional, Tuple

import attrs

from linkerpy.config.structure import setting

#: Protocol names accepted in C{protocols:} lists.
TLS_PROTOCOLS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")


def _checkProtocols(value: Tuple[str, ...]) -> Optional[str]:
    bad = [p for p in value if p not in TLS_PROTOCOLS]
    if bad:
        return f"unknown TLS protocol(s) {bad}; expected some of {list(TLS_PROTOCOLS)}"
    if not value:
        return "must list at least one protocol"
    indexes = sorted({TLS_PROTOCOLS.index(p) for p in value})
    if indexes != list(range(indexes[0], indexes[-1] + 1)):
        return (
            f"protocols {list(value)} leave a gap; list a contiguous range of versions "
            f"(OpenSSL enables everything between the oldest and the newest)"
        )
    return None


_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


def checkServerNamePattern(pattern: str) -> Optional[str]:
    """
    Check one SNI server name: a host name, or C{*.} followed by a host name
    (the wildcard stands for exactly one label).

    @return: an error message, or L{None} when the pattern is valid.
    """
    name = pattern.lower().rstrip(".")
    if name.startswith("*."):
        name = name[2:]
        if "." not in name:
            return f"wildcard {pattern!r} must name at least two labels after '*.'"
    if not name or len(name) > 253:
        return f"{pattern!r} is not a host name"
    for label in name.split("."):
        if not _LABEL.match(label):
            if "*" in label:
                return f"{pattern!r}: '*' is only allowed as the whole leftmost label ('*.example.com')"
            return f"{pattern!r} is not a host name"
    return None


@attrs.frozen
class SniCertificate:
    """
    One certificate chosen by TLS server name.
    """

    serverNames: Tuple[str, ...] = setting(doc="names (wildcards like C{*.example.com} allowed)")
    certPath: str = setting(doc="PEM certificate")
    keyPath: str = setting(doc="PEM private key (PKCS#8 or PKCS#1)")
    intermediateCertsPath: Optional[str] = setting(None, doc="PEM chain sent after the certificate")

    def validateConfig(self) -> Iterator[Tuple[str, str]]:
        if not self.serverNames:
            yield "serverNames", "must list at least one server name"
        for i, pattern in enumerate(self.serverNames):
            message = checkServerNamePattern(pattern)
            if message:
                yield f"serverNames[{i}]", message


@attrs.frozen
class ServerTlsConfig:
    """
    TLS termination on a server.
    """

    certPath: Optional[str] = setting(None, doc="default certificate (PEM)")
    keyPath: Optional[str] = setting(None, doc="its private key (PEM, PKCS#8 or PKCS#1)")
    intermediateCertsPath: Optional[str] = setting(None, doc="PEM chain for the default certificate")
    caCertPath: Optional[str] = setting(None, doc="CA bundle trusted for client certificates")
    requireClientAuth: bool = setting(False, doc="demand a client certificate signed by caCertPath")
    protocols: Tuple[str, ...] = setting(("TLSv1.2", "TLSv1.3"), check=_checkProtocols, doc="enabled versions")
    ciphers: Optional[Tuple[str, ...]] = setting(None, doc="OpenSSL cipher names (TLS 1.2); default: OpenSSL's secure set")
    alpnProtocols: Optional[Tuple[str, ...]] = setting(
        None, doc="ALPN protocols accepted, most preferred first; default: what the router speaks"
    )
    sni: Tuple[SniCertificate, ...] = setting((), doc="extra certificates chosen by server name")
    reloadIntervalMs: int = setting(1000, doc="how often certificate files are checked for changes (0 = never)")
    enabled: bool = setting(True, doc="accepted for Linkerd compatibility")

    def validateConfig(self) -> Iterator[Tuple[str, str]]:
        if self.certPath is None and not self.sni:
            yield "certPath", "missing required key 'certPath' (or give sni certificates)"
        if self.certPath is not None and self.keyPath is None:
            yield "keyPath", "missing required key 'keyPath' for certPath"
        if self.requireClientAuth and self.caCertPath is None:
            yield "caCertPath", "requireClientAuth needs caCertPath (the CA that signs client certificates)"
        if self.reloadIntervalMs < 0:
            yield "reloadIntervalMs", "must be 0 (never reload) or a positive number of milliseconds"
        seen = {}
        for i, entry in enumerate(self.sni):
            for j, pattern in enumerate(entry.serverNames):
                key = pattern.lower().rstrip(".")
                if key in seen:
                    yield f"sni[{i}].serverNames[{j}]", f"{pattern!r} is already served by sni[{seen[key]}]"
                else:
                    seen[key] = i


@attrs.frozen
class ClientAuthConfig:
    """
    The certificate a client presents to TLS origins.
    """

    certPath: str = setting(doc="PEM client certificate")
    keyPath: str = setting(doc="PEM private key")
    intermediateCertsPath: Optional[str] = setting(None)


@attrs.frozen
class ClientTlsConfig:
    """
    TLS origination for a client (C{client.tls}).
    """

    enabled: bool = setting(True, doc="false forces plaintext for matching clients")
    commonName: Optional[str] = setting(None, doc="expected server name (also SNI); {var} captures substituted")
    trustCerts: Tuple[str, ...] = setting((), doc="PEM CA files to trust")
    trustCertsBundle: Optional[str] = setting(None, doc="one PEM bundle of CAs to trust")
    disableValidation: bool = setting(False, doc="skip certificate verification (testing only)")
    clientAuth: Optional[ClientAuthConfig] = setting(None, doc="present a client certificate")
    protocols: Tuple[str, ...] = setting(("TLSv1.2", "TLSv1.3"), check=_checkProtocols)

    def validateConfig(self) -> Iterator[Tuple[str, str]]:
        if self.enabled and not self.disableValidation and self.commonName is None:
            yield "commonName", "missing required key 'commonName' (or set disableValidation: true)"
        if self.disableValidation and self.clientAuth is not None:
            yield "clientAuth", "clientAuth cannot be combined with disableValidation"
