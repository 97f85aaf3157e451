# -*- test-case-name: tests.test_balancers -*-
"""
What every balancer shares: the endpoint set and its weights, weighted
random sampling, availability tracking, the fallback and fail-open rules.

Weights.  An endpoint's C{weight} is read in C{update()}.  Weighted random
choices draw an endpoint with probability C{weight / total}; when every
weight is equal the draw is a single multiplication, otherwise a bisection
of precomputed cumulative weights (O(log n)).  Negative weights count as 0.
An endpoint of weight 0 gets traffic only when no endpoint of positive
weight is available; if every weight is 0 they all count as 1.

Availability.  Balancers register with each endpoint
(L{Endpoint.watchAvailability<linkerpy.client.endpoint.Endpoint.watchAvailability>})
and keep a Fenwick tree of the weights of the available endpoints, updated
in O(log n) when one changes.  A pick first makes up to C{maxEffort} cheap
random tries (as Finagle does); if they all land on unavailable endpoints
it draws directly from the available ones (exact, O(log n)), counted in
C{loadbalancer/max_effort_exhausted}.

Fail open.  When no endpoint is available at all (every host was marked
dead by failure accrual, or is busy with its probe) the balancer still
answers: it picks among I{all} endpoints by weight, counted in
C{loadbalancer/panicked}.  This is Finagle's behaviour: a service whose
every host looks dead keeps receiving traffic (which also lets hosts
recover), rather than failing every request locally.  C{pick()} answers
C{None} only when the endpoint set is empty.

C{enableProbation} is accepted for compatibility with Linkerd's
configuration and has no effect: an address removed from service discovery
leaves the balancer (and its connections are closed) at once.
"""

from __future__ import annotations

import bisect
import random
from typing import Any, Dict, List, Optional, Sequence, Tuple

from zope.interface import implementer

from linkerpy.interfaces import ILoadBalancer
from linkerpy.telemetry.metrics import Counter

__all__ = ["BalancerBase", "WeightTree", "WEIGHT_SCALE"]

#: Weights are kept as integers of this many units per 1.0 in the tree, so
#: that repeated additions and removals never drift.
WEIGHT_SCALE = 1_000_000

#: The inverse weight of a weight-0 endpoint (never inf: 0 * inf is NaN).
_HUGE = 1e18


class WeightTree:
    """
    A Fenwick (binary indexed) tree of non-negative integer weights: update
    one weight and draw an index with probability C{weight / total}, both
    in O(log n).
    """

    __slots__ = ("_n", "_tree", "_top", "total")

    def __init__(self, weights: Sequence[int]) -> None:
        n = len(weights)
        tree = [0] * (n + 1)
        for i, w in enumerate(weights, 1):
            tree[i] += w
            j = i + (i & -i)
            if j <= n:
                tree[j] += tree[i]
        self._n = n
        self._tree = tree
        self._top = 1 << (n.bit_length() - 1) if n else 0
        self.total = sum(weights)

    def add(self, index: int, delta: int) -> None:
        """
        Add C{delta} to the weight at C{index} (0-based).
        """
        self.total += delta
        i = index + 1
        n = self._n
        tree = self._tree
        while i <= n:
            tree[i] += delta
            i += i & -i

    def find(self, r: int) -> int:
        """
        @param r: a point in C{[0, total)}.
        @return: the 0-based index whose weight interval contains C{r}.
        """
        pos = 0
        step = self._top
        n = self._n
        tree = self._tree
        while step:
            nxt = pos + step
            if nxt <= n and tree[nxt] <= r:
                pos = nxt
                r -= tree[nxt]
            step >>= 1
        return pos


