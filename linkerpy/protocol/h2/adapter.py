# -*- test-case-name: tests.test_h2_router -*-
"""
What HTTP/2 plugs into the routing core: one attempt through an
endpoint's multiplexed connection, statistics classified when a response
stream ends, and upstream errors turned into router errors.

Classification and retries: h2 classifiers may need the end of the
response stream (gRPC puts its status in trailers).  An attempt's response
is therefore I{held} (not handed up the stack) until its stream ends, at
most C{classificationTimeoutMs} and C{retryBufferSize.responseBytes} of
data, when the request could be retried and the classifier needs
trailers; the retries module then sees the trailers.  A response still
streaming after that is passed on and is not retried.  Statistics
(C{success}/C{failures}) are counted when the stream ends.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.python.failure import Failure

from linkerpy.errors import RoutingError
from linkerpy.errors import UpstreamError as RouterUpstreamError
from linkerpy.policy.entries import FoldedPolicy
from linkerpy.protocol.h2.connection import DEFAULT_WINDOW, H2Settings
from linkerpy.protocol.h2.errors import StreamReset, codeName
from linkerpy.protocol.http.adapter import XFCC, StatusCounters, clientCertHeader, translate
from linkerpy.protocol.http.l5d import L5D_CTX_DEADLINE, L5D_DST_CLIENT, L5D_DST_RESIDUAL, L5D_DST_SERVICE, deadlineHeader
from linkerpy.router.routing import Client, PathRoute, ProtocolAdapter

#: Default upstream connect timeout (ms) when C{connectTimeoutMs} is unset.
DEFAULT_CONNECT_TIMEOUT_MS = 5000
#: Linkerd's defaults for the h2 service keys.
DEFAULT_CLASSIFICATION_TIMEOUT_MS = 100
DEFAULT_RETRY_BUFFER_BYTES = 16383

_CLIENT_KEYS = (
    "clientSession",
    "connectTimeoutMs",
    "tls",
    "initialStreamWindowBytes",
    "connectionWindowBytes",
    "maxFrameBytes",
    "maxHeaderListBytes",
    "headerTableBytes",
    "socketOptions",
)


def needsTrailers(classifier: Any) -> bool:
    """
    Whether C{classifier} may call a response retryable only once its
    stream has ended (gRPC kinds that retry something).
    """
    from linkerpy.policy.classifiers import GrpcClassifier

    if isinstance(classifier, GrpcClassifier):
        return classifier.retryableStatusCodes is None or bool(classifier.retryableStatusCodes) or classifier.compliant
    return bool(getattr(classifier, "needsTrailers", False))


class H2ProtocolAdapter(ProtocolAdapter):
    """
    The HTTP/2 side of the routing core.
    """

    name = "h2"

    def __init__(self, reactor: Any, defaultClassifier: Any, tlsCreators: Any = None) -> None:
        self.reactor = reactor
        self.defaultClassifier = defaultClassifier
        self.tlsCreators = tlsCreators
        self._classifiers: Dict[int, Any] = {}

    # -- classification ---------------------------------------------------------------

    def classifierFor(self, policy: Optional[FoldedPolicy]) -> Any:
        configured = policy.get("responseClassifier") if policy is not None else None
        if configured is None:
            return self.defaultClassifier
        key = id(configured)
        classifier = self._classifiers.get(key)
        if classifier is None:
            classifier = self._classifiers[key] = configured.plugin.newClassifier(configured.config)
        return classifier

    def succeeded(self, call: Any, response: Any, failure: Any) -> bool:
        """
        For failure accrual (decided when the response headers arrive): a
        failure, or a response whose status already says failure; a gRPC
        response still streaming counts as a success.
        """
        from linkerpy.policy.classifiers import ResponseClass

        classifier = call.classifier or self.defaultClassifier
        if failure is not None:
            return classifier.classify(call, None, failure) is ResponseClass.SUCCESS
        if not response.complete and needsTrailers(classifier):
            return True
        return classifier.classify(call, response.head, None) is ResponseClass.SUCCESS

    # -- statistics ---------------------------------------------------------------------

    def wrapServiceStats(self, call: Callable[[Any], Deferred], route: PathRoute) -> Callable[[Any], Deferred]:
        from linkerpy.policy.classifiers import ResponseClass

        metrics = route.metrics
        requests = metrics.counter("requests")
        success = metrics.counter("success")
        failures = metrics.counter("failures")
        latency = metrics.stat("request_latency_ms")
        classifier = self.classifierFor(route.policy)
        policy = route.policy
        holdMs = DEFAULT_CLASSIFICATION_TIMEOUT_MS
        requestBytes = responseBytes = DEFAULT_RETRY_BUFFER_BYTES
        if policy is not None:
            holdMs = policy.get("classificationTimeoutMs", holdMs)
            sizes = policy.get("retryBufferSize")
            if sizes is not None:
                requestBytes, responseBytes = sizes.requestBytes, sizes.responseBytes
        seconds = self.reactor.seconds
        SUCCESS = ResponseClass.SUCCESS

        def count(c: Any, rc: Any, start: float) -> None:
            c.responseClass = rc
            latency.add((seconds() - start) * 1000.0)
            if rc is SUCCESS:
                success.value += 1
            else:
                failures.value += 1

        def stats(c: Any) -> Deferred:
            requests.value += 1
            c.classifier = classifier
            c.holdMs = holdMs
            c.holdBytes = responseBytes
            c.keepBody(requestBytes)
            start = seconds()

            def done(result: Any) -> Any:
                if isinstance(result, Failure):
                    count(c, classifier.classify(c, None, result), start)
                else:
                    head = result.head
                    result.body.onEnd(lambda failure: count(c, classifier.classify(c, head, failure), start))
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
        metrics.gauge("connections", fn=lambda: sum(len(e.pool.connections) for e in client.endpoints.values() if e.pool))
        perService: Dict[str, Any] = {}
        seconds = self.reactor.seconds
        SUCCESS = ResponseClass.SUCCESS
        default = self.defaultClassifier

        def serviceCounters(name: str) -> Any:
            counters = perService.get(name)
            if counters is None:
                scope = metrics.scope("service", name[1:] if name.startswith("/") else name)
                counters = perService[name] = (scope.counter("requests"), scope.counter("success"), scope.counter("failures"))
            return counters

        def count(c: Any, svc: Any, rc: Any, start: float) -> None:
            latency.add((seconds() - start) * 1000.0)
            if rc is SUCCESS:
                success.value += 1
                svc[1].value += 1
            else:
                failures.value += 1
                svc[2].value += 1

        def stats(c: Any) -> Deferred:
            requests.value += 1
            svc = serviceCounters(c.serviceName)
            svc[0].value += 1
            start = seconds()

            def done(result: Any) -> Any:
                classifier = c.classifier or default
                if isinstance(result, Failure):
                    statuses.error()
                    count(c, svc, classifier.classify(c, None, result), start)
                else:
                    head = result.head
                    statuses.count(head.status)
                    result.body.onEnd(lambda failure: count(c, svc, classifier.classify(c, head, failure), start))
                return result

            return call(c).addBoth(done)

        return stats

    # -- pools --------------------------------------------------------------------------

    def newPool(self, endpoint: Any, policy: FoldedPolicy, client: Client) -> Any:
        from linkerpy.protocol.h2.pool import H2ClientPool

        settings = H2Settings(
            initialStreamWindowBytes=policy.get("initialStreamWindowBytes", DEFAULT_WINDOW),
            connectionWindowBytes=policy.get("connectionWindowBytes", 1048576),
            maxFrameBytes=policy.get("maxFrameBytes", 16384),
            maxHeaderListBytes=policy.get("maxHeaderListBytes", 65536),
            headerTableBytes=policy.get("headerTableBytes"),
            noDelay=_noDelay(policy.get("socketOptions")),
        )
        creator = None
        tls = policy.get("tls")
        if tls is not None and tls.enabled:
            creator = self.tlsCreators.creatorFor(tls, policy.captures, (endpoint.host, endpoint.port), alpn=[b"h2"])
        session = policy.get("clientSession")
        idle = life = None
        if session is not None:
            idle = session.idleTimeMs / 1000.0 if session.idleTimeMs is not None else None
            life = session.lifeTimeMs / 1000.0 if session.lifeTimeMs is not None else None
        return H2ClientPool(
            self.reactor,
            endpoint.host,
            endpoint.port,
            settings,
            tlsCreator=creator,
            connectTimeout=policy.get("connectTimeoutMs", DEFAULT_CONNECT_TIMEOUT_MS) / 1000.0,
            idleTimeout=idle,
            lifeTime=life,
            metrics=client.metrics,
            socketOptions=policy.get("socketOptions"),
        )

    def poolSettingsChanged(self, before: FoldedPolicy, after: FoldedPolicy) -> bool:
        return any(before.values.get(k) != after.values.get(k) for k in _CLIENT_KEYS) or before.captures != after.captures

    # -- sending --------------------------------------------------------------------------

    def send(self, endpoint: Any, call: Any, client: Client) -> Deferred:
        headers = call.request.headers
        headers.set(L5D_DST_SERVICE, call.serviceBytes)
        headers.set(L5D_DST_CLIENT, client.nameBytes)
        residual = call.residual
        if residual:
            headers.set(L5D_DST_RESIDUAL, residual.show.encode("ascii"))
        elif call.attempts:
            headers.remove(L5D_DST_RESIDUAL)
        if call.deadline is not None:
            headers.setUnindexed(L5D_CTX_DEADLINE, deadlineHeader(call.deadline, self.reactor.seconds()))
        if client.policy.values.get("forwardClientCert"):
            value = clientCertHeader(call.exchange)
            if value is not None:
                headers.set(XFCC, value)
            elif call.attempts:
                headers.remove(XFCC)
        call.attempts += 1
        try:
            body = call.nextBody()
        except ValueError as e:
            return fail(RouterUpstreamError(str(e)))
        d = endpoint.pool.request(headers, body)
        d.addCallback(self._hold, call)
        return d.addErrback(self._translate, endpoint, call, client)

    def _hold(self, response: Any, call: Any) -> Any:
        """
        Hold a response until its stream ends (bounded in time and bytes)
        when the request could be retried on what the trailers say.
        """
        body = response.body
        if body.finished or call.holdMs <= 0 or not call.bodyReplayable:
            return response
        classifier = call.classifier or self.defaultClassifier
        if not needsTrailers(classifier) or response.head.headers.get(b"grpc-status") is not None:
            return response
        settled = body.settled(call.holdBytes)
        if settled.called:
            return response
        outer: Deferred = Deferred(lambda _: body.abort())
        timer = self.reactor.callLater(call.holdMs / 1000.0, lambda: _fire(outer, response))

        def done(_: Any) -> None:
            if timer.active():
                timer.cancel()
            _fire(outer, response)

        settled.addCallbacks(done, lambda f: f.trap(CancelledError) and None)

        def cancelled(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            if not settled.called:
                settled.cancel()
            return result

        return outer.addBoth(cancelled)

    def _translate(self, failure: Failure, endpoint: Any, call: Any, client: Client) -> Failure:
        if failure.check(CancelledError):
            return failure
        return Failure(translateH2(failure.value, endpoint, call, client))


def _noDelay(options: Any) -> bool:
    return bool(options.noDelay) if options is not None else True


def _fire(d: Deferred, response: Any) -> None:
    if not d.called:
        d.callback(response)


def translateH2(error: BaseException, endpoint: Any, call: Any, client: Any) -> BaseException:
    """
    Map an h2 data-plane exception to a router error.  Stream resets keep
    their code (on C{cause}); a refused stream is safe to send again.
    """
    if isinstance(error, RoutingError):
        return error
    if isinstance(error, StreamReset):
        address = f"{endpoint.host}:{endpoint.port}"
        service = getattr(call, "serviceName", "")
        clientName = getattr(client, "name", "")
        refused = not error.requestWritten
        out = RouterUpstreamError(
            f"stream {'refused' if refused else 'reset'} by {address} ({codeName(error.errorCode)})"
            f" (service {service}, client {clientName})",
            retryable=refused,
        )
        out.requestWritten = error.requestWritten  # type: ignore[attr-defined]
        out.responseStarted = error.responseStarted  # type: ignore[attr-defined]
        out.cause = error  # type: ignore[attr-defined]
        out.errorCode = error.errorCode  # type: ignore[attr-defined]
        return out
    return translate(error, endpoint, call, client)
