# -*- test-case-name: tests.test_http_server -*-
"""
The HTTP/1.1 server connection: strict parsing, keep-alive, pipelining,
request body streaming, timeouts, graceful drain and protocol upgrades.

Each request is validated (L{linkerpy.protocol.http.parser}) and handed
synchronously to an L{IHTTPHandler} as a
L{ServerExchange<linkerpy.protocol.http.exchange.ServerExchange>}.  Requests
on one connection are processed one at a time, in order: bytes of pipelined
requests that arrive while one is in flight are buffered (up to
C{pipelineBufferBytes}, then reading stops).

Timers are not armed per request: each connection keeps one deadline and a
per-factory sweeper checks all connections a few times per second (see
L{ServerSettings.timerGranularity}).
"""

from __future__ import annotations

from typing import Any, Optional, Set

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from linkerpy.protocol.http.parser import HeadLimits
from linkerpy.protocol.http.serverconn import HTTPServerProtocol
from linkerpy.telemetry.metrics import MetricsTree

__all__ = ["ServerTimeouts", "HTTPServerFactory", "HTTPServerProtocol"]


@attrs.frozen
class ServerTimeouts:
    """
    Server connection timers, in seconds (C{None}: never).

    @ivar headTimeout: the whole request head must arrive within this time of
        its first byte (or of the connection opening, for the first request):
        otherwise 408 and close (slowloris defence).
    @ivar bodyIdleTimeout: longest silence while reading a request body:
        408 (or a truncated response) and close.
    @ivar keepAliveTimeout: longest idle time between requests
        (C{serverSession.idleTimeMs}); counted in C{idle}.
    @ivar lifeTime: C{serverSession.lifeTimeMs}: a connection older than this
        is closed between requests (its last response carries
        C{Connection: close}); counted in C{lifetime}.
    @ivar granularity: the sweeper period; C{None} picks a tenth of the
        smallest timeout, between 0.05 s and 1 s.
    """

    headTimeout: Optional[float] = 30.0
    bodyIdleTimeout: Optional[float] = 60.0
    keepAliveTimeout: Optional[float] = 75.0
    lifeTime: Optional[float] = None
    granularity: Optional[float] = None

    def sweepInterval(self) -> float:
        """
        How often the sweeper checks deadlines.
        """
        if self.granularity is not None:
            return self.granularity
        values = [
            v
            for v in (self.headTimeout, self.bodyIdleTimeout, self.keepAliveTimeout, self.lifeTime)
            if v is not None
        ]
        if not values:
            return 1.0
        return max(0.05, min(1.0, min(values) / 10.0))