@implementer(ILoadBalancer)
class BalancerBase:
    """
    Endpoint bookkeeping shared by all balancers; subclasses implement
    L{pick}.

    @ivar maxEffort: random tries before the exact fallback.
    @ivar enableProbation: accepted, no effect (see the module docstring).
    """

    kind = "?"
    #: Whether the subclass needs load notifications (C{_loadChanged}).
    watchesLoad = False

    def __init__(
        self,
        rng: Optional[random.Random] = None,
        clock: Any = None,
        metrics: Any = None,
        maxEffort: int = 5,
        enableProbation: bool = False,
    ) -> None:
        if maxEffort < 1:
            raise ValueError(f"maxEffort must be >= 1, got {maxEffort}")
        self._rng = rng if rng is not None else random.Random()
        self._random = self._rng.random
        self._clock = clock
        self.maxEffort = maxEffort
        self.enableProbation = enableProbation
        self._endpoints: Tuple[Any, ...] = ()
        self._index: Dict[Any, int] = {}
        self._n = 0
        self._uniform = True
        self._cumulative: List[float] = []
        self._totalWeight = 0.0
        self._weights: List[float] = []
        self._invWeights: List[float] = []
        self._intWeights: List[int] = []
        self._tracked: List[bool] = []
        self._tree = WeightTree(())
        self._availableCount = 0
        if metrics is not None:
            scope = metrics.scope("loadbalancer")
            scope.gauge("size", fn=lambda: self._n)
            scope.gauge("available", fn=lambda: self._availableCount)
            self.maxEffortExhausted = scope.counter("max_effort_exhausted")
            self.panicked = scope.counter("panicked")
            self.adds = scope.counter("adds")
            self.removes = scope.counter("removes")
            self.updates = scope.counter("updates")
        else:
            self.maxEffortExhausted = Counter()
            self.panicked = Counter()
            self.adds = Counter()
            self.removes = Counter()
            self.updates = Counter()

    # -- ILoadBalancer -----------------------------------------------------------------

    @property
    def endpoints(self) -> Tuple[Any, ...]:
        """
        The current endpoints, in C{update()} order.
        """
        return self._endpoints

    @property
    def availableCount(self) -> int:
        """
        How many endpoints are available now.
        """
        return self._availableCount

    def update(self, endpoints: Sequence[Any]) -> None:
        new = tuple(dict.fromkeys(endpoints))
        newSet = set(new)
        for endpoint in self._endpoints:
            if endpoint not in newSet:
                self._unwatch(endpoint)
                self.removes.value += 1
        for endpoint in new:
            if endpoint not in self._index:
                endpoint.watchAvailability(self._availabilityChanged)
                if self.watchesLoad:
                    endpoint.watchLoad(self._loadChanged)
                self.adds.value += 1
        self.updates.value += 1
        self._endpoints = new
        self._n = n = len(new)
        self._index = {endpoint: i for i, endpoint in enumerate(new)}
        weights = [max(float(e.weight), 0.0) for e in new]
        if n and not any(weights):
            weights = [1.0] * n
        self._uniform = n == 0 or all(w == weights[0] for w in weights)
        self._weights = weights
        self._totalWeight = sum(weights)
        cumulative: List[float] = []
        acc = 0.0
        for w in weights:
            acc += w
            cumulative.append(acc)
        self._cumulative = cumulative
        self._invWeights = [1.0 / w if w > 0 else _HUGE for w in weights]
        self._intWeights = [max(int(round(w * WEIGHT_SCALE)), 1) if w > 0 else 0 for w in weights]
        self._tracked = [bool(e.available) for e in new]
        self._tree = WeightTree([w if a else 0 for w, a in zip(self._intWeights, self._tracked)])
        self._availableCount = sum(self._tracked)
        self._rebuilt()

    def pick(self) -> Any:
        raise NotImplementedError()

    def record(self, endpoint: Any, latencyMs: float) -> None:
        """
        A request to C{endpoint} took C{latencyMs}; only latency-aware
        balancers use it.
        """

    def close(self) -> None:
        """
        Stop observing the endpoints and forget them.
        """
        for endpoint in self._endpoints:
            self._unwatch(endpoint)
        self._endpoints = ()
        self._index = {}
        self._n = 0
        self._tree = WeightTree(())
        self._tracked = []
        self._availableCount = 0
        self._rebuilt()

    # -- subclass hooks ----------------------------------------------------------------

    def _rebuilt(self) -> None:
        """
        The endpoint set (and the arrays above) changed.
        """

    def _loadChanged(self, endpoint: Any) -> None:
        """
        C{endpoint.pending} changed (only with C{watchesLoad}).
        """

    def _availabilityUpdated(self, index: int) -> None:
        """
        The availability of the endpoint at C{index} changed.
        """

    # -- shared machinery --------------------------------------------------------------

    def _unwatch(self, endpoint: Any) -> None:
        endpoint.unwatchAvailability(self._availabilityChanged)
        if self.watchesLoad:
            endpoint.unwatchLoad(self._loadChanged)

    def _availabilityChanged(self, endpoint: Any) -> None:
        i = self._index.get(endpoint)
        if i is None:
            return
        now = bool(endpoint.available)
        if now == self._tracked[i]:
            return
        self._tracked[i] = now
        w = self._intWeights[i]
        if now:
            self._availableCount += 1
            if w:
                self._tree.add(i, w)
        else:
            self._availableCount -= 1
            if w:
                self._tree.add(i, -w)
        self._availabilityUpdated(i)

    def _sample(self) -> int:
        """
        @return: a weighted random index among all endpoints (n > 0).
        """
        n = self._n
        if self._uniform:
            return int(self._random() * n)
        i = bisect.bisect_right(self._cumulative, self._random() * self._totalWeight)
        return i if i < n else n - 1

    def _sampleIn(self, k: int) -> int:
        """
        @return: a weighted random index among the first C{k} endpoints.
        """
        if self._uniform:
            return int(self._random() * k)
        i = bisect.bisect_right(self._cumulative, self._random() * self._cumulative[k - 1], 0, k)
        return i if i < k else k - 1

    def _sampleOther(self, a: int, k: int) -> int:
        """
        @return: a weighted random index among the first C{k} endpoints
            other than C{a} (C{a} itself if no other has weight).
        """
        cumulative = self._cumulative
        start = cumulative[a - 1] if a else 0.0
        weight = cumulative[a] - start
        rest = cumulative[k - 1] - weight
        if rest <= 0:
            return a
        r = self._random() * rest
        if r >= start:
            r += weight
        i = bisect.bisect_right(cumulative, r, 0, k)
        if i >= k:
            i = k - 1
        return i if i != a else (i + 1 if i + 1 < k else i - 1)

    def _fallback(self) -> Any:
        """
        The random tries failed: draw exactly among the available endpoints,
        or fail open among all of them.
        """
        endpoints = self._endpoints
        tree = self._tree
        if tree.total > 0:
            r = int(self._random() * tree.total)
            endpoint = endpoints[tree.find(min(r, tree.total - 1))]
            if endpoint.available:
                return endpoint
        if self._availableCount > 0:
            # Only weight-0 endpoints are available (or the tree is stale
            # because an endpoint was changed behind our back): scan.
            start = int(self._random() * self._n)
            for k in range(self._n):
                endpoint = endpoints[(start + k) % self._n]
                if endpoint.available:
                    return endpoint
        self.panicked.value += 1
        return endpoints[self._sample()]
