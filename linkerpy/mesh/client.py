# -*- test-case-name: tests.test_mesh_client -*-
"""
The router side's connection to namerd's mesh API: one L{MeshConnection}
per (router, namerd address, root, TLS settings), shared by the
interpreter and the policy sources, carrying every call as a stream of
one HTTP/2 connection; and one L{MeshStream} per streamed question.

A mesh stream sends its request, hands each message of the answer to its
owner, and when the stream ends (whatever the status) or cannot be
opened, calls again after a jittered, growing delay (C{retry.baseSeconds}
to C{retry.maxSeconds}; reset once a stream opens).  Owners keep their
last good value meanwhile, so routing goes on with the last bindings,
addresses and policy.  Stopping a stream resets it (C{CANCEL}), which
ends the watch on the server.

Metrics (under the router's scope): C{mesh/<root>/connected} (1 when
every open stream is connected), C{streams}, C{reconnects}, C{updates},
C{errors}.
"""

from __future__ import annotations

import random
import weakref
from typing import Any, Callable, Dict, List, Optional, Tuple

from h2.errors import ErrorCodes
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from linkerpy.namerd.client.reconnect import ReconnectingStream
from linkerpy.namerd.mesh.framing import (
    CONTENT_TYPE,
    GrpcError,
    MessageDecoder,
    Status,
    encodeMessage,
    isGrpcContentType,
    statusOf,
)
from linkerpy.protocol.h2.headers import H2Headers
from linkerpy.protocol.http.stream import BytesBody

__all__ = ["MeshConnection", "MeshStream", "connectionFor", "MAX_MESSAGE_BYTES"]

log = Logger()

#: The largest message accepted from namerd.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

_USER_AGENT = b"linkerpy-mesh"

_connections: "weakref.WeakKeyDictionary[Any, Dict[Tuple[Any, ...], MeshConnection]]" = weakref.WeakKeyDictionary()


def connectionFor(context: Any, config: Any) -> "MeshConnection":
    """
    The connection of a router (identified by its metrics scope) to a
    mesh interface and root, created on first use.
    """
    table = _connections.setdefault(context.metrics, {})
    key = (config.dst.host, config.dst.port, config.root, config.tls)
    conn = table.get(key)
    if conn is None:
        conn = table[key] = MeshConnection(context.reactor, config, context.metrics, configPath=context.configPath)
    return conn


