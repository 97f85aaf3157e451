"""
Tests for the load balancers (L{linkerpy.client.balancers}) and their
plugins: weights, skipping unavailable endpoints, failing open, updates,
load preference, and the cost of a pick.
"""

from __future__ import annotations

import collections
import random
from itertools import repeat
from typing import Any, Dict, List, Sequence

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from linkerpy.client.balancers import (
    ApertureBalancer,
    EwmaBalancer,
    HeapBalancer,
    P2CBalancer,
    RoundRobinBalancer,
)
from linkerpy.client.accrual import ConsecutiveFailuresPolicy
from linkerpy.client.balancers.base import WeightTree
from linkerpy.client.balancers.p2c import PENALTY
from linkerpy.client.endpoint import DEAD, Endpoint
from linkerpy.config.errors import ConfigError
from linkerpy.config.structure import structurePlugin
from linkerpy.interfaces import ILoadBalancer, ILoadBalancerPlugin
from linkerpy.plugins.context import BuildContext
from linkerpy.plugins.registry import PluginRegistry
from linkerpy.telemetry.metrics import MetricsTree


class CountingEndpoint(Endpoint):
    """
    An endpoint that counts how often its availability is read.
    """

    __slots__ = ("_avail", "reads")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.reads = 0
        super().__init__(*args, **kwargs)

    @property  # type: ignore[override]
    def available(self) -> bool:
        self.reads += 1
        return self._avail

    @available.setter
    def available(self, value: bool) -> None:
        self._avail = value


class WeightTreeTests(SynchronousTestCase):
    """
    Tests for L{WeightTree}.
    """

    def test_findMapsIntervals(self) -> None:
        """
        C{find} maps each point to the index whose weight interval holds it.
        """
        tree = WeightTree([2, 0, 3, 1])
        found = [tree.find(r) for r in range(tree.total)]
        self.assertEqual(found, [0, 0, 2, 2, 2, 3])

    def test_add(self) -> None:
        """
        Updating weights moves the intervals.
        """
        tree = WeightTree([1, 1, 1])
        tree.add(1, -1)
        tree.add(2, 2)
        self.assertEqual(tree.total, 4)
        self.assertEqual([tree.find(r) for r in range(4)], [0, 2, 2, 2])

    def test_manySizes(self) -> None:
        """
        C{find} agrees with a linear scan for trees of many sizes.
        """
        rng = random.Random(3)
        for n in range(1, 40):
            weights = [rng.randrange(0, 5) for _ in range(n)]
            tree = WeightTree(weights)
            expected = [i for i, w in enumerate(weights) for _ in range(w)]
            self.assertEqual([tree.find(r) for r in range(tree.total)], expected)


