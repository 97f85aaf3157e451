"""
Tests for the built-in policy modules on a fake clock: total and attempt
timeouts, deadlines, classified retries with budgets and backoff, requeues.
"""

from __future__ import annotations

import random
from typing import Any, List

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from linkerpy.errors import ConnectionFailed, RequestTimeout
from linkerpy.naming import Path
from linkerpy.policy.backoff import ConstantBackoffConfig, JitteredBackoffConfig
from linkerpy.policy.budget import RetryBudgetConfig
from linkerpy.policy.classifiers import HttpClassifier, READ_METHODS
from linkerpy.policy.modules.retries import RequeuesModule, RetriesConfig, RetriesModule
from linkerpy.policy.modules.timeouts import TimeoutModule
from linkerpy.router.routing import StackContext
from linkerpy.telemetry.metrics import MetricsTree


class Head:
    def __init__(self, status: int, headers: Any = None) -> None:
        self.status = status
        self.headers = headers or {}


class Response:
    def __init__(self, status: int, headers: Any = None) -> None:
        self.head = Head(status, headers)
        self.body = self
        self.aborted = False

    def abort(self, reason: Any = None) -> None:
        self.aborted = True


class Call:
    def __init__(self, method: bytes = b"GET", replayable: bool = True) -> None:
        self.method = method
        self.bodyReplayable = replayable
        self.classifier: Any = None
        self.deadline: Any = None
        self.serviceName = "/svc/a"
        self.retries = 0


def context(clock: Clock, metrics: MetricsTree) -> StackContext:
    return StackContext(clock, metrics, Path.read("/svc/a"), "http", None, None, random.Random(1))


class TimeoutTests(SynchronousTestCase):
    """
    C{totalTimeout} and C{attemptTimeout}.
    """

    def test_fires(self) -> None:
        """
        A response slower than the timeout fails with a 503 saying which timeout, how long and for what.
        """
        clock = Clock()
        inner: List[Deferred] = []
        module = TimeoutModule("total", 600, clock, "/svc/hello", isClient=False)
        call = module.wrap(lambda c: inner.append(Deferred()) or inner[-1])
        c = Call()
        c.serviceName = "/svc/hello"
        d = call(c)
        clock.advance(0.599)
        self.assertNoResult(d)
        clock.advance(0.002)
        error = self.failureResultOf(d, RequestTimeout).value
        self.assertEqual(error.status, 503)
        self.assertIn("exceeded 600.milliseconds total timeout", error.message)
        self.assertIn("/svc/hello", error.message)
        self.assertTrue(inner[0].called)  # the inner request was cancelled

    def test_inTime(self) -> None:
        """
        A response in time passes through and the timer is cancelled.
        """
        clock = Clock()
        inner = Deferred()
        call = TimeoutModule("attempt", 100, clock, "/$/inet/x/1", isClient=True).wrap(lambda c: inner)
        d = call(Call())
        inner.callback("ok")
        self.assertEqual(self.successResultOf(d), "ok")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_deadlineTightens(self) -> None:
        """
        An earlier inbound deadline wins and is reported as the deadline.
        """
        clock = Clock()
        clock.advance(1000)
        c = Call()
        c.deadline = 1000.05
        seen = []
        call = TimeoutModule("total", 600, clock, "/svc/a", isClient=False).wrap(lambda x: seen.append(x.deadline) or Deferred())
        d = call(c)
        self.assertEqual(seen, [1000.05])
        clock.advance(0.051)
        error = self.failureResultOf(d, RequestTimeout).value
        self.assertEqual(error.kind, "deadline")
        self.assertEqual(c.deadline, 1000.05)  # the outer deadline is restored

    def test_attemptMessage(self) -> None:
        """
        An attempt timeout names the client.
        """
        clock = Clock()
        d = TimeoutModule("attempt", 50, clock, "/$/inet/127.0.0.1/9", isClient=True).wrap(lambda c: Deferred())(Call())
        clock.advance(1)
        error = self.failureResultOf(d, RequestTimeout).value
        self.assertIn("request attempt timeout", error.message)
        self.assertIn("/$/inet/127.0.0.1/9", error.message)


class Origin:
    """
    Answers each attempt from a script: status codes or exceptions.
    """

    def __init__(self, script: List[Any]) -> None:
        self.script = list(script)
        self.calls = 0
        self.responses: List[Response] = []

    def __call__(self, c: Any) -> Deferred:
        self.calls += 1
        item = self.script.pop(0) if self.script else 200
        if isinstance(item, BaseException):
            return fail(item)
        response = Response(item)
        self.responses.append(response)
        return succeed(response)


