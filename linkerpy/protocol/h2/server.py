# -*- test-case-name: tests.test_h2_server -*-
"""
The HTTP/2 server connection: prior-knowledge h2c, or h2 over TLS
(ALPN), many concurrent streams, each handed to a handler as an
L{H2ServerExchange}.

Defences (see C{docs/grpc.md}):

  - C{SETTINGS_MAX_CONCURRENT_STREAMS}, frame size, header list size and
    windows come from L{H2Settings}; a peer that opens more streams than
    advertised, or sends an oversized or endless header block (CONTINUATION
    flood), breaks the protocol and loses the connection (the C{h2} library
    caps a header block at 64 frames and the decoded list at
    C{maxHeaderListBytes});
  - rapid reset: more than C{maxResetsPerSecond} RST_STREAM frames from
    the client within a second end the connection with GOAWAY
    C{ENHANCE_YOUR_CALM}; so do more than C{maxControlFramesPerSecond}
    PING/SETTINGS frames;
  - the connection preface must arrive within C{prefaceTimeout}, and a
    connection without streams for C{idleTimeout} is closed (GOAWAY);
  - draining (graceful shutdown) sends GOAWAY, refuses newer streams
    (C{REFUSED_STREAM}), lets the others finish for the grace period,
    then closes.
"""

from __future__ import annotations

from typing import Any, List, Optional, Set

import attrs
from h2.errors import ErrorCodes
from h2.events import RequestReceived
from h2.exceptions import ProtocolError, StreamClosedError
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from linkerpy.protocol.h2.body import H2Body, StreamSink
from linkerpy.protocol.h2.connection import H2Protocol, H2Settings, H2Stream, contentLength
from linkerpy.protocol.h2.headers import H2Headers
from linkerpy.protocol.http.stream import EMPTY_BODY
from linkerpy.telemetry.metrics import MetricsTree

__all__ = ["ServerLimits", "H2Request", "H2ServerExchange", "H2ServerProtocol", "H2ServerFactory"]

log = Logger()


@attrs.frozen
class ServerLimits:
    """
    Per-connection limits of an HTTP/2 server beyond the SETTINGS (times in
    seconds, C{None} = never).

    @ivar maxResetsPerSecond: client RST_STREAM frames tolerated per second.
    @ivar maxControlFramesPerSecond: client PING and SETTINGS frames
        tolerated per second.
    @ivar prefaceTimeout: the client preface (and TLS handshake) must arrive
        within this.
    @ivar idleTimeout: close a connection without open streams this long.
    @ivar lifeTime: drain a connection this old.
    """

    maxResetsPerSecond: int = 200
    maxControlFramesPerSecond: int = 500
    prefaceTimeout: Optional[float] = 10.0
    idleTimeout: Optional[float] = 300.0
    lifeTime: Optional[float] = None


class H2Request:
    """
    A request head: the header list (pseudo-header fields included) and the
    values of the pseudo-header fields.
    """

    __slots__ = ("headers", "method", "path", "scheme", "authority", "hasBody")

    #: For access logs.
    version = b"HTTP/2.0"

    def __init__(self, headers: H2Headers, hasBody: bool) -> None:
        self.headers = headers
        method = path = scheme = authority = b""
        for name, value in headers.items:
            if name[:1] != b":":
                break
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif name == b":scheme":
                scheme = value
            elif name == b":authority":
                authority = value
        self.method = method
        self.path = path
        self.scheme = scheme
        self.authority = authority
        self.hasBody = hasBody

    @property
    def target(self) -> bytes:
        return self.path