class BalancerContract:
    """
    Behaviour every balancer shares.  Subclasses set C{balancerClass} and
    may override L{make}.
    """

    balancerClass: Any = None
    weighted = True

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.rng = random.Random(1234)

    def make(self, **kwargs: Any) -> Any:
        return self.balancerClass(rng=self.rng, clock=self.clock, **kwargs)

    def endpoints(self, weights: Sequence[float], cls: Any = Endpoint) -> List[Endpoint]:
        return [cls(f"10.0.0.{i}", 8080, weight=w, clock=self.clock) for i, w in enumerate(weights)]

    def balancer(self, endpoints: Sequence[Endpoint], **kwargs: Any) -> Any:
        balancer = self.make(**kwargs)
        balancer.update(endpoints)
        return balancer

    def shares(self, balancer: Any, picks: int) -> Dict[int, float]:
        """
        Send C{picks} sequential requests; return each endpoint's share.
        """
        counts: Dict[int, int] = collections.Counter()
        for _ in range(picks):
            endpoint = balancer.pick()
            endpoint.acquire()
            endpoint.release(True)
            counts[id(endpoint)] += 1
        return {k: v / picks for k, v in counts.items()}

    def assertShares(self, balancer: Any, endpoints: Sequence[Endpoint], expected: Sequence[float]) -> None:
        shares = self.shares(balancer, 20000)
        for endpoint, share in zip(endpoints, expected):
            self.assertLess(abs(shares.get(id(endpoint), 0.0) - share), 0.02, (endpoint, shares, expected))

    # -- tests ---------------------------------------------------------------

    def test_provides(self) -> None:
        """
        The balancer provides L{ILoadBalancer}.
        """
        self.assertTrue(verifyObject(ILoadBalancer, self.make()))

    def test_empty(self) -> None:
        """
        With no endpoints C{pick} answers C{None}.
        """
        balancer = self.balancer([])
        self.assertIsNone(balancer.pick())

    def test_single(self) -> None:
        """
        A single endpoint gets every request.
        """
        [only] = self.endpoints([1])
        balancer = self.balancer([only])
        self.assertEqual({id(balancer.pick()) for _ in range(20)}, {id(only)})

    def test_equalWeights(self) -> None:
        """
        Equal weights share sequential traffic evenly.
        """
        endpoints = self.endpoints([1] * 5)
        self.assertShares(self.balancer(endpoints), endpoints, [0.2] * 5)

    def test_weights(self) -> None:
        """
        Sequential traffic is shared in proportion to the weights.
        """
        endpoints = self.endpoints([1, 2, 3, 4])
        self.assertShares(self.balancer(endpoints), endpoints, [0.1, 0.2, 0.3, 0.4])

    def test_fractionalWeights(self) -> None:
        """
        Weights need not be integers.
        """
        endpoints = self.endpoints([0.5, 1.5])
        self.assertShares(self.balancer(endpoints), endpoints, [0.25, 0.75])

    def test_skipsUnavailable(self) -> None:
        """
        Dead endpoints get nothing; the others share by weight.
        """
        endpoints = self.endpoints([1, 1, 2, 2])
        balancer = self.balancer(endpoints)
        endpoints[0].markDead(60)
        endpoints[2].markDead(60)
        self.assertShares(balancer, endpoints, [0.0, 1 / 3, 0.0, 2 / 3])
        self.assertEqual(balancer.panicked.value, 0)

    def test_skipsWhenMostAreDead(self) -> None:
        """
        With one endpoint left of twenty, every pick finds it.
        """
        endpoints = self.endpoints([1] * 20)
        balancer = self.balancer(endpoints)
        for endpoint in endpoints[1:]:
            endpoint.markDead(60)
        picks = {id(balancer.pick()) for _ in range(500)}
        self.assertEqual(picks, {id(endpoints[0])})
        self.assertEqual(balancer.panicked.value, 0)

    def test_failOpen(self) -> None:
        """
        When every endpoint is unavailable the balancer still picks among
        all of them (and counts it as panicked).
        """
        endpoints = self.endpoints([1, 3])
        balancer = self.balancer(endpoints)
        for endpoint in endpoints:
            endpoint.markDead(60)
        picks = [balancer.pick() for _ in range(4000)]
        self.assertNotIn(None, picks)
        self.assertEqual(balancer.panicked.value, 4000)
        counts = collections.Counter(id(p) for p in picks)
        self.assertEqual(set(counts), {id(e) for e in endpoints})

    def test_revivedEndpointReturns(self) -> None:
        """
        A dead endpoint is picked again once it may be probed.
        """
        endpoints = self.endpoints([1, 1])
        balancer = self.balancer(endpoints)
        endpoints[0].markDead(5)
        self.assertEqual({id(balancer.pick()) for _ in range(50)}, {id(endpoints[1])})
        self.clock.advance(5)
        picked = set()
        for _ in range(200):
            endpoint = balancer.pick()
            picked.add(id(endpoint))
            endpoint.acquire()
            endpoint.release(True)
        self.assertEqual(picked, {id(e) for e in endpoints})

    def test_probeInFlightNotPicked(self) -> None:
        """
        While its probe is in flight a probing endpoint is skipped.
        """
        endpoints = self.endpoints([1, 1])
        balancer = self.balancer(endpoints)
        endpoints[0].markDead(5)
        self.clock.advance(5)
        endpoints[0].acquire()
        self.assertEqual({id(balancer.pick()) for _ in range(100)}, {id(endpoints[1])})

    def test_update(self) -> None:
        """
        Removed endpoints are no longer picked or watched; added ones are.
        """
        a, b, c = self.endpoints([1, 1, 1])
        balancer = self.balancer([a, b])
        balancer.update([b, c])
        self.assertEqual({id(balancer.pick()) for _ in range(300)}, {id(b), id(c)})
        self.assertEqual(balancer.availableCount, 2)
        a.markDead(10)
        self.assertEqual(balancer.availableCount, 2)
        c.markDead(10)
        self.assertEqual(balancer.availableCount, 1)
        self.assertEqual({id(balancer.pick()) for _ in range(100)}, {id(b)})
        self.assertEqual((balancer.adds.value, balancer.removes.value), (3, 1))

    def test_updateWeights(self) -> None:
        """
        A weight change takes effect at the next C{update}.
        """
        endpoints = self.endpoints([1, 1])
        balancer = self.balancer(endpoints)
        endpoints[1].weight = 3
        balancer.update(endpoints)
        self.assertShares(balancer, endpoints, [0.25, 0.75])

    def test_zeroWeight(self) -> None:
        """
        A weight-0 endpoint gets traffic only when nothing else is available.
        """
        zero, one = self.endpoints([0, 1])
        balancer = self.balancer([zero, one])
        self.assertEqual({id(balancer.pick()) for _ in range(300)}, {id(one)})
        one.markDead(10)
        self.assertEqual({id(balancer.pick()) for _ in range(50)}, {id(zero)})
        self.assertEqual(balancer.panicked.value, 0)
        self.clock.advance(10)
        probe = balancer.pick()
        self.assertIs(probe, one)
        probe.acquire()
        probe.release(True)
        self.assertEqual({id(balancer.pick()) for _ in range(100)}, {id(one)})

    def test_allZeroWeights(self) -> None:
        """
        If every weight is 0 they all count as 1.
        """
        endpoints = self.endpoints([0, 0])
        self.assertShares(self.balancer(endpoints), endpoints, [0.5, 0.5])

    def test_duplicatesIgnored(self) -> None:
        """
        An endpoint listed twice counts once.
        """
        a, b = self.endpoints([1, 1])
        balancer = self.balancer([a, a, b])
        self.assertEqual(len(balancer.endpoints), 2)
        self.assertShares(balancer, [a, b], [0.5, 0.5])

    def test_close(self) -> None:
        """
        After C{close} the balancer has no endpoints and watches none.
        """
        endpoints = self.endpoints([1, 1])
        balancer = self.balancer(endpoints)
        balancer.close()
        self.assertIsNone(balancer.pick())
        self.assertEqual(endpoints[0]._availabilityWatchers, ())

    def test_deterministic(self) -> None:
        """
        The same seed gives the same picks.
        """
        runs = []
        for _ in range(2):
            self.rng = random.Random(99)
            endpoints = self.endpoints([1, 2, 3])
            balancer = self.balancer(endpoints)
            runs.append([endpoints.index(balancer.pick()) for _ in range(200)])
        self.assertEqual(runs[0], runs[1])

    def test_record(self) -> None:
        """
        C{record} accepts a latency for a picked endpoint.
        """
        endpoints = self.endpoints([1])
        balancer = self.balancer(endpoints)
        balancer.record(balancer.pick(), 12.5)

    def test_pickCostBounded(self) -> None:
        """
        A pick reads the availability of a bounded number of endpoints, not
        all of them, even when almost every endpoint is dead.
        """
        endpoints = self.endpoints([1] * 5000, cls=CountingEndpoint)
        balancer = self.balancer(endpoints)
        for endpoint in endpoints[:-1]:
            endpoint.state = DEAD
        for endpoint in endpoints:
            endpoint.reads = 0
        for _ in range(100):
            self.assertIs(balancer.pick(), endpoints[-1])
        self.assertLessEqual(max(e.reads for e in endpoints), 100 * 2 * 5 + 100)
        self.assertLessEqual(sum(e.reads for e in endpoints), 100 * (2 * 5 + 2))