class HTTPServerFactory(Factory):
    """
    Builds L{HTTPServerProtocol}s sharing a handler, limits, timers, a clock
    and a metrics scope.

    Metrics (under the scope): C{connects} (counter), C{connections}
    (gauge), C{idle} and C{lifetime} (connections closed by the session
    timers), C{rejected} (requests refused by the framing rules),
    C{rejected_connections} (over C{maxConnections}), C{head_timeouts},
    C{body_timeouts} and C{handler_errors}.
    """

    protocol = HTTPServerProtocol  # type: ignore[assignment]
    noisy = False

    def __init__(
        self,
        handler: Any,
        limits: Optional[HeadLimits] = None,
        clock: Any = None,
        metricsScope: Optional[MetricsTree] = None,
        timeouts: Optional[ServerTimeouts] = None,
        maxConnections: Optional[int] = None,
        pipelineBufferBytes: int = 65536,
        requestBodyBufferBytes: int = 65536,
    ) -> None:
        """
        @param handler: an L{IHTTPHandler<linkerpy.protocol.http.interfaces.IHTTPHandler>}.
        @param limits: head size limits (and C{allowConnect}).
        @param clock: an C{IReactorTime} (required).
        @param metricsScope: where the server's metrics go (see
            L{setMetrics} to choose it after the port is bound).
        @param maxConnections: connections beyond this many are closed as
            soon as they are accepted; C{None} is unlimited.
        @param pipelineBufferBytes: how much of the following pipelined
            requests is buffered while one is in flight before reading stops.
        @param requestBodyBufferBytes: how much request body is buffered
            until the handler starts reading it, before reading stops.
        """
        if clock is None:
            raise TypeError("HTTPServerFactory needs a clock (the reactor)")
        self.handler = handler
        self.limits = limits if limits is not None else HeadLimits()
        self.timeouts = timeouts if timeouts is not None else ServerTimeouts()
        self.clock = clock
        self.maxConnections = maxConnections
        self.pipelineBufferBytes = pipelineBufferBytes
        self.requestBodyBufferBytes = requestBodyBufferBytes
        self.protocols: Set[HTTPServerProtocol] = set()
        self._sweeper: Any = None
        self._draining = False
        self._drained: list = []
        self._graceTimer: Any = None
        self.setMetrics(metricsScope if metricsScope is not None else MetricsTree())

    def setMetrics(self, scope: MetricsTree) -> None:
        """
        Record the server's metrics under C{scope} from now on.
        """
        self.metrics = scope
        self._connects = scope.counter("connects")
        scope.gauge("connections", fn=lambda: len(self.protocols))
        self._idle = scope.counter("idle")
        self._lifetime = scope.counter("lifetime")
        self._rejected = scope.counter("rejected")
        self._rejectedConnections = scope.counter("rejected_connections")
        self._headTimeouts = scope.counter("head_timeouts")
        self._bodyTimeouts = scope.counter("body_timeouts")
        self._handlerErrors = scope.counter("handler_errors")

    def buildProtocol(self, addr: Any) -> HTTPServerProtocol:
        return HTTPServerProtocol(self)

    def _connectionMade(self, protocol: HTTPServerProtocol) -> bool:
        """
        @return: C{False} if the connection must be refused.
        """
        if self.maxConnections is not None and len(self.protocols) >= self.maxConnections:
            self._rejectedConnections.value += 1
            return False
        self.protocols.add(protocol)
        self._connects.value += 1
        if self._sweeper is None:
            self._sweeper = self.clock.callLater(self.timeouts.sweepInterval(), self._sweep)
        return True

    def _connectionLost(self, protocol: HTTPServerProtocol) -> None:
        self.protocols.discard(protocol)
        if not self.protocols:
            if self._sweeper is not None and self._sweeper.active():
                self._sweeper.cancel()
            self._sweeper = None
            if self._graceTimer is not None and self._graceTimer.active():
                self._graceTimer.cancel()
            self._graceTimer = None
            drained, self._drained = self._drained, []
            for d in drained:
                d.callback(None)

    def _sweep(self) -> None:
        self._sweeper = None
        now = self.clock.seconds()
        for protocol in list(self.protocols):
            protocol._checkTimers(now)
        if self.protocols and self._sweeper is None:
            self._sweeper = self.clock.callLater(self.timeouts.sweepInterval(), self._sweep)

    def _handlerError(self, failure: Failure) -> None:
        self._handlerErrors.value += 1
        from twisted.logger import Logger

        Logger().failure("HTTP handler raised", failure)

    def drain(self, graceSeconds: Optional[float] = None) -> "Deferred[None]":
        """
        Gracefully stop: idle connections close now, busy ones after their
        current response (sent with C{Connection: close}); requests already
        pipelined behind it are not processed.  Stop listening first (the
        port is not the factory's).

        @param graceSeconds: abort the connections still open after this
            long; C{None} waits for ever.
        @return: a C{Deferred} firing when every connection has closed.
        """
        self._draining = True
        for protocol in list(self.protocols):
            protocol._drain()
        if not self.protocols:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._drained.append(d)
        if graceSeconds is not None and self._graceTimer is None:
            self._graceTimer = self.clock.callLater(graceSeconds, self._graceExpired)
        return d

    def _graceExpired(self) -> None:
        self._graceTimer = None
        for protocol in list(self.protocols):
            protocol._abortConnection()
