# -*- test-case-name: tests.test_perf_net -*-
"""
Tests for L{linkerpy.net}: the tuned epoll loop and batched writes.

Each socket test runs a private, freshly made epoll reactor (not the global
one) until the scenario ends or a deadline passes.
"""

from __future__ import annotations

from typing import Any, Callable, List

from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from linkerpy import net

try:
    from twisted.internet.epollreactor import EPollReactor
except ImportError:  # pragma: no cover - not Linux
    EPollReactor = None  # type: ignore[assignment,misc]

DEADLINE = 30.0


def runUntil(reactor: Any, done: Callable[[], bool]) -> None:
    """
    Run a private reactor until C{done()} or L{DEADLINE} seconds.
    """
    state = {"timedOut": False}

    def check() -> None:
        if done():
            reactor.stop()
        else:
            reactor.callLater(0.01, check)

    def expire() -> None:
        state["timedOut"] = True
        reactor.stop()

    reactor.callLater(0, check)
    timer = reactor.callLater(DEADLINE, expire)
    reactor.run(installSignalHandlers=False)
    if timer.active():
        timer.cancel()
    if state["timedOut"]:
        raise AssertionError("the private reactor timed out")


class Collector(Protocol):
    """
    Keeps what it receives and how the connection ended.
    """

    def __init__(self) -> None:
        self.chunks: List[bytes] = []
        self.reason: Any = None

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.reason = reason

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


class Writer(Protocol):
    """
    On connection, runs C{script(transport)}.
    """

    def __init__(self, script: Callable[[Any], None]) -> None:
        self.script = script

    def connectionMade(self) -> None:
        self.script(self.transport)


