"""
Tests for failure accrual: the policies in L{linkerpy.client.accrual}, the
probing life cycle of L{linkerpy.client.endpoint.Endpoint}, and the
C{failureAccrual:} plugins.
"""

from __future__ import annotations

import gc
import itertools
import random
from typing import Any, List, Optional

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from linkerpy.client.accrual import (
    ConsecutiveFailuresPolicy,
    Ema,
    NonePolicy,
    SuccessRatePolicy,
    SuccessRateWindowedPolicy,
    defaultBackoff,
)
from linkerpy.client.endpoint import DEAD, LIVE, PROBING, Endpoint
from linkerpy.config.errors import ConfigError
from linkerpy.config.structure import structurePlugin
from linkerpy.interfaces import IFailureAccrualPlugin, IFailureAccrualPolicy
from linkerpy.plugins.registry import PluginRegistry
from linkerpy.policy.backoff import constant


def counting(start: float = 1.0):
    """
    A backoff factory whose schedules are 1, 2, 3, ... seconds.
    """
    return lambda: itertools.count(start)


class EmaTests(SynchronousTestCase):
    """
    Tests for L{Ema}.
    """

    def test_firstSampleIsTheValue(self) -> None:
        """
        The first sample sets the average.
        """
        ema = Ema(10)
        self.assertEqual(ema.update(0, 0.5), 0.5)

    def test_decayByDistance(self) -> None:
        """
        A sample one window later weighs 1 - 1/e.
        """
        ema = Ema(10)
        ema.update(0, 1.0)
        value = ema.update(10, 0.0)
        self.assertAlmostEqual(value, 0.36787944117, places=9)

    def test_reset(self) -> None:
        """
        After C{reset} the next sample sets the average again.
        """
        ema = Ema(10)
        ema.update(0, 1.0)
        ema.reset()
        self.assertEqual(ema.update(5, 0.25), 0.25)


class ConsecutiveFailuresTests(SynchronousTestCase):
    """
    Tests for L{ConsecutiveFailuresPolicy}.
    """

    def test_deadAfterN(self) -> None:
        """
        The N-th consecutive failure asks for the first dead period.
        """
        policy = ConsecutiveFailuresPolicy(3, counting())
        self.assertEqual([policy.recordFailure() for _ in range(3)], [None, None, 1])

    def test_successResets(self) -> None:
        """
        A success in between starts the count again.
        """
        policy = ConsecutiveFailuresPolicy(3, counting())
        policy.recordFailure()
        policy.recordFailure()
        policy.recordSuccess()
        self.assertEqual([policy.recordFailure() for _ in range(3)], [None, None, 1])

    def test_backoffGrowsAndRevivalResets(self) -> None:
        """
        Further failures take the next dead periods; revival restarts them.
        """
        policy = ConsecutiveFailuresPolicy(2, counting())
        results = [policy.recordFailure() for _ in range(4)]
        self.assertEqual(results, [None, 1, 2, 3])
        policy.revived()
        self.assertEqual([policy.recordFailure() for _ in range(2)], [None, 1])

    def test_finiteBackoffPadded(self) -> None:
        """
        When a schedule runs out, 300 s dead periods follow (as in Finagle).
        """
        policy = ConsecutiveFailuresPolicy(1, lambda: iter([2.0]))
        self.assertEqual([policy.recordFailure() for _ in range(3)], [2.0, 300.0, 300.0])

    def test_defaultBackoff(self) -> None:
        """
        The default dead periods are equal-jittered from 5 s, growing, up to 300 s.
        """
        policy = ConsecutiveFailuresPolicy(1, defaultBackoff(random.Random(2)))
        periods = [policy.recordFailure() for _ in range(12)]
        self.assertEqual(periods[0], 5.0)
        self.assertTrue(5.0 <= periods[1] < 10.0)
        self.assertTrue(10.0 <= periods[2] < 20.0)
        self.assertEqual(periods[-1], 300.0)

    def test_invalid(self) -> None:
        """
        A threshold below 1 is rejected.
        """
        self.assertRaises(ValueError, ConsecutiveFailuresPolicy, 0, counting())


