# -*- test-case-name: tests.test_tcp_router -*-
"""
The client side of the TCP router: accepted connections, from accept to
routed.

A connection goes through these phases:

  1. I{accepted}: counted, refused at once beyond C{maxConnections};
  2. I{handshake} (only when the connection must be named by its TLS
     server name or terminates TLS): the ClientHello is read and parsed
     (passthrough) or the TLS handshake completes (termination), within
     C{handshakeTimeoutMs};
  3. I{routing}: reading stops; the connection is named (C{dstName} or the
     identifier) and handed to the routing core, which binds the name,
     picks a client and an endpoint and connects to it (the adapter);
     bytes already read wait in a buffer;
  4. I{spliced}: a L{Splice} relays bytes both ways until both sides are
     gone.

A connection that cannot be named, bound or connected is closed; the
reason is counted in the server's metrics and logged at most once per
L{LOG_INTERVAL} seconds per server.
"""

from __future__ import annotations

from typing import Any, List, Optional, Set

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import IHalfCloseableProtocol, IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from linkerpy.errors import messageFor
from linkerpy.net import peerString, setNoDelay
from linkerpy.naming.dtab import Dtab
from linkerpy.protocol.http.identifiers import Identified
from linkerpy.protocol.tcp.clienthello import ClientHelloError, ClientHelloParser
from linkerpy.protocol.tcp.splice import IDLE, Splice, closeFully

log = Logger()

#: Seconds between two log lines about connections a server could not route.
LOG_INTERVAL = 10.0

_NEW, _HANDSHAKE, _ROUTING, _SPLICED, _CLOSED = range(5)


class ServerStats:
    """
    The C{rt/<router>/server/<ip>/<port>/} metrics of one TCP server.
    """

    def __init__(self, scope: Any, factory: "TcpServerFactory") -> None:
        self.connects = scope.counter("connects")
        scope.gauge("connections", fn=lambda: len(factory.protocols))
        self.rejected = scope.counter("rejected_connections")
        self.unidentified = scope.counter("unidentified")
        self.handshakeFailures = scope.counter("handshake_failures")
        self.handshakeTimeouts = scope.counter("handshake_timeouts")
        self.failures = scope.counter("failures")
        self.idleTimeouts = scope.counter("idle_timeouts")
        self.sentBytes = scope.counter("sent_bytes")
        self.receivedBytes = scope.counter("received_bytes")


class TcpCall:
    """
    The exchange the routing core carries for one TCP connection.

    @ivar inbound: the accepted connection (L{TcpServerProtocol}).
    @ivar path: the logical name.
    @ivar connectTimeoutMs: the server's connect timeout (a client policy's
        C{connectTimeoutMs} wins over it).
    """

    #: Nothing is classified or retried per exchange; requeues of connect
    #: failures are safe because nothing reaches an origin before it is
    #: connected.
    classifier = None
    bodyReplayable = True

    def __init__(self, inbound: "TcpServerProtocol", path: Any, connectTimeoutMs: Optional[int]) -> None:
        self.inbound = inbound
        self.path = path
        self.serviceName = path.show
        self.localDtab = Dtab.empty
        self.deadline = None
        self.residual = None
        self.client: Any = None
        self.endpoint: Any = None
        self.retries = 0
        self.attempts = 0
        self.connectTimeoutMs = connectTimeoutMs
        self.serviceStats: Any = None
        self.clientStats: Any = None
        self.responseClass = None


class ServerSettings:
    """
    What the connections of one server share.

    @ivar identifiers: the identifiers tried in order to name a connection.
    @ivar readHello: whether the ClientHello is read to learn the server
        name (passthrough with an SNI identifier).
    @ivar tls: the L{linkerpy.tls.server.ServerTLS} when terminating TLS.
    """

    def __init__(
        self,
        identifiers: List[Any],
        readHello: bool,
        tls: Any,
        connectTimeoutMs: Optional[int],
        idleTimeout: Optional[float],
        handshakeTimeout: float,
        maxConnections: Optional[int],
    ) -> None:
        self.identifiers = identifiers
        self.readHello = readHello
        self.tls = tls
        self.connectTimeoutMs = connectTimeoutMs
        self.idleTimeout = idleTimeout
        self.handshakeTimeout = handshakeTimeout
        self.maxConnections = maxConnections


