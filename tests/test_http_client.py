# -*- test-case-name: tests.test_http_client -*-
"""
Tests for the HTTP/1.1 client (upstream) connection, over C{StringTransport}.
"""

from __future__ import annotations

from typing import Any, List, Optional

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from linkerpy.protocol.http.client import HTTPClientProtocol
from linkerpy.protocol.http.errors import (
    BodyAborted,
    ConnectionReset,
    RequestBodyFailed,
    ResponseProtocolError,
    UpstreamError,
)
from linkerpy.protocol.http.headers import Headers
from linkerpy.protocol.http.message import RequestHead
from linkerpy.protocol.http.stream import BytesBody, ConnectionBody, collect
from tests.test_http_framing_cases import RESPONSE_CASES

ADDRESS = ("127.0.0.1", 8080)


class Owner:
    """
    Records what a connection tells its pool.
    """

    def __init__(self) -> None:
        self.events: List[str] = []

    def _connectionReady(self, conn: Any) -> None:
        self.events.append("ready")

    def _connectionReleased(self, conn: Any) -> None:
        self.events.append("released")

    def _connectionLost(self, conn: Any, reason: Failure, wasConnecting: bool) -> None:
        self.events.append("lost")

    def _connectionDetached(self, conn: Any) -> None:
        self.events.append("detached")

    def _watch(self, conn: Any) -> None:
        pass

    def _unwatch(self, conn: Any) -> None:
        pass


class Listener:
    def __init__(self) -> None:
        self.response: Any = None
        self.error: Optional[UpstreamError] = None

    def _responseReceived(self, response: Any) -> None:
        self.response = response

    def _requestFailed(self, error: UpstreamError) -> None:
        self.error = error


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


def get(target: bytes = b"/", method: bytes = b"GET", **kwargs: Any) -> RequestHead:
    return RequestHead(method, target, Headers([(b"Host", b"origin")]), **kwargs)


class ClientTestMixin:
    def connect(self) -> Any:
        self.owner = Owner()
        conn = HTTPClientProtocol(self.owner, ADDRESS)
        self.transport = StringTransport()
        conn.makeConnection(self.transport)
        return conn

    def send(self, conn: Any, head: Optional[RequestHead] = None, body: Any = None) -> Listener:
        listener = Listener()
        conn.request(head if head is not None else get(), body, listener)
        return listener