class P2CTests(BalancerContract, SynchronousTestCase):
    """
    Tests for L{P2CBalancer}.
    """

    balancerClass = P2CBalancer

    def test_leastLoaded(self) -> None:
        """
        Of two candidates the one with fewer requests in flight wins; a
        loaded endpoint among three is never picked.
        """
        endpoints = self.endpoints([1, 1, 1])
        balancer = self.balancer(endpoints)
        for _ in range(3):
            endpoints[0].acquire()
        endpoints[1].acquire()
        counts = collections.Counter(endpoints.index(balancer.pick()) for _ in range(3000))
        self.assertEqual(counts[0], 0)
        self.assertGreater(counts[2], counts[1])

    def test_loadPerWeight(self) -> None:
        """
        Load is compared per unit of weight.
        """
        light, heavy = self.endpoints([1, 4])
        balancer = self.balancer([light, heavy])
        light.acquire()
        for _ in range(3):
            heavy.acquire()
        self.assertEqual({id(balancer.pick()) for _ in range(200)}, {id(heavy)})

    def test_concurrentLoadSpreads(self) -> None:
        """
        Requests held open spread over the endpoints rather than piling up.
        """
        endpoints = self.endpoints([1] * 4)
        balancer = self.balancer(endpoints)
        for _ in range(400):
            balancer.pick().acquire()
        pending = sorted(e.pending for e in endpoints)
        self.assertLessEqual(pending[-1] - pending[0], 10)

    def test_maxEffortExhaustedCounted(self) -> None:
        """
        When the random tries miss, the exact fallback is counted.
        """
        endpoints = self.endpoints([1] * 50)
        balancer = self.balancer(endpoints, maxEffort=1)
        for endpoint in endpoints[1:]:
            endpoint.markDead(60)
        for _ in range(100):
            balancer.pick()
        self.assertGreater(balancer.maxEffortExhausted.value, 50)


