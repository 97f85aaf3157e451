"""
Tests for the HTTP/2 server and client connections
(L{linkerpy.protocol.h2.server}, L{linkerpy.protocol.h2.client},
L{linkerpy.protocol.h2.connection}, L{linkerpy.protocol.h2.body}), with the
C{h2} library's own connection as the peer over a C{StringTransport}, and
the two sides against each other with C{iosim}.
"""

from __future__ import annotations

from typing import Any, List, Optional

import hpack
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RequestReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.settings import SettingCodes
from hyperframe.frame import ContinuationFrame, HeadersFrame
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, connect
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from linkerpy.protocol.h2.client import H2ClientProtocol
from linkerpy.protocol.h2.connection import H2Settings
from linkerpy.protocol.h2.errors import StreamRefused, StreamReset as StreamResetError
from linkerpy.protocol.h2.headers import H2Headers
from linkerpy.protocol.h2.server import ServerLimits
from linkerpy.protocol.h2.testing import fetch, originFactory, requestHeaders
from linkerpy.protocol.http.errors import ConnectionReset
from linkerpy.protocol.http.interfaces import IBodySource
from linkerpy.protocol.http.stream import BytesBody, collect

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
REQUEST = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"svc"), (b":path", b"/p")]
GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"svc"), (b":path", b"/p")]


class Peer:
    """
    The C{h2} library's connection, wired by hand to a protocol under test
    over a C{StringTransport}.
    """

    def __init__(self, clientSide: bool, initial: Optional[dict] = None) -> None:
        self.conn = H2Connection(H2Configuration(client_side=clientSide, header_encoding=None))
        if initial:
            from h2.settings import Settings

            self.conn.local_settings = Settings(client=clientSide, initial_values=initial)
        self.conn.initiate_connection()
        self.events: List[Any] = []

    def attach(self, proto: Any, transport: StringTransport) -> "Peer":
        self.proto = proto
        self.transport = transport
        return self

    def pump(self) -> List[Any]:
        """
        Exchange bytes until both sides are quiet; return the new events.
        """
        new: List[Any] = []
        for _ in range(50):
            moved = False
            out = self.conn.data_to_send()
            if out:
                moved = True
                self.proto.dataReceived(out)
            data = self.transport.value()
            if data:
                moved = True
                self.transport.clear()
                events = self.conn.receive_data(data)
                new.extend(events)
            if not moved:
                break
        self.events.extend(new)
        return new

    def sendRaw(self, data: bytes) -> None:
        self.pump()
        self.proto.dataReceived(data)


def of(events: List[Any], kind: type) -> List[Any]:
    return [e for e in events if isinstance(e, kind)]


@implementer(IBodySource)
class ScriptedSource:
    """
    A body source driven by the test, recording pause/resume/abort.
    """

    length = None
    finished = False

    def __init__(self) -> None:
        self.consumer: Any = None
        self.paused = False
        self.pauses = 0
        self.aborted: Any = None

    def attach(self, consumer: Any) -> None:
        self.consumer = consumer

    def pause(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume(self) -> None:
        self.paused = False

    def abort(self, reason: Any = None) -> None:
        self.aborted = reason if reason is not None else True

    pauseProducing = pause
    resumeProducing = resume

    def stopProducing(self) -> None:
        self.abort()


class Recorder:
    """
    A body consumer that may pause its source.
    """

    def __init__(self, source: Any = None, pauseAfter: Optional[int] = None) -> None:
        self.source = source
        self.data = b""
        self.ended: Any = None
        self.failed: Any = None
        self.pauseAfter = pauseAfter

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if self.pauseAfter is not None and len(self.data) >= self.pauseAfter and self.source is not None:
            self.source.pause()

    def bodyEnd(self, trailers: Any) -> None:
        self.ended = trailers if trailers is not None else True

    def bodyAborted(self, reason: Failure) -> None:
        self.failed = reason


def serverUnderTest(fn: Any, settings: Optional[H2Settings] = None, limits: Optional[ServerLimits] = None, peerInitial: Optional[dict] = None):
    clock = MemoryReactorClock()
    factory = originFactory(clock, fn, settings, limits)
    proto = factory.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5555))
    proto.makeConnection(transport)
    peer = Peer(clientSide=True, initial=peerInitial).attach(proto, transport)
    peer.pump()
    return clock, factory, proto, transport, peer


