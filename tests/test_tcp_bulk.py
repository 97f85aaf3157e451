"""
Tests for L{linkerpy.protocol.tcp.bulk}: the bulk relay on real socket
pairs (driven by hand, no reactor), which transports it takes over, and a
spliced connection switching to it over real loopback connections.
"""

from __future__ import annotations

import hashlib
import socket
import struct
from typing import Any, List

from twisted.internet import defer, main, reactor
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from linkerpy.protocol.tcp import bulk
from tests.support import waitUntil
from tests.test_tcp_support import Client, HashingEcho, connect, listen, metric, startTcpRouter


class FakeTransport:
    """
    Just enough of a Twisted TCP transport for a L{bulk.BulkRelay}: a real
    non-blocking socket, Twisted's write buffer fields, and whether it was
    last asked to read and to write.
    """

    def __init__(self, skt: socket.socket) -> None:
        skt.setblocking(False)
        self.socket = skt
        self.dataBuffer = b""
        self.offset = 0
        self._tempDataBuffer: List[bytes] = []
        self.connected = True
        self.disconnecting = False
        self.reading = True
        self.writing = False
        self.twistedReads = 0
        self.twistedWrites = 0

    def doRead(self) -> Any:
        self.twistedReads += 1
        return None

    def doWrite(self) -> Any:
        self.twistedWrites += 1
        return None

    def stopReading(self) -> None:
        self.reading = False

    def startReading(self) -> None:
        self.reading = True

    def startWriting(self) -> None:
        self.writing = True


def pair(case: SynchronousTestCase) -> Any:
    a, b = socket.socketpair()
    case.addCleanup(a.close)
    case.addCleanup(b.close)
    return a, b


def drain(skt: socket.socket) -> bytes:
    skt.setblocking(False)
    chunks = []
    while True:
        try:
            data = skt.recv(1 << 20)
        except BlockingIOError:
            return b"".join(chunks)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


class BulkRelayTests(SynchronousTestCase):
    """
    One direction relayed between real sockets.
    """

    def setUp(self) -> None:
        self.peerOfSource, src = pair(self)
        dst, self.peerOfDestination = pair(self)
        self.source = FakeTransport(src)
        self.destination = FakeTransport(dst)
        self.counted: List[int] = []
        self.relay = bulk.BulkRelay(self.source, self.destination, self.counted.append)

    def test_takesOverReadAndWrite(self) -> None:
        """
        The relay installs itself as the source's C{doRead} and the
        destination's C{doWrite}; closing it gives them back.
        """
        self.assertEqual(self.source.doRead, self.relay.doRead)
        self.assertEqual(self.destination.doWrite, self.relay.doWrite)
        self.relay.close()
        self.assertEqual(self.source.doRead(), None)
        self.assertEqual(self.source.twistedReads, 1)
        self.assertNotIn("doWrite", self.destination.__dict__)

    def test_relaysAndCounts(self) -> None:
        """
        What the source's peer sends reaches the destination's peer, and
        every byte read is counted once.
        """
        self.peerOfSource.sendall(b"hello bulk")
        self.assertIsNone(self.relay.doRead())
        self.assertEqual(drain(self.peerOfDestination), b"hello bulk")
        self.assertEqual(self.counted, [10])
        self.assertFalse(self.relay.blocked)
        self.assertTrue(self.source.reading)
        self.assertFalse(self.destination.writing)

    def test_nothingToRead(self) -> None:
        """
        A spurious readiness (EAGAIN) is not an error.
        """
        self.assertIsNone(self.relay.doRead())
        self.assertEqual(self.counted, [])

    def test_endOfStream(self) -> None:
        """
        The source's FIN is reported to the reactor as Twisted reports it.
        """
        self.peerOfSource.shutdown(socket.SHUT_WR)
        self.assertIs(self.relay.doRead(), main.CONNECTION_DONE)
        self.assertTrue(self.relay.readEnded)

    def test_sourceReset(self) -> None:
        """
        A reset on the source is a lost connection.
        """
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        peer = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        self.addCleanup(accepted.close)
        relay = bulk.BulkRelay(FakeTransport(accepted), self.destination, self.counted.append)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()
        self.assertIs(relay.doRead(), main.CONNECTION_LOST)

    def test_holdsBackWhatTheDestinationDoesNotTake(self) -> None:
        """
        When the destination's socket buffer is full, the rest of a read is
        kept, the source is no longer read and the destination is watched;
        when it can be written again the rest goes first, then reading
        resumes and Twisted's own doWrite runs (for its buffer, closing,
        half-closing).  Every byte arrives once, in order.
        """
        block = hashlib.sha256(b"block").digest() * 2048  # 64 KiB
        sent = bytearray()
        received = bytearray()
        while not self.relay.blocked:
            sent += block[: self.peerOfSource.send(block)]
            self.assertIsNone(self.relay.doRead())
        self.assertFalse(self.source.reading)
        self.assertTrue(self.destination.writing)
        held = len(self.relay.remainder)
        self.assertGreater(held, 0)
        self.assertLessEqual(held, bulk.READ_SIZE)
        # Reading resumed by someone else while blocked: a read reads
        # nothing and stops reading again.
        self.source.startReading()
        before = sum(self.counted)
        self.assertIsNone(self.relay.doRead())
        self.assertEqual(sum(self.counted), before)
        self.assertFalse(self.source.reading)
        # The destination drains; the relay sends the rest, then resumes.
        while self.relay.blocked:
            received += drain(self.peerOfDestination)
            self.assertIsNone(self.relay.doWrite())
        self.assertEqual(self.relay.remainder, b"")
        self.assertTrue(self.source.reading)
        self.assertEqual(self.destination.twistedWrites, 1)
        while sum(self.counted) < len(sent):
            self.assertIsNone(self.relay.doRead())
            received += drain(self.peerOfDestination)
        received += drain(self.peerOfDestination)
        self.assertEqual(sum(self.counted), len(sent))
        self.assertEqual(bytes(received), bytes(sent))

    def test_twistedOutputGoesFirst(self) -> None:
        """
        While Twisted holds bytes for the destination, reads go through
        Twisted's own path (behind them), so nothing is reordered.
        """
        self.destination.dataBuffer = b"earlier"
        self.peerOfSource.sendall(b"later")
        self.relay.doRead()
        self.assertEqual(self.source.twistedReads, 1)
        self.assertEqual(drain(self.peerOfDestination), b"")
        self.destination.offset = len(self.destination.dataBuffer)
        self.relay.doRead()
        self.assertEqual(drain(self.peerOfDestination), b"later")

    def test_destinationBroken(self) -> None:
        """
        A destination that fails while bytes are held reports a lost
        connection from its doWrite.
        """
        self.relay.remainder = memoryview(b"held back")
        self.relay.blocked = True
        self.peerOfDestination.close()
        result = self.relay.doWrite()
        if result is None:  # the first send after the close may still succeed
            result = self.relay.doWrite()
        self.assertIs(result, main.CONNECTION_LOST)


