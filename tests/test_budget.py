"""
Tests for L{linkerpy.policy.budget}: Finagle's retry budget arithmetic,
expiry of deposits, and the C{RetryBudgetConfig} structure.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from linkerpy.config.errors import ConfigError
from linkerpy.config.structure import structure
from linkerpy.plugins.registry import PluginRegistry
from linkerpy.policy.budget import RetryBudget, RetryBudgetConfig, WindowedAdder


class WindowedAdderTests(SynchronousTestCase):
    """
    Tests for L{WindowedAdder}.
    """

    def setUp(self) -> None:
        self.now = [0]
        self.adder = WindowedAdder(1000, 10, lambda: self.now[0])

    def test_sumsWithinWindow(self) -> None:
        """
        Additions made across several slices all count while inside the window.
        """
        for t in (0, 250, 500, 750):
            self.now[0] = t
            self.adder.add(2)
        self.assertEqual(self.adder.sum(), 8)

    def test_oldAdditionsExpire(self) -> None:
        """
        An addition stops counting once a whole window has passed.
        """
        self.adder.add(5)
        self.now[0] = 500
        self.adder.add(1)
        self.now[0] = 900
        self.assertEqual(self.adder.sum(), 6)
        self.now[0] = 1000
        self.assertEqual(self.adder.sum(), 1)
        self.now[0] = 1600
        self.assertEqual(self.adder.sum(), 0)

    def test_negativeAdditions(self) -> None:
        """
        Negative additions are summed and expire like positive ones.
        """
        self.adder.add(-3)
        self.assertEqual(self.adder.sum(), -3)
        self.now[0] = 5000
        self.assertEqual(self.adder.sum(), 0)

    def test_reset(self) -> None:
        """
        C{reset} forgets everything.
        """
        self.adder.add(7)
        self.adder.reset()
        self.assertEqual(self.adder.sum(), 0)

    def test_slicesMustBeMoreThanOne(self) -> None:
        """
        One slice cannot make a sliding window.
        """
        self.assertRaises(ValueError, WindowedAdder, 1000, 1, lambda: 0)


class RetryBudgetTests(SynchronousTestCase):
    """
    Tests for L{RetryBudget}, including the figures Linkerd's
    C{RetriesEndToEndTest} asserts.
    """

    def setUp(self) -> None:
        self.clock = Clock()

    def test_initialBalance(self) -> None:
        """
        A default budget starts with minRetriesPerSec * ttlSecs = 100 retries.
        """
        self.assertEqual(RetryBudget(self.clock).balance, 100)

    def test_depositsAddPercentCanRetry(self) -> None:
        """
        After 10 requests a default budget holds 100 + 10 * 0.2 = 102 retries.
        """
        budget = RetryBudget(self.clock)
        for _ in range(10):
            budget.deposit()
        self.assertEqual(budget.balance, 102)

    def test_partialDepositsRoundDown(self) -> None:
        """
        Four requests at 0.2 are not yet worth a whole retry.
        """
        budget = RetryBudget(self.clock)
        for _ in range(4):
            budget.deposit()
        self.assertEqual(budget.balance, 100)
        budget.deposit()
        self.assertEqual(budget.balance, 101)

    def test_exhaustion(self) -> None:
        """
        The reserve allows exactly 100 withdrawals; the next one is refused
        and changes nothing.
        """
        budget = RetryBudget(self.clock)
        results = [budget.tryWithdraw() for _ in range(100)]
        self.assertEqual(results, [True] * 100)
        self.assertEqual(budget.balance, 0)
        self.assertFalse(budget.tryWithdraw())
        self.assertEqual(budget.balance, 0)

    def test_requeueSequence(self) -> None:
        """
        With {minRetriesPerSec 0, percentCanRetry 0.5} the balance after
        ok, ok, requeued, requeued requests is 0, 1, 0, 0 (Linkerd's requeue test).
        """
        budget = RetryBudget(self.clock, ttlSecs=10, minRetriesPerSec=0, percentCanRetry=0.5)
        gauges = []
        budget.deposit()
        gauges.append(budget.balance)
        budget.deposit()
        gauges.append(budget.balance)
        budget.deposit()
        self.assertTrue(budget.tryWithdraw())
        gauges.append(budget.balance)
        budget.deposit()
        self.assertTrue(budget.tryWithdraw())
        gauges.append(budget.balance)
        self.assertEqual(gauges, [0, 1, 0, 0])

    def test_retrySequence(self) -> None:
        """
        With {0, 0.5, 10}: ok, then a failure is retried, then the next
        failure finds the budget exhausted (Linkerd's retries test).
        """
        budget = RetryBudget(self.clock, ttlSecs=10, minRetriesPerSec=0, percentCanRetry=0.5)
        budget.deposit()
        budget.deposit()
        self.assertTrue(budget.tryWithdraw())
        budget.deposit()
        self.assertFalse(budget.tryWithdraw())

    def test_depositsExpireAfterTtl(self) -> None:
        """
        Deposits stop counting once C{ttlSecs} have passed.
        """
        budget = RetryBudget(self.clock, ttlSecs=10, minRetriesPerSec=0, percentCanRetry=0.2)
        for _ in range(10):
            budget.deposit()
        self.assertEqual(budget.balance, 2)
        self.clock.advance(9)
        self.assertEqual(budget.balance, 2)
        self.clock.advance(1)
        self.assertEqual(budget.balance, 0)

    def test_depositsExpireWhileIdle(self) -> None:
        """
        Deposits are gone after C{ttlSecs} even if nothing looked in between.
        """
        budget = RetryBudget(self.clock, ttlSecs=10, minRetriesPerSec=0, percentCanRetry=0.2)
        for _ in range(10):
            budget.deposit()
        self.clock.advance(10)
        self.assertEqual(budget.balance, 0)

    def test_depositsExpireWithPolling(self) -> None:
        """
        Expiry happens after C{ttlSecs} also when the balance is read every second.
        """
        budget = RetryBudget(self.clock, ttlSecs=10, minRetriesPerSec=0, percentCanRetry=1.0)
        budget.deposit()
        seen = []
        for _ in range(10):
            self.clock.advance(1)
            seen.append(budget.balance)
        self.assertEqual(seen, [1] * 9 + [0])

    def test_withdrawalsExpireAndReserveRefills(self) -> None:
        """
        Spent reserve comes back once the withdrawals leave the window.
        """
        budget = RetryBudget(self.clock, ttlSecs=2, minRetriesPerSec=3, percentCanRetry=0.0)
        self.assertEqual(budget.balance, 6)
        for _ in range(6):
            self.assertTrue(budget.tryWithdraw())
        self.assertFalse(budget.tryWithdraw())
        self.clock.advance(2)
        self.assertEqual(budget.balance, 6)

    def test_zeroPercentDepositsWorthNothing(self) -> None:
        """
        With C{percentCanRetry} 0 only the reserve allows retries.
        """
        budget = RetryBudget(self.clock, ttlSecs=10, minRetriesPerSec=1, percentCanRetry=0.0)
        for _ in range(100):
            budget.deposit()
        self.assertEqual(budget.balance, 10)

    def test_emptyBudget(self) -> None:
        """
        With no reserve and no percentage nothing is ever allowed.
        """
        budget = RetryBudget(self.clock, ttlSecs=10, minRetriesPerSec=0, percentCanRetry=0.0)
        for _ in range(100):
            budget.deposit()
        self.assertEqual(budget.balance, 0)
        self.assertFalse(budget.tryWithdraw())

    def test_percentAboveOne(self) -> None:
        """
        A C{percentCanRetry} of 2 allows two retries per request.
        """
        budget = RetryBudget(self.clock, ttlSecs=10, minRetriesPerSec=0, percentCanRetry=2.0)
        budget.deposit()
        self.assertEqual(budget.balance, 2)
        self.assertTrue(budget.tryWithdraw())
        self.assertTrue(budget.tryWithdraw())
        self.assertFalse(budget.tryWithdraw())

    def test_independentBudgets(self) -> None:
        """
        Two budgets do not share deposits: 100 + 2 after 10 requests on one,
        100 on the other.
        """
        a = RetryBudget(self.clock)
        b = RetryBudget(self.clock)
        for _ in range(10):
            a.deposit()
        self.assertEqual((a.balance, b.balance), (102, 100))

    def test_invalidArguments(self) -> None:
        """
        Out-of-range arguments are rejected as Finagle rejects them.
        """
        for kwargs in (
            {"ttlSecs": 0},
            {"ttlSecs": 61},
            {"minRetriesPerSec": -1},
            {"percentCanRetry": -0.1},
            {"percentCanRetry": 1000.5},
        ):
            self.assertRaises(ValueError, RetryBudget, self.clock, **kwargs)
        RetryBudget(self.clock, ttlSecs=60, minRetriesPerSec=0, percentCanRetry=1000)


class RetryBudgetConfigTests(SynchronousTestCase):
    """
    Tests for L{RetryBudgetConfig}.
    """

    registry = PluginRegistry(())

    def test_defaults(self) -> None:
        """
        An empty mapping gives Linkerd's defaults: 10 s, 10/s, 0.2.
        """
        config = structure(RetryBudgetConfig, {}, self.registry)
        self.assertEqual(config, RetryBudgetConfig(ttlSecs=10, minRetriesPerSec=10, percentCanRetry=0.2))

    def test_structure(self) -> None:
        """
        Every key is read; an integer percentage becomes a float.
        """
        config = structure(
            RetryBudgetConfig, {"ttlSecs": 5, "minRetriesPerSec": 0, "percentCanRetry": 1}, self.registry
        )
        self.assertEqual(config, RetryBudgetConfig(5, 0, 1.0))
        self.assertIsInstance(config.percentCanRetry, float)

    def test_newBudget(self) -> None:
        """
        C{newBudget} builds a budget with the configured values.
        """
        clock = Clock()
        budget = RetryBudgetConfig(ttlSecs=5, minRetriesPerSec=2, percentCanRetry=0.5).newBudget(clock)
        self.assertEqual(budget.balance, 10)

    def test_rejectsBadValues(self) -> None:
        """
        Every out-of-range value is reported with its key path.
        """
        with self.assertRaises(ConfigError) as caught:
            structure(
                RetryBudgetConfig,
                {"ttlSecs": 0, "minRetriesPerSec": -1, "percentCanRetry": 1001},
                self.registry,
                "routers[0].service.retries.budget",
            )
        paths = sorted(p.path for p in caught.exception.problems)
        self.assertEqual(
            paths,
            [
                "routers[0].service.retries.budget.minRetriesPerSec",
                "routers[0].service.retries.budget.percentCanRetry",
                "routers[0].service.retries.budget.ttlSecs",
            ],
        )

    def test_rejectsUnknownKeysAndTypes(self) -> None:
        """
        Unknown keys and wrongly typed values are errors.
        """
        with self.assertRaises(ConfigError) as caught:
            structure(RetryBudgetConfig, {"ttl": 5, "minRetriesPerSec": "ten"}, self.registry, "budget")
        paths = sorted(p.path for p in caught.exception.problems)
        self.assertEqual(paths, ["budget.minRetriesPerSec", "budget.ttl"])
