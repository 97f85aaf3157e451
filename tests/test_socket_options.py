"""
Tests for L{linkerpy.socketoptions}: Linkerd's C{socketOptions} applied to
listening sockets, accepted and outgoing connections, and the read/write
timeout watchdogs; and the keys through a router's configuration.
"""

from __future__ import annotations

import socket
import time
from typing import Any, List

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from linkerpy import net, socketoptions
from linkerpy.config.model import SocketOptions
from tests.support import routerPort, startLinker, waitUntil
from tests.test_hardening_origins import TIMEOUT, connectRaw, routerConfig, sendRaw, startFaultOrigin, statusOf
from tests.test_hardening_upstream import request


class Ended(Protocol):
    """
    Records when its connection ends; optionally writes C{payload} on
    connection and sets C{TCP_NODELAY} the way linkerpy's protocols do.
    """

    def __init__(self, payload: bytes = b"", noDelay: bool = False) -> None:
        self.payload = payload
        self.noDelay = noDelay
        self.ended: Deferred[float] = Deferred()
        self.made = 0.0

    def connectionMade(self) -> None:
        self.made = time.monotonic()
        if self.noDelay:
            net.setNoDelay(self.transport)
        if self.payload:
            self.transport.write(self.payload)

    def connectionLost(self, reason: Any) -> None:
        self.ended.callback(time.monotonic() - self.made)


class ServerFactory(Factory):
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.protocols: List[Ended] = []
        self.made: Deferred[Ended] = Deferred()

    def buildProtocol(self, addr: Any) -> Ended:
        p = Ended(**self.kwargs)
        p.factory = self
        self.protocols.append(p)
        if not self.made.called:
            reactor.callLater(0, self.made.callback, p)
        return p


class Silent(Protocol):
    """
    A client that never sends and (with C{pause}) never reads.
    """

    def __init__(self, pause: bool = False) -> None:
        self.pause = pause

    def connectionMade(self) -> None:
        if self.pause:
            self.transport.pauseProducing()


class SilentFactory(ClientFactory):
    def __init__(self, pause: bool = False) -> None:
        self.pause = pause
        self.protocols: List[Silent] = []

    def buildProtocol(self, addr: Any) -> Silent:
        p = Silent(self.pause)
        self.protocols.append(p)
        return p


def sockopt(transport: Any, level: int, name: int) -> int:
    return transport.socket.getsockopt(level, name)


class ListeningTests(TestCase):
    """
    C{reuseAddr}, C{reusePort} and C{backlog} on listening sockets.
    """

    timeout = 30

    def listen(self, options: Any, port: int = 0) -> Any:
        p = net.listenTCP(reactor, port, Factory.forProtocol(Protocol), interface="127.0.0.1", options=options)
        self.addCleanup(p.stopListening)
        return p

    def test_reusePort(self) -> None:
        """
        Two listeners with reusePort share a port; a third without it cannot.
        """
        first = self.listen(SocketOptions(reusePort=True))
        number = first.getHost().port
        second = self.listen(SocketOptions(reusePort=True), number)
        self.assertEqual(second.getHost().port, number)
        self.assertEqual(sockopt(first, socket.SOL_SOCKET, socket.SO_REUSEPORT), 1)
        self.assertRaises(CannotListenError, self.listen, SocketOptions(), number)

    def test_reuseAddr(self) -> None:
        """
        reuseAddr is on by default (as in Linkerd) and can be turned off.
        """
        self.assertEqual(sockopt(self.listen(SocketOptions()), socket.SOL_SOCKET, socket.SO_REUSEADDR), 1)
        self.assertEqual(sockopt(self.listen(None), socket.SOL_SOCKET, socket.SO_REUSEADDR), 1)
        self.assertEqual(sockopt(self.listen(SocketOptions(reuseAddr=False)), socket.SOL_SOCKET, socket.SO_REUSEADDR), 0)

    def test_backlog(self) -> None:
        """
        backlog replaces the caller's default, on real and memory reactors.
        """
        self.assertEqual(self.listen(SocketOptions(backlog=7)).backlog, 7)
        self.assertEqual(self.listen(SocketOptions()).backlog, 50)
        memory = MemoryReactorClock()
        net.listenTCP(memory, 0, Factory(), backlog=1024, options=SocketOptions(backlog=9))
        net.listenTCP(memory, 0, Factory(), backlog=1024, options=None)
        self.assertEqual([s[2] for s in memory.tcpServers], [9, 1024])


