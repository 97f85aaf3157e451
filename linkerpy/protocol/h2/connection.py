# -*- test-case-name: tests.test_h2_connection -*-
"""
The part of an HTTP/2 connection shared by the server and the client: the
C{h2} state machine inside a Twisted protocol, the stream table, and the
outbound scheduler that writes stream data as flow-control windows and the
transport allow.

Writes are batched: while the connection processes received bytes, frames
it produces are handed to the transport once, at the end.  The protocol is
the streaming producer of its own transport: when the transport's buffer
fills, stream data waits (control frames still go out) and each stream
with waiting data pauses its source; L{resumeProducing} sends what waited.

The C{h2} library closes its whole connection state when a GOAWAY is
received, although streams below the GOAWAY's last stream id may (and
should) complete.  L{linkerpy.protocol.h2.wire} keeps the connection open
instead and this layer enforces "no new streams" itself; GOAWAY frames this
side sends are written directly for the same reason.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from h2.config import H2Configuration
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    InformationalResponseReceived,
    PingAckReceived,
    PingReceived,
    PriorityUpdated,
    PushedStreamReceived,
    RemoteSettingsChanged,
    RequestReceived,
    ResponseReceived,
    SettingsAcknowledged,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    UnknownFrameReceived,
    WindowUpdated,
)
from h2.exceptions import ProtocolError, StreamClosedError
from h2.settings import SettingCodes, Settings
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from linkerpy.protocol.h2.body import H2Stream, StreamSink
from linkerpy.protocol.h2.errors import StreamReset as StreamResetError
from linkerpy.protocol.h2.headers import H2Headers
from linkerpy.protocol.h2.wire import (  # noqa: F401 - re-exported
    DEFAULT_WINDOW,
    MAX_STREAM_ID,
    H2Settings,
    _Connection,
    contentLength,
    goAwayFrame,
)

__all__ = ["H2Settings", "H2Protocol", "H2Stream", "goAwayFrame", "contentLength", "DEFAULT_WINDOW", "MAX_STREAM_ID"]

log = Logger()


@implementer(IPushProducer)
class H2Protocol(Protocol):
    """
    Base class of L{H2ServerProtocol<linkerpy.protocol.h2.server.H2ServerProtocol>}
    and L{H2ClientProtocol<linkerpy.protocol.h2.client.H2ClientProtocol>}.

    Subclasses implement the role hooks: C{_onRequest}, C{_onResponse},
    C{_inboundDone(stream)}, C{_outboundDone(stream)}, C{_streamReset(stream,
    code, remote)}, C{_onGoAway(event)}, C{_connectionClosed(reason)} and
    C{_abortInbound(streamId, code)}.

    @ivar h2: the C{h2} connection.
    @ivar streams: open streams by id.
    @ivar closed: the transport is gone (or going).
    """

    clientSide = False

    def __init__(self, settings: H2Settings, clock: Any) -> None:
        self.settings = settings
        self.clock = clock
        self.h2 = _Connection(
            H2Configuration(
                client_side=self.clientSide,
                header_encoding=None,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
                validate_inbound_headers=True,
                normalize_inbound_headers=True,
            )
        )
        self.streams: Dict[int, H2Stream] = {}
        self.closed = False
        self._receiving = False
        self._paused = False
        self._blocked: Dict[int, H2Stream] = {}
        self._handlers: Dict[type, Callable[[Any], None]] = {
            RequestReceived: self._onRequest,
            ResponseReceived: self._onResponse,
            InformationalResponseReceived: self._onInformational,
            DataReceived: self._onData,
            TrailersReceived: self._onTrailers,
            StreamEnded: self._onStreamEnded,
            StreamReset: self._onStreamReset,
            WindowUpdated: self._onWindowUpdated,
            RemoteSettingsChanged: self._onRemoteSettings,
            ConnectionTerminated: self._onGoAway,
            PingReceived: self._onControlFrame,
            PriorityUpdated: self._onPriority,
            PushedStreamReceived: self._onPush,
            SettingsAcknowledged: self._onSettingsAcked,
            PingAckReceived: self._onIgnored,
            UnknownFrameReceived: self._onIgnored,
        }

    # -- set-up -----------------------------------------------------------------

    def connectionMade(self) -> None:
        self.transport.registerProducer(self, True)
        s = self.settings
        if s.noDelay:
            from linkerpy.net import setNoDelay

            setNoDelay(self.transport)
        initial: Dict[Any, int] = {
            SettingCodes.MAX_HEADER_LIST_SIZE: s.maxHeaderListBytes,
            SettingCodes.MAX_FRAME_SIZE: s.maxFrameBytes,
        }
        if self.clientSide:
            initial[SettingCodes.ENABLE_PUSH] = 0
        else:
            initial[SettingCodes.MAX_CONCURRENT_STREAMS] = s.maxConcurrentStreams
        if s.initialStreamWindowBytes >= DEFAULT_WINDOW:
            initial[SettingCodes.INITIAL_WINDOW_SIZE] = s.initialStreamWindowBytes
        h2 = self.h2
        # Documented h2 usage: replace the local settings before the
        # connection starts, so that the preface carries them.
        h2.local_settings = Settings(client=self.clientSide, initial_values=initial)
        h2.max_inbound_frame_size = s.maxFrameBytes
        h2.decoder.max_header_list_size = s.maxHeaderListBytes
        h2.initiate_connection()
        later: Dict[Any, int] = {}
        if s.initialStreamWindowBytes < DEFAULT_WINDOW:
            later[SettingCodes.INITIAL_WINDOW_SIZE] = s.initialStreamWindowBytes
        if s.headerTableBytes is not None:
            later[SettingCodes.HEADER_TABLE_SIZE] = s.headerTableBytes
        if later:
            h2.update_settings(later)
        if s.connectionWindowBytes > DEFAULT_WINDOW:
            h2.increment_flow_control_window(s.connectionWindowBytes - DEFAULT_WINDOW)
        self._flush()

    # -- input --------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.closed:
            return
        self._receiving = True
        try:
            try:
                events = self.h2.receive_data(data)
            except ProtocolError as e:
                self._receiving = False
                self._protocolError(e)
                return
            handlers = self._handlers
            for event in events:
                handler = handlers.get(type(event))
                if handler is not None:
                    handler(event)
                if self.closed:
                    break
        except Exception:
            log.failure("unexpected error handling HTTP/2 frames; closing the connection")
            self._receiving = False
            self._sendGoAway(ErrorCodes.INTERNAL_ERROR)
            self.abortConnection()
            return
        finally:
            self._receiving = False
        self._flush()

    def _protocolError(self, error: ProtocolError) -> None:
        """
        The peer broke the protocol: C{h2} has queued a GOAWAY; send it and
        close.
        """
        self._countProtocolError(error)
        self._flush()
        self.loseConnection()

    def _countProtocolError(self, error: ProtocolError) -> None:
        pass

    # -- output -------------------------------------------------------------------

    def _flush(self) -> None:
        if self._receiving or self.transport is None:
            return
        data = self.h2.data_to_send()
        if data:
            self.transport.write(data)

    def _sendGoAway(self, code: int, lastStreamId: Optional[int] = None, debug: bytes = b"") -> None:
        """
        Write a GOAWAY frame directly (see the module docstring).
        """
        self._flushNow()
        if self.transport is not None and not self.closed:
            if lastStreamId is None:
                lastStreamId = self.h2.highest_inbound_stream_id
            self.transport.write(goAwayFrame(lastStreamId, code, debug))

    def _flushNow(self) -> None:
        if self.transport is None:
            return
        data = self.h2.data_to_send()
        if data:
            self.transport.write(data)

    def loseConnection(self) -> None:
        transport = self.transport
        if transport is not None:
            self._flushNow()
            # A TLS transport delays its shutdown while a producer is
            # registered: nothing more will be produced anyway.
            if not getattr(self, "_unregistered", False):
                self._unregistered = True
                transport.unregisterProducer()
            transport.loseConnection()

    def abortConnection(self) -> None:
        if self.transport is not None:
            abort = getattr(self.transport, "abortConnection", None)
            if abort is not None:
                abort()
            else:
                self.transport.loseConnection()

    # -- flow control and the outbound scheduler -----------------------------

    def _ack(self, streamId: int, n: int) -> None:
        if self.closed:
            return
        try:
            self.h2.acknowledge_received_data(n, streamId)
        except (ProtocolError, ValueError):
            return
        self._flush()

    def _queueData(self, stream: H2Stream, data: bytes) -> None:
        if stream.outClosed or stream.endQueued:
            return
        if not stream.pendingBytes and not self._paused:
            data = self._sendNow(stream, data)
            if not data:
                self._flush()
                return
        stream.pending.append(data)
        stream.pendingBytes += len(data)
        self._blocked[stream.id] = stream
        source = stream.source
        if source is not None and not stream.sourcePaused:
            stream.sourcePaused = True
            source.pause()
        self._flush()

    def _sendNow(self, stream: H2Stream, data: bytes, end: bool = False) -> bytes:
        """
        Send as much of C{data} as the windows allow; return the rest.
        With C{end}, the frame carrying the last byte also ends the stream.
        """
        h2 = self.h2
        sid = stream.id
        try:
            window = h2.local_flow_control_window(sid)
        except (ProtocolError, KeyError):
            return b""
        n = len(data)
        try:
            if window >= n and n <= h2.max_outbound_frame_size:
                h2.send_data(sid, data, end_stream=end)
                return b""
            maxFrame = h2.max_outbound_frame_size
            offset = 0
            while offset < n and window > 0:
                size = min(window, maxFrame, n - offset)
                h2.send_data(sid, data[offset : offset + size], end_stream=end and offset + size == n)
                offset += size
                window -= size
        except ProtocolError:
            # The stream is closed on the wire (its reset is being handled).
            return b""
        return data[offset:]

    def _drainStream(self, stream: H2Stream) -> None:
        pending = stream.pending
        endsWithData = False
        while pending and not self._paused:
            chunk = pending[0]
            last = len(pending) == 1 and stream.endQueued and not stream.outTrailers
            rest = self._sendNow(stream, chunk, end=last)
            if rest:
                pending[0] = rest
                stream.pendingBytes -= len(chunk) - len(rest)
                return
            pending.popleft()
            stream.pendingBytes -= len(chunk)
            endsWithData = last
        if pending:
            return
        self._blocked.pop(stream.id, None)
        if endsWithData:
            stream.outClosed = True
            stream.source = None
            self._outboundDone(stream)
            self._maybeForget(stream)
        elif stream.endQueued and not stream.outClosed:
            self._sendEnd(stream)
        if stream.sourcePaused:
            stream.sourcePaused = False
            if stream.source is not None and not stream.outClosed:
                stream.source.resume()

    def _drainAll(self) -> None:
        if not self._blocked or self._paused:
            return
        for stream in list(self._blocked.values()):
            if stream.outClosed:
                self._blocked.pop(stream.id, None)
                continue
            self._drainStream(stream)
            if self._paused:
                break
            if stream.id in self._blocked:
                # Round robin: a stream still waiting goes to the back.
                del self._blocked[stream.id]
                self._blocked[stream.id] = stream
        self._flush()

    def _queueDataEnd(self, stream: H2Stream, data: bytes) -> None:
        """
        The last data of a stream (no trailers): sent with END_STREAM on its
        last frame when the windows allow, else queued before the end.
        """
        if stream.outClosed or stream.endQueued:
            return
        if not data:
            self._queueEnd(stream, None)
            return
        if not stream.pendingBytes and not self._paused:
            data = self._sendNow(stream, data, end=True)
            if not data:
                stream.outClosed = True
                stream.source = None
                self._outboundDone(stream)
                self._maybeForget(stream)
                self._flush()
                return
        stream.pending.append(data)
        stream.pendingBytes += len(data)
        stream.endQueued = True
        stream.outTrailers = None
        self._blocked[stream.id] = stream
        self._flush()

    def _queueEnd(self, stream: H2Stream, trailers: Optional[H2Headers]) -> None:
        if stream.outClosed or stream.endQueued:
            return
        stream.endQueued = True
        stream.outTrailers = trailers
        if not stream.pendingBytes:
            self._sendEnd(stream)
            self._flush()

    def _sendEnd(self, stream: H2Stream) -> None:
        trailers = stream.outTrailers
        try:
            if trailers is not None and len(trailers):
                self.h2.send_headers(stream.id, trailers.toWire(), end_stream=True)
            else:
                self.h2.end_stream(stream.id)
        except (ProtocolError, StreamClosedError):
            pass
        stream.outClosed = True
        stream.source = None
        self._outboundDone(stream)
        self._maybeForget(stream)

    def _resetStream(self, stream: H2Stream, code: int) -> None:
        """
        Reset a stream from this side (both directions end).
        """
        if stream.closed:
            return
        try:
            self.h2.reset_stream(stream.id, code)
        except (ProtocolError, StreamClosedError):
            pass
        self._streamGone(stream, code, remote=False)
        self._flush()

    def _streamGone(self, stream: H2Stream, code: int, remote: bool) -> None:
        """
        A stream was reset (by either side): end both directions, fail what
        still depends on it.
        """
        wasOutClosed = stream.outClosed
        stream.inClosed = stream.outClosed = True
        stream.pending.clear()
        stream.pendingBytes = 0
        self._blocked.pop(stream.id, None)
        self.streams.pop(stream.id, None)
        reason = Failure(StreamResetError(code, self._address(), responseStarted=True))
        body = stream.body
        if body is not None:
            body._fail(reason)
        source, stream.source = stream.source, None
        if source is not None and not wasOutClosed:
            source.abort(reason)
        self._streamReset(stream, code, remote)

    def _maybeForget(self, stream: H2Stream) -> None:
        if stream.inClosed and stream.outClosed:
            self.streams.pop(stream.id, None)
            self._blocked.pop(stream.id, None)
            self._streamClosed(stream)

    def _address(self) -> Any:
        return None

    # -- IPushProducer (of our transport) -------------------------------------------

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        if self._paused:
            self._paused = False
            self._drainAll()

    def stopProducing(self) -> None:
        self.abortConnection()

    # -- events -----------------------------------------------------------------------

    def _onData(self, event: DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None or stream.body is None or stream.discardInbound:
            # A stream we no longer track: give the window back.
            if event.flow_controlled_length:
                try:
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                except (ProtocolError, ValueError):
                    pass
            return
        if event.stream_ended is not None:
            # DATA with END_STREAM: deliver and end at once, so that a sink
            # can end its own stream with this data (one frame, not two).
            stream.inClosed = True
            stream.body._deliverLast(event.data, event.flow_controlled_length)
            self._inboundDone(stream)
            self._maybeForget(stream)
            return
        stream.body._deliver(event.data, event.flow_controlled_length)

    def _onTrailers(self, event: TrailersReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.inTrailers = H2Headers.fromWire(event.headers)

    def _onStreamEnded(self, event: StreamEnded) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None or stream.inClosed:
            return
        stream.inClosed = True
        body = stream.body
        if body is not None:
            body._finish(stream.inTrailers)
        self._inboundDone(stream)
        self._maybeForget(stream)

    def _onStreamReset(self, event: StreamReset) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:
            self._untrackedReset(event)
            return
        self._streamGone(stream, int(event.error_code), remote=bool(event.remote_reset))

    def _onWindowUpdated(self, event: WindowUpdated) -> None:
        if event.stream_id == 0:
            self._drainAll()
        else:
            stream = self._blocked.get(event.stream_id)
            if stream is not None:
                self._drainStream(stream)

    def _onRemoteSettings(self, event: RemoteSettingsChanged) -> None:
        self._onControlFrame(event)
        if SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
            self._drainAll()
        self._settingsChanged(event)

    def _onInformational(self, event: Any) -> None:
        pass

    def _onPriority(self, event: Any) -> None:
        pass

    def _onIgnored(self, event: Any) -> None:
        pass

    def _onSettingsAcked(self, event: Any) -> None:
        pass

    def _onPush(self, event: PushedStreamReceived) -> None:
        try:
            self.h2.reset_stream(event.pushed_stream_id, ErrorCodes.REFUSED_STREAM)
        except (ProtocolError, StreamClosedError):
            pass

    def _onControlFrame(self, event: Any) -> None:
        pass

    # -- role hooks (overridden) ---------------------------------------------------------

    def _onRequest(self, event: RequestReceived) -> None:
        self._resetUnexpected(event.stream_id)

    def _onResponse(self, event: ResponseReceived) -> None:
        self._resetUnexpected(event.stream_id)

    def _resetUnexpected(self, streamId: int) -> None:
        try:
            self.h2.reset_stream(streamId, ErrorCodes.PROTOCOL_ERROR)
        except (ProtocolError, StreamClosedError):
            pass

    def _inboundDone(self, stream: H2Stream) -> None:
        pass

    def _outboundDone(self, stream: H2Stream) -> None:
        pass

    def _streamReset(self, stream: H2Stream, code: int, remote: bool) -> None:
        pass

    def _streamClosed(self, stream: H2Stream) -> None:
        pass

    def _untrackedReset(self, event: StreamReset) -> None:
        pass

    def _settingsChanged(self, event: RemoteSettingsChanged) -> None:
        pass

    def _onGoAway(self, event: ConnectionTerminated) -> None:
        pass

    def _abortInbound(self, streamId: int, code: int) -> None:
        stream = self.streams.get(streamId)
        if stream is not None:
            self._resetStream(stream, code)

    # -- connection end -------------------------------------------------------------------

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.closed = True
        streams = list(self.streams.values())
        self.streams = {}
        self._blocked = {}
        for stream in streams:
            stream.inClosed = stream.outClosed = True
            self._streamLost(stream, reason)
        self._connectionClosed(reason)
        transport, self.transport = self.transport, None
        if transport is not None and not getattr(self, "_unregistered", False):
            self._unregistered = True
            try:
                transport.unregisterProducer()
            except Exception:
                pass

    def _streamLost(self, stream: H2Stream, reason: Failure) -> None:
        body = stream.body
        if body is not None:
            body._fail(self._lostFailure(stream, reason))
        source, stream.source = stream.source, None
        if source is not None:
            source.abort(reason)

    def _lostFailure(self, stream: H2Stream, reason: Failure) -> Failure:
        return reason

    def _connectionClosed(self, reason: Failure) -> None:
        pass

    # -- helpers for subclasses -------------------------------------------------------------

    def newSink(self, stream: H2Stream) -> StreamSink:
        sink = stream.sink = StreamSink(self, stream)
        return sink

    @property
    def activeStreams(self) -> int:
        return len(self.streams)
