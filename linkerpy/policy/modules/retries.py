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
from twisted.internet.task import deferLater
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


def classified(exchange: Any, result: Any) -> Any:
    """
    The service classifier's verdict on one attempt's outcome, computed once
    per outcome: stats, retries and failure accrual all ask for it.
    """
    if getattr(exchange, "lastResult", None) is result:
        return exchange.lastClass
    classifier = exchange.classifier
    if classifier is None:
        return None
    if isinstance(result, Failure):
        rc = classifier.classify(exchange, None, result)
    else:
        rc = classifier.classify(exchange, getattr(result, "head", result), None)
    try:
        exchange.lastResult = result
        exchange.lastClass = rc
    except AttributeError:
        pass
    return rc


@implementer(IPolicyModule)
class RetriesModule:
    """
    Classified retries with a budget and backoff, for one service.

    The retry loop chains onto the attempt's own Deferred (a callback that
    returns the next attempt's Deferred), so a request that is not retried
    costs one callback and no extra Deferred; cancelling the request (a total
    timeout) cancels the attempt or the backoff wait in progress.
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
        check = self._check

        def retrying(exchange: Any) -> Deferred:
            budget.deposit()
            return call(exchange).addBoth(check, exchange, call, None, 0)

        return retrying

    def _check(self, result: Any, exchange: Any, call: Callable[[Any], Deferred], schedule: Any, retries: int) -> Any:
        if classified(exchange, result) is self.RETRYABLE and exchange.bodyReplayable:
            if schedule is None:
                schedule = self.backoff.newBackoff(self.random)
            delay = next(schedule, None)
            if delay is not None:
                if self.budget.tryWithdraw():
                    _discard(result)
                    retries += 1
                    self.total.value += 1
                    exchange.retries = retries
                    if delay > 0:
                        d = deferLater(self.reactor, delay, call, exchange)
                        # deferLater's Deferred fires with the attempt's Deferred: flatten.
                    else:
                        d = call(exchange)
                    return d.addBoth(self._check, exchange, call, schedule, retries)
                self.exhausted.value += 1
        self.perRequest.add(float(retries))
        return result


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
        requeue = self._requeue

        def requeueing(exchange: Any) -> Deferred:
            budget.deposit()
            return call(exchange).addErrback(requeue, exchange, call, 0)

        return requeueing

    def _requeue(self, failure: Failure, exchange: Any, call: Callable[[Any], Deferred], count: int) -> Any:
        if _unwritten(failure) and exchange.bodyReplayable:
            if count >= MAX_REQUEUES:
                self.limited.value += 1
            elif self.budget.tryWithdraw():
                self.requeues.value += 1
                return call(exchange).addErrback(self._requeue, exchange, call, count + 1)
            else:
                self.exhausted.value += 1
        return failure


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
