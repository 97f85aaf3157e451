# -*- test-case-name: tests.test_hardening_limits -*-
"""
Every limit of the HTTP router has a finite default and is enforced: sizes
of the request head, head deadline (slowloris), body idle time, keep-alive
idle time, connections and requests in flight per server, upstream connect
timeout, requests queued per endpoint pool.  Each is checked over real
sockets with a small configured value: the client's answer, and what the
origin saw.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from linkerpy.config.model import parseLinkerConfig
from tests.support import routerPort, startLinker, waitUntil
from tests.test_hardening_origins import (
    TIMEOUT,
    blackholePort,
    completeResponses,
    connectRaw,
    routerConfig,
    sendRaw,
    startFaultOrigin,
    statusOf,
)
from tests.test_hardening_upstream import _sleep, request


class DefaultTests(SynchronousTestCase):
    """
    The defaults are finite.
    """

    def test_everyLimitHasAFiniteDefault(self) -> None:
        """
        A minimal HTTP router gets finite sizes, timeouts and counts for
        every limit, including connections and requests in flight.
        """
        config = parseLinkerConfig({"routers": [{"protocol": "http", "servers": [{}]}]})
        router = config.routers[0].config
        server = router.servers[0]
        self.assertEqual(
            (router.maxInitialLineKB, router.maxHeadersKB, router.maxHeaderCount, router.retryBufferKB),
            (4, 8, 100, 64),
        )
        self.assertEqual(
            (server.requestHeadTimeoutMs, server.bodyIdleTimeoutMs, server.keepAliveIdleTimeMs),
            (30000, 60000, 300000),
        )
        self.assertEqual((server.maxConnections, server.maxConcurrentRequests), (10000, 2000))
        self.assertEqual(server.ip, "127.0.0.1")
        self.assertEqual((config.admin.ip, config.admin.maxRequestBodyKB), ("127.0.0.1", 64))
        from linkerpy.protocol.http.adapter import DEFAULT_CONNECT_TIMEOUT_MS
        from linkerpy.protocol.http.config import PoolConfig

        self.assertEqual(DEFAULT_CONNECT_TIMEOUT_MS, 5000)
        self.assertEqual(PoolConfig().maxWaiters, 1000)

    def test_poolDefaultsWhenOnlyMaxSizeIsSet(self) -> None:
        """
        hostConnectionPool with only maxSize gets the finite maxWaiters
        default.
        """
        config = parseLinkerConfig(
            {"routers": [{"protocol": "http", "servers": [{}], "client": {"kind": "io.l5d.global", "hostConnectionPool": {"maxSize": 4}}}]}
        )
        pool = config.routers[0].config.client.config.hostConnectionPool
        self.assertEqual((pool.maxSize, pool.maxWaiters), (4, 1000))

    def test_unlimitedIsExplicit(self) -> None:
        """
        null turns the connection and request limits off; zero is refused.
        """
        from linkerpy.config.errors import ConfigError

        config = parseLinkerConfig(
            {"routers": [{"protocol": "http", "servers": [{"maxConnections": None, "maxConcurrentRequests": None}]}]}
        )
        server = config.routers[0].config.servers[0]
        self.assertEqual((server.maxConnections, server.maxConcurrentRequests), (None, None))
        with self.assertRaises(ConfigError) as e:
            parseLinkerConfig({"routers": [{"protocol": "http", "servers": [{"maxConnections": 0}]}]})
        self.assertIn("routers[0].servers[0].maxConnections", e.exception.render())


class WiringTests(TestCase):
    """
    The running router applies the configured values.
    """

    @inlineCallbacks
    def test_defaultsReachTheServer(self) -> Any:
        """
        The server factory and handler of a default router carry the
        finite defaults.
        """
        origin = startFaultOrigin(self)
        linker = startLinker(self, routerConfig(origin.portNumber))
        service = linker.routers[0].service()
        factory = service.factories[0]
        self.assertEqual(factory.maxConnections, 10000)
        self.assertEqual(
            (factory.limits.maxInitialLine, factory.limits.maxHeaderBytes, factory.limits.maxHeaderCount),
            (4096, 8192, 100),
        )
        self.assertEqual(
            (factory.timeouts.headTimeout, factory.timeouts.bodyIdleTimeout, factory.timeouts.keepAliveTimeout),
            (30.0, 60.0, 300.0),
        )
        self.assertEqual(factory.handler.maxConcurrent, 2000)
        data = yield sendRaw(self, routerPort(linker), request(b"GET", b"/ok"))
        self.assertEqual(statusOf(data), 200)


class HeadLimitTests(TestCase):
    """
    Request head sizes and deadline.
    """

    timeout = 300

    @inlineCallbacks
    def test_configuredSizes(self) -> Any:
        """
        maxInitialLineKB 1, maxHeadersKB 1 and maxHeaderCount 10: just
        under passes, just over gets 414/431 and the origin sees nothing.
        """
        origin = startFaultOrigin(self)
        linker = startLinker(self, routerConfig(origin.portNumber, maxInitialLineKB=1, maxHeadersKB=1, maxHeaderCount=10))
        port = routerPort(linker)
        c = b"Host: h\r\nConnection: close\r\n"
        cases = [
            (b"GET /" + b"a" * 1000 + b" HTTP/1.1\r\n" + c + b"\r\n", 200),
            (b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\n" + c + b"\r\n", 414),
            (b"GET / HTTP/1.1\r\n" + c + b"X-A: " + b"a" * 900 + b"\r\n\r\n", 200),
            (b"GET / HTTP/1.1\r\n" + c + b"X-A: " + b"a" * 1100 + b"\r\n\r\n", 431),
            # ten fields (Host, Connection and eight more) pass; eleven do not
            (b"GET / HTTP/1.1\r\n" + c + b"".join(b"X-%d: v\r\n" % i for i in range(8)) + b"\r\n", 200),
            (b"GET / HTTP/1.1\r\n" + c + b"".join(b"X-%d: v\r\n" % i for i in range(9)) + b"\r\n", 431),
        ]
        for raw, status in cases:
            before = len(origin.requests)
            data = yield sendRaw(self, port, raw)
            self.assertEqual(statusOf(data), status, raw[:60])
            self.assertEqual(len(origin.requests), before + (1 if status == 200 else 0))

    @inlineCallbacks
    def test_headSentSlowly(self) -> Any:
        """
        A head trickling in (one field every 300 ms) is cut at
        requestHeadTimeoutMs with 408 and a close; the origin sees nothing.
        """
        origin = startFaultOrigin(self)
        linker = startLinker(self, routerConfig(origin.portNumber, server={"requestHeadTimeoutMs": 1000}))
        client = yield connectRaw(self, routerPort(linker))
        started = reactor.seconds()
        client.transport.write(b"GET / HTTP/1.1\r\nHost: h\r\n")
        i = 0
        while client.transport.connected and reactor.seconds() - started < TIMEOUT:
            yield _sleep(0.3)
            if client.transport.connected:
                client.transport.write(b"X-%d: v\r\n" % i)
                i += 1
        data = yield client.waitClosed()
        elapsed = reactor.seconds() - started
        self.assertEqual(statusOf(data), 408, data)
        self.assertGreaterEqual(elapsed, 0.95)
        self.assertEqual(origin.requests, [])
        m = linker.metrics.flatten()
        self.assertEqual(sum(v for k, v in m.items() if k.endswith("/head_timeouts")), 1)

    @inlineCallbacks
    def test_silentConnection(self) -> Any:
        """
        A connection that never sends a byte is closed at
        requestHeadTimeoutMs (nothing to answer).
        """
        origin = startFaultOrigin(self)
        linker = startLinker(self, routerConfig(origin.portNumber, server={"requestHeadTimeoutMs": 500}))
        client = yield connectRaw(self, routerPort(linker))
        data = yield client.waitClosed()
        self.assertEqual(data, b"")

    @inlineCallbacks
    def test_bodyIdle(self) -> Any:
        """
        A request body that stops arriving is cut at bodyIdleTimeoutMs: an
        error answer and a close; the origin never gets a complete request
        and its connection is closed.
        """
        origin = startFaultOrigin(self)
        linker = startLinker(self, routerConfig(origin.portNumber, server={"bodyIdleTimeoutMs": 500}))
        client = yield connectRaw(self, routerPort(linker))
        started = reactor.seconds()
        client.transport.write(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
        data = yield client.waitClosed()
        self.assertGreaterEqual(reactor.seconds() - started, 0.45)
        self.assertIn(statusOf(data), (408, 502), data)
        self.assertEqual(origin.requests, [])
        yield waitUntil(lambda: origin.open == 0, TIMEOUT, "the upstream connection with the partial request to close")
        m = linker.metrics.flatten()
        self.assertEqual(sum(v for k, v in m.items() if k.endswith("/body_timeouts")), 1)

    @inlineCallbacks
    def test_clientBodyFaultsAreClientErrors(self) -> Any:
        """
        A body that times out is the client's fault: 408 (as nginx's
        client_body_timeout), and such failures do not make failure accrual
        mark a healthy endpoint dead.
        """
        origin = startFaultOrigin(self)
        linker = startLinker(self, routerConfig(origin.portNumber, server={"bodyIdleTimeoutMs": 300}))
        port = routerPort(linker)
        statuses = []
        for _ in range(6):
            client = yield connectRaw(self, port)
            client.transport.write(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
            data = yield client.waitClosed()
            statuses.append(statusOf(data))
        m = linker.metrics.flatten()
        available = [v for k, v in m.items() if k.endswith("/loadbalancer/available")]
        self.assertEqual((statuses, available), ([408] * 6, [1]))

    @inlineCallbacks
    def test_keepAliveIdle(self) -> Any:
        """
        An idle keep-alive connection is closed after keepAliveIdleTimeMs,
        and serverSession.idleTimeMs wins over it.
        """
        origin = startFaultOrigin(self)
        for server in ({"keepAliveIdleTimeMs": 500}, {"keepAliveIdleTimeMs": 600000, "serverSession": {"idleTimeMs": 500}}):
            linker = startLinker(self, routerConfig(origin.portNumber, server=server))
            client = yield connectRaw(self, routerPort(linker))
            client.transport.write(request(b"GET", b"/ok", close=False))
            yield client.waitFor(completeResponses(1))
            data = yield client.waitClosed()
            self.assertEqual(data.count(b"HTTP/1.1 200 "), 1)
            yield linker.stopService()


class CapacityTests(TestCase):
    """
    Connection and request counts.
    """

    timeout = 300

    @inlineCallbacks
    def test_maxConnections(self) -> Any:
        """
        With maxConnections 3, a fourth connection is closed at once with no
        answer; once one closes, a new one is served.
        """
        origin = startFaultOrigin(self)
        linker = startLinker(self, routerConfig(origin.portNumber, server={"maxConnections": 3}))
        port = routerPort(linker)
        clients = []
        for i in range(3):
            client = yield connectRaw(self, port)
            client.transport.write(request(b"GET", b"/ok", close=False))
            yield client.waitFor(completeResponses(1))
            clients.append(client)
        extra = yield connectRaw(self, port)
        extra.transport.write(request(b"GET", b"/ok", close=False))
        data = yield extra.waitClosed()
        self.assertEqual(data, b"")
        self.assertEqual(len(origin.requests), 3)
        clients[0].transport.loseConnection()
        yield clients[0].waitClosed()
        yield waitUntil(lambda: len(linker.routers[0].service().factories[0].protocols) == 2, TIMEOUT, "the server to see the close")
        data = yield sendRaw(self, port, request(b"GET", b"/ok"))
        self.assertEqual(statusOf(data), 200)
        m = linker.metrics.flatten()
        self.assertEqual(sum(v for k, v in m.items() if k.endswith("/rejected_connections")), 1)

    @inlineCallbacks
    def test_maxConcurrentRequests(self) -> Any:
        """
        With maxConcurrentRequests 2 and two slow requests in flight, a third
        gets 503 with l5d-retryable at once and never reaches the origin.
        """
        origin = startFaultOrigin(self)
        linker = startLinker(self, routerConfig(origin.portNumber, server={"maxConcurrentRequests": 2}))
        port = routerPort(linker)
        slow = [sendRaw(self, port, request(b"GET", b"/slow/2000")) for _ in range(2)]
        yield waitUntil(lambda: len(origin.requests) == 2, TIMEOUT, "two requests in flight")
        data = yield sendRaw(self, port, request(b"POST", b"/echo", b"x"))
        self.assertEqual(statusOf(data), 503, data)
        self.assertIn(b"l5d-retryable: true", data)
        self.assertIn(b"maxConcurrentRequests", data)
        results = yield DeferredList(slow)
        self.assertEqual([statusOf(d) for _, d in results], [200, 200])
        self.assertEqual(origin.count(b"/echo"), 0)
        data = yield sendRaw(self, port, request(b"POST", b"/echo", b"x"))
        self.assertEqual(statusOf(data), 200)

    @inlineCallbacks
    def test_connectTimeout(self) -> Any:
        """
        An endpoint that never completes the TCP handshake fails after
        connectTimeoutMs: 503 naming the connect timeout, not before it.
        """
        port = blackholePort(self)
        client = {"kind": "io.l5d.global", "connectTimeoutMs": 300, "requeueBudget": {"minRetriesPerSec": 0, "percentCanRetry": 0.0}}
        linker = startLinker(self, routerConfig(port, client=client))
        started = reactor.seconds()
        data = yield sendRaw(self, routerPort(linker), request(b"GET", b"/ok"))
        elapsed = reactor.seconds() - started
        self.assertEqual(statusOf(data), 503, data)
        self.assertIn(b"connect timeout", data)
        self.assertGreaterEqual(elapsed, 0.28)

    @inlineCallbacks
    def test_maxWaiters(self) -> Any:
        """
        hostConnectionPool maxSize 1, maxWaiters 1: with one request on the
        connection and one queued, a third gets 503 and never reaches the
        origin; without maxWaiters (default 1000) all three are served.
        """
        origin = startFaultOrigin(self)
        for pool, expected in (({"maxSize": 1, "maxWaiters": 1}, [200, 200, 503]), ({"maxSize": 1}, [200, 200, 200])):
            client = {"kind": "io.l5d.global", "hostConnectionPool": pool}
            linker = startLinker(self, routerConfig(origin.portNumber, client=client))
            port = routerPort(linker)
            before = len(origin.requests)
            first = sendRaw(self, port, request(b"GET", b"/slow/1000"))
            yield waitUntil(lambda: len(origin.requests) == before + 1, TIMEOUT, "the first request in flight")
            second = sendRaw(self, port, request(b"GET", b"/slow/10"))
            yield waitUntil(
                lambda: any(w for k, w in linker.metrics.flatten().items() if k.endswith("/waiters")), TIMEOUT, "a waiter"
            )
            third = yield sendRaw(self, port, request(b"GET", b"/ok"))
            results = yield DeferredList([first, second])
            statuses = [statusOf(d) for _, d in results] + [statusOf(third)]
            self.assertEqual(statuses, expected, pool)
            if expected[2] == 503:
                self.assertIn(b"waiting for a connection", third)
                self.assertEqual(origin.count(b"/ok"), 0)
            yield linker.stopService()
