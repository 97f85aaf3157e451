# -*- test-case-name: tests.test_tls_server -*-
"""
TLS termination: a connection creator built from a L{ServerTlsConfig}, with
certificates chosen by server name (SNI), ALPN, optional client
certificates, and certificates re-read when their files change.

Use::

    tls = ServerTLS(config, reactor, "routers[0].servers[0].tls",
                    alpn=[b"h2", b"http/1.1"])
    tls.setServiceParent(routerService)          # polls for new certificates
    endpoint.listen(wrapServerFactory(factory, tls))

Start-up problems (a missing, unreadable or non-PEM file, a key that does not
match its certificate, an unknown cipher) raise
L{linkerpy.config.errors.ConfigError} naming the configuration key and the
file.
"""

from __future__ import annotations

import hashlib
from typing import Any, Dict, List, Optional, Sequence, Tuple

from zope.interface import implementer

from OpenSSL import SSL
from twisted.application.service import Service
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory

from linkerpy.config.errors import ConfigError, Problem, joinPath
from linkerpy.telemetry.metrics import MetricsTree
from linkerpy.tls.config import ServerTlsConfig
from linkerpy.tls.contexts import checkCiphers, newContext, setCiphers, trustCertificates, useIdentity
from linkerpy.tls.pem import (
    Identity,
    IdentityFiles,
    PemError,
    configError,
    loadIdentity,
    parseCertificates,
    parseIdentity,
    readIdentityFiles,
    readPem,
)


