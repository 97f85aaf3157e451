"""
Tests for L{linkerpy.protocol.h2.pool}: one multiplexed connection per
endpoint, opened on demand, with connect failures mapped to the data
plane's errors.
"""

from __future__ import annotations

from typing import Any, List

from h2.errors import ErrorCodes
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, connect
from twisted.trial.unittest import SynchronousTestCase

from linkerpy.protocol.h2.connection import goAwayFrame
from linkerpy.protocol.h2.headers import H2Headers
from linkerpy.protocol.h2.pool import H2ClientPool
from linkerpy.protocol.h2.testing import fetch, originFactory, requestHeaders
from linkerpy.protocol.http.errors import ConnectionRefused, ConnectTimeout, PoolClosed


def ok(exchange: Any) -> None:
    exchange.respondBytes(H2Headers([(b":status", b"200")]), exchange.request.path)


class PoolTests(SynchronousTestCase):
    """
    L{H2ClientPool} with a memory reactor; connections are completed by
    hand against an in-memory server.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.pool = H2ClientPool(self.clock, "127.0.0.1", 8080, connectTimeout=2.0, idleTimeout=30.0)
        self.server = originFactory(self.clock, ok)
        self.pumps: List[Any] = []

    def complete(self, index: int = -1) -> Any:
        """
        Finish the index-th connection attempt: connect it to a new server
        protocol.
        """
        host, port, factory, timeout, bind = self.clock.tcpClients[index]
        client = factory.buildProtocol(None)
        server = self.server.buildProtocol(None)
        pump = connect(server, FakeTransport(server, True), client, FakeTransport(client, False), greet=False, clock=self.clock)
        pump.flush()
        self.pumps.append(pump)
        return pump

    def test_oneConnectionManyRequests(self) -> None:
        """
        Requests made before and after the connection opens share it.
        """
        d1 = fetch(self.pool, requestHeaders(path=b"/1"))
        d2 = fetch(self.pool, requestHeaders(path=b"/2"))
        self.assertEqual(len(self.clock.tcpClients), 1)
        pump = self.complete()
        d3 = fetch(self.pool, requestHeaders(path=b"/3"))
        pump.flush()
        self.assertEqual([self.successResultOf(d).body for d in (d1, d2, d3)], [b"/1", b"/2", b"/3"])
        self.assertEqual(len(self.clock.tcpClients), 1)
        self.assertEqual(len(self.pool.connections), 1)

    def test_refused(self) -> None:
        """
        A refused connection fails the waiting requests with
        L{ConnectionRefused} (nothing written).
        """
        d = self.pool.request(requestHeaders())
        host, port, factory, timeout, bind = self.clock.tcpClients[0]
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        error = self.failureResultOf(d, ConnectionRefused).value
        self.assertFalse(error.requestWritten)
        d = self.pool.request(requestHeaders())
        self.assertEqual(len(self.clock.tcpClients), 2)

    def test_connectTimeout(self) -> None:
        """
        A connection not ready within the connect timeout fails the waiting
        requests with L{ConnectTimeout}.
        """
        d = self.pool.request(requestHeaders())
        self.clock.advance(1.9)
        self.assertNoResult(d)
        self.clock.advance(0.2)
        self.assertEqual(self.failureResultOf(d, ConnectTimeout).value.timeoutMs, 2000)

    def test_cancelWhileConnecting(self) -> None:
        """
        A request cancelled while the connection opens is not sent.
        """
        d = self.pool.request(requestHeaders())
        d.cancel()
        self.failureResultOf(d)
        pump = self.complete()
        pump.flush()
        self.assertEqual(self.server.handler.exchanges, [])

    def test_goAwayOpensNewConnection(self) -> None:
        """
        After the server's GOAWAY, the next request opens a new connection.
        """
        pump = self.complete_first()
        old = self.pool.current
        old.dataReceived(goAwayFrame(1))
        self.assertIsNone(self.pool.current)
        d = fetch(self.pool, requestHeaders(path=b"/again"))
        self.assertEqual(len(self.clock.tcpClients), 2)
        self.complete()
        self.assertEqual(self.successResultOf(d).body, b"/again")

    def complete_first(self) -> Any:
        d = fetch(self.pool, requestHeaders())
        pump = self.complete()
        self.successResultOf(d)
        return pump

    def test_idleConnectionClosed(self) -> None:
        """
        A connection without streams for C{idleTimeout} is closed.
        """
        pump = self.complete_first()
        proto = self.pool.current
        self.clock.advance(29)
        pump.flush()
        self.assertFalse(proto.closed)
        self.clock.advance(2)
        pump.flush()
        self.assertTrue(proto.closed)
        self.assertEqual(self.pool.connections, set())

    def test_close(self) -> None:
        """
        Closing the pool fails waiting requests and closes connections.
        """
        pump = self.complete_first()
        d = self.pool.close()
        pump.flush()
        self.successResultOf(d)
        self.failureResultOf(self.pool.request(requestHeaders()), PoolClosed)

    def test_refusedStreamAfterConnect(self) -> None:
        """
        A server refusing a stream gives a retry-safe failure.
        """
        from linkerpy.protocol.h2.errors import StreamRefused

        self.server.handler.fn = lambda exchange: exchange.reset(ErrorCodes.REFUSED_STREAM)
        d = self.pool.request(requestHeaders())
        self.complete()
        self.assertFalse(self.failureResultOf(d, StreamRefused).value.requestWritten)