class EwmaTests(BalancerContract, SynchronousTestCase):
    """
    Tests for L{EwmaBalancer}.
    """

    balancerClass = EwmaBalancer

    def test_prefersFaster(self) -> None:
        """
        The endpoint with the lower latency gets the traffic.
        """
        slow, fast = self.endpoints([1, 1])
        balancer = self.balancer([slow, fast])
        balancer.record(slow, 100)
        balancer.record(fast, 10)
        self.assertEqual({id(balancer.pick()) for _ in range(100)}, {id(fast)})

    def test_latencyTimesPending(self) -> None:
        """
        Cost is latency x (pending + 1): a fast but busy endpoint can lose.
        """
        a, b = self.endpoints([1, 1])
        balancer = self.balancer([a, b])
        balancer.record(a, 10)
        balancer.record(b, 25)
        for _ in range(3):
            a.acquire()
        self.assertEqual({id(balancer.pick()) for _ in range(50)}, {id(b)})

    def test_peakThenDecay(self) -> None:
        """
        A slow response raises the cost at once; later fast ones lower it by
        the time-weighted average.
        """
        [endpoint] = self.endpoints([1])
        balancer = self.balancer([endpoint], decayTimeMs=10000)
        balancer.record(endpoint, 10)
        balancer.record(endpoint, 100)
        self.assertEqual(balancer.cost(endpoint), 100)
        balancer.record(endpoint, 10)
        self.assertEqual(balancer.cost(endpoint), 100)
        self.clock.advance(10)
        balancer.record(endpoint, 10)
        self.assertAlmostEqual(endpoint.ewma, 100 * 0.36787944117 + 10 * (1 - 0.36787944117), places=6)

    def test_idleDecay(self) -> None:
        """
        Without traffic the cost decays towards 0.
        """
        [endpoint] = self.endpoints([1])
        balancer = self.balancer([endpoint], decayTimeMs=1000)
        balancer.record(endpoint, 50)
        self.clock.advance(1)
        self.assertAlmostEqual(balancer.cost(endpoint), 50 * 0.36787944117, places=6)

    def test_penaltyWithoutHistory(self) -> None:
        """
        A busy endpoint with no latency measured yet is tried last.
        """
        new, known = self.endpoints([1, 1])
        balancer = self.balancer([new, known])
        balancer.record(known, 500)
        new.acquire()
        self.assertEqual({id(balancer.pick()) for _ in range(50)}, {id(known)})
        self.assertGreater(balancer._load(0, new), PENALTY)

    def test_needsClock(self) -> None:
        """
        The ewma balancer cannot work without a clock.
        """
        self.assertRaises(ValueError, EwmaBalancer, random.Random(), None)