class ServerTests(SynchronousTestCase):
    """
    L{H2ServerProtocol} against the C{h2} library as a client.
    """

    def test_echoWithTrailers(self) -> None:
        """
        A request with data reaches the handler; the response streams back
        with its trailers.
        """

        def echo(exchange: Any) -> None:
            exchange.respond(H2Headers([(b":status", b"200")]))
            recorder = Recorder()
            exchange.body.attach(recorder)
            exchange._rec = recorder

        clock, factory, proto, transport, peer = serverUnderTest(echo)
        peer.conn.send_headers(1, REQUEST)
        peer.conn.send_data(1, b"hello", end_stream=True)
        peer.pump()
        exchange = factory.handler.exchanges[0]
        self.assertEqual(exchange.request.path, b"/p")
        self.assertEqual((exchange._rec.data, exchange._rec.ended), (b"hello", True))
        exchange.sink.write(b"got " + exchange._rec.data)
        exchange.sink.end(H2Headers([(b"grpc-status", b"0")]))
        peer.pump()
        events = peer.events
        self.assertEqual(of(events, ResponseReceived)[0].headers, [(b":status", b"200")])
        self.assertEqual(b"".join(e.data for e in of(events, DataReceived)), b"got hello")
        self.assertEqual(of(events, TrailersReceived)[0].headers, [(b"grpc-status", b"0")])
        self.assertTrue(of(events, StreamEnded))
        self.assertEqual(proto.streams, {})

    def test_settingsAdvertised(self) -> None:
        """
        The server's SETTINGS carry its stream limit, window, frame and
        header list sizes.
        """
        settings = H2Settings(initialStreamWindowBytes=100000, maxFrameBytes=32768, maxHeaderListBytes=4096, maxConcurrentStreams=7)
        clock, factory, proto, transport, peer = serverUnderTest(lambda e: None, settings)
        remote = peer.conn.remote_settings
        self.assertEqual(
            (remote.max_concurrent_streams, remote.initial_window_size, remote.max_frame_size, remote.max_header_list_size),
            (7, 100000, 32768, 4096),
        )

    def test_connectionWindowRaised(self) -> None:
        """
        The connection-level receive window is opened to
        C{connectionWindowBytes} at once.
        """
        clock, factory, proto, transport, peer = serverUnderTest(lambda e: None, H2Settings(connectionWindowBytes=1 << 20))
        self.assertEqual(peer.conn.outbound_flow_control_window, 1 << 20)

    def test_responseWaitsForWindowAndPausesSource(self) -> None:
        """
        Response data beyond the client's window waits in the stream; the
        source is paused until the client opens its window, then resumed.
        """
        source = ScriptedSource()

        def handler(exchange: Any) -> None:
            exchange.respond(H2Headers([(b":status", b"200")])).streamFrom(source)

        clock, factory, proto, transport, peer = serverUnderTest(
            handler, peerInitial={SettingCodes.INITIAL_WINDOW_SIZE: 1000}
        )
        peer.conn.send_headers(1, GET, end_stream=True)
        peer.pump()
        source.consumer.write(b"x" * 1500)
        events = peer.pump()
        self.assertEqual(sum(len(e.data) for e in of(events, DataReceived)), 1000)
        self.assertTrue(source.paused)
        peer.conn.acknowledge_received_data(1000, 1)
        peer.conn.increment_flow_control_window(1000, 1)
        events = peer.pump()
        self.assertEqual(sum(len(e.data) for e in of(events, DataReceived)), 500)
        self.assertFalse(source.paused)

    def test_lastDataEndsStream(self) -> None:
        """
        C{endWith} sends the last data with END_STREAM in the same frame; if
        the window is short, the rest waits and the end follows it.
        """
        sinks: List[Any] = []

        def handler(exchange: Any) -> None:
            sinks.append(exchange.respond(H2Headers([(b":status", b"200")])))

        clock, factory, proto, transport, peer = serverUnderTest(
            handler, peerInitial={SettingCodes.INITIAL_WINDOW_SIZE: 10}
        )
        peer.conn.send_headers(1, GET, end_stream=True)
        peer.conn.send_headers(3, GET, end_stream=True)
        peer.pump()
        sinks[0].endWith(b"done")
        events = peer.pump()
        data = of(events, DataReceived)
        self.assertEqual([(e.data, e.stream_ended is not None) for e in data], [(b"done", True)])
        sinks[1].endWith(b"x" * 15)
        events = peer.pump()
        self.assertEqual([(len(e.data), e.stream_ended is not None) for e in of(events, DataReceived)], [(10, False)])
        peer.conn.acknowledge_received_data(10, 3)
        peer.conn.increment_flow_control_window(10, 3)
        events = peer.pump()
        self.assertEqual([(len(e.data), e.stream_ended is not None) for e in of(events, DataReceived)], [(5, True)])
        self.assertEqual(proto.streams, {})

    def test_transportPauseHoldsData(self) -> None:
        """
        While the transport is full (producer paused) stream data waits and
        the source is paused; resuming sends it.
        """
        source = ScriptedSource()

        def handler(exchange: Any) -> None:
            exchange.respond(H2Headers([(b":status", b"200")])).streamFrom(source)

        clock, factory, proto, transport, peer = serverUnderTest(handler)
        peer.conn.send_headers(1, GET, end_stream=True)
        peer.pump()
        proto.pauseProducing()
        source.consumer.write(b"abc")
        self.assertEqual(of(peer.pump(), DataReceived), [])
        self.assertTrue(source.paused)
        proto.resumeProducing()
        self.assertEqual([e.data for e in of(peer.pump(), DataReceived)], [b"abc"])
        self.assertFalse(source.paused)

    def test_requestWindowOpensOnlyWhenConsumed(self) -> None:
        """
        Request data is acknowledged (WINDOW_UPDATE) only while the body's
        consumer is not paused: a paused consumer stops the client at its
        window.
        """
        holder: List[Any] = []

        def handler(exchange: Any) -> None:
            holder.append(exchange)
            recorder = Recorder(exchange.body, pauseAfter=1)
            exchange.body.attach(recorder)
            exchange._rec = recorder

        clock, factory, proto, transport, peer = serverUnderTest(handler)
        peer.conn.send_headers(1, REQUEST)
        peer.conn.send_data(1, b"a" * 16000)
        peer.conn.send_data(1, b"b" * 16000)
        peer.conn.send_data(1, b"c" * 16000)
        events = peer.pump()
        self.assertEqual([e for e in of(events, WindowUpdated) if e.stream_id == 1], [])
        self.assertEqual(peer.conn.local_flow_control_window(1), 65535 - 48000)
        holder[0].body.resume()
        events = peer.pump()
        self.assertEqual(sum(e.delta for e in of(events, WindowUpdated) if e.stream_id == 1), 48000)
        self.assertEqual(len(holder[0]._rec.data), 48000)

    def test_clientResetReachesHandler(self) -> None:
        """
        A client RST_STREAM fails the request body and calls the exchange's
        abort handler with the reset code.
        """
        seen: List[Any] = []

        def handler(exchange: Any) -> None:
            exchange.abortHandler = seen.append
            exchange.body.attach(recorder)

        recorder = Recorder()
        clock, factory, proto, transport, peer = serverUnderTest(handler)
        peer.conn.send_headers(1, REQUEST)
        peer.pump()
        peer.conn.reset_stream(1, ErrorCodes.CANCEL)
        peer.pump()
        self.assertEqual(seen[0].value.errorCode, ErrorCodes.CANCEL)
        self.assertIsInstance(recorder.failed.value, StreamResetError)
        self.assertEqual(proto.streams, {})

    def test_resetOfResponseSourcePropagates(self) -> None:
        """
        A client reset while a response streams aborts the response's source
        (so an upstream stream would be reset too).
        """
        source = ScriptedSource()

        def handler(exchange: Any) -> None:
            exchange.respond(H2Headers([(b":status", b"200")])).streamFrom(source)

        clock, factory, proto, transport, peer = serverUnderTest(handler)
        peer.conn.send_headers(1, GET, end_stream=True)
        peer.pump()
        peer.conn.reset_stream(1, ErrorCodes.CANCEL)
        peer.pump()
        self.assertEqual(source.aborted.value.errorCode, ErrorCodes.CANCEL)

    def test_sourceAbortResetsWithItsCode(self) -> None:
        """
        A response source that fails with a peer's reset resets the client's
        stream with the same code.
        """
        source = ScriptedSource()

        def handler(exchange: Any) -> None:
            exchange.respond(H2Headers([(b":status", b"200")])).streamFrom(source)

        clock, factory, proto, transport, peer = serverUnderTest(handler)
        peer.conn.send_headers(1, GET, end_stream=True)
        peer.pump()
        source.consumer.bodyAborted(Failure(StreamResetError(ErrorCodes.INTERNAL_ERROR)))
        events = peer.pump()
        self.assertEqual(of(events, StreamReset)[0].error_code, ErrorCodes.INTERNAL_ERROR)

    def test_unwantedRequestBodyResetNoErrorAfterResponse(self) -> None:
        """
        Aborting a request body while the response is still open discards
        the data; once the response ends the stream is reset with NO_ERROR
        (RFC 9113 section 8.1), never truncating the response.
        """

        def handler(exchange: Any) -> None:
            exchange.sink = exchange.respond(H2Headers([(b":status", b"200")]))
            exchange.body.abort()

        clock, factory, proto, transport, peer = serverUnderTest(handler)
        peer.conn.send_headers(1, REQUEST)
        peer.conn.send_data(1, b"x" * 1000)
        events = peer.pump()
        self.assertEqual(of(events, StreamReset), [])
        exchange = factory.handler.exchanges[0]
        exchange.sink.write(b"done")
        exchange.sink.end()
        events = peer.pump()
        self.assertEqual(b"".join(e.data for e in of(events, DataReceived)), b"done")
        self.assertEqual(of(events, StreamReset)[0].error_code, ErrorCodes.NO_ERROR)

    def test_rapidResetGoAway(self) -> None:
        """
        More client resets per second than C{maxResetsPerSecond} end the
        connection with GOAWAY ENHANCE_YOUR_CALM.
        """
        clock, factory, proto, transport, peer = serverUnderTest(lambda e: None, limits=ServerLimits(maxResetsPerSecond=10))
        for i in range(11):
            sid = 1 + 2 * i
            peer.conn.send_headers(sid, GET, end_stream=True)
            peer.conn.reset_stream(sid, ErrorCodes.CANCEL)
        events = peer.pump()
        goaway = of(events, ConnectionTerminated)
        self.assertEqual(goaway[0].error_code, ErrorCodes.ENHANCE_YOUR_CALM)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(factory.metrics.counter("h2", "enhance_your_calm").value, 1)

    def test_resetsSpreadOverTimeTolerated(self) -> None:
        """
        The same number of resets spread over several seconds is fine.
        """
        clock, factory, proto, transport, peer = serverUnderTest(lambda e: None, limits=ServerLimits(maxResetsPerSecond=10))
        for i in range(30):
            sid = 1 + 2 * i
            peer.conn.send_headers(sid, GET, end_stream=True)
            peer.conn.reset_stream(sid, ErrorCodes.CANCEL)
            peer.pump()
            clock.advance(0.2)
        self.assertFalse(transport.disconnecting)

    def test_pingFloodGoAway(self) -> None:
        """
        More PING frames per second than C{maxControlFramesPerSecond} end
        the connection with ENHANCE_YOUR_CALM.
        """
        clock, factory, proto, transport, peer = serverUnderTest(lambda e: None, limits=ServerLimits(maxControlFramesPerSecond=20))
        for i in range(25):
            peer.conn.ping(b"%08d" % i)
        events = peer.pump()
        self.assertEqual(of(events, ConnectionTerminated)[0].error_code, ErrorCodes.ENHANCE_YOUR_CALM)

    def test_continuationFlood(self) -> None:
        """
        A header block spread over endless CONTINUATION frames ends the
        connection (the C{h2} library caps the backlog).
        """
        clock, factory, proto, transport, peer = serverUnderTest(lambda e: None)
        block = hpack.Encoder().encode(GET)
        frames = []
        first = HeadersFrame(1)
        first.data = block[:1]
        frames.append(first.serialize())
        for _ in range(100):
            c = ContinuationFrame(1)
            c.data = b"\x00"
            frames.append(c.serialize())
        peer.sendRaw(b"".join(frames))
        events = peer.conn.receive_data(transport.value())
        self.assertTrue(of(events, ConnectionTerminated))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(factory.handler.exchanges, [])

    def test_oversizedHeaderList(self) -> None:
        """
        A header list larger than C{maxHeaderListBytes} ends the connection.
        """
        clock, factory, proto, transport, peer = serverUnderTest(lambda e: None, H2Settings(maxHeaderListBytes=1024))
        peer.conn.send_headers(1, GET + [(b"x-big", b"v" * 4000)], end_stream=True)
        peer.pump()
        self.assertTrue(transport.disconnecting)
        self.assertEqual(factory.handler.exchanges, [])

    def test_tooManyStreams(self) -> None:
        """
        Opening more streams than advertised breaks the protocol.
        """
        clock, factory, proto, transport, peer = serverUnderTest(lambda e: None, H2Settings(maxConcurrentStreams=2))
        encoder = hpack.Encoder()
        frames = []
        for sid in (1, 3, 5):
            f = HeadersFrame(sid)
            f.data = encoder.encode(GET)
            f.flags.add("END_HEADERS")
            f.flags.add("END_STREAM")
            frames.append(f.serialize())
        peer.sendRaw(b"".join(frames))
        self.assertEqual(len(factory.handler.exchanges), 0)
        self.assertTrue(transport.disconnecting)

    def test_drain(self) -> None:
        """
        Draining sends GOAWAY with the last stream id, refuses newer
        streams, lets the open one finish, then closes.
        """
        clock, factory, proto, transport, peer = serverUnderTest(lambda e: None)
        peer.conn.send_headers(1, GET, end_stream=True)
        peer.pump()
        d = proto.drain(10.0)
        events = peer.pump()
        goaway = of(events, ConnectionTerminated)[0]
        self.assertEqual((goaway.error_code, goaway.last_stream_id), (ErrorCodes.NO_ERROR, 1))
        # The h2 client keeps its connection open after GOAWAY for this test.
        from h2.connection import ConnectionState

        peer.conn.state_machine.state = ConnectionState.CLIENT_OPEN
        peer.conn.send_headers(3, GET, end_stream=True)
        events = peer.pump()
        self.assertEqual(of(events, StreamReset)[0].error_code, ErrorCodes.REFUSED_STREAM)
        self.assertEqual(len(factory.handler.exchanges), 1)
        self.assertFalse(transport.disconnecting)
        factory.handler.exchanges[0].respond(H2Headers([(b":status", b"204")]), endStream=True)
        events = peer.pump()
        self.assertEqual(of(events, ResponseReceived)[0].headers, [(b":status", b"204")])
        self.assertTrue(transport.disconnecting)
        self.assertNoResult(d)
        proto.connectionLost(Failure(Exception("closed")))
        self.successResultOf(d)

    def test_drainGraceExpires(self) -> None:
        """
        Streams still open when the grace period ends are reset and the
        connection closes.
        """
        clock, factory, proto, transport, peer = serverUnderTest(lambda e: None)
        peer.conn.send_headers(1, GET, end_stream=True)
        peer.pump()
        proto.drain(2.0)
        peer.pump()
        clock.advance(2.0)
        from h2.connection import ConnectionState

        peer.conn.state_machine.state = ConnectionState.CLIENT_OPEN
        events = peer.pump()
        self.assertEqual(of(events, StreamReset)[0].error_code, ErrorCodes.CANCEL)
        self.assertTrue(transport.disconnecting)

    def test_prefaceTimeout(self) -> None:
        """
        A connection that sends no preface is dropped after
        C{prefaceTimeout}.
        """
        clock = MemoryReactorClock()
        factory = originFactory(clock, lambda e: None, limits=ServerLimits(prefaceTimeout=3.0))
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        clock.advance(2.9)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.2)
        self.assertTrue(transport.disconnecting)

    def test_idleTimeout(self) -> None:
        """
        A connection without streams for C{idleTimeout} gets GOAWAY and is
        closed; an open stream keeps it.
        """
        clock, factory, proto, transport, peer = serverUnderTest(lambda e: None, limits=ServerLimits(idleTimeout=5.0))
        peer.conn.send_headers(1, GET, end_stream=True)
        peer.pump()
        clock.advance(10)
        self.assertFalse(transport.disconnecting)
        factory.handler.exchanges[0].respond(H2Headers([(b":status", b"200")]), endStream=True)
        peer.pump()
        clock.advance(4.9)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.2)
        events = peer.pump()
        self.assertEqual(of(events, ConnectionTerminated)[0].error_code, ErrorCodes.NO_ERROR)
        self.assertTrue(transport.disconnecting)

    def test_handlerErrorIs500(self) -> None:
        """
        A handler that raises gets its stream answered with a 500.
        """

        def handler(exchange: Any) -> None:
            raise RuntimeError("boom")

        clock, factory, proto, transport, peer = serverUnderTest(handler)
        peer.conn.send_headers(1, GET, end_stream=True)
        events = peer.pump()
        self.assertEqual(of(events, ResponseReceived)[0].headers[0], (b":status", b"500"))
        self.flushLoggedErrors(RuntimeError)


