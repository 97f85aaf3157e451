"""
Tests for L{linkerpy.policy.backoff}: the schedules and their configuration.
"""

from __future__ import annotations

import itertools
import random
from typing import List

from twisted.trial.unittest import SynchronousTestCase

from linkerpy.config.errors import ConfigError
from linkerpy.config.structure import structure
from linkerpy.plugins.registry import PluginRegistry
from linkerpy.policy.backoff import (
    BackoffConfig,
    ConstantBackoffConfig,
    JitteredBackoffConfig,
    constant,
    decorrelatedJittered,
    equalJittered,
)


def take(iterator, n: int) -> List[float]:
    return list(itertools.islice(iterator, n))


class ConstantTests(SynchronousTestCase):
    """
    Tests for L{constant}.
    """

    def test_sameDelayForever(self) -> None:
        """
        A constant schedule repeats its delay.
        """
        self.assertEqual(take(constant(0.25), 1000), [0.25] * 1000)

    def test_zero(self) -> None:
        """
        Zero (retry at once) is allowed.
        """
        self.assertEqual(take(constant(0), 3), [0.0, 0.0, 0.0])

    def test_negativeRejected(self) -> None:
        """
        A negative delay is an error.
        """
        self.assertRaises(ValueError, constant, -1)


class DecorrelatedJitteredTests(SynchronousTestCase):
    """
    Tests for L{decorrelatedJittered} (Finagle's semantics).
    """

    def test_startsAtStart(self) -> None:
        """
        The first delay is C{start}.
        """
        self.assertEqual(next(decorrelatedJittered(0.1, 10, random.Random(1))), 0.1)

    def test_boundsAndGrowth(self) -> None:
        """
        Each delay is at least the previous one, at most three times it, and
        never above the maximum.
        """
        for seed in range(50):
            delays = take(decorrelatedJittered(0.01, 2.0, random.Random(seed)), 60)
            for previous, current in zip(delays, delays[1:]):
                self.assertGreaterEqual(current, previous)
                self.assertLessEqual(current, min(previous * 3, 2.0))

    def test_reachesMaximum(self) -> None:
        """
        Delays approach the maximum.
        """
        delays = take(decorrelatedJittered(0.01, 1.0, random.Random(7)), 200)
        self.assertGreater(delays[-1], 0.99)
        self.assertLessEqual(delays[-1], 1.0)

    def test_jitterRange(self) -> None:
        """
        The second delay is spread over [start, 3 * start).
        """
        rng = random.Random(42)
        seconds = [take(decorrelatedJittered(1.0, 100.0, rng), 2)[1] for _ in range(2000)]
        self.assertGreaterEqual(min(seconds), 1.0)
        self.assertLess(max(seconds), 3.0)
        self.assertLess(min(seconds), 1.05)
        self.assertGreater(max(seconds), 2.95)
        mean = sum(seconds) / len(seconds)
        self.assertLess(abs(mean - 2.0), 0.05)

    def test_deterministicWithSeed(self) -> None:
        """
        The same seed gives the same schedule; independent schedules differ.
        """
        a = take(decorrelatedJittered(0.1, 5.0, random.Random(3)), 20)
        b = take(decorrelatedJittered(0.1, 5.0, random.Random(3)), 20)
        c = take(decorrelatedJittered(0.1, 5.0, random.Random(4)), 20)
        self.assertEqual(a, b)
        self.assertNotEqual(a, c)

    def test_startEqualsMaximum(self) -> None:
        """
        When start and maximum are equal the schedule is constant.
        """
        self.assertEqual(take(decorrelatedJittered(2.0, 2.0, random.Random(0)), 5), [2.0] * 5)

    def test_invalidRange(self) -> None:
        """
        A non-positive start or a maximum below the start is rejected.
        """
        self.assertRaises(ValueError, decorrelatedJittered, 0, 1, random.Random())
        self.assertRaises(ValueError, decorrelatedJittered, 2, 1, random.Random())


