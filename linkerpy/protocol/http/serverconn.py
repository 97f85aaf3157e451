# -*- test-case-name: tests.test_http_server -*-
"""
L{HTTPServerProtocol}: one downstream HTTP/1.x connection (see
L{linkerpy.protocol.http.server} for the factory and the behaviour).
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from linkerpy.net import setNoDelay
from linkerpy.protocol.http.errors import BodyAborted, FramingError, RequestRejected
from linkerpy.protocol.http.exchange import ServerExchange
from linkerpy.protocol.http.framing import ChunkedDecoder
from linkerpy.protocol.http.message import REASONS, RequestHead
from linkerpy.protocol.http.parser import checkPartialHead, parseRequestHead
from linkerpy.protocol.http.stream import EMPTY_BODY, ConnectionBody

__all__ = ["HTTPServerProtocol"]

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

    def __init__(self, factory: Any) -> None:
        self.factory = factory
        self._handler = factory.handler
        self._timeouts = factory.timeouts
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
        #: per-connection data for the handler (see C{exchange.connectionData})
        self.connectionData: Optional[dict] = None

    # -- connection lifecycle --------------------------------------------------

    def connectionMade(self) -> None:
        factory = self.factory
        if not factory._connectionMade(self):
            self._state = _CLOSED
            self.transport.abortConnection()
            return
        self.connected = True
        setNoDelay(self.transport)
        now = self._clock.seconds()
        self._connectedAt = now
        if factory._draining:
            self._closing = True
        timeout = self._timeouts.headTimeout
        if timeout is not None:
            self._deadline = now + timeout
            self._timer = _T_HEAD

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        if not self.connected:
            return
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
                timeout = self._timeouts.headTimeout
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
            if len(self._buffer) > self.factory.pipelineBufferBytes:
                self._pause(_P_PIPELINE)
        elif state == _TUNNEL:
            self._tunnel._dataReceived(data)

    def _processHeads(self, buf: bytes) -> None:
        limits = self._limits
        self._inParse = True
        try:
            while True:
                if buf[:2] == b"\r\n":
                    buf = self._skipEmptyLines(buf)
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
                        if self._state == _WAIT and len(rest) > self.factory.pipelineBufferBytes:
                            self._pause(_P_PIPELINE)
                    return
                buf = rest
        except RequestRejected as e:
            self._reject(e.status, e.reason)
        except FramingError as e:
            self._bodyFailed(BodyAborted(e.reason, e), 400)
        finally:
            self._inParse = False

    def _skipEmptyLines(self, buf: bytes) -> bytes:
        """
        Drop empty lines before a request line (RFC 9112 section 2.2), in one
        step however many there are.

        @raise RequestRejected: if they are not all CRLF.
        """
        stripped = buf.lstrip(b"\r\n")
        removed = len(buf) - len(stripped)
        if removed % 2 and not stripped and buf[-1:] == b"\r":
            removed -= 1  # a CR whose LF has not arrived yet
        if buf.count(b"\r\n", 0, removed) * 2 != removed:
            raise RequestRejected("bare CR or LF before the request line", 400)
        return buf[removed:]

    def _startExchange(self, head: RequestHead, rest: bytes) -> bytes:
        """
        Begin handling a parsed request.

        @return: the bytes after this request's body that are still to be
            processed (only meaningful when the exchange finished
            synchronously and the connection is back in C{_HEAD}).
        """
        now = self._clock.seconds()
        if head.chunked or head.contentLength:
            body = self._body = ConnectionBody(self, head.contentLength, self.factory.requestBodyBufferBytes)
            exchange = self._exchange = ServerExchange(self, head, body, now)
            self._responseOver = False
            self._state = _BODY
            timeout = self._timeouts.bodyIdleTimeout
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
        timeout = self._timeouts.bodyIdleTimeout
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
                if len(rest) > self.factory.pipelineBufferBytes:
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
        error.status = status  # read by the router: the client's fault, not the origin's
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
        The handler does not want the rest of the request body: stop reading
        it; the connection closes after the response.
        """
        if source is self._body:
            self._closing = True
            self._closeAfterResponse = True
            self._pause(_P_BODY)
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
        timeout = self._timeouts.keepAliveTimeout
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
                timeout = self._timeouts.headTimeout
                self._deadline = None if timeout is None else self._clock.seconds() + timeout
                self._timer = _T_HEAD if timeout is not None else _T_NONE
            self._processHeads(buf)

    # -- timers, drain ------------------------------------------------------------

    def _checkTimers(self, now: float) -> None:
        """
        Called by the factory's sweeper.
        """
        lifeTime = self._timeouts.lifeTime
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
