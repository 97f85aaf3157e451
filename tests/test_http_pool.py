# -*- test-case-name: tests.test_http_pool -*-
"""
Tests for the upstream connection pool, over C{MemoryReactorClock} and
C{StringTransport}.
"""

from __future__ import annotations

from typing import Any, Tuple

from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from linkerpy.protocol.http.errors import (
    ConnectionFailed,
    ConnectionRefused,
    ConnectionReset,
    ConnectTimeout,
    PoolClosed,
    PoolExhausted,
    TLSHandshakeFailed,
)
from linkerpy.protocol.http.headers import Headers
from linkerpy.protocol.http.message import RequestHead
from linkerpy.protocol.http.pool import HTTPConnectionPool, PoolSettings
from linkerpy.protocol.http.stream import collect
from linkerpy.telemetry.metrics import MetricsTree

def _tls() -> Any:
    try:
        from twisted.internet.ssl import optionsForClientTLS
    except ImportError:
        raise SkipTest("pyOpenSSL is not installed")
    return optionsForClientTLS


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def get(target: bytes = b"/") -> RequestHead:
    return RequestHead(b"GET", target, Headers([(b"Host", b"origin")]))


class PoolTestMixin:
    def makePool(self, **kwargs: Any) -> HTTPConnectionPool:
        self.reactor = MemoryReactorClock()
        self.metrics = MetricsTree()
        return HTTPConnectionPool(self.reactor, "10.0.0.1", 80, metrics=self.metrics, **kwargs)

    def establish(self, index: int = -1) -> Tuple[Any, StringTransport]:
        """
        Complete the connection attempt number C{index}.
        """
        host, port, factory, timeout, bindAddress = self.reactor.tcpClients[index]
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        return proto, transport

    def respond(self, proto: Any, raw: bytes = OK) -> None:
        proto.dataReceived(raw)

    def gauge(self, name: str) -> Any:
        return self.metrics.find(name).metric.value


