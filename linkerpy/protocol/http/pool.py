# -*- test-case-name: tests.test_http_pool -*-
"""
A persistent HTTP/1.1 connection pool for one endpoint (host, port,
optional TLS).

C{pool.request(head, body)} returns a C{Deferred} firing with a
L{ClientResponse<linkerpy.protocol.http.client.ClientResponse>} or failing
with an L{UpstreamError<linkerpy.protocol.http.errors.UpstreamError>}
subclass.  Connections are reused most-recently-used first.  When none is
idle a new one is opened, up to C{maxSize}; beyond that requests wait (FIFO)
for a connection, up to C{maxWaiters}, and past that fail fast with
L{PoolExhausted}.

Stale connections: an idle connection the origin closes is dropped as soon
as its C{connectionLost} arrives.  If a request nevertheless fails on a
reused connection before any byte was written or read, it is retried once,
transparently, on a fresh connection (counted in C{stale_retries}).  A
request that was written is never retried here: that is the router's
decision (C{requestWritten} and C{responseStarted} on the error).

The returned C{Deferred} can be cancelled: a waiting request leaves the
queue, a connecting one leaves its new connection to the pool, and one in
flight aborts its connection.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Deque, List, Optional, Set

import attrs
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.error import TimeoutError as TwistedTimeoutError
from twisted.internet.protocol import ClientFactory
from twisted.python.failure import Failure

from linkerpy.net import connectTCP
from linkerpy.protocol.http.client import ClientResponse, HTTPClientProtocol
from linkerpy.protocol.http.errors import (
    ConnectionFailed,
    ConnectionRefused,
    ConnectionReset,
    ConnectTimeout,
    PoolClosed,
    PoolExhausted,
    TLSHandshakeFailed,
    UpstreamError,
)
from linkerpy.protocol.http.message import RequestHead
from linkerpy.protocol.http.parser import HeadLimits
from linkerpy.telemetry.metrics import MetricsTree

__all__ = ["PoolSettings", "HTTPConnectionPool"]


@attrs.frozen
class PoolSettings:
    """
    Pool and client session settings (times in seconds; C{None} means
    "unbounded" or "never").

    @ivar minSize: C{hostConnectionPool.minSize}: idle connections kept
        despite C{idleTimeout} (connections are not opened in advance).
    @ivar maxSize: C{hostConnectionPool.maxSize}: most connections (open or
        opening); C{None} is unbounded, as in Linkerd.
    @ivar maxWaiters: C{hostConnectionPool.maxWaiters}: most requests
        waiting for a connection when at C{maxSize}; C{None} is unbounded.
    @ivar idleTimeout: C{hostConnectionPool.idleTimeMs}: a connection idle
        this long is closed, unless that would leave fewer than C{minSize}.
    @ivar sessionIdleTimeout: C{clientSession.idleTimeMs}: any connection
        idle this long is closed (regardless of C{minSize}).
    @ivar lifeTime: C{clientSession.lifeTimeMs}: a connection older than
        this is closed when it next becomes idle.
    @ivar connectTimeout: TCP connect plus TLS handshake deadline.
    @ivar responseIdleTimeout: longest silence from the origin while a
        request waits for its response or reads its body (C{client.
        responseIdleTimeoutMs}): 504 before the head, a cut-short response
        after; C{None} waits for ever.  Checked about once a second.
    @ivar maxInitialLineKB: longest status line accepted from the origin.
    @ivar maxHeadersKB: largest response header section accepted.
    @ivar maxHeaderCount: most response header fields accepted.
    @ivar granularity: idle sweeper period; C{None} picks a tenth of the
        smallest idle timeout, between 0.05 s and 1 s.
    @ivar socketOptions: the client's C{socketOptions} config object (see
        L{linkerpy.socketoptions}), or C{None}.
    """

    minSize: int = 0
    maxSize: Optional[int] = None
    maxWaiters: Optional[int] = None
    idleTimeout: Optional[float] = None
    sessionIdleTimeout: Optional[float] = None
    lifeTime: Optional[float] = None
    connectTimeout: float = 5.0
    responseIdleTimeout: Optional[float] = 60.0
    maxInitialLineKB: int = 4
    maxHeadersKB: int = 8
    maxHeaderCount: int = 100
    granularity: Optional[float] = None
    socketOptions: Any = None

    def limits(self) -> HeadLimits:
        return HeadLimits(self.maxInitialLineKB * 1024, self.maxHeadersKB * 1024, self.maxHeaderCount)

    def sweepInterval(self) -> Optional[float]:
        """
        The idle sweeper period, or C{None} when no idle timer is set.
        """
        values = [v for v in (self.idleTimeout, self.sessionIdleTimeout, self.lifeTime) if v is not None]
        if not values:
            return None
        if self.granularity is not None:
            return self.granularity
        return max(0.05, min(1.0, min(values) / 10.0))


# request states
_NEW = 0
_WAITING = 1
_CONNECTING = 2
_SENT = 3
_DONE = 4


class _PoolRequest:
    """
    One C{pool.request} (or C{pool.send}) call: the listener its connection
    reports to.  The outcome goes to a C{Deferred} (C{request}) or to an
    C{onResult(context, response, error)} callable (C{send}).
    """

    __slots__ = ("pool", "head", "body", "deferred", "conn", "state", "retried", "attempt", "done", "onResult", "context")

    def __init__(
        self, pool: "HTTPConnectionPool", head: RequestHead, body: Any, onResult: Any = None, context: Any = None
    ) -> None:
        self.pool = pool
        self.head = head
        self.body = body
        self.conn: Optional[HTTPClientProtocol] = None
        self.state = _NEW
        self.retried = False
        self.attempt: Any = None
        self.done = False
        self.onResult = onResult
        self.context = context
        self.deferred: Optional[Deferred[ClientResponse]] = Deferred(self._cancel) if onResult is None else None

    def _send(self, conn: HTTPClientProtocol) -> None:
        self.state = _SENT
        self.conn = conn
        conn.request(self.head, self.body, self)

    def _responseReceived(self, response: ClientResponse) -> None:
        self.conn = None
        self.state = _DONE
        if self.done:
            # cancelled meanwhile: nobody wants it
            response.body.abort()
            if response.tunnel is not None:
                response.tunnel.loseConnection()
            return
        self.done = True
        onResult = self.onResult
        if onResult is not None:
            onResult(self.context, response, None)
        else:
            self.deferred.callback(response)  # type: ignore[union-attr]

    def _requestFailed(self, error: UpstreamError) -> None:
        conn = self.conn
        self.conn = None
        if self.done:
            return
        if (
            isinstance(error, ConnectionReset)
            and not error.requestWritten
            and not error.responseStarted
            and conn is not None
            and conn.reused
            and not self.retried
        ):
            self.retried = True
            self.pool._staleRetries.value += 1
            self.state = _NEW
            self.pool._dispatch(self, fresh=True)
            return
        self.state = _DONE
        self._deliverError(error)

    def _fail(self, error: UpstreamError) -> None:
        self.state = _DONE
        if not self.done:
            self._deliverError(error)

    def _deliverError(self, error: BaseException) -> None:
        self.done = True
        onResult = self.onResult
        if onResult is not None:
            onResult(self.context, None, error)
        else:
            self.deferred.errback(error)  # type: ignore[union-attr]

    def cancel(self) -> None:
        """
        Give up on this request (see L{HTTPConnectionPool.send}): its
        C{onResult} gets a C{CancelledError}.
        """
        if self.deferred is not None:
            self.deferred.cancel()
            return
        if self.done:
            return
        self._cancel(None)
        self.onResult(self.context, None, CancelledError())

    def _cancel(self, d: Any) -> None:
        state = self.state
        self.state = _DONE
        self.done = True
        if state == _WAITING:
            try:
                self.pool._waiters.remove(self)
            except ValueError:
                pass
        elif state == _CONNECTING:
            attempt = self.attempt
            if attempt is not None:
                attempt.request = None
        elif state == _SENT:
            conn = self.conn
            self.conn = None
            if conn is not None:
                conn.abort()


class _ConnectAttempt(ClientFactory):
    """
    One connection being opened, on behalf of a request (which may give up
    waiting; the connection then goes to the pool).
    """

    protocol = None  # type: ignore[assignment]
    noisy = False

    def __init__(self, pool: "HTTPConnectionPool", request: Optional[_PoolRequest]) -> None:
        self.pool = pool
        self.request = request
        self.connector: Any = None
        self.timer: Any = None
        self.proto: Optional[HTTPClientProtocol] = None
        self.finished = False

    def buildProtocol(self, addr: Any) -> HTTPClientProtocol:
        pool = self.pool
        proto = HTTPClientProtocol(pool, pool.address, pool._limits, pool._tlsCreator is not None)
        proto.createdAt = pool._clock.seconds()
        proto._attempt = self  # type: ignore[attr-defined]
        self.proto = proto
        return proto

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.pool._attemptFailed(self, reason)

    def _timedOut(self) -> None:
        self.timer = None
        if self.finished:
            return
        self.pool._attemptFailed(self, Failure(TwistedTimeoutError("connect timed out")), timedOut=True)
        if self.proto is not None:
            self.proto.abort()
        elif self.connector is not None:
            try:
                self.connector.stopConnecting()
            except Exception:
                pass


class HTTPConnectionPool:
    """
    Persistent connections to one endpoint.

    Metrics (under C{metrics}): C{connects} (counter), C{connections}
    (gauge: open connections, tunnels included), C{idle} (gauge),
    C{connect_failures}, C{stale_retries}, C{exhausted} and C{closes}
    (counters), C{waiters} (gauge).
    """

    def __init__(
        self,
        reactor: Any,
        host: str,
        port: int,
        settings: Optional[PoolSettings] = None,
        tlsCreator: Any = None,
        metrics: Optional[MetricsTree] = None,
        **overrides: Any,
    ) -> None:
        """
        @param reactor: provides C{IReactorTCP} and C{IReactorTime}.
        @param settings: a L{PoolSettings}.
        @param tlsCreator: an C{IOpenSSLClientConnectionCreator} to speak TLS
            to the endpoint (the connection is wrapped with
            C{TLSMemoryBIOFactory}), or C{None} for plaintext.
        @param overrides: L{PoolSettings} fields given as keywords
            (C{maxSize=4, idleTimeout=10.0}), applied over C{settings}.
        """
        self._reactor = reactor
        self._clock = reactor
        self.host = host
        self.port = port
        self.address = (host, port)
        settings = settings if settings is not None else PoolSettings()
        if overrides:
            settings = attrs.evolve(settings, **overrides)
        self.settings = settings
        self._limits = self.settings.limits()
        self._sweepInterval = settings.sweepInterval()
        self._tlsCreator = tlsCreator
        self._idle: List[HTTPClientProtocol] = []
        self._connections: Set[HTTPClientProtocol] = set()
        self._tunnels: Set[HTTPClientProtocol] = set()
        self._pending = 0
        self._waiters: Deque[_PoolRequest] = deque()
        self._closed = False
        self._closeWaiters: List[Deferred[None]] = []
        self._sweeper: Any = None
        self._busy: Set[HTTPClientProtocol] = set()
        self._watchdog: Any = None
        scope = metrics if metrics is not None else MetricsTree()
        self.metrics = scope
        self._connects = scope.counter("connects")
        self._connectFailures = scope.counter("connect_failures")
        self._staleRetries = scope.counter("stale_retries")
        self._exhausted = scope.counter("exhausted")
        self._closes = scope.counter("closes")
        self._responseTimeouts = scope.counter("response_timeouts")
        scope.gauge("connections", fn=lambda: len(self._connections) + len(self._tunnels))
        scope.gauge("idle", fn=lambda: len(self._idle))
        scope.gauge("waiters", fn=lambda: len(self._waiters))

    # -- public API --------------------------------------------------------------

    @property
    def size(self) -> int:
        """
        Pooled connections, open or opening.
        """
        return len(self._connections) + self._pending

    @property
    def idleCount(self) -> int:
        return len(self._idle)

    def request(self, head: RequestHead, body: Any = None) -> "Deferred[ClientResponse]":
        """
        Send a request on a pooled connection.

        @param head: the L{RequestHead} (serialised as HTTP/1.1).
        @param body: an L{IBodySource} when C{head} announces a body.
        @return: a cancellable C{Deferred} of a L{ClientResponse}.
        """
        req = _PoolRequest(self, head, body)
        self._dispatch(req, False)
        return req.deferred  # type: ignore[return-value]

    def send(self, head: RequestHead, body: Any, onResult: Any, context: Any) -> _PoolRequest:
        """
        L{request} without a C{Deferred}, for the router's fast path: the
        outcome is reported once, as C{onResult(context, response, None)} or
        C{onResult(context, None, error)}, possibly before this returns.

        @return: a handle whose C{cancel()} gives up on the request (the
            outcome is then a C{CancelledError}).
        """
        req = _PoolRequest(self, head, body, onResult, context)
        self._dispatch(req, False)
        return req

    def close(self) -> "Deferred[None]":
        """
        Stop: fail waiters with L{PoolClosed}, close idle connections now and
        busy ones when their exchange ends.

        @return: a C{Deferred} firing when every connection is closed.
        """
        self._closed = True
        waiters, self._waiters = self._waiters, deque()
        for req in waiters:
            req._fail(PoolClosed(self.address))
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        if self._sweeper is not None and self._sweeper.active():
            self._sweeper.cancel()
        self._sweeper = None
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = None
        self._busy.clear()
        if not self._connections and not self._tunnels and not self._pending:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._closeWaiters.append(d)
        return d

    # -- dispatching ------------------------------------------------------------------

    def _dispatch(self, req: _PoolRequest, fresh: bool) -> None:
        if self._closed:
            req._fail(PoolClosed(self.address))
            return
        if not fresh:
            idle = self._idle
            while idle:
                conn = idle.pop()
                if conn.idle:
                    req._send(conn)
                    return
        settings = self.settings
        if settings.maxSize is None or self.size < settings.maxSize:
            self._connect(req)
            return
        if settings.maxWaiters is not None and len(self._waiters) >= settings.maxWaiters:
            self._exhausted.value += 1
            req._fail(PoolExhausted(self.address, detail=f"{self.size} connections, {len(self._waiters)} waiters"))
            return
        req.state = _WAITING
        if fresh:
            self._waiters.appendleft(req)
        else:
            self._waiters.append(req)

    def _connect(self, req: Optional[_PoolRequest]) -> None:
        self._pending += 1
        attempt = _ConnectAttempt(self, req)
        if req is not None:
            req.state = _CONNECTING
            req.attempt = attempt
        factory: Any = attempt
        if self._tlsCreator is not None:
            from twisted.protocols.tls import TLSMemoryBIOFactory

            factory = TLSMemoryBIOFactory(self._tlsCreator, True, attempt)
        timeout = self.settings.connectTimeout
        attempt.timer = self._clock.callLater(timeout, attempt._timedOut)
        attempt.connector = connectTCP(
            self._reactor, self.host, self.port, factory, timeout=timeout + 1, options=self.settings.socketOptions
        )

    def _attemptFailed(self, attempt: _ConnectAttempt, reason: Failure, timedOut: bool = False) -> None:
        if attempt.finished:
            return
        attempt.finished = True
        self._pending -= 1
        if attempt.timer is not None and attempt.timer.active():
            attempt.timer.cancel()
        attempt.timer = None
        self._connectFailures.value += 1
        req = attempt.request
        attempt.request = None
        if req is not None and req.state == _CONNECTING:
            exc = reason.value
            if timedOut or isinstance(exc, TwistedTimeoutError):
                error: UpstreamError = ConnectTimeout(self.address, cause=exc)
                error.timeoutMs = int(self.settings.connectTimeout * 1000)  # type: ignore[attr-defined]
            elif isinstance(exc, ConnectionRefusedError):
                error = ConnectionRefused(self.address, cause=exc)
            elif attempt.proto is not None and self._tlsCreator is not None:
                error = TLSHandshakeFailed(self.address, cause=exc, detail=_describe(exc))
            else:
                error = ConnectionFailed(self.address, cause=exc, detail=_describe(exc))
            req._fail(error)
        self._serveWaiters()
        self._checkClosed()

    # -- callbacks from connections -----------------------------------------------------

    def _connectionReady(self, conn: HTTPClientProtocol) -> None:
        attempt = getattr(conn, "_attempt", None)
        conn._attempt = None  # type: ignore[attr-defined]
        if attempt is not None:
            if attempt.finished:
                conn.abort()
                return
            attempt.finished = True
            self._pending -= 1
            if attempt.timer is not None and attempt.timer.active():
                attempt.timer.cancel()
            attempt.timer = None
        self._connections.add(conn)
        self._connects.value += 1
        req = attempt.request if attempt is not None else None
        if attempt is not None:
            attempt.request = None
        if self._closed:
            if req is not None:
                req._fail(PoolClosed(self.address))
            conn.close()
            return
        if req is not None and req.state == _CONNECTING:
            req._send(conn)
        else:
            self._connectionReleased(conn)

    def _connectionReleased(self, conn: HTTPClientProtocol) -> None:
        if self._closed or conn not in self._connections:
            conn.close()
            return
        now = self._clock.seconds()
        lifeTime = self.settings.lifeTime
        if lifeTime is not None and now - conn.createdAt >= lifeTime:
            conn.close()
            return
        waiters = self._waiters
        while waiters:
            req = waiters.popleft()
            if req.state == _WAITING:
                req._send(conn)
                return
        conn.idleSince = now
        self._idle.append(conn)
        if self._sweeper is None and self._sweepInterval is not None:
            self._sweeper = self._clock.callLater(self._sweepInterval, self._sweep)

    def _connectionDetached(self, conn: HTTPClientProtocol) -> None:
        """
        The connection became a tunnel: it no longer counts toward the pool.
        """
        if conn in self._connections:
            self._connections.discard(conn)
            self._tunnels.add(conn)
            self._serveWaiters()

    def _connectionLost(self, conn: HTTPClientProtocol, reason: Failure, wasConnecting: bool) -> None:
        attempt = getattr(conn, "_attempt", None)
        if wasConnecting and attempt is not None:
            conn._attempt = None  # type: ignore[attr-defined]
            self._attemptFailed(attempt, reason)
            return
        if conn in self._connections:
            self._connections.discard(conn)
            self._closes.value += 1
            if conn in self._idle:
                self._idle.remove(conn)
        elif conn in self._tunnels:
            self._tunnels.discard(conn)
            self._closes.value += 1
        self._serveWaiters()
        self._checkClosed()

    def _serveWaiters(self) -> None:
        waiters = self._waiters
        maxSize = self.settings.maxSize
        while waiters and not self._closed and (maxSize is None or self.size < maxSize):
            req = waiters.popleft()
            if req.state == _WAITING:
                self._connect(req)

    def _checkClosed(self) -> None:
        if self._closed and not self._connections and not self._tunnels and not self._pending:
            waiters, self._closeWaiters = self._closeWaiters, []
            for d in waiters:
                d.callback(None)

    def _watch(self, conn: HTTPClientProtocol) -> None:
        """
        An exchange started on C{conn}: watch for a silent origin.
        """
        if self.settings.responseIdleTimeout is None or self._closed:
            return
        self._busy.add(conn)
        if self._watchdog is None:
            conn.quietSince = self._clock.seconds()
            self._watchdog = self._clock.callLater(1.0, self._checkSilence)

    def _unwatch(self, conn: HTTPClientProtocol) -> None:
        self._busy.discard(conn)

    def _checkSilence(self) -> None:
        """
        Once a second: a connection heard from since the last check is fine;
        one silent for C{responseIdleTimeout} is given up on.
        """
        self._watchdog = None
        limit = self.settings.responseIdleTimeout
        now = self._clock.seconds()
        for conn in list(self._busy):
            if conn.heard:
                conn.heard = False
                conn.quietSince = now
            elif limit is not None and now - conn.quietSince >= limit:
                self._busy.discard(conn)
                self._responseTimeouts.value += 1
                conn.silenced(limit)
        if self._busy and not self._closed:
            self._watchdog = self._clock.callLater(1.0, self._checkSilence)

    def _sweep(self) -> None:
        """
        Close connections idle (or alive) for too long.
        """
        self._sweeper = None
        settings = self.settings
        now = self._clock.seconds()
        keep: List[HTTPClientProtocol] = []
        open_ = len(self._connections)
        for conn in self._idle:  # oldest first
            idleFor = now - conn.idleSince
            expired = (
                (settings.sessionIdleTimeout is not None and idleFor >= settings.sessionIdleTimeout)
                or (settings.lifeTime is not None and now - conn.createdAt >= settings.lifeTime)
                or (settings.idleTimeout is not None and idleFor >= settings.idleTimeout and open_ > settings.minSize)
            )
            if expired or not conn.idle:
                open_ -= 1
                conn.close()
            else:
                keep.append(conn)
        self._idle = keep
        if keep and not self._closed and self._sweepInterval is not None:
            self._sweeper = self._clock.callLater(self._sweepInterval, self._sweep)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or exc.__class__.__name__

