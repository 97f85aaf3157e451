# -*- test-case-name: tests.test_balancers -*-
"""
Load balancers: pick an endpoint of a client for each request.

Every balancer provides L{linkerpy.interfaces.ILoadBalancer}:

  - L{P2CBalancer} (C{p2c}, the default): power of two choices, least
    C{pending / weight};
  - L{EwmaBalancer} (C{ewma}): power of two choices, least peak-EWMA
    latency x (pending + 1), per unit of weight;
  - L{ApertureBalancer} (C{aperture}): power of two choices within a window
    of the (shuffled) endpoints that widens and narrows with the load;
  - L{HeapBalancer} (C{heap}): the least loaded endpoint, from a heap;
  - L{RoundRobinBalancer} (C{roundRobin}): weighted round robin.

Shared rules (see L{linkerpy.client.balancers.base}): unavailable endpoints
are skipped (up to C{maxEffort} random tries, then an exact fallback among
the available ones); when none is available the balancer I{fails open} and
picks among all endpoints; weights are honoured everywhere; C{pick()} is
O(1) or O(log n) and everything else is precomputed in C{update()}.
"""

from __future__ import annotations

from linkerpy.client.balancers.aperture import ApertureBalancer
from linkerpy.client.balancers.base import BalancerBase
from linkerpy.client.balancers.heap import HeapBalancer, RoundRobinBalancer
from linkerpy.client.balancers.p2c import EwmaBalancer, P2CBalancer

__all__ = [
    "BalancerBase",
    "P2CBalancer",
    "EwmaBalancer",
    "ApertureBalancer",
    "HeapBalancer",
    "RoundRobinBalancer",
]
