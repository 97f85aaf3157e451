"""
Unit tests for L{linkerpy.protocol.tcp.splice}: relaying, flow-control
wiring, half-close in each direction, full close after a clean close or an
error, TLS write-close, the idle timeout and the success verdict.
"""

from __future__ import annotations

from typing import Any, List

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from linkerpy.protocol.tcp.splice import CLIENT, IDLE, ORIGIN, SPLICE_BUFFER, Splice, SpliceResult, closeWrite, isTLS
from linkerpy.telemetry.metrics import Counter


class HalfCloseTransport(StringTransport):
    """
    A StringTransport that records half-closes and aborts.
    """

    def __init__(self) -> None:
        super().__init__()
        self.writeClosed = False
        self.aborted = False

    def loseWriteConnection(self) -> None:
        self.writeClosed = True

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()


@implementer(ISSLTransport)
class FakeTLSTransport(HalfCloseTransport):
    """
    Looks like a TLS layer: it cannot half-close at the TCP level.
    """

    def loseWriteConnection(self) -> None:  # pragma: no cover - must not be called
        raise AssertionError("a TLS transport was half-closed at the TCP level")


class Side:
    def __init__(self, transport: Any) -> None:
        self.transport = transport


def makeSplice(clock: Any = None, idle: Any = None, clientTLS: bool = False) -> Any:
    client = Side(FakeTLSTransport() if clientTLS else HalfCloseTransport())
    origin = Side(HalfCloseTransport())
    ended: List[SpliceResult] = []
    idles: List[int] = []
    up, down = Counter(), Counter()
    splice = Splice(
        client,
        origin,
        clock or Clock(),
        idle,
        [up],
        [down],
        onEnd=lambda s, r: ended.append(r),
        onIdle=lambda: idles.append(1),
    )
    return splice, client.transport, origin.transport, ended, idles, up, down


class RelayTests(SynchronousTestCase):
    """
    Bytes and flow control.
    """

    def test_startFlushesPendingAndWiresProducers(self) -> None:
        """
        Starting sends what the client sent before the origin was
        connected, makes each transport the producer of the other and
        resumes the client.
        """
        splice, client, origin, _, _, up, _ = makeSplice()
        client.pauseProducing()
        splice.start([b"early ", b"bytes"])
        self.assertEqual(origin.value(), b"early bytes")
        self.assertIs(client.producer, origin)
        self.assertIs(origin.producer, client)
        self.assertTrue(client.streaming and origin.streaming)
        self.assertEqual(client.producerState, "producing")
        self.assertEqual(up.value, 11)
        self.assertEqual(splice.sentBytes, 11)

    def test_largerReadsOnPlainTCP(self) -> None:
        """
        Plain TCP transports (Twisted's 64 KiB default) read and buffer
        SPLICE_BUFFER bytes at a time; others (a TLS layer) are left alone.
        """
        splice, client, origin, _, _, _, _ = makeSplice()
        origin.bufferSize = 65536
        origin.socket = object()
        client.bufferSize = 65536
        splice.start()
        self.assertEqual(origin.bufferSize, SPLICE_BUFFER)
        self.assertEqual(client.bufferSize, 65536)
        self.assertGreater(SPLICE_BUFFER, 65536)

    def test_bothWays(self) -> None:
        """
        Bytes go both ways and are counted per direction.
        """
        splice, client, origin, _, _, up, down = makeSplice()
        splice.start()
        splice.clientData(b"ping")
        splice.originData(b"pong!")
        self.assertEqual(origin.value(), b"ping")
        self.assertEqual(client.value(), b"pong!")
        self.assertEqual((up.value, down.value), (4, 5))


