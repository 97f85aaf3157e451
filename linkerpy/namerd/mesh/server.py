# -*- test-case-name: tests.test_mesh_server -*-
"""
A small gRPC server on linkerpy's HTTP/2 server connections: unary and
server-streaming methods, protobuf messages, no compression.

A call is a C{POST} to C{/<package>.<Service>/<Method>} with
C{content-type: application/grpc}.  The request (one message for the
methods served here) is read whole, up to C{maxMessageBytes}, then:

  - a I{unary} method's handler returns a message (or a Deferred of one),
    sent with C{grpc-status: 0} in the trailers;
  - a I{streaming} method's handler returns C{(var, render)}: the call
    observes the L{Var<linkerpy.naming.Var>} and sends
    C{render(value)} for each change (skipping L{SKIP} and messages equal
    to the last one sent), until the client cancels (RST_STREAM), the
    connection is lost, or C{render} raises L{GrpcError}, which ends the
    call with that status.  A streaming handler may instead return a
    Deferred: one message, then the end.

A handler raising L{GrpcError} ends the call with its status (a
"trailers-only" response when nothing was sent yet).  Unknown methods get
C{UNIMPLEMENTED}; a request message over the limit gets
C{RESOURCE_EXHAUSTED}.

A slow client never makes the server queue more than one message per
stream beyond the HTTP/2 windows: while its stream cannot take more, only
the latest message is kept (a stream carries states, and only the latest
state matters).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Optional, Set

from h2.errors import ErrorCodes
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from linkerpy.namerd.mesh.framing import (
    GrpcError,
    MessageDecoder,
    Status,
    encodeMessage,
    isGrpcContentType,
    responseHeaders,
    statusFields,
)
from linkerpy.protocol.h2.headers import H2Headers
from linkerpy.protocol.http.interfaces import IBodySource
from linkerpy.telemetry.metrics import MetricsTree

__all__ = ["Method", "GrpcServer", "SKIP", "parseTimeout"]

log = Logger()

#: Returned by a stream's render function for values that send nothing.
SKIP: Any = object()

_TIMEOUT = re.compile(rb"^(\d{1,8})([HMSmun])$")
_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}


def parseTimeout(value: Optional[bytes]) -> Optional[float]:
    """
    The seconds of a C{grpc-timeout} header (C{100m}, C{5S}), or C{None}
    when absent or malformed.
    """
    if not value:
        return None
    m = _TIMEOUT.match(value.strip())
    if m is None:
        return None
    return int(m.group(1)) * _UNITS[m.group(2)]


class Method:
    """
    One served method.

    @ivar path: C{b"/io.linkerd.mesh.Interpreter/GetBoundTree"}.
    @ivar requestType: the request message class.
    @ivar streaming: server streaming (else unary).
    @ivar handler: C{handler(request)}, see the module docstring.
    """

    __slots__ = ("path", "requestType", "streaming", "handler")

    def __init__(self, path: str, requestType: Any, streaming: bool, handler: Callable[[Any], Any]) -> None:
        self.path = path.encode("ascii")
        self.requestType = requestType
        self.streaming = streaming
        self.handler = handler


class GrpcServer:
    """
    The request handler of an L{H2ServerFactory<linkerpy.protocol.h2.server.H2ServerFactory>}
    serving gRPC methods.

    @ivar readTimeout: a request must have arrived whole (ended) within this
        many seconds, else the call ends with C{DEADLINE_EXCEEDED}.

    @ivar calls: the calls in progress.
    @ivar streams: the streaming calls in progress.
    """

    def __init__(
        self,
        methods: List[Method],
        clock: Any,
        maxMessageBytes: int = 4 * 1024 * 1024,
        maxStreams: int = 10000,
        metrics: Optional[MetricsTree] = None,
        readTimeout: float = 10.0,
    ) -> None:
        self.methods: Dict[bytes, Method] = {m.path: m for m in methods}
        self.clock = clock
        self.maxMessageBytes = maxMessageBytes
        self.maxStreams = maxStreams
        self.readTimeout = readTimeout
        self.calls: Set[_ServerCall] = set()
        self.streams: Set[_ServerCall] = set()
        self.metrics = metrics if metrics is not None else MetricsTree()
        self.requests = self.metrics.counter("requests")
        self.failures = self.metrics.counter("failures")
        self.metrics.gauge("streams", fn=lambda: len(self.streams))

    def handleRequest(self, exchange: Any) -> None:
        self.requests.value += 1
        request = exchange.request
        if request.method != b"POST":
            exchange.respondError(405, b"gRPC calls are POST requests\n", [(b"allow", b"POST")])
            _discard(exchange)
            return
        if not isGrpcContentType(request.headers.get(b"content-type")):
            exchange.respondError(415, b"content-type must be application/grpc\n")
            _discard(exchange)
            return
        method = self.methods.get(request.path)
        if method is None:
            name = request.path.decode("utf-8", "replace")
            self.refuse(exchange, GrpcError(Status.UNIMPLEMENTED, f"unknown method {name}"))
            return
        if method.streaming and len(self.streams) >= self.maxStreams:
            self.refuse(exchange, GrpcError(Status.RESOURCE_EXHAUSTED, f"too many open streams (limit {self.maxStreams})"))
            return
        _ServerCall(self, exchange, method).start()

    def refuse(self, exchange: Any, error: GrpcError) -> None:
        """
        Answer a call with a status only ("trailers-only").
        """
        self.failures.value += 1
        self.metrics.counter("status", str(error.code)).value += 1
        if not exchange.finished and not exchange.responseStarted:
            exchange.respond(responseHeaders(error.code, error.message), endStream=True)
        _discard(exchange)

    def shutdown(self, message: str = "the server is shutting down") -> None:
        """
        End every streaming call with C{UNAVAILABLE} (clients reconnect).
        """
        for call in list(self.calls):
            call.fail(GrpcError(Status.UNAVAILABLE, message))


def _discard(exchange: Any) -> None:
    """
    The rest of the request body is not wanted.
    """
    body = exchange.body
    if not getattr(body, "finished", False):
        try:
            body.abort(None, ErrorCodes.NO_ERROR)
        except TypeError:
            body.abort()


@implementer(IBodySource)
class _ServerCall:
    """
    One call: reads the request, runs the handler, sends the answer.  For
    a streaming call it is also the source of the response stream (the
    stream's sink pauses and resumes it, and aborts it when the stream is
    reset or the connection lost).
    """

    length = None
    finished = False

    def __init__(self, server: GrpcServer, exchange: Any, method: Method) -> None:
        self.server = server
        self.exchange = exchange
        self.method = method
        self.streaming = method.streaming
        self.decoder = MessageDecoder(self._onMessage, server.maxMessageBytes)
        self.messages: List[bytes] = []
        self.done = False
        self.responding = False
        self.sink: Any = None
        self.consumer: Any = None
        self.paused = False
        self.held: Optional[bytes] = None
        self.last: Optional[bytes] = None
        self.observation: Any = None
        self.pending: Optional[Deferred] = None
        self.timer: Any = None
        self.readTimer: Any = None
        self.render: Any = None

    # -- reading the request -----------------------------------------------------

    def start(self) -> None:
        self.server.calls.add(self)
        if self.streaming:
            self.server.streams.add(self)
        self.exchange.abortHandler = self._clientGone
        timeout = parseTimeout(self.exchange.request.headers.get(b"grpc-timeout"))
        if timeout is not None:
            self.timer = self.server.clock.callLater(timeout, self._deadline)
        self.readTimer = self.server.clock.callLater(self.server.readTimeout, self._readTimedOut)
        self.exchange.body.attach(self)

    def dataReceived(self, data: bytes) -> None:
        if self.done:
            return
        try:
            self.decoder.feed(data)
        except GrpcError as e:
            self.fail(e)

    def _onMessage(self, message: bytes) -> None:
        self.messages.append(message)
        if len(self.messages) > 1:
            raise GrpcError(Status.INTERNAL, "more than one request message for a method taking one")

    def bodyEnd(self, trailers: Any) -> None:
        self._cancelReadTimer()
        if self.done:
            return
        try:
            self.decoder.finish()
            if not self.messages:
                raise GrpcError(Status.INTERNAL, "the request has no message")
            try:
                request = self.method.requestType.FromString(self.messages[0])
            except Exception as e:  # protobuf's DecodeError and friends
                raise GrpcError(Status.INTERNAL, f"cannot parse the request message: {e}")
            self._dispatch(request)
        except GrpcError as e:
            self.fail(e)

    def bodyAborted(self, reason: Any) -> None:
        self._clientGone(reason)

    # -- running the handler ---------------------------------------------------------

    def _dispatch(self, request: Any) -> None:
        try:
            result = self.method.handler(request)
        except GrpcError:
            raise
        except Exception:
            log.failure("mesh API method {method} failed", method=self.method.path.decode())
            raise GrpcError(Status.INTERNAL, "internal error")
        if isinstance(result, Deferred):
            self.pending = result
            result.addCallbacks(self._single, self._failed)
            return
        if not self.streaming:
            self._single(result)
            return
        var, render = result
        self.render = render
        self.responding = True
        self.sink = self.exchange.respond(responseHeaders())
        self.sink.streamFrom(self)
        if not self.done:
            self.observation = var.observe(self._onValue)
            if self.done:
                self._release()

    def _single(self, message: Any) -> None:
        """
        A unary answer, or the one message of a single-value stream.
        """
        self.pending = None
        if self.done:
            return
        payload = encodeMessage(message.SerializeToString(deterministic=True))
        self.done = True
        self._release()
        sink = self.exchange.respond(responseHeaders())
        sink.write(payload)
        sink.end(H2Headers(statusFields(Status.OK)))

    def _failed(self, failure: Failure) -> None:
        self.pending = None
        if self.done:
            return
        if failure.check(GrpcError):
            self.fail(failure.value)
        elif failure.check(CancelledError):
            self.fail(GrpcError(Status.CANCELLED, "cancelled"))
        else:
            log.failure("mesh API method {method} failed", failure, method=self.method.path.decode())
            self.fail(GrpcError(Status.INTERNAL, failure.getErrorMessage()))

    def _readTimedOut(self) -> None:
        self.readTimer = None
        if not self.done:
            self.fail(GrpcError(Status.DEADLINE_EXCEEDED, "the request did not arrive in time"))

    def _cancelReadTimer(self) -> None:
        timer, self.readTimer = self.readTimer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _deadline(self) -> None:
        self.timer = None
        if not self.done:
            if self.pending is not None:
                pending, self.pending = self.pending, None
                pending.addErrback(lambda _: None)
                pending.cancel()
            self.fail(GrpcError(Status.DEADLINE_EXCEEDED, "deadline exceeded (grpc-timeout)"))

    # -- streaming ------------------------------------------------------------------------

    def _onValue(self, value: Any) -> None:
        if self.done:
            return
        try:
            message = self.render(value)
        except GrpcError as e:
            self.fail(e)
            return
        except Exception:
            log.failure("rendering a mesh API stream of {method}", method=self.method.path.decode())
            self.fail(GrpcError(Status.INTERNAL, "internal error"))
            return
        if message is SKIP:
            return
        payload = encodeMessage(message.SerializeToString(deterministic=True))
        if payload == self.last:
            return
        self.last = payload
        if self.paused or self.consumer is None:
            self.held = payload
            return
        self.consumer.dataReceived(payload)

    # IBodySource, for the response stream's sink

    def attach(self, consumer: Any) -> None:
        self.consumer = consumer

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        held, self.held = self.held, None
        if held is not None and not self.done and self.consumer is not None:
            self.consumer.dataReceived(held)

    def abort(self, reason: Any = None) -> None:
        # The stream was reset or the connection lost.
        self._clientGone(reason)

    pauseProducing = pause
    resumeProducing = resume
    stopProducing = abort

    # -- the end ------------------------------------------------------------------------------

    def fail(self, error: GrpcError) -> None:
        """
        End the call with a status other than OK.
        """
        if self.done:
            return
        self.done = True
        self._release()
        if self.responding and self.sink is not None:
            self.server.failures.value += 1
            self.server.metrics.counter("status", str(error.code)).value += 1
            held, self.held = self.held, None
            if held is not None:
                self.sink.write(held)
            self.sink.end(H2Headers(statusFields(error.code, error.message)))
            _discard(self.exchange)
        else:
            self.server.refuse(self.exchange, error)

    def _clientGone(self, reason: Any = None) -> None:
        if self.done:
            return
        self.done = True
        self._release()
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.addErrback(lambda _: None)
            pending.cancel()

    def _release(self) -> None:
        self.server.calls.discard(self)
        self.server.streams.discard(self)
        self._cancelTimer()
        self._cancelReadTimer()
        observation, self.observation = self.observation, None
        if observation is not None:
            observation.close()

    def _cancelTimer(self) -> None:
        timer, self.timer = self.timer, None
        if timer is not None and timer.active():
            timer.cancel()