@implementer(IHalfCloseableProtocol, IHandshakeListener)
class TcpServerProtocol(Protocol):
    """
    One accepted connection.

    @ivar serverName: the TLS server name the client asked for, once known.
    """

    def __init__(self, factory: "TcpServerFactory") -> None:
        self.factory = factory
        self.settings = factory.settings
        self.clock = factory.clock
        self.state = _NEW
        self.serverName: Optional[str] = None
        self.parser: Optional[ClientHelloParser] = None
        self.pending: List[bytes] = []
        self.readEnded = False
        self.splice: Optional[Splice] = None
        self.routing: Optional[Deferred] = None
        self.call: Optional[TcpCall] = None
        self._timer: Any = None

    # -- accept ----------------------------------------------------------------

    def connectionMade(self) -> None:
        factory = self.factory
        if not factory.admit(self):
            self.state = _CLOSED
            self.transport.abortConnection()
            return
        settings = self.settings
        # TCP_NODELAY unless the server's socketOptions (applied by the port to
        # every accepted connection, with keepAlive) decided otherwise.
        setNoDelay(self.transport)
        if settings.tls is not None or settings.readHello:
            self.state = _HANDSHAKE
            if settings.tls is None:
                self.parser = ClientHelloParser()
            self._timer = self.clock.callLater(settings.handshakeTimeout, self._handshakeTimedOut)
        else:
            self._route()

    def _handshakeTimedOut(self) -> None:
        self._timer = None
        if self.state == _HANDSHAKE:
            self.factory.stats.handshakeTimeouts.value += 1
            self._close(clean=False)

    def handshakeCompleted(self) -> None:
        """
        TLS termination: the handshake is done, the server name is known.
        """
        if self.state != _HANDSHAKE:
            return
        from linkerpy.tls.identity import requestedServerName

        self.serverName = requestedServerName(self.transport)
        self._cancelTimer()
        self._route()

    # -- bytes from the client -------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        splice = self.splice
        if splice is not None:
            splice.clientData(data)
            return
        if self.state == _HANDSHAKE and self.parser is not None:
            try:
                hello = self.parser.feed(data)
            except ClientHelloError as e:
                self.factory.stats.unidentified.value += 1
                self.factory.note(f"closing a connection from {peerString(self.transport)}: {e.reason}")
                self._close(clean=False)
                return
            if hello is None:
                return
            self.serverName = hello.serverName
            self.pending.append(self.parser.buffered)
            self.parser = None
            self._cancelTimer()
            self._route()
            return
        if self.state != _CLOSED:
            self.pending.append(data)

    def readConnectionLost(self) -> None:
        if self.readEnded:
            return
        self.readEnded = True
        if self.splice is not None:
            self.splice.clientReadClosed()
        elif self.state == _HANDSHAKE:
            self._close(clean=True)
        # While routing, the splice learns it when it starts.

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._cancelTimer()
        state, self.state = self.state, _CLOSED
        self.factory.forget(self)
        if self.splice is not None:
            self.splice.clientLost(reason)
        elif state == _ROUTING and self.routing is not None:
            routing, self.routing = self.routing, None
            routing.cancel()
        elif state == _HANDSHAKE and self.settings.tls is not None and not reason.check(CancelledError):
            self.factory.stats.handshakeFailures.value += 1

    # -- routing ----------------------------------------------------------------------

    def _route(self) -> None:
        self.state = _ROUTING
        self.transport.pauseProducing()
        factory = self.factory
        result: Any = None
        reasons = []
        for identifier in self.settings.identifiers:
            result = identifier.identify(self)
            if isinstance(result, Identified):
                break
            reasons.append(result.reason)
        else:
            factory.stats.unidentified.value += 1
            factory.note(f"closing a connection from {peerString(self.transport)}: {'; '.join(reasons) or 'no identifier'}")
            self._close(clean=True)
            return
        call = self.call = TcpCall(self, result.path, self.settings.connectTimeoutMs)
        route = factory.core.routeFor(result.path, Dtab.empty)
        try:
            d = route.call(call)
        except Exception:
            d = fail()
        if not d.called:
            self.routing = d
        d.addCallbacks(self._ended, self._failed)

    def attach(self, origin: Any, call: TcpCall, clientStats: Any, onEnd: Any) -> Optional[Splice]:
        """
        The adapter connected to an origin: start relaying.

        @return: the L{Splice}, or C{None} if this connection is already
            gone (the caller closes C{origin}).
        """
        if self.state != _ROUTING:
            return None
        self.state = _SPLICED
        self.routing = None
        factory = self.factory
        stats = factory.stats
        up = [stats.receivedBytes]
        down = [stats.sentBytes]
        for extra in (call.serviceStats, clientStats):
            if extra is not None:
                up.append(extra.sentBytes)
                down.append(extra.receivedBytes)
        splice = Splice(
            self,
            origin,
            self.clock,
            self.settings.idleTimeout,
            up,
            down,
            onEnd=onEnd,
            onIdle=self._idle,
        )
        self.splice = splice
        pending, self.pending = self.pending, []
        splice.start(pending, clientEnded=self.readEnded)
        return splice

    def _idle(self) -> None:
        self.factory.stats.idleTimeouts.value += 1

    def _ended(self, result: Any) -> None:
        self.routing = None

    def _failed(self, failure: Failure) -> None:
        self.routing = None
        if failure.check(CancelledError) or self.state == _CLOSED:
            return
        self.factory.stats.failures.value += 1
        name = self.call.serviceName if self.call is not None else "?"
        self.factory.note(f"closing a connection to {name}: {messageFor(failure.value)}")
        self._close(clean=True)

    # -- closing ----------------------------------------------------------------------

    def _cancelTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _close(self, clean: bool) -> None:
        if self.state == _CLOSED:
            return
        self.state = _CLOSED
        self._cancelTimer()
        closeFully(self.transport, clean)

    def shutdown(self) -> None:
        """
        Drain grace expired: close at once.
        """
        if self.splice is not None:
            self.splice.abort()
        elif self.state != _CLOSED:
            self._close(clean=False)

    def drainIfNotSpliced(self) -> None:
        """
        Draining: a connection not relaying yet is closed now.
        """
        if self.splice is None and self.state in (_NEW, _HANDSHAKE):
            self._close(clean=True)