class ResponseTests(ClientTestMixin, SynchronousTestCase):
    """
    Reading responses.
    """

    def test_simpleExchange(self) -> None:
        """
        The request is serialised, the response parsed, and the connection
        released for reuse.
        """
        conn = self.connect()
        self.assertEqual(self.owner.events, ["ready"])
        listener = self.send(conn)
        self.assertEqual(self.transport.value(), b"GET / HTTP/1.1\r\nHost: origin\r\n\r\n")
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 5\r\n\r\nhello")
        self.assertEqual(listener.response.head.status, 200)
        self.assertEqual(list(listener.response.head.headers), [(b"X-A", b"1")])
        self.assertEqual(self.successResultOf(collect(listener.response.body)), b"hello")
        self.assertEqual(self.owner.events, ["ready", "released"])
        self.assertTrue(conn.idle)
        self.assertTrue(conn.reused)

    def test_streamedLengthBody(self) -> None:
        """
        A body arriving in pieces is streamed; the connection is released at
        its end.
        """
        conn = self.connect()
        listener = self.send(conn)
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nab")
        consumer = Consumer()
        listener.response.body.attach(consumer)
        self.assertEqual(self.owner.events, ["ready"])
        conn.dataReceived(b"cdef")
        self.assertEqual(b"".join(consumer.data), b"abcdef")
        self.assertIsNone(consumer.ended)
        self.assertEqual(self.owner.events, ["ready", "released"])

    def test_chunkedWithTrailers(self) -> None:
        """
        Chunked responses are decoded with their trailers.
        """
        conn = self.connect()
        listener = self.send(conn)
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        consumer = Consumer()
        listener.response.body.attach(consumer)
        conn.dataReceived(b"0\r\nX-T: 1\r\n\r\n")
        self.assertEqual(consumer.data, [b"abc"])
        self.assertEqual(list(consumer.ended), [(b"X-T", b"1")])
        self.assertEqual(self.owner.events, ["ready", "released"])

    def test_closeDelimited(self) -> None:
        """
        A body without length ends when the origin closes cleanly, and the
        connection is not reused.
        """
        conn = self.connect()
        listener = self.send(conn)
        conn.dataReceived(b"HTTP/1.1 200 OK\r\n\r\nsome")
        consumer = Consumer()
        listener.response.body.attach(consumer)
        conn.dataReceived(b" more")
        conn.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(b"".join(consumer.data), b"some more")
        self.assertIsNone(consumer.ended)
        self.assertEqual(self.owner.events, ["ready", "lost"])

    def test_closeDelimitedReset(self) -> None:
        """
        A reset during a close-delimited body is a truncation, not an end.
        """
        conn = self.connect()
        listener = self.send(conn)
        conn.dataReceived(b"HTTP/1.1 200 OK\r\n\r\nsome")
        consumer = Consumer()
        listener.response.body.attach(consumer)
        conn.connectionLost(Failure(ConnectionLost()))
        error = consumer.failure.value
        self.assertIsInstance(error, ConnectionReset)
        self.assertTrue(error.requestWritten)
        self.assertTrue(error.responseStarted)

    def test_notReusable(self) -> None:
        """
        HTTP/1.0 and C{Connection: close} responses close the connection.
        """
        for raw in [
            b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        ]:
            conn = self.connect()
            self.send(conn)
            conn.dataReceived(raw)
            self.assertTrue(self.transport.disconnecting, raw)
            self.assertEqual(self.owner.events, ["ready"])

    def test_headResponse(self) -> None:
        """
        A HEAD response has no body even with a length, and the connection
        is reused.
        """
        conn = self.connect()
        listener = self.send(conn, get(method=b"HEAD"))
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        self.assertEqual(listener.response.head.contentLength, 100)
        self.assertEqual(self.successResultOf(collect(listener.response.body)), b"")
        self.assertEqual(self.owner.events, ["ready", "released"])

    def test_interimResponsesSkipped(self) -> None:
        """
        100 and 103 responses are skipped.
        """
        conn = self.connect()
        listener = self.send(conn)
        conn.dataReceived(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n")
        self.assertIsNone(listener.response)
        conn.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertEqual(listener.response.head.status, 204)

    def test_responseCatalogue(self) -> None:
        """
        Malformed responses fail with L{ResponseProtocolError} (before the
        head) or abort the body (after it), and the connection is dropped.
        """
        failures = []
        for name, raw, ok in RESPONSE_CASES:
            conn = self.connect()
            listener = self.send(conn)
            conn.dataReceived(raw)
            if ok:
                if listener.response is None:
                    failures.append(f"{name}: not accepted ({listener.error})")
                continue
            if listener.error is not None:
                error = listener.error
            elif listener.response is not None:
                consumer = Consumer()
                listener.response.body.attach(consumer)
                error = consumer.failure.value if consumer.failure is not None else None
            else:
                error = None
            if not isinstance(error, ResponseProtocolError) or not error.responseStarted or not error.requestWritten:
                failures.append(f"{name}: {error!r}")
            elif not self.transport.disconnected:
                failures.append(f"{name}: connection not aborted")
        self.assertEqual(failures, [])

    def test_unexpected101(self) -> None:
        """
        A 101 to a request that did not ask to upgrade is a protocol error.
        """
        conn = self.connect()
        listener = self.send(conn)
        conn.dataReceived(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n")
        self.assertIsInstance(listener.error, ResponseProtocolError)

    def test_upgrade(self) -> None:
        """
        A 101 to an upgrade request hands out a tunnel end with the bytes
        that followed the head, and detaches the connection from the pool.
        """
        conn = self.connect()
        listener = self.send(conn, get(upgrade=b"websocket"))
        self.assertIn(b"Connection: upgrade\r\nUpgrade: websocket\r\n", self.transport.value())
        conn.dataReceived(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nhi")
        response = listener.response
        self.assertEqual(response.head.upgrade, b"websocket")
        self.assertEqual(self.owner.events, ["ready", "detached"])
        received: List[bytes] = []

        class Peer:
            def write(self, data: bytes) -> None:
                received.append(data)

            def loseWriteConnection(self) -> None:
                received.append(b"<eof>")

            def loseConnection(self) -> None:
                received.append(b"<closed>")

        response.tunnel.setPeer(Peer())
        conn.dataReceived(b" there")
        conn.readConnectionLost()
        self.assertEqual(received, [b"hi", b" there", b"<eof>"])

    def test_unsolicitedBytes(self) -> None:
        """
        Bytes from the origin on an idle connection drop it.
        """
        conn = self.connect()
        conn.dataReceived(b"HTTP/1.1 200 OK\r\n\r\n")
        self.assertTrue(self.transport.disconnected)

    def test_bodyBackPressure(self) -> None:
        """
        Pausing the response body pauses the upstream transport; aborting it
        drops the connection.
        """
        conn = self.connect()
        listener = self.send(conn)
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nab")
        body = listener.response.body
        body.attach(Consumer())
        body.pause()
        self.assertEqual(self.transport.producerState, "paused")
        body.resume()
        self.assertEqual(self.transport.producerState, "producing")
        body.abort()
        self.assertTrue(self.transport.disconnected)


class FailureTests(ClientTestMixin, SynchronousTestCase):
    """
    What the listener is told when things go wrong.
    """

    def test_lostBeforeAnyResponse(self) -> None:
        """
        Written but nothing received: C{requestWritten} and not
        C{responseStarted}.
        """
        conn = self.connect()
        listener = self.send(conn)
        conn.connectionLost(Failure(ConnectionLost()))
        error = listener.error
        self.assertIsInstance(error, ConnectionReset)
        self.assertTrue(error.requestWritten)
        self.assertFalse(error.responseStarted)
        self.assertEqual(error.address, ADDRESS)

    def test_lostDuringHead(self) -> None:
        """
        Part of a head received: C{responseStarted}.
        """
        conn = self.connect()
        listener = self.send(conn)
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-")
        conn.connectionLost(Failure(ConnectionDone()))
        self.assertIsInstance(listener.error, ConnectionReset)
        self.assertTrue(listener.error.responseStarted)

    def test_lostDuringBody(self) -> None:
        """
        A connection lost during a length-delimited body aborts the body.
        """
        conn = self.connect()
        listener = self.send(conn)
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        consumer = Consumer()
        listener.response.body.attach(consumer)
        conn.connectionLost(Failure(ConnectionDone()))
        self.assertIsInstance(consumer.failure.value, ConnectionReset)
        self.assertTrue(consumer.failure.value.responseStarted)

    def test_staleConnection(self) -> None:
        """
        A request on a connection already closing fails without writing.
        """
        conn = self.connect()
        self.transport.loseConnection()
        listener = self.send(conn)
        self.assertEqual(self.transport.value(), b"")
        self.assertIsInstance(listener.error, ConnectionReset)
        self.assertFalse(listener.error.requestWritten)
        self.assertFalse(listener.error.responseStarted)

    def test_describe(self) -> None:
        """
        Errors describe the endpoint.
        """
        error = ConnectionReset(ADDRESS, True, False, None, "before any response")
        self.assertEqual(str(error), "connection closed by 127.0.0.1:8080: before any response")
        self.assertFalse(error.retrySafe)


class RequestBodyTests(ClientTestMixin, SynchronousTestCase):
    """
    Sending request bodies.
    """

    def test_lengthBody(self) -> None:
        """
        A Content-Length body is written raw after the head.
        """
        conn = self.connect()
        self.send(conn, get(method=b"POST", contentLength=3), BytesBody(b"abc"))
        self.assertEqual(
            self.transport.value(), b"POST / HTTP/1.1\r\nHost: origin\r\nContent-Length: 3\r\n\r\nabc"
        )

    def test_chunkedBodyStreamed(self) -> None:
        """
        A chunked body is re-chunked as it streams, with back-pressure: the
        source is the transport's producer until it ends.
        """
        conn = self.connect()

        class Owner2:
            def _bodyPause(self, s: Any) -> None:
                pass

            def _bodyResume(self, s: Any) -> None:
                pass

            def _bodyAbort(self, s: Any, r: Any) -> None:
                pass

            def _bodyAttached(self, s: Any) -> None:
                pass

        source = ConnectionBody(Owner2(), None)
        listener = self.send(conn, get(method=b"POST", chunked=True), source)
        self.assertIs(self.transport.producer, source)
        source._deliver(b"abc")
        source._finish(Headers([(b"X-T", b"1")]))
        self.assertIsNone(self.transport.producer)
        self.assertTrue(
            self.transport.value().endswith(b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n")
        )
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(listener.response.head.status, 200)
        self.assertEqual(self.owner.events, ["ready", "released"])

    def test_bodyFailure(self) -> None:
        """
        A request body that fails aborts the upstream connection and fails
        the request with L{RequestBodyFailed}.
        """
        conn = self.connect()

        class Source:
            finished = False
            consumer: Any = None

            def attach(self, consumer: Any) -> None:
                self.consumer = consumer

            def pauseProducing(self) -> None:
                pass

            def resumeProducing(self) -> None:
                pass

            def stopProducing(self) -> None:
                pass

            def abort(self) -> None:
                pass

        source = Source()
        listener = self.send(conn, get(method=b"POST", contentLength=10), source)
        source.consumer.dataReceived(b"abc")
        source.consumer.bodyAborted(Failure(BodyAborted("client gone")))
        self.assertIsInstance(listener.error, RequestBodyFailed)
        self.assertTrue(listener.error.requestWritten)
        self.assertTrue(self.transport.disconnected)

    def test_earlyResponse(self) -> None:
        """
        A response arriving before the request body was sent stops (aborts)
        the body and the connection is not reused.
        """
        conn = self.connect()

        class Source:
            finished = False
            consumer: Any = None

            def attach(self, consumer: Any) -> None:
                self.consumer = consumer

            def pauseProducing(self) -> None:
                pass

            def resumeProducing(self) -> None:
                pass

            def stopProducing(self) -> None:
                pass

            def abort(self) -> None:
                self.aborted = True

        source = Source()
        source.aborted = False
        listener = self.send(conn, get(method=b"POST", contentLength=1000), source)
        conn.dataReceived(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(listener.response.head.status, 413)
        source.consumer.dataReceived(b"late")
        self.assertNotIn(b"late", self.transport.value())
        self.assertTrue(source.aborted)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.owner.events, ["ready"])
