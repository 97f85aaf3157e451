# -*- test-case-name: tests.test_http_router -*-
"""
The C{protocol: http} router: its servers, the request handler that names
each request and hands it to the routing core, and the response path.

Per request, the handler: applies C{clearContext}, checks the call depth,
reads the local dtab and deadline headers, identifies the request, looks up
the (cached) route, and calls its service stack.  The response head gets
C{Via} and C{l5d-success-class}; its body is streamed with back-pressure.
Router-made errors are answered in one place (L{HttpRequestHandler.fail})
with their status, an C{l5d-err} header and a text body.
"""

from __future__ import annotations

from typing import Any, List, Sequence, Tuple
from urllib.parse import quote

from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from linkerpy.errors import RoutingError, UnidentifiedRequest, messageFor, statusFor
from linkerpy.interfaces import IRouter
from linkerpy.protocol.http import l5d
from linkerpy.protocol.http.adapter import XFCC, HttpProtocolAdapter
from linkerpy.protocol.http.call import HttpCall
from linkerpy.protocol.http.identifiers import Identified
from linkerpy.naming.dtab import Dtab
from linkerpy.router.base import RouterBase, RouterService
from linkerpy.router.routing import RoutingCore

EMPTY_DTAB = Dtab.empty
_VIA_ITEM = (l5d.VIA, b"Via", l5d.VIA_ENTRY)

log = Logger()


class ServerStats:
    """
    C{rt/<router>/server/<ip>/<port>/...} counters used per request.
    """

    __slots__ = ("requests", "success", "failures", "latency", "statuses")

    def __init__(self, scope: Any) -> None:
        from linkerpy.protocol.http.adapter import StatusCounters

        self.requests = scope.counter("requests")
        self.success = scope.counter("success")
        self.failures = scope.counter("failures")
        self.latency = scope.stat("request_latency_ms")
        self.statuses = StatusCounters(scope)


