# -*- test-case-name: tests.test_http_router -*-
"""
What the HTTP/1.1 protocol plugs into the routing core: sending one attempt
through an endpoint's connection pool, service and client statistics, and
turning the data plane's upstream errors into router errors.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from linkerpy.errors import ClientRequestError, ConnectionFailed, GatewayTimeout, Overloaded, RequestTimeout, RoutingError, TLSOriginationFailed, UpstreamError
from linkerpy.policy.entries import FoldedPolicy
from linkerpy.policy.modules.retries import classified
from linkerpy.protocol.http import errors as wire
from linkerpy.protocol.http.l5d import (
    L5D_CTX_DEADLINE,
    L5D_DST_CLIENT,
    L5D_DST_RESIDUAL,
    L5D_DST_SERVICE,
    deadlineHeader,
)
from linkerpy.router.routing import Client, PathRoute, ProtocolAdapter

#: Default upstream connect timeout (ms) when C{connectTimeoutMs} is unset.
DEFAULT_CONNECT_TIMEOUT_MS = 5000

#: Default longest silence from an origin during an exchange (ms).
DEFAULT_RESPONSE_IDLE_TIMEOUT_MS = 60000


class StatusCounters:
    """
    C{status/<code>}, C{status/<N>XX} counters of one scope, created on first use.
    """

    __slots__ = ("scope", "byCode")

    def __init__(self, scope: Any) -> None:
        self.scope = scope
        self.byCode: Dict[int, Any] = {}

    def count(self, status: int) -> None:
        pair = self.byCode.get(status)
        if pair is None:
            pair = self.byCode[status] = (
                self.scope.counter("status", str(status)),
                self.scope.counter("status", f"{status // 100}XX"),
            )
        pair[0].value += 1
        pair[1].value += 1

    def error(self) -> None:
        self.scope.counter("status", "error").value += 1


class HttpProtocolAdapter(ProtocolAdapter):
    """
    The HTTP/1.1 side of the routing core.
    """

    name = "http"

    def __init__(self, reactor: Any, defaultClassifier: Any, tlsCreators: Any = None) -> None:
        self.reactor = reactor
        self.defaultClassifier = defaultClassifier
        self._tlsCreators = tlsCreators
        self._classifiers: Dict[int, Any] = {}

    @property
    def tlsCreators(self) -> Any:
        """
        The L{linkerpy.tls.client.ClientTLSCreators}, made when a client
        first needs TLS (so pyOpenSSL is not loaded by routers without TLS).
        """
        if self._tlsCreators is None:
            from linkerpy.tls.client import ClientTLSCreators

            self._tlsCreators = ClientTLSCreators(self.reactor)
        return self._tlsCreators

    # -- classification ---------------------------------------------------------------

    def classifierFor(self, policy: Optional[FoldedPolicy]) -> Any:
        configured = policy.get("responseClassifier") if policy is not None else None
        if configured is None:
            return self.defaultClassifier
        key = id(configured)
        classifier = self._classifiers.get(key)
        if classifier is None:
            classifier = self._classifiers[key] = _wrapClassifier(configured.plugin.newClassifier(configured.config))
        return classifier

    def succeeded(self, call: Any, response: Any, failure: Any) -> bool:
        if failure is not None and getattr(failure.value, "clientFault", False):
            return True  # the client broke its request: the endpoint is not to blame
        if call.classifier is None:
            call.classifier = self.defaultClassifier
        return classified(call, failure if failure is not None else response).isSuccess

    # -- statistics ---------------------------------------------------------------

    def wrapServiceStats(self, call: Callable[[Any], Deferred], route: PathRoute) -> Callable[[Any], Deferred]:
        from linkerpy.policy.classifiers import ResponseClass

        metrics = route.metrics
        requests = metrics.counter("requests")
        success = metrics.counter("success")
        failures = metrics.counter("failures")
        latency = metrics.stat("request_latency_ms")
        classifier = self.classifierFor(route.policy)
        seconds = self.reactor.seconds
        SUCCESS = ResponseClass.SUCCESS

        def stats(c: Any) -> Deferred:
            requests.value += 1
            c.classifier = classifier
            start = seconds()

            def done(result: Any) -> Any:
                latency.add((seconds() - start) * 1000.0)
                rc = c.responseClass = classified(c, result)
                if rc is SUCCESS:
                    success.value += 1
                else:
                    failures.value += 1
                return result

            return call(c).addBoth(done)

        return stats

    def wrapClientStats(self, call: Callable[[Any], Deferred], client: Client) -> Callable[[Any], Deferred]:
        from linkerpy.policy.classifiers import ResponseClass

        metrics = client.metrics
        requests = metrics.counter("requests")
        success = metrics.counter("success")
        failures = metrics.counter("failures")
        latency = metrics.stat("request_latency_ms")
        statuses = StatusCounters(metrics)
        serviceCounters = self.perServiceCounters(client)
        seconds = self.reactor.seconds
        SUCCESS = ResponseClass.SUCCESS

        def stats(c: Any) -> Deferred:
            requests.value += 1
            svc = serviceCounters(c.serviceName)
            svc[0].value += 1
            start = seconds()

            def done(result: Any) -> Any:
                latency.add((seconds() - start) * 1000.0)
                if c.classifier is None:
                    c.classifier = self.defaultClassifier
                rc = classified(c, result)
                if isinstance(result, Failure):
                    statuses.error()
                else:
                    statuses.count(result.head.status)
                if rc is SUCCESS:
                    success.value += 1
                    svc[1].value += 1
                else:
                    failures.value += 1
                    svc[2].value += 1
                return result

            return call(c).addBoth(done)

        return stats

    def perServiceCounters(self, client: Client) -> Callable[[str], Any]:
        """
        C{lookup(serviceName) -> (requests, success, failures)}: the
        C{client/<id>/service/<name>/} counters, created on first use.
        """
        metrics = client.metrics
        perService: Dict[str, Any] = {}

        def serviceCounters(name: str) -> Any:
            counters = perService.get(name)
            if counters is None:
                scope = metrics.scope("service", name[1:] if name.startswith("/") else name)
                counters = perService[name] = (
                    scope.counter("requests"),
                    scope.counter("success"),
                    scope.counter("failures"),
                )
            return counters

        return serviceCounters

    # -- the fused path ------------------------------------------------------------------

    def fuseService(self, route: PathRoute, modules: Any) -> Any:
        from linkerpy.protocol.http.fastpath import fuseService

        return fuseService(self, route, modules)

    def fuseClient(self, client: Client, modules: Any) -> Any:
        from linkerpy.protocol.http.fastpath import fuseClient

        return fuseClient(self, client, modules)

    # -- sending ----------------------------------------------------------------------

    def newPool(self, endpoint: Any, policy: FoldedPolicy, client: Client) -> Any:
        from linkerpy.protocol.http.pool import HTTPConnectionPool

        pool = policy.get("hostConnectionPool")
        session = policy.get("clientSession")
        connectMs = policy.get("connectTimeoutMs", DEFAULT_CONNECT_TIMEOUT_MS)
        creator = None
        tls = policy.get("tls")
        if tls is not None and tls.enabled:
            creator = self.tlsCreators.creatorFor(tls, policy.captures, (endpoint.host, endpoint.port))
        responseMs = policy.get("responseIdleTimeoutMs", DEFAULT_RESPONSE_IDLE_TIMEOUT_MS)
        kwargs: Dict[str, Any] = {
            "connectTimeout": connectMs / 1000.0,
            "responseIdleTimeout": responseMs / 1000.0 if responseMs else None,
            "socketOptions": policy.get("socketOptions"),
        }
        if pool is not None:
            kwargs.update(minSize=pool.minSize, maxSize=pool.maxSize, maxWaiters=pool.maxWaiters)
            if pool.idleTimeMs is not None:
                kwargs["idleTimeout"] = pool.idleTimeMs / 1000.0
        if session is not None:
            if session.idleTimeMs is not None:
                kwargs["sessionIdleTimeout"] = session.idleTimeMs / 1000.0
            if session.lifeTimeMs is not None:
                kwargs["lifeTime"] = session.lifeTimeMs / 1000.0
        return HTTPConnectionPool(
            self.reactor,
            endpoint.host,
            endpoint.port,
            tlsCreator=creator,
            metrics=client.metrics,
            **kwargs,
        )

    def poolSettingsChanged(self, before: FoldedPolicy, after: FoldedPolicy) -> bool:
        keys = ("hostConnectionPool", "clientSession", "connectTimeoutMs", "responseIdleTimeoutMs", "socketOptions", "tls")
        return any(before.values.get(k) != after.values.get(k) for k in keys) or before.captures != after.captures

    def prepareAttempt(self, call: Any, client: Client) -> Any:
        """
        Set the per-attempt headers of C{call.request} and count the
        attempt.

        @return: the body source for this attempt.
        """
        head = call.request
        headers = head.headers
        # A request that arrived with no l5d-* header gets these appended on
        # its first attempt; otherwise they replace what is there.
        put = headers.setTrusted if (call.attempts or call.hasL5d) else headers.addTrusted
        put(L5D_DST_SERVICE, L5D_DST_SERVICE, call.serviceBytes)
        put(L5D_DST_CLIENT, L5D_DST_CLIENT, client.nameBytes)
        residual = call.residual
        if residual:
            put(L5D_DST_RESIDUAL, L5D_DST_RESIDUAL, residual.show.encode("ascii"))
        elif call.attempts:
            headers.remove(L5D_DST_RESIDUAL)
        if call.deadline is not None:
            headers.set(L5D_CTX_DEADLINE, deadlineHeader(call.deadline, self.reactor.seconds()))
        if client.policy.values.get("forwardClientCert"):
            value = clientCertHeader(call.exchange)
            if value is not None:
                headers.set(XFCC, value)
            elif call.attempts:
                headers.remove(XFCC)
        call.attempts += 1
        return call.nextBody()

    def send(self, endpoint: Any, call: Any, client: Client) -> Deferred:
        body = self.prepareAttempt(call, client)
        d = endpoint.pool.request(call.request, body)
        return d.addErrback(self._translate, endpoint, call, client)

    def _translate(self, failure: Failure, endpoint: Any, call: Any, client: Client) -> Failure:
        return Failure(translate(failure.value, endpoint, call, client))


XFCC = b"x-forwarded-client-cert"


def clientCertHeader(exchange: Any) -> Optional[bytes]:
    """
    The C{x-forwarded-client-cert} value for the verified client certificate
    of the downstream connection, computed once per connection.
    """
    if exchange is None or not exchange.isSecure:
        return None
    data = exchange.connectionData
    value = data.get("xfcc")
    if value is None:
        cert = exchange.peerCertificate()
        value = b""
        if cert is not None:
            from linkerpy.tls.identity import forwardClientCertHeader

            value = forwardClientCertHeader(cert.to_cryptography() if hasattr(cert, "to_cryptography") else cert)
        data["xfcc"] = value
    return value or None


def translate(error: BaseException, endpoint: Any, call: Any, client: Any) -> BaseException:
    """
    Map a data-plane exception to a router error (status and explanation).
    """
    if isinstance(error, RoutingError):
        return error
    address = f"{endpoint.host}:{endpoint.port}"
    service = getattr(call, "serviceName", "")
    clientName = getattr(client, "name", "")
    if isinstance(error, wire.RequestBodyFailed):
        cause = error.cause
        status = getattr(cause, "status", None)
        if isinstance(cause, wire.BodyAborted) and status in (400, 408):
            return ClientRequestError(status, f"the request body failed: {cause.reason}")
    if isinstance(error, wire.ResponseTimeout):
        seconds = endpoint.pool.settings.responseIdleTimeout if getattr(endpoint, "pool", None) is not None else None
        out = GatewayTimeout((seconds or 0) * 1000.0, address, service=service, client=clientName)
        _copyFlags(out, error)
        return out
    if isinstance(error, wire.PoolExhausted):
        return Overloaded(f"too many requests waiting for a connection to {address} (client {clientName})")
    if isinstance(error, wire.ConnectTimeout):
        ms = getattr(error, "timeoutMs", None) or 0
        out: RoutingError = RequestTimeout("connect", ms, service=service, client=clientName)
        out.retryable = True
        _copyFlags(out, error)
        return out
    explained = _explainTLS(error, endpoint)
    if explained is not None:
        out = TLSOriginationFailed(f"TLS to {address} failed: {explained.reason}")
        _copyFlags(out, error)
        return out
    if isinstance(error, wire.TLSHandshakeFailed):
        out = TLSOriginationFailed(f"TLS to {address} failed: {error.detail or error}")
        _copyFlags(out, error)
        return out
    if isinstance(error, wire.ConnectionRefused) or (
        isinstance(error, wire.UpstreamError) and not error.requestWritten and not error.responseStarted
    ):
        out = ConnectionFailed(address, service, clientName, client.addresses() if client else (), cause=str(error.detail or ""))
        _copyFlags(out, error)
        return out
    if isinstance(error, wire.UpstreamError):
        out = UpstreamError(f"{error.describe()} (service {service}, client {clientName})")
        _copyFlags(out, error)
        return out
    return error


def _explainTLS(error: BaseException, endpoint: Any) -> Any:
    """
    The TLS explanation of an upstream failure that happened before any
    response on a TLS connection (e.g. TLS 1.3 origins refuse a missing
    client certificate right after the handshake), or C{None}.
    """
    if not isinstance(error, (wire.TLSHandshakeFailed, wire.ConnectionReset)) or error.responseStarted:
        return None
    creator = getattr(getattr(endpoint, "pool", None), "_tlsCreator", None)
    explain = getattr(creator, "explainFailure", None)
    if explain is None or error.cause is None:
        return None
    return explain(Failure(error.cause))


def _copyFlags(out: Any, error: Any) -> None:
    out.requestWritten = getattr(error, "requestWritten", False)
    out.responseStarted = getattr(error, "responseStarted", False)
    out.cause = error


def _wrapClassifier(classifier: Any) -> Any:
    return classifier
