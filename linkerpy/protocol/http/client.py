# -*- test-case-name: tests.test_http_client -*-
"""
The HTTP/1.1 client (upstream) connection: one request at a time (no
pipelining), strict response parsing, response body streaming with
back-pressure, and precise failure reporting.

A request is issued with L{HTTPClientProtocol.request}, passing a
I{listener} with two methods:

  - C{_responseReceived(response)}: a L{ClientResponse} (head, body source,
    and for C{101} a tunnel end);
  - C{_requestFailed(error)}: an L{UpstreamError} subclass whose
    C{requestWritten}/C{responseStarted} flags tell how far the exchange got.

Once the response head has been delivered, later failures go to the
response body source (C{bodyAborted}).  The protocol tells its I{owner} (the
pool) when the connection is reusable (C{_connectionReleased}), when it is
no longer pooled (C{_connectionDetached}), and when it is lost
(C{_connectionLost}).
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol, IHandshakeListener
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from linkerpy.net import setNoDelay
from linkerpy.protocol.http.errors import (
    BodyAborted,
    ConnectionReset,
    ResponseTimeout,
    FramingError,
    RequestBodyFailed,
    ResponseProtocolError,
)
from linkerpy.protocol.http.framing import ChunkedDecoder
from linkerpy.protocol.http.message import RequestHead, ResponseHead
from linkerpy.protocol.http.parser import DEFAULT_LIMITS, HeadLimits, checkPartialHead, parseResponseHead
from linkerpy.protocol.http.stream import EMPTY_BODY, BytesBody, ConnectionBody

__all__ = ["HTTPClientProtocol", "ClientResponse"]


class ClientResponse:
    """
    A response received from an upstream connection.

    @ivar head: the L{ResponseHead}.
    @ivar body: an L{IBodySource<linkerpy.protocol.http.interfaces.IBodySource>}
        (the empty body when there is none).
    @ivar tunnel: for C{101} (or C{2xx} to C{CONNECT}), the upstream
        L{ClientTunnelEnd<linkerpy.protocol.http.tunnel.ClientTunnelEnd>}
        to hand to C{exchange.upgrade}; else C{None}.
    @ivar address: the endpoint address.
    """

    __slots__ = ("head", "body", "tunnel", "address")

    def __init__(self, head: ResponseHead, body: Any, tunnel: Any = None, address: Any = None) -> None:
        self.head = head
        self.body = body
        self.tunnel = tunnel
        self.address = address


class _RequestBodyWriter:
    """
    Consumer writing a request body to the upstream transport with the
    framing the head announced.
    """

    __slots__ = ("_protocol", "_chunked", "_remaining", "_active")

    def __init__(self, protocol: "HTTPClientProtocol", chunked: bool, length: Optional[int]) -> None:
        self._protocol = protocol
        self._chunked = chunked
        self._remaining = length or 0
        self._active = True

    def dataReceived(self, data: bytes) -> None:
        if not self._active or not data:
            return
        transport = self._protocol.transport
        if self._chunked:
            transport.writeSequence((b"%x\r\n" % len(data), data, b"\r\n"))
        else:
            remaining = self._remaining - len(data)
            if remaining < 0:
                self._active = False
                self._protocol._requestBodyFailed(
                    Failure(BodyAborted("request body longer than its Content-Length"))
                )
                return
            self._remaining = remaining
            transport.write(data)

    def bodyEnd(self, trailers: Any) -> None:
        if not self._active:
            return
        self._active = False
        if self._chunked:
            if trailers:
                self._protocol.transport.write(b"0\r\n" + trailers.serialize() + b"\r\n")
            else:
                self._protocol.transport.write(b"0\r\n\r\n")
        elif self._remaining:
            self._protocol._requestBodyFailed(Failure(BodyAborted("request body shorter than its Content-Length")))
            return
        self._protocol._requestBodyDone()

    def bodyAborted(self, reason: Failure) -> None:
        if self._active:
            self._active = False
            self._protocol._requestBodyFailed(reason)


# connection states
_CONNECTING = 0  # TCP (and TLS) not ready yet
_IDLE = 1
_ACTIVE = 2  # a request in flight
_TUNNEL = 3
_CLOSED = 4

# response parsing phases while _ACTIVE
_R_HEAD = 0
_R_BODY = 1
_R_DONE = 2


@implementer(IHalfCloseableProtocol, IHandshakeListener)
class HTTPClientProtocol(Protocol):
    """
    One upstream connection.

    @ivar address: the endpoint address, for error reports.
    @ivar reused: C{True} once the connection served a request.
    @ivar createdAt: clock time of creation (set by the pool).
    @ivar idleSince: clock time it last became idle (set by the pool).
    """

    def __init__(self, owner: Any, address: Any, limits: HeadLimits = DEFAULT_LIMITS, tls: bool = False) -> None:
        self._owner = owner
        self.address = address
        self._limits = limits
        self._tls = tls
        self._state = _CONNECTING
        self._phase = _R_DONE
        self._buffer = b""
        self._listener: Any = None
        self._method = b""
        self._upgradeRequested = False
        self._requestWritten = False
        self._responseStarted = False
        self._requestDone = True
        self._writer: Optional[_RequestBodyWriter] = None
        self._requestBody: Any = None
        self._body: Optional[ConnectionBody] = None
        self._bodyRemaining = 0
        self._decoder: Optional[ChunkedDecoder] = None
        self._closeDelimited = False
        self._keepAlive = True
        self._tunnel: Any = None
        self._lostReason: Optional[Failure] = None
        self.reused = False
        self.createdAt = 0.0
        self.idleSince = 0.0
        self.requests = 0
        #: Set by every read; the pool's watchdog clears it (see
        #: L{HTTPConnectionPool._watch}).
        self.heard = False
        self.quietSince = 0.0

    # -- connection events -------------------------------------------------------

    def connectionMade(self) -> None:
        setNoDelay(self.transport)
        if not self._tls:
            self._ready()

    def handshakeCompleted(self) -> None:
        if self._tls and self._state == _CONNECTING:
            transport = self.transport
            if getattr(transport, "disconnecting", False) or getattr(transport, "disconnected", False):
                # The handshake finished but the TLS layer is already closing
                # the connection (e.g. the peer's name did not verify; some
                # Twisted versions report the handshake first): the coming
                # connectionLost reports the failure.
                return
            self._ready()

    def _ready(self) -> None:
        self._state = _IDLE
        self._owner._connectionReady(self)

    @property
    def ready(self) -> bool:
        return self._state != _CONNECTING and self._state != _CLOSED

    @property
    def idle(self) -> bool:
        """
        C{True} when the connection can take a request.
        """
        return self._state == _IDLE

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self._owner._unwatch(self)
        state = self._state
        self._state = _CLOSED
        self._lostReason = reason
        if state == _ACTIVE:
            self._activeLost(reason)
        elif state == _TUNNEL:
            tunnel = self._tunnel
            self._tunnel = None
            if tunnel is not None:
                tunnel._connectionLost(reason)
        self._owner._connectionLost(self, reason, state == _CONNECTING)

    def readConnectionLost(self) -> None:
        if self._state == _TUNNEL:
            self._tunnel._readConnectionLost()
            return
        # An HTTP exchange cannot continue on a half-closed connection: treat
        # the end of input as the end of the connection.
        self.transport.loseConnection()
        if self._state == _IDLE:
            # the origin closed an idle connection: never hand it out again
            self._state = _CLOSED
        elif self._state == _ACTIVE:
            self._state = _CLOSED
            self._activeLost(Failure(ConnectionDone()))

    def writeConnectionLost(self) -> None:
        if self._tunnel is not None:
            self._tunnel._writeConnectionLost()

    def silenced(self, seconds: float) -> None:
        """
        The origin sent nothing for C{seconds} during the exchange: give up.
        Before the response head the request fails with L{ResponseTimeout}
        (the router answers 504); during the body the response is cut short.
        Either way the connection is closed.
        """
        if self._state != _ACTIVE:
            return
        if self._phase == _R_HEAD and self._listener is not None:
            listener = self._listener
            self._listener = None
            self._state = _CLOSED
            self._stopRequestBody()
            listener._requestFailed(
                ResponseTimeout(self.address, self._requestWritten, bool(self._buffer), None, f"for {seconds:g} seconds")
            )
        self.transport.abortConnection()

    def _activeLost(self, reason: Failure) -> None:
        """
        The connection ended while a request was in flight.
        """
        phase = self._phase
        listener = self._listener
        self._listener = None
        self._stopRequestBody()
        if phase == _R_HEAD:
            if listener is not None:
                if self._buffer:
                    self._responseStarted = True
                listener._requestFailed(
                    ConnectionReset(
                        self.address,
                        self._requestWritten,
                        self._responseStarted,
                        reason.value,
                        "before a complete response head" if self._responseStarted else "before any response",
                    )
                )
        elif phase == _R_BODY:
            body = self._body
            self._body = None
            self._phase = _R_DONE
            if body is not None:
                if self._closeDelimited and reason.check(ConnectionDone):
                    body._finish(None)
                else:
                    body._fail(
                        Failure(
                            ConnectionReset(
                                self.address, True, True, reason.value, "while reading the response body"
                            )
                        )
                    )

    # -- issuing a request -------------------------------------------------------

    def request(self, head: RequestHead, body: Any, listener: Any) -> None:
        """
        Send C{head} and stream C{body}; report to C{listener}.

        @param body: an L{IBodySource} or C{None}; ignored unless the head
            announces a body.
        """
        if self._state != _IDLE:
            raise RuntimeError("connection is not idle")
        self._listener = listener
        self._method = head.method
        self._upgradeRequested = head.upgrade is not None or head.method == b"CONNECT"
        self._requestWritten = False
        self._responseStarted = False
        self._phase = _R_HEAD
        self._buffer = b""
        self._state = _ACTIVE
        self.requests += 1
        self.heard = True
        self._owner._watch(self)
        transport = self.transport
        if getattr(transport, "disconnecting", False) or getattr(transport, "disconnected", False):
            # The origin closed while the connection sat idle and we have not
            # seen connectionLost yet: nothing was written.
            self._state = _CLOSED
            self._listener = None
            listener._requestFailed(ConnectionReset(self.address, False, False, None, "connection already closed"))
            transport.loseConnection()
            return
        data = head.serialize()
        if (head.chunked or head.contentLength) and body is not None:
            self._requestDone = False
            writer = self._writer = _RequestBodyWriter(self, head.chunked, head.contentLength)
            self._requestBody = body
            transport.write(data)
            self._requestWritten = True
            if not body.finished:
                transport.registerProducer(body, True)
            body.attach(writer)
        else:
            self._requestDone = True
            transport.write(data)
            self._requestWritten = True

    def _stopRequestBody(self) -> None:
        """
        Stop sending the request body (the exchange is over or failed): the
        rest of it is not wanted, so the source is aborted (a replay view
        only detaches, keeping the body for a retry).
        """
        writer = self._writer
        if writer is not None:
            self._writer = None
            writer._active = False
            body = self._requestBody
            self._requestBody = None
            if body is not None and not self._requestDone:
                try:
                    self.transport.unregisterProducer()
                except RuntimeError:
                    pass
                body.abort()

    def _requestBodyDone(self) -> None:
        self._requestDone = True
        self._writer = None
        if self._requestBody is not None:
            self._requestBody = None
            try:
                self.transport.unregisterProducer()
            except RuntimeError:
                pass
        if self._phase == _R_DONE and self._state == _ACTIVE:
            self._exchangeOver()

    def _requestBodyFailed(self, reason: Failure) -> None:
        """
        The request body source failed: abandon the exchange.
        """
        self._stopRequestBody()
        if self._state != _ACTIVE:
            return
        self._state = _CLOSED
        listener = self._listener
        self._listener = None
        if listener is not None:
            listener._requestFailed(
                RequestBodyFailed(self.address, self._requestWritten, self._responseStarted, reason.value)
            )
        elif self._body is not None:
            body = self._body
            self._body = None
            body._fail(reason)
        self.transport.abortConnection()

    # -- reading the response ------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        self.heard = True
        state = self._state
        if state == _ACTIVE:
            phase = self._phase
            if phase == _R_BODY:
                self._bodyData(data)
            elif phase == _R_HEAD:
                self._responseStarted = True
                if self._buffer:
                    data = self._buffer + data
                    self._buffer = b""
                self._headData(data)
            # _R_DONE: bytes after a complete response while the request
            # body is still being sent: the connection is unusable.
            else:
                self._protocolError(FramingError("unexpected bytes after the response"))
        elif state == _TUNNEL:
            self._tunnel._dataReceived(data)
        elif state == _IDLE:
            # An idle upstream connection must stay silent.
            self._state = _CLOSED
            self.transport.abortConnection()

    def _headData(self, buf: bytes) -> None:
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                try:
                    checkPartialHead(buf, self._limits, request=False)
                except FramingError as e:
                    self._protocolError(e)
                    return
                self._buffer = buf
                return
            try:
                head, hasBody = parseResponseHead(buf, end, self._method, self._limits)
            except FramingError as e:
                self._protocolError(e)
                return
            end += 4
            rest = buf[end:] if end < len(buf) else b""
            status = head.status
            if status < 200 and status != 101:
                # interim response (100, 102, 103): skip it
                if not rest:
                    return
                buf = rest
                continue
            break
        listener = self._listener
        if (status == 101 and self._upgradeRequested) or (self._method == b"CONNECT" and status < 300):
            from linkerpy.protocol.http.tunnel import ClientTunnelEnd

            self._listener = None
            self._state = _TUNNEL
            self._phase = _R_DONE
            self._owner._unwatch(self)
            tunnel = self._tunnel = ClientTunnelEnd(self, rest)
            self._owner._connectionDetached(self)
            listener._responseReceived(ClientResponse(head, EMPTY_BODY, tunnel, self.address))
            return
        if status == 101:
            self._protocolError(FramingError("101 response to a request that did not ask to upgrade"))
            return
        self._keepAlive = head.keepAlive
        self._listener = None
        if hasBody:
            length = head.contentLength
            if length is not None and len(rest) >= length:
                # The whole body is here (the common small response): no
                # streaming machinery needed.
                if len(rest) > length:
                    self._keepAlive = False
                    rest = rest[:length]
                self._phase = _R_DONE
                self._responseDone()
                listener._responseReceived(ClientResponse(head, BytesBody(rest), None, self.address))
                return
            body = self._body = ConnectionBody(self, length)
            self._phase = _R_BODY
            if head.chunked:
                self._decoder = ChunkedDecoder(self._limits)
                self._closeDelimited = False
            elif head.contentLength is not None:
                self._decoder = None
                self._closeDelimited = False
                self._bodyRemaining = head.contentLength
            else:
                self._decoder = None
                self._closeDelimited = True
            # Feed what already arrived first: a small body is then complete
            # (and the connection back in the pool) before the listener
            # sees the response, so the sink can skip producer registration.
            if rest:
                self._bodyData(rest)
            listener._responseReceived(ClientResponse(head, body, None, self.address))
        else:
            self._phase = _R_DONE
            if rest:
                self._keepAlive = False
            self._responseDone()
            listener._responseReceived(ClientResponse(head, EMPTY_BODY, None, self.address))

    def _bodyData(self, data: bytes) -> None:
        body = self._body
        decoder = self._decoder
        try:
            if decoder is not None:
                rest = decoder.feed(data, body._deliver)  # type: ignore[union-attr]
                if rest is None:
                    return
                trailers = decoder.trailers
            elif self._closeDelimited:
                body._deliver(data)  # type: ignore[union-attr]
                return
            else:
                remaining = self._bodyRemaining
                n = len(data)
                if n < remaining:
                    self._bodyRemaining = remaining - n
                    body._deliver(data)  # type: ignore[union-attr]
                    return
                self._bodyRemaining = 0
                if n == remaining:
                    body._deliver(data)  # type: ignore[union-attr]
                    rest = b""
                else:
                    body._deliver(data[:remaining])  # type: ignore[union-attr]
                    rest = data[remaining:]
                trailers = None
        except FramingError as e:
            self._protocolError(e)
            return
        if rest:
            # Extra bytes after a complete response: the origin is confused.
            self._keepAlive = False
        self._body = None
        self._decoder = None
        self._phase = _R_DONE
        if body is not None:
            body._finish(trailers)
        if self._state == _ACTIVE:
            self._responseDone()

    def _protocolError(self, error: FramingError) -> None:
        """
        The response violates the framing rules: fail the exchange and drop
        the connection.
        """
        if self._state == _CLOSED:
            return
        self._state = _CLOSED
        self._stopRequestBody()
        exc = ResponseProtocolError(self.address, self._requestWritten, True, error, error.reason)
        listener = self._listener
        self._listener = None
        body = self._body
        self._body = None
        self._phase = _R_DONE
        if listener is not None:
            listener._requestFailed(exc)
        elif body is not None:
            body._fail(Failure(exc))
        self.transport.abortConnection()

    def _responseDone(self) -> None:
        if self._requestDone:
            self._exchangeOver()
        else:
            # The origin answered before reading the whole request body: stop
            # sending it; the connection cannot be reused.
            self._keepAlive = False
            self._stopRequestBody()
            self._exchangeOver()

    def _exchangeOver(self) -> None:
        self._owner._unwatch(self)
        if self._keepAlive and self._state == _ACTIVE:
            self._state = _IDLE
            self.reused = True
            self._owner._connectionReleased(self)
        else:
            self._state = _CLOSED
            self.transport.loseConnection()

    # -- response body source owner ------------------------------------------------

    def _bodyPause(self, source: Any) -> None:
        if source is self._body:
            self.transport.pauseProducing()

    def _bodyResume(self, source: Any) -> None:
        if self._state != _CLOSED:
            self.transport.resumeProducing()

    def _bodyAbort(self, source: Any, reason: Any) -> None:
        if source is self._body:
            self._body = None
            self._state = _CLOSED
            self._stopRequestBody()
            self.transport.abortConnection()

    def _bodyAttached(self, source: Any) -> None:
        pass

    # -- pool helpers ----------------------------------------------------------------

    def abort(self) -> None:
        """
        Drop the connection now (cancellation, pool close, expiry).
        """
        if self.transport is not None:
            self.transport.abortConnection()

    def close(self) -> None:
        """
        Close the connection after flushing.
        """
        if self.transport is not None:
            self.transport.loseConnection()