class HttpRequestHandler:
    """
    The L{IHTTPHandler} of one server of an HTTP router.
    """

    def __init__(self, router: "HttpRouter", server: Any, stats: ServerStats) -> None:
        self.router = router
        self.core = router.core
        self.server = server
        self.stats = stats
        self.identifiers = router.identifiers
        self.clearContext = server.clearContext
        self.maxCallDepth = server.maxCallDepth
        self.timestampHeader = server.timestampHeader.encode("ascii") if server.timestampHeader else None
        self.forwarded = server.addForwardedHeader
        self.reactor = router.reactor
        self.random = router.random
        self.retryBuffer = router.config.retryBufferKB * 1024
        self.maxErrBytes = router.config.maxErrResponseKB * 1024
        self.accessLog = router.accessLog
        self.inFlight = 0
        self._completed = self.completed
        self.maxConcurrent = server.maxConcurrentRequests
        self.serverTimeout = None
        if server.timeoutMs:
            from linkerpy.policy.modules.timeouts import TimeoutModule

            self.serverTimeout = TimeoutModule("server", server.timeoutMs, self.reactor, "", isClient=False)

    # -- request path -----------------------------------------------------------

    def handleRequest(self, exchange: Any) -> None:
        self.stats.requests.value += 1
        call = HttpCall(exchange.request, exchange.body, exchange, self)
        try:
            self.prepare(call, exchange)
        except RoutingError as e:
            self.fail(call, e)
            return
        if self.maxConcurrent is not None and self.inFlight >= self.maxConcurrent:
            from linkerpy.errors import Overloaded

            self.fail(call, Overloaded(f"server has {self.inFlight} requests in flight (maxConcurrentRequests)"))
            return
        self.inFlight += 1
        # A client that goes away cancels its request upstream (so it holds no
        # upstream connection and no maxConcurrentRequests slot).
        exchange.abortHandler = call.abort
        route = self.core.routeFor(call.path, call.localDtab)
        if self.serverTimeout is None:
            fast = route.fast
            if fast is not None:
                call.whenDone = self._completed
                fast.start(call)
                return
            d = route.call(call)
        else:
            d = self.serverTimeout.wrap(route.call)(call)
        if not d.called:
            call.pending = d
        d.addCallbacks(self.respond, self.failed, callbackArgs=(call,), errbackArgs=(call,))

    def completed(self, result: Any, call: HttpCall) -> None:
        """
        The outcome of a request routed on the fused path.
        """
        if result.__class__ is Failure:
            self.failed(result, call)
        else:
            self.respond(result, call)

    def prepare(self, call: HttpCall, exchange: Any) -> None:
        head = call.request
        headers = head.headers
        # One scan finds whether any l5d-* or other special header is present;
        # most requests carry none and skip the per-header work below.
        names = b"\x00" + b"\x00".join([item[0] for item in headers._items]) + b"\x00"
        hasL5d = names.find(b"\x00l5d-") >= 0
        special = hasL5d or names.find(b"\x00via\x00") >= 0 or names.find(b"\x00x-forwarded-client-cert\x00") >= 0
        call.hasL5d = hasL5d
        if special:
            if self.clearContext and hasL5d:
                l5d.clearRequestContext(headers)
            if XFCC in headers:
                headers.remove(XFCC)  # never trust an inbound value
            l5d.checkCallDepth(headers, self.maxCallDepth)
            call.localDtab = l5d.readLocalDtab(headers)
            call.deadline = l5d.readDeadline(headers)
            trace = l5d.Trace.fromHeaders(headers, self.random)
            traceHeader, reqid = trace.header(), trace.reqid()
        else:
            call.localDtab = EMPTY_DTAB
            traceHeader, reqid = l5d.newTraceHeaders(self.random)
        identifiers = self.identifiers
        result = identifiers[0].identify(head)
        if result.__class__ is not Identified:
            result = self._identifyFurther(head, result)
        if result.target is not None:
            head.target = result.target
        call.path = result.path
        call.serviceName = result.path.show
        call.serviceBytes = result.pathBytes
        if call.localDtab:
            headers.set(l5d.L5D_CTX_DTAB, call.localDtab.show.encode("ascii"))
        put = headers.setTrusted if hasL5d else headers.addTrusted
        put(l5d.L5D_CTX_TRACE, l5d.L5D_CTX_TRACE, traceHeader)
        put(l5d.L5D_REQID, l5d.L5D_REQID, reqid)
        if special:
            l5d.appendVia(headers)
        else:
            headers._items.append(_VIA_ITEM)
        if self.timestampHeader is not None:
            headers.set(self.timestampHeader, b"%d" % int(self.reactor.seconds() * 1000))
        if self.forwarded is not None:
            self.addForwarded(headers, exchange)
        if head.chunked or head.contentLength:
            call.keepBody(self.retryBuffer)

    def _identifyFurther(self, head: Any, first: Any) -> Any:
        """
        The first identifier did not name the request: try the others.

        @raise UnidentifiedRequest: none did.
        """
        reasons: List[str] = []
        result = first
        for identifier in self.identifiers:
            if result is None:
                result = identifier.identify(head)
            if isinstance(result, Identified):
                return result
            reasons.append(result.reason)
            result = None
        raise UnidentifiedRequest(_describe(head), reasons)

    def addForwarded(self, headers: Any, exchange: Any) -> None:
        token = "%08x" % (id(exchange.peer) & 0xFFFFFFFF)
        by = l5d.forwardedLabel(self.forwarded.by, exchange.host, exchange.host, self.router.label, token, self.random)
        for_ = l5d.forwardedLabel(self.forwarded.for_, exchange.peer, exchange.host, self.router.label, token, self.random)
        value = f"by={by};for={for_}"
        host = headers.get(b"host")
        if host:
            value += f";host={host.decode('latin-1')}"
        value += ";proto=" + ("https" if exchange.isSecure else "http")
        headers.add(b"Forwarded", value.encode("latin-1"))

    # -- response path -------------------------------------------------------------

    def respond(self, response: Any, call: HttpCall) -> None:
        self.inFlight -= 1
        exchange = call.exchange
        exchange.abortHandler = None
        call.pending = None
        if call.aborted:
            response.body.abort()
            return
        head = response.head
        headers = head.headers
        l5d.appendVia(headers)
        rc = call.responseClass
        if self.clearContext:
            headers.removePrefix(b"l5d-")
        elif rc is not None:
            headers.setTrusted(l5d.L5D_SUCCESS_CLASS, l5d.L5D_SUCCESS_CLASS, rc.headerValue)
        stats = self.stats
        stats.statuses.count(head.status)
        if rc is None or rc.isSuccess:
            stats.success.value += 1
        else:
            stats.failures.value += 1
        latencyMs = (self.reactor.seconds() - exchange.startedAt) * 1000.0
        if head.status == 101 and call.request.isUpgrade and getattr(response, "tunnel", None) is not None:
            exchange.upgrade(head, response.tunnel)
        else:
            exchange.respond(head).streamFrom(response.body)
        # After the response head (and a body already here) went out.
        stats.latency.add(latencyMs)
        if self.accessLog is not None:
            self.accessLog.log(exchange, call, head.status, head.contentLength)

    def failed(self, failure: Failure, call: HttpCall) -> None:
        self.inFlight -= 1
        call.exchange.abortHandler = None
        call.pending = None
        if call.aborted:
            return
        error = failure.value
        if not isinstance(error, RoutingError):
            log.failure("unexpected error routing {service}", failure, service=call.serviceName)
        self.fail(call, error)

    def fail(self, call: HttpCall, error: BaseException) -> None:
        """
        Answer a router-made error: status, C{l5d-err}, text body (both
        dropped under C{clearContext}, as Linkerd does).
        """
        exchange = call.exchange
        status = statusFor(error)
        message = messageFor(error)
        stats = self.stats
        stats.statuses.count(status)
        stats.failures.value += 1
        stats.latency.add((self.reactor.seconds() - exchange.startedAt) * 1000.0)
        if self.accessLog is not None:
            self.accessLog.log(exchange, call, status, None)
        if call.body is not None and not call.body.finished and status < 500:
            call.body.abort()
        if self.clearContext:
            exchange.respondError(status, b"", [(b"Via", l5d.VIA_ENTRY)])
            return
        body = message.encode("utf-8", "replace")[: self.maxErrBytes]
        headers = [(l5d.L5D_ERR, _errHeader(message, self.router.maxErrHeaderBytes)), (b"Via", l5d.VIA_ENTRY)]
        if getattr(error, "retryable", False):
            headers.append((l5d.L5D_RETRYABLE, b"true"))
        exchange.respondError(status, body + b"\n", headers)


