# -*- test-case-name: tests.test_balancers -*-
"""
The aperture balancer (C{aperture}): power of two choices within a window
(the aperture) of the endpoints, sized by load (Finagle's random aperture
with its C{LoadBand} controller).

Each endpoint gets a random rank when it joins; the aperture is the first
C{k} endpoints by rank, so different routers use different subsets and an
endpoint keeps its place across address-set updates.  The controller keeps
an exponentially weighted moving average (over C{smoothWindowMs}) of the
total requests in flight; after every change it divides that by C{k}:

  - at or above C{highLoad}, the aperture widens by one endpoint;
  - at or below C{lowLoad}, it narrows by one (never below C{minAperture}).

A small client thus talks to few endpoints (fewer connections), a busy one
to as many as it needs.  If the random tries within the aperture only find
unavailable endpoints, the pick falls back to any available endpoint.
"""

from __future__ import annotations

import random
from typing import Any, Dict, List, Optional, Sequence

from linkerpy.client.accrual import Ema
from linkerpy.client.balancers.base import BalancerBase
from linkerpy.telemetry.metrics import Counter

__all__ = ["ApertureBalancer"]


class ApertureBalancer(BalancerBase):
    """
    C{aperture}: see the module docstring.

    @param smoothWindowMs: the smoothing window of the load average (> 0).
    @param lowLoad: narrow at or below this load per endpoint.
    @param highLoad: widen at or above this load per endpoint.
    @param minAperture: the smallest aperture (>= 1).
    @param clock: an C{IReactorTime}; required.
    """

    kind = "aperture"
    watchesLoad = True

    def __init__(
        self,
        rng: Optional[random.Random] = None,
        clock: Any = None,
        metrics: Any = None,
        maxEffort: int = 5,
        enableProbation: bool = False,
        smoothWindowMs: float = 5000,
        lowLoad: float = 0.5,
        highLoad: float = 2.0,
        minAperture: int = 1,
    ) -> None:
        if clock is None:
            raise ValueError("the aperture balancer needs a clock")
        if smoothWindowMs <= 0:
            raise ValueError(f"smoothWindowMs must be positive, got {smoothWindowMs}")
        if not 0 <= lowLoad < highLoad:
            raise ValueError(f"expected 0 <= lowLoad < highLoad, got {lowLoad} and {highLoad}")
        if minAperture < 1:
            raise ValueError(f"minAperture must be >= 1, got {minAperture}")
        super().__init__(rng, clock, metrics, maxEffort, enableProbation)
        self.smoothWindowMs = smoothWindowMs
        self.lowLoad = lowLoad
        self.highLoad = highLoad
        self.minAperture = minAperture
        self.aperture = minAperture
        self._ranks: Dict[Any, float] = {}
        self._lastPending: List[int] = []
        self._totalPending = 0
        self._ema = Ema(smoothWindowMs)
        if metrics is not None:
            scope = metrics.scope("loadbalancer")
            scope.gauge("aperture", fn=lambda: self.effectiveAperture)
            self.widens = scope.counter("loadband", "widen")
            self.narrows = scope.counter("loadband", "narrow")
        else:
            self.widens = Counter()
            self.narrows = Counter()

    @property
    def effectiveAperture(self) -> int:
        """
        How many endpoints the aperture covers now.
        """
        return min(max(self.aperture, self.minAperture), self._n)

    @property
    def offeredLoad(self) -> float:
        """
        The smoothed total of requests in flight.
        """
        return self._ema.value

    def update(self, endpoints: Sequence[Any]) -> None:
        unique = list(dict.fromkeys(endpoints))
        ranks = self._ranks
        for endpoint in unique:
            if endpoint not in ranks:
                ranks[endpoint] = self._rng.random()
        keep = set(unique)
        for endpoint in list(ranks):
            if endpoint not in keep:
                del ranks[endpoint]
        unique.sort(key=ranks.__getitem__)
        super().update(unique)

    def _rebuilt(self) -> None:
        self._lastPending = [e.pending for e in self._endpoints]
        self._totalPending = sum(self._lastPending)
        if self._n:
            self.aperture = max(self.minAperture, min(self.aperture, self._n))

    def _loadChanged(self, endpoint: Any) -> None:
        i = self._index.get(endpoint)
        if i is None:
            return
        pending = endpoint.pending
        self._totalPending += pending - self._lastPending[i]
        self._lastPending[i] = pending
        offered = self._ema.update(self._clock.seconds() * 1000.0, self._totalPending)
        k = self.effectiveAperture
        if k == 0:
            return
        average = offered / k
        if average >= self.highLoad and self.aperture < self._n:
            self.aperture += 1
            self.widens.value += 1
        elif average <= self.lowLoad and self.aperture > self.minAperture:
            self.aperture -= 1
            self.narrows.value += 1

    def pick(self) -> Any:
        n = self._n
        if n == 0:
            return None
        endpoints = self._endpoints
        k = min(max(self.aperture, self.minAperture), n)
        if k == 1:
            endpoint = endpoints[0]
            if endpoint.available:
                return endpoint
        else:
            rand = self._random
            uniform = self._uniform
            inv = self._invWeights
            for _ in range(self.maxEffort):
                if uniform:
                    a = int(rand() * k)
                    b = int(rand() * (k - 1))
                    if b >= a:
                        b += 1
                else:
                    a = self._sampleIn(k)
                    b = self._sampleOther(a, k)
                ea = endpoints[a]
                eb = endpoints[b]
                if ea.available:
                    if eb.available and a != b and eb.pending * inv[b] < ea.pending * inv[a]:
                        return eb
                    return ea
                if eb.available:
                    return eb
        self.maxEffortExhausted.value += 1
        return self._fallback()