class _Slot:
    """
    One served certificate: its files, the names it answers (none for the
    default), the identity currently served and its context.

    @ivar failure: the message of the last failed reload, so that a broken
        file is reported once rather than at every poll.
    """

    def __init__(self, files: IdentityFiles, names: Tuple[str, ...], identity: Identity) -> None:
        self.files = files
        self.names = names
        self.identity = identity
        self.context: Optional[SSL.Context] = None
        self.failure: Optional[str] = None
        self.trustVersion = 0


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS(Service):
    """
    The server side of TLS for one server (or the admin server).

    It is a L{Service}: while running it checks the certificate, key,
    intermediate and CA files every C{reloadIntervalMs} and, when one
    changed, serves the new certificate to new handshakes (connections
    already open keep theirs).  A reload that fails (half-written file,
    mismatched pair) keeps the previous certificate and logs why.

    @ivar config: the configuration.
    @ivar alpnProtocols: the ALPN protocols accepted, most preferred first
        (empty: no ALPN).
    @ivar clock: the reactor given to the constructor.
    """

    log = Logger()

    def __init__(
        self,
        config: ServerTlsConfig,
        reactor: Any,
        configPath: str = "tls",
        *,
        alpn: Optional[Sequence[bytes]] = None,
        metrics: Optional[MetricsTree] = None,
    ) -> None:
        """
        @param config: the C{tls} block of the server.
        @param reactor: provides C{IReactorTime} (polling for reloads).
        @param configPath: the key path of C{config}, used in errors.
        @param alpn: the ALPN protocols the router speaks, most preferred
            first, e.g. C{[b"h2", b"http/1.1"]}; C{config.alpnProtocols}
            overrides it.
        @param metrics: a scope for C{reloads}, C{reload_failures} and
            C{expires_in_s} (seconds until the first served certificate
            expires).
        @raise ConfigError: a file is missing, unreadable, not PEM, or a key
            does not match its certificate; or a cipher is unknown.
        """
        self.config = config
        self._reactor = reactor
        self.clock = reactor
        self._configPath = configPath
        if config.alpnProtocols is not None:
            alpn = [p.encode("ascii") for p in config.alpnProtocols]
        self.alpnProtocols: Tuple[bytes, ...] = tuple(alpn or ())
        self._sessionId = hashlib.sha256(configPath.encode("utf-8")).digest()[:32]
        self._loop: Optional[LoopingCall] = None

        problems = [
            Problem(joinPath(configPath, f"ciphers[{i}]"), message)
            for i, message in checkCiphers(config.ciphers or ())
        ]
        errors: List[PemError] = []
        self._slots: List[_Slot] = []
        wanted: List[Tuple[IdentityFiles, Tuple[str, ...]]] = []
        if config.certPath is not None and config.keyPath is not None:
            wanted.append((IdentityFiles(config.certPath, config.keyPath, config.intermediateCertsPath), ()))
        for i, entry in enumerate(config.sni):
            files = IdentityFiles(
                entry.certPath,
                entry.keyPath,
                entry.intermediateCertsPath,
                certKey=f"sni[{i}].certPath",
                keyKey=f"sni[{i}].keyPath",
                intermediatesKey=f"sni[{i}].intermediateCertsPath",
            )
            wanted.append((files, tuple(entry.serverNames)))
        for files, names in wanted:
            try:
                self._slots.append(_Slot(files, names, loadIdentity(files)))
            except PemError as e:
                errors.append(e)
        self._trust: List[Any] = []
        self._trustVersion = 0
        self._trustContents: Optional[bytes] = None
        self._trustFailure: Optional[str] = None
        if config.caCertPath is not None:
            try:
                data = readPem(config.caCertPath, "caCertPath")
                self._trust = parseCertificates(data, config.caCertPath, "caCertPath")
                self._trustContents = data
            except PemError as e:
                errors.append(e)
        if errors:
            problems.extend(configError(errors, configPath).problems)
        if not problems and not self._slots:
            problems.append(Problem(joinPath(configPath, "certPath"), "no certificate configured"))
        if problems:
            raise ConfigError(problems)
        try:
            for slot in self._slots:
                slot.context = self._buildContext(slot.identity)
        except SSL.Error as e:
            raise ConfigError([Problem(configPath, f"OpenSSL refused the configuration: {_sslReasons(e)}")])

        self._default = self._slots[0]
        self._exact: Dict[str, _Slot] = {}
        self._wildcards: Dict[str, _Slot] = {}
        for slot in self._slots[1:] if config.certPath is not None else self._slots:
            for pattern in slot.names:
                name = pattern.lower().rstrip(".")
                if name.startswith("*."):
                    self._wildcards.setdefault(name[2:], slot)
                else:
                    self._exact.setdefault(name, slot)

        self._metrics = metrics
        if metrics is not None:
            self._reloads = metrics.counter("reloads")
            self._reloadFailures = metrics.counter("reload_failures")
            metrics.gauge("expires_in_s", fn=self._secondsToExpiry)
        else:
            self._reloads = self._reloadFailures = None

    # IOpenSSLServerConnectionCreator

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        """
        A connection for a new handshake, using the default certificate
        until the client's server name selects another.
        """
        connection = SSL.Connection(self._default.context, None)
        connection.set_app_data(tlsProtocol)
        return connection

    # Selection

    def slotFor(self, serverName: Optional[str]) -> _Slot:
        """
        The certificate slot for a server name: an exact name first, then a
        wildcard C{*.parent} (one label), else the default.
        """
        if serverName:
            name = serverName.lower().rstrip(".")
            slot = self._exact.get(name)
            if slot is not None:
                return slot
            dot = name.find(".")
            if dot > 0:
                slot = self._wildcards.get(name[dot + 1 :])
                if slot is not None:
                    return slot
        return self._default

    def certificateFor(self, serverName: Optional[str] = None) -> Any:
        """
        The certificate (C{cryptography.x509.Certificate}) that a handshake
        for C{serverName} would get now.
        """
        return self.slotFor(serverName).identity.certificate

    def _onServerName(self, connection: SSL.Connection) -> None:
        try:
            raw = connection.get_servername()
            if not raw:
                return
            slot = self.slotFor(raw.decode("ascii", "replace"))
            if slot is not self._default:
                connection.set_context(slot.context)
        except Exception:
            self.log.failure("choosing a certificate by server name")

    def _selectAlpn(self, connection: SSL.Connection, offered: List[bytes]) -> Any:
        for protocol in self.alpnProtocols:
            if protocol in offered:
                return protocol
        return SSL.NO_OVERLAPPING_PROTOCOLS

    # Contexts

    def _buildContext(self, identity: Identity) -> SSL.Context:
        config = self.config
        ctx = newContext(config.protocols, server=True)
        useIdentity(ctx, identity)
        ctx.set_session_id(self._sessionId)
        if self._trust:
            trustCertificates(ctx, self._trust, advertise=True)
            mode = SSL.VERIFY_PEER
            if config.requireClientAuth:
                mode |= SSL.VERIFY_FAIL_IF_NO_PEER_CERT
            ctx.set_verify(mode)
        else:
            ctx.set_verify(SSL.VERIFY_NONE)
        if self.alpnProtocols:
            ctx.set_alpn_select_callback(self._selectAlpn)
        if len(self._slots) > 1:
            ctx.set_tlsext_servername_callback(self._onServerName)
        setCiphers(ctx, config.protocols, config.ciphers)
        return ctx

    # Reloading

    def startService(self) -> None:
        super().startService()
        interval = self.config.reloadIntervalMs
        if interval > 0 and self._loop is None:
            self._loop = LoopingCall(self._poll)
            self._loop.clock = self._reactor
            self._loop.start(interval / 1000.0, now=False)

    def stopService(self) -> Any:
        if self._loop is not None:
            if self._loop.running:
                self._loop.stop()
            self._loop = None
        return super().stopService()

    def _poll(self) -> None:
        try:
            self.checkForChanges()
        except Exception:
            self.log.failure("checking TLS certificate files for changes")

    def checkForChanges(self) -> int:
        """
        Re-read the certificate files now and serve whichever changed.

        @return: how many certificates were replaced.
        """
        if self._reloadTrust():
            self._trustVersion += 1
        replaced = 0
        for slot in self._slots:
            try:
                contents = readIdentityFiles(slot.files)
            except PemError as e:
                self._failed(slot, e.message)
                continue
            if contents == slot.identity.contents and slot.trustVersion == self._trustVersion:
                slot.failure = None
                continue
            try:
                identity = parseIdentity(slot.files, contents)
                context = self._buildContext(identity)
            except PemError as e:
                self._failed(slot, e.message)
                continue
            except SSL.Error as e:
                self._failed(slot, f"{slot.files.certPath}: OpenSSL refused it: {_sslReasons(e)}")
                continue
            slot.identity, slot.context, slot.failure = identity, context, None
            slot.trustVersion = self._trustVersion
            replaced += 1
            if self._reloads is not None:
                self._reloads.incr()
            self.log.info(
                "TLS certificate {certPath} reloaded for {configPath}",
                certPath=slot.files.certPath,
                configPath=self._configPath,
            )
        return replaced

    def _reloadTrust(self) -> bool:
        path = self.config.caCertPath
        if path is None:
            return False
        try:
            data = readPem(path, "caCertPath")
            if data == self._trustContents:
                self._trustFailure = None
                return False
            trust = parseCertificates(data, path, "caCertPath")
        except PemError as e:
            if e.message != self._trustFailure:
                self._trustFailure = e.message
                self._countFailure()
                self.log.error(
                    "TLS CA reload failed for {configPath}, keeping the previous CAs: {error}",
                    configPath=self._configPath,
                    error=e.message,
                )
            return False
        self._trust, self._trustContents, self._trustFailure = trust, data, None
        return True

    def _failed(self, slot: _Slot, message: str) -> None:
        if message == slot.failure:
            return
        slot.failure = message
        self._countFailure()
        self.log.error(
            "TLS certificate reload failed for {configPath}, keeping the previous certificate: {error}",
            configPath=self._configPath,
            error=message,
        )

    def _countFailure(self) -> None:
        if self._reloadFailures is not None:
            self._reloadFailures.incr()

    def _secondsToExpiry(self) -> float:
        now = self._reactor.seconds()
        return min(_notAfter(slot.identity.certificate) - now for slot in self._slots)


def _notAfter(certificate: Any) -> float:
    when = getattr(certificate, "not_valid_after_utc", None)
    if when is None:  # cryptography < 42
        import calendar

        return float(calendar.timegm(certificate.not_valid_after.timetuple()))
    return when.timestamp()


def _sslReasons(error: SSL.Error) -> str:
    try:
        return "; ".join(str(r[2]) for r in error.args[0]) or str(error)
    except Exception:
        return str(error)


def wrapServerFactory(factory: Any, tlsServer: ServerTLS) -> TLSMemoryBIOFactory:
    """
    Wrap a server protocol factory so that its connections speak TLS.

    The wrapped factory must not provide
    C{IProtocolNegotiationFactory}: give ALPN protocols to L{ServerTLS}.

    The TLS layer batches small writes until the next reactor turn, using
    the reactor given to C{tlsServer}.

    @param factory: the plaintext protocol factory.
    @param tlsServer: the TLS side.
    @return: a factory to listen with.
    """
    return TLSMemoryBIOFactory(tlsServer, False, factory, clock=tlsServer.clock)