def clientUnderTest(settings: Optional[H2Settings] = None, serverInitial: Optional[dict] = None):
    clock = MemoryReactorClock()
    proto = H2ClientProtocol(settings or H2Settings(), clock, ("127.0.0.1", 80))
    transport = StringTransport()
    proto.makeConnection(transport)
    peer = Peer(clientSide=False, initial=serverInitial).attach(proto, transport)
    peer.pump()
    return clock, proto, transport, peer


class ClientTests(SynchronousTestCase):
    """
    L{H2ClientProtocol} against the C{h2} library as a server.
    """

    def test_responseDataTrailers(self) -> None:
        """
        The response fires at its headers; data and trailers follow in the
        body; the head gets the trailers when the stream ends.
        """
        clock, proto, transport, peer = clientUnderTest()
        d = proto.request(H2Headers(REQUEST), BytesBody(b"ping"))
        events = peer.pump()
        self.assertEqual(of(events, RequestReceived)[0].headers, REQUEST)
        self.assertEqual(b"".join(e.data for e in of(events, DataReceived)), b"ping")
        peer.conn.send_headers(1, [(b":status", b"200"), (b"content-type", b"application/grpc")])
        peer.pump()
        response = self.successResultOf(d)
        self.assertEqual((response.head.status, response.head.headers.get(b"content-type")), (200, b"application/grpc"))
        self.assertFalse(response.complete)
        recorder = Recorder()
        response.body.attach(recorder)
        peer.conn.send_data(1, b"pong")
        peer.conn.send_headers(1, [(b"grpc-status", b"0")], end_stream=True)
        peer.pump()
        self.assertEqual(recorder.data, b"pong")
        self.assertEqual(response.head.trailers.get(b"grpc-status"), b"0")
        self.assertTrue(response.complete)
        self.assertEqual(proto.streams, {})

    def test_trailersOnlyResponseComplete(self) -> None:
        """
        HEADERS with END_STREAM gives a response that is already complete.
        """
        clock, proto, transport, peer = clientUnderTest()
        d = proto.request(H2Headers(GET))
        peer.pump()
        peer.conn.send_headers(1, [(b":status", b"200"), (b"grpc-status", b"14")], end_stream=True)
        peer.pump()
        response = self.successResultOf(d)
        self.assertTrue(response.complete)
        self.assertEqual(response.body.buffered, 0)

    def test_refusedStreamIsRetrySafe(self) -> None:
        """
        RST_STREAM REFUSED_STREAM before a response fails the request with
        L{StreamRefused}: nothing was processed.
        """
        clock, proto, transport, peer = clientUnderTest()
        d = proto.request(H2Headers(GET))
        peer.pump()
        peer.conn.reset_stream(1, ErrorCodes.REFUSED_STREAM)
        peer.pump()
        error = self.failureResultOf(d, StreamRefused).value
        self.assertFalse(error.requestWritten)
        self.assertEqual(error.errorCode, ErrorCodes.REFUSED_STREAM)

    def test_resetBeforeResponse(self) -> None:
        """
        Another reset before the response fails the request with its code.
        """
        clock, proto, transport, peer = clientUnderTest()
        d = proto.request(H2Headers(GET))
        peer.pump()
        peer.conn.reset_stream(1, ErrorCodes.INTERNAL_ERROR)
        peer.pump()
        error = self.failureResultOf(d, StreamResetError).value
        self.assertEqual((error.errorCode, error.requestWritten), (ErrorCodes.INTERNAL_ERROR, True))

    def test_resetAfterHeadersFailsBody(self) -> None:
        """
        A reset after the response headers fails the body with the code.
        """
        clock, proto, transport, peer = clientUnderTest()
        d = proto.request(H2Headers(GET))
        peer.pump()
        peer.conn.send_headers(1, [(b":status", b"200")])
        peer.pump()
        response = self.successResultOf(d)
        recorder = Recorder()
        response.body.attach(recorder)
        peer.conn.reset_stream(1, ErrorCodes.CANCEL)
        peer.pump()
        self.assertEqual(recorder.failed.value.errorCode, ErrorCodes.CANCEL)

    def test_cancelResetsStream(self) -> None:
        """
        Cancelling the request sends RST_STREAM CANCEL.
        """
        clock, proto, transport, peer = clientUnderTest()
        d = proto.request(H2Headers(GET))
        peer.pump()
        d.cancel()
        self.failureResultOf(d)
        events = peer.pump()
        self.assertEqual(of(events, StreamReset)[0].error_code, ErrorCodes.CANCEL)

    def test_responseBodyAbortResets(self) -> None:
        """
        Aborting a response body resets the stream with CANCEL.
        """
        clock, proto, transport, peer = clientUnderTest()
        d = proto.request(H2Headers(GET))
        peer.pump()
        peer.conn.send_headers(1, [(b":status", b"200")])
        peer.pump()
        self.successResultOf(d).body.abort()
        events = peer.pump()
        self.assertEqual(of(events, StreamReset)[0].error_code, ErrorCodes.CANCEL)

    def test_queuedBeyondMaxConcurrentStreams(self) -> None:
        """
        Requests beyond the server's SETTINGS_MAX_CONCURRENT_STREAMS wait
        until a stream closes.
        """
        clock, proto, transport, peer = clientUnderTest(serverInitial={SettingCodes.MAX_CONCURRENT_STREAMS: 1})
        d1 = proto.request(H2Headers(GET))
        d2 = proto.request(H2Headers(GET))
        events = peer.pump()
        self.assertEqual([e.stream_id for e in of(events, RequestReceived)], [1])
        peer.conn.send_headers(1, [(b":status", b"200")], end_stream=True)
        events = peer.pump()
        self.successResultOf(d1)
        self.assertEqual([e.stream_id for e in of(events, RequestReceived)], [3])
        self.assertNoResult(d2)

    def test_requestBodyBackPressure(self) -> None:
        """
        Request data beyond the server's window pauses the request body's
        source until the server opens the window.
        """
        clock, proto, transport, peer = clientUnderTest(serverInitial={SettingCodes.INITIAL_WINDOW_SIZE: 100})
        source = ScriptedSource()
        proto.request(H2Headers(REQUEST), source)
        peer.pump()
        source.consumer.write(b"y" * 300)
        events = peer.pump()
        self.assertEqual(sum(len(e.data) for e in of(events, DataReceived)), 100)
        self.assertTrue(source.paused)
        peer.conn.acknowledge_received_data(100, 1)
        peer.conn.increment_flow_control_window(200, 1)
        events = peer.pump()
        self.assertEqual(sum(len(e.data) for e in of(events, DataReceived)), 200)
        self.assertFalse(source.paused)

    def test_goAwayRefusesAboveLastKeepsBelow(self) -> None:
        """
        After a GOAWAY, streams above its last stream id fail as refused
        (safe to retry) while those below still complete; the connection
        takes no new requests and closes when they are done.
        """
        clock, proto, transport, peer = clientUnderTest()
        gone: List[Any] = []
        proto.onGone = gone.append
        d1 = proto.request(H2Headers(GET))
        d2 = proto.request(H2Headers(GET))
        peer.pump()
        from linkerpy.protocol.h2.connection import goAwayFrame

        proto.dataReceived(goAwayFrame(1))
        self.failureResultOf(d2, StreamRefused)
        self.assertEqual(gone, [proto])
        self.failureResultOf(proto.request(H2Headers(GET)), StreamRefused)
        peer.conn.send_headers(1, [(b":status", b"200")])
        peer.conn.send_data(1, b"still here", end_stream=True)
        peer.pump()
        response = self.successResultOf(d1)
        self.assertEqual(self.successResultOf(collect(response.body)), b"still here")
        self.assertTrue(transport.disconnecting)

    def test_connectionLostFailsStreams(self) -> None:
        """
        Losing the connection fails requests without a response with
        L{ConnectionReset} and bodies in progress likewise.
        """
        clock, proto, transport, peer = clientUnderTest()
        d1 = proto.request(H2Headers(GET))
        d2 = proto.request(H2Headers(GET))
        peer.pump()
        peer.conn.send_headers(1, [(b":status", b"200")])
        peer.pump()
        recorder = Recorder()
        self.successResultOf(d1).body.attach(recorder)
        proto.connectionLost(Failure(ConnectionReset()))
        self.failureResultOf(d2, ConnectionReset)
        self.assertIsInstance(recorder.failed.value, ConnectionReset)

    def test_pushRefused(self) -> None:
        """
        The client disables server push in its SETTINGS.
        """
        clock, proto, transport, peer = clientUnderTest()
        self.assertEqual(peer.conn.remote_settings.enable_push, 0)


