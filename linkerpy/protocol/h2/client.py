# -*- test-case-name: tests.test_h2_client -*-
"""
The HTTP/2 client connection: many requests multiplexed as streams over
one connection, within the server's C{SETTINGS_MAX_CONCURRENT_STREAMS}
(requests beyond it wait here for a stream to close).

C{protocol.request(headers, body)} returns a C{Deferred} firing with an
L{H2Response} when the response headers arrive, or failing with an
L{UpstreamError<linkerpy.protocol.http.errors.UpstreamError>}: a
L{StreamReset} (C{REFUSED_STREAM} resets and streams above a GOAWAY's last
stream id are L{StreamRefused}, safe to send again), or a
L{ConnectionReset} when the connection is lost.  Cancelling the
C{Deferred} resets the stream (C{CANCEL}).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Deque, Optional

from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated, ResponseReceived
from h2.exceptions import ProtocolError
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IHandshakeListener
from twisted.python.failure import Failure
from zope.interface import implementer

from linkerpy.protocol.h2.body import H2Body
from linkerpy.protocol.h2.connection import H2Protocol, H2Settings, H2Stream
from linkerpy.protocol.h2.errors import ProtocolViolation, StreamRefused, StreamReset
from linkerpy.protocol.h2.headers import H2Headers
from linkerpy.protocol.http.errors import ConnectionReset, UpstreamError

__all__ = ["H2ResponseHead", "H2Response", "H2ClientProtocol"]


class H2ResponseHead:
    """
    A response head, as classifiers see it.

    @ivar status: the C{:status}.
    @ivar headers: the header list (without pseudo-header fields).
    @ivar trailers: the trailers once the stream has ended with them, else
        C{None}.
    """

    __slots__ = ("status", "headers", "trailers")

    def __init__(self, status: int, headers: H2Headers) -> None:
        self.status = status
        self.headers = headers
        self.trailers: Optional[H2Headers] = None


class H2Response:
    """
    A response: its head and its body (an L{H2Body}).
    """

    __slots__ = ("head", "body")

    def __init__(self, head: H2ResponseHead, body: H2Body) -> None:
        self.head = head
        self.body = body

    @property
    def complete(self) -> bool:
        """
        The whole response (data and trailers) has been received.
        """
        return self.body.finished


class _ClientRequest:
    """
    One request: queued, then a stream.
    """

    __slots__ = ("headers", "body", "deferred", "stream", "response", "protocol")

    def __init__(self, protocol: "H2ClientProtocol", headers: H2Headers, body: Any) -> None:
        self.protocol = protocol
        self.headers = headers
        self.body = body
        self.stream: Optional[H2Stream] = None
        self.response: Optional[H2Response] = None
        self.deferred: Deferred = Deferred(self._cancel)

    def _cancel(self, d: Deferred) -> None:
        protocol = self.protocol
        stream = self.stream
        if stream is None:
            try:
                protocol._queue.remove(self)
            except ValueError:
                pass
        elif not stream.closed:
            protocol._resetStream(stream, ErrorCodes.CANCEL)

    def fail(self, error: BaseException) -> None:
        if not self.deferred.called:
            self.deferred.errback(Failure(error))


def _emptyBody(body: Any) -> bool:
    return body is None or (getattr(body, "finished", False) and getattr(body, "length", None) == 0)


@implementer(IHandshakeListener)
class H2ClientProtocol(H2Protocol):
    """
    One HTTP/2 client connection to an origin.

    @ivar address: the origin's C{(host, port)}.
    @ivar ready: the connection may carry requests (preface sent; with TLS,
        the handshake is done and negotiated C{h2}).
    @ivar goingAway: no new streams (the server sent GOAWAY, or this side
        is closing the connection).
    @ivar onReady: C{callable(protocol)} when L{ready}.
    @ivar onGone: C{callable(protocol)}, once, when the connection can take
        no more requests (GOAWAY, closing, or lost).
    @ivar onLost: C{callable(protocol, reason)} when the connection is lost.
    @ivar onIdle: C{callable(protocol)} whenever the last open stream closes.
    """

    clientSide = True

    def __init__(self, settings: H2Settings, clock: Any, address: Any = None, tls: bool = False) -> None:
        super().__init__(settings, clock)
        self.address = address
        self.tls = tls
        self.ready = False
        self.goingAway = False
        self.lostReason: Optional[Failure] = None
        self.onReady: Any = None
        self.onGone: Any = None
        self.onLost: Any = None
        self.onIdle: Any = None
        self.createdAt = clock.seconds()
        self.lastActive = self.createdAt
        self._queue: Deque[_ClientRequest] = deque()
        self._goneNotified = False

    def _address(self) -> Any:
        return self.address

    # -- readiness ---------------------------------------------------------------

    def connectionMade(self) -> None:
        super().connectionMade()
        if not self.tls:
            self._becomeReady()

    def handshakeCompleted(self) -> None:
        from linkerpy.tls.identity import negotiatedProtocol

        protocol = negotiatedProtocol(self.transport)
        if protocol != b"h2":
            self.alpnMismatch = protocol
            self.abortConnection()
            return
        self._becomeReady()

    def _becomeReady(self) -> None:
        if self.ready or self.closed:
            return
        self.ready = True
        if self.onReady is not None:
            self.onReady(self)
        self._startQueued()

    # -- requests -------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """
        Whether new requests may be given to this connection.
        """
        return not self.closed and not self.goingAway

    def request(self, headers: H2Headers, body: Any = None) -> Deferred:
        """
        Send a request.

        @param headers: the header list, pseudo-header fields included.
        @param body: an C{IBodySource}, or C{None} for no data.
        @return: a C{Deferred} firing with an L{H2Response}.
        """
        req = _ClientRequest(self, headers, body)
        if not self.available:
            req.fail(StreamRefused(self.address, "connection is closing"))
            return req.deferred
        self._queue.append(req)
        self._startQueued()
        return req.deferred

    def _startQueued(self) -> None:
        if not self.ready or self.closed:
            return
        queue = self._queue
        h2 = self.h2
        limit = h2.remote_settings.max_concurrent_streams
        while queue and len(self.streams) < limit and not self.goingAway:
            self._start(queue.popleft())
        self._flush()

    def _start(self, req: _ClientRequest) -> None:
        h2 = self.h2
        try:
            sid = h2.get_next_available_stream_id()
        except ProtocolError:
            # Stream ids are exhausted: this connection is done.
            self.goingAway = True
            req.fail(StreamRefused(self.address, "stream ids exhausted"))
            self._notifyGone()
            return
        body = req.body
        empty = _emptyBody(body)
        stream = H2Stream(sid)
        stream.owner = req
        req.stream = stream
        self.streams[sid] = stream
        self.lastActive = self.clock.seconds()
        try:
            h2.send_headers(sid, req.headers.toWire(), end_stream=empty)
        except (ProtocolError, ValueError) as e:
            self.streams.pop(sid, None)
            stream.inClosed = stream.outClosed = True
            req.fail(UpstreamError(self.address, requestWritten=False, detail=f"invalid request headers: {e}"))
            return
        if empty:
            stream.outClosed = True
        else:
            self.newSink(stream).streamFrom(body)

    # -- responses ------------------------------------------------------------------

    def _onResponse(self, event: ResponseReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return
        req = stream.owner
        headers = H2Headers.fromWire(event.headers)
        status = 0
        raw = headers.get(b":status")
        if raw is not None:
            try:
                status = int(raw)
            except ValueError:
                status = 0
        if status < 200:
            self._resetStream(stream, ErrorCodes.PROTOCOL_ERROR)
            return
        headers.remove(b":status")
        from linkerpy.protocol.h2.connection import contentLength

        body = stream.body = H2Body(self, stream.id, contentLength(event.headers))
        response = req.response = H2Response(H2ResponseHead(status, headers), body)
        body.onEnd(lambda failure: self._setTrailers(response, body))
        if event.stream_ended is not None:
            # HEADERS with END_STREAM (e.g. a gRPC trailers-only response):
            # complete before anyone sees it, so it is relayed the same way.
            stream.inClosed = True
            body._finish(None)
        if not req.deferred.called:
            req.deferred.callback(response)
        if stream.inClosed:
            self._maybeForget(stream)

    @staticmethod
    def _setTrailers(response: H2Response, body: H2Body) -> None:
        response.head.trailers = body.trailers

    def _streamReset(self, stream: H2Stream, code: int, remote: bool) -> None:
        req = stream.owner
        if req is not None and req.response is None:
            if code == ErrorCodes.REFUSED_STREAM and remote:
                req.fail(StreamRefused(self.address))
            elif remote:
                req.fail(StreamReset(code, self.address, requestWritten=True))
            else:
                req.fail(CancelledError())
        self._afterStream()

    def _streamClosed(self, stream: H2Stream) -> None:
        self._afterStream()

    def _afterStream(self) -> None:
        self.lastActive = self.clock.seconds()
        if self._queue and not self.goingAway:
            self._startQueued()
        if not self.streams:
            if self.goingAway and not self.closed:
                self.loseConnection()
            elif self.onIdle is not None:
                self.onIdle(self)

    def _settingsChanged(self, event: Any) -> None:
        if self._queue:
            self._startQueued()

    def _onGoAway(self, event: ConnectionTerminated) -> None:
        self.goingAway = True
        last = event.last_stream_id
        if last is None:
            last = 0
        for stream in list(self.streams.values()):
            if stream.id > last:
                req = stream.owner
                stream.inClosed = stream.outClosed = True
                self.streams.pop(stream.id, None)
                self._blocked.pop(stream.id, None)
                source, stream.source = stream.source, None
                if source is not None:
                    source.abort(None)
                if req is not None:
                    req.fail(StreamRefused(self.address, "above the GOAWAY last stream id"))
        queued, self._queue = self._queue, deque()
        for req in queued:
            req.fail(StreamRefused(self.address, "connection is closing (GOAWAY)"))
        self._notifyGone()
        if not self.streams:
            self.loseConnection()

    def close(self) -> None:
        """
        Take no more requests; close once the open streams are done.
        """
        if self.closed:
            return
        self.goingAway = True
        queued, self._queue = self._queue, deque()
        for req in queued:
            req.fail(StreamRefused(self.address, "connection is closing"))
        self._notifyGone()
        if not self.streams:
            self._sendGoAway(ErrorCodes.NO_ERROR, 0)
            self.loseConnection()

    def _notifyGone(self) -> None:
        if not self._goneNotified:
            self._goneNotified = True
            if self.onGone is not None:
                self.onGone(self)

    # -- the end -------------------------------------------------------------------------

    def _lostFailure(self, stream: H2Stream, reason: Failure) -> Failure:
        return Failure(ConnectionReset(self.address, requestWritten=True, responseStarted=True, cause=reason.value if reason else None))

    def _streamLost(self, stream: H2Stream, reason: Failure) -> None:
        super()._streamLost(stream, reason)
        req = stream.owner
        if req is not None and req.response is None:
            req.fail(ConnectionReset(self.address, requestWritten=True, cause=reason.value if reason else None))

    def _connectionClosed(self, reason: Failure) -> None:
        self.lostReason = reason
        queued, self._queue = self._queue, deque()
        for req in queued:
            req.fail(ConnectionReset(self.address, requestWritten=False, cause=reason.value if reason else None))
        self._notifyGone()
        if self.onLost is not None:
            self.onLost(self, reason)

    def _protocolError(self, error: ProtocolError) -> None:
        self.goingAway = True
        super()._protocolError(error)
        self.protocolError = ProtocolViolation(self.address, detail=str(error))