class MeshConnection:
    """
    What the calls to one mesh interface and root share: the HTTP/2
    connection, the backoff settings, the metrics and the open streams.

    @ivar pool: the L{H2ClientPool<linkerpy.protocol.h2.pool.H2ClientPool>}
        (one connection, re-opened when lost).
    @ivar namespace: the root's namespace name.
    """

    def __init__(
        self,
        reactor: Any,
        config: Any,
        metrics: Any,
        rng: Optional[random.Random] = None,
        configPath: str = "",
        pool: Any = None,
    ) -> None:
        self.reactor = reactor
        self.dst = config.dst
        self.root = config.root
        self.namespace = config.root.elems[0].decode("utf-8")
        self.retry = config.retry
        self.random = rng or random.Random()
        self.scheme = b"https" if config.tls is not None else b"http"
        self.pool = pool if pool is not None else self._newPool(config, configPath)
        self.metrics = metrics.scope("mesh", self.namespace)
        self.streams: List[MeshStream] = []
        self.reconnects = self.metrics.counter("reconnects")
        self.updates = self.metrics.counter("updates")
        self.errors = self.metrics.counter("errors")
        self.metrics.gauge("streams", fn=lambda: len(self.streams))
        self.metrics.gauge("connected", fn=lambda: float(self.connected))

    def _newPool(self, config: Any, configPath: str) -> Any:
        from linkerpy.protocol.h2.connection import H2Settings
        from linkerpy.protocol.h2.pool import H2ClientPool

        creator = None
        if config.tls is not None:
            from linkerpy.tls.client import ClientTLSCreators

            creator = ClientTLSCreators(self.reactor).creatorFor(
                config.tls, address=(config.dst.host, config.dst.port), alpn=[b"h2"], configPath=f"{configPath}.tls"
            )
        window = getattr(config, "initialStreamWindowSizeKB", 1024) * 1024
        settings = H2Settings(initialStreamWindowBytes=window, connectionWindowBytes=max(window, 1048576))
        return H2ClientPool(
            self.reactor,
            config.dst.host,
            config.dst.port,
            settings=settings,
            tlsCreator=creator,
            connectTimeout=config.connectTimeoutMs / 1000.0,
        )

    @property
    def connected(self) -> bool:
        return bool(self.streams) and all(s.state == "connected" for s in self.streams)

    def headers(self, method: str) -> H2Headers:
        """
        The request headers of a call to C{method}
        (C{/io.linkerd.mesh.Interpreter/StreamBoundTree}).
        """
        return H2Headers(
            [
                (b":method", b"POST"),
                (b":scheme", self.scheme),
                (b":authority", self.dst.authority),
                (b":path", method.encode("ascii")),
                (b"content-type", CONTENT_TYPE),
                (b"te", b"trailers"),
                (b"user-agent", _USER_AGENT),
            ]
        )

    def newBackoff(self) -> Any:
        from linkerpy.policy.backoff import decorrelatedJittered

        return decorrelatedJittered(self.retry.baseSeconds, self.retry.maxSeconds, self.random)

    def unary(self, method: str, request: Any, responseType: Any, timeout: float = 10.0) -> Deferred:
        """
        A unary call.

        @return: a Deferred firing with the response message, or failing
            with L{GrpcError} (a status other than OK, or
            C{DEADLINE_EXCEEDED} after C{timeout} seconds), or with the
            connection's error when namerd cannot be reached.
        """
        call = _UnaryCall(self, method, request, responseType)
        d = call.start()
        timer = self.reactor.callLater(timeout, call.timedOut)

        def done(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        return d.addBoth(done)

    def state(self) -> Dict[str, Any]:
        """
        The admin page: this connection and its streams.
        """
        return {
            "dst": self.dst.__unstructure__(),
            "root": self.root.show,
            "tls": self.scheme == b"https",
            "connected": self.connected,
            "streams": [s.describe() for s in self.streams],
        }

    def close(self) -> Deferred:
        """
        Stop every stream and close the connection.
        """
        for stream in list(self.streams):
            stream.stop()
        return self.pool.close()


def _checkResponse(response: Any) -> Optional[GrpcError]:
    """
    The error a response head already tells (not a gRPC answer, or a
    trailers-only status), else C{None}.
    """
    head = response.head
    if head.status != 200:
        return GrpcError(Status.UNAVAILABLE if head.status in (502, 503, 504) else Status.UNKNOWN,
                         f"namerd answered HTTP {head.status}")
    if not isGrpcContentType(head.headers.get(b"content-type")):
        return GrpcError(Status.UNKNOWN, "namerd's answer is not a gRPC response (content-type)")
    return None


class _Reader:
    """
    Consumes a response body: messages to C{onMessage}, the status to
    C{onEnd(code, message)} (or C{onEnd(None, reason)} when the stream was
    lost).
    """

    def __init__(self, response: Any, onMessage: Callable[[bytes], None], onEnd: Callable[[Optional[int], str], None]) -> None:
        self.response = response
        self.onEnd = onEnd
        self.decoder = MessageDecoder(onMessage, MAX_MESSAGE_BYTES)
        self.over = False

    def dataReceived(self, data: bytes) -> None:
        if self.over:
            return
        try:
            self.decoder.feed(data)
        except GrpcError as e:
            self._end(e.code, e.message)
            self.response.body.abort()

    def bodyEnd(self, trailers: Any) -> None:
        if self.over:
            return
        try:
            self.decoder.finish()
        except GrpcError as e:
            self._end(e.code, e.message)
            return
        status = statusOf(trailers, self.response.head.headers)
        if status is None:
            self._end(Status.UNKNOWN, "the response ended without a grpc-status")
        else:
            self._end(*status)

    def bodyAborted(self, reason: Any) -> None:
        message = reason.getErrorMessage() if isinstance(reason, Failure) else str(reason)
        self._end(None, message)

    def _end(self, code: Optional[int], message: str) -> None:
        if not self.over:
            self.over = True
            self.onEnd(code, message)


class _UnaryCall:
    def __init__(self, connection: MeshConnection, method: str, request: Any, responseType: Any) -> None:
        self.connection = connection
        self.method = method
        self.request = request
        self.responseType = responseType
        self.result: Deferred = Deferred(self._cancel)
        self.inner: Optional[Deferred] = None
        self.response: Any = None
        self.messages: List[bytes] = []

    def start(self) -> Deferred:
        body = BytesBody(encodeMessage(self.request.SerializeToString()))
        self.inner = self.connection.pool.request(self.connection.headers(self.method), body)
        self.inner.addCallbacks(self._gotResponse, self._failed)
        return self.result

    def _cancel(self, _: Any) -> None:
        self._abandon()

    def _abandon(self) -> None:
        inner, self.inner = self.inner, None
        if inner is not None and not inner.called:
            inner.cancel()
        if self.response is not None:
            self.response.body.abort()

    def timedOut(self) -> None:
        if not self.result.called:
            self._abandon()
            self.result.errback(Failure(GrpcError(Status.DEADLINE_EXCEEDED, f"{self.method}: no answer in time")))

    def _failed(self, failure: Failure) -> None:
        self.inner = None
        if not self.result.called and not failure.check(CancelledError):
            self.result.errback(failure)

    def _gotResponse(self, response: Any) -> None:
        self.inner = None
        self.response = response
        if self.result.called:
            response.body.abort()
            return
        error = _checkResponse(response)
        if error is not None:
            response.body.abort()
            self.result.errback(Failure(error))
            return
        response.body.attach(_Reader(response, self.messages.append, self._ended))

    def _ended(self, code: Optional[int], message: str) -> None:
        if self.result.called:
            return
        if code is None:
            self.result.errback(Failure(GrpcError(Status.UNAVAILABLE, f"the stream was lost: {message}")))
        elif code != Status.OK:
            self.result.errback(Failure(GrpcError(code, message)))
        elif len(self.messages) != 1:
            self.result.errback(Failure(GrpcError(Status.INTERNAL, f"expected one response message, got {len(self.messages)}")))
        else:
            try:
                parsed = self.responseType.FromString(self.messages[0])
            except Exception as e:
                self.result.errback(Failure(GrpcError(Status.INTERNAL, f"cannot parse the response: {e}")))
                return
            self.result.callback(parsed)


class MeshStream(ReconnectingStream):
    """
    One streamed question, called again until stopped.

    @param onMessage: called with each decoded response message.
    @param onError: called with a message when namerd ends the stream with
        a status other than OK (e.g. a binding that failed).
    """

    logName = "namerd mesh"

    def __init__(
        self,
        connection: MeshConnection,
        kind: str,
        method: str,
        request: Any,
        responseType: Any,
        onMessage: Callable[[Any], None],
        onError: Optional[Callable[[int, str], None]] = None,
        description: str = "",
        render: Optional[Callable[[Any], Any]] = None,
    ) -> None:
        super().__init__(connection, kind, description)
        self.method = method
        self.request = request
        self.responseType = responseType
        self.onMessage = onMessage
        self.onError = onError
        self.render = render
        self.lastMessage: Any = None
        self._pending: Optional[Deferred] = None
        self._response: Any = None
        self._reader: Optional[_Reader] = None

    def _drop(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None and not pending.called:
            pending.cancel()
        response, self._response = self._response, None
        self._reader = None
        if response is not None:
            response.body.abort(None, ErrorCodes.CANCEL)

    # -- the loop --------------------------------------------------------------------------

    def _open(self) -> None:
        body = BytesBody(encodeMessage(self.request.SerializeToString()))
        d = self._pending = self.connection.pool.request(self.connection.headers(self.method), body)
        d.addCallbacks(self._gotResponse, self._failed)

    def _gotResponse(self, response: Any) -> None:
        self._pending = None
        if self._stopped:
            response.body.abort(None, ErrorCodes.CANCEL)
            return
        error = _checkResponse(response)
        if error is not None:
            response.body.abort(None, ErrorCodes.CANCEL)
            self._serverError(error.code, error.message)
            self._retry()
            return
        early = statusOf(response.head.headers)
        if early is not None and early[0] != Status.OK:
            # Trailers-only: the call was refused.
            response.body.abort(None, ErrorCodes.CANCEL)
            self._serverError(*early)
            self._retry()
            return
        self._opened()
        self._response = response
        reader = self._reader = _Reader(response, self._onMessage, lambda code, message: self._ended(reader, code, message))
        response.body.attach(reader)

    def _onMessage(self, payload: bytes) -> None:
        if self._stopped:
            return
        try:
            message = self.responseType.FromString(payload)
        except Exception as e:
            self.connection.errors.incr()
            self.lastError = f"cannot parse namerd's message: {e}"
            return
        self.lastMessage = message
        self._deliver(self.onMessage, message)

    def _serverError(self, code: int, message: str) -> None:
        self.connection.errors.incr()
        text = f"{Status.name(code)}: {message}"
        if text != self.lastError:
            # Log what changed, not every attempt.
            log.warn("namerd mesh {kind} {what}: {error}", kind=self.kind, what=self.description, error=text)
        self.lastError = text
        if self.onError is not None:
            self.onError(code, message)

    def _ended(self, reader: _Reader, code: Optional[int], message: str) -> None:
        if reader is not self._reader:
            return
        self._reader = None
        self._response = None
        if self._stopped:
            return
        if code is None:
            self.lastError = f"stream lost: {message}"
        elif code == Status.OK:
            self.lastError = "namerd ended the stream"
        else:
            self._serverError(code, message)
        self._retry()

    def _failed(self, failure: Failure) -> None:
        self._pending = None
        if self._stopped:
            return
        self.lastError = f"cannot reach namerd at {self.connection.dst.__unstructure__()}: {failure.getErrorMessage()}"
        self._retry()

    def describe(self) -> Dict[str, Any]:
        """
        This stream on the admin page.
        """
        value: Any = None
        if self.lastMessage is not None:
            value = self.render(self.lastMessage) if self.render is not None else str(self.lastMessage)
        return self._describe(method=self.method, value=value)
