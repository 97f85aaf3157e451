# -*- test-case-name: tests.test_http_server -*-
"""
L{ServerExchange}: one request on a server connection and the writer of its
response (it is the response body sink).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Tuple, Union

from twisted.internet.interfaces import ISSLTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from linkerpy.protocol.http.errors import BodyAborted
from linkerpy.protocol.http.headers import FRAMING, HOP_BY_HOP, Headers
from linkerpy.protocol.http.interfaces import IBodySink, IServerExchange
from linkerpy.protocol.http.message import HTTP11, REASONS, RequestHead, ResponseHead

__all__ = ["ServerExchange"]

# response states
_NONE = 0  # nothing decided yet
_PENDING = 1  # respond() called, head not written yet
_STREAMING = 2  # head written
_DONE = 3  # complete response handed to the transport
_ABORTED = 4  # given up (truncated, or connection lost)

# body modes
_M_NONE = 0
_M_LENGTH = 1
_M_CHUNKED = 2
_M_CLOSE = 3

_STRIP = HOP_BY_HOP | FRAMING

#: Status lines already built, by (status, reason).
_STATUS_LINES: dict = {}


def _cleanHeaders(headers: Headers) -> bytes:
    """
    Serialise response headers, dropping hop-by-hop and framing fields (the
    exchange writes its own).
    """
    if headers._clean:
        return headers.serialize()
    items = headers._items
    for item in items:
        if item[0] in _STRIP:
            return b"".join([n + b": " + v + b"\r\n" for ln, n, v in items if ln not in _STRIP])
    return headers.serialize()


@implementer(IServerExchange, IBodySink)
class ServerExchange:
    """
    A request received by an L{HTTPServerProtocol<linkerpy.protocol.http.server.HTTPServerProtocol>}.

    L{respond} returns the exchange itself as the response L{IBodySink}.  The
    response head is written lazily, together with the first body bytes (or
    at L{end}), so a router may still replace a started-but-unsent response
    with an error.
    """

    __slots__ = (
        "request",
        "body",
        "startedAt",
        "abortHandler",
        "completionHandler",
        "_protocol",
        "_state",
        "_mode",
        "_remaining",
        "_headBytes",
        "_producer",
        "_continueSent",
        "_status",
    )

    def __init__(self, protocol: Any, request: RequestHead, body: Any, startedAt: float) -> None:
        self._protocol = protocol
        self.request = request
        self.body = body
        self.startedAt = startedAt
        self.abortHandler: Optional[Callable[[Failure], Any]] = None
        self.completionHandler: Optional[Callable[[Any, bool], Any]] = None
        self._state = _NONE
        self._mode = _M_NONE
        self._remaining = 0
        self._headBytes: Optional[bytes] = None
        self._producer: Any = None
        self._continueSent = False
        self._status = 0

    # -- information ---------------------------------------------------------

    @property
    def peer(self) -> Any:
        return self._protocol.transport.getPeer()

    @property
    def host(self) -> Any:
        return self._protocol.transport.getHost()

    @property
    def isSecure(self) -> bool:
        return ISSLTransport.providedBy(self._protocol.transport)

    def peerCertificate(self) -> Any:
        transport = self._protocol.transport
        if not ISSLTransport.providedBy(transport):
            return None
        try:
            return transport.getPeerCertificate()
        except Exception:
            return None

    @property
    def connectionData(self) -> dict:
        """
        A C{dict} that lives as long as the downstream connection, shared by
        its requests: somewhere to keep per-connection values (e.g. one
        derived from the client certificate).
        """
        protocol = self._protocol
        data = protocol.connectionData
        if data is None:
            data = protocol.connectionData = {}
        return data

    @property
    def responseStarted(self) -> bool:
        """
        C{True} once L{respond} (or L{upgrade}) was called.
        """
        return self._state != _NONE

    @property
    def headSent(self) -> bool:
        """
        C{True} once response bytes were handed to the transport.
        """
        return self._state >= _STREAMING and self._headBytes is None

    @property
    def finished(self) -> bool:
        """
        C{True} once the exchange is over (completed or aborted).
        """
        return self._state >= _DONE

    @property
    def status(self) -> int:
        """
        The status of the response started, or 0.
        """
        return self._status

    # -- responding --------------------------------------------------------

    def respond(self, head: ResponseHead) -> "ServerExchange":
        if self._state != _NONE:
            if self._state >= _DONE:
                return self  # the exchange is over (client gone): a no-op sink
            raise RuntimeError("response already started")
        protocol = self._protocol
        request = self.request
        status = head.status
        self._status = status
        key = (status, head.reason)
        line = _STATUS_LINES.get(key)
        if line is None:
            line = b"HTTP/1.1 %d %s\r\n" % key
            if len(_STATUS_LINES) < 1000:
                _STATUS_LINES[key] = line
        parts = [line, _cleanHeaders(head.headers)]
        close = protocol._shouldClose(request)
        if status < 200 or status == 204:
            mode = _M_NONE
        elif status == 304 or request.method == b"HEAD":
            mode = _M_NONE
            if head.contentLength is not None:
                parts.append(b"Content-Length: %d\r\n" % head.contentLength)
        elif head.contentLength is not None:
            mode = _M_LENGTH
            self._remaining = head.contentLength
            parts.append(b"Content-Length: %d\r\n" % head.contentLength)
        elif request.version == HTTP11:
            mode = _M_CHUNKED
            parts.append(b"Transfer-Encoding: chunked\r\n")
        else:
            mode = _M_CLOSE
            close = True
        if close:
            protocol._closeAfterResponse = True
            parts.append(b"Connection: close\r\n\r\n")
        elif request.version != HTTP11:
            parts.append(b"Connection: keep-alive\r\n\r\n")
        else:
            parts.append(b"\r\n")
        self._mode = mode
        self._headBytes = b"".join(parts)
        self._state = _PENDING
        return self

    def write(self, data: bytes) -> None:
        state = self._state
        if state == _STREAMING or state == _PENDING:
            mode = self._mode
            transport = self._protocol.transport
            head = self._headBytes
            if head is not None:
                self._headBytes = None
                self._state = _STREAMING
            if mode == _M_LENGTH:
                remaining = self._remaining - len(data)
                if remaining < 0:
                    if head is not None:
                        transport.write(head)
                    self._abort(Failure(BodyAborted("response body longer than its Content-Length")))
                    return
                self._remaining = remaining
                if head is not None:
                    transport.writeSequence((head, data))
                else:
                    transport.write(data)
            elif mode == _M_CHUNKED:
                if not data:
                    if head is not None:
                        transport.write(head)
                    return
                if head is not None:
                    transport.writeSequence((head, b"%x\r\n" % len(data), data, b"\r\n"))
                else:
                    transport.writeSequence((b"%x\r\n" % len(data), data, b"\r\n"))
            elif mode == _M_CLOSE:
                if head is not None:
                    transport.writeSequence((head, data))
                else:
                    transport.write(data)
            elif head is not None:  # _M_NONE: the body is dropped
                transport.write(head)
        elif state == _NONE:
            raise RuntimeError("write() before respond()")

    dataReceived = write

    def end(self, trailers: Optional[Headers] = None) -> None:
        state = self._state
        if state != _PENDING and state != _STREAMING:
            if state == _NONE:
                raise RuntimeError("end() before respond()")
            return
        mode = self._mode
        protocol = self._protocol
        head = self._headBytes
        self._headBytes = None
        if mode == _M_LENGTH and self._remaining:
            if head is not None:
                protocol.transport.write(head)
            self._abort(Failure(BodyAborted("response body shorter than its Content-Length")))
            return
        if mode == _M_CHUNKED:
            tail = b"0\r\n" + trailers.serialize() + b"\r\n" if trailers else b"0\r\n\r\n"
            if head is not None:
                protocol.transport.writeSequence((head, tail))
            else:
                protocol.transport.write(tail)
        elif head is not None:
            protocol.transport.write(head)
        self._state = _DONE
        self._finish(True)

    bodyEnd = end

    def abort(self, reason: Any = None) -> None:
        """
        Give up on the response.  If nothing was written yet, the client gets
        a C{502} and the connection closes; otherwise the response is
        truncated (see L{IBodySink.abort}).
        """
        state = self._state
        if state >= _DONE:
            return
        if state == _NONE or (state == _PENDING and self._headBytes is not None):
            if self._protocol.connected:
                self._state = _NONE
                self._headBytes = None
                self._protocol._closeAfterResponse = True
                self.respondError(502, b"upstream response failed")
                return
        if not isinstance(reason, Failure):
            reason = Failure(BodyAborted("response aborted" if reason is None else str(reason)))
        self._abort(reason)

    bodyAborted = abort

    def _abort(self, reason: Failure) -> None:
        """
        Truncate: close the connection without finishing the message.
        """
        self._state = _ABORTED
        protocol = self._protocol
        if self._mode == _M_CLOSE:
            # a close-delimited body would look complete after a FIN
            protocol._abortConnection()
        else:
            protocol._loseConnection()
        self._finish(False, reason)

    def streamFrom(self, source: Any) -> None:
        if self._state == _NONE:
            raise RuntimeError("streamFrom() before respond()")
        if self._state >= _DONE:
            source.abort()
            return
        if source.finished:
            source.attach(self)
            return
        transport = self._protocol.transport
        if self._state < _DONE and self._protocol.connected:
            self._producer = source
            transport.registerProducer(source, True)
        source.attach(self)

    def respondBytes(self, head: ResponseHead, body: bytes) -> None:
        head.contentLength = len(body)
        head.chunked = False
        self.respond(head)
        if body:
            self.write(body)
        self.end()

    def respondError(
        self,
        status: int,
        message: bytes,
        headers: Union[Headers, Iterable[Tuple[bytes, bytes]], None] = None,
    ) -> None:
        state = self._state
        if state >= _DONE:
            return
        if state == _STREAMING or (state == _PENDING and self._headBytes is None):
            self._abort(Failure(BodyAborted(f"error {status} after the response started")))
            return
        self._state = _NONE
        self._headBytes = None
        if headers is None:
            h = Headers()
        elif isinstance(headers, Headers):
            h = headers.copy()
        else:
            h = Headers(headers)
        if b"content-type" not in h:
            h.add(b"Content-Type", b"text/plain; charset=utf-8")
        self.respondBytes(ResponseHead(status, h, REASONS.get(status, b"")), message)

    def upgrade(self, head: ResponseHead, tunnel: Any) -> None:
        if self._state != _NONE:
            raise RuntimeError("response already started")
        protocol = self._protocol
        self._status = head.status
        parts = [b"HTTP/1.1 %d %s\r\n" % (head.status, head.reason), _cleanHeaders(head.headers)]
        if head.status == 101:
            upgrade = head.upgrade or self.request.upgrade or b""
            parts.append(b"Connection: upgrade\r\nUpgrade: " + upgrade + b"\r\n")
        parts.append(b"\r\n")
        protocol.transport.write(b"".join(parts))
        self._state = _DONE
        protocol._startTunnel(self, tunnel)
        self._finish(True)

    # -- protocol callbacks ----------------------------------------------------

    def _finish(self, ok: bool, reason: Optional[Failure] = None) -> None:
        if self._producer is not None:
            self._producer = None
            try:
                self._protocol.transport.unregisterProducer()
            except RuntimeError:
                pass
        if not ok:
            handler = self.abortHandler
            if handler is not None:
                self.abortHandler = None
                handler(reason if reason is not None else Failure(BodyAborted("exchange aborted")))
        handler = self.completionHandler
        if handler is not None:
            self.completionHandler = None
            handler(self, ok)
        self._protocol._exchangeDone(self, ok)

    def _connectionLost(self, reason: Failure) -> None:
        """
        The downstream connection went away before the exchange finished.
        """
        if self._state >= _DONE:
            return
        self._state = _ABORTED
        self._finish(False, reason)

    def _bodyAttached(self) -> None:
        """
        The handler started reading the request body: answer C{100 Continue}
        if the client is waiting for it.
        """
        if self.request.expectContinue and not self._continueSent and self._state == _NONE:
            self._continueSent = True
            self._protocol.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
