# -*- test-case-name: tests.test_h2_router -*-
"""
The C{protocol: h2} router: its servers, the request handler that names
each request stream and hands it to the routing core, and the response
path.

Per request, the handler: applies C{clearContext}, checks the call depth
(C{Via}), reads the local dtab and deadline headers, identifies the
request, looks up the (cached) route and calls its service stack.  The
response keeps streaming with flow control both ways; C{l5d-success-class}
goes in the response headers when the response is complete without
trailers, else in its trailers (when it has some).

Errors (Linkerd's C{ErrorReseter}): an unidentified request is refused
(RST_STREAM C{REFUSED_STREAM}); an upstream reset is passed on as a reset
with the same code; other router errors are answered with their status,
an C{l5d-err} header and a text body (502 for routing and connection
failures, 400 for C{maxCallDepth}, 503 for timeouts).  A client reset
cancels the upstream stream.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple
from urllib.parse import quote

from hpack import NeverIndexedHeaderTuple
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from linkerpy.errors import RoutingError, UnidentifiedRequest, messageFor, statusFor
from linkerpy.interfaces import IRouter
from linkerpy.naming.dtab import Dtab
from linkerpy.protocol.h2.adapter import XFCC, H2ProtocolAdapter
from linkerpy.protocol.h2.call import H2Call
from linkerpy.protocol.h2.errors import ErrorCodes
from linkerpy.protocol.h2.headers import H2Headers
from linkerpy.protocol.http import l5d
from linkerpy.protocol.http.identifiers import Identified
from linkerpy.router.base import RouterBase, RouterService
from linkerpy.router.routing import RoutingCore

log = Logger()

#: This router's C{Via} entry (HTTP/2).
VIA_ENTRY = b"2 linkerpy"


def appendVia(headers: H2Headers) -> None:
    values = headers.getAll(b"via")
    if not values:
        headers.add(b"via", VIA_ENTRY)
    else:
        headers.set(b"via", b", ".join(values + [VIA_ENTRY]))


class ServerStats:
    """
    C{rt/<router>/server/<ip>/<port>/...} counters used per request.
    """

    __slots__ = ("requests", "success", "failures", "latency", "statuses", "refused", "resets")

    def __init__(self, scope: Any) -> None:
        from linkerpy.protocol.http.adapter import StatusCounters

        self.requests = scope.counter("requests")
        self.success = scope.counter("success")
        self.failures = scope.counter("failures")
        self.latency = scope.stat("request_latency_ms")
        self.statuses = StatusCounters(scope)
        self.refused = scope.counter("refused")
        self.resets = scope.counter("resets")


class _ResponseRelay:
    """
    The upstream response body as the downstream sink's source: passes data
    through and writes C{l5d-success-class} into the trailers.
    """

    __slots__ = ("body", "call", "clearContext", "consumer")

    def __init__(self, body: Any, call: H2Call, clearContext: bool) -> None:
        self.body = body
        self.call = call
        self.clearContext = clearContext
        self.consumer: Any = None

    @property
    def finished(self) -> bool:
        return bool(self.body.finished)

    @property
    def length(self) -> Any:
        return self.body.length

    def attach(self, consumer: Any) -> None:
        self.consumer = consumer
        self.body.attach(self)

    def dataReceived(self, data: bytes) -> None:
        self.consumer.dataReceived(data)

    def endWith(self, data: bytes) -> None:
        endWith = getattr(self.consumer, "endWith", None)
        if endWith is not None:
            endWith(data)
        else:
            self.consumer.dataReceived(data)
            self.consumer.bodyEnd(None)

    def bodyEnd(self, trailers: Optional[H2Headers]) -> None:
        if trailers is not None and len(trailers):
            if self.clearContext:
                trailers.removePrefix(b"l5d-")
            else:
                rc = self.call.responseClass
                if rc is not None:
                    trailers.set(l5d.L5D_SUCCESS_CLASS, rc.headerValue)
        self.consumer.bodyEnd(trailers)

    def bodyAborted(self, reason: Failure) -> None:
        self.consumer.bodyAborted(reason)

    def pause(self) -> None:
        self.body.pause()

    def resume(self) -> None:
        self.body.resume()

    def abort(self, reason: Any = None) -> None:
        self.body.abort()

    pauseProducing = pause
    resumeProducing = resume

    def stopProducing(self) -> None:
        self.body.abort()


class H2RequestHandler:
    """
    The request handler of one server of an h2 router.
    """

    def __init__(self, router: "H2Router", server: Any, stats: ServerStats) -> None:
        self.router = router
        self.core = router.core
        self.server = server
        self.stats = stats
        self.identifiers = router.identifiers
        self.clearContext = server.clearContext
        self.maxCallDepth = server.maxCallDepth
        self.reactor = router.reactor
        self.random = router.random
        self.maxErrBytes = router.config.maxErrResponseKB * 1024
        self.accessLog = router.accessLog
        self.inFlight = 0
        self.maxConcurrent = server.maxConcurrentRequests
        self.serverTimeout = None
        if server.timeoutMs:
            from linkerpy.policy.modules.timeouts import TimeoutModule

            self.serverTimeout = TimeoutModule("server", server.timeoutMs, self.reactor, "", isClient=False)

    # -- request path --------------------------------------------------------------

    def handleRequest(self, exchange: Any) -> None:
        stats = self.stats
        stats.requests.value += 1
        call = H2Call(exchange)
        try:
            self.prepare(call)
        except UnidentifiedRequest:
            stats.refused.value += 1
            stats.failures.value += 1
            exchange.reset(ErrorCodes.REFUSED_STREAM)
            return
        except RoutingError as e:
            self.fail(call, e)
            return
        if self.maxConcurrent is not None and self.inFlight >= self.maxConcurrent:
            stats.refused.value += 1
            stats.failures.value += 1
            exchange.reset(ErrorCodes.REFUSED_STREAM)
            return
        self.inFlight += 1
        exchange.call = call
        exchange.completionHandler = self.completed
        route = self.core.routeFor(call.path, call.localDtab)
        if self.serverTimeout is None:
            d = route.call(call)
        else:
            d = self.serverTimeout.wrap(route.call)(call)
        if not d.called:
            exchange.abortHandler = lambda failure: _cancel(d)
        d.addCallbacks(self.respond, self.failed, callbackArgs=(call,), errbackArgs=(call,))

    def prepare(self, call: H2Call) -> None:
        headers = call.request.headers
        items = headers.items
        # One scan finds whether any l5d-*, Via or x-forwarded-client-cert
        # field is present; most requests carry none and skip the work.
        # (Connection-specific fields were already refused by h2.)
        names = b"\x00" + b"\x00".join([item[0] for item in items]) + b"\x00"
        hasL5d = b"\x00l5d-" in names
        special = hasL5d or b"\x00via\x00" in names or b"\x00x-forwarded-client-cert\x00" in names
        if special:
            if self.clearContext and hasL5d:
                l5d.clearRequestContext(headers)
            if XFCC in headers:
                # Only this router vouches for client certificates.
                headers.remove(XFCC)
            l5d.checkCallDepth(headers, self.maxCallDepth)
            call.localDtab = l5d.readLocalDtab(headers)
            call.deadline = l5d.readDeadline(headers)
            trace = l5d.Trace.fromHeaders(headers, self.random)
        else:
            call.localDtab = Dtab.empty
            trace = l5d.Trace.new(self.random)
        request = call.request
        reasons: List[str] = []
        for identifier in self.identifiers:
            result = identifier.identify(request)
            if isinstance(result, Identified):
                break
            reasons.append(result.reason)
        else:
            raise UnidentifiedRequest(_describe(request), reasons)
        if result.target is not None:
            headers.set(b":path", result.target)
        call.path = result.path
        call.serviceName = result.path.show
        call.serviceBytes = call.serviceName.encode("ascii")
        if call.localDtab:
            headers.set(l5d.L5D_CTX_DTAB, call.localDtab.show.encode("ascii"))
        if special:
            headers.setUnindexed(l5d.L5D_CTX_TRACE, trace.header())
            headers.setUnindexed(l5d.L5D_REQID, trace.reqid())
            appendVia(headers)
        else:
            items = headers.items
            items.append(NeverIndexedHeaderTuple(l5d.L5D_CTX_TRACE, trace.header()))
            items.append(NeverIndexedHeaderTuple(l5d.L5D_REQID, trace.reqid()))
            items.append((b"via", VIA_ENTRY))

    # -- response path --------------------------------------------------------------

    def respond(self, response: Any, call: H2Call) -> None:
        self.inFlight -= 1
        exchange = call.exchange
        if exchange.finished:
            # The client went away while the response was on its way.
            response.body.abort()
            return
        head = response.head
        out = H2Headers.fromWire([(b":status", b"%d" % head.status)] + head.headers.items)
        appendVia(out)
        body = response.body
        complete = body.finished
        trailers = body.trailers if complete else None
        if self.clearContext:
            out.removePrefix(b"l5d-")
        elif complete and not trailers and call.responseClass is not None:
            out.set(l5d.L5D_SUCCESS_CLASS, call.responseClass.headerValue)
        self.stats.statuses.count(head.status)
        if self.accessLog is not None:
            self.accessLog.log(exchange, call, head.status, body.length)
        if complete and not body.buffered and not trailers:
            exchange.respond(out, endStream=True)
            return
        exchange.respond(out).streamFrom(_ResponseRelay(body, call, self.clearContext))

    def completed(self, exchange: Any, ok: bool) -> None:
        """
        The response stream to the client ended (C{ok}) or was abandoned.
        """
        stats = self.stats
        stats.latency.add((self.reactor.seconds() - exchange.startedAt) * 1000.0)
        call = getattr(exchange, "call", None)
        rc = call.responseClass if call is not None else None
        if ok and (rc is None or rc.isSuccess):
            stats.success.value += 1
        else:
            stats.failures.value += 1

    def failed(self, failure: Failure, call: H2Call) -> None:
        self.inFlight -= 1
        exchange = call.exchange
        if exchange.finished:
            return
        error = failure.value
        if isinstance(error, CancelledError):
            exchange.reset(ErrorCodes.CANCEL)
            return
        code = getattr(error, "errorCode", None)
        if code is not None and isinstance(error, RoutingError):
            # An upstream reset: pass it on (Linkerd resets the client stream
            # with the same code).
            self.stats.resets.value += 1
            exchange.reset(int(code))
            return
        if not isinstance(error, RoutingError):
            log.failure("unexpected error routing {service}", failure, service=call.serviceName)
        self.fail(call, error)

    def fail(self, call: H2Call, error: BaseException) -> None:
        """
        Answer a router-made error: status, C{l5d-err}, text body (both
        dropped under C{clearContext}).
        """
        exchange = call.exchange
        status = statusFor(error)
        self.stats.statuses.count(status)
        if self.accessLog is not None:
            self.accessLog.log(exchange, call, status, None)
        from linkerpy.policy.classifiers import FAILURE

        call.responseClass = FAILURE
        exchange.call = call
        if exchange.completionHandler is None:
            exchange.completionHandler = self.completed
        via = [(b"via", VIA_ENTRY)]
        if self.clearContext:
            exchange.respondError(status, b"", via)
        else:
            message = messageFor(error)
            headers = [(l5d.L5D_ERR, _errHeader(message, self.maxErrBytes))] + via
            if getattr(error, "retryable", False):
                headers.append((l5d.L5D_RETRYABLE, b"true"))
            exchange.respondError(status, message.encode("utf-8", "replace")[: self.maxErrBytes] + b"\n", headers)
        body = call.body
        if body is not None and not getattr(body, "finished", True):
            body.abort()


def _cancel(d: Deferred) -> None:
    if not d.called:
        d.cancel()


def _errHeader(message: str, limit: int) -> bytes:
    return quote(message, safe=" !#$&'()*+,/:;=?@[]~").encode("ascii")[:limit]


def _describe(request: Any) -> str:
    return (
        f"{request.method.decode('latin-1')} {request.authority.decode('latin-1')}{request.path.decode('latin-1')}"
    )[:512]


@implementer(IRouter)
class H2Router(RouterBase):
    """
    A running C{protocol: h2} router.
    """

    protocolName = "h2"
    serverAlpn = (b"h2",)

    def __init__(self, config: Any, context: Any, namers: Sequence[Tuple[Any, Any]], label: str) -> None:
        self.setUp(config, context, label)
        from linkerpy.config.structure import structurePlugin
        from linkerpy.interfaces import IResponseClassifierPlugin
        from linkerpy.tls.client import ClientTLSCreators

        default = structurePlugin(IResponseClassifierPlugin, {"kind": "io.l5d.h2.nonRetryable5XX"}, context.registry)
        tlsCreators = ClientTLSCreators(self.reactor)
        self.adapter = H2ProtocolAdapter(self.reactor, default.plugin.newClassifier(default.config), tlsCreators)
        self.core = RoutingCore(label, config, context, namers, self.adapter, rng=self.random)
        self.prepareClientTLS()
        self.identifiers = self.buildIdentifiers()
        self.buildServerTLS()
        self.accessLog = None
        if config.h2AccessLog:
            from linkerpy.protocol.http.accesslog import AccessLog

            self.accessLog = AccessLog(config.h2AccessLog, config.h2AccessLogFormat, config.h2AccessLogAppend)
        self._service = RouterService(self)

    def serverFactory(self, index: int, server: Any) -> Any:
        from linkerpy.protocol.h2.connection import H2Settings
        from linkerpy.protocol.h2.server import H2ServerFactory, ServerLimits

        settings = H2Settings(
            initialStreamWindowBytes=server.initialStreamWindowBytes,
            connectionWindowBytes=server.connectionWindowBytes,
            maxFrameBytes=server.maxFrameBytes,
            maxHeaderListBytes=server.maxHeaderListBytes,
            headerTableBytes=server.headerTableBytes,
            maxConcurrentStreams=server.maxConcurrentStreamsPerConnection,
            noDelay=server.socketOptions.noDelay if server.socketOptions is not None else True,
        )
        session = server.serverSession
        limits = ServerLimits(
            maxResetsPerSecond=server.maxResetsPerSecond,
            maxControlFramesPerSecond=server.maxControlFramesPerSecond,
            prefaceTimeout=server.prefaceTimeoutMs / 1000.0,
            idleTimeout=(session.idleTimeMs or server.keepAliveIdleTimeMs) / 1000.0,
            lifeTime=session.lifeTimeMs / 1000.0 if session.lifeTimeMs else None,
        )
        return H2ServerFactory(None, settings, limits, clock=self.reactor, maxConnections=server.maxConnections)

    def serverListening(self, index: int, server: Any, factory: Any, scope: Any, address: Any) -> None:
        factory.setMetrics(scope)
        factory.handler = H2RequestHandler(self, server, ServerStats(scope))
        return None

    def closed(self) -> None:
        if self.accessLog is not None:
            self.accessLog.close()


__all__ = ["H2Router", "H2RequestHandler"]
