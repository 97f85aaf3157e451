# -*- test-case-name: tests.test_balancers -*-
"""
Heap-ordered balancers.

  - L{HeapBalancer} (C{heap}): always the least loaded endpoint
    (C{pending / weight}), kept at the top of a binary heap that is fixed
    up in O(log n) whenever an endpoint's load or availability changes.
    Ties are broken by stride scheduling (each pick advances the endpoint's
    I{pass} by C{1 / weight}), so an idle client spreads its requests in
    proportion to the weights instead of reusing one endpoint.
    Unavailable endpoints sink below the available ones.
  - L{RoundRobinBalancer} (C{roundRobin}): endpoints in turn.  With equal
    weights it is a plain cursor (O(1)); otherwise smooth weighted round
    robin by stride scheduling on a heap of passes (O(log n)): each
    endpoint gets C{weight / total} of the turns, evenly interleaved.
    Unavailable endpoints lose their turn (up to C{maxEffort} in a row).

Endpoints added later, and endpoints coming back from being unavailable,
start at the current smallest pass, so they take their share at once
without catching up on the turns they missed.
"""

from __future__ import annotations

import random
from typing import Any, Callable, List, Optional, Tuple

from linkerpy.client.balancers.base import BalancerBase

__all__ = ["IndexedHeap", "HeapBalancer", "RoundRobinBalancer"]

#: Passes are shifted back towards 0 when one grows past this.
_REBASE_AT = 1e12
_INF = float("inf")


