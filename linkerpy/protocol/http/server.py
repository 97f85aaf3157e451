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
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from linkerpy.protocol.http.errors import BodyAborted, FramingError, RequestRejected
from linkerpy.protocol.http.exchange import ServerExchange
from linkerpy.protocol.http.framing import ChunkedDecoder
from linkerpy.protocol.http.message import REASONS, RequestHead
from linkerpy.protocol.http.parser import HeadLimits, checkPartialHead, parseRequestHead
from linkerpy.protocol.http.stream import EMPTY_BODY, ConnectionBody
from linkerpy.telemetry.metrics import MetricsTree

__all__ = ["ServerSettings", "HTTPServerFactory", "HTTPServerProtocol"]


@attrs.frozen
class ServerSettings:
    """
    Limits and timeouts of server connections (times in seconds; C{None}
    means "never").

    @ivar maxInitialLineKB: longest request line (414 beyond).
    @ivar maxHeadersKB: largest header section (431 beyond).
    @ivar maxHeaderCount: most header fields (431 beyond).
    @ivar allowConnect: accept C{CONNECT} (501 otherwise).
    @ivar requestHeadTimeout: the whole request head must arrive within this
        time of its first byte (or of the connection opening): 408 and close.
    @ivar bodyIdleTimeout: longest silence while reading a request body: 408
        (or a truncated response) and close.
    @ivar keepAliveTimeout: longest idle time between requests.
    @ivar sessionIdleTime: C{serverSession.idleTimeMs}: also closes idle
        connections (the smaller of the two applies); counted in C{idle}.
    @ivar sessionLifeTime: C{serverSession.lifeTimeMs}: a connection older
        than this is closed between requests (counted in C{lifetime}).
    @ivar pipelineBufferBytes: how much of the following pipelined requests
        is buffered while one is in flight before reading stops.
    @ivar requestBodyBufferBytes: how much request body is buffered before
        the handler starts reading it, before reading stops.
    @ivar timerGranularity: the sweeper period; C{None} picks a tenth of the
        smallest timeout, between 0.05 s and 1 s.
    """

    maxInitialLineKB: int = 4
    maxHeadersKB: int = 8
    maxHeaderCount: int = 100
    allowConnect: bool = False
    requestHeadTimeout: Optional[float] = 30.0
    bodyIdleTimeout: Optional[float] = 60.0
    keepAliveTimeout: Optional[float] = 75.0
    sessionIdleTime: Optional[float] = None
    sessionLifeTime: Optional[float] = None
    pipelineBufferBytes: int = 65536
    requestBodyBufferBytes: int = 65536
    timerGranularity: Optional[float] = None

    def limits(self) -> HeadLimits:
        """
        The parser limits these settings describe.
        """
        return HeadLimits(
            self.maxInitialLineKB * 1024,
            self.maxHeadersKB * 1024,
            self.maxHeaderCount,
            self.allowConnect,
        )

    def idleTimeout(self) -> Optional[float]:
        values = [v for v in (self.keepAliveTimeout, self.sessionIdleTime) if v is not None]
        return min(values) if values else None

    def granularity(self) -> float:
        if self.timerGranularity is not None:
            return self.timerGranularity
        values = [
            v
            for v in (
                self.requestHeadTimeout,
                self.bodyIdleTimeout,
                self.keepAliveTimeout,
                self.sessionIdleTime,
                self.sessionLifeTime,
            )
            if v is not None
        ]
        if not values:
            return 1.0
        return max(0.05, min(1.0, min(values) / 10.0))


# connection states
_HEAD = 0  # waiting for / reading a request head
_BODY = 1  # reading the current request's body
_WAIT = 2  # request read; waiting for the response to finish
_TUNNEL = 3  # raw byte tunnel after an upgrade
_CLOSED = 4

# timer kinds
_T_NONE = 0
_T_HEAD = 1
_T_BODY = 2
_T_IDLE = 3

# pause reasons (bits)
_P_BODY = 1
_P_PIPELINE = 2