class H2ServerExchange:
    """
    One request stream received by the server, and the way to answer it.

    Handler callbacks (plain attributes):

      - C{abortHandler}: C{callable(failure)}, called if the client resets
        the stream or the connection is lost before the response ended;
      - C{completionHandler}: C{callable(exchange, ok)}, called once when
        the response has ended (C{ok}) or was abandoned.

    @ivar request: the L{H2Request}.
    @ivar body: the request body (an C{IBodySource}).
    @ivar peer: the client's address.
    @ivar host: the local address.
    @ivar isSecure: the connection is TLS.
    @ivar startedAt: when the request head was received.
    @ivar responseStarted: response headers were sent.
    @ivar connectionData: a C{dict} shared by the exchanges of one
        connection (values computed once per connection).
    """

    def __init__(self, protocol: "H2ServerProtocol", stream: H2Stream, request: H2Request, body: Any) -> None:
        self._protocol = protocol
        self._stream = stream
        self.request = request
        self.body = body
        self.peer = protocol.peer
        self.host = protocol.host
        self.isSecure = protocol.isSecure
        self.connectionData = protocol.connectionData
        self.startedAt = protocol.clock.seconds()
        self.responseStarted = False
        self.finished = False
        self.abortHandler: Any = None
        self.completionHandler: Any = None
        self.sink: Optional[StreamSink] = None

    @property
    def streamId(self) -> int:
        return self._stream.id

    def peerCertificate(self) -> Any:
        from linkerpy.tls.identity import peerCertificate

        return peerCertificate(self._protocol.transport)

    def respond(self, headers: H2Headers, endStream: bool = False) -> StreamSink:
        """
        Send the response headers (C{:status} included).

        @param endStream: the response has no data and no trailers.
        @return: the sink for the response data and trailers.
        """
        return self._protocol._respond(self, headers, endStream)

    def respondBytes(self, headers: H2Headers, body: bytes) -> None:
        """
        A complete response with a small body.
        """
        if body:
            headers.set(b"content-length", b"%d" % len(body))
            sink = self.respond(headers)
            sink.write(body)
            sink.end()
        else:
            self.respond(headers, endStream=True)

    def respondError(self, status: int, message: bytes, headers: Any = None) -> None:
        """
        A locally made error response: C{text/plain} C{message}; if the
        response already started, the stream is reset instead.
        """
        if self.responseStarted:
            self.reset(ErrorCodes.INTERNAL_ERROR)
            return
        h = H2Headers([(b":status", b"%d" % status)])
        if message:
            h.add(b"content-type", b"text/plain; charset=utf-8")
        for name, value in headers or ():
            h.add(name, value)
        self.respondBytes(h, message)

    def reset(self, code: int = ErrorCodes.CANCEL) -> None:
        """
        Reset the stream with C{code}.
        """
        self._protocol._resetStream(self._stream, code)

    def abort(self) -> None:
        self.reset(ErrorCodes.INTERNAL_ERROR)


class _Window:
    """
    Counts events in the current one-second window of a clock.
    """

    __slots__ = ("clock", "limit", "start", "count")

    def __init__(self, clock: Any, limit: int) -> None:
        self.clock = clock
        self.limit = limit
        self.start = 0.0
        self.count = 0

    def exceeded(self) -> bool:
        now = self.clock.seconds()
        if now - self.start >= 1.0:
            self.start = now
            self.count = 0
        self.count += 1
        return self.count > self.limit


