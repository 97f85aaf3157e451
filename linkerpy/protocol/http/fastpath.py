# -*- test-case-name: tests.test_perf_fastpath -*-
"""
The HTTP router's fused request path.

The composed stacks (L{linkerpy.policy.stack}) are general: every layer is
a C{call(exchange) -> Deferred} wrapper, and a request goes through about
eight C{Deferred} callbacks (service statistics, retries, dispatch, client
statistics, requeues, the endpoint's accounting, error translation, the
pool).  When a name's stack holds only the built-in modules whose logic is
known here (C{retries} and C{requeues}; no timeout and no plugin module),
the same steps run inline instead: L{FusedService} and L{FusedClient} are
built with the route and the client (whenever their policy changes), share
the module instances of the composed stack (the same budgets, backoff and
metrics), and carry a request with plain method calls.  The pool reports
straight to L{FusedClient} (L{HTTPConnectionPool.send}), and the handler
gets the outcome through C{call.whenDone(result, call)}, where C{result} is a
L{ClientResponse} or a L{Failure}, exactly what the composed stack's
C{Deferred} would have fired with.

Each step does what its layer does in the composed stack, in the same
order: the fused path is an optimisation, not a second behaviour.  A name
whose stack cannot be fused (a timeout, a plugin module, a server
C{timeoutMs}) uses the composed stack; so does a request whose route is
still waiting for its first binding.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from twisted.logger import Logger
from twisted.python.failure import Failure

from linkerpy.errors import NoBrokersAvailable
from linkerpy.policy.classifiers import ResponseClass
from linkerpy.policy.modules.retries import MAX_REQUEUES, RequeuesModule, RetriesModule, _discard, _unwritten, classified

log = Logger()

SUCCESS = ResponseClass.SUCCESS
RETRYABLE = ResponseClass.RETRYABLE_FAILURE


def fuseService(adapter: Any, route: Any, modules: Sequence[Any]) -> Optional["FusedService"]:
    """
    A L{FusedService} for C{route}, or C{None} when its modules are not all
    fusable.
    """
    retries = None
    for module in modules:
        if type(module) is RetriesModule and retries is None:
            retries = module
        else:
            return None
    return FusedService(adapter, route, retries)


def fuseClient(adapter: Any, client: Any, modules: Sequence[Any]) -> Optional["FusedClient"]:
    """
    A L{FusedClient} for C{client}, or C{None} when its modules are not all
    fusable.
    """
    requeues = None
    for module in modules:
        if type(module) is RequeuesModule and requeues is None:
            requeues = module
        else:
            return None
    return FusedClient(adapter, client, requeues)


class FusedService:
    """
    Service statistics, retries and dispatch of one route, inline.
    """

    def __init__(self, adapter: Any, route: Any, retries: Optional[RetriesModule]) -> None:
        metrics = route.metrics
        self.route = route
        self.requests = metrics.counter("requests")
        self.success = metrics.counter("success")
        self.failures = metrics.counter("failures")
        self.latency = metrics.stat("request_latency_ms")
        self.classifier = adapter.classifierFor(route.policy)
        self.seconds = adapter.reactor.seconds
        self.reactor = adapter.reactor
        self.retries = retries

    def start(self, call: Any) -> None:
        """
        Route C{call}; its outcome goes to C{call.whenDone(result, call)}.
        """
        self.requests.value += 1
        call.classifier = self.classifier
        call.service = self
        call.serviceStart = self.seconds()
        retries = self.retries
        if retries is not None:
            retries.budget.deposit()
        self.attempt(call)

    def attempt(self, call: Any) -> None:
        """
        One attempt: pick a client from the bound tree and send through it
        (the composed stack's C{PathRoute._dispatch}).
        """
        route = self.route
        dispatcher = route.dispatcher
        try:
            if dispatcher is None:
                # No binding yet: the composed path waits for it.
                d = route._dispatch(call)
                if not d.called:
                    call.pending = d
                d.addBoth(self._deferredDone, call)
                return
            client, residual, why = dispatcher.pick()
            if client is None:
                self.attemptDone(call, Failure(route._noBrokers(why or "")))
                return
            call.residual = residual
            call.client = client
            fast = client.fast
            if fast is not None:
                fast.start(call)
            else:
                d = client.call(call)
                if not d.called:
                    call.pending = d
                d.addBoth(self._deferredDone, call)
        except Exception:
            self.attemptDone(call, Failure())

    def _deferredDone(self, result: Any, call: Any) -> None:
        call.pending = None
        self.attemptDone(call, result)

    def _retry(self, call: Any) -> None:
        call.pending = None
        self.attempt(call)

    def attemptDone(self, call: Any, result: Any) -> None:
        """
        An attempt ended with C{result} (a response or a L{Failure}):
        retry it, or finish the request.
        """
        try:
            retries = self.retries
            if retries is not None:
                if classified(call, result) is RETRYABLE and call.bodyReplayable and not call.aborted:
                    schedule = call.backoff
                    if schedule is None:
                        schedule = call.backoff = retries.backoff.newBackoff(retries.random)
                    delay = next(schedule, None)
                    if delay is not None:
                        if retries.budget.tryWithdraw():
                            _discard(result)
                            call.retries += 1
                            retries.total.value += 1
                            if delay > 0:
                                call.pending = self.reactor.callLater(delay, self._retry, call)
                            else:
                                self.attempt(call)
                            return
                        retries.exhausted.value += 1
            latencyMs = (self.seconds() - call.serviceStart) * 1000.0
            rc = call.responseClass = classified(call, result)
            if rc is SUCCESS:
                self.success.value += 1
            else:
                self.failures.value += 1
        except Exception:
            _discard(result)
            call.whenDone(Failure(), call)
            return
        # The response goes out first; the histograms are not on its path.
        call.whenDone(result, call)
        try:
            if retries is not None:
                retries.perRequest.add(float(call.retries))
            self.latency.add(latencyMs)
        except Exception:
            log.failure("service statistics failed")


class FusedClient:
    """
    Client statistics, requeues, endpoint accounting and sending for one
    client, inline.
    """

    def __init__(self, adapter: Any, client: Any, requeues: Optional[RequeuesModule]) -> None:
        from linkerpy.protocol.http.adapter import StatusCounters

        metrics = client.metrics
        self.adapter = adapter
        self.client = client
        self.requests = metrics.counter("requests")
        self.success = metrics.counter("success")
        self.failures = metrics.counter("failures")
        self.latency = metrics.stat("request_latency_ms")
        self.statuses = StatusCounters(metrics)
        self.perService = adapter.perServiceCounters(client)
        self.seconds = adapter.reactor.seconds
        self.requeues = requeues

    def start(self, call: Any) -> None:
        """
        Send an attempt of C{call} to one of this client's endpoints; the
        outcome goes to C{call.service.attemptDone}.
        """
        self.requests.value += 1
        counters = self.perService(call.serviceName)
        counters[0].value += 1
        call.clientCounters = counters
        call.clientStart = self.seconds()
        call.requeues = 0
        requeues = self.requeues
        if requeues is not None:
            requeues.budget.deposit()
        self.send(call)

    def send(self, call: Any) -> None:
        """
        One try on an endpoint (the composed stack's C{Client._send} and
        the adapter's C{send}).
        """
        client = self.client
        try:
            endpoint = client.balancer.pick()
            if endpoint is None and client.addressing:
                # The namer is still resolving (e.g. DNS): wait for it, bounded.
                d = client.whenAddressed()
                call.pending = d
                d.addCallbacks(lambda _: self._resend(call), lambda f: self._waitFailed(call, f))
                return
            if endpoint is None:
                self.done(
                    call,
                    Failure(
                        NoBrokersAvailable(
                            call.serviceName, client.core.baseDtab.show, "", f"client {client.name} has no endpoints"
                        )
                    ),
                )
                return
            client.touched = True
            call.endpoint = endpoint
            endpoint.acquire()
            call.attemptStart = self.seconds() if client._recordLatency else 0.0
            body = self.adapter.prepareAttempt(call, client)
        except Exception:
            self.done(call, Failure())
            return
        call.pending = None
        handle = endpoint.pool.send(call.request, body, self.sent, call)
        if call.pending is None:  # not already reported (sent() sets it to False)
            call.pending = handle

    def _resend(self, call: Any) -> None:
        call.pending = None
        self.send(call)

    def _waitFailed(self, call: Any, failure: Failure) -> None:
        call.pending = None
        self.done(call, failure)

    def sent(self, call: Any, response: Any, error: Optional[BaseException]) -> None:
        """
        The pool's report on one try.
        """
        call.pending = False
        endpoint = call.endpoint
        client = self.client
        adapter = self.adapter
        try:
            if error is not None:
                from linkerpy.protocol.http.adapter import translate

                result: Any = Failure(translate(error, endpoint, call, client))
                endpoint.release(adapter.succeeded(call, None, result))
            else:
                result = response
                endpoint.release(adapter.succeeded(call, response, None))
            start = call.attemptStart
            if start:
                client.balancer.record(endpoint, (self.seconds() - start) * 1000.0)
            requeues = self.requeues
            if error is not None and requeues is not None and _unwritten(result) and call.bodyReplayable and not call.aborted:
                if call.requeues >= MAX_REQUEUES:
                    requeues.limited.value += 1
                elif requeues.budget.tryWithdraw():
                    requeues.requeues.value += 1
                    call.requeues += 1
                    self.send(call)
                    return
                else:
                    requeues.exhausted.value += 1
        except Exception:
            if response is not None:
                _discard(response)
            result = Failure()
        self.done(call, result)

    def done(self, call: Any, result: Any) -> None:
        """
        Client statistics for the attempt, then up to the service.
        """
        latencyMs = (self.seconds() - call.clientStart) * 1000.0
        try:
            if call.classifier is None:
                call.classifier = self.adapter.defaultClassifier
            rc = classified(call, result)
            counters = call.clientCounters
            if result.__class__ is Failure:
                self.statuses.error()
            else:
                self.statuses.count(result.head.status)
            if rc is SUCCESS:
                self.success.value += 1
                counters[1].value += 1
            else:
                self.failures.value += 1
                counters[2].value += 1
        except Exception:
            log.failure("client statistics failed")
        call.service.attemptDone(call, result)
        # After the response went out (or the retry was scheduled).
        self.latency.add(latencyMs)