class TuneReactorTests(SynchronousTestCase):
    """
    L{net.tuneReactor}.
    """

    def setUp(self) -> None:
        if EPollReactor is None:
            raise self.skipTest("no epoll")

    def test_tunesEpoll(self) -> None:
        """
        An epoll reactor is tuned once (a second call is a no-op) and then
        opens batching connections.
        """
        reactor = EPollReactor()
        self.addCleanup(reactor._poller.close)
        self.assertTrue(net.tuneReactor(reactor))
        loop = reactor.doIteration
        self.assertTrue(net.tuneReactor(reactor))
        self.assertIs(reactor.doIteration, loop)
        port = net.listenTCP(reactor, 0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.assertIs(port.transport, net.BatchingServer)

    def test_otherReactors(self) -> None:
        """
        Memory reactors are left alone and keep their own listenTCP.
        """
        reactor = MemoryReactorClock()
        self.assertFalse(net.tuneReactor(reactor))
        net.listenTCP(reactor, 0, Factory.forProtocol(Protocol))
        self.assertEqual(len(reactor.tcpServers), 1)

    def test_lazyWritesEnvironment(self) -> None:
        """
        C{LINKERPY_LAZY_WRITES} turns tuning off.
        """
        reactor = EPollReactor()
        self.addCleanup(reactor._poller.close)
        self.patch(net.os, "environ", {"LINKERPY_LAZY_WRITES": "1"})
        self.assertFalse(net.tuneReactor(reactor))
        self.assertIsNone(getattr(reactor, "_linkerpyPending", None))


class BatchedWriteTests(SynchronousTestCase):
    """
    Batched writes deliver the same bytes, in order, as plain writes.
    """

    def setUp(self) -> None:
        if EPollReactor is None:
            raise self.skipTest("no epoll")
        self.reactor = EPollReactor()
        self.assertTrue(net.tuneReactor(self.reactor))

    def exchange(self, script: Callable[[Any], None]) -> Collector:
        """
        Connect a collecting client to a server running C{script} on its
        transport; return the client once its connection ended.
        """
        reactor = self.reactor
        port = net.listenTCP(reactor, 0, Factory.forProtocol(lambda: Writer(script)), interface="127.0.0.1")
        collector = Collector()

        class Connect(ClientFactory):
            def buildProtocol(self, addr: Any) -> Protocol:
                return collector

        net.connectTCP(reactor, "127.0.0.1", port.getHost().port, Connect())
        try:
            runUntil(reactor, lambda: collector.reason is not None)
        finally:
            port.stopListening()
            reactor._poller.close()
        return collector

    def test_writesThenClose(self) -> None:
        """
        Several writes in one reactor turn followed by C{loseConnection}
        arrive complete and in order before the clean close.
        """

        def script(transport: Any) -> None:
            self.assertIsInstance(transport, net.BatchingServer)
            self.reactor._linkerpyBatching = True  # as in a poll with several events
            transport.write(b"a")
            transport.writeSequence([b"b", b"c"])
            transport.write(b"")
            transport.write(b"d")
            self.assertEqual(transport._batch, [b"a", b"bc", b"d"])
            transport.loseConnection()
            self.assertIsNone(transport._batch)

        client = self.exchange(script)
        self.assertEqual(client.data, b"abcd")
        client.reason.trap(ConnectionDone)

    def test_sentBeforeNextPoll(self) -> None:
        """
        A batch is sent when the loop polls again: the peer gets it without
        any close or further write.
        """
        sent: List[Any] = []

        def script(transport: Any) -> None:
            self.reactor._linkerpyBatching = True  # as in a poll with several events
            transport.write(b"hello")
            self.assertEqual(transport._batch, [b"hello"])
            sent.append(transport)

        reactor = self.reactor
        port = net.listenTCP(reactor, 0, Factory.forProtocol(lambda: Writer(script)), interface="127.0.0.1")
        collector = Collector()

        class Connect(ClientFactory):
            def buildProtocol(self, addr: Any) -> Protocol:
                return collector

        net.connectTCP(reactor, "127.0.0.1", port.getHost().port, Connect())
        seen: List[Any] = []

        def done() -> bool:
            if not seen and collector.data == b"hello":
                # Received with no close and no further write: note the
                # batch state, then end the connection.
                seen.append((sent[0]._batch, list(reactor._linkerpyPending)))
                sent[0].loseConnection()
            return collector.reason is not None

        try:
            runUntil(reactor, done)
        finally:
            port.stopListening()
            reactor._poller.close()
        self.assertEqual(seen, [(None, [])])

    def test_singleEventSendsAtOnce(self) -> None:
        """
        In a turn whose poll returned one event there is nothing to batch
        with: a write is sent at once.
        """

        def script(transport: Any) -> None:
            self.reactor._linkerpyBatching = False  # as after a one-event poll
            transport.write(b"at once")
            self.assertIsNone(transport._batch)
            self.assertEqual(self.reactor._linkerpyPending, [])
            transport.loseConnection()

        client = self.exchange(script)
        self.assertEqual(client.data, b"at once")
        client.reason.trap(ConnectionDone)

    def test_batchingFollowsThePoll(self) -> None:
        """
        The loop batches a turn's writes only when its poll returned more
        than one event.
        """
        reactor = EPollReactor()
        self.addCleanup(reactor._poller.close)
        polls = [[(1000, reactor._POLL_IN)], [(1000, reactor._POLL_IN), (1001, reactor._POLL_IN)], []]

        class Poller:
            def poll(self, timeout: float, maxevents: int) -> Any:
                return polls.pop(0)

        reactor._poller = Poller()
        self.assertTrue(net.tuneReactor(reactor))
        seen = []
        for _ in range(3):
            reactor.doIteration(0)
            seen.append(reactor._linkerpyBatching)
        self.assertEqual(seen, [False, True, False])

    def test_largeWrites(self) -> None:
        """
        Writes past the batch limit (sent at once, the rest through
        Twisted's buffer) keep their order.
        """
        pieces = [bytes([65 + i % 26]) * (net.BATCH_LIMIT // 3 + i) for i in range(12)]
        pieces.append(b"z" * (net.BATCH_LIMIT * 3))

        def script(transport: Any) -> None:
            for piece in pieces:
                transport.write(piece)
            transport.write(b"end")
            transport.loseConnection()

        client = self.exchange(script)
        self.assertEqual(client.data, b"".join(pieces) + b"end")
        client.reason.trap(ConnectionDone)

    def test_abortDropsBatch(self) -> None:
        """
        C{abortConnection} drops the unsent batch and resets the connection.
        """

        def script(transport: Any) -> None:
            self.reactor._linkerpyBatching = True
            transport.write(b"never sent")
            transport.abortConnection()
            self.assertIsNone(transport._batch)

        client = self.exchange(script)
        self.assertEqual(client.data, b"")
        self.assertIsNotNone(client.reason)

    def test_halfClose(self) -> None:
        """
        C{loseWriteConnection} sends the batch before the FIN.
        """

        def script(transport: Any) -> None:
            self.reactor._linkerpyBatching = True
            transport.write(b"half")
            self.assertEqual(transport._batch, [b"half"])
            transport.loseWriteConnection()
            transport.reactor.callLater(0.05, transport.loseConnection)

        client = self.exchange(script)
        self.assertEqual(client.data, b"half")