class ApertureTests(BalancerContract, SynchronousTestCase):
    """
    Tests for L{ApertureBalancer}.
    """

    balancerClass = ApertureBalancer

    def make(self, **kwargs: Any) -> Any:
        # The shared contract measures distribution over every endpoint: an
        # aperture covering them all.
        kwargs.setdefault("minAperture", 1000)
        return ApertureBalancer(rng=self.rng, clock=self.clock, **kwargs)

    def hold(self, balancer: Any, n: int) -> List[Endpoint]:
        held = []
        for _ in range(n):
            endpoint = balancer.pick()
            endpoint.acquire()
            held.append(endpoint)
            self.clock.advance(1)
        return held

    def test_smallApertureUsesFewEndpoints(self) -> None:
        """
        A lightly loaded client with C{minAperture} 2 talks to two endpoints.
        """
        endpoints = self.endpoints([1] * 10)
        balancer = self.balancer(endpoints, minAperture=2)
        used = set()
        for _ in range(500):
            endpoint = balancer.pick()
            used.add(id(endpoint))
            endpoint.acquire()
            endpoint.release(True)
            self.clock.advance(0.01)
        self.assertEqual(used, {id(e) for e in balancer.endpoints[:2]})

    def test_widensUnderLoadAndNarrows(self) -> None:
        """
        Load above C{highLoad} per endpoint widens the aperture; once the
        load is gone it narrows back to C{minAperture}.
        """
        endpoints = self.endpoints([1] * 10)
        balancer = self.balancer(endpoints, minAperture=1, smoothWindowMs=1000, lowLoad=0.5, highLoad=2.0)
        self.assertEqual(balancer.effectiveAperture, 1)
        held = self.hold(balancer, 20)
        self.assertGreater(balancer.effectiveAperture, 3)
        self.assertGreater(balancer.widens.value, 0)
        self.assertGreater(len({id(e) for e in held}), 3)
        for endpoint in held:
            endpoint.release(True)
            self.clock.advance(1)
        for _ in range(20):
            endpoint = balancer.pick()
            endpoint.acquire()
            self.clock.advance(1)
            endpoint.release(True)
        self.assertEqual(balancer.effectiveAperture, 1)
        self.assertGreater(balancer.narrows.value, 0)

    def test_stableRanks(self) -> None:
        """
        An endpoint keeps its place in the aperture across updates.
        """
        endpoints = self.endpoints([1] * 6)
        balancer = self.balancer(endpoints, minAperture=1)
        first = balancer.endpoints[0]
        extra = self.endpoints([1] * 8)[6:]
        balancer.update(endpoints + extra)
        order = [e for e in balancer.endpoints if e in endpoints]
        self.assertIs(order[0], first)
        self.assertEqual(len(balancer.endpoints), 8)

    def test_unavailableInApertureFallsBack(self) -> None:
        """
        If the aperture's endpoints are dead, another endpoint is used.
        """
        endpoints = self.endpoints([1] * 5)
        balancer = self.balancer(endpoints, minAperture=1)
        balancer.endpoints[0].markDead(30)
        picks = {id(balancer.pick()) for _ in range(100)}
        self.assertNotIn(id(balancer.endpoints[0]), picks)
        self.assertEqual(balancer.panicked.value, 0)

    def test_leastLoadedWithinAperture(self) -> None:
        """
        Within the aperture the less loaded of two candidates wins.
        """
        endpoints = self.endpoints([1] * 4)
        balancer = self.balancer(endpoints, minAperture=2)
        a, b = balancer.endpoints[:2]
        for _ in range(3):
            a.acquire()
        self.assertEqual({id(balancer.pick()) for _ in range(50)}, {id(b)})

    def test_invalid(self) -> None:
        """
        Inconsistent parameters are rejected.
        """
        self.assertRaises(ValueError, ApertureBalancer, random.Random(), self.clock, lowLoad=2, highLoad=1)
        self.assertRaises(ValueError, ApertureBalancer, random.Random(), self.clock, minAperture=0)
        self.assertRaises(ValueError, ApertureBalancer, random.Random(), None)


