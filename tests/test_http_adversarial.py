# -*- test-case-name: tests.test_http_adversarial -*-
"""
The adversarial suite over real sockets on 127.0.0.1: a recording origin,
the server with the passthrough handler and a pool in front of it, and raw
clients sending hostile bytes.  For each strict rule the client's status line
is checked I{and} that the origin saw nothing.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, List, Optional

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import ClientCreator, Factory, Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, TestCase
from zope.interface import implementer

from linkerpy.protocol.http.passthrough import PassthroughHandler
from linkerpy.protocol.http.pool import HTTPConnectionPool
from linkerpy.protocol.http.server import HTTPServerFactory, ServerTimeouts
from tests.test_http_framing_cases import LIMIT_CASES, REQUEST_CASES, RESPONSE_CASES

TIMEOUT = 60.0
_CL = re.compile(rb"\r\ncontent-length: *([0-9]+)\r\n", re.I)


class OriginProtocol(Protocol):
    """
    Records every byte; by default answers each request with its target.
    """

    def connectionMade(self) -> None:
        self.received = b""
        self.buffer = b""
        self.tunnel = False
        self.factory.connections.append(self)
        self.factory.behaviour.connected(self)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        self.factory.behaviour.data(self, data)

    def connectionLost(self, reason: Any) -> None:
        self.factory.lost += 1


class Answer:
    """
    Origin behaviour: answer each complete request (CL or chunked body) with
    a 200 whose body is the request line; echo after an upgrade.
    """

    def connected(self, proto: OriginProtocol) -> None:
        pass

    def data(self, proto: OriginProtocol, data: bytes) -> None:
        if proto.tunnel:
            proto.transport.write(data)
            return
        proto.buffer += data
        while True:
            buf = proto.buffer
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = buf[: end + 4]
            lower = head.lower()
            if b"\r\ntransfer-encoding: chunked\r\n" in lower:
                stop = buf.find(b"0\r\n\r\n", end + 4)
                if stop < 0:
                    return
                rest = buf[stop + 5 :]
            else:
                m = _CL.search(head)
                length = int(m.group(1)) if m else 0
                if len(buf) < end + 4 + length:
                    return
                rest = buf[end + 4 + length :]
            proto.buffer = rest
            line = head.split(b"\r\n", 1)[0]
            if b"\r\nupgrade: websocket\r\n" in lower:
                proto.transport.write(
                    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
                )
                proto.tunnel = True
                if rest:
                    proto.transport.write(rest)
                return
            self.answer(proto, line, head)

    def answer(self, proto: OriginProtocol, line: bytes, head: bytes) -> None:
        proto.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(line), line))


class Raw(Answer):
    """
    Origin behaviour: answer with fixed bytes, then optionally abort (RST,
    dropping anything unsent) or close (FIN, after flushing).
    """

    def __init__(self, response: bytes, abort: bool = False, close: bool = False) -> None:
        self.response = response
        self.abort = abort
        self.close = close

    def answer(self, proto: OriginProtocol, line: bytes, head: bytes) -> None:
        proto.transport.write(self.response)
        if self.abort:
            proto.transport.abortConnection()
        elif self.close:
            proto.transport.loseConnection()


class Early(Answer):
    """
    Origin behaviour: answer 413 as soon as a head arrives, without reading
    the body.
    """

    def data(self, proto: OriginProtocol, data: bytes) -> None:
        proto.buffer += data
        if b"\r\n\r\n" in proto.buffer and not proto.tunnel:
            proto.tunnel = True  # answered; ignore the rest
            proto.transport.write(b"HTTP/1.1 413 Too Large\r\nContent-Length: 4\r\n\r\nbig!")


class Stream(Answer):
    """
    Origin behaviour: stream C{size} bytes with a Content-Length, respecting
    back-pressure (a push producer).
    """

    def __init__(self, size: int, chunk: int = 65536) -> None:
        self.size = size
        self.chunk = chunk

    def answer(self, proto: OriginProtocol, line: bytes, head: bytes) -> None:
        proto.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % self.size)
        producer = _Producer(proto.transport, self.size, self.chunk)
        proto.transport.registerProducer(producer, True)
        producer.resumeProducing()


@implementer()
class _Producer:
    def __init__(self, transport: Any, size: int, chunk: int) -> None:
        self.transport = transport
        self.left = size
        self.chunk = b"z" * chunk
        self.paused = False

    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and self.left > 0:
            n = min(self.left, len(self.chunk))
            self.left -= n
            self.transport.write(self.chunk[:n])
        if self.left <= 0:
            self.transport.unregisterProducer()

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        self.left = 0


class OriginFactory(Factory):
    protocol = OriginProtocol

    def __init__(self, behaviour: Any) -> None:
        self.behaviour = behaviour
        self.connections: List[OriginProtocol] = []
        self.lost = 0

    def received(self) -> bytes:
        return b"".join(c.received for c in self.connections)


class RawClient(Protocol):
    """
    Sends raw bytes and collects what comes back.
    """

    def __init__(self) -> None:
        self.data = b""
        self.closed: Deferred[bytes] = Deferred()
        self.waiters: List[Any] = []

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        self._check()

    def connectionLost(self, reason: Any) -> None:
        self.closed.callback(self.data)
        for predicate, d in self.waiters:
            if not d.called:
                d.callback(self.data)

    def _check(self) -> None:
        for predicate, d in list(self.waiters):
            if not d.called and predicate(self.data):
                self.waiters.remove((predicate, d))
                d.callback(self.data)

    def waitFor(self, predicate: Callable[[bytes], bool]) -> "Deferred[bytes]":
        d: Deferred[bytes] = Deferred()
        self.waiters.append((predicate, d))
        self._check()
        return d.addTimeout(TIMEOUT, reactor)


def completeResponses(n: int) -> Callable[[bytes], bool]:
    """
    A predicate: C{n} complete Content-Length responses received.
    """

    def check(data: bytes) -> bool:
        count = 0
        pos = 0
        while True:
            end = data.find(b"\r\n\r\n", pos)
            if end < 0:
                return False
            m = _CL.search(data[pos : end + 4])
            length = int(m.group(1)) if m else 0
            if len(data) < end + 4 + length:
                return False
            count += 1
            pos = end + 4 + length
            if count >= n:
                return True

    return check


def rssKB() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class ProxyTestMixin:
    timeouts = ServerTimeouts()

    def startProxy(self, behaviour: Any = None, timeouts: Optional[ServerTimeouts] = None) -> OriginFactory:
        origin = OriginFactory(behaviour if behaviour is not None else Answer())
        originPort = reactor.listenTCP(0, origin, interface="127.0.0.1")
        self.addCleanup(originPort.stopListening)
        self.pool = HTTPConnectionPool(reactor, "127.0.0.1", originPort.getHost().port)
        self.addCleanup(self.pool.close)
        self.server = HTTPServerFactory(
            PassthroughHandler(self.pool), clock=reactor, timeouts=timeouts or self.timeouts
        )
        port = reactor.listenTCP(0, self.server, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(self._closeConnections)
        self.port = port.getHost().port
        return origin

    def _closeConnections(self) -> Deferred:
        for proto in list(self.server.protocols):
            proto.transport.abortConnection()
        return self.server.drain()

    @inlineCallbacks
    def connect(self) -> Any:
        client = yield ClientCreator(reactor, RawClient).connectTCP("127.0.0.1", self.port, timeout=30)
        self.addCleanup(lambda: client.transport.abortConnection() if client.transport.connected else None)
        return client

    @inlineCallbacks
    def send(self, raw: bytes) -> Any:
        """
        Send C{raw} and return everything received until the server closes.
        """
        client = yield self.connect()
        client.transport.write(raw)
        data = yield client.closed.addTimeout(TIMEOUT, reactor)
        return data


class StrictRuleTests(ProxyTestMixin, TestCase):
    """
    Hostile requests are refused before anything reaches the origin.
    """

    timeout = 300

    @inlineCallbacks
    def test_rejectedRequests(self) -> None:
        """
        Every malformed request of the catalogue gets its status and the
        origin receives nothing (for errors found in a chunked body, at least
        never a complete request).
        """
        origin = self.startProxy()
        failures = []
        for name, raw, status in REQUEST_CASES + LIMIT_CASES:
            if status == 200:
                continue
            before = origin.received()
            data = yield self.send(raw)
            if not data.startswith(b"HTTP/1.1 %d " % status):
                failures.append(f"{name}: client got {data[:40]!r}, expected {status}")
            seen = origin.received()[len(before) :]
            if seen and (b"0\r\n\r\n" in seen or b"Transfer-Encoding: chunked" not in seen):
                failures.append(f"{name}: origin saw {seen[:80]!r}")
        self.assertEqual(failures, [])

    @inlineCallbacks
    def test_acceptedRequests(self) -> None:
        """
        The catalogue's valid requests are forwarded (re-serialised) and
        answered.
        """
        origin = self.startProxy()
        failures = []
        for name, raw, status in REQUEST_CASES:
            if status != 200:
                continue
            client = yield self.connect()
            client.transport.write(raw)
            data = yield client.waitFor(lambda d: b"\r\n\r\n" in d and completeResponses(1)(d.split(b"HTTP/1.1 200", 1)[-1] if b"100 Continue" in d else d))
            client.transport.loseConnection()
            if b"HTTP/1.1 200 OK" not in data:
                failures.append(f"{name}: {data[:60]!r}")
        self.assertEqual(failures, [])

    @inlineCallbacks
    def test_normalisation(self) -> None:
        """
        The origin sees origin-form targets, no hop-by-hop fields (including
        those named by Connection), and trimmed values.
        """
        origin = self.startProxy()
        client = yield self.connect()
        client.transport.write(
            b"GET http://example.com/p?q HTTP/1.1\r\nHost: example.com\r\nConnection: x-secret\r\n"
            b"X-Secret: 1\r\nKeep-Alive: 3\r\nProxy-Authorization: p\r\nX-Kept:   v  \r\n\r\n"
        )
        yield client.waitFor(completeResponses(1))
        self.assertEqual(
            origin.received(), b"GET /p?q HTTP/1.1\r\nHost: example.com\r\nX-Kept: v\r\n\r\n"
        )

    @inlineCallbacks
    def test_malformedResponses(self) -> None:
        """
        Malformed origin responses become 502 for the client.
        """
        failures = []
        for name, raw, ok in RESPONSE_CASES:
            if ok:
                continue
            self.startProxy(Raw(raw))
            data = yield self.send(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            if not data.startswith(b"HTTP/1.1 502 "):
                failures.append(f"{name}: {data[:60]!r}")
        self.assertEqual(failures, [])


class TruncationTests(ProxyTestMixin, TestCase):
    """
    Upstream failures after the response started.
    """

    @inlineCallbacks
    def test_closeMidBodyLength(self) -> None:
        """
        An origin closing in the middle of a Content-Length body leaves the
        client with a short body and a closed connection.
        """
        self.startProxy(Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"a" * 10, close=True))
        data = yield self.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertIn(b"Content-Length: 1000\r\n", data)
        self.assertEqual(data.split(b"\r\n\r\n", 1)[1], b"a" * 10)

    @inlineCallbacks
    def test_closeMidBodyChunked(self) -> None:
        """
        A chunked response cut short upstream never gets its last chunk
        downstream.
        """
        self.startProxy(Raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", close=True))
        data = yield self.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertIn(b"hello", data)
        self.assertNotIn(b"0\r\n\r\n", data)

    @inlineCallbacks
    def test_resetMidBody(self) -> None:
        """
        An origin connection reset after part of a chunked body reached the
        client truncates the client's response the same way.
        """
        origin = self.startProxy(Raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"))
        client = yield self.connect()
        client.transport.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        yield client.waitFor(lambda d: b"hello" in d)
        origin.connections[0].transport.abortConnection()
        data = yield client.closed.addTimeout(TIMEOUT, reactor)
        self.assertNotIn(b"0\r\n\r\n", data)

    @inlineCallbacks
    def test_resetBeforeResponse(self) -> None:
        """
        An origin that closes without answering gives the client a 502.
        """
        self.startProxy(Raw(b"", abort=True))
        data = yield self.send(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 502 "))

    @inlineCallbacks
    def test_originDown(self) -> None:
        """
        A refused upstream connection gives the client a 502.
        """
        self.startProxy()
        self.pool.port = 1
        self.pool.address = ("127.0.0.1", 1)
        data = yield self.send(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 502 "))
        self.assertIn(b"l5d-err: connection refused", data)


class ConnectionBehaviourTests(ProxyTestMixin, TestCase):
    """
    Keep-alive, pipelining, streaming, timeouts and upgrades end to end.
    """

    @inlineCallbacks
    def test_pipelining(self) -> None:
        """
        Pipelined requests are answered in order over one upstream
        connection.
        """
        origin = self.startProxy()
        client = yield self.connect()
        client.transport.write(b"".join(b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % i for i in range(5)))
        data = yield client.waitFor(completeResponses(5))
        bodies = re.findall(rb"GET /([0-9]) HTTP/1.1", data)
        self.assertEqual(bodies, [b"0", b"1", b"2", b"3", b"4"])
        self.assertEqual(len(origin.connections), 1)

    @inlineCallbacks
    def test_streamedRequestBody(self) -> None:
        """
        A chunked request body sent in pieces reaches the origin.
        """
        origin = self.startProxy()
        client = yield self.connect()
        client.transport.write(b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        yield deferLater(reactor, 0.05, lambda: None)
        client.transport.write(b"6\r\n world\r\n0\r\n\r\n")
        yield client.waitFor(completeResponses(1))
        self.assertIn(b"5\r\nhello\r\n", origin.received())
        self.assertTrue(origin.received().endswith(b"6\r\n world\r\n0\r\n\r\n"))

    @inlineCallbacks
    def test_earlyOriginResponse(self) -> None:
        """
        An origin answering before reading the request body: the client gets
        the answer with C{Connection: close}, and the rest of its body is
        not forwarded.
        """
        origin = self.startProxy(Early())
        client = yield self.connect()
        client.transport.write(b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\n\r\n" + b"a" * 1000)
        data = yield client.waitFor(completeResponses(1))
        self.assertTrue(data.startswith(b"HTTP/1.1 413 Too Large\r\n"))
        self.assertIn(b"Connection: close\r\n", data)
        yield client.closed.addTimeout(TIMEOUT, reactor)
        self.assertLess(len(origin.received()), 1000000)

    @inlineCallbacks
    def test_slowloris(self) -> None:
        """
        A head trickling in past the head timeout gets 408 and is closed,
        and the origin sees nothing.
        """
        origin = self.startProxy(timeouts=ServerTimeouts(headTimeout=1.0))
        client = yield self.connect()
        client.transport.write(b"GET / HTTP/1.1\r\n")
        for i in range(3):
            yield deferLater(reactor, 0.4, lambda: None)
            if not client.transport.connected:
                break
            client.transport.write(b"X-%d: v\r\n" % i)
        data = yield client.closed.addTimeout(TIMEOUT, reactor)
        self.assertTrue(data.startswith(b"HTTP/1.1 408 "))
        self.assertEqual(origin.received(), b"")

    @inlineCallbacks
    def test_largeBodySlowReaderBounded(self) -> None:
        """
        50 MB streamed to a slow reader keeps memory bounded: the proxy stops
        reading from the origin while the client is not reading.
        """
        size = 50 * 1024 * 1024
        self.startProxy(Stream(size))
        client = yield self.connect()
        baseline = rssKB()
        peak = [baseline]
        received = [0]

        def dataReceived(data: bytes) -> None:
            received[0] += len(data)
            client.transport.pauseProducing()
            peak[0] = max(peak[0], rssKB())
            reactor.callLater(0.001, client.transport.resumeProducing)

        client.dataReceived = dataReceived
        client.transport.write(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n")
        deadline = reactor.seconds() + 240
        while received[0] < size + 30 and reactor.seconds() < deadline:
            yield deferLater(reactor, 0.05, lambda: None)
        self.assertGreaterEqual(received[0], size)
        growthMB = (peak[0] - baseline) / 1024.0
        self.assertLess(growthMB, 25, f"RSS grew by {growthMB:.1f} MB while streaming 50 MB")

    @inlineCallbacks
    def test_websocketEcho(self) -> None:
        """
        After a 101 the connection is a tunnel: bytes are echoed by the origin
        through it, and a client half-close propagates.
        """
        origin = self.startProxy()
        client = yield self.connect()
        client.transport.write(
            b"GET /chat HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        data = yield client.waitFor(lambda d: b"\r\n\r\n" in d)
        self.assertTrue(data.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"))
        client.transport.write(b"\x81\x05hello")
        data = yield client.waitFor(lambda d: d.endswith(b"\x81\x05hello"))
        big = os.urandom(300000)
        client.transport.write(big)
        data = yield client.waitFor(lambda d: d.endswith(big))
        self.assertIn(b"Sec-WebSocket-Key", origin.received())
        client.transport.loseConnection()
        yield client.closed.addTimeout(TIMEOUT, reactor)
        deadline = reactor.seconds() + TIMEOUT
        while origin.lost < 1 and reactor.seconds() < deadline:
            yield deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(origin.lost, 1)


class TLSOriginTests(ProxyTestMixin, TestCase):
    """
    The pool speaks TLS to an origin when given a client connection creator.
    """

    @inlineCallbacks
    def test_tlsOrigin(self) -> None:
        """
        Requests reach a TLS origin through the pool, on one reused
        connection; a wrong server name fails the handshake with nothing
        written.
        """
        try:
            import trustme
            from twisted.internet import ssl
        except ImportError:
            raise SkipTest("trustme or pyOpenSSL is not installed")

        from linkerpy.protocol.http.errors import TLSHandshakeFailed
        from linkerpy.protocol.http.headers import Headers
        from linkerpy.protocol.http.message import RequestHead
        from linkerpy.protocol.http.stream import collect

        ca = trustme.CA()
        cert = ca.issue_cert("origin.test")
        serverOptions = ssl.PrivateCertificate.loadPEM(
            cert.private_key_pem.bytes() + cert.cert_chain_pems[0].bytes()
        ).options()
        origin = OriginFactory(Answer())
        port = reactor.listenSSL(0, origin, serverOptions, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        trust = ssl.Certificate.loadPEM(ca.cert_pem.bytes())
        creator = ssl.optionsForClientTLS("origin.test", trustRoot=trust)
        pool = HTTPConnectionPool(reactor, "127.0.0.1", port.getHost().port, tlsCreator=creator)
        self.addCleanup(pool.close)
        for path in (b"/a", b"/b"):
            response = yield pool.request(RequestHead(b"GET", path, Headers([(b"Host", b"origin.test")]))).addTimeout(
                TIMEOUT, reactor
            )
            body = yield collect(response.body)
            self.assertEqual(body, b"GET " + path + b" HTTP/1.1")
        self.assertEqual(len(origin.connections), 1)
        wrong = HTTPConnectionPool(
            reactor, "127.0.0.1", port.getHost().port, tlsCreator=ssl.optionsForClientTLS("other.test", trustRoot=trust)
        )
        self.addCleanup(wrong.close)
        before = origin.received()
        error = yield self.assertFailure(
            wrong.request(RequestHead(b"GET", b"/", Headers([(b"Host", b"x")]))).addTimeout(TIMEOUT, reactor),
            TLSHandshakeFailed,
        )
        self.assertFalse(error.requestWritten)
        self.assertEqual(origin.received(), before)