def _errHeader(message: str, limit: int) -> bytes:
    return quote(message, safe=" !#$&'()*+,/:;=?@[]~").encode("ascii")[:limit]


def _describe(head: Any) -> str:
    host = head.headers.get(b"host") or b""
    return f"{head.method.decode('latin-1')} {host.decode('latin-1')}{head.target.decode('latin-1')}"[:512]


@implementer(IRouter)
class HttpRouter(RouterBase):
    """
    A running C{protocol: http} router.
    """

    protocolName = "http"
    serverAlpn = (b"http/1.1",)

    def __init__(self, config: Any, context: Any, namers: Sequence[Tuple[Any, Any]], label: str) -> None:
        self.setUp(config, context, label)
        self.maxErrHeaderBytes = config.maxHeadersKB * 1024
        from linkerpy.config.structure import structurePlugin
        from linkerpy.interfaces import IResponseClassifierPlugin

        default = structurePlugin(IResponseClassifierPlugin, {"kind": "io.l5d.http.nonRetryable5XX"}, context.registry)
        self.adapter = HttpProtocolAdapter(self.reactor, default.plugin.newClassifier(default.config))
        self.core = RoutingCore(label, config, context, namers, self.adapter, rng=self.random)
        self.prepareClientTLS()
        self.identifiers = self.buildIdentifiers()
        self.buildServerTLS()
        self.accessLog = None
        if config.httpAccessLog:
            from linkerpy.protocol.http.accesslog import AccessLog

            self.accessLog = AccessLog(config.httpAccessLog, config.httpAccessLogFormat, config.httpAccessLogAppend)
        self._service = RouterService(self)

    def serverFactory(self, index: int, server: Any) -> Any:
        from linkerpy.protocol.http.parser import HeadLimits
        from linkerpy.protocol.http.server import HTTPServerFactory, ServerTimeouts

        config = self.config
        limits = HeadLimits(
            maxInitialLine=config.maxInitialLineKB * 1024,
            maxHeaderBytes=config.maxHeadersKB * 1024,
            maxHeaderCount=config.maxHeaderCount,
        )
        timeouts = ServerTimeouts(
            headTimeout=server.requestHeadTimeoutMs / 1000.0,
            bodyIdleTimeout=server.bodyIdleTimeoutMs / 1000.0,
            keepAliveTimeout=(server.serverSession.idleTimeMs or server.keepAliveIdleTimeMs) / 1000.0,
            lifeTime=(server.serverSession.lifeTimeMs / 1000.0) if server.serverSession.lifeTimeMs else None,
        )
        return HTTPServerFactory(
            None,
            limits=limits,
            timeouts=timeouts,
            clock=self.reactor,
            maxConnections=server.maxConnections,
        )

    def serverListening(self, index: int, server: Any, factory: Any, scope: Any, address: Any) -> None:
        factory.setMetrics(scope)
        # The handler needs the bound port for its metrics scope.
        factory.handler = HttpRequestHandler(self, server, ServerStats(scope))
        return None

    def closed(self) -> None:
        if self.accessLog is not None:
            self.accessLog.close()


__all__ = ["HttpRouter", "HttpRequestHandler"]
