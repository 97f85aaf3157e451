# -*- test-case-name: tests.test_tls_client -*-
"""
TLS origination: connection creators for upstream connections, built from a
L{ClientTlsConfig} and the capture variables of the matched client prefix.

Use::

    tlsClients = ClientTLSCreators(reactor)
    creator = tlsClients.creatorFor(config, {"service": "users"},
                                    configPath="routers[0].client.configs[1].tls")
    endpoint = wrapClientTLS(creator, HostnameEndpoint(reactor, host, port))

The origin's certificate chain is verified against C{trustCerts} /
C{trustCertsBundle} (or the system's CAs when neither is given), and its
subjectAltNames against C{commonName} with C{service_identity}.  When that
fails the connection is lost with a L{TLSOriginationError} that says what was
wrong; L{ClientTLSCreator.explainFailure} explains every other TLS failure.
There is never a fallback to plaintext.

Contexts are built once per (configuration, ALPN list) and creators once per
(configuration, substituted name, ALPN list): nothing is built per request.
"""

from __future__ import annotations

import collections
import ipaddress
import re
import weakref
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from zope.interface import implementer

from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.logger import Logger
from twisted.python.failure import Failure

from linkerpy.config.errors import ConfigError, Problem
from linkerpy.tls.config import ClientTlsConfig
from linkerpy.tls.contexts import describeProtocols, newContext, setCiphers, trustCertificates, useIdentity
from linkerpy.tls.errors import (
    BAD_NAME,
    TLSOriginationError,
    describeNameMismatch,
    describeVerifyError,
    explainTLSFailure,
)
from linkerpy.tls.pem import IdentityFiles, PemError, configError, loadCertificates, loadIdentity

_log = Logger()

#: A C{{name}} capture in C{commonName}; names as in client prefixes.
CAPTURE = re.compile(r"\{([A-Za-z0-9._:-]+)\}")

_LABEL = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


def templateVariables(template: str) -> Tuple[str, ...]:
    """
    The capture names a C{commonName} template uses, in order.
    """
    return tuple(m.group(1) for m in CAPTURE.finditer(template))


def substituteCommonName(template: str, captures: Optional[Mapping[str, str]] = None) -> str:
    """
    Replace each C{{var}} in a C{commonName} with its capture.

    @raise TLSOriginationError: a variable has no capture, or the result is
        not a host name or IP address.
    """
    captures = captures or {}
    missing = [v for v in templateVariables(template) if v not in captures]
    if missing:
        raise TLSOriginationError(
            f"commonName {template!r} uses {{{missing[0]}}}, which the client prefix does not capture",
            BAD_NAME,
        )
    name = CAPTURE.sub(lambda m: captures[m.group(1)], template)
    if not isValidServerName(name):
        raise TLSOriginationError(
            f"commonName {name!r} (from {template!r}) is not a host name or IP address", BAD_NAME, name
        )
    return name


def isValidServerName(name: str) -> bool:
    """
    Whether C{name} is a DNS name (IDNA allowed) or an IP address.
    """
    if _isIPAddress(name):
        return True
    try:
        ascii_ = name.rstrip(".").encode("idna").decode("ascii")
    except (UnicodeError, ValueError):
        return False
    if not ascii_ or len(ascii_) > 253:
        return False
    return all(_LABEL.match(label) for label in ascii_.split("."))