class HeapTests(BalancerContract, SynchronousTestCase):
    """
    Tests for L{HeapBalancer}.
    """

    balancerClass = HeapBalancer

    def test_leastLoaded(self) -> None:
        """
        Each pick goes to an endpoint with the fewest requests in flight.
        """
        endpoints = self.endpoints([1] * 4)
        balancer = self.balancer(endpoints)
        for _ in range(40):
            endpoint = balancer.pick()
            self.assertEqual(endpoint.pending, min(e.pending for e in endpoints))
            endpoint.acquire()
        self.assertEqual([e.pending for e in endpoints], [10] * 4)

    def test_loadPerWeight(self) -> None:
        """
        Held requests end up in proportion to the weights.
        """
        endpoints = self.endpoints([1, 3])
        balancer = self.balancer(endpoints)
        for _ in range(40):
            balancer.pick().acquire()
        self.assertEqual([e.pending for e in endpoints], [10, 30])

    def test_releaseReorders(self) -> None:
        """
        A finished request makes its endpoint preferred again.
        """
        endpoints = self.endpoints([1] * 3)
        balancer = self.balancer(endpoints)
        for endpoint in endpoints:
            endpoint.acquire()
        endpoints[1].release(True)
        self.assertIs(balancer.pick(), endpoints[1])

    def test_noBurstAfterRevival(self) -> None:
        """
        An endpoint back from the dead takes its share, not every request.
        """
        endpoints = self.endpoints([1, 1])
        balancer = self.balancer(endpoints)
        endpoints[0].markDead(10)
        self.shares(balancer, 1000)
        self.clock.advance(10)
        self.assertShares(balancer, endpoints, [0.5, 0.5])


class RoundRobinTests(BalancerContract, SynchronousTestCase):
    """
    Tests for L{RoundRobinBalancer}.
    """

    balancerClass = RoundRobinBalancer

    def test_inTurn(self) -> None:
        """
        With equal weights endpoints are picked strictly in turn.
        """
        endpoints = self.endpoints([1] * 4)
        balancer = self.balancer(endpoints)
        picks = [endpoints.index(balancer.pick()) for _ in range(12)]
        start = picks[0]
        self.assertEqual(picks, [(start + i) % 4 for i in range(12)])

    def test_weightedExact(self) -> None:
        """
        With weights 1, 2, 3 every round of 6 picks has exactly 1, 2 and 3.
        """
        endpoints = self.endpoints([1, 2, 3])
        balancer = self.balancer(endpoints)
        picks = [endpoints.index(balancer.pick()) for _ in range(600)]
        for start in range(0, 600, 6):
            counts = collections.Counter(picks[start : start + 6])
            self.assertEqual([counts[0], counts[1], counts[2]], [1, 2, 3])

    def test_skipsUnavailableInTurn(self) -> None:
        """
        A dead endpoint loses its turns.
        """
        endpoints = self.endpoints([1] * 3)
        balancer = self.balancer(endpoints)
        endpoints[1].markDead(10)
        picks = [endpoints.index(balancer.pick()) for _ in range(10)]
        self.assertNotIn(1, picks)
        self.assertEqual(collections.Counter(picks)[0], 5)


