# -*- test-case-name: tests.test_tcp_splice -*-
"""
The byte pump between a client connection and an origin connection.

Shaped like L{twisted.protocols.portforward}: each transport is registered
as the (streaming) producer of the other, so when one side cannot keep up
its write buffer fills, Twisted pauses reading on the other side, and
memory stays bounded whatever the speeds.

Closing follows TCP:

  - end of stream from one side (a FIN, seen through
    C{IHalfCloseableProtocol.readConnectionLost}) half-closes the other
    side's write direction and nothing else: the opposite direction keeps
    flowing until it ends too, then both connections close.  A TLS
    transport cannot half-close at the TCP level: its write direction ends
    with a TLS C{close_notify} (it keeps reading until the peer answers);
  - a side that is gone entirely (closed or reset) closes the other one:
    gracefully (pending bytes are flushed) after a clean close, at once
    (abort, so the peer sees a reset) after an error;
  - no byte either way for C{idleTimeout} seconds closes both.

Byte counts go to the counters given by the router (server, service and
client scopes).  The splice is over when both connections are gone; it
then fires C{done} with a L{SpliceResult}.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ISSLTransport
from twisted.python.failure import Failure

from linkerpy.protocol.tcp import bulk

#: Read size (and write-buffer high-water mark) of spliced plain TCP
#: connections.
SPLICE_BUFFER = 131072

#: Who ended a splice first.
CLIENT = "client"
ORIGIN = "origin"
IDLE = "idle"
ROUTER = "router"


class SpliceResult:
    """
    How a spliced connection went (for failure accrual and metrics).

    @ivar sentBytes: bytes relayed from the client to the origin.
    @ivar receivedBytes: bytes relayed from the origin to the client.
    @ivar endedBy: L{CLIENT}, L{ORIGIN}, L{IDLE} or L{ROUTER}: who ended
        the first direction.
    @ivar clean: whether both connections closed without error.
    @ivar originError: the origin connection's failure reason, if it ended
        with an error.
    """

    __slots__ = ("sentBytes", "receivedBytes", "endedBy", "clean", "originError")

    def __init__(self, sentBytes: int, receivedBytes: int, endedBy: str, clean: bool, originError: Any) -> None:
        self.sentBytes = sentBytes
        self.receivedBytes = receivedBytes
        self.endedBy = endedBy
        self.clean = clean
        self.originError = originError

    @property
    def carriedBytes(self) -> bool:
        return bool(self.sentBytes or self.receivedBytes)

    @property
    def succeeded(self) -> bool:
        """
        A connection that carried bytes is a success; one that carried none
        is a failure only when the origin ended it (it accepted the
        connection and dropped it).
        """
        return self.carriedBytes or self.endedBy != ORIGIN

    def __repr__(self) -> str:
        return (
            f"<SpliceResult sent={self.sentBytes} received={self.receivedBytes} "
            f"endedBy={self.endedBy} clean={self.clean}>"
        )


def isTLS(transport: Any) -> bool:
    """
    Whether C{transport} is a TLS layer (which cannot half-close at the
    TCP level).
    """
    return ISSLTransport.providedBy(transport)


def _unregister(transport: Any) -> None:
    try:
        transport.unregisterProducer()
    except RuntimeError:
        pass  # none registered (test transports are strict about it)


def closeWrite(transport: Any) -> None:
    """
    End one transport's write direction: a FIN for TCP, a TLS
    C{close_notify} for TLS (reading continues until the peer answers).
    The transport's producer is unregistered first (Twisted does not finish
    closing a transport whose paused producer is still registered).
    """
    _unregister(transport)
    if isTLS(transport):
        transport.loseConnection()
    else:
        transport.loseWriteConnection()


def closeFully(transport: Any, clean: bool) -> None:
    """
    Close a transport: flushing pending bytes when C{clean}, else at once.
    """
    _unregister(transport)
    if clean:
        transport.loseConnection()
    else:
        transport.abortConnection()


class Splice:
    """
    Relays bytes between a client-side and an origin-side protocol.

    The two protocols call the C{client*}/C{origin*} methods; their
    C{transport} attributes are used for writing and flow control.
    """

    def __init__(
        self,
        client: Any,
        origin: Any,
        clock: Any,
        idleTimeout: Optional[float],
        upCounters: Sequence[Any] = (),
        downCounters: Sequence[Any] = (),
        onEnd: Optional[Callable[["Splice", SpliceResult], None]] = None,
        onIdle: Optional[Callable[[], None]] = None,
    ) -> None:
        """
        @param client: the client-side protocol (has C{transport}).
        @param origin: the origin-side protocol (has C{transport}).
        @param clock: C{IReactorTime}.
        @param idleTimeout: seconds without traffic before both sides are
            closed, or C{None}.
        @param upCounters: counters (C{.value}) bumped by the bytes relayed
            from the client to the origin.
        @param downCounters: counters bumped by the bytes relayed from the
            origin to the client.
        @param onEnd: called once with the result when both sides are gone.
        @param onIdle: called when the idle timeout closes the splice.
        """
        self.client = client
        self.origin = origin
        self.clock = clock
        self.idleTimeout = idleTimeout
        self.upCounters = tuple(upCounters)
        self.downCounters = tuple(downCounters)
        self.onEnd = onEnd
        self.onIdle = onIdle
        self.sentBytes = 0
        self.receivedBytes = 0
        self.upDone = False  # client -> origin direction finished
        self.downDone = False  # origin -> client direction finished
        self.clientGone = False
        self.originGone = False
        self.clean = True
        self.endedBy: Optional[str] = None
        self.originError: Any = None
        self.lastActivity = clock.seconds()
        self.finished = False
        self._idleCall: Any = None
        # Bytes relayed in each direction before it tries the bulk relay.
        self._bulkUpAt = self._bulkDownAt = bulk.BULK_AFTER if bulk.ENABLED else float("inf")
        self._relays: List[bulk.BulkRelay] = []

    # -- life cycle -----------------------------------------------------------------

    def start(self, pending: Sequence[bytes] = (), clientEnded: bool = False) -> None:
        """
        Begin relaying: send what the client sent before the origin was
        connected, wire flow control both ways and resume reading from the
        client.

        @param pending: bytes already read from the client.
        @param clientEnded: the client already ended its direction.
        """
        up = self.origin.transport
        down = self.client.transport
        for t in (up, down):
            if getattr(t, "bufferSize", None) == 65536 and hasattr(t, "socket"):
                t.bufferSize = SPLICE_BUFFER
        for chunk in pending:
            if chunk:
                self._relayedUp(len(chunk))
                up.write(chunk)
        down.registerProducer(up, True)
        if clientEnded:
            self.clientReadClosed()
        else:
            up.registerProducer(down, True)
            down.resumeProducing()
        if self.idleTimeout:
            self._idleCall = self.clock.callLater(self.idleTimeout, self._checkIdle)

    # -- from the client side -------------------------------------------------------------

    def clientData(self, data: bytes) -> None:
        self._relayedUp(len(data))
        self.origin.transport.write(data)
        if self.sentBytes >= self._bulkUpAt:
            self._bulkUpAt = float("inf")
            self._bulk(self.client.transport, self.origin.transport, self._relayedUp)

    def _relayedUp(self, n: int) -> None:
        """
        Count C{n} bytes relayed from the client to the origin.
        """
        self.sentBytes += n
        for counter in self.upCounters:
            counter.value += n
        self.lastActivity = self.clock.seconds()

    def clientReadClosed(self) -> None:
        """
        The client ended its direction (FIN).
        """
        if self.upDone:
            return
        self.upDone = True
        if self.endedBy is None:
            self.endedBy = CLIENT
        if not self.originGone:
            closeWrite(self.origin.transport)
        self._maybeClose()

    def clientLost(self, reason: Failure) -> None:
        """
        The client connection is gone.
        """
        if self.clientGone:
            return
        self.clientGone = True
        self.upDone = self.downDone = True
        clean = reason.check(ConnectionDone) is not None
        if not clean:
            self.clean = False
        if self.endedBy is None:
            self.endedBy = CLIENT
        if not self.originGone:
            closeFully(self.origin.transport, clean)
        self._maybeEnd()

    # -- from the origin side -------------------------------------------------------------

    def originData(self, data: bytes) -> None:
        self._relayedDown(len(data))
        self.client.transport.write(data)
        if self.receivedBytes >= self._bulkDownAt:
            self._bulkDownAt = float("inf")
            self._bulk(self.origin.transport, self.client.transport, self._relayedDown)

    def _relayedDown(self, n: int) -> None:
        """
        Count C{n} bytes relayed from the origin to the client.
        """
        self.receivedBytes += n
        for counter in self.downCounters:
            counter.value += n
        self.lastActivity = self.clock.seconds()

    def _bulk(self, source: Any, destination: Any, onBytes: Callable[[int], None]) -> None:
        """
        A direction carries bulk data: relay it with a L{bulk.BulkRelay}
        from now on, when both sides are plain TCP sockets.
        """
        if not self.finished and bulk.eligible(source) and bulk.eligible(destination):
            self._relays.append(bulk.BulkRelay(source, destination, onBytes))

    def originReadClosed(self) -> None:
        """
        The origin ended its direction (FIN).
        """
        if self.downDone:
            return
        self.downDone = True
        if self.endedBy is None:
            self.endedBy = ORIGIN
        if not self.clientGone:
            closeWrite(self.client.transport)
        self._maybeClose()

    def originLost(self, reason: Failure) -> None:
        """
        The origin connection is gone.
        """
        if self.originGone:
            return
        self.originGone = True
        self.upDone = self.downDone = True
        clean = reason.check(ConnectionDone) is not None
        if not clean:
            self.clean = False
            self.originError = reason
        if self.endedBy is None:
            self.endedBy = ORIGIN
        if not self.clientGone:
            closeFully(self.client.transport, clean)
        self._maybeEnd()

    # -- closing ----------------------------------------------------------------------

    def _maybeClose(self) -> None:
        if self.upDone and self.downDone:
            if not self.clientGone:
                closeFully(self.client.transport, True)
            if not self.originGone:
                closeFully(self.origin.transport, True)

    def abort(self, endedBy: str = ROUTER) -> None:
        """
        Close both sides at once (drain grace expired, router stopping).
        """
        if self.endedBy is None:
            self.endedBy = endedBy
        if not self.clientGone:
            self.client.transport.abortConnection()
        if not self.originGone:
            self.origin.transport.abortConnection()

    def close(self, endedBy: str = ROUTER) -> None:
        """
        Close both sides after flushing what is pending.
        """
        if self.endedBy is None:
            self.endedBy = endedBy
        self.upDone = self.downDone = True
        if not self.clientGone:
            closeFully(self.client.transport, True)
        if not self.originGone:
            closeFully(self.origin.transport, True)

    def _checkIdle(self) -> None:
        self._idleCall = None
        if self.finished:
            return
        assert self.idleTimeout is not None
        remaining = self.lastActivity + self.idleTimeout - self.clock.seconds()
        if remaining > 0:
            self._idleCall = self.clock.callLater(remaining, self._checkIdle)
            return
        if self.onIdle is not None:
            self.onIdle()
        self.close(IDLE)

    def _maybeEnd(self) -> None:
        if not (self.clientGone and self.originGone) or self.finished:
            return
        self.finished = True
        if self._idleCall is not None and self._idleCall.active():
            self._idleCall.cancel()
        self._idleCall = None
        for relay in self._relays:
            relay.close()
        result = SpliceResult(self.sentBytes, self.receivedBytes, self.endedBy or CLIENT, self.clean, self.originError)
        if self.onEnd is not None:
            self.onEnd(self, result)