def _isIPAddress(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class _Handshake:
    """
    Per-connection state for the context's verify callback.

    Twisted sets each connection's app data to its TLS protocol, so the
    state is found in L{_handshakes}, keyed weakly by connection; it refers
    to the protocol weakly so that the entry dies with the connection.
    """

    __slots__ = ("protocolRef", "creator", "failed", "nameChecked")

    def __init__(self, tlsProtocol: Any, creator: "ClientTLSCreator") -> None:
        self.protocolRef = weakref.ref(tlsProtocol)
        self.creator = creator
        self.failed = False
        self.nameChecked = False

    def verify(self, x509: Any, errno: int, depth: int, ok: int) -> bool:
        if self.failed:
            return False
        name = self.creator.serverName
        if not ok:
            self.fail(describeVerifyError(errno, x509.to_cryptography(), depth, name))
            return False
        if depth == 0 and not self.nameChecked and name is not None:
            self.nameChecked = True
            from service_identity import CertificateError, VerificationError
            from service_identity.cryptography import (
                verify_certificate_hostname,
                verify_certificate_ip_address,
            )

            certificate = x509.to_cryptography()
            try:
                if self.creator.serverNameIsIP:
                    verify_certificate_ip_address(certificate, name)
                else:
                    verify_certificate_hostname(certificate, self.creator.serverNameASCII)
            except (VerificationError, CertificateError):
                self.fail(describeNameMismatch(name, certificate))
                return False
        return True

    def fail(self, error: TLSOriginationError) -> None:
        self.failed = True
        tlsProtocol = self.protocolRef()
        if tlsProtocol is not None:
            tlsProtocol.failVerification(Failure(error))


_handshakes: "weakref.WeakKeyDictionary[SSL.Connection, _Handshake]" = weakref.WeakKeyDictionary()


def _verifyCallback(connection: SSL.Connection, x509: Any, errno: int, depth: int, ok: int) -> bool:
    try:
        state = _handshakes.get(connection)
        if state is None:
            return False
        return state.verify(x509, errno, depth, ok)
    except Exception:
        # Never let an exception escape into OpenSSL; fail closed.
        _log.failure("verifying an origin's certificate")
        return False


@implementer(IOpenSSLClientConnectionCreator)
class ClientTLSCreator:
    """
    Makes TLS client connections to origins known by one name.

    @ivar serverName: the expected name (also sent as SNI when it is a DNS
        name), or L{None} (only with C{disableValidation}).
    @ivar validate: whether the origin's certificate is verified.
    @ivar protocols: the enabled protocol versions.
    @ivar hasClientCertificate: whether a client certificate is presented.
    @ivar alpnProtocols: the ALPN protocols offered.
    """

    def __init__(
        self,
        context: SSL.Context,
        serverName: Optional[str],
        validate: bool,
        protocols: Sequence[str],
        hasClientCertificate: bool,
        alpnProtocols: Tuple[bytes, ...] = (),
    ) -> None:
        self._context = context
        self.serverName = serverName
        self.validate = validate
        self.protocols = tuple(protocols)
        self.hasClientCertificate = hasClientCertificate
        self.alpnProtocols = alpnProtocols
        self.serverNameIsIP = serverName is not None and _isIPAddress(serverName)
        self.serverNameASCII: Optional[str] = None
        self._sni: Optional[bytes] = None
        if serverName is not None and not self.serverNameIsIP:
            self.serverNameASCII = serverName.rstrip(".").encode("idna").decode("ascii")
            self._sni = self.serverNameASCII.encode("ascii")

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        """
        A connection for a new handshake with the origin.
        """
        connection = SSL.Connection(self._context, None)
        if self.validate:
            _handshakes[connection] = _Handshake(tlsProtocol, self)
        if self._sni is not None:
            connection.set_tlsext_host_name(self._sni)
        return connection

    def explainFailure(self, failure: Any) -> Optional[TLSOriginationError]:
        """
        Explain the failure of a connection made with this creator.

        @return: a L{TLSOriginationError}, or L{None} when the failure is
            not about TLS.
        """
        return explainTLSFailure(failure, self.serverName, self.protocols, self.hasClientCertificate)

    def __repr__(self) -> str:
        return f"<ClientTLSCreator {self.serverName!r} validate={self.validate}>"


class ClientTLSCreators:
    """
    Builds and caches L{ClientTLSCreator}s.

    One instance per router (or per process) is enough; it is not thread
    safe (use it from the reactor thread).
    """

    def __init__(self, reactor: Any = None, maxCreators: int = 1000) -> None:
        """
        @param reactor: the reactor (kept for symmetry with the server side;
            nothing is scheduled).
        @param maxCreators: how many creators (distinct substituted names) are
            kept; the least recently used are dropped beyond that.
        """
        self._reactor = reactor
        self._maxCreators = maxCreators
        self._contexts: Dict[Tuple[ClientTlsConfig, Tuple[bytes, ...]], Tuple[SSL.Context, bool]] = {}
        self._creators: "collections.OrderedDict[Any, ClientTLSCreator]" = collections.OrderedDict()

    def prepare(self, config: ClientTlsConfig, configPath: str = "tls", alpn: Sequence[bytes] = ()) -> None:
        """
        Read the configured files now, so that problems are reported at
        start-up.

        @raise ConfigError: a trust or client certificate file is missing,
            unreadable or not PEM, or the client key does not match.
        """
        if config.enabled:
            self._contextFor(config, tuple(alpn), configPath)

    def creatorFor(
        self,
        config: ClientTlsConfig,
        captures: Optional[Mapping[str, str]] = None,
        address: Optional[Tuple[str, int]] = None,
        *,
        alpn: Sequence[bytes] = (),
        configPath: str = "tls",
    ) -> Optional[ClientTLSCreator]:
        """
        The creator for an origin.

        @param config: the client's C{tls} block.
        @param captures: the variables captured by the client prefix, for
            C{{var}} in C{commonName}.
        @param address: the origin's C{(host, port)}; with
            C{disableValidation} and no C{commonName}, a host that is a DNS
            name is sent as SNI.  Otherwise unused.
        @param alpn: protocols offered by ALPN, e.g. C{[b"h2"]}.
        @param configPath: the key path of C{config}, used in errors.
        @return: the creator, or L{None} when C{enabled: false} (plaintext).
        @raise TLSOriginationError: the name cannot be built (missing
            capture, invalid name).
        @raise ConfigError: a configured file cannot be used.
        """
        if not config.enabled:
            return None
        offered = tuple(alpn)
        if config.commonName is not None:
            name: Optional[str] = substituteCommonName(config.commonName, captures)
        elif not config.disableValidation:
            raise TLSOriginationError(
                "client TLS needs a commonName to verify the origin (or disableValidation: true)", BAD_NAME
            )
        elif address is not None and not _isIPAddress(address[0]) and isValidServerName(address[0]):
            name = address[0]
        else:
            name = None
        key = (config, name, offered)
        creator = self._creators.get(key)
        if creator is not None:
            self._creators.move_to_end(key)
            return creator
        context, hasClientCertificate = self._contextFor(config, offered, configPath)
        creator = ClientTLSCreator(
            context, name, not config.disableValidation, config.protocols, hasClientCertificate, offered
        )
        self._creators[key] = creator
        if len(self._creators) > self._maxCreators:
            self._creators.popitem(last=False)
        return creator

    def _contextFor(self, config: ClientTlsConfig, alpn: Tuple[bytes, ...], configPath: str) -> Tuple[SSL.Context, bool]:
        key = (config, alpn)
        found = self._contexts.get(key)
        if found is None:
            found = self._contexts[key] = buildClientContext(config, alpn, configPath)
        return found


def buildClientContext(
    config: ClientTlsConfig, alpn: Sequence[bytes] = (), configPath: str = "tls"
) -> Tuple[SSL.Context, bool]:
    """
    The OpenSSL context for a client configuration.

    @return: the context and whether it presents a client certificate.
    @raise ConfigError: a file cannot be used.
    """
    errors = []
    trust = []
    for i, path in enumerate(config.trustCerts):
        try:
            trust.extend(loadCertificates(path, f"trustCerts[{i}]"))
        except PemError as e:
            errors.append(e)
    if config.trustCertsBundle is not None:
        try:
            trust.extend(loadCertificates(config.trustCertsBundle, "trustCertsBundle"))
        except PemError as e:
            errors.append(e)
    identity = None
    auth = config.clientAuth
    if auth is not None:
        files = IdentityFiles(
            auth.certPath,
            auth.keyPath,
            auth.intermediateCertsPath,
            certKey="clientAuth.certPath",
            keyKey="clientAuth.keyPath",
            intermediatesKey="clientAuth.intermediateCertsPath",
        )
        try:
            identity = loadIdentity(files)
        except PemError as e:
            errors.append(e)
    if errors:
        raise configError(errors, configPath)
    try:
        ctx = newContext(config.protocols)
        if config.disableValidation:
            ctx.set_verify(SSL.VERIFY_NONE)
        else:
            if trust:
                trustCertificates(ctx, trust)
            else:
                ctx.set_default_verify_paths()
            ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _verifyCallback)
        if identity is not None:
            useIdentity(ctx, identity)
        if alpn:
            ctx.set_alpn_protos(list(alpn))
        setCiphers(ctx, config.protocols)
    except SSL.Error as e:
        raise ConfigError([Problem(configPath, f"OpenSSL refused the configuration: {e}")])
    return ctx, identity is not None


def describeClient(config: ClientTlsConfig) -> str:
    """
    One line describing a client TLS configuration (for admin pages).
    """
    if not config.enabled:
        return "plaintext"
    parts = [f"commonName={config.commonName!r}" if config.commonName else "no name"]
    if config.disableValidation:
        parts.append("no validation")
    if config.clientAuth is not None:
        parts.append("client certificate")
    parts.append(describeProtocols(config.protocols))
    return ", ".join(parts)


def wrapClientFactory(factory: Any, creator: ClientTLSCreator, clock: Any) -> Any:
    """
    Wrap a client protocol factory so that its connections speak TLS.

    @param factory: the plaintext protocol factory.
    @param creator: from L{ClientTLSCreators.creatorFor}.
    @param clock: the reactor; the TLS layer batches small writes until the
        next reactor turn with it (without it Twisted uses the global
        reactor).
    @return: a C{TLSMemoryBIOFactory} to connect with.
    """
    from twisted.protocols.tls import TLSMemoryBIOFactory

    return TLSMemoryBIOFactory(creator, True, factory, clock=clock)