class H2ServerProtocol(H2Protocol):
    """
    One HTTP/2 server connection.
    """

    clientSide = False

    def __init__(self, factory: "H2ServerFactory") -> None:
        super().__init__(factory.settings, factory.clock)
        self.factory = factory
        self.limits = factory.limits
        self.peer: Any = None
        self.host: Any = None
        self.isSecure = False
        self.connectionData: dict = {}
        self.draining = False
        self.drainLastStreamId = 0
        self.lostDeferred: Deferred = Deferred()
        self._resets = _Window(self.clock, self.limits.maxResetsPerSecond)
        self._controls = _Window(self.clock, self.limits.maxControlFramesPerSecond)
        self._prefaceTimer: Any = None
        self._idleTimer: Any = None
        self._lifeTimer: Any = None
        self._graceTimer: Any = None
        self._drained: Optional[Deferred] = None
        self._gotPreface = False

    def connectionMade(self) -> None:
        transport = self.transport
        self.peer = transport.getPeer()
        self.host = transport.getHost()
        self.isSecure = ISSLTransport.providedBy(transport)
        self.factory._connectionMade(self)
        super().connectionMade()
        limits = self.limits
        clock = self.clock
        if limits.prefaceTimeout is not None:
            self._prefaceTimer = clock.callLater(limits.prefaceTimeout, self._prefaceTimedOut)
        if limits.lifeTime is not None:
            self._lifeTimer = clock.callLater(limits.lifeTime, self._lifeTimeReached)
        self._startIdle()

    # -- timers ---------------------------------------------------------------

    def _prefaceTimedOut(self) -> None:
        self._prefaceTimer = None
        if not self._gotPreface:
            self.factory._count("preface_timeouts")
            self.abortConnection()

    def _lifeTimeReached(self) -> None:
        self._lifeTimer = None
        self.factory._count("lifetime")
        self.drain(self.factory.lifeTimeGrace)

    def _startIdle(self) -> None:
        timeout = self.limits.idleTimeout
        if timeout is None or self.closed:
            return
        if self._idleTimer is None:
            self._idleTimer = self.clock.callLater(timeout, self._idleTimedOut)
        else:
            self._idleTimer.reset(timeout)

    def _stopIdle(self) -> None:
        if self._idleTimer is not None:
            self._idleTimer.cancel()
            self._idleTimer = None

    def _idleTimedOut(self) -> None:
        self._idleTimer = None
        if not self.streams and not self.closed:
            self.factory._count("idle")
            self._sendGoAway(ErrorCodes.NO_ERROR)
            self.loseConnection()

    # -- events ---------------------------------------------------------------

    def _onControlFrame(self, event: Any) -> None:
        if not self._gotPreface:
            self._gotPreface = True
            if self._prefaceTimer is not None:
                self._prefaceTimer.cancel()
                self._prefaceTimer = None
        if self._controls.exceeded():
            self._calm("control frame flood")

    def _calm(self, why: str) -> None:
        """
        The client floods us: GOAWAY ENHANCE_YOUR_CALM and close.
        """
        if self.closed:
            return
        self.factory._count("enhance_your_calm")
        log.info("closing HTTP/2 connection from {peer}: {why}", peer=self.peer, why=why)
        self._sendGoAway(ErrorCodes.ENHANCE_YOUR_CALM, debug=why.encode("ascii"))
        self.closed = True
        self.abortConnection()

    def _onRequest(self, event: RequestReceived) -> None:
        sid = event.stream_id
        if self.draining and sid > self.drainLastStreamId:
            self._refuse(sid)
            return
        self._stopIdle()
        stream = H2Stream(sid)
        ended = event.stream_ended is not None
        headers = H2Headers.fromWire(event.headers)
        if ended:
            body: Any = EMPTY_BODY
        else:
            body = stream.body = H2Body(self, sid, contentLength(event.headers))
        request = H2Request(headers, not ended)
        exchange = H2ServerExchange(self, stream, request, body)
        stream.owner = exchange
        self.streams[sid] = stream
        self.factory.requests.value += 1
        try:
            self.factory.handler.handleRequest(exchange)
        except Exception:
            log.failure("handler failed on an HTTP/2 request")
            if not stream.closed:
                if exchange.responseStarted:
                    self._resetStream(stream, ErrorCodes.INTERNAL_ERROR)
                else:
                    exchange.respondError(500, b"internal error\n")

    def _refuse(self, sid: int) -> None:
        try:
            self.h2.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
        except (ProtocolError, StreamClosedError):
            pass

    def _untrackedReset(self, event: Any) -> None:
        if event.remote_reset and self._resets.exceeded():
            self._calm("too many stream resets (rapid reset)")

    def _streamReset(self, stream: H2Stream, code: int, remote: bool) -> None:
        exchange = stream.owner
        if exchange is not None and not exchange.finished:
            exchange.finished = True
            handler = exchange.abortHandler
            if handler is not None:
                from linkerpy.protocol.h2.errors import StreamReset

                handler(Failure(StreamReset(code, self.peer)))
            if exchange.completionHandler is not None:
                exchange.completionHandler(exchange, False)
        if remote:
            self.factory.resets.value += 1
            if self._resets.exceeded():
                self._calm("too many stream resets (rapid reset)")
        self._afterStream()

    def _outboundDone(self, stream: H2Stream) -> None:
        exchange = stream.owner
        if exchange is not None and not exchange.finished:
            exchange.finished = True
            if exchange.completionHandler is not None:
                exchange.completionHandler(exchange, True)
        if not stream.inClosed and stream.discardInbound:
            # The response is complete; the request body is not wanted:
            # ask the client to stop (RFC 9113 section 8.1).
            self._resetStream(stream, ErrorCodes.NO_ERROR)

    def _streamClosed(self, stream: H2Stream) -> None:
        self._afterStream()

    def _afterStream(self) -> None:
        if self.streams:
            return
        if self.draining:
            self._sendGoAway(ErrorCodes.NO_ERROR, self.drainLastStreamId)
            self.loseConnection()
        else:
            self._startIdle()

    def _abortInbound(self, streamId: int, code: int) -> None:
        """
        The request body is not wanted.  While the response is still being
        sent the stream cannot be reset without truncating it: data is
        discarded (and its window given back) until the response ends, then
        the stream is reset with C{NO_ERROR}.
        """
        stream = self.streams.get(streamId)
        if stream is None or stream.inClosed:
            return
        if stream.outClosed:
            self._resetStream(stream, ErrorCodes.NO_ERROR)
        else:
            stream.discardInbound = True

    # -- responding -------------------------------------------------------------

    def _respond(self, exchange: H2ServerExchange, headers: H2Headers, endStream: bool) -> StreamSink:
        stream = exchange._stream
        sink = self.newSink(stream)
        exchange.sink = sink
        if stream.outClosed or self.closed:
            return sink
        exchange.responseStarted = True
        try:
            self.h2.send_headers(stream.id, headers.toWire(), end_stream=endStream)
        except (ProtocolError, StreamClosedError, ValueError) as e:
            log.debug("could not send response headers: {e}", e=e)
            self._resetStream(stream, ErrorCodes.INTERNAL_ERROR)
            return sink
        if endStream:
            stream.outClosed = True
            self._outboundDone(stream)
            self._maybeForget(stream)
        self._flush()
        return sink

    # -- draining ---------------------------------------------------------------

    def drain(self, grace: float) -> Deferred:
        """
        Graceful close: GOAWAY now, newer streams refused, open streams get
        C{grace} seconds, then the connection closes.

        @return: fires when the connection is closed.
        """
        if self.closed:
            return succeed(None)
        if not self.draining:
            self.draining = True
            self.drainLastStreamId = self.h2.highest_inbound_stream_id
            self._sendGoAway(ErrorCodes.NO_ERROR, self.drainLastStreamId)
            self._graceTimer = self.clock.callLater(grace, self._graceExpired)
            d: Deferred = Deferred()
            self.lostDeferred.addBoth(lambda r: d.callback(None))
            self._drained = d
            if not self.streams:
                self.loseConnection()
        return self._drained or succeed(None)

    def _graceExpired(self) -> None:
        self._graceTimer = None
        if self.closed:
            return
        for stream in list(self.streams.values()):
            self._resetStream(stream, ErrorCodes.CANCEL)
        self.loseConnection()
        # If the peer never acknowledges the close, do not wait for it.
        self.clock.callLater(5.0, self.abortConnection)

    # -- the end ------------------------------------------------------------------

    def _lostFailure(self, stream: H2Stream, reason: Failure) -> Failure:
        from linkerpy.protocol.http.errors import BodyAborted

        return Failure(BodyAborted("client connection lost", reason.value if reason else None))

    def _streamLost(self, stream: H2Stream, reason: Failure) -> None:
        super()._streamLost(stream, reason)
        exchange = stream.owner
        if exchange is not None and not exchange.finished:
            exchange.finished = True
            if exchange.abortHandler is not None:
                exchange.abortHandler(reason)
            if exchange.completionHandler is not None:
                exchange.completionHandler(exchange, False)

    def _connectionClosed(self, reason: Failure) -> None:
        for timer in (self._prefaceTimer, self._idleTimer, self._lifeTimer, self._graceTimer):
            if timer is not None and timer.active():
                timer.cancel()
        self._prefaceTimer = self._idleTimer = self._lifeTimer = self._graceTimer = None
        self.factory._connectionLost(self)
        d, self.lostDeferred = self.lostDeferred, Deferred()
        d.callback(None)

    def _countProtocolError(self, error: ProtocolError) -> None:
        self.factory._count("protocol_errors")


