# -*- test-case-name: tests.test_h2_client -*-
"""
One multiplexed HTTP/2 connection per endpoint (prior-knowledge h2c, or
TLS with ALPN C{h2}), opened on the first request and re-opened when it
is lost or the server sends GOAWAY.

Requests made while the connection is being opened wait for it; if it
cannot be opened they fail with the HTTP data plane's connection errors
(L{ConnectionRefused}, L{ConnectTimeout}, L{TLSHandshakeFailed},
L{ConnectionFailed}: nothing was written, so the router may re-send).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Deque, List, Optional, Set

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.error import TimeoutError as TwistedTimeoutError
from twisted.internet.protocol import ClientFactory
from twisted.python.failure import Failure

from linkerpy.protocol.h2.client import H2ClientProtocol
from linkerpy.protocol.h2.connection import H2Settings
from linkerpy.protocol.h2.headers import H2Headers
from linkerpy.protocol.http.errors import (
    ConnectionFailed,
    ConnectionRefused,
    ConnectTimeout,
    PoolClosed,
    TLSHandshakeFailed,
    UpstreamError,
)
from linkerpy.telemetry.metrics import MetricsTree

__all__ = ["H2ClientPool"]


class _Waiter:
    __slots__ = ("headers", "body", "outer", "inner")

    def __init__(self, headers: H2Headers, body: Any) -> None:
        self.headers = headers
        self.body = body
        self.inner: Optional[Deferred] = None
        self.outer: Deferred = Deferred(self._cancel)

    def _cancel(self, d: Deferred) -> None:
        if self.inner is not None:
            self.inner.cancel()


class _Attempt(ClientFactory):
    """
    One connection being opened.
    """

    noisy = False

    def __init__(self, pool: "H2ClientPool") -> None:
        self.pool = pool
        self.proto: Optional[H2ClientProtocol] = None
        self.timer: Any = None
        self.connector: Any = None
        self.done = False

    def buildProtocol(self, addr: Any) -> H2ClientProtocol:
        pool = self.pool
        proto = H2ClientProtocol(pool.settings, pool.clock, pool.address, tls=pool.tlsCreator is not None)
        proto.onReady = pool._ready
        proto.onGone = pool._gone
        proto.onLost = pool._lost
        proto.onIdle = pool._idle
        proto._attempt = self  # type: ignore[attr-defined]
        self.proto = proto
        return proto

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.pool._attemptFailed(self, reason)

    def timedOut(self) -> None:
        self.timer = None
        if self.done:
            return
        self.pool._attemptFailed(self, Failure(TwistedTimeoutError("connect timed out")), timedOut=True)
        if self.proto is not None:
            self.proto.abortConnection()
        elif self.connector is not None:
            try:
                self.connector.stopConnecting()
            except Exception:
                pass


class H2ClientPool:
    """
    The HTTP/2 connection to one endpoint.

    @ivar address: C{(host, port)}.
    """

    def __init__(
        self,
        reactor: Any,
        host: str,
        port: int,
        settings: Optional[H2Settings] = None,
        tlsCreator: Any = None,
        connectTimeout: float = 5.0,
        idleTimeout: Optional[float] = None,
        lifeTime: Optional[float] = None,
        metrics: Optional[MetricsTree] = None,
        socketOptions: Any = None,
    ) -> None:
        self.reactor = reactor
        self.socketOptions = socketOptions
        self.clock = reactor
        self.host = host
        self.port = port
        self.address = (host, port)
        self.settings = settings or H2Settings()
        self.tlsCreator = tlsCreator
        self.connectTimeout = connectTimeout
        self.idleTimeout = idleTimeout
        self.lifeTime = lifeTime
        self.current: Optional[H2ClientProtocol] = None
        self.connections: Set[H2ClientProtocol] = set()
        self.closed = False
        self._attempt: Optional[_Attempt] = None
        self._waiting: Deque[_Waiter] = deque()
        self._closing: List[Deferred] = []
        metrics = metrics or MetricsTree()
        self._connects = metrics.counter("connects")
        self._connectFailures = metrics.counter("connect_failures")

    # -- requests ---------------------------------------------------------------

    def request(self, headers: H2Headers, body: Any = None) -> Deferred:
        """
        Send a request on the endpoint's connection (opening it if needed).

        @return: a C{Deferred} firing with an L{H2Response<linkerpy.protocol.h2.client.H2Response>}.
        """
        if self.closed:
            d: Deferred = Deferred()
            d.errback(Failure(PoolClosed(self.address)))
            return d
        conn = self.current
        if conn is not None and conn.available:
            return conn.request(headers, body)
        waiter = _Waiter(headers, body)
        self._waiting.append(waiter)
        waiter.outer.addErrback(self._forget, waiter)
        if self._attempt is None:
            self._connect()
        return waiter.outer

    def _forget(self, failure: Failure, waiter: _Waiter) -> Failure:
        try:
            self._waiting.remove(waiter)
        except ValueError:
            pass
        return failure

    def _connect(self) -> None:
        attempt = self._attempt = _Attempt(self)
        factory: Any = attempt
        if self.tlsCreator is not None:
            from linkerpy.tls.client import wrapClientFactory

            factory = wrapClientFactory(attempt, self.tlsCreator, self.reactor)
        attempt.timer = self.clock.callLater(self.connectTimeout, attempt.timedOut)
        from linkerpy.net import connectTCP

        attempt.connector = connectTCP(
            self.reactor, self.host, self.port, factory, timeout=self.connectTimeout + 1, options=self.socketOptions
        )

    def _finishAttempt(self, attempt: _Attempt) -> bool:
        if attempt.done:
            return False
        attempt.done = True
        if attempt.timer is not None and attempt.timer.active():
            attempt.timer.cancel()
        attempt.timer = None
        if self._attempt is attempt:
            self._attempt = None
        return True

    def _attemptFailed(self, attempt: _Attempt, reason: Failure, timedOut: bool = False) -> None:
        if not self._finishAttempt(attempt):
            return
        self._connectFailures.value += 1
        exc = reason.value
        error: UpstreamError
        if timedOut or isinstance(exc, TwistedTimeoutError):
            error = ConnectTimeout(self.address, cause=exc)
            error.timeoutMs = int(self.connectTimeout * 1000)  # type: ignore[attr-defined]
        elif isinstance(exc, ConnectionRefusedError):
            error = ConnectionRefused(self.address, cause=exc)
        elif self.tlsCreator is not None and attempt.proto is not None:
            error = TLSHandshakeFailed(self.address, cause=exc, detail=self._tlsDetail(attempt.proto, reason))
        else:
            error = ConnectionFailed(self.address, cause=exc, detail=str(exc) or type(exc).__name__)
        waiting, self._waiting = self._waiting, deque()
        for waiter in waiting:
            if not waiter.outer.called:
                waiter.outer.errback(Failure(error))

    def _tlsDetail(self, proto: H2ClientProtocol, reason: Failure) -> str:
        mismatch = getattr(proto, "alpnMismatch", False)
        if mismatch is not False:
            return f"the origin did not negotiate h2 with ALPN (got {mismatch!r})"
        explain = getattr(self.tlsCreator, "explainFailure", None)
        if explain is not None:
            explained = explain(reason)
            if explained is not None:
                return str(explained)
        return str(reason.value) or type(reason.value).__name__

    # -- connection callbacks -------------------------------------------------------

    def _ready(self, proto: H2ClientProtocol) -> None:
        attempt = getattr(proto, "_attempt", None)
        proto._attempt = None  # type: ignore[attr-defined]
        if attempt is not None and not self._finishAttempt(attempt):
            proto.abortConnection()
            return
        self._connects.value += 1
        self.connections.add(proto)
        if self.closed:
            proto.close()
            return
        self.current = proto
        if self.lifeTime is not None:
            proto._lifeTimer = self.clock.callLater(self.lifeTime, proto.close)  # type: ignore[attr-defined]
        waiting, self._waiting = self._waiting, deque()
        for waiter in waiting:
            if waiter.outer.called:
                continue
            inner = waiter.inner = proto.request(waiter.headers, waiter.body)
            inner.chainDeferred(waiter.outer)
        if not proto.streams:
            self._idle(proto)

    def _gone(self, proto: H2ClientProtocol) -> None:
        if self.current is proto:
            self.current = None
        if self._waiting and self._attempt is None and not self.closed:
            self._connect()

    def _lost(self, proto: H2ClientProtocol, reason: Failure) -> None:
        attempt = getattr(proto, "_attempt", None)
        if attempt is not None:
            self._attemptFailed(attempt, reason)
        self.connections.discard(proto)
        for name in ("_lifeTimer", "_idleTimer"):
            timer = getattr(proto, name, None)
            if timer is not None and timer.active():
                timer.cancel()
        if self.current is proto:
            self.current = None
        if not self.connections:
            closing, self._closing = self._closing, []
            for d in closing:
                if not d.called:
                    d.callback(None)

    def _idle(self, proto: H2ClientProtocol) -> None:
        timeout = self.idleTimeout
        if timeout is None or proto.closed:
            return
        timer = getattr(proto, "_idleTimer", None)
        if timer is not None and timer.active():
            timer.reset(timeout)
        else:
            proto._idleTimer = self.clock.callLater(timeout, self._idleCheck, proto)  # type: ignore[attr-defined]

    def _idleCheck(self, proto: H2ClientProtocol) -> None:
        proto._idleTimer = None  # type: ignore[attr-defined]
        if proto.streams or proto.closed:
            return
        if self.clock.seconds() - proto.lastActive < (self.idleTimeout or 0) - 1e-6:
            self._idle(proto)
            return
        proto.close()

    # -- closing -----------------------------------------------------------------------

    def close(self) -> Deferred:
        """
        Stop: fail waiting requests, close connections once their streams
        are done.
        """
        self.closed = True
        waiting, self._waiting = self._waiting, deque()
        for waiter in waiting:
            if not waiter.outer.called:
                waiter.outer.errback(Failure(PoolClosed(self.address)))
        if self._attempt is not None:
            attempt = self._attempt
            self._finishAttempt(attempt)
            if attempt.proto is not None:
                attempt.proto.abortConnection()
            elif attempt.connector is not None:
                try:
                    attempt.connector.stopConnecting()
                except Exception:
                    pass
        if not self.connections:
            return succeed(None)
        d: Deferred = Deferred()
        self._closing.append(d)
        for proto in list(self.connections):
            proto.close()
        return d


def closeAll(pools: List[H2ClientPool]) -> Deferred:
    return DeferredList([p.close() for p in pools], consumeErrors=True)