def retrying(classifier: Any, origin: Origin, budget: RetryBudgetConfig = RetryBudgetConfig(), backoff: Any = None, clock: Any = None):
    clock = clock or Clock()
    metrics = MetricsTree()
    config = RetriesConfig(budget=budget, backoff=backoff or ConstantBackoffConfig(ms=0))
    module = RetriesModule(config, context(clock, metrics))
    wrapped = module.wrap(origin)

    def call(method: bytes = b"GET", replayable: bool = True) -> Deferred:
        c = Call(method, replayable)
        c.classifier = classifier
        return wrapped(c)

    return call, metrics, module


class RetriesTests(SynchronousTestCase):
    """
    Classified retries.
    """

    def test_retryMatrix(self) -> None:
        """
        Under retryableRead5XX, a 500 then 200 is retried for read methods only.
        """
        classifier = HttpClassifier("io.l5d.http.retryableRead5XX", READ_METHODS)
        for method in (b"GET", b"HEAD", b"OPTIONS", b"TRACE"):
            origin = Origin([500, 200])
            call, metrics, _ = retrying(classifier, origin)
            response = self.successResultOf(call(method))
            self.assertEqual((method, response.head.status, origin.calls), (method, 200, 2))
            self.assertTrue(origin.responses[0].aborted)
            self.assertEqual(metrics.counter("retries", "total").value, 1)
        for method in (b"POST", b"PUT", b"DELETE", b"PATCH", b"CONNECT"):
            origin = Origin([500, 200])
            call, metrics, _ = retrying(classifier, origin)
            response = self.successResultOf(call(method))
            self.assertEqual((method, response.head.status, origin.calls), (method, 500, 1))
            self.assertEqual(metrics.counter("retries", "total").value, 0)

    def test_nonRetryableDefault(self) -> None:
        """
        The default classifier retries nothing.
        """
        origin = Origin([500, 200])
        call, metrics, _ = retrying(HttpClassifier("io.l5d.http.nonRetryable5XX"), origin)
        self.assertEqual(self.successResultOf(call()).head.status, 500)
        self.assertEqual(origin.calls, 1)
        self.assertEqual(metrics.stat("retries", "per_request").snapshot().count, 1)

    def test_l5dRetryable(self) -> None:
        """
        C{l5d-retryable: true} makes even a POST under the default classifier retryable.
        """

        class Headers(dict):
            def get(self, name, default=None):
                return dict.get(self, name, default)

        script = [Response(500, Headers({b"l5d-retryable": b"true"})), Response(200)]

        def origin(c):
            return succeed(script.pop(0))

        call, metrics, _ = retrying(HttpClassifier("io.l5d.http.nonRetryable5XX"), origin)  # type: ignore[arg-type]
        self.assertEqual(self.successResultOf(call(b"POST")).head.status, 200)
        self.assertEqual(metrics.counter("retries", "total").value, 1)

    def test_bodyNotKept(self) -> None:
        """
        A request whose body was not kept is never retried.
        """
        origin = Origin([500, 200])
        call, _, _ = retrying(HttpClassifier("io.l5d.http.retryableAll5XX", frozenset({b"POST"})), origin)
        self.assertEqual(self.successResultOf(call(b"POST", replayable=False)).head.status, 500)
        self.assertEqual(origin.calls, 1)

    def test_budgetExhausted(self) -> None:
        """
        With budget {0, 0.5}, every second failure is retried (Linkerd's figures).
        """
        classifier = HttpClassifier("io.l5d.http.retryableRead5XX", READ_METHODS)
        origin = Origin([200, 500, 200, 500, 500])
        call, metrics, module = retrying(classifier, origin, RetryBudgetConfig(ttlSecs=10, minRetriesPerSec=0, percentCanRetry=0.5))
        statuses = [self.successResultOf(call()).head.status for _ in range(3)]
        self.assertEqual(statuses, [200, 200, 500])
        self.assertEqual(metrics.counter("retries", "total").value, 1)
        self.assertEqual(metrics.counter("retries", "budget_exhausted").value, 1)

    def test_initialBudget(self) -> None:
        """
        The default budget starts at 100 and each request deposits 0.2.
        """
        origin = Origin([])
        call, metrics, module = retrying(HttpClassifier("io.l5d.http.nonRetryable5XX"), origin)
        self.assertEqual(module.budget.balance, 100)
        for _ in range(10):
            call()
        self.assertEqual(module.budget.balance, 102)
        self.assertEqual(metrics.gauge("retries", "budget").value, 102)

    def test_backoffUsesClock(self) -> None:
        """
        The retry waits for the backoff delay on the reactor clock.
        """
        clock = Clock()
        origin = Origin([500, 200])
        call, _, _ = retrying(
            HttpClassifier("x", READ_METHODS), origin, backoff=ConstantBackoffConfig(ms=250), clock=clock
        )
        d = call()
        self.assertNoResult(d)
        self.assertEqual(origin.calls, 1)
        clock.advance(0.25)
        self.assertEqual(self.successResultOf(d).head.status, 200)
        self.assertEqual(origin.calls, 2)

    def test_jitteredBackoffBounded(self) -> None:
        """
        Jittered delays stay within [minMs, maxMs].
        """
        clock = Clock()
        origin = Origin([500, 500, 500, 200])
        call, _, _ = retrying(HttpClassifier("x", READ_METHODS), origin, backoff=JitteredBackoffConfig(minMs=10, maxMs=100), clock=clock)
        d = call()
        waited = 0.0
        while clock.getDelayedCalls():
            delays = [dc.getTime() - clock.seconds() for dc in clock.getDelayedCalls()]
            self.assertEqual(len(delays), 1)
            self.assertTrue(0.010 <= delays[0] <= 0.100, delays)
            waited += delays[0]
            clock.advance(delays[0])
        self.assertEqual(origin.calls, 4)
        self.assertEqual(self.successResultOf(d).head.status, 200)

    def test_retryableException(self) -> None:
        """
        A transient failure (connection refused) of a GET is retried under retryableRead5XX.
        """
        origin = Origin([ConnectionFailed("127.0.0.1:1"), 200])
        call, _, _ = retrying(HttpClassifier("x", READ_METHODS), origin)
        self.assertEqual(self.successResultOf(call()).head.status, 200)

    def test_cancelDuringBackoff(self) -> None:
        """
        Cancelling (a total timeout firing) during a backoff stops the retries.
        """
        clock = Clock()
        origin = Origin([500, 200])
        call, _, _ = retrying(HttpClassifier("x", READ_METHODS), origin, backoff=ConstantBackoffConfig(ms=1000), clock=clock)
        d = call()
        d.cancel()
        self.failureResultOf(d)
        clock.advance(2)
        self.assertEqual(origin.calls, 1)


