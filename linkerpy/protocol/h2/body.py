# -*- test-case-name: tests.test_h2_connection -*-
"""
Stream bodies: L{H2Body}, the data of a stream as it is received (an
L{IBodySource<linkerpy.protocol.http.interfaces.IBodySource>}), and
L{StreamSink}, the writer of a stream's data (an C{IBodySink}).

Flow control is how back-pressure crosses HTTP/2: received bytes are
acknowledged to the peer (a C{WINDOW_UPDATE}, so it may send more) only
once they have been handed to the body's consumer I{and} the consumer is
not paused.  A sink pauses its source as soon as it holds data it cannot
send yet (the far peer's window is exhausted, or the far transport is
full), and resumes it when that data has left.  Bytes held by the router
for one stream are therefore bounded by the stream's receive window.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Deque, List, Optional

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import implementer

from linkerpy.protocol.h2.errors import ErrorCodes, StreamReset
from linkerpy.protocol.h2.headers import H2Headers
from linkerpy.protocol.http.errors import BodyAborted
from linkerpy.protocol.http.interfaces import IBodySink, IBodySource

__all__ = ["H2Body", "H2Stream", "StreamSink", "resetCodeFor"]

_OPEN = 0
_DONE = 1
_FAILED = 2
_ABORTED = 3


def resetCodeFor(reason: Any) -> int:
    """
    The RST_STREAM code that passes a body failure on: the same code when
    the failure is a peer's reset, C{CANCEL} otherwise.
    """
    exc = getattr(reason, "value", reason)
    for candidate in (exc, getattr(exc, "cause", None)):
        code = getattr(candidate, "errorCode", None)
        if code is not None:
            return int(code)
    return ErrorCodes.CANCEL


@implementer(IBodySource)
class H2Body:
    """
    The data of one stream, from its peer.

    The owning connection feeds it (L{_deliver}, L{_finish}, L{_fail}) and
    provides C{_ack(streamId, n)} (acknowledge C{n} flow-controlled bytes)
    and C{_abortInbound(streamId, code)} (reset the stream).

    Before a consumer is attached, received data is kept (unacknowledged,
    so the peer can send at most one window of it).

    @ivar length: the announced C{content-length}, or C{None}.
    @ivar received: data bytes received so far.
    @ivar trailers: the trailers (an L{H2Headers}) once received.
    """

    __slots__ = (
        "_owner",
        "_sid",
        "_consumer",
        "_buffer",
        "_buffered",
        "_state",
        "_failure",
        "_paused",
        "_unacked",
        "_observers",
        "_settle",
        "length",
        "received",
        "trailers",
    )

    def __init__(self, owner: Any, streamId: int, length: Optional[int] = None) -> None:
        self._owner = owner
        self._sid = streamId
        self._consumer: Any = None
        self._buffer: List[bytes] = []
        self._buffered = 0
        self._state = _OPEN
        self._failure: Optional[Failure] = None
        self._paused = False
        self._unacked = 0
        self._observers: Optional[List[Callable[[Optional[Failure]], None]]] = None
        self._settle: Any = None
        self.length = length
        self.received = 0
        self.trailers: Optional[H2Headers] = None

    # -- owner side -------------------------------------------------------------

    def _deliver(self, data: bytes, flowLength: int) -> None:
        self._unacked += flowLength
        if self._state != _OPEN:
            self._ackAll()
            return
        self.received += len(data)
        consumer = self._consumer
        if consumer is None:
            if data:
                self._buffer.append(data)
                self._buffered += len(data)
                settle = self._settle
                if settle is not None and self._buffered > settle[1]:
                    self._fireSettle()
            return
        if data:
            consumer.dataReceived(data)
        if not self._paused:
            self._ackAll()

    def _deliverLast(self, data: bytes, flowLength: int) -> None:
        """
        The last data of the stream (DATA with END_STREAM, no trailers).  A
        consumer with C{endWith(data)} (a L{StreamSink}) gets both at once.
        """
        consumer = self._consumer
        endWith = getattr(consumer, "endWith", None) if consumer is not None else None
        if endWith is None or self._state != _OPEN or not data:
            self._deliver(data, flowLength)
            self._finish(None)
            return
        self._unacked += flowLength
        self.received += len(data)
        self._state = _DONE
        self._ended(None)
        self._consumer = None
        endWith(data)
        if not self._paused:
            self._ackAll()
        self._fireSettle()

    def _ackAll(self) -> None:
        n = self._unacked
        if n:
            self._unacked = 0
            self._owner._ack(self._sid, n)

    def _finish(self, trailers: Optional[H2Headers]) -> None:
        if self._state != _OPEN:
            return
        self._state = _DONE
        self.trailers = trailers
        self._ended(None)
        consumer = self._consumer
        if consumer is not None:
            self._consumer = None
            consumer.bodyEnd(trailers)
        self._fireSettle()

    def _fail(self, reason: Failure) -> None:
        if self._state != _OPEN:
            return
        self._state = _FAILED
        self._ackAll()
        self._ended(reason)
        consumer = self._consumer
        if consumer is not None:
            self._consumer = None
            consumer.bodyAborted(reason)
        else:
            self._failure = reason
            self._buffer = []
            self._buffered = 0
        self._fireSettle()

    def _ended(self, failure: Optional[Failure]) -> None:
        observers, self._observers = self._observers, None
        if observers:
            for fn in observers:
                fn(failure)

    # -- observation --------------------------------------------------------------

    def onEnd(self, fn: Callable[[Optional[Failure]], None]) -> None:
        """
        Call C{fn(failure)} once when the body is over: C{None} when it
        ended normally (L{trailers} is then set), else a C{Failure} (the
        peer reset the stream, the connection was lost, or the body was
        aborted locally).  Called before the consumer hears of it.
        """
        if self._state == _OPEN:
            if self._observers is None:
                self._observers = [fn]
            else:
                self._observers.append(fn)
        elif self._state == _DONE:
            fn(None)
        else:
            fn(self._failure or Failure(BodyAborted("body aborted")))

    def settled(self, maxBytes: int) -> "Deferred[None]":
        """
        Before a consumer is attached: a C{Deferred} firing when the body
        has ended (or failed), or as soon as more than C{maxBytes} are
        buffered.  Only one may be outstanding.
        """
        d: Deferred = Deferred(lambda _: self._cancelSettle())
        if self._state != _OPEN or self._buffered > maxBytes:
            d.callback(None)
        else:
            self._settle = (d, maxBytes)
        return d

    def _cancelSettle(self) -> None:
        self._settle = None

    def _fireSettle(self) -> None:
        settle, self._settle = self._settle, None
        if settle is not None and not settle[0].called:
            settle[0].callback(None)

    # -- consumer side ----------------------------------------------------------

    @property
    def finished(self) -> bool:
        """
        The whole body has been received and is held here.
        """
        return self._state == _DONE

    @property
    def failed(self) -> bool:
        return self._state == _FAILED

    @property
    def buffered(self) -> int:
        """
        Bytes held because no consumer is attached yet.
        """
        return self._buffered

    def attach(self, consumer: Any) -> None:
        if self._state == _ABORTED:
            consumer.bodyAborted(Failure(BodyAborted("body already aborted")))
            return
        buffered = self._buffer
        if buffered:
            self._buffer = []
            self._buffered = 0
            for chunk in buffered:
                consumer.dataReceived(chunk)
                if self._state == _ABORTED:
                    return
        state = self._state
        if state == _DONE:
            self._ackAll()
            consumer.bodyEnd(self.trailers)
            return
        if state == _FAILED:
            failure, self._failure = self._failure, None
            consumer.bodyAborted(failure)
            return
        if state == _ABORTED:
            return
        self._consumer = consumer
        if not self._paused:
            self._ackAll()

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            if self._consumer is not None or self._state != _OPEN:
                self._ackAll()

    def abort(self, reason: Any = None, code: int = ErrorCodes.CANCEL) -> None:
        """
        The consumer no longer wants the body: reset the stream (C{code},
        default C{CANCEL}) if the peer is still sending it.
        """
        state = self._state
        self._consumer = None
        self._buffer = []
        self._buffered = 0
        if state == _OPEN:
            self._state = _ABORTED
            self._ackAll()
            self._owner._abortInbound(self._sid, code)
            self._ended(Failure(BodyAborted("body aborted locally")))
            self._fireSettle()
        elif state != _ABORTED:
            self._state = _ABORTED
            self._ackAll()

    pauseProducing = pause
    resumeProducing = resume

    def stopProducing(self) -> None:
        self.abort()


@implementer(IBodySink)
class StreamSink:
    """
    Writes one stream's data (and trailers) with the owning connection's
    flow control.  Also an L{IBodyConsumer<linkerpy.protocol.http.interfaces.IBodyConsumer>}:
    C{streamFrom(source)} pipes a body source in, pausing it while data
    waits for window space.

    @ivar source: the attached source, if any.
    @ivar closed: the stream was ended or reset.
    """

    __slots__ = ("_owner", "_stream", "source")

    def __init__(self, owner: Any, stream: Any) -> None:
        self._owner = owner
        self._stream = stream
        self.source: Any = None

    @property
    def closed(self) -> bool:
        return self._stream.outClosed

    def write(self, data: bytes) -> None:
        if data:
            self._owner._queueData(self._stream, data)

    def end(self, trailers: Optional[H2Headers] = None) -> None:
        self._owner._queueEnd(self._stream, trailers)

    def endWith(self, data: bytes) -> None:
        """
        Write the last data and end the stream (no trailers).
        """
        self._owner._queueDataEnd(self._stream, data)

    def abort(self, reason: Any = None) -> None:
        """
        Reset the stream: with the peer's code when C{reason} is an upstream
        reset, else C{CANCEL}.
        """
        code = resetCodeFor(reason) if reason is not None else ErrorCodes.CANCEL
        self._owner._resetStream(self._stream, code)

    dataReceived = write
    bodyEnd = end
    bodyAborted = abort

    def streamFrom(self, source: Any) -> None:
        self.source = source
        self._stream.source = source
        source.attach(self)


def isReset(failure: Optional[Failure]) -> bool:
    """
    Whether a body failure is a peer's stream reset.
    """
    return failure is not None and isinstance(failure.value, StreamReset)


class H2Stream:
    """
    This side's record of one stream.

    @ivar id: the stream id.
    @ivar body: the inbound L{H2Body} (request body on servers, response body
        on clients), or C{None} when the peer sends no data.
    @ivar source: the body source feeding the outbound side, if any.
    @ivar pending: outbound data waiting for window space.
    @ivar endQueued: the outbound side should end once L{pending} is sent.
    @ivar inClosed: the peer ended or reset its side.
    @ivar outClosed: this side ended or reset its side.
    @ivar trailers: trailers received, or to send.
    @ivar owner: the server exchange or the client request.
    """

    __slots__ = (
        "id",
        "body",
        "source",
        "sink",
        "pending",
        "pendingBytes",
        "endQueued",
        "outTrailers",
        "inTrailers",
        "inClosed",
        "outClosed",
        "sourcePaused",
        "owner",
        "discardInbound",
    )

    def __init__(self, streamId: int) -> None:
        self.id = streamId
        self.body: Optional[H2Body] = None
        self.source: Any = None
        self.sink: Optional[StreamSink] = None
        self.pending: Deque[bytes] = deque()
        self.pendingBytes = 0
        self.endQueued = False
        self.outTrailers: Optional[H2Headers] = None
        self.inTrailers: Optional[H2Headers] = None
        self.inClosed = False
        self.outClosed = False
        self.sourcePaused = False
        self.owner: Any = None
        self.discardInbound = False

    @property
    def closed(self) -> bool:
        return self.inClosed and self.outClosed