@implementer(IHalfCloseableProtocol)
class HTTPServerProtocol(Protocol):
    """
    One downstream HTTP/1.x connection.
    """

    def __init__(self, factory: "HTTPServerFactory") -> None:
        self.factory = factory
        self._handler = factory.handler
        self._settings = factory.settings
        self._limits = factory.limits
        self._clock = factory.clock
        self._buffer = b""
        self._state = _HEAD
        self._exchange: Optional[ServerExchange] = None
        self._body: Optional[ConnectionBody] = None
        self._bodyRemaining = 0
        self._decoder: Optional[ChunkedDecoder] = None
        self._pauses = 0
        self._deadline: Optional[float] = None
        self._timer = _T_NONE
        self._connectedAt = 0.0
        self._closing = False
        self._closeAfterResponse = False
        self._eof = False
        self._inParse = False
        self._responseOver = False
        self._tunnel: Any = None
        self.connected = False

    # -- connection lifecycle --------------------------------------------------

    def connectionMade(self) -> None:
        factory = self.factory
        self.connected = True
        factory._connectionMade(self)
        now = self._clock.seconds()
        self._connectedAt = now
        if factory._draining:
            self._closing = True
        timeout = self._settings.requestHeadTimeout
        if timeout is not None:
            self._deadline = now + timeout
            self._timer = _T_HEAD

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.connected = False
        self._state = _CLOSED
        self._deadline = None
        body = self._body
        if body is not None:
            self._body = None
            body._fail(Failure(BodyAborted("client connection lost", reason.value)))
        exchange = self._exchange
        if exchange is not None:
            self._exchange = None
            exchange._connectionLost(reason)
        tunnel = self._tunnel
        if tunnel is not None:
            self._tunnel = None
            tunnel._connectionLost(reason)
        self.factory._connectionLost(self)

    def readConnectionLost(self) -> None:
        """
        The client half-closed: finish the request in flight, then close.
        """
        self._eof = True
        state = self._state
        if state == _TUNNEL:
            self._tunnel._readConnectionLost()
            return
        if state == _HEAD:
            self._loseConnection()
        elif state == _BODY:
            self._closing = True
            self._bodyFailed(BodyAborted("client closed before the request body ended"), 400)
        else:
            self._closing = True

    def writeConnectionLost(self) -> None:
        if self._tunnel is not None:
            self._tunnel._writeConnectionLost()

    def _loseConnection(self) -> None:
        if self._state != _CLOSED and self.transport is not None:
            self._state = _CLOSED
            self._deadline = None
            self.transport.loseConnection()

    def _abortConnection(self) -> None:
        if self.transport is not None:
            self._state = _CLOSED
            self._deadline = None
            self.transport.abortConnection()

    # -- reading ----------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        state = self._state
        if state == _HEAD:
            if self._buffer:
                data = self._buffer + data
                self._buffer = b""
            elif self._timer == _T_IDLE:
                timeout = self._settings.requestHeadTimeout
                if timeout is not None:
                    self._deadline = self._clock.seconds() + timeout
                    self._timer = _T_HEAD
                else:
                    self._deadline = None
                    self._timer = _T_NONE
            self._processHeads(data)
        elif state == _BODY:
            self._bodyData(data)
        elif state == _WAIT:
            self._buffer += data
            if len(self._buffer) > self._settings.pipelineBufferBytes:
                self._pause(_P_PIPELINE)
        elif state == _TUNNEL:
            self._tunnel._dataReceived(data)

    def _processHeads(self, buf: bytes) -> None:
        limits = self._limits
        self._inParse = True
        try:
            while True:
                while buf[:2] == b"\r\n":
                    buf = buf[2:]
                if not buf:
                    return
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    checkPartialHead(buf, limits)
                    self._buffer = buf
                    return
                head = parseRequestHead(buf, end, limits)
                end += 4
                rest = buf[end:] if end < len(buf) else b""
                rest = self._startExchange(head, rest)
                if self._state != _HEAD:
                    if rest:
                        self._buffer = rest
                        if self._state == _WAIT and len(rest) > self._settings.pipelineBufferBytes:
                            self._pause(_P_PIPELINE)
                    return
                buf = rest
        except RequestRejected as e:
            self._reject(e.status, e.reason)
        except FramingError as e:
            self._bodyFailed(BodyAborted(e.reason, e), 400)
        finally:
            self._inParse = False

    def _startExchange(self, head: RequestHead, rest: bytes) -> bytes:
        """
        Begin handling a parsed request.

        @return: the bytes after this request's body that are still to be
            processed (only meaningful when the exchange finished
            synchronously and the connection is back in C{_HEAD}).
        """
        now = self._clock.seconds()
        if head.chunked or head.contentLength:
            body = self._body = ConnectionBody(self, head.contentLength, self._settings.requestBodyBufferBytes)
            exchange = self._exchange = ServerExchange(self, head, body, now)
            self._responseOver = False
            self._state = _BODY
            timeout = self._settings.bodyIdleTimeout
            if timeout is not None:
                self._deadline = now + timeout
                self._timer = _T_BODY
            else:
                self._deadline = None
                self._timer = _T_NONE
            if head.chunked:
                self._decoder = ChunkedDecoder(self._limits)
            else:
                self._decoder = None
                self._bodyRemaining = head.contentLength
            if rest:
                rest = self._feedBody(rest)
        else:
            exchange = self._exchange = ServerExchange(self, head, EMPTY_BODY, now)
            self._responseOver = False
            self._state = _WAIT
            self._deadline = None
            self._timer = _T_NONE
        self._callHandler(exchange)
        return rest

    def _callHandler(self, exchange: ServerExchange) -> None:
        try:
            self._handler.handleRequest(exchange)
        except Exception:
            self.factory._handlerError(Failure())
            if not exchange.finished:
                if exchange.responseStarted and exchange.headSent:
                    exchange.abort()
                else:
                    self._closeAfterResponse = True
                    exchange.respondError(500, b"internal error")

    def _bodyData(self, data: bytes) -> None:
        timeout = self._settings.bodyIdleTimeout
        if timeout is not None:
            self._deadline = self._clock.seconds() + timeout
        try:
            rest = self._feedBody(data)
        except FramingError as e:
            self._bodyFailed(BodyAborted(e.reason, e), 400)
            return
        if rest and self._state != _CLOSED:
            if self._state == _HEAD:
                self._processHeads(rest)
            else:
                self._buffer = rest
                if len(rest) > self._settings.pipelineBufferBytes:
                    self._pause(_P_PIPELINE)

    def _feedBody(self, data: bytes) -> bytes:
        """
        Feed request body bytes.

        @raise FramingError: on a malformed chunked body.
        @return: the bytes after the body if it completed, else C{b""}.
        """
        body = self._body
        decoder = self._decoder
        if decoder is None:
            remaining = self._bodyRemaining
            n = len(data)
            if n < remaining:
                self._bodyRemaining = remaining - n
                body._deliver(data)  # type: ignore[union-attr]
                return b""
            self._bodyRemaining = 0
            if n == remaining:
                body._deliver(data)  # type: ignore[union-attr]
                rest = b""
            else:
                body._deliver(data[:remaining])  # type: ignore[union-attr]
                rest = data[remaining:]
            self._bodyComplete(None)
            return rest
        rest = decoder.feed(data, body._deliver)  # type: ignore[union-attr]
        if rest is None:
            return b""
        self._bodyComplete(decoder.trailers)
        return rest

    def _bodyComplete(self, trailers: Any) -> None:
        body = self._body
        self._body = None
        self._decoder = None
        self._deadline = None
        self._timer = _T_NONE
        responseOver = self._responseOver
        self._responseOver = False
        self._state = _WAIT
        if body is not None:
            body._finish(trailers)
        if responseOver and self._state == _WAIT:
            self._nextRequest()

    def _bodyFailed(self, error: BodyAborted, status: int) -> None:
        """
        The request body is broken (framing error, timeout, client gone):
        fail it, answer C{status} if nothing was sent yet, and close.
        """
        body = self._body
        self._body = None
        self._decoder = None
        self._closeAfterResponse = True
        self._closing = True
        if body is not None:
            body._fail(Failure(error))
        exchange = self._exchange
        if exchange is not None and not exchange.finished:
            if exchange.headSent:
                exchange.abort(Failure(error))
            else:
                exchange.respondError(status, error.reason.encode("latin-1", "replace") + b"\n")
        elif self._state != _CLOSED:
            self._reject(status, error.reason)
        if self._state != _CLOSED:
            self._loseConnection()

    def _reject(self, status: int, reason: str) -> None:
        """
        Answer a request that never reached the handler, and close.
        """
        self.factory._rejected.value += 1
        if self._state == _CLOSED or self.transport is None:
            return
        body = reason.encode("latin-1", "replace") + b"\n"
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (status, REASONS.get(status, b"Error"), len(body), body)
        )
        self._loseConnection()

    # -- body source owner callbacks --------------------------------------

    def _pause(self, bit: int) -> None:
        if not self._pauses and self.transport is not None:
            self.transport.pauseProducing()
        self._pauses |= bit

    def _resume(self, bit: int) -> None:
        if self._pauses & bit:
            self._pauses &= ~bit
            if not self._pauses and self._state != _CLOSED:
                self.transport.resumeProducing()

    def _bodyPause(self, source: Any) -> None:
        self._pause(_P_BODY)

    def _bodyResume(self, source: Any) -> None:
        self._resume(_P_BODY)

    def _bodyAbort(self, source: Any, reason: Any) -> None:
        """
        The handler does not want the rest of the request body: it is read
        and discarded, and the connection closes after the response.
        """
        if source is self._body:
            self._closing = True
            self._closeAfterResponse = True
            self._resume(_P_BODY)
            if self._exchange is None:
                self._loseConnection()

    def _bodyAttached(self, source: Any) -> None:
        exchange = self._exchange
        if exchange is not None and source is self._body and source.received == 0:
            exchange._bodyAttached()

    # -- responses ---------------------------------------------------------------

    def _shouldClose(self, request: RequestHead) -> bool:
        """
        Will the connection close after the response to C{request}?
        """
        if self._closing or not request.keepAlive or self._closeAfterResponse:
            return True
        if self._state == _BODY:
            body = self._body
            # The handler answers without reading the body: don't wait for it.
            if body is not None and body._consumer is None:
                return True
        return False

    def _exchangeDone(self, exchange: ServerExchange, ok: bool) -> None:
        """
        The response is complete (or abandoned).
        """
        if exchange is not self._exchange:
            return
        self._exchange = None
        if not ok or self._closeAfterResponse or self._closing:
            if self._state != _CLOSED and self._state != _TUNNEL:
                if self._state == _BODY and ok and self._body is not None and self._body._consumer is not None:
                    # let the body finish streaming, then close
                    self._responseOver = True
                    self._closing = True
                    return
                self._loseConnection()
            return
        state = self._state
        if state == _WAIT:
            self._nextRequest()
        elif state == _BODY:
            body = self._body
            if body is not None and body._consumer is not None:
                self._responseOver = True
            else:
                self._loseConnection()

    def _nextRequest(self) -> None:
        """
        Go back to reading heads (keep-alive), processing anything buffered.
        """
        if self._closing or self._closeAfterResponse or self._eof:
            self._loseConnection()
            return
        self._state = _HEAD
        timeout = self._settings.idleTimeout()
        if timeout is not None:
            self._deadline = self._clock.seconds() + timeout
            self._timer = _T_IDLE
        else:
            self._deadline = None
            self._timer = _T_NONE
        if self._pauses & _P_PIPELINE:
            self._resume(_P_PIPELINE)
        if self._buffer and not self._inParse:
            buf = self._buffer
            self._buffer = b""
            if self._timer == _T_IDLE:
                timeout = self._settings.requestHeadTimeout
                self._deadline = None if timeout is None else self._clock.seconds() + timeout
                self._timer = _T_HEAD if timeout is not None else _T_NONE
            self._processHeads(buf)

    # -- timers, drain ------------------------------------------------------------

    def _checkTimers(self, now: float) -> None:
        """
        Called by the factory's sweeper.
        """
        lifeTime = self._settings.sessionLifeTime
        if lifeTime is not None and now >= self._connectedAt + lifeTime and not self._closing:
            self._closing = True
            if self._state == _HEAD and not self._buffer:
                self.factory._lifetime.value += 1
                self._loseConnection()
                return
            self.factory._lifetime.value += 1
        deadline = self._deadline
        if deadline is None or now < deadline:
            return
        timer = self._timer
        self._deadline = None
        self._timer = _T_NONE
        if timer == _T_HEAD:
            if self._state == _HEAD:
                self.factory._headTimeouts.value += 1
                if self._buffer:
                    self._reject(408, "request head timed out")
                else:
                    self._loseConnection()
        elif timer == _T_IDLE:
            if self._state == _HEAD and not self._buffer:
                self.factory._idle.value += 1
                self._loseConnection()
        elif timer == _T_BODY:
            if self._state == _BODY:
                self.factory._bodyTimeouts.value += 1
                self._bodyFailed(BodyAborted("request body timed out"), 408)

    def _drain(self) -> None:
        """
        Stop taking new requests: close now if idle, else after the response
        in flight (which gets C{Connection: close}).
        """
        self._closing = True
        if self._state == _HEAD:
            self._loseConnection()

    # -- tunnel ---------------------------------------------------------------------

    def _startTunnel(self, exchange: ServerExchange, upstream: Any) -> None:
        from linkerpy.protocol.http.tunnel import ServerTunnelEnd, splice

        self._exchange = None
        self._state = _TUNNEL
        self._deadline = None
        self._timer = _T_NONE
        self._body = None
        pending = self._buffer
        self._buffer = b""
        end = self._tunnel = ServerTunnelEnd(self, pending)
        if self._pauses:
            self._pauses = 0
            self.transport.resumeProducing()
        splice(end, upstream)
        if self._eof:
            end._readConnectionLost()