class IndexedHeap:
    """
    A binary min-heap of the indices C{0..n-1} ordered by C{key(index)},
    knowing where each index sits so that one whose key changed can be
    moved in O(log n).
    """

    __slots__ = ("heap", "pos", "key")

    def __init__(self, n: int, key: Callable[[int], Any]) -> None:
        self.key = key
        self.heap: List[int] = list(range(n))
        self.pos: List[int] = list(range(n))
        for p in range(n // 2 - 1, -1, -1):
            self._down(p)

    def __len__(self) -> int:
        return len(self.heap)

    def top(self) -> int:
        return self.heap[0]

    def fix(self, index: int) -> None:
        """
        The key of C{index} changed: restore the heap order.
        """
        p = self.pos[index]
        if not self._up(p):
            self._down(p)

    def _swap(self, p: int, q: int) -> None:
        heap = self.heap
        a, b = heap[p], heap[q]
        heap[p], heap[q] = b, a
        self.pos[a] = q
        self.pos[b] = p

    def _up(self, p: int) -> bool:
        key = self.key
        heap = self.heap
        moved = False
        k = key(heap[p])
        while p > 0:
            parent = (p - 1) >> 1
            if k < key(heap[parent]):
                self._swap(p, parent)
                p = parent
                moved = True
            else:
                break
        return moved

    def _down(self, p: int) -> None:
        key = self.key
        heap = self.heap
        n = len(heap)
        k = key(heap[p])
        while True:
            left = 2 * p + 1
            if left >= n:
                return
            child = left
            ck = key(heap[left])
            right = left + 1
            if right < n:
                rk = key(heap[right])
                if rk < ck:
                    child, ck = right, rk
            if ck < k:
                self._swap(p, child)
                p = child
            else:
                return


class _StrideMixin:
    """
    Pass bookkeeping for stride scheduling (mixed into a L{BalancerBase}).
    """

    _passes: List[float]
    _strides: List[float]
    _strideEndpoints: Tuple[Any, ...]

    def _restride(self) -> None:
        """
        The endpoint set changed: carry the passes of the endpoints that
        stay over (shifted so the smallest is 0); new ones start at 0.
        Weight-0 endpoints have an infinite pass: they never get a turn.
        """
        b: Any = self
        previous = {}
        for i, endpoint in enumerate(self._strideEndpoints):
            if endpoint in b._index and self._passes[i] != _INF:
                previous[endpoint] = self._passes[i]
        base = min(previous.values()) if previous else 0.0
        self._strideEndpoints = b._endpoints
        self._strides = [1.0 / w if w > 0 else _INF for w in b._weights]
        self._passes = [
            previous.get(e, base) - base if stride != _INF else _INF
            for e, stride in zip(b._endpoints, self._strides)
        ]

    def _advance(self, index: int) -> bool:
        """
        Give C{index} its turn.

        @return: whether every pass was shifted (the heap must be rebuilt).
        """
        passes = self._passes
        passes[index] += self._strides[index]
        if _REBASE_AT < passes[index] < _INF:
            base = min(passes)
            self._passes = [p - base for p in passes]
            return True
        return False


class HeapBalancer(_StrideMixin, BalancerBase):
    """
    C{heap}: the least loaded endpoint (see the module docstring).
    """

    kind = "heap"
    watchesLoad = True

    def __init__(
        self,
        rng: Optional[random.Random] = None,
        clock: Any = None,
        metrics: Any = None,
        maxEffort: int = 5,
        enableProbation: bool = False,
    ) -> None:
        super().__init__(rng, clock, metrics, maxEffort, enableProbation)
        self._passes = []
        self._strides = []
        self._strideEndpoints = ()
        self._heap = IndexedHeap(0, self._key)

    def _key(self, i: int) -> Tuple[int, float, float]:
        endpoint = self._endpoints[i]
        if endpoint.available:
            cls = 0 if self._intWeights[i] else 1
        else:
            cls = 2
        return (cls, endpoint.pending * self._invWeights[i], self._passes[i])

    def _rebuilt(self) -> None:
        self._restride()
        self._heap = IndexedHeap(self._n, self._key)

    def _loadChanged(self, endpoint: Any) -> None:
        i = self._index.get(endpoint)
        if i is not None:
            self._heap.fix(i)

    def _availabilityUpdated(self, index: int) -> None:
        if self._tracked[index]:
            # Back in rotation: start from the others' current pass rather
            # than catching up on every turn missed while unavailable.
            passes = self._passes
            others = [passes[j] for j in range(self._n) if j != index and self._tracked[j] and passes[j] != _INF]
            if others and passes[index] != _INF:
                passes[index] = max(passes[index], min(others))
        self._heap.fix(index)

    def pick(self) -> Any:
        if self._n == 0:
            return None
        i = self._heap.heap[0]
        endpoint = self._endpoints[i]
        if not endpoint.available:
            self.panicked.value += 1
        if self._advance(i):
            self._heap = IndexedHeap(self._n, self._key)
        else:
            self._heap.fix(i)
        return endpoint


class RoundRobinBalancer(_StrideMixin, BalancerBase):
    """
    C{roundRobin}: endpoints in turn, by weight (see the module docstring).
    """

    kind = "roundRobin"

    def __init__(
        self,
        rng: Optional[random.Random] = None,
        clock: Any = None,
        metrics: Any = None,
        maxEffort: int = 5,
        enableProbation: bool = False,
    ) -> None:
        super().__init__(rng, clock, metrics, maxEffort, enableProbation)
        self._cursor = 0
        self._passes = []
        self._strides = []
        self._strideEndpoints = ()
        self._heap = IndexedHeap(0, self._passes.__getitem__)

    def _rebuilt(self) -> None:
        self._restride()
        self._heap = IndexedHeap(self._n, self._passes.__getitem__)
        if self._n:
            # Start the cursor somewhere random so that routers do not all
            # begin with the same endpoint.
            self._cursor = int(self._random() * self._n)
        else:
            self._cursor = 0

    def pick(self) -> Any:
        n = self._n
        if n == 0:
            return None
        endpoints = self._endpoints
        if self._uniform:
            cursor = self._cursor
            for _ in range(self.maxEffort):
                endpoint = endpoints[cursor]
                cursor += 1
                if cursor == n:
                    cursor = 0
                if endpoint.available:
                    self._cursor = cursor
                    return endpoint
            self._cursor = cursor
        else:
            heap = self._heap
            for _ in range(self.maxEffort):
                i = heap.heap[0]
                if self._advance(i):
                    self._heap = heap = IndexedHeap(n, self._passes.__getitem__)
                else:
                    heap.fix(i)
                endpoint = endpoints[i]
                if endpoint.available:
                    return endpoint
        self.maxEffortExhausted.value += 1
        return self._fallback()