class CloseTests(SynchronousTestCase):
    """
    Half-close, full close, errors.
    """

    def test_clientHalfClose(self) -> None:
        """
        The client's FIN half-closes the origin's write side (after
        unregistering its producer); the origin can still answer; its FIN
        then closes both connections.
        """
        splice, client, origin, ended, _, _, _ = makeSplice()
        splice.start()
        splice.clientReadClosed()
        self.assertTrue(origin.writeClosed)
        self.assertIsNone(origin.producer)
        self.assertFalse(client.disconnecting)
        self.assertFalse(origin.disconnecting)
        splice.originData(b"late answer")
        self.assertEqual(client.value(), b"late answer")
        splice.originReadClosed()
        self.assertTrue(client.writeClosed)
        self.assertTrue(client.disconnecting and origin.disconnecting)
        self.assertFalse(client.aborted or origin.aborted)
        self.assertEqual(ended, [])
        splice.clientLost(Failure(ConnectionDone()))
        splice.originLost(Failure(ConnectionDone()))
        self.assertEqual(len(ended), 1)
        self.assertEqual(ended[0].endedBy, CLIENT)
        self.assertTrue(ended[0].clean)

    def test_originHalfClose(self) -> None:
        """
        The origin's FIN half-closes the client's write side only; the
        client can keep sending.
        """
        splice, client, origin, _, _, _, _ = makeSplice()
        splice.start()
        splice.originReadClosed()
        self.assertTrue(client.writeClosed)
        self.assertFalse(origin.writeClosed)
        splice.clientData(b"still talking")
        self.assertEqual(origin.value(), b"still talking")
        self.assertEqual(splice.endedBy, ORIGIN)

    def test_tlsClientWriteClose(self) -> None:
        """
        A TLS client side is write-closed with a TLS close (loseConnection),
        never a TCP half-close.
        """
        splice, client, origin, _, _, _, _ = makeSplice(clientTLS=True)
        self.assertTrue(isTLS(client))
        splice.start()
        splice.originReadClosed()
        self.assertTrue(client.disconnecting)
        self.assertFalse(client.writeClosed)

    def test_originClosedCleanly(self) -> None:
        """
        An origin that closes cleanly closes the client gracefully (pending
        bytes flushed).
        """
        splice, client, origin, ended, _, _, _ = makeSplice()
        splice.start()
        splice.originData(b"bye")
        splice.originLost(Failure(ConnectionDone()))
        self.assertTrue(client.disconnecting)
        self.assertFalse(client.aborted)
        self.assertIsNone(client.producer)
        splice.clientLost(Failure(ConnectionDone()))
        self.assertEqual(ended[0].receivedBytes, 3)
        self.assertTrue(ended[0].succeeded)

    def test_originReset(self) -> None:
        """
        An origin reset aborts the client connection (the client sees a
        reset, not a clean end), and the result records the error.
        """
        splice, client, origin, ended, _, _, _ = makeSplice()
        splice.start()
        splice.clientData(b"x")
        splice.originLost(Failure(ConnectionLost()))
        self.assertTrue(client.aborted)
        splice.clientLost(Failure(ConnectionLost()))
        self.assertFalse(ended[0].clean)
        self.assertIsNotNone(ended[0].originError)
        self.assertTrue(ended[0].succeeded)  # it carried a byte

    def test_clientReset(self) -> None:
        """
        A client reset aborts the origin connection.
        """
        splice, client, origin, ended, _, _, _ = makeSplice()
        splice.start()
        splice.clientLost(Failure(ConnectionLost()))
        self.assertTrue(origin.aborted)
        self.assertEqual(ended, [])
        splice.originLost(Failure(ConnectionDone()))
        self.assertEqual(ended[0].endedBy, CLIENT)

    def test_endsOnce(self) -> None:
        """
        Repeated notifications end the splice once.
        """
        splice, client, origin, ended, _, _, _ = makeSplice()
        splice.start()
        for _ in range(2):
            splice.clientReadClosed()
            splice.originReadClosed()
            splice.clientLost(Failure(ConnectionDone()))
            splice.originLost(Failure(ConnectionDone()))
        self.assertEqual(len(ended), 1)

    def test_clientEndedBeforeStart(self) -> None:
        """
        A client that ended its direction while the origin was being
        connected: the pending bytes are sent, then the origin's write side
        is closed.
        """
        splice, client, origin, _, _, _, _ = makeSplice()
        splice.start([b"all of it"], clientEnded=True)
        self.assertEqual(origin.value(), b"all of it")
        self.assertTrue(origin.writeClosed)
        self.assertIs(client.producer, origin)


class IdleTests(SynchronousTestCase):
    """
    The idle timeout.
    """

    def test_activityKeepsItOpen(self) -> None:
        """
        Traffic in either direction postpones the idle timeout; silence for
        the whole period closes both sides.
        """
        clock = Clock()
        splice, client, origin, ended, idles, _, _ = makeSplice(clock, idle=10.0)
        splice.start()
        clock.advance(6)
        splice.clientData(b"a")
        clock.advance(6)
        splice.originData(b"b")
        clock.advance(9.5)
        self.assertFalse(client.disconnecting or origin.disconnecting)
        clock.advance(0.5)
        self.assertTrue(client.disconnecting and origin.disconnecting)
        self.assertEqual(idles, [1])
        splice.clientLost(Failure(ConnectionDone()))
        splice.originLost(Failure(ConnectionDone()))
        self.assertEqual(ended[0].endedBy, IDLE)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_noTimerWithoutTimeout(self) -> None:
        """
        Without an idle timeout no timer is armed.
        """
        clock = Clock()
        splice, _, _, _, _, _, _ = makeSplice(clock, idle=None)
        splice.start()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_timerCancelledAtEnd(self) -> None:
        """
        The idle timer does not outlive the splice.
        """
        clock = Clock()
        splice, _, _, _, _, _, _ = makeSplice(clock, idle=10.0)
        splice.start()
        splice.clientLost(Failure(ConnectionDone()))
        splice.originLost(Failure(ConnectionDone()))
        self.assertEqual(clock.getDelayedCalls(), [])


class VerdictTests(SynchronousTestCase):
    """
    What counts as a success for failure accrual.
    """

    def test_verdicts(self) -> None:
        """
        Bytes carried: success; no bytes and the origin ended it: failure;
        no bytes and the client ended it: success.
        """
        self.assertTrue(SpliceResult(1, 0, ORIGIN, False, None).succeeded)
        self.assertTrue(SpliceResult(0, 1, ORIGIN, True, None).succeeded)
        self.assertFalse(SpliceResult(0, 0, ORIGIN, True, None).succeeded)
        self.assertTrue(SpliceResult(0, 0, CLIENT, True, None).succeeded)

    def test_closeWriteUnregisters(self) -> None:
        """
        closeWrite unregisters the producer before half-closing.
        """
        transport = HalfCloseTransport()
        transport.registerProducer(StringTransport(), True)
        closeWrite(transport)
        self.assertIsNone(transport.producer)
        self.assertTrue(transport.writeClosed)
