# -*- test-case-name: tests.test_policy_modules -*-
"""
Retry modules.

C{retries} (service scope, key C{retries: {budget, backoff}}): re-issues a
request whose outcome the service's response classifier calls a
I{retryable failure}, while the request can be re-sent in full (its body
was kept), the backoff schedule has delays left and the service's retry
budget allows.  The budget is per service: every request deposits
C{percentCanRetry}, every retry withdraws one, plus a reserve of
C{minRetriesPerSec} per second; deposits expire after C{ttlSecs}.  The
response of a retried attempt is discarded (its connection is closed if
the body was not fully read).  Metrics under C{service/<name>/retries/}:
C{total}, C{budget_exhausted}, C{per_request} (stat), C{budget} (gauge).

C{requeues} (client scope, key C{requeueBudget}): re-sends at once, to a
newly picked endpoint, a request that failed before any byte of it was
written (connection refused, connect timeout...), under a per-client
budget and at most L{MAX_REQUEUES} times per request.  Metrics under
C{client/<id>/retries/}: C{requeues}, C{budget_exhausted},
C{request_limit}, C{budget} (gauge).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import attrs
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure
from zope.interface import implementer

from linkerpy.config.structure import setting
from linkerpy.interfaces import IPolicyModule
from linkerpy.policy.backoff import BackoffConfig, ConstantBackoffConfig
from linkerpy.policy.budget import RetryBudgetConfig

#: Most requeues of one request (as Finagle's requeue filter).
MAX_REQUEUES = 25


@attrs.frozen
class RetriesConfig:
    """
    C{retries:}: the retry budget and backoff of a service.
    """

    budget: RetryBudgetConfig = setting(attrs.Factory(RetryBudgetConfig), doc="retry budget")
    backoff: BackoffConfig = setting(attrs.Factory(lambda: ConstantBackoffConfig(ms=0)), doc="delay between retries")


@attrs.frozen
class RetriesKeys:
    """
    Keys owned by the C{retries} module.
    """

    retries: Optional[RetriesConfig] = setting(None, doc="budget and backoff; default budget 10/s + 20%, no delay")


@attrs.frozen
class RequeuesKeys:
    """
    Keys owned by the C{requeues} module.
    """

    requeueBudget: Optional[RetryBudgetConfig] = setting(None, doc="budget for re-sending unwritten requests")


def _discard(result: Any) -> None:
    """
    Throw away the response of an attempt that will be retried.
    """
    if isinstance(result, Failure):
        return
    body = getattr(result, "body", None)
    if body is not None:
        body.abort()


@implementer(IPolicyModule)
class RetriesModule:
    """
    Classified retries with a budget and backoff, for one service.
    """

    def __init__(self, config: RetriesConfig, context: Any) -> None:
        from linkerpy.policy.classifiers import ResponseClass

        self.reactor = context.reactor
        self.random = context.random
        self.budget = config.budget.newBudget(context.reactor)
        self.backoff = config.backoff
        metrics = context.metrics.scope("retries")
        self.total = metrics.counter("total")
        self.exhausted = metrics.counter("budget_exhausted")
        self.perRequest = metrics.stat("per_request")
        metrics.gauge("budget", fn=lambda: self.budget.balance)
        self.RETRYABLE = ResponseClass.RETRYABLE_FAILURE

    def wrap(self, call: Callable[[Any], Deferred]) -> Callable[[Any], Deferred]:
        budget = self.budget
        RETRYABLE = self.RETRYABLE
        perRequest = self.perRequest

        def retrying(exchange: Any) -> Deferred:
            budget.deposit()
            first = call(exchange)
            if first.called:
                result = _peek(first)
                if not _wantsRetry(exchange, result, RETRYABLE):
                    perRequest.add(0.0)
                    return first
            return _Retrier(self, call, exchange, first).outer

        return retrying


def _peek(d: Deferred) -> Any:
    return getattr(d, "result", None)


def _wantsRetry(exchange: Any, result: Any, retryable: Any) -> bool:
    classifier = exchange.classifier
    if classifier is None:
        return False
    if isinstance(result, Failure):
        rc = classifier.classify(exchange, None, result)
    else:
        rc = classifier.classify(exchange, getattr(result, "head", result), None)
    return rc is retryable and exchange.bodyReplayable


class _Retrier:
    """
    The retry loop of one request.
    """

    def __init__(self, module: RetriesModule, call: Callable[[Any], Deferred], exchange: Any, first: Deferred) -> None:
        self.module = module
        self.call = call
        self.exchange = exchange
        self.retries = 0
        self.schedule: Any = None
        self.timer: Any = None
        self.current: Optional[Deferred] = None
        self.outer: Deferred = Deferred(self._cancel)
        self._track(first)

    def _track(self, d: Deferred) -> None:
        self.current = d
        d.addBoth(self._outcome)

    def _outcome(self, result: Any) -> None:
        self.current = None
        if self.outer.called:
            _discard(result)
            return
        module = self.module
        if _wantsRetry(self.exchange, result, module.RETRYABLE):
            if self.schedule is None:
                self.schedule = module.backoff.newBackoff(module.random)
            delay = next(self.schedule, None)
            if delay is not None:
                if module.budget.tryWithdraw():
                    _discard(result)
                    self.retries += 1
                    module.total.value += 1
                    self.exchange.retries = self.retries
                    if delay > 0:
                        self.timer = module.reactor.callLater(delay, self._again)
                    else:
                        self._again()
                    return
                module.exhausted.value += 1
        module.perRequest.add(float(self.retries))
        if isinstance(result, Failure):
            self.outer.errback(result)
        else:
            self.outer.callback(result)

    def _again(self) -> None:
        self.timer = None
        try:
            d = self.call(self.exchange)
        except Exception:
            d = Deferred()
            d.errback(Failure())
        self._track(d)

    def _cancel(self, outer: Deferred) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
            self.timer = None
        if self.current is not None:
            self.current.cancel()
        if not outer.called:
            outer.errback(Failure(CancelledError()))


@implementer(IPolicyModule)
class RequeuesModule:
    """
    Immediate re-sends of requests that never reached an endpoint.
    """

    def __init__(self, config: RetryBudgetConfig, context: Any) -> None:
        self.budget = config.newBudget(context.reactor)
        metrics = context.metrics.scope("retries")
        self.requeues = metrics.counter("requeues")
        self.exhausted = metrics.counter("budget_exhausted")
        self.limited = metrics.counter("request_limit")
        metrics.gauge("budget", fn=lambda: self.budget.balance)

    def wrap(self, call: Callable[[Any], Deferred]) -> Callable[[Any], Deferred]:
        budget = self.budget

        def requeueing(exchange: Any) -> Deferred:
            budget.deposit()
            outer: Deferred = Deferred(lambda _: state["current"].cancel() if state["current"] is not None else None)
            state: dict = {"current": None, "count": 0}

            def attempt() -> None:
                d = call(exchange)
                state["current"] = d
                d.addBoth(outcome)

            def outcome(result: Any) -> None:
                state["current"] = None
                if outer.called:
                    _discard(result)
                    return
                if isinstance(result, Failure) and _unwritten(result) and exchange.bodyReplayable:
                    if state["count"] >= MAX_REQUEUES:
                        self.limited.value += 1
                    elif budget.tryWithdraw():
                        state["count"] += 1
                        self.requeues.value += 1
                        attempt()
                        return
                    else:
                        self.exhausted.value += 1
                if isinstance(result, Failure):
                    outer.errback(result)
                else:
                    outer.callback(result)

            attempt()
            return outer

        return requeueing


def _unwritten(failure: Failure) -> bool:
    """
    Whether the failed attempt wrote nothing (so re-sending is always safe).
    """
    error = failure.value
    if isinstance(error, CancelledError):
        return False
    written = getattr(error, "requestWritten", None)
    if written is None:
        return False
    return not written and not getattr(error, "responseStarted", False)