class BalancerPluginTests(SynchronousTestCase):
    """
    Tests for the C{loadBalancer:} plugins.
    """

    def setUp(self) -> None:
        self.registry = PluginRegistry.fromPlugins()

    def structure(self, raw: Any) -> Any:
        return structurePlugin(ILoadBalancerPlugin, raw, self.registry, "routers[0].client.loadBalancer")

    def test_discovery(self) -> None:
        """
        Every Linkerd balancer kind is installed.
        """
        self.assertEqual(
            self.registry.kinds(ILoadBalancerPlugin), ["aperture", "ewma", "heap", "p2c", "roundRobin"]
        )

    def test_verifyAndBuild(self) -> None:
        """
        Every descriptor provides L{ILoadBalancerPlugin} and builds a working
        L{ILoadBalancer} from its default configuration.
        """
        clock = Clock()
        for plugin in self.registry.plugins(ILoadBalancerPlugin):
            self.assertTrue(verifyObject(ILoadBalancerPlugin, plugin))
            configured = self.structure({"kind": plugin.kind})
            balancer = plugin.newBalancer(configured.config, BuildContext(reactor=clock))
            self.assertTrue(verifyObject(ILoadBalancer, balancer))
            self.assertEqual(balancer.kind, plugin.kind)
            endpoint = Endpoint("h", 1, clock=clock)
            balancer.update([endpoint])
            self.assertIs(balancer.pick(), endpoint)

    def test_defaults(self) -> None:
        """
        Unset keys take Linkerd's defaults.
        """
        cases = {
            "p2c": {"maxEffort": 5, "enableProbation": False},
            "ewma": {"maxEffort": 5, "decayTimeMs": 10000, "enableProbation": False},
            "aperture": {
                "maxEffort": 5,
                "smoothWindowMs": 5000,
                "lowLoad": 0.5,
                "highLoad": 2.0,
                "minAperture": 1,
                "enableProbation": False,
            },
            "heap": {"enableProbation": False},
            "roundRobin": {"maxEffort": 5, "enableProbation": False},
        }
        import attrs

        for kind, expected in cases.items():
            self.assertEqual(attrs.asdict(self.structure({"kind": kind}).config), expected)

    def test_configApplied(self) -> None:
        """
        Configured values reach the balancer; the context's metrics and
        randomness are used.
        """
        metrics = MetricsTree()

        class Context:
            reactor = Clock()
            random = random.Random(5)

        Context.metrics = metrics  # type: ignore[attr-defined]
        configured = self.structure(
            {"kind": "aperture", "maxEffort": 3, "smoothWindowMs": 100, "lowLoad": 1, "highLoad": 4,
             "minAperture": 2, "enableProbation": True}
        )
        balancer = configured.plugin.newBalancer(configured.config, Context())
        self.assertEqual(
            (balancer.maxEffort, balancer.smoothWindowMs, balancer.lowLoad, balancer.highLoad,
             balancer.minAperture, balancer.enableProbation),
            (3, 100, 1.0, 4.0, 2, True),
        )
        self.assertIs(balancer._rng, Context.random)
        balancer.update([Endpoint("h", p) for p in range(3)])
        flat = metrics.flatten()
        self.assertEqual(flat["loadbalancer/size"], 3)
        self.assertEqual(flat["loadbalancer/available"], 3)
        self.assertEqual(flat["loadbalancer/aperture"], 2)

    def test_ewmaDecay(self) -> None:
        """
        C{decayTimeMs} configures the ewma balancer.
        """
        configured = self.structure({"kind": "ewma", "decayTimeMs": 2500})
        balancer = configured.plugin.newBalancer(configured.config, BuildContext(reactor=Clock()))
        self.assertEqual(balancer.decayTimeMs, 2500)

    def test_rejectsBadValues(self) -> None:
        """
        Bad values are reported with their key paths.
        """
        cases = [
            ({"kind": "p2c", "maxEffort": 0}, ["routers[0].client.loadBalancer.maxEffort"]),
            ({"kind": "ewma", "decayTimeMs": -1}, ["routers[0].client.loadBalancer.decayTimeMs"]),
            ({"kind": "aperture", "lowLoad": 3.0}, ["routers[0].client.loadBalancer.lowLoad"]),
            ({"kind": "aperture", "minAperture": 0}, ["routers[0].client.loadBalancer.minAperture"]),
            ({"kind": "heap", "maxEffort": 5}, ["routers[0].client.loadBalancer.maxEffort"]),
            ({"kind": "roundRobin", "enableProbation": "yes"}, ["routers[0].client.loadBalancer.enableProbation"]),
            ({"kind": "leastConn"}, ["routers[0].client.loadBalancer.kind"]),
        ]
        for raw, paths in cases:
            with self.assertRaises(ConfigError) as caught:
                self.structure(raw)
            self.assertEqual([p.path for p in caught.exception.problems], paths, raw)