class SuccessRateTests(SynchronousTestCase):
    """
    Tests for L{SuccessRatePolicy}.
    """

    def test_notBeforeWindow(self) -> None:
        """
        Nothing is marked dead before C{requests} requests have been seen.
        """
        policy = SuccessRatePolicy(0.9, 5, counting())
        self.assertEqual([policy.recordFailure() for _ in range(5)], [None, None, None, None, 1])

    def test_aboveThresholdStaysLive(self) -> None:
        """
        Occasional failures among successes keep the endpoint live.
        """
        policy = SuccessRatePolicy(0.5, 10, counting())
        for i in range(200):
            if i % 10 == 0:
                self.assertIsNone(policy.recordFailure())
            else:
                policy.recordSuccess()
        self.assertGreater(policy.successRate, 0.8)

    def test_belowThresholdMarksDead(self) -> None:
        """
        Once the weighted rate falls below the requirement, failures mark dead.
        """
        policy = SuccessRatePolicy(0.8, 10, counting())
        for _ in range(20):
            policy.recordSuccess()
        results = []
        while not results or results[-1] is None:
            results.append(policy.recordFailure())
            self.assertLess(len(results), 20)
        # The EMA over 10 requests falls below 0.8 after 3 failures:
        # exp(-3/10) = 0.74.
        self.assertEqual(len(results), 3)
        self.assertLess(policy.successRate, 0.8)

    def test_revivedResets(self) -> None:
        """
        After revival the request count and the schedule start over.
        """
        policy = SuccessRatePolicy(0.9, 3, counting())
        self.assertEqual([policy.recordFailure() for _ in range(4)], [None, None, 1, 2])
        policy.revived()
        self.assertEqual(policy.successRate, 1.0)
        self.assertEqual([policy.recordFailure() for _ in range(3)], [None, None, 1])

    def test_invalid(self) -> None:
        """
        A rate outside [0, 1] or an empty window is rejected.
        """
        self.assertRaises(ValueError, SuccessRatePolicy, 1.5, 10, counting())
        self.assertRaises(ValueError, SuccessRatePolicy, 0.5, 0, counting())


class SuccessRateWindowedTests(SynchronousTestCase):
    """
    Tests for L{SuccessRateWindowedPolicy}, on a fake clock.
    """

    def setUp(self) -> None:
        self.clock = Clock()

    def test_notBeforeOneWindow(self) -> None:
        """
        Failures during the first window never mark the endpoint dead.
        """
        policy = SuccessRateWindowedPolicy(0.9, 10, counting(), self.clock)
        for _ in range(9):
            self.assertIsNone(policy.recordFailure())
            self.clock.advance(1)
        self.clock.advance(1)
        self.assertEqual(policy.recordFailure(), 1)

    def test_needsMinimumRequests(self) -> None:
        """
        Fewer than 5 requests in the last window never mark dead.
        """
        policy = SuccessRateWindowedPolicy(0.9, 10, counting(), self.clock)
        self.clock.advance(30)
        results = [policy.recordFailure() for _ in range(5)]
        self.assertEqual(results, [None, None, None, None, 1])

    def test_oldRequestsLeaveTheWindow(self) -> None:
        """
        Requests older than the window no longer count towards the minimum.
        """
        policy = SuccessRateWindowedPolicy(0.9, 10, counting(), self.clock)
        for _ in range(4):
            policy.recordFailure()
        self.clock.advance(25)
        self.assertEqual([policy.recordFailure() for _ in range(5)], [None, None, None, None, 1])

    def test_healthyStaysLive(self) -> None:
        """
        A mostly successful endpoint is not marked dead.
        """
        policy = SuccessRateWindowedPolicy(0.5, 10, counting(), self.clock)
        for i in range(100):
            self.clock.advance(0.5)
            if i % 5 == 4:
                self.assertIsNone(policy.recordFailure())
            else:
                policy.recordSuccess()

    def test_revivedRestartsWindow(self) -> None:
        """
        Revival restarts the first-window grace period and the schedule.
        """
        policy = SuccessRateWindowedPolicy(0.9, 10, counting(), self.clock)
        self.clock.advance(10)
        self.assertEqual([policy.recordFailure() for _ in range(6)], [None, None, None, None, 1, 2])
        policy.revived()
        self.clock.advance(5)
        self.assertEqual([policy.recordFailure() for _ in range(6)], [None] * 6)
        self.clock.advance(5)
        self.assertEqual(policy.recordFailure(), 1)