class FrameReprTests(SynchronousTestCase):
    """
    The cheaper frame payload repr gives C{hyperframe}'s text.
    """

    def test_sameText(self) -> None:
        """
        Long, short and empty payloads are shown as before.
        """
        from hyperframe.frame import DataFrame

        import linkerpy.protocol.h2.connection  # noqa: F401 - installs the helper

        frame = DataFrame(1)
        frame.data = bytes(range(100))
        self.assertIn("<hex:00010203040506070809...>", repr(frame))
        frame.data = b"ab"
        self.assertIn("<hex:6162>", repr(frame))


class BothSidesTests(SynchronousTestCase):
    """
    The client and server connections against each other (iosim).
    """

    def connected(self, fn: Any, **kw: Any) -> Any:
        clock = MemoryReactorClock()
        factory = originFactory(clock, fn, **kw)
        server = factory.buildProtocol(None)
        client = H2ClientProtocol(H2Settings(), clock, ("127.0.0.1", 1))
        pump = connect(server, FakeTransport(server, True), client, FakeTransport(client, False), clock=clock)
        return clock, factory, server, client, pump

    def test_largeStreamBothWays(self) -> None:
        """
        A request body larger than every window is echoed back intact.
        """

        def echo(exchange: Any) -> None:
            exchange.respond(H2Headers([(b":status", b"200")])).streamFrom(exchange.body)

        clock, factory, server, client, pump = self.connected(echo)
        payload = bytes(range(256)) * 4096  # 1 MiB
        d = fetch(client, requestHeaders(method=b"POST"), payload)
        pump.flush()
        fetched = self.successResultOf(d)
        self.assertEqual((fetched.status, fetched.body == payload), (200, True))

    def test_manyConcurrentStreams(self) -> None:
        """
        Many requests are multiplexed on one connection at once.
        """
        held: List[Any] = []
        clock, factory, server, client, pump = self.connected(held.append)
        ds = [fetch(client, requestHeaders(path=b"/%d" % i)) for i in range(100)]
        pump.flush()
        self.assertEqual(len(held), 100)
        for exchange in held:
            exchange.respondBytes(H2Headers([(b":status", b"200")]), exchange.request.path)
        pump.flush()
        self.assertEqual([self.successResultOf(d).body for d in ds], [b"/%d" % i for i in range(100)])
