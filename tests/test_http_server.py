# -*- test-case-name: tests.test_http_server -*-
"""
Tests for the HTTP/1.1 server connection (L{HTTPServerFactory}), over
C{StringTransport} and C{MemoryReactorClock}.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from linkerpy.protocol.http.headers import Headers
from linkerpy.protocol.http.interfaces import IBodySink, IServerExchange
from linkerpy.protocol.http.message import ResponseHead
from linkerpy.protocol.http.parser import HeadLimits
from linkerpy.protocol.http.server import HTTPServerFactory, ServerTimeouts
from linkerpy.protocol.http.stream import BytesBody, collect
from linkerpy.telemetry.metrics import MetricsTree
from tests.test_http_framing_cases import LIMIT_CASES, REQUEST_CASES


class Recorder:
    """
    A handler that records exchanges and optionally answers at once.
    """

    def __init__(self, auto: Any = None) -> None:
        self.exchanges: List[Any] = []
        self.auto = auto

    def handleRequest(self, exchange: Any) -> None:
        self.exchanges.append(exchange)
        if self.auto is not None:
            self.auto(exchange)


def ok(exchange: Any) -> None:
    exchange.respondBytes(ResponseHead(200), b"hello")


def readThenOk(exchange: Any) -> None:
    """
    Read the whole request body, then answer 200 (a body error is left to
    the server).
    """
    collect(exchange.body).addCallbacks(lambda body: ok(exchange), lambda f: None)


class Consumer:
    def __init__(self) -> None:
        self.data: List[bytes] = []
        self.ended: Any = "no"
        self.failure: Optional[Failure] = None

    def dataReceived(self, data: bytes) -> None:
        self.data.append(data)

    def bodyEnd(self, trailers: Any) -> None:
        self.ended = trailers

    def bodyAborted(self, reason: Failure) -> None:
        self.failure = reason


class ServerTestMixin:
    def connect(self, handler: Any = None, **kwargs: Any) -> Tuple[Any, Any, StringTransport, MemoryReactorClock]:
        clock = MemoryReactorClock()
        self.metrics = MetricsTree()
        factory = HTTPServerFactory(
            handler if handler is not None else Recorder(ok), clock=clock, metricsScope=self.metrics, **kwargs
        )
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        return factory, proto, transport, clock

    def responses(self, transport: StringTransport) -> List[bytes]:
        """
        The status lines written so far.
        """
        return [line for line in transport.value().split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


class RejectionTests(ServerTestMixin, SynchronousTestCase):
    """
    The strict rules, through the server connection.
    """

    def test_catalogue(self) -> None:
        """
        Every malformed request gets its status, C{Connection: close} and a
        closed connection, and never reaches the handler; good ones do.
        """
        failures = []
        for name, raw, status in REQUEST_CASES + LIMIT_CASES:
            handler = Recorder(readThenOk)
            factory, proto, transport, clock = self.connect(handler)
            proto.dataReceived(raw)
            value = transport.value()
            if status == 200:
                if len(handler.exchanges) != 1 or not value.startswith(b"HTTP/1.1 200 OK\r\n"):
                    failures.append(f"{name}: not accepted: {value[:60]!r}")
                continue
            # a rejected chunked body arrives after the head was accepted
            expectedLine = b"HTTP/1.1 %d " % status
            if not value.startswith(expectedLine) and expectedLine not in value:
                failures.append(f"{name}: got {value[:60]!r}, expected {status}")
            elif b"Connection: close\r\n" not in value or not transport.disconnecting:
                failures.append(f"{name}: connection not closed")
            elif handler.exchanges and not handler.exchanges[0].request.chunked:
                failures.append(f"{name}: reached the handler")
        self.assertEqual(failures, [])

    def test_byteByByte(self) -> None:
        """
        Rules hold when the request arrives one byte at a time.
        """
        for name, raw, status in REQUEST_CASES:
            handler = Recorder(readThenOk)
            factory, proto, transport, clock = self.connect(handler)
            for i in range(len(raw)):
                if transport.disconnecting:
                    break
                proto.dataReceived(raw[i : i + 1])
            expected = b"HTTP/1.1 %d " % status
            self.assertIn(expected, transport.value(), name)

    def test_rejectedCounted(self) -> None:
        """
        Rejections are counted.
        """
        factory, proto, transport, clock = self.connect()
        proto.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.assertEqual(self.metrics.counter("rejected").value, 1)

    def test_bodyFramingErrorAfterHandler(self) -> None:
        """
        A malformed chunked body fails the body the handler is reading and
        is answered 400 if nothing was sent yet.
        """
        handler = Recorder()
        factory, proto, transport, clock = self.connect(handler)
        proto.dataReceived(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        consumer = Consumer()
        handler.exchanges[0].body.attach(consumer)
        self.assertEqual(consumer.data, [b"abc"])
        proto.dataReceived(b"zz\r\n")
        self.assertIsNotNone(consumer.failure)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 400 "))
        self.assertTrue(transport.disconnecting)


class KeepAliveTests(ServerTestMixin, SynchronousTestCase):
    """
    Persistence, pipelining and response framing.
    """

    def test_keepAlive(self) -> None:
        """
        HTTP/1.1 connections stay open across requests.
        """
        handler = Recorder(ok)
        factory, proto, transport, clock = self.connect(handler)
        proto.dataReceived(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n")
        proto.dataReceived(b"GET /2 HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(len(handler.exchanges), 2)
        self.assertEqual(
            transport.value(), b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" * 2
        )
        self.assertFalse(transport.disconnecting)

    def test_connectionClose(self) -> None:
        """
        C{Connection: close} from the client is honoured: the response says
        so and the connection closes.
        """
        factory, proto, transport, clock = self.connect()
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n")
        self.assertEqual(transport.value(), b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        self.assertTrue(transport.disconnecting)

    def test_http10(self) -> None:
        """
        HTTP/1.0 closes unless the client asked for keep-alive, which is
        then confirmed.
        """
        factory, proto, transport, clock = self.connect()
        proto.dataReceived(b"GET / HTTP/1.0\r\n\r\n")
        self.assertIn(b"Connection: close\r\n", transport.value())
        self.assertTrue(transport.disconnecting)
        factory, proto, transport, clock = self.connect()
        proto.dataReceived(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        self.assertIn(b"Connection: keep-alive\r\n", transport.value())
        self.assertFalse(transport.disconnecting)

    def test_pipelinedInOrder(self) -> None:
        """
        Pipelined requests are handled one at a time and answered in order,
        even if the handler is slow.
        """
        handler = Recorder()
        factory, proto, transport, clock = self.connect(handler)
        proto.dataReceived(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\nGET /3 HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual([e.request.target for e in handler.exchanges], [b"/1"])
        handler.exchanges[0].respondBytes(ResponseHead(200), b"one")
        self.assertEqual([e.request.target for e in handler.exchanges], [b"/1", b"/2"])
        handler.exchanges[1].respondBytes(ResponseHead(200), b"two")
        handler.exchanges[2].respondBytes(ResponseHead(200), b"three")
        self.assertEqual(transport.value().count(b"HTTP/1.1 200"), 3)
        self.assertTrue(transport.value().endswith(b"three"))
        self.assertTrue(transport.value().index(b"one") < transport.value().index(b"two"))

    def test_pipelineBufferBounded(self) -> None:
        """
        While a request is in flight, reading stops once the pipelined bytes
        exceed the buffer, and resumes when the response is done.
        """
        handler = Recorder()
        factory, proto, transport, clock = self.connect(handler, pipelineBufferBytes=100)
        proto.dataReceived(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n")
        proto.dataReceived(b"GET /2 HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(transport.producerState, "producing")
        proto.dataReceived(b"GET /3 HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 100 + b"\r\n\r\n")
        self.assertEqual(transport.producerState, "paused")
        handler.exchanges[0].respondBytes(ResponseHead(200), b"")
        self.assertEqual(len(handler.exchanges), 2)
        self.assertEqual(transport.producerState, "paused")
        handler.exchanges[1].respondBytes(ResponseHead(200), b"")
        self.assertEqual(len(handler.exchanges), 3)
        self.assertEqual(transport.producerState, "producing")

    def test_leadingEmptyLines(self) -> None:
        """
        Empty lines before a request line are ignored (RFC 9112 section 2.2).
        """
        handler = Recorder(ok)
        factory, proto, transport, clock = self.connect(handler)
        proto.dataReceived(b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(len(handler.exchanges), 1)

    def test_manyEmptyLines(self) -> None:
        """
        Many empty lines are skipped in linear time; a bare LF among them is
        refused.
        """
        handler = Recorder(ok)
        factory, proto, transport, clock = self.connect(handler)
        proto.dataReceived(b"\r\n" * 200000 + b"\r")
        proto.dataReceived(b"\nGET / HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(len(handler.exchanges), 1)
        factory, proto, transport, clock = self.connect(handler)
        proto.dataReceived(b"\r\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 400 "))

    def test_chunkedWhenLengthUnknown(self) -> None:
        """
        A response without a length is chunked to HTTP/1.1 clients, with
        trailers, and close-delimited to HTTP/1.0 clients.
        """
        handler = Recorder()
        factory, proto, transport, clock = self.connect(handler)
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        sink = handler.exchanges[0].respond(ResponseHead(200, Headers([(b"X-A", b"1")])))
        sink.write(b"abc")
        sink.write(b"")
        sink.end(Headers([(b"X-T", b"2")]))
        self.assertEqual(
            transport.value(),
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 2\r\n\r\n",
        )
        self.assertFalse(transport.disconnecting)
        factory, proto, transport, clock = self.connect(handler)
        proto.dataReceived(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        sink = handler.exchanges[1].respond(ResponseHead(200))
        sink.write(b"abc")
        sink.end(Headers([(b"X-T", b"2")]))
        self.assertEqual(transport.value(), b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc")
        self.assertTrue(transport.disconnecting)

    def test_trailersDroppedWithLength(self) -> None:
        """
        Trailers cannot be sent on a Content-Length response and are dropped.
        """
        handler = Recorder()
        factory, proto, transport, clock = self.connect(handler)
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        handler.exchanges[0].respond(ResponseHead(200, contentLength=2)).streamFrom(
            BytesBody(b"ok", Headers([(b"X-T", b"1")]))
        )
        self.assertEqual(transport.value(), b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def test_bodylessResponses(self) -> None:
        """
        HEAD answers keep the announced length but carry no body; 204 and 304
        carry none either.
        """
        handler = Recorder()
        factory, proto, transport, clock = self.connect(handler)
        proto.dataReceived(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
        sink = handler.exchanges[0].respond(ResponseHead(200, contentLength=10))
        sink.write(b"ignored")
        sink.end()
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        handler.exchanges[1].respond(ResponseHead(204)).end()
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        handler.exchanges[2].respond(ResponseHead(304, contentLength=10)).end()
        self.assertEqual(
            transport.value(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
            b"HTTP/1.1 204 No Content\r\n\r\n"
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
        )

    def test_hopByHopStrippedFromResponses(self) -> None:
        """
        Hop-by-hop and framing fields set by the handler are not written.
        """
        handler = Recorder()
        factory, proto, transport, clock = self.connect(handler)
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        headers = Headers(
            [(b"Connection", b"keep-alive"), (b"Keep-Alive", b"x"), (b"Transfer-Encoding", b"gzip"), (b"X-A", b"1")]
        )
        handler.exchanges[0].respondBytes(ResponseHead(200, headers), b"")
        self.assertEqual(transport.value(), b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n")

    def test_exchangeInterfaces(self) -> None:
        """
        The exchange provides L{IServerExchange} and L{IBodySink}, and its
        connection data is shared by the connection's requests.
        """
        handler = Recorder()
        factory, proto, transport, clock = self.connect(handler)
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        exchange = handler.exchanges[0]
        verifyObject(IServerExchange, exchange)
        verifyObject(IBodySink, exchange)
        self.assertFalse(exchange.isSecure)
        exchange.connectionData["k"] = 1
        exchange.respondBytes(ResponseHead(200), b"")
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(handler.exchanges[1].connectionData, {"k": 1})
        self.assertIsNone(exchange.peerCertificate())
        self.assertEqual(exchange.peer, transport.getPeer())


class RequestBodyTests(ServerTestMixin, SynchronousTestCase):
    """
    Request bodies are streamed with back-pressure.
    """

    def test_lengthBodyStreamed(self) -> None:
        """
        A Content-Length body reaches the consumer as it arrives, and the
        next request is read after it.
        """
        handler = Recorder()
        factory, proto, transport, clock = self.connect(handler)
        proto.dataReceived(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\nab")
        consumer = Consumer()
        handler.exchanges[0].body.attach(consumer)
        proto.dataReceived(b"cd")
        proto.dataReceived(b"efGET / HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(b"".join(consumer.data), b"abcdef")
        self.assertIsNone(consumer.ended)
        handler.exchanges[0].respondBytes(ResponseHead(200), b"")
        self.assertEqual(len(handler.exchanges), 2)

    def test_chunkedBodyWithTrailers(self) -> None:
        """
        A chunked body is decoded and its trailers handed to C{bodyEnd}.
        """
        handler = Recorder()
        factory, proto, transport, clock = self.connect(handler)
        proto.dataReceived(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        consumer = Consumer()
        handler.exchanges[0].body.attach(consumer)
        proto.dataReceived(b"2\r\nde\r\n0\r\nX-T: 1\r\n\r\n")
        self.assertEqual(b"".join(consumer.data), b"abcde")
        self.assertEqual(list(consumer.ended), [(b"X-T", b"1")])

    def test_backPressure(self) -> None:
        """
        Pausing the body pauses the transport; resuming resumes it.
        """
        handler = Recorder()
        factory, proto, transport, clock = self.connect(handler)
        proto.dataReceived(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n")
        body = handler.exchanges[0].body
        body.attach(Consumer())
        body.pause()
        self.assertEqual(transport.producerState, "paused")
        body.resume()
        self.assertEqual(transport.producerState, "producing")

    def test_unreadBodyBounded(self) -> None:
        """
        A body nobody reads yet is buffered up to the limit, then reading
        stops.
        """
        handler = Recorder()
        factory, proto, transport, clock = self.connect(handler, requestBodyBufferBytes=10)
        proto.dataReceived(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n" + b"a" * 20)
        self.assertEqual(transport.producerState, "paused")

    def test_expectContinue(self) -> None:
        """
        C{100 Continue} is sent when the handler starts reading the body.
        """
        handler = Recorder()
        factory, proto, transport, clock = self.connect(handler)
        proto.dataReceived(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        self.assertEqual(transport.value(), b"")
        consumer = Consumer()
        handler.exchanges[0].body.attach(consumer)
        self.assertEqual(transport.value(), b"HTTP/1.1 100 Continue\r\n\r\n")
        proto.dataReceived(b"ok")
        self.assertEqual(consumer.data, [b"ok"])

    def test_expectContinueAnsweredEarly(self) -> None:
        """
        A final answer without reading the body sends no 100 and closes.
        """
        handler = Recorder(lambda e: e.respondError(413, b"too big"))
        factory, proto, transport, clock = self.connect(handler)
        proto.dataReceived(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2000\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 413 "))
        self.assertIn(b"Connection: close", transport.value())
        self.assertTrue(transport.disconnecting)

    def test_clientGoneDuringBody(self) -> None:
        """
        The client vanishing fails the body and calls the abort handler.
        """
        handler = Recorder()
        factory, proto, transport, clock = self.connect(handler)
        proto.dataReceived(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nab")
        exchange = handler.exchanges[0]
        aborted: List[Any] = []
        done: List[bool] = []
        exchange.abortHandler = aborted.append
        exchange.completionHandler = lambda e, ok: done.append(ok)
        consumer = Consumer()
        exchange.body.attach(consumer)
        proto.connectionLost(Failure(ConnectionLost()))
        self.assertIsNotNone(consumer.failure)
        self.assertEqual(len(aborted), 1)
        self.assertEqual(done, [False])
        self.assertEqual(self.metrics.find("connections").metric.value, 0)


class ResponseFailureTests(ServerTestMixin, SynchronousTestCase):
    """
    Responses that cannot complete.
    """

    def test_abortBeforeHeadSent(self) -> None:
        """
        Aborting a response whose head was not written yet answers 502.
        """
        handler = Recorder()
        factory, proto, transport, clock = self.connect(handler)
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        handler.exchanges[0].respond(ResponseHead(200, contentLength=10)).abort()
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 502 Bad Gateway\r\n"))
        self.assertTrue(transport.disconnecting)

    def test_abortTruncatesChunked(self) -> None:
        """
        Aborting a chunked response after it started never writes the last
        chunk and closes.
        """
        handler = Recorder()
        factory, proto, transport, clock = self.connect(handler)
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        sink = handler.exchanges[0].respond(ResponseHead(200))
        sink.write(b"part")
        sink.abort()
        self.assertTrue(transport.value().endswith(b"4\r\npart\r\n"))
        self.assertTrue(transport.disconnecting)

    def test_shortLengthBodyTruncates(self) -> None:
        """
        Ending a Content-Length response early closes the connection.
        """
        handler = Recorder()
        factory, proto, transport, clock = self.connect(handler)
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        sink = handler.exchanges[0].respond(ResponseHead(200, contentLength=10))
        sink.write(b"abc")
        sink.end()
        self.assertTrue(transport.disconnecting)

    def test_respondErrorAfterStart(self) -> None:
        """
        An error after the response was written truncates instead.
        """
        handler = Recorder()
        factory, proto, transport, clock = self.connect(handler)
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        exchange = handler.exchanges[0]
        exchange.respond(ResponseHead(200)).write(b"x")
        exchange.respondError(502, b"oops")
        self.assertNotIn(b"502", transport.value())
        self.assertTrue(transport.disconnecting)

    def test_handlerException(self) -> None:
        """
        A handler raising gets a 500 and is counted.
        """

        def boom(exchange: Any) -> None:
            raise RuntimeError("boom")

        factory, proto, transport, clock = self.connect(Recorder(boom))
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 500 "))
        self.assertEqual(self.metrics.counter("handler_errors").value, 1)
        self.flushLoggedErrors(RuntimeError)

    def test_respondAfterClientGone(self) -> None:
        """
        Responding after the client left is a harmless no-op that aborts the
        body source.
        """
        handler = Recorder()
        factory, proto, transport, clock = self.connect(handler)
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        exchange = handler.exchanges[0]
        proto.connectionLost(Failure(ConnectionDone()))
        aborted = []

        class Source:
            finished = False

            def abort(self) -> None:
                aborted.append(True)

        exchange.respond(ResponseHead(200)).streamFrom(Source())
        self.assertEqual(aborted, [True])


class TimeoutTests(ServerTestMixin, SynchronousTestCase):
    """
    Timers, driven by the clock.
    """

    def test_headTimeout(self) -> None:
        """
        A head trickling in past the deadline gets 408 and is closed.
        """
        factory, proto, transport, clock = self.connect(timeouts=ServerTimeouts(headTimeout=5.0))
        proto.dataReceived(b"GET / HTTP/1.1\r\n")
        clock.advance(3)
        proto.dataReceived(b"Host: h\r\n")
        clock.advance(1)
        self.assertEqual(transport.value(), b"")
        clock.advance(1.5)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 "))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.metrics.counter("head_timeouts").value, 1)

    def test_silentConnectionClosed(self) -> None:
        """
        A connection that never sends anything is closed silently.
        """
        factory, proto, transport, clock = self.connect(timeouts=ServerTimeouts(headTimeout=5.0))
        clock.advance(6)
        self.assertEqual(transport.value(), b"")
        self.assertTrue(transport.disconnecting)

    def test_bodyIdleTimeout(self) -> None:
        """
        A request body that stalls gets 408 and the body fails.
        """
        handler = Recorder()
        factory, proto, transport, clock = self.connect(handler, timeouts=ServerTimeouts(bodyIdleTimeout=2.0))
        proto.dataReceived(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nab")
        consumer = Consumer()
        handler.exchanges[0].body.attach(consumer)
        clock.advance(1.5)
        proto.dataReceived(b"cd")
        clock.advance(1.5)
        self.assertIsNone(consumer.failure)
        clock.advance(1)
        self.assertIsNotNone(consumer.failure)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 "))
        self.assertEqual(self.metrics.counter("body_timeouts").value, 1)

    def test_keepAliveIdle(self) -> None:
        """
        An idle keep-alive connection is closed and counted in C{idle}.
        """
        factory, proto, transport, clock = self.connect(timeouts=ServerTimeouts(keepAliveTimeout=1.5))
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        clock.advance(1)
        self.assertFalse(transport.disconnecting)
        clock.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.metrics.counter("idle").value, 1)

    def test_noTimeoutWhileWaitingForHandler(self) -> None:
        """
        A slow handler is not cut off by the server timers.
        """
        handler = Recorder()
        factory, proto, transport, clock = self.connect(
            handler, timeouts=ServerTimeouts(headTimeout=1, bodyIdleTimeout=1, keepAliveTimeout=1)
        )
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        clock.advance(10)
        self.assertFalse(transport.disconnecting)
        handler.exchanges[0].respondBytes(ResponseHead(200), b"")
        self.assertFalse(transport.disconnecting)

    def test_lifeTime(self) -> None:
        """
        A connection past its lifetime closes after its current response
        (which says C{Connection: close}), counted in C{lifetime}.
        """
        handler = Recorder()
        factory, proto, transport, clock = self.connect(handler, timeouts=ServerTimeouts(lifeTime=3.0))
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        clock.advance(3.5)
        handler.exchanges[0].respondBytes(ResponseHead(200), b"")
        self.assertIn(b"Connection: close", transport.value())
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.metrics.counter("lifetime").value, 1)

    def test_lifeTimeIdle(self) -> None:
        """
        An idle connection past its lifetime is closed.
        """
        factory, proto, transport, clock = self.connect(timeouts=ServerTimeouts(lifeTime=3.0, keepAliveTimeout=None))
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        clock.advance(3.5)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.metrics.counter("lifetime").value, 1)


class DrainTests(ServerTestMixin, SynchronousTestCase):
    """
    Graceful drain.
    """

    def test_drain(self) -> None:
        """
        Idle connections close at once; a busy one finishes its response
        with C{Connection: close}; the Deferred fires when all are gone.
        """
        handler = Recorder()
        factory, busy, busyTransport, clock = self.connect(handler)
        idle = factory.buildProtocol(None)
        idleTransport = StringTransport()
        idle.makeConnection(idleTransport)
        busy.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n")
        d = factory.drain()
        self.assertTrue(idleTransport.disconnecting)
        idle.connectionLost(Failure(ConnectionDone()))
        self.assertNoResult(d)
        handler.exchanges[0].respondBytes(ResponseHead(200), b"")
        self.assertIn(b"Connection: close", busyTransport.value())
        self.assertTrue(busyTransport.disconnecting)
        self.assertEqual(len(handler.exchanges), 1)
        busy.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(d)

    def test_drainGrace(self) -> None:
        """
        Connections still open after the grace period are aborted.
        """
        handler = Recorder()
        factory, proto, transport, clock = self.connect(handler)
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        factory.drain(5.0)
        clock.advance(5)
        self.assertTrue(transport.disconnecting)


class ConnectionTests(ServerTestMixin, SynchronousTestCase):
    """
    Connection-level behaviour.
    """

    def test_metrics(self) -> None:
        """
        C{connects} counts and C{connections} gauges connections.
        """
        factory, proto, transport, clock = self.connect()
        self.assertEqual(self.metrics.counter("connects").value, 1)
        self.assertEqual(self.metrics.find("connections").metric.value, 1)
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.metrics.find("connections").metric.value, 0)

    def test_maxConnections(self) -> None:
        """
        Connections beyond C{maxConnections} are closed at once.
        """
        factory, proto, transport, clock = self.connect(maxConnections=1)
        second = factory.buildProtocol(None)
        secondTransport = StringTransport()
        second.makeConnection(secondTransport)
        self.assertTrue(secondTransport.disconnecting)
        self.assertEqual(self.metrics.counter("rejected_connections").value, 1)

    def test_halfClose(self) -> None:
        """
        A client that half-closes after its request still gets the response,
        then the connection closes.
        """
        handler = Recorder()
        factory, proto, transport, clock = self.connect(handler)
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        proto.readConnectionLost()
        self.assertFalse(transport.disconnecting)
        handler.exchanges[0].respondBytes(ResponseHead(200), b"x")
        self.assertIn(b"Connection: close", transport.value())
        self.assertTrue(transport.disconnecting)

    def test_connectWhenEnabled(self) -> None:
        """
        CONNECT reaches the handler only when enabled.
        """
        handler = Recorder()
        factory, proto, transport, clock = self.connect(handler, limits=HeadLimits(allowConnect=True))
        proto.dataReceived(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        self.assertEqual(handler.exchanges[0].request.method, b"CONNECT")


class FakeTunnelEnd:
    """
    An upstream tunnel end recording what it is sent.
    """

    def __init__(self) -> None:
        self.transport = StringTransport()
        self.received: List[bytes] = []
        self.peer: Any = None
        self.writeClosed = False
        self.closed = False

    def setPeer(self, peer: Any) -> None:
        self.peer = peer

    def write(self, data: bytes) -> None:
        self.received.append(data)

    def loseWriteConnection(self) -> None:
        self.writeClosed = True

    def loseConnection(self) -> None:
        self.closed = True

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        self.closed = True


class UpgradeTests(ServerTestMixin, SynchronousTestCase):
    """
    Upgrades turn the connection into a tunnel.
    """

    def test_upgrade(self) -> None:
        """
        After a 101 the connection carries raw bytes both ways with
        back-pressure, including bytes that arrived with the request;
        half-close and close propagate.
        """
        handler = Recorder()
        factory, proto, transport, clock = self.connect(handler)
        proto.dataReceived(
            b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nearly"
        )
        exchange = handler.exchanges[0]
        self.assertEqual(exchange.request.upgrade, b"websocket")
        upstream = FakeTunnelEnd()
        exchange.upgrade(ResponseHead(101, Headers([(b"Sec-WebSocket-Accept", b"x")]), upgrade=b"websocket"), upstream)
        self.assertEqual(
            transport.value(),
            b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: x\r\n"
            b"Connection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        self.assertEqual(upstream.received, [b"early"])
        # back-pressure both ways: each transport is fed by the other end
        self.assertIs(transport.producer, upstream)
        self.assertIs(upstream.transport.producer, upstream.peer)
        proto.dataReceived(b"\x81\x05hello")
        self.assertEqual(upstream.received, [b"early", b"\x81\x05hello"])
        upstream.peer.write(b"from origin")
        self.assertTrue(transport.value().endswith(b"from origin"))
        proto.readConnectionLost()
        self.assertTrue(upstream.writeClosed)
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(upstream.closed)