class NonePolicyTests(SynchronousTestCase):
    """
    Tests for L{NonePolicy}.
    """

    def test_neverDead(self) -> None:
        """
        No number of failures marks the endpoint dead.
        """
        policy = NonePolicy()
        self.assertEqual({policy.recordFailure() for _ in range(100)}, {None})
        policy.recordSuccess()
        policy.revived()

    def test_provides(self) -> None:
        """
        Every policy provides L{IFailureAccrualPolicy}.
        """
        clock = Clock()
        for policy in (
            NonePolicy(),
            ConsecutiveFailuresPolicy(5, counting()),
            SuccessRatePolicy(0.5, 10, counting()),
            SuccessRateWindowedPolicy(0.5, 10, counting(), clock),
        ):
            self.assertTrue(verifyObject(IFailureAccrualPolicy, policy))


class ScriptedPolicy:
    """
    A policy answering from a script, recording the calls it gets.
    """

    def __init__(self, answers: List[Optional[float]]) -> None:
        self.answers = list(answers)
        self.calls: List[str] = []

    def recordSuccess(self) -> None:
        self.calls.append("success")

    def recordFailure(self) -> Optional[float]:
        self.calls.append("failure")
        return self.answers.pop(0) if self.answers else None

    def revived(self) -> None:
        self.calls.append("revived")