class HTTPServerFactory(Factory):
    """
    Builds L{HTTPServerProtocol}s sharing a handler, settings, a clock and a
    metrics scope.

    Metrics (under C{metricsScope}): C{connects} (counter), C{connections}
    (gauge), C{idle} and C{lifetime} (connections closed by the session
    timers), C{rejected} (requests refused by the framing rules),
    C{head_timeouts}, C{body_timeouts} and C{handler_errors}.
    """

    protocol = HTTPServerProtocol  # type: ignore[assignment]

    def __init__(
        self,
        handler: Any,
        settings: Optional[ServerSettings] = None,
        clock: Any = None,
        metricsScope: Optional[MetricsTree] = None,
    ) -> None:
        """
        @param handler: an L{IHTTPHandler<linkerpy.protocol.http.interfaces.IHTTPHandler>}.
        @param clock: an C{IReactorTime} (required).
        """
        if clock is None:
            raise TypeError("HTTPServerFactory needs a clock (the reactor)")
        self.handler = handler
        self.settings = settings if settings is not None else ServerSettings()
        self.limits = self.settings.limits()
        self.clock = clock
        scope = metricsScope if metricsScope is not None else MetricsTree()
        self.metrics = scope
        self.protocols: Set[HTTPServerProtocol] = set()
        self._connects = scope.counter("connects")
        scope.gauge("connections", fn=lambda: len(self.protocols))
        self._idle = scope.counter("idle")
        self._lifetime = scope.counter("lifetime")
        self._rejected = scope.counter("rejected")
        self._headTimeouts = scope.counter("head_timeouts")
        self._bodyTimeouts = scope.counter("body_timeouts")
        self._handlerErrors = scope.counter("handler_errors")
        self._sweeper: Any = None
        self._draining = False
        self._drained: list = []

    def buildProtocol(self, addr: Any) -> HTTPServerProtocol:
        return HTTPServerProtocol(self)

    def _connectionMade(self, protocol: HTTPServerProtocol) -> None:
        self.protocols.add(protocol)
        self._connects.value += 1
        if self._sweeper is None:
            self._sweeper = self.clock.callLater(self.settings.granularity(), self._sweep)

    def _connectionLost(self, protocol: HTTPServerProtocol) -> None:
        self.protocols.discard(protocol)
        if not self.protocols:
            if self._sweeper is not None and self._sweeper.active():
                self._sweeper.cancel()
            self._sweeper = None
            drained, self._drained = self._drained, []
            for d in drained:
                d.callback(None)

    def _sweep(self) -> None:
        self._sweeper = None
        now = self.clock.seconds()
        for protocol in list(self.protocols):
            protocol._checkTimers(now)
        if self.protocols and self._sweeper is None:
            self._sweeper = self.clock.callLater(self.settings.granularity(), self._sweep)

    def _handlerError(self, failure: Failure) -> None:
        self._handlerErrors.value += 1
        from twisted.logger import Logger

        Logger().failure("HTTP handler raised", failure)

    def drain(self) -> "Deferred[None]":
        """
        Gracefully stop: idle connections close now, busy ones after their
        current response (sent with C{Connection: close}); requests already
        pipelined behind it are not processed.

        @return: a C{Deferred} firing when every connection has closed.
        """
        self._draining = True
        for protocol in list(self.protocols):
            protocol._drain()
        if not self.protocols:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._drained.append(d)
        return d