class ReuseTests(PoolTestMixin, SynchronousTestCase):
    """
    Connections are opened on demand and reused.
    """

    def test_reuse(self) -> None:
        """
        A second request reuses the idle connection.
        """
        pool = self.makePool()
        d = pool.request(get(b"/1"))
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertEqual(self.reactor.tcpClients[0][:2], ("10.0.0.1", 80))
        proto, transport = self.establish()
        self.assertEqual(transport.value(), b"GET /1 HTTP/1.1\r\nHost: origin\r\n\r\n")
        self.respond(proto)
        response = self.successResultOf(d)
        self.assertEqual(self.successResultOf(collect(response.body)), b"ok")
        self.assertEqual(pool.idleCount, 1)
        transport.clear()
        d = pool.request(get(b"/2"))
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertEqual(transport.value(), b"GET /2 HTTP/1.1\r\nHost: origin\r\n\r\n")
        self.respond(proto)
        self.successResultOf(d)
        self.assertEqual(self.metrics.counter("connects").value, 1)
        self.assertEqual(self.gauge("connections"), 1)
        self.assertEqual(self.gauge("idle"), 1)

    def test_concurrentRequestsOpenConnections(self) -> None:
        """
        Without C{maxSize}, concurrent requests each get a connection.
        """
        pool = self.makePool()
        pool.request(get())
        pool.request(get())
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_notReusedAfterClose(self) -> None:
        """
        A connection the origin closes after its response is not reused.
        """
        pool = self.makePool()
        d = pool.request(get())
        proto, transport = self.establish()
        self.respond(proto, b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        self.successResultOf(d)
        proto.connectionLost(Failure(ConnectionDone()))
        pool.request(get())
        self.assertEqual(len(self.reactor.tcpClients), 2)
        self.assertEqual(self.metrics.counter("closes").value, 1)

    def test_idleClosedByOrigin(self) -> None:
        """
        An idle connection the origin closes is dropped from the pool.
        """
        pool = self.makePool()
        d = pool.request(get())
        proto, transport = self.establish()
        self.respond(proto)
        self.successResultOf(d)
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(pool.idleCount, 0)
        self.assertEqual(self.gauge("connections"), 0)
        pool.request(get())
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_settingsKeywords(self) -> None:
        """
        Settings may be given as a L{PoolSettings} and overridden by keyword.
        """
        reactor = MemoryReactorClock()
        pool = HTTPConnectionPool(reactor, "h", 1, PoolSettings(maxSize=3), maxWaiters=2)
        self.assertEqual((pool.settings.maxSize, pool.settings.maxWaiters), (3, 2))


class LimitTests(PoolTestMixin, SynchronousTestCase):
    """
    maxSize and maxWaiters.
    """

    def test_waitForConnection(self) -> None:
        """
        At C{maxSize}, requests wait and are served in order as connections
        free up.
        """
        pool = self.makePool(maxSize=1)
        d1 = pool.request(get(b"/1"))
        d2 = pool.request(get(b"/2"))
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertEqual(self.gauge("waiters"), 1)
        proto, transport = self.establish()
        transport.clear()
        self.respond(proto)
        self.successResultOf(d1)
        self.assertEqual(transport.value(), b"GET /2 HTTP/1.1\r\nHost: origin\r\n\r\n")
        self.respond(proto)
        self.successResultOf(d2)

    def test_maxWaiters(self) -> None:
        """
        Beyond C{maxWaiters} requests fail fast, unwritten.
        """
        pool = self.makePool(maxSize=1, maxWaiters=1)
        pool.request(get())
        pool.request(get())
        error = self.failureResultOf(pool.request(get()), PoolExhausted).value
        self.assertFalse(error.requestWritten)
        self.assertEqual(error.address, ("10.0.0.1", 80))
        self.assertEqual(self.metrics.counter("exhausted").value, 1)

    def test_waiterServedWhenConnectionLost(self) -> None:
        """
        When a connection closes, a waiter gets a new one.
        """
        pool = self.makePool(maxSize=1)
        d1 = pool.request(get())
        d2 = pool.request(get())
        proto, transport = self.establish()
        proto.connectionLost(Failure(ConnectionLost()))
        self.failureResultOf(d1, ConnectionReset)
        self.assertEqual(len(self.reactor.tcpClients), 2)
        proto2, transport2 = self.establish()
        self.respond(proto2)
        self.successResultOf(d2)


class ConnectFailureTests(PoolTestMixin, SynchronousTestCase):
    """
    Connection establishment failures.
    """

    def test_refused(self) -> None:
        """
        A refused connection fails the request with L{ConnectionRefused}.
        """
        pool = self.makePool()
        d = pool.request(get())
        factory = self.reactor.tcpClients[0][2]
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        error = self.failureResultOf(d, ConnectionRefused).value
        self.assertFalse(error.requestWritten)
        self.assertEqual(self.metrics.counter("connect_failures").value, 1)
        self.assertEqual(pool.size, 0)

    def test_timeout(self) -> None:
        """
        A connection not established within C{connectTimeout} fails with
        L{ConnectTimeout}.
        """
        pool = self.makePool(connectTimeout=2.0)
        d = pool.request(get())
        self.reactor.advance(1.9)
        self.assertNoResult(d)
        self.reactor.advance(0.2)
        error = self.failureResultOf(d, ConnectTimeout).value
        self.assertEqual(error.timeoutMs, 2000)
        self.assertEqual(pool.size, 0)

    def test_tlsHandshakeFailure(self) -> None:
        """
        With TLS, the connection is only ready after the handshake; a
        failure before that is L{TLSHandshakeFailed}, nothing written.
        """
        optionsForClientTLS = _tls()
        from twisted.protocols.tls import TLSMemoryBIOFactory

        reactor = MemoryReactorClock()
        pool = HTTPConnectionPool(reactor, "h", 443, tlsCreator=optionsForClientTLS("h"))
        d = pool.request(get())
        factory = reactor.tcpClients[0][2]
        self.assertIsInstance(factory, TLSMemoryBIOFactory)
        proto = factory.wrappedFactory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        self.assertEqual(transport.value(), b"")
        proto.connectionLost(Failure(ConnectionLost("handshake failure")))
        error = self.failureResultOf(d, TLSHandshakeFailed).value
        self.assertFalse(error.requestWritten)

    def test_tlsReadyAfterHandshake(self) -> None:
        """
        The request is written once the TLS handshake completes.
        """
        optionsForClientTLS = _tls()
        reactor = MemoryReactorClock()
        pool = HTTPConnectionPool(reactor, "h", 443, tlsCreator=optionsForClientTLS("h"))
        pool.request(get())
        proto = reactor.tcpClients[0][2].wrappedFactory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.handshakeCompleted()
        self.assertTrue(transport.value().startswith(b"GET / HTTP/1.1"))


class ExpiryTests(PoolTestMixin, SynchronousTestCase):
    """
    Idle and session timers.
    """

    def idleConnection(self, pool: HTTPConnectionPool) -> Tuple[Any, StringTransport]:
        d = pool.request(get())
        proto, transport = self.establish()
        self.respond(proto)
        self.successResultOf(d)
        return proto, transport

    def test_idleTimeout(self) -> None:
        """
        A connection idle past C{idleTimeout} is closed.
        """
        pool = self.makePool(idleTimeout=2.0)
        proto, transport = self.idleConnection(pool)
        self.reactor.advance(1.5)
        self.assertFalse(transport.disconnecting)
        self.reactor.advance(1.0)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(pool.idleCount, 0)

    def test_minSizeKept(self) -> None:
        """
        C{minSize} connections survive C{idleTimeout}, but not
        C{sessionIdleTimeout}.
        """
        pool = self.makePool(idleTimeout=2.0, minSize=1)
        proto, transport = self.idleConnection(pool)
        self.reactor.advance(10)
        self.assertFalse(transport.disconnecting)
        pool = self.makePool(sessionIdleTimeout=2.0, minSize=1)
        proto, transport = self.idleConnection(pool)
        self.reactor.advance(2.5)
        self.assertTrue(transport.disconnecting)

    def test_lifeTime(self) -> None:
        """
        A connection older than C{lifeTime} is closed instead of reused.
        """
        pool = self.makePool(lifeTime=5.0)
        d = pool.request(get())
        proto, transport = self.establish()
        self.reactor.advance(6)
        self.respond(proto)
        self.successResultOf(d)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(pool.idleCount, 0)


class RetryTests(PoolTestMixin, SynchronousTestCase):
    """
    The stale-connection retry.
    """

    def test_staleConnectionRetried(self) -> None:
        """
        A reused connection found closed before anything was written is
        replaced transparently, once.
        """
        pool = self.makePool()
        d = pool.request(get())
        proto, transport = self.establish()
        self.respond(proto)
        self.successResultOf(d)
        transport.loseConnection()  # the origin's FIN is on its way
        d = pool.request(get(b"/again"))
        self.assertEqual(len(self.reactor.tcpClients), 2)
        proto.connectionLost(Failure(ConnectionDone()))
        proto2, transport2 = self.establish()
        self.assertEqual(transport2.value(), b"GET /again HTTP/1.1\r\nHost: origin\r\n\r\n")
        self.respond(proto2)
        self.successResultOf(d)
        self.assertEqual(self.metrics.counter("stale_retries").value, 1)

    def test_noRetryAfterWrite(self) -> None:
        """
        A request lost after being written on a reused connection fails,
        reporting that it was written; the pool does not retry it.
        """
        pool = self.makePool()
        d = pool.request(get())
        proto, transport = self.establish()
        self.respond(proto)
        self.successResultOf(d)
        d = pool.request(get(b"/again"))
        self.assertIn(b"/again", transport.value())
        proto.connectionLost(Failure(ConnectionLost()))
        error = self.failureResultOf(d, ConnectionReset).value
        self.assertTrue(error.requestWritten)
        self.assertFalse(error.responseStarted)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertEqual(self.metrics.counter("stale_retries").value, 0)

    def test_noRetryOnFreshConnection(self) -> None:
        """
        A fresh connection failing is reported, not retried.
        """
        pool = self.makePool()
        d = pool.request(get())
        proto, transport = self.establish()
        proto.connectionLost(Failure(ConnectionLost()))
        self.failureResultOf(d, ConnectionReset)
        self.assertEqual(len(self.reactor.tcpClients), 1)


class CancelAndCloseTests(PoolTestMixin, SynchronousTestCase):
    """
    Cancellation and closing.
    """

    def test_cancelWaiter(self) -> None:
        """
        A cancelled waiting request leaves the queue.
        """
        pool = self.makePool(maxSize=1)
        pool.request(get())
        d = pool.request(get())
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.gauge("waiters"), 0)

    def test_cancelConnecting(self) -> None:
        """
        A request cancelled while its connection opens leaves the connection
        to the pool.
        """
        pool = self.makePool()
        d = pool.request(get())
        d.cancel()
        self.failureResultOf(d, CancelledError)
        proto, transport = self.establish()
        self.assertEqual(transport.value(), b"")
        self.assertEqual(pool.idleCount, 1)

    def test_cancelInFlight(self) -> None:
        """
        A request cancelled in flight aborts its connection.
        """
        pool = self.makePool()
        d = pool.request(get())
        proto, transport = self.establish()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(transport.disconnected)

    def test_close(self) -> None:
        """
        Closing fails waiters, closes idle connections, refuses new requests
        and fires once every connection is gone.
        """
        pool = self.makePool(maxSize=1)
        d1 = pool.request(get())
        d2 = pool.request(get())
        proto, transport = self.establish()
        closed = pool.close()
        self.failureResultOf(d2, PoolClosed)
        self.assertNoResult(closed)
        self.respond(proto)
        self.successResultOf(d1)
        self.assertTrue(transport.disconnecting)
        self.failureResultOf(pool.request(get()), PoolClosed)
        proto.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(closed)

    def test_connectFailedGeneric(self) -> None:
        """
        Other connect errors are L{ConnectionFailed}.
        """
        pool = self.makePool()
        d = pool.request(get())
        self.reactor.tcpClients[0][2].clientConnectionFailed(None, Failure(OSError("no route")))
        self.assertIn("no route", str(self.failureResultOf(d, ConnectionFailed).value))


class HalfCloseTests(PoolTestMixin, SynchronousTestCase):
    """
    An origin half-closing an idle connection.
    """

    def test_idleHalfClosedNotReused(self) -> None:
        """
        Once the origin's FIN is read, the idle connection is never handed
        out again, even before C{connectionLost} arrives.
        """
        pool = self.makePool()
        d = pool.request(get())
        proto, transport = self.establish()
        self.respond(proto)
        self.successResultOf(d)
        proto.readConnectionLost()
        self.assertTrue(transport.disconnecting)
        pool.request(get(b"/next"))
        self.assertEqual(len(self.reactor.tcpClients), 2)
        self.assertNotIn(b"/next", transport.value())