class H2ServerFactory(Factory):
    """
    Builds L{H2ServerProtocol}s for one listening port.

    @ivar handler: receives every request (C{handleRequest(exchange)}).
    """

    protocol = H2ServerProtocol  # type: ignore[assignment]
    noisy = False

    def __init__(
        self,
        handler: Any,
        settings: Optional[H2Settings] = None,
        limits: Optional[ServerLimits] = None,
        clock: Any = None,
        maxConnections: Optional[int] = None,
        metrics: Optional[MetricsTree] = None,
    ) -> None:
        if clock is None:
            raise ValueError("H2ServerFactory needs a clock (the reactor)")
        self.handler = handler
        self.settings = settings or H2Settings()
        self.limits = limits or ServerLimits()
        self.clock = clock
        self.maxConnections = maxConnections
        self.lifeTimeGrace = 10.0
        self.connections: Set[H2ServerProtocol] = set()
        self.setMetrics(metrics or MetricsTree())

    def setMetrics(self, scope: MetricsTree) -> None:
        self.metrics = scope
        self.requests = scope.counter("h2", "streams")
        self.resets = scope.counter("h2", "client_resets")
        self.connects = scope.counter("connects")
        self.refusedConnections = scope.counter("connections_refused")
        scope.gauge("connections", fn=lambda: len(self.connections))

    def _count(self, name: str) -> None:
        self.metrics.counter("h2", name).value += 1

    def buildProtocol(self, addr: Any) -> Optional[H2ServerProtocol]:
        if self.maxConnections is not None and len(self.connections) >= self.maxConnections:
            self.refusedConnections.value += 1
            return None
        return H2ServerProtocol(self)

    def _connectionMade(self, proto: H2ServerProtocol) -> None:
        self.connections.add(proto)
        self.connects.value += 1

    def _connectionLost(self, proto: H2ServerProtocol) -> None:
        self.connections.discard(proto)

    def drain(self, grace: float) -> Deferred:
        """
        Drain every connection (see L{H2ServerProtocol.drain}).
        """
        drains: List[Deferred] = [conn.drain(grace) for conn in list(self.connections)]
        return DeferredList(drains, consumeErrors=True)