class EndpointProbingTests(SynchronousTestCase):
    """
    Tests for the dead / probing life cycle of L{Endpoint}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.policy = ConsecutiveFailuresPolicy(2, counting(5.0))
        self.endpoint = Endpoint("127.0.0.1", 8080, accrual=self.policy, clock=self.clock)
        self.changes: List[str] = []
        self.endpoint.onStateChange = lambda e: self.changes.append(e.state)

    def fail(self, n: int = 1) -> None:
        for _ in range(n):
            self.endpoint.acquire()
            self.endpoint.release(False)

    def test_markedDeadAfterFailures(self) -> None:
        """
        Enough failures mark the endpoint dead for the policy's period.
        """
        self.fail(1)
        self.assertEqual(self.endpoint.state, LIVE)
        self.fail(1)
        self.assertEqual(self.endpoint.state, DEAD)
        self.assertFalse(self.endpoint.available)
        self.assertEqual(self.endpoint.deadUntil, 5.0)
        self.assertEqual(self.endpoint.removals, 1)
        self.assertEqual(self.changes, [DEAD])

    def test_probeAfterDeadPeriod(self) -> None:
        """
        When the dead period ends one request may go: the probe.
        """
        self.fail(2)
        self.clock.advance(4.9)
        self.assertEqual(self.endpoint.state, DEAD)
        self.clock.advance(0.1)
        self.assertEqual(self.endpoint.state, PROBING)
        self.assertTrue(self.endpoint.available)
        self.endpoint.acquire()
        self.assertTrue(self.endpoint.probing)
        self.assertFalse(self.endpoint.available)

    def test_probeSuccessRevives(self) -> None:
        """
        A successful probe makes the endpoint live and resets the backoff.
        """
        self.fail(2)
        self.clock.advance(5)
        self.endpoint.acquire()
        self.endpoint.release(True)
        self.assertEqual(self.endpoint.state, LIVE)
        self.assertTrue(self.endpoint.available)
        self.assertEqual(self.endpoint.revivals, 1)
        self.fail(2)
        self.assertEqual(self.endpoint.deadUntil, self.clock.seconds() + 5.0)
        self.assertEqual(self.changes, [DEAD, PROBING, LIVE, DEAD])

    def test_probeFailureBacksOff(self) -> None:
        """
        A failed probe marks the endpoint dead again for the next, longer, period.
        """
        self.fail(2)
        self.clock.advance(5)
        self.fail(1)
        self.assertEqual(self.endpoint.state, DEAD)
        self.assertEqual(self.endpoint.deadUntil, 5.0 + 6.0)
        self.assertEqual(self.endpoint.removals, 1)
        self.clock.advance(6)
        self.assertEqual(self.endpoint.state, PROBING)
        self.fail(1)
        self.assertEqual(self.endpoint.deadUntil, 11.0 + 7.0)

    def test_stragglersIgnoredWhileDead(self) -> None:
        """
        Failures of requests sent before the endpoint died are not counted.
        """
        policy = ScriptedPolicy([None, 3.0])
        endpoint = Endpoint("h", 1, accrual=policy, clock=self.clock)
        for _ in range(4):
            endpoint.acquire()
        endpoint.release(False)
        endpoint.release(False)
        self.assertEqual(endpoint.state, DEAD)
        endpoint.release(False)
        endpoint.release(True)
        self.assertEqual(policy.calls, ["failure", "failure", "success"])
        self.assertEqual(endpoint.state, DEAD)
        self.assertEqual(endpoint.pending, 0)

    def test_probeFailureWithoutVerdictProbesAgain(self) -> None:
        """
        If the policy does not ask for a dead period after a failed probe,
        another probe is allowed at once (as in Finagle).
        """
        policy = ScriptedPolicy([2.0, None])
        endpoint = Endpoint("h", 1, accrual=policy, clock=self.clock)
        endpoint.acquire()
        endpoint.release(False)
        self.clock.advance(2)
        endpoint.acquire()
        self.assertFalse(endpoint.available)
        endpoint.release(False)
        self.assertEqual(endpoint.state, PROBING)
        self.assertTrue(endpoint.available)

    def test_onlyOneProbe(self) -> None:
        """
        While the probe is in flight the endpoint is unavailable; the first
        request to finish decides.
        """
        self.fail(2)
        self.clock.advance(5)
        self.endpoint.acquire()
        self.assertFalse(self.endpoint.available)
        self.endpoint.release(True)
        self.assertEqual(self.endpoint.state, LIVE)

    def test_noAccrualNeverDies(self) -> None:
        """
        An endpoint without a policy is never marked dead.
        """
        endpoint = Endpoint("h", 1, clock=self.clock)
        for _ in range(100):
            endpoint.acquire()
            endpoint.release(False)
        self.assertEqual(endpoint.state, LIVE)
        self.assertEqual(endpoint.failures, 100)

    def test_markDeadReplacesTimer(self) -> None:
        """
        Marking dead again replaces the pending revival.
        """
        self.endpoint.markDead(10)
        self.endpoint.markDead(2)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(2)
        self.assertEqual(self.endpoint.state, PROBING)

    def test_closeCancelsTimer(self) -> None:
        """
        Closing the endpoint cancels its revival timer.
        """
        self.endpoint.markDead(10)
        self.endpoint.close()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stateAssignment(self) -> None:
        """
        Assigning C{state} moves the endpoint and keeps C{available} in step.
        """
        self.endpoint.state = DEAD
        self.assertFalse(self.endpoint.available)
        self.endpoint.state = PROBING
        self.assertTrue(self.endpoint.available)
        self.assertRaises(ValueError, setattr, self.endpoint, "state", "zombie")


class Watcher:
    """
    Records endpoint notifications.
    """

    def __init__(self) -> None:
        self.seen: List[Any] = []

    def changed(self, endpoint: Endpoint) -> None:
        self.seen.append((endpoint.port, endpoint.available, endpoint.pending))


class EndpointWatchTests(SynchronousTestCase):
    """
    Tests for the availability and load notifications of L{Endpoint}.
    """

    def test_availabilityNotifications(self) -> None:
        """
        Watchers hear about each change of availability, and only those.
        """
        clock = Clock()
        endpoint = Endpoint("h", 1, accrual=ConsecutiveFailuresPolicy(1, counting()), clock=clock)
        watcher = Watcher()
        endpoint.watchAvailability(watcher.changed)
        endpoint.acquire()
        endpoint.release(False)
        clock.advance(1)
        endpoint.acquire()
        endpoint.release(True)
        self.assertEqual(watcher.seen, [(1, False, 0), (1, True, 0), (1, False, 1), (1, True, 0)])

    def test_loadNotifications(self) -> None:
        """
        Load watchers hear about every change of C{pending}.
        """
        endpoint = Endpoint("h", 1)
        watcher = Watcher()
        endpoint.watchLoad(watcher.changed)
        endpoint.acquire()
        endpoint.acquire()
        endpoint.release(True)
        self.assertEqual([p for _, _, p in watcher.seen], [1, 2, 1])
        endpoint.unwatchLoad(watcher.changed)
        endpoint.acquire()
        self.assertEqual(len(watcher.seen), 3)

    def test_watchersHeldWeakly(self) -> None:
        """
        A watcher that is no longer referenced elsewhere is dropped.
        """
        endpoint = Endpoint("h", 1)
        watcher = Watcher()
        endpoint.watchLoad(watcher.changed)
        del watcher
        gc.collect()
        endpoint.acquire()
        self.assertEqual(endpoint._loadWatchers, ())


class AccrualPluginTests(SynchronousTestCase):
    """
    Tests for the C{failureAccrual:} plugins.
    """

    def setUp(self) -> None:
        self.registry = PluginRegistry.fromPlugins()

    def structure(self, raw: Any) -> Any:
        return structurePlugin(IFailureAccrualPlugin, raw, self.registry, "routers[0].client.failureAccrual")

    def test_discovery(self) -> None:
        """
        Every Linkerd failure accrual kind is installed.
        """
        self.assertEqual(
            self.registry.kinds(IFailureAccrualPlugin),
            ["io.l5d.consecutiveFailures", "io.l5d.successRate", "io.l5d.successRateWindowed", "none"],
        )

    def test_verifyPlugins(self) -> None:
        """
        Every descriptor provides L{IFailureAccrualPlugin}, and its policies
        L{IFailureAccrualPolicy}.
        """
        raws = {
            "io.l5d.consecutiveFailures": {"failures": 3},
            "io.l5d.successRate": {"successRate": 0.9, "requests": 10},
            "io.l5d.successRateWindowed": {"successRate": 0.9, "window": 10},
            "none": {},
        }
        for plugin in self.registry.plugins(IFailureAccrualPlugin):
            self.assertTrue(verifyObject(IFailureAccrualPlugin, plugin))
            configured = self.structure(dict(raws[plugin.kind], kind=plugin.kind))
            policy = plugin.newPolicy(configured.config, Clock())
            self.assertTrue(verifyObject(IFailureAccrualPolicy, policy))

    def test_consecutiveFailures(self) -> None:
        """
        C{io.l5d.consecutiveFailures} with a constant backoff marks dead for that long.
        """
        configured = self.structure(
            {"kind": "io.l5d.consecutiveFailures", "failures": 2, "backoff": {"kind": "constant", "ms": 1500}}
        )
        policy = configured.plugin.newPolicy(configured.config, Clock())
        self.assertIsInstance(policy, ConsecutiveFailuresPolicy)
        self.assertEqual([policy.recordFailure() for _ in range(3)], [None, 1.5, 1.5])

    def test_defaultBackoffUsed(self) -> None:
        """
        Without C{backoff} the first dead period is 5 s, then equal-jittered growth.
        """
        configured = self.structure({"kind": "io.l5d.consecutiveFailures", "failures": 1})
        policy = configured.plugin.newPolicy(configured.config, Clock(), random.Random(1))
        periods = [policy.recordFailure() for _ in range(3)]
        self.assertEqual(periods[0], 5.0)
        self.assertTrue(5.0 <= periods[1] < 10.0 <= periods[2] < 20.0)

    def test_jitteredBackoff(self) -> None:
        """
        A jittered backoff gives dead periods between C{minMs} and C{maxMs}.
        """
        configured = self.structure(
            {"kind": "io.l5d.successRate", "successRate": 0.9, "requests": 1,
             "backoff": {"kind": "jittered", "minMs": 100, "maxMs": 2000}}
        )
        policy = configured.plugin.newPolicy(configured.config, Clock(), random.Random(4))
        periods = [policy.recordFailure() for _ in range(30)]
        self.assertEqual(periods[0], 0.1)
        self.assertTrue(all(0.1 <= p <= 2.0 for p in periods))

    def test_successRateWindowedUsesClock(self) -> None:
        """
        C{io.l5d.successRateWindowed} measures its window on the given clock.
        """
        clock = Clock()
        configured = self.structure({"kind": "io.l5d.successRateWindowed", "successRate": 0.9, "window": 2})
        policy = configured.plugin.newPolicy(configured.config, clock)
        clock.advance(1)
        self.assertEqual({policy.recordFailure() for _ in range(5)}, {None})
        clock.advance(1)
        self.assertIsNotNone(policy.recordFailure())

    def test_none(self) -> None:
        """
        C{none} never marks dead, and accepts (ignores) C{backoff}.
        """
        configured = self.structure({"kind": "none", "backoff": {"kind": "constant", "ms": 5}})
        policy = configured.plugin.newPolicy(configured.config, Clock())
        self.assertIsInstance(policy, NonePolicy)

    def test_requiredKeys(self) -> None:
        """
        Linkerd's required keys are required, with their key paths in the error.
        """
        cases = {
            "io.l5d.consecutiveFailures": ["routers[0].client.failureAccrual.failures"],
            "io.l5d.successRate": [
                "routers[0].client.failureAccrual.requests",
                "routers[0].client.failureAccrual.successRate",
            ],
            "io.l5d.successRateWindowed": [
                "routers[0].client.failureAccrual.successRate",
                "routers[0].client.failureAccrual.window",
            ],
        }
        for kind, paths in cases.items():
            with self.assertRaises(ConfigError) as caught:
                self.structure({"kind": kind})
            self.assertEqual(sorted(p.path for p in caught.exception.problems), paths)

    def test_badValues(self) -> None:
        """
        Out-of-range values and bad backoffs are rejected with key paths.
        """
        with self.assertRaises(ConfigError) as caught:
            self.structure(
                {"kind": "io.l5d.successRate", "successRate": 1.5, "requests": 0,
                 "backoff": {"kind": "jittered", "minMs": 5}}
            )
        self.assertEqual(
            sorted(p.path for p in caught.exception.problems),
            [
                "routers[0].client.failureAccrual.backoff",
                "routers[0].client.failureAccrual.requests",
                "routers[0].client.failureAccrual.successRate",
            ],
        )

    def test_probingThroughEndpoint(self) -> None:
        """
        A policy built by a plugin drives an endpoint dead, then probing, then live.
        """
        clock = Clock()
        configured = self.structure(
            {"kind": "io.l5d.consecutiveFailures", "failures": 1, "backoff": {"kind": "constant", "ms": 1000}}
        )
        endpoint = Endpoint("h", 1, accrual=configured.plugin.newPolicy(configured.config, clock), clock=clock)
        endpoint.acquire()
        endpoint.release(False)
        self.assertEqual(endpoint.state, DEAD)
        clock.advance(1)
        self.assertEqual(endpoint.state, PROBING)
        endpoint.acquire()
        endpoint.release(True)
        self.assertEqual(endpoint.state, LIVE)

    def test_constantBackoffHelper(self) -> None:
        """
        A constant schedule can serve as a dead-period backoff directly.
        """
        policy = ConsecutiveFailuresPolicy(1, lambda: constant(2.5))
        self.assertEqual([policy.recordFailure() for _ in range(2)], [2.5, 2.5])