class EqualJitteredTests(SynchronousTestCase):
    """
    Tests for L{equalJittered} (Finagle's semantics, failure accrual's default).
    """

    def test_sequenceBands(self) -> None:
        """
        From 5 s: 5, then [5, 10), [10, 20), [20, 40) ... until 300 for good.
        """
        for seed in range(200):
            delays = take(equalJittered(5.0, 300.0, random.Random(seed)), 12)
            self.assertEqual(delays[0], 5.0)
            capped = False
            for k, delay in enumerate(delays[1:], 1):
                if capped or delay == 300.0:
                    capped = True
                    self.assertEqual(delay, 300.0)
                    continue
                low = 5.0 * 2 ** (k - 1)
                self.assertGreaterEqual(delay, low)
                self.assertLess(delay, 2 * low)
            self.assertEqual(delays[-1], 300.0)

    def test_growsUntilMaximum(self) -> None:
        """
        Successive delays increase strictly until they reach the maximum.
        """
        delays = take(equalJittered(5.0, 300.0, random.Random(11)), 12)
        growing = [d for d in delays if d < 300.0]
        self.assertEqual(growing, sorted(set(growing)))
        self.assertGreaterEqual(len(growing), 6)

    def test_jitterRange(self) -> None:
        """
        The second delay covers [start, 2 * start) across seeds.
        """
        rng = random.Random(42)
        seconds = [take(equalJittered(5.0, 300.0, rng), 2)[1] for _ in range(2000)]
        self.assertLess(min(seconds), 5.1)
        self.assertGreater(max(seconds), 9.9)
        self.assertLess(abs(sum(seconds) / len(seconds) - 7.5), 0.1)

    def test_startEqualsMaximum(self) -> None:
        """
        When start and maximum are equal the schedule is constant.
        """
        self.assertEqual(take(equalJittered(3.0, 3.0, random.Random(0)), 4), [3.0] * 4)

    def test_invalidRange(self) -> None:
        """
        A non-positive start or a maximum below the start is rejected.
        """
        self.assertRaises(ValueError, equalJittered, -1, 1, random.Random())
        self.assertRaises(ValueError, equalJittered, 5, 4, random.Random())


class BackoffConfigTests(SynchronousTestCase):
    """
    Tests for the C{kind}-dispatched backoff configuration.
    """

    registry = PluginRegistry(())

    def structure(self, raw):
        return structure(BackoffConfig, raw, self.registry, "routers[0].service.retries.backoff")

    def problems(self, raw) -> List[str]:
        with self.assertRaises(ConfigError) as caught:
            self.structure(raw)
        return [str(p) for p in caught.exception.problems]

    def test_constantDefault(self) -> None:
        """
        C{{kind: constant}} means no delay.
        """
        config = self.structure({"kind": "constant"})
        self.assertEqual(config, ConstantBackoffConfig(ms=0))
        self.assertEqual(take(config.newBackoff(), 3), [0.0] * 3)

    def test_constantMs(self) -> None:
        """
        C{ms} is the delay in milliseconds.
        """
        config = self.structure({"kind": "constant", "ms": 250})
        self.assertEqual(take(config.newBackoff(), 2), [0.25, 0.25])

    def test_jittered(self) -> None:
        """
        C{jittered} builds a decorrelated jitter schedule from C{minMs} to C{maxMs}.
        """
        config = self.structure({"kind": "jittered", "minMs": 10, "maxMs": 1000})
        self.assertEqual(config, JitteredBackoffConfig(minMs=10, maxMs=1000))
        delays = take(config.newBackoff(random.Random(1)), 50)
        self.assertEqual(delays[0], 0.01)
        self.assertTrue(all(0.01 <= d <= 1.0 for d in delays))
        self.assertEqual(delays, take(config.newBackoff(random.Random(1)), 50))

    def test_freshPerUse(self) -> None:
        """
        Each C{newBackoff} call starts the schedule from the beginning.
        """
        config = JitteredBackoffConfig(minMs=10, maxMs=1000)
        rng = random.Random(5)
        first = config.newBackoff(rng)
        take(first, 10)
        self.assertEqual(next(config.newBackoff(rng)), 0.01)

    def test_jitteredRequiresBothBounds(self) -> None:
        """
        C{minMs} and C{maxMs} are required; the message names the key.
        """
        problems = self.problems({"kind": "jittered", "minMs": 10})
        self.assertEqual(len(problems), 1)
        self.assertIn("routers[0].service.retries.backoff", problems[0])
        self.assertIn("maxMs", problems[0])
        self.assertIn("missing required key", problems[0])

    def test_jitteredOrder(self) -> None:
        """
        C{maxMs} below C{minMs} is an error.
        """
        problems = self.problems({"kind": "jittered", "minMs": 100, "maxMs": 10})
        self.assertIn("maxMs", problems[0])

    def test_jitteredPositive(self) -> None:
        """
        A zero C{minMs} is an error.
        """
        problems = self.problems({"kind": "jittered", "minMs": 0, "maxMs": 10})
        self.assertIn("minMs", problems[0])

    def test_constantNonNegative(self) -> None:
        """
        A negative C{ms} is an error.
        """
        problems = self.problems({"kind": "constant", "ms": -5})
        self.assertIn("ms", problems[0])

    def test_unknownKind(self) -> None:
        """
        An unknown kind is an error listing the known ones.
        """
        problems = self.problems({"kind": "exponential"})
        self.assertIn("'constant', 'jittered'", problems[0])

    def test_missingKind(self) -> None:
        """
        A mapping without C{kind} is an error.
        """
        problems = self.problems({"ms": 5})
        self.assertIn("kind", problems[0])

    def test_unknownKey(self) -> None:
        """
        Keys of the other kind are rejected.
        """
        problems = self.problems({"kind": "constant", "minMs": 5})
        self.assertIn("minMs", problems[0])

    def test_notAMapping(self) -> None:
        """
        A scalar is an error.
        """
        problems = self.problems(5)
        self.assertIn("mapping", problems[0])