class TcpServerFactory(Factory):
    """
    Builds the connections of one TCP server.

    @ivar core: the router's L{linkerpy.router.routing.RoutingCore}.
    @ivar protocols: the open connections.
    """

    noisy = False

    def __init__(self, core: Any, settings: ServerSettings, clock: Any, name: str = "") -> None:
        self.core = core
        self.settings = settings
        self.clock = clock
        self.name = name
        self.protocols: Set[TcpServerProtocol] = set()
        self.stats: Any = None
        self.draining = False
        self._drained: List[Deferred] = []
        self._graceTimer: Any = None
        self._lastNote = -LOG_INTERVAL
        self._suppressed = 0

    def setMetrics(self, scope: Any) -> None:
        self.stats = ServerStats(scope, self)

    def buildProtocol(self, addr: Any) -> TcpServerProtocol:
        return TcpServerProtocol(self)

    def admit(self, protocol: TcpServerProtocol) -> bool:
        limit = self.settings.maxConnections
        if self.draining or (limit is not None and len(self.protocols) >= limit):
            self.stats.rejected.value += 1
            return False
        self.protocols.add(protocol)
        self.stats.connects.value += 1
        return True

    def forget(self, protocol: TcpServerProtocol) -> None:
        self.protocols.discard(protocol)
        if not self.protocols and self._drained:
            if self._graceTimer is not None and self._graceTimer.active():
                self._graceTimer.cancel()
            self._graceTimer = None
            drained, self._drained = self._drained, []
            for d in drained:
                d.callback(None)

    def note(self, message: str) -> None:
        """
        Log why a connection was closed, at most once per L{LOG_INTERVAL}.
        """
        now = self.clock.seconds()
        if now - self._lastNote < LOG_INTERVAL:
            self._suppressed += 1
            return
        suppressed, self._suppressed = self._suppressed, 0
        self._lastNote = now
        more = f" ({suppressed} similar messages suppressed)" if suppressed else ""
        log.info("tcp server {name}: {why}{more}", name=self.name, why=message, more=more)

    def drain(self, graceSeconds: Optional[float]) -> Deferred:
        """
        Stop admitting connections; close those not relaying yet; let the
        others finish for up to C{graceSeconds}, then abort them.  Stop
        listening first (the port is not the factory's).
        """
        self.draining = True
        for protocol in list(self.protocols):
            protocol.drainIfNotSpliced()
        if not self.protocols:
            return succeed(None)
        d: Deferred = Deferred()
        self._drained.append(d)
        if graceSeconds is not None and self._graceTimer is None:
            self._graceTimer = self.clock.callLater(graceSeconds, self._graceExpired)
        return d

    def _graceExpired(self) -> None:
        self._graceTimer = None
        for protocol in list(self.protocols):
            protocol.shutdown()


__all__ = ["TcpServerFactory", "TcpServerProtocol", "ServerSettings", "TcpCall", "IDLE"]
