"""
Tests for the TCP router in process: with a C{MemoryReactorClock} for
timers, failure accrual and the connection phases, and over real loopback
sockets for relaying, half-close, back-pressure, SNI passthrough, TLS
termination, TLS origination and requeues.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Tuple

from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from linkerpy.client.endpoint import DEAD, LIVE
from tests.support import waitUntil
from tests.test_tcp_clienthello import opensslHello
from tests.test_tcp_splice import HalfCloseTransport
from tests.test_tcp_support import (
    AnswerAtEOF,
    Client,
    EchoOrigin,
    Firehose,
    GreetAndHalfClose,
    SlowReader,
    buildTcpRouter,
    closedPort,
    connect,
    listen,
    metric,
    startTcpRouter,
    tempdir,
)

TIMEOUT = 240

#: No requeues: every connect failure reaches the client (and accrual) once.
NO_REQUEUES = {"minRetriesPerSec": 0, "percentCanRetry": 0.0}

PEER = IPv4Address("TCP", "127.0.0.1", 50000)


class MemoryRouter:
    """
    A TCP router on a C{MemoryReactorClock}: accepted connections and origin
    connections are driven by hand.
    """

    def __init__(self, raw: Dict[str, Any]) -> None:
        self.clock = MemoryReactorClock()
        self.router = buildTcpRouter(raw, self.clock)
        self.router.service().startService()

    def accept(self, server: int = 0) -> Tuple[Any, HalfCloseTransport]:
        factory = self.clock.tcpServers[server][1]
        proto = factory.buildProtocol(PEER)
        transport = HalfCloseTransport()
        transport.peerAddr = PEER
        proto.makeConnection(transport)
        return proto, transport

    def connectOrigin(self, index: int = -1) -> Tuple[Any, HalfCloseTransport]:
        factory = self.clock.tcpClients[index][2]
        proto = factory.buildProtocol(None)
        transport = HalfCloseTransport()
        proto.makeConnection(transport)
        return proto, transport

    def refuse(self, index: int = -1) -> None:
        factory = self.clock.tcpClients[index][2]
        factory.clientConnectionFailed(self.clock.connectors[index], Failure(ConnectionRefusedError()))

    def metric(self, name: str) -> Any:
        return metric(self.router, name)

    def endpoint(self, client: str) -> Any:
        from linkerpy.naming.path import Path

        return list(self.router.core.clients[Path.read(client)].endpoints.values())[0]


def config(**extra: Any) -> Dict[str, Any]:
    raw: Dict[str, Any] = {
        "dtab": "/svc/a => /$/inet/127.0.0.1/1001; /svc/b.example => /$/inet/127.0.0.1/1002; /svc/default => /$/inet/127.0.0.1/1003",
        "servers": [{"port": 0, "dstName": "/svc/a"}],
        "client": {"kind": "io.l5d.global", "requeueBudget": NO_REQUEUES},
    }
    raw.update(extra)
    return raw


CLIENT_A = "/$/inet/127.0.0.1/1001"
M_CLIENT_A = "rt/tcp/client/$/inet/127.0.0.1/1001"
M_SERVER = "rt/tcp/server/0.0.0.0/0"


class ConnectTests(SynchronousTestCase):
    """
    Connecting to origins: timeouts, pending bytes, clients that leave.
    """

    def test_connectTimeout(self) -> None:
        """
        The server's connectTimeoutMs bounds the connect: then the attempt
        is stopped, the client connection closed and the failure counted.
        """
        m = MemoryRouter(config(servers=[{"port": 0, "dstName": "/svc/a", "connectTimeoutMs": 2000}]))
        _, client = m.accept()
        self.assertEqual(len(m.clock.tcpClients), 1)
        self.assertEqual(m.clock.tcpClients[0][:2], ("127.0.0.1", 1001))
        m.clock.advance(1.999)
        self.assertFalse(client.disconnecting)
        m.clock.advance(0.001)
        self.assertTrue(client.disconnecting)
        self.assertTrue(m.clock.connectors[0].stoppedConnecting)
        self.assertEqual(m.metric(f"{M_CLIENT_A}/connect_failures"), 1)
        self.assertEqual(m.metric(f"{M_SERVER}/failures"), 1)
        self.assertEqual(m.metric("rt/tcp/service/svc/a/failures"), 1)
        self.assertEqual(m.metric("rt/tcp/service/svc/a/connections"), 0)

    def test_clientTimeoutWins(self) -> None:
        """
        A client policy's connectTimeoutMs wins over the server's.
        """
        m = MemoryRouter(
            config(
                servers=[{"port": 0, "dstName": "/svc/a", "connectTimeoutMs": 2000}],
                client={"kind": "io.l5d.global", "requeueBudget": NO_REQUEUES, "connectTimeoutMs": 500},
            )
        )
        _, client = m.accept()
        m.clock.advance(0.5)
        self.assertTrue(client.disconnecting)

    def test_defaultConnectTimeout(self) -> None:
        """
        Without any connectTimeoutMs the connect is bounded by 5 seconds.
        """
        m = MemoryRouter(config())
        _, client = m.accept()
        m.clock.advance(4.9)
        self.assertFalse(client.disconnecting)
        m.clock.advance(0.1)
        self.assertTrue(client.disconnecting)

    def test_pendingBytesForwarded(self) -> None:
        """
        Bytes the client sends before the origin is connected reach the
        origin first, in order; reading from the client is paused meanwhile.
        """
        m = MemoryRouter(config())
        proto, client = m.accept()
        self.assertEqual(client.producerState, "paused")
        proto.dataReceived(b"first ")
        proto.dataReceived(b"second")
        _, origin = m.connectOrigin()
        self.assertEqual(origin.value(), b"first second")
        self.assertEqual(client.producerState, "producing")
        self.assertIs(client.producer, origin)
        self.assertIs(origin.producer, client)
        self.assertEqual(m.metric(f"{M_CLIENT_A}/connects"), 1)
        self.assertEqual(m.metric(f"{M_CLIENT_A}/connections"), 1)
        self.assertEqual(m.metric(f"{M_CLIENT_A}/sent_bytes"), 12)

    def test_clientLeavesWhileConnecting(self) -> None:
        """
        A client that leaves while the origin is being connected stops the
        attempt; nothing stays counted as open, and it is not counted as a
        failure of the endpoint or the service.
        """
        m = MemoryRouter(config())
        proto, _ = m.accept()
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(m.clock.connectors[0].stoppedConnecting)
        self.assertEqual(m.endpoint(CLIENT_A).pending, 0)
        self.assertEqual(m.metric("rt/tcp/service/svc/a/connections"), 0)
        self.assertEqual(m.metric(f"{M_SERVER}/connections"), 0)
        timers = [c for c in m.clock.getDelayedCalls() if getattr(c.func, "__name__", "") == "_timedOut"]
        self.assertEqual(timers, [])
        self.assertEqual(m.endpoint(CLIENT_A).failures, 0)
        self.assertEqual(m.metric("rt/tcp/service/svc/a/failures"), 0)

    def test_endpointLoadIsOpenConnections(self) -> None:
        """
        An endpoint's load (what p2c balances on) is its number of open
        spliced connections.
        """
        m = MemoryRouter(config())
        sides = []
        for _ in range(3):
            proto, _ = m.accept()
            origin, _ = m.connectOrigin()
            sides.append((proto, origin))
        self.assertEqual(m.endpoint(CLIENT_A).pending, 3)
        proto, origin = sides[0]
        proto.connectionLost(Failure(ConnectionDone()))
        origin.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(m.endpoint(CLIENT_A).pending, 2)
        self.assertEqual(m.metric(f"{M_CLIENT_A}/connections"), 2)
        self.assertEqual(m.metric("rt/tcp/service/svc/a/connections"), 2)


class AccrualTests(SynchronousTestCase):
    """
    Failure accrual judges connections.
    """

    def router(self, failures: int = 3) -> MemoryRouter:
        return MemoryRouter(
            config(
                client={
                    "kind": "io.l5d.global",
                    "requeueBudget": NO_REQUEUES,
                    "failureAccrual": {"kind": "io.l5d.consecutiveFailures", "failures": failures},
                }
            )
        )

    def test_connectFailures(self) -> None:
        """
        Refused connects are failures: after 3 in a row the endpoint is
        marked dead.
        """
        m = self.router()
        for i in range(3):
            _, client = m.accept()
            self.assertEqual(m.endpoint(CLIENT_A).state, LIVE)
            m.refuse()
            self.assertTrue(client.disconnecting)
        self.assertEqual(m.endpoint(CLIENT_A).state, DEAD)
        self.assertEqual(m.metric(f"{M_CLIENT_A}/connect_failures"), 3)

    def test_bytesAreSuccess(self) -> None:
        """
        A connection that carried bytes is a success: it resets the count of
        consecutive failures.
        """
        m = self.router()
        for _ in range(2):
            m.accept()
            m.refuse()
        proto, _ = m.accept()
        origin, _ = m.connectOrigin()
        origin.dataReceived(b"hello")
        origin.connectionLost(Failure(ConnectionDone()))
        proto.connectionLost(Failure(ConnectionDone()))
        for _ in range(2):
            m.accept()
            m.refuse()
        self.assertEqual(m.endpoint(CLIENT_A).state, LIVE)
        m.accept()
        m.refuse()
        self.assertEqual(m.endpoint(CLIENT_A).state, DEAD)

    def test_originDropsWithoutBytes(self) -> None:
        """
        An origin that accepts and closes before any byte is a failure; a
        client that leaves before any byte is not the origin's fault.
        """
        m = self.router()
        for _ in range(3):
            proto, _ = m.accept()
            origin, _ = m.connectOrigin()
            proto.connectionLost(Failure(ConnectionDone()))
            origin.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(m.endpoint(CLIENT_A).state, LIVE)
        for _ in range(3):
            proto, _ = m.accept()
            origin, _ = m.connectOrigin()
            origin.connectionLost(Failure(ConnectionDone()))
            proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(m.endpoint(CLIENT_A).state, DEAD)
        self.assertEqual(m.metric("rt/tcp/service/svc/a/failures"), 3)
        self.assertEqual(m.metric("rt/tcp/service/svc/a/success"), 3)


def sniConfig(defaultDst: Any = None, **server: Any) -> Dict[str, Any]:
    identifier: Dict[str, Any] = {"kind": "io.l5d.tls.sni"}
    if defaultDst:
        identifier["defaultDst"] = defaultDst
    return config(identifier=identifier, servers=[dict({"port": 0}, **server)])


class PhaseTests(SynchronousTestCase):
    """
    Handshake phase, limits, idle connections and drain.
    """

    def test_sniPassthrough(self) -> None:
        """
        A passthrough server reads the ClientHello, routes by its server
        name and hands the origin the exact bytes the client sent.
        """
        m = MemoryRouter(sniConfig())
        proto, client = m.accept()
        hello = opensslHello(b"B.Example")
        proto.dataReceived(hello[:100])
        self.assertEqual(m.clock.tcpClients, [])
        proto.dataReceived(hello[100:])
        self.assertEqual(m.clock.tcpClients[0][:2], ("127.0.0.1", 1002))
        _, origin = m.connectOrigin()
        self.assertEqual(origin.value(), hello)
        self.assertEqual(m.metric("rt/tcp/service/svc/b.example/connects"), 1)

    def test_noServerName(self) -> None:
        """
        A ClientHello without a server name goes to defaultDst, or is closed
        (and counted) without one.
        """
        m = MemoryRouter(sniConfig(defaultDst="/svc/default"))
        proto, _ = m.accept()
        proto.dataReceived(opensslHello())
        self.assertEqual(m.clock.tcpClients[0][:2], ("127.0.0.1", 1003))
        m = MemoryRouter(sniConfig())
        proto, client = m.accept()
        proto.dataReceived(opensslHello())
        self.assertTrue(client.disconnecting)
        self.assertEqual(m.clock.tcpClients, [])
        self.assertEqual(m.metric(f"{M_SERVER}/unidentified"), 1)

    def test_notTLS(self) -> None:
        """
        Plaintext on a passthrough server is refused at once.
        """
        m = MemoryRouter(sniConfig(defaultDst="/svc/default"))
        proto, client = m.accept()
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(client.aborted)
        self.assertEqual(m.clock.tcpClients, [])
        self.assertEqual(m.metric(f"{M_SERVER}/unidentified"), 1)

    def test_handshakeTimeout(self) -> None:
        """
        A client that does not finish its ClientHello within
        handshakeTimeoutMs is closed.
        """
        m = MemoryRouter(sniConfig(handshakeTimeoutMs=3000))
        proto, client = m.accept()
        proto.dataReceived(opensslHello(b"b.example")[:50])
        m.clock.advance(2.9)
        self.assertFalse(client.aborted)
        m.clock.advance(0.1)
        self.assertTrue(client.aborted)
        self.assertEqual(m.metric(f"{M_SERVER}/handshake_timeouts"), 1)
        self.assertEqual(m.clock.tcpClients, [])

    def test_helloThenEOF(self) -> None:
        """
        A client that ends before its ClientHello is complete is closed.
        """
        m = MemoryRouter(sniConfig())
        proto, client = m.accept()
        proto.dataReceived(b"\x16\x03\x01")
        proto.readConnectionLost()
        self.assertTrue(client.disconnecting)

    def test_maxConnections(self) -> None:
        """
        Connections beyond maxConnections are closed at once and counted.
        """
        m = MemoryRouter(config(servers=[{"port": 0, "dstName": "/svc/a", "maxConnections": 2}]))
        for _ in range(2):
            _, client = m.accept()
            self.assertFalse(client.aborted)
        _, client = m.accept()
        self.assertTrue(client.aborted)
        self.assertEqual(m.metric(f"{M_SERVER}/rejected_connections"), 1)
        self.assertEqual(m.metric(f"{M_SERVER}/connections"), 2)
        self.assertEqual(len(m.clock.tcpClients), 2)

    def test_idleTimeout(self) -> None:
        """
        A spliced connection without traffic for idleTimeoutMs is closed on
        both sides.
        """
        m = MemoryRouter(config(servers=[{"port": 0, "dstName": "/svc/a", "idleTimeoutMs": 1000}]))
        proto, client = m.accept()
        origin, originTransport = m.connectOrigin()
        m.clock.advance(0.6)
        proto.dataReceived(b"x")
        m.clock.advance(0.6)
        self.assertFalse(client.disconnecting)
        m.clock.advance(0.4)
        self.assertTrue(client.disconnecting and originTransport.disconnecting)
        self.assertEqual(m.metric(f"{M_SERVER}/idle_timeouts"), 1)

    def test_drain(self) -> None:
        """
        Draining closes connections still in their handshake at once, lets
        spliced ones run until the grace period ends, then aborts them.
        """
        m = MemoryRouter(config(identifier={"kind": "io.l5d.tls.sni"}, servers=[{"port": 0, "dstName": "/svc/a"}, {"port": 0}]))
        spliced, client = m.accept(0)
        origin, originTransport = m.connectOrigin()
        handshaking, early = m.accept(1)
        d = m.router.drain(5.0)
        self.assertTrue(early.disconnecting)
        handshaking.connectionLost(Failure(ConnectionDone()))
        self.assertNoResult(d)
        m.clock.advance(4.9)
        self.assertFalse(client.aborted)
        m.clock.advance(0.1)
        self.assertTrue(client.aborted and originTransport.aborted)
        spliced.connectionLost(Failure(ConnectionAborted()))
        origin.connectionLost(Failure(ConnectionAborted()))
        self.successResultOf(d)
        _, late = m.accept(0)
        self.assertTrue(late.aborted)


# -- real sockets ------------------------------------------------------------------------


class SocketTests(TestCase):
    """
    The router on the real reactor, between real clients and origins.
    """

    timeout = TIMEOUT

    def router(self, raw: Dict[str, Any], namers: Any = ()) -> Any:
        return startTcpRouter(self, raw, namers)

    @defer.inlineCallbacks
    def boundedThenDelivered(self, transport: Any, origin: Any, client: Any) -> Any:
        """
        While the client does not read, the router holds less than 1 MiB for
        it in C{transport} and the origin has not sent everything; once the
        client reads, every byte arrives, and the origin was paused on the
        way.
        """
        buffered = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
        self.assertLess(buffered, 1 << 20)
        self.assertLess(origin.connections[0].sent, Firehose.total)
        client.transport.resumeProducing()
        yield client.done
        self.assertEqual(client.count, Firehose.total)
        self.assertGreater(origin.connections[0].pauses, 0)

    @defer.inlineCallbacks
    def slowClientBehindFirehose(self) -> Any:
        """
        A router in front of a L{Firehose} origin, and a connected client
        that does not read: fires with C{(origin, router, client)}.
        """
        origin = listen(self, Firehose)
        router = self.router({"dtab": f"/svc/x => /$/inet/127.0.0.1/{origin.port}", "servers": [{"port": 0, "dstName": "/svc/x"}]})
        client = yield connect(self, router.ports[0], SlowReader())
        return origin, router, client

    @defer.inlineCallbacks
    def test_echo(self) -> Any:
        """
        Bytes go both ways and are counted in the server, service and
        client scopes.
        """
        origin = listen(self, EchoOrigin)
        router = self.router({"dtab": f"/svc/echo => /$/inet/127.0.0.1/{origin.port}", "servers": [{"port": 0, "dstName": "/svc/echo"}]})
        client = yield connect(self, router.ports[0], Client(b"hello, router"))
        yield waitUntil(lambda: client.received == b"hello, router", 60, "the echo")
        client.transport.loseConnection()
        yield client.done
        client_ = f"rt/tcp/client/$/inet/127.0.0.1/{origin.port}"
        server = f"rt/tcp/server/127.0.0.1/{router.ports[0]}"
        yield waitUntil(lambda: metric(router, f"{client_}/connections") == 0, 60, "the origin side to close")
        self.assertEqual(metric(router, f"{client_}/sent_bytes"), 13)
        self.assertEqual(metric(router, f"{client_}/received_bytes"), 13)
        self.assertEqual(metric(router, f"{server}/received_bytes"), 13)
        self.assertEqual(metric(router, f"{server}/sent_bytes"), 13)
        self.assertEqual(metric(router, "rt/tcp/service/svc/echo/success"), 1)
        self.assertEqual(metric(router, f"{server}/connects"), 1)

    @defer.inlineCallbacks
    def test_clientHalfClose(self) -> Any:
        """
        The client's FIN reaches the origin as a FIN; the origin's answer,
        sent after it, still reaches the client.
        """
        origin = listen(self, AnswerAtEOF)
        router = self.router({"dtab": f"/svc/x => /$/inet/127.0.0.1/{origin.port}", "servers": [{"port": 0, "dstName": "/svc/x"}]})
        client = yield connect(self, router.ports[0], Client(b"abcdef", halfClose=True))
        yield client.done
        self.assertEqual(client.received, b"fedcba")
        self.assertTrue(origin.connections[0].eofSeen)
        self.assertIsInstance(client.lost.value, ConnectionDone)

    @defer.inlineCallbacks
    def test_originHalfClose(self) -> Any:
        """
        The origin's FIN reaches the client as a FIN; the client can still
        send, and its later FIN reaches the origin.
        """
        origin = listen(self, GreetAndHalfClose)
        router = self.router({"dtab": f"/svc/x => /$/inet/127.0.0.1/{origin.port}", "servers": [{"port": 0, "dstName": "/svc/x"}]})

        class Reply(Client):
            def readConnectionLost(self) -> None:
                self.readEnded = True
                self.transport.write(b"after your FIN")
                self.transport.loseWriteConnection()

        client = yield connect(self, router.ports[0], Reply())
        yield waitUntil(lambda: origin.connections and origin.connections[0].eofSeen, 60, "the client's FIN at the origin")
        self.assertEqual(client.received, b"greeting")
        self.assertTrue(client.readEnded)
        self.assertEqual(origin.connections[0].received, b"after your FIN")
        client.transport.loseConnection()  # both directions are over
        yield client.done
        self.assertIsInstance(client.lost.value, ConnectionDone)

    @defer.inlineCallbacks
    def test_backPressure(self) -> Any:
        """
        A client that does not read makes the router stop reading from the
        origin, which then has to pause: the router buffers a bounded amount;
        once the client reads again every byte arrives.  (Twisted's relay; the
        bulk one is L{test_backPressureBulk}.)
        """
        from linkerpy.protocol.tcp import bulk

        self.patch(bulk, "ENABLED", False)
        origin, router, client = yield self.slowClientBehindFirehose()
        factory = router._service.factories[0]

        def routerToClient() -> Any:
            inbound = next(iter(factory.protocols), None)
            return inbound.transport if inbound is not None and inbound.splice is not None else None

        # The router stops reading from the origin (its transport to the
        # client paused its producer), and the origin, unable to write, is
        # paused too.
        yield waitUntil(
            lambda: routerToClient() is not None
            and routerToClient().producerPaused
            and origin.connections
            and origin.connections[0].paused,
            120,
            "the router and the origin to be paused",
        )
        transport = routerToClient()
        yield self.boundedThenDelivered(transport, origin, client)

    @defer.inlineCallbacks
    def test_backPressureBulk(self) -> Any:
        """
        The same with the bulk relay, which a large transfer switches to: the
        router stops reading from the origin while it holds bytes the client
        did not take (at most one read's worth, plus what Twisted's bounded
        buffer held before the switch), and the origin pauses; once the
        client reads again every byte arrives, and the byte counters count
        every byte once.
        """
        from linkerpy.protocol.tcp import bulk

        origin, router, client = yield self.slowClientBehindFirehose()
        factory = router._service.factories[0]

        def spliced() -> Any:
            inbound = next(iter(factory.protocols), None)
            return inbound.splice if inbound is not None else None

        yield waitUntil(
            lambda: spliced() is not None
            and spliced()._relays
            and spliced()._relays[0].blocked
            and spliced().origin.transport not in reactor.getReaders()
            and origin.connections
            and origin.connections[0].paused,
            120,
            "the router to stop reading from the origin and the origin to be paused",
        )
        splice = spliced()
        relay = splice._relays[0]
        self.assertIs(relay.source, splice.origin.transport)
        self.assertGreater(len(relay.remainder), 0)
        self.assertLessEqual(len(relay.remainder), bulk.READ_SIZE)
        transport = splice.client.transport
        yield self.boundedThenDelivered(transport, origin, client)
        yield waitUntil(lambda: splice.finished, 60, "the router to close both sides")
        self.assertTrue(relay.closed)
        self.assertNotIn("doRead", relay.source.__dict__)
        self.assertEqual(splice.receivedBytes, Firehose.total)
        self.assertEqual(metric(router, f"rt/tcp/client/$/inet/127.0.0.1/{origin.port}/received_bytes"), Firehose.total)
        self.assertEqual(metric(router, f"rt/tcp/server/127.0.0.1/{router.ports[0]}/sent_bytes"), Firehose.total)

    @defer.inlineCallbacks
    def test_requeueToAnotherEndpoint(self) -> Any:
        """
        A refused connect is re-sent to another endpoint of the same client
        (requeueBudget), so every client connection gets through.
        """
        from linkerpy.config.structure import structurePlugin
        from linkerpy.interfaces import INamerPlugin
        from linkerpy.naming.path import Path
        from linkerpy.plugins.context import BuildContext
        from linkerpy.plugins.registry import defaultRegistry

        origin = listen(self, EchoOrigin)
        directory = tempdir(self)
        with open(os.path.join(directory, "pair"), "w") as f:
            f.write(f"127.0.0.1 {closedPort()}\n127.0.0.1 {origin.port}\n")
        registry = defaultRegistry()
        namerConfig = structurePlugin(INamerPlugin, {"kind": "io.l5d.fs", "rootDir": directory}, registry)
        namer = namerConfig.plugin.newNamer(namerConfig.config, BuildContext(reactor=reactor, registry=registry))
        router = self.router(
            {
                "dtab": "/svc => /#/io.l5d.fs",
                "servers": [{"port": 0, "dstName": "/svc/pair"}],
                "client": {"kind": "io.l5d.global", "loadBalancer": {"kind": "roundRobin"}},
            },
            namers=[(Path.read("/#/io.l5d.fs"), namer)],
        )
        for i in range(6):
            client = yield connect(self, router.ports[0], Client(b"ping %d" % i))
            yield waitUntil(lambda: client.received == b"ping %d" % i, 60, "the echo")
            client.transport.loseConnection()
            yield client.done
        flat = router.rootMetrics.flatten()
        requeues = sum(v for k, v in flat.items() if k.endswith("retries/requeues"))
        failures = sum(v for k, v in flat.items() if k.endswith("connect_failures"))
        self.assertGreaterEqual(requeues, 1)
        self.assertEqual(requeues, failures)
        self.assertEqual(metric(router, "rt/tcp/service/svc/pair/failures"), 0)


__all__: List[str] = []
