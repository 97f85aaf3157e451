# -*- test-case-name: tests.test_balancers -*-
"""
Power of two choices: draw two endpoints at random (by weight), send to the
less loaded one.

  - L{P2CBalancer} (C{p2c}): load is C{pending / weight}.
  - L{EwmaBalancer} (C{ewma}): load is the peak-EWMA latency cost times
    C{pending + 1}, divided by the weight (Finagle's C{P2CPeakEwma}).

The two candidates are distinct (as in Finagle): the first is drawn by
weight among all endpoints, the second by weight among the others.  When
their loads tie the first wins, so idle traffic follows the weights.
"""

from __future__ import annotations

import math
import random
from typing import Any, Optional

from linkerpy.client.balancers.base import BalancerBase

__all__ = ["P2CBalancer", "EwmaBalancer", "PENALTY"]

#: The load of an endpoint with requests in flight but no latency history
#: (Finagle's C{Long.MaxValue >> 16}): try it only if nothing else works.
PENALTY = float((2**63 - 1) >> 16)


class P2CBalancer(BalancerBase):
    """
    C{p2c}: the less loaded (C{pending / weight}) of two random endpoints.
    """

    kind = "p2c"

    def _load(self, index: int, endpoint: Any) -> float:
        return endpoint.pending * self._invWeights[index]

    def pick(self) -> Any:
        n = self._n
        if n == 0:
            return None
        endpoints = self._endpoints
        if n == 1:
            endpoint = endpoints[0]
            if not endpoint.available:
                self.panicked.value += 1
            return endpoint
        rand = self._random
        uniform = self._uniform
        load = self._load
        for _ in range(self.maxEffort):
            if uniform:
                a = int(rand() * n)
                b = int(rand() * (n - 1))
                if b >= a:
                    b += 1
            else:
                a = self._sample()
                b = self._sampleOther(a, n)
            ea = endpoints[a]
            eb = endpoints[b]
            if ea.available:
                if eb.available and a != b and load(b, eb) < load(a, ea):
                    return eb
                return ea
            if eb.available:
                return eb
        self.maxEffortExhausted.value += 1
        return self._fallback()


class EwmaBalancer(P2CBalancer):
    """
    C{ewma}: the cheaper of two random endpoints, where the cost is a
    peak-sensitive exponentially weighted moving average of latency: a
    slower response raises it at once, faster ones lower it gradually,
    and it decays towards 0 over C{decayTimeMs} without traffic.  The load
    is C{cost * (pending + 1) / weight}; an endpoint with requests in
    flight but no measured latency yet is tried last (L{PENALTY}).

    Latencies come from L{record}, which the client calls once per finished
    request.

    @param decayTimeMs: the decay constant of the average (ms, > 0).
    @param clock: an C{IReactorTime}; required.
    """

    kind = "ewma"

    def __init__(
        self,
        rng: Optional[random.Random] = None,
        clock: Any = None,
        metrics: Any = None,
        maxEffort: int = 5,
        enableProbation: bool = False,
        decayTimeMs: float = 10000,
    ) -> None:
        if clock is None:
            raise ValueError("the ewma balancer needs a clock")
        if decayTimeMs <= 0:
            raise ValueError(f"decayTimeMs must be positive, got {decayTimeMs}")
        super().__init__(rng, clock, metrics, maxEffort, enableProbation)
        self.decayTimeMs = decayTimeMs
        self._tau = decayTimeMs / 1000.0

    def record(self, endpoint: Any, latencyMs: float) -> None:
        now = self._clock.seconds()
        if latencyMs > endpoint.ewma:
            endpoint.ewma = float(latencyMs)
        else:
            td = now - endpoint.ewmaStamp
            w = math.exp(-td / self._tau) if td > 0 else 1.0
            endpoint.ewma = endpoint.ewma * w + latencyMs * (1.0 - w)
        if now > endpoint.ewmaStamp:
            endpoint.ewmaStamp = now

    def cost(self, endpoint: Any) -> float:
        """
        The endpoint's latency cost now (decayed to the current time).
        """
        now = self._clock.seconds()
        td = now - endpoint.ewmaStamp
        if td > 0:
            endpoint.ewma *= math.exp(-td / self._tau)
            endpoint.ewmaStamp = now
        return endpoint.ewma

    def _load(self, index: int, endpoint: Any) -> float:
        cost = self.cost(endpoint)
        pending = endpoint.pending
        if cost == 0.0 and pending != 0:
            return (PENALTY + pending) * self._invWeights[index]
        return cost * (pending + 1) * self._invWeights[index]
