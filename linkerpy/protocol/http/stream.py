# -*- test-case-name: tests.test_http_framing -*-
"""
Body sources: the empty body, bytes made locally, bodies read from a
connection, the bounded replay buffer used for retries, and a collector.

See L{linkerpy.protocol.http.interfaces} for the contract.
"""

from __future__ import annotations

from typing import Any, List, Optional

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import implementer

from linkerpy.protocol.http.errors import BodyAborted
from linkerpy.protocol.http.headers import Headers
from linkerpy.protocol.http.interfaces import IBodyConsumer, IBodySource

__all__ = [
    "EMPTY_BODY",
    "EmptyBody",
    "BytesBody",
    "ConnectionBody",
    "ReplayBuffer",
    "collect",
]


@implementer(IBodySource)
class EmptyBody:
    """
    A body with no bytes.  Stateless; use the L{EMPTY_BODY} instance.
    """

    __slots__ = ()
    length = 0
    finished = True

    def attach(self, consumer: Any) -> None:
        consumer.bodyEnd(None)

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def abort(self, reason: Any = None) -> None:
        pass

    pauseProducing = pause
    resumeProducing = resume

    def stopProducing(self) -> None:
        pass


EMPTY_BODY = EmptyBody()


@implementer(IBodySource)
class BytesBody:
    """
    A body held in memory (locally generated responses, tests).
    """

    __slots__ = ("data", "trailers", "length")
    finished = True

    def __init__(self, data: bytes, trailers: Optional[Headers] = None) -> None:
        self.data = data
        self.trailers = trailers
        self.length = len(data)

    def attach(self, consumer: Any) -> None:
        if self.data:
            consumer.dataReceived(self.data)
        consumer.bodyEnd(self.trailers)

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def abort(self, reason: Any = None) -> None:
        pass

    pauseProducing = pause
    resumeProducing = resume

    def stopProducing(self) -> None:
        pass


# ConnectionBody states
_OPEN = 0
_DONE = 1
_FAILED = 2
_ABORTED = 3


@implementer(IBodySource)
class ConnectionBody:
    """
    A body being read from a connection (a request body on the server, a
    response body on the client).

    The connection protocol (the I{owner}) feeds it with L{_deliver},
    L{_finish} and L{_fail}.  Until a consumer is attached, data is kept in a
    small buffer; past C{bufferLimit} bytes the owner is asked to stop
    reading.  The owner provides C{_bodyPause(source)}, C{_bodyResume(source)},
    C{_bodyAbort(source, reason)} and C{_bodyAttached(source)}.

    @ivar length: the announced length, or C{None}.
    """

    __slots__ = (
        "_owner",
        "_consumer",
        "_buffer",
        "_buffered",
        "_state",
        "_trailers",
        "_failure",
        "_bufferLimit",
        "_ownerPaused",
        "_consumerPaused",
        "length",
        "received",
    )

    def __init__(self, owner: Any, length: Optional[int], bufferLimit: int = 65536) -> None:
        self._owner = owner
        self._consumer: Any = None
        self._buffer: List[bytes] = []
        self._buffered = 0
        self._state = _OPEN
        self._trailers: Optional[Headers] = None
        self._failure: Optional[Failure] = None
        self._bufferLimit = bufferLimit
        self._ownerPaused = False
        self._consumerPaused = False
        self.length = length
        #: body bytes received so far
        self.received = 0

    # -- owner side -------------------------------------------------------

    def _deliver(self, data: bytes) -> None:
        self.received += len(data)
        consumer = self._consumer
        if consumer is not None:
            consumer.dataReceived(data)
            return
        if self._state != _OPEN:
            return
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered > self._bufferLimit and not self._ownerPaused:
            self._ownerPaused = True
            self._owner._bodyPause(self)

    def _finish(self, trailers: Optional[Headers]) -> None:
        if self._state != _OPEN:
            return
        self._state = _DONE
        consumer = self._consumer
        if consumer is not None:
            self._release()
            consumer.bodyEnd(trailers)
        else:
            self._trailers = trailers

    def _fail(self, reason: Failure) -> None:
        if self._state != _OPEN:
            return
        self._state = _FAILED
        consumer = self._consumer
        if consumer is not None:
            self._release()
            consumer.bodyAborted(reason)
        else:
            self._failure = reason
            self._buffer = []

    def _release(self) -> None:
        """
        The body is over: drop references so the owner can be reused.
        """
        self._consumer = None
        if self._ownerPaused or self._consumerPaused:
            self._ownerPaused = self._consumerPaused = False
            self._owner._bodyResume(self)

    # -- consumer side ----------------------------------------------------

    @property
    def finished(self) -> bool:
        return self._state == _DONE

    @property
    def failed(self) -> bool:
        return self._state == _FAILED

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
        state = self._state
        if state == _DONE:
            trailers, self._trailers = self._trailers, None
            consumer.bodyEnd(trailers)
            return
        if state == _FAILED:
            failure, self._failure = self._failure, None
            consumer.bodyAborted(failure)
            return
        self._consumer = consumer
        self._owner._bodyAttached(self)
        if self._ownerPaused:
            self._ownerPaused = False
            if not self._consumerPaused:
                self._owner._bodyResume(self)

    def pause(self) -> None:
        if self._state == _OPEN and not self._consumerPaused:
            self._consumerPaused = True
            if not self._ownerPaused:
                self._owner._bodyPause(self)

    def resume(self) -> None:
        if self._consumerPaused:
            self._consumerPaused = False
            if not self._ownerPaused and self._state == _OPEN:
                self._owner._bodyResume(self)

    def abort(self, reason: Any = None) -> None:
        state = self._state
        self._consumer = None
        self._buffer = []
        if state == _OPEN:
            self._state = _ABORTED
            self._owner._bodyAbort(self, reason)
        elif state != _ABORTED:
            self._state = _ABORTED

    pauseProducing = pause
    resumeProducing = resume

    def stopProducing(self) -> None:
        self.abort(None)