class EligibleTests(SynchronousTestCase):
    """
    Which transports the relay may take over.
    """

    def test_memoryTransport(self) -> None:
        self.assertFalse(bulk.eligible(StringTransport()))

    def test_realConnection(self) -> None:
        """
        An open plain TCP transport is eligible; one with a socketOptions
        read timeout, or one closing, is not.
        """
        from twisted.internet import tcp

        a, b = pair(self)
        t = tcp.Connection(a, None, reactor)
        t.connected = True  # as tcp.Server and tcp.Client set it
        self.assertTrue(bulk.eligible(t))
        t._readTimeout = 5.0
        self.assertFalse(bulk.eligible(t))
        t._readTimeout = None
        t.disconnecting = True
        self.assertFalse(bulk.eligible(t))


class SwitchTests(TestCase):
    """
    Spliced connections over real loopback sockets switch to the bulk relay
    once a direction carries more than C{BULK_AFTER} bytes.
    """

    timeout = 120

    def router(self, port: int) -> Any:
        from linkerpy.protocol.tcp.splice import Splice

        self.splices: List[Any] = []
        start = Splice.start

        def recordingStart(splice: Any, *args: Any, **kwargs: Any) -> None:
            self.splices.append(splice)
            start(splice, *args, **kwargs)

        self.patch(Splice, "start", recordingStart)
        return startTcpRouter(self, {"dtab": f"/svc/x => /$/inet/127.0.0.1/{port}", "servers": [{"port": 0, "dstName": "/svc/x"}]})

    @defer.inlineCallbacks
    def test_bulkBothWays(self) -> Any:
        """
        4 MiB to an echoing origin and back: both directions switch, every
        byte arrives in order (same SHA-256), the client's FIN reaches the
        origin, and the counters count every byte once.
        """
        payload = hashlib.sha256(b"seed").digest() * (4 * 1024 * 1024 // 32)
        echo = listen(self, HashingEcho)
        router = self.router(echo.port)
        client = yield connect(self, router.ports[0], Client(payload, halfClose=True))
        yield client.done
        [splice] = self.splices
        yield waitUntil(lambda: splice.finished, 60, "the router to close both sides")
        self.assertEqual(len(client.received), len(payload))
        self.assertEqual(hashlib.sha256(client.received).digest(), hashlib.sha256(payload).digest())
        self.assertEqual(echo.connections[0].digest.digest(), hashlib.sha256(payload).digest())
        self.assertTrue(echo.connections[0].eof)
        self.assertEqual(len(splice._relays), 2)
        self.assertTrue(all(r.closed for r in splice._relays))
        self.assertEqual((splice.sentBytes, splice.receivedBytes), (len(payload), len(payload)))
        client_ = f"rt/tcp/client/$/inet/127.0.0.1/{echo.port}"
        self.assertEqual(metric(router, f"{client_}/sent_bytes"), len(payload))
        self.assertEqual(metric(router, f"{client_}/received_bytes"), len(payload))

    @defer.inlineCallbacks
    def test_shortConnectionsDoNotSwitch(self) -> Any:
        """
        A connection that carries little stays on Twisted's path.
        """
        echo = listen(self, HashingEcho)
        router = self.router(echo.port)
        client = yield connect(self, router.ports[0], Client(b"x" * 1000, halfClose=True))
        yield client.done
        self.assertEqual(client.received, b"x" * 1000)
        [splice] = self.splices
        self.assertEqual(splice._relays, [])