class ConnectionOptionTests(TestCase):
    """
    C{noDelay} and C{keepAlive} on accepted and outgoing connections.
    """

    timeout = 30

    @inlineCallbacks
    def accepted(self, options: Any) -> Any:
        factory = ServerFactory(noDelay=True)
        port = net.listenTCP(reactor, 0, factory, interface="127.0.0.1", options=options)
        self.addCleanup(port.stopListening)
        client = SilentFactory()
        connector = net.connectTCP(reactor, "127.0.0.1", port.getHost().port, client)
        self.addCleanup(connector.disconnect)
        server = yield factory.made
        return server.transport

    @inlineCallbacks
    def test_acceptedConfigured(self) -> Any:
        """
        noDelay: false survives the protocol's own setNoDelay; keepAlive: true is set.
        """
        t = yield self.accepted(SocketOptions(noDelay=False, keepAlive=True))
        self.assertEqual(sockopt(t, socket.IPPROTO_TCP, socket.TCP_NODELAY), 0)
        self.assertEqual(sockopt(t, socket.SOL_SOCKET, socket.SO_KEEPALIVE), 1)

    @inlineCallbacks
    def test_acceptedDefaults(self) -> Any:
        """
        Without socketOptions the protocol's setNoDelay applies and keep-alive stays off.
        """
        t = yield self.accepted(None)
        self.assertEqual(sockopt(t, socket.IPPROTO_TCP, socket.TCP_NODELAY), 1)
        self.assertEqual(sockopt(t, socket.SOL_SOCKET, socket.SO_KEEPALIVE), 0)

    @inlineCallbacks
    def test_outgoing(self) -> Any:
        """
        connectTCP applies the options to the connection it makes.
        """
        factory = ServerFactory()
        port = net.listenTCP(reactor, 0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = SilentFactory()
        connector = net.connectTCP(
            reactor, "127.0.0.1", port.getHost().port, client, options=SocketOptions(noDelay=False, keepAlive=True)
        )
        self.addCleanup(connector.disconnect)
        yield factory.made
        t = connector.transport
        self.assertEqual(sockopt(t, socket.SOL_SOCKET, socket.SO_KEEPALIVE), 1)
        self.assertEqual(sockopt(t, socket.IPPROTO_TCP, socket.TCP_NODELAY), 0)


class TimeoutSocketTests(TestCase):
    """
    readTimeoutMs and writeTimeoutMs over real sockets.
    """

    timeout = 60

    @inlineCallbacks
    def test_readTimeout(self) -> Any:
        """
        A connection on which nothing arrives is aborted once readTimeoutMs has passed.
        """
        factory = ServerFactory()
        port = net.listenTCP(reactor, 0, factory, interface="127.0.0.1", options=SocketOptions(readTimeoutMs=200))
        self.addCleanup(port.stopListening)
        connector = net.connectTCP(reactor, "127.0.0.1", port.getHost().port, SilentFactory())
        self.addCleanup(connector.disconnect)
        server = yield factory.made
        elapsed = yield server.ended
        self.assertGreaterEqual(elapsed, 0.2)

    @inlineCallbacks
    def test_writeTimeout(self) -> Any:
        """
        Output a peer does not read is given up on once it has not moved for writeTimeoutMs.
        """
        factory = ServerFactory(payload=b"x" * (32 * 1024 * 1024))
        port = net.listenTCP(reactor, 0, factory, interface="127.0.0.1", options=SocketOptions(writeTimeoutMs=300))
        self.addCleanup(port.stopListening)
        connector = net.connectTCP(reactor, "127.0.0.1", port.getHost().port, SilentFactory(pause=True))
        self.addCleanup(connector.disconnect)
        server = yield factory.made
        elapsed = yield server.ended
        self.assertGreaterEqual(elapsed, 0.3)


class FakeTCP:
    """
    Just enough of a TCP transport for the sweep.
    """

    def __init__(self, clock: Clock) -> None:
        self.reactor = clock
        self.socket = socket.socket()
        self.connected = 1
        self.disconnected = 0
        self.disconnecting = False
        self._tempDataBuffer: List[bytes] = []
        self.dataBuffer = b""
        self.offset = 0
        self.aborted = 0

    def doRead(self) -> None:
        pass

    def doWrite(self) -> None:
        pass

    def abortConnection(self) -> None:
        self.aborted += 1
        self.connected = 0
        self.disconnected = 1

    def getPeer(self) -> Any:
        raise OSError("fake")


class SweepTests(SynchronousTestCase):
    """
    The watchdog's rules, on a fake clock.
    """

    def make(self, clock: Clock, **options: Any) -> Any:
        cls = socketoptions.transportClass(FakeTCP, SocketOptions(**options))
        t = cls(clock)
        self.addCleanup(t.socket.close)
        socketoptions.applyToConnection(t, SocketOptions(**options))
        return t

    def test_noTimeoutsNoWatch(self) -> None:
        """
        Without timeouts the transport class is unchanged.
        """
        self.assertIs(socketoptions.transportClass(FakeTCP, SocketOptions()), FakeTCP)
        self.assertIs(socketoptions.transportClass(FakeTCP, None), FakeTCP)

    def test_readResets(self) -> None:
        """
        Each read restarts the read timeout.
        """
        clock = Clock()
        t = self.make(clock, readTimeoutMs=1000)
        for _ in range(10):
            clock.advance(0.75)
            t.doRead()
        self.assertEqual(t.aborted, 0)
        clock.pump([0.25] * 4)
        self.assertEqual(t.aborted, 1)

    def test_writeOnlyWhilePending(self) -> None:
        """
        The write timeout runs only while output is queued, and progress restarts it.
        """
        clock = Clock()
        t = self.make(clock, writeTimeoutMs=1000)
        clock.pump([0.25] * 20)  # idle, nothing queued: fine
        self.assertEqual(t.aborted, 0)
        t.dataBuffer = b"queued"
        for _ in range(6):
            clock.pump([0.25] * 3)
            t.doWrite()  # the kernel took some
        self.assertEqual(t.aborted, 0)
        clock.pump([0.25] * 6)
        self.assertEqual(t.aborted, 1)

    def test_connectingNotCounted(self) -> None:
        """
        An outgoing connection's read timeout starts once it is connected.
        """
        clock = Clock()
        t = self.make(clock, readTimeoutMs=1000)
        t.connected = 0
        clock.pump([0.25] * 12)
        self.assertEqual(t.aborted, 0)
        t.connected = 1
        clock.pump([0.25] * 3)
        self.assertEqual(t.aborted, 0)
        clock.pump([0.25] * 2)
        self.assertEqual(t.aborted, 1)

    def test_sweepStops(self) -> None:
        """
        The sweep ends when nothing is left to watch.
        """
        clock = Clock()
        t = self.make(clock, readTimeoutMs=200)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        t.connected = 0
        t.disconnected = 1
        clock.advance(1)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(t.aborted, 0)


class RouterSocketOptionTests(TestCase):
    """
    socketOptions through an HTTP router's configuration.
    """

    timeout = 120

    @inlineCallbacks
    def test_serverReadTimeout(self) -> Any:
        """
        servers[].socketOptions.readTimeoutMs closes a silent downstream connection long before
        the request-head deadline.
        """
        origin = startFaultOrigin(self)
        config = routerConfig(origin.portNumber, server={"socketOptions": {"readTimeoutMs": 300}, "requestHeadTimeoutMs": 60000})
        linker = startLinker(self, config)
        started = time.monotonic()
        client = yield connectRaw(self, routerPort(linker))
        yield client.waitClosed(TIMEOUT)
        self.assertGreaterEqual(time.monotonic() - started, 0.3)

    @inlineCallbacks
    def test_clientReadTimeout(self) -> Any:
        """
        client.socketOptions.readTimeoutMs aborts an upstream connection to a silent origin
        (502) before responseIdleTimeoutMs would (504).
        """
        origin = startFaultOrigin(self)
        client = {"kind": "io.l5d.global", "responseIdleTimeoutMs": 60000, "socketOptions": {"readTimeoutMs": 300, "keepAlive": True}}
        linker = startLinker(self, routerConfig(origin.portNumber, client=client))
        data = yield sendRaw(self, routerPort(linker), request(b"POST", b"/never"))
        self.assertEqual(statusOf(data), 502, data)
        yield waitUntil(lambda: origin.open == 0, TIMEOUT, "the upstream connection to close")