@implementer(IBodySource, IBodyConsumer)
class ReplayBuffer:
    """
    Keeps up to C{maxBytes} of a body so it can be sent again (a retry).

    Each attempt takes a fresh view with L{newSource}; only the newest view
    receives data (older views are cut off).  A view first replays the kept
    bytes, then follows the live body.  Once more than C{maxBytes} have gone
    through, L{kept} becomes C{False} and further views fail: the request is
    no longer retryable.

    @ivar kept: C{True} while every byte that went through is still held.
    """

    def __init__(self, source: Any, maxBytes: int = 65536) -> None:
        self._source = source
        self._maxBytes = maxBytes
        self._chunks: List[bytes] = []
        self._size = 0
        self.kept = True
        self._started = False
        self._state = _OPEN
        self._trailers: Optional[Headers] = None
        self._failure: Optional[Failure] = None
        self._current: Optional[_ReplayView] = None
        self.length = getattr(source, "length", None)

    @property
    def retryable(self) -> bool:
        """
        C{True} if a new view can still replay the whole body.
        """
        return self.kept and self._state != _FAILED

    def newSource(self) -> "_ReplayView":
        """
        A fresh L{IBodySource} over the whole body, superseding older views.

        @raise ValueError: if the body was not kept (too large).
        """
        if not self.kept:
            raise ValueError("request body exceeded the replay buffer")
        old = self._current
        view = self._current = _ReplayView(self)
        if old is not None:
            old._superseded = True
            if old._paused:
                old._paused = False
                self._source.resume()
        return view

    # -- as a consumer of the original source -------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.kept:
            self._size += len(data)
            if self._size > self._maxBytes:
                self.kept = False
                self._chunks = []
            else:
                self._chunks.append(data)
        view = self._current
        if view is not None and view._consumer is not None:
            view._consumer.dataReceived(data)

    def bodyEnd(self, trailers: Optional[Headers]) -> None:
        self._state = _DONE
        self._trailers = trailers
        view = self._current
        if view is not None and view._consumer is not None:
            consumer, view._consumer = view._consumer, None
            consumer.bodyEnd(trailers)

    def bodyAborted(self, reason: Failure) -> None:
        self._state = _FAILED
        self._failure = reason
        view = self._current
        if view is not None and view._consumer is not None:
            consumer, view._consumer = view._consumer, None
            consumer.bodyAborted(reason)

    def _attachView(self, view: "_ReplayView", consumer: Any) -> None:
        if view._superseded or view is not self._current:
            consumer.bodyAborted(Failure(BodyAborted("superseded by a newer attempt")))
            return
        if not self.kept and self._started:
            consumer.bodyAborted(Failure(BodyAborted("request body exceeded the replay buffer")))
            return
        for chunk in list(self._chunks):
            consumer.dataReceived(chunk)
        if self._state == _DONE:
            consumer.bodyEnd(self._trailers)
            return
        if self._state == _FAILED:
            consumer.bodyAborted(self._failure)
            return
        view._consumer = consumer
        if not self._started:
            self._started = True
            self._source.attach(self)


@implementer(IBodySource)
class _ReplayView:
    """
    One attempt's view of a L{ReplayBuffer}.
    """

    def __init__(self, buffer: ReplayBuffer) -> None:
        self._buffer = buffer
        self._consumer: Any = None
        self._superseded = False
        self._paused = False
        self.length = buffer.length

    @property
    def finished(self) -> bool:
        return self._buffer._state == _DONE

    def attach(self, consumer: Any) -> None:
        self._buffer._attachView(self, consumer)

    def pause(self) -> None:
        if not self._superseded and not self._paused:
            self._paused = True
            self._buffer._source.pause()

    def resume(self) -> None:
        if not self._superseded and self._paused:
            self._paused = False
            self._buffer._source.resume()

    def abort(self, reason: Any = None) -> None:
        # An attempt giving up must not kill the body a retry may still need:
        # just detach.  The owner of the ReplayBuffer aborts the original
        # source when it gives up on the request altogether.
        self._consumer = None
        if self._paused:
            self._paused = False
            self._buffer._source.resume()

    pauseProducing = pause
    resumeProducing = resume

    def stopProducing(self) -> None:
        self.abort()


@implementer(IBodyConsumer)
class _Collector:
    def __init__(self, maxBytes: Optional[int]) -> None:
        self.chunks: List[bytes] = []
        self.size = 0
        self.maxBytes = maxBytes
        self.deferred: Deferred[bytes] = Deferred()
        self.source: Any = None

    def dataReceived(self, data: bytes) -> None:
        if self.deferred.called:
            return
        self.size += len(data)
        if self.maxBytes is not None and self.size > self.maxBytes:
            self.deferred.errback(BodyAborted(f"body larger than {self.maxBytes} bytes"))
            if self.source is not None:
                self.source.abort()
            return
        self.chunks.append(data)

    def bodyEnd(self, trailers: Optional[Headers]) -> None:
        if not self.deferred.called:
            self.deferred.callback(b"".join(self.chunks))

    def bodyAborted(self, reason: Failure) -> None:
        if not self.deferred.called:
            self.deferred.errback(reason)


def collect(source: Any, maxBytes: Optional[int] = None) -> "Deferred[bytes]":
    """
    Read a whole body into memory (tests, small local bodies).

    @param maxBytes: fail with L{BodyAborted} (and abort the source) past
        this many bytes.
    @return: a C{Deferred} firing with the C{bytes}.
    """
    collector = _Collector(maxBytes)
    collector.source = source
    source.attach(collector)
    return collector.deferred