class RequeueTests(SynchronousTestCase):
    """
    Requeues of requests that were never written.
    """

    def requeueing(self, origin: Any, budget: RetryBudgetConfig = RetryBudgetConfig()):
        metrics = MetricsTree()
        module = RequeuesModule(budget, context(Clock(), metrics))
        return module.wrap(origin), metrics

    def unwritten(self) -> ConnectionFailed:
        error = ConnectionFailed("127.0.0.1:1")
        error.requestWritten = False  # type: ignore[attr-defined]
        error.responseStarted = False  # type: ignore[attr-defined]
        return error

    def test_requeued(self) -> None:
        """
        A request refused before being written is re-sent at once.
        """
        origin = Origin([self.unwritten(), 200])
        call, metrics = self.requeueing(origin)
        self.assertEqual(self.successResultOf(call(Call(b"POST"))).head.status, 200)
        self.assertEqual(metrics.counter("retries", "requeues").value, 1)

    def test_writtenNotRequeued(self) -> None:
        """
        A failure after the request was written is not requeued.
        """
        error = self.unwritten()
        error.requestWritten = True  # type: ignore[attr-defined]
        origin = Origin([error, 200])
        call, metrics = self.requeueing(origin)
        self.failureResultOf(call(Call(b"POST")), ConnectionFailed)
        self.assertEqual(origin.calls, 1)

    def test_limit(self) -> None:
        """
        A dead endpoint is requeued at most 25 times per request.
        """
        origin = Origin([self.unwritten() for _ in range(100)])
        call, metrics = self.requeueing(origin)
        self.failureResultOf(call(Call()), ConnectionFailed)
        self.assertEqual(origin.calls, 26)
        self.assertEqual(metrics.counter("retries", "requeues").value, 25)
        self.assertEqual(metrics.counter("retries", "request_limit").value, 1)

    def test_budget(self) -> None:
        """
        Requeues are bounded by the client's requeue budget.
        """
        origin = Origin([self.unwritten() for _ in range(10)])
        call, metrics = self.requeueing(origin, RetryBudgetConfig(ttlSecs=10, minRetriesPerSec=0, percentCanRetry=0.5))
        self.failureResultOf(call(Call()), ConnectionFailed)
        self.assertEqual(metrics.counter("retries", "budget_exhausted").value, 1)


__all__ = ["Failure"]