class BalancerInvariantTests(SynchronousTestCase):
    """
    Property tests: whatever happens to the endpoints, every balancer picks
    an available endpoint when there is one, and its bookkeeping matches
    the endpoints.
    """

    classes = (P2CBalancer, EwmaBalancer, ApertureBalancer, HeapBalancer, RoundRobinBalancer)

    def test_invariants(self) -> None:
        """
        Random sequences of deaths, revivals, probes, requests and updates
        never make a balancer pick an unavailable endpoint while an
        available one exists, nor lose count of the available ones.
        """
        from hypothesis import given, settings
        from hypothesis import strategies as st

        operation = st.one_of(
            st.tuples(st.just("dead"), st.integers(0, 7), st.integers(1, 5)),
            st.tuples(st.just("advance"), st.integers(0, 7), st.integers(1, 5)),
            st.tuples(st.just("send"), st.integers(0, 7), st.booleans()),
            st.tuples(st.just("finish"), st.integers(0, 7), st.booleans()),
            st.tuples(st.just("update"), st.integers(1, 255), st.integers(0, 3)),
        )

        @settings(derandomize=True, max_examples=150, deadline=None, database=None)
        @given(
            cls=st.sampled_from(self.classes),
            weights=st.lists(st.sampled_from([0, 0.5, 1, 2, 5]), min_size=1, max_size=8),
            operations=st.lists(operation, max_size=60),
        )
        def check(cls: Any, weights: List[float], operations: List[Any]) -> None:
            clock = Clock()
            endpoints = [
                Endpoint("h", i, weight=w, clock=clock, accrual=ConsecutiveFailuresPolicy(2, lambda: repeat(2.0)))
                for i, w in enumerate(weights)
            ]
            kwargs = {"minAperture": 2} if cls is ApertureBalancer else {}
            balancer = cls(rng=random.Random(0), clock=clock, **kwargs)
            balancer.update(endpoints)
            inFlight: List[Endpoint] = []
            for op, a, b in operations:
                if op == "dead":
                    endpoints[a % len(endpoints)].markDead(b)
                elif op == "advance":
                    clock.advance(b)
                elif op == "send":
                    endpoint = balancer.pick()
                    endpoint.acquire()
                    inFlight.append(endpoint)
                elif op == "finish" and inFlight:
                    inFlight.pop(a % len(inFlight)).release(b)
                elif op == "update":
                    chosen = [e for i, e in enumerate(endpoints) if a & (1 << i)] or endpoints[:1]
                    endpoints[b % len(endpoints)].weight = [0, 1, 3, 0.5][b]
                    balancer.update(chosen)
                current = balancer.endpoints
                available = [e for e in current if e.available]
                self.assertEqual(balancer.availableCount, len(available))
                availableWeight = sum(w for w, e in zip(balancer._intWeights, current) if e.available)
                self.assertEqual(balancer._tree.total, availableWeight)
                picked = balancer.pick()
                self.assertIn(picked, current)
                if available:
                    self.assertTrue(picked.available, (op, a, b))

        check()
