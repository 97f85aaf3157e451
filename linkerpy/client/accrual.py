# -*- test-case-name: tests.test_accrual -*-
"""
Failure accrual policies: per-endpoint bookkeeping that decides when an
endpoint should be marked dead, and for how long (Finagle's
C{FailureAccrualPolicy}).

Each policy is told about every finished request (L{recordSuccess},
L{recordFailure}) and, when a probe brings a dead endpoint back, about the
revival (L{revived}).  L{recordFailure} answers C{None} (keep the endpoint)
or the number of seconds to mark it dead for; successive dead periods come
from a backoff schedule (by default Finagle's equal-jittered 5 s to 300 s)
that restarts from the beginning on revival.  Probing is the endpoint's job
(L{linkerpy.client.endpoint.Endpoint}).

Policies:

  - L{ConsecutiveFailuresPolicy}: dead after C{failures} failures in a row.
  - L{SuccessRatePolicy}: dead when the exponentially weighted success rate
    over the last C{requests} requests drops below C{successRate} (never
    before C{requests} requests have been seen).
  - L{SuccessRateWindowedPolicy}: the same over a time window of C{window}
    seconds (never before one window has passed since start or revival, nor
    with fewer than 5 requests in the last window).
  - L{NonePolicy}: never.
"""

from __future__ import annotations

import itertools
import math
import random
from typing import Any, Callable, Iterator, Optional

from zope.interface import implementer

from linkerpy.interfaces import IFailureAccrualPolicy
from linkerpy.policy.backoff import equalJittered
from linkerpy.policy.budget import WindowedAdder

__all__ = [
    "Ema",
    "ConsecutiveFailuresPolicy",
    "SuccessRatePolicy",
    "SuccessRateWindowedPolicy",
    "NonePolicy",
    "defaultBackoff",
    "DEFAULT_FAILURES",
    "DEFAULT_MIN_REQUESTS",
]

#: Consecutive failures that mark an endpoint dead when accrual is not configured.
DEFAULT_FAILURES = 5

#: C{io.l5d.successRateWindowed}: requests needed in the last window to act.
DEFAULT_MIN_REQUESTS = 5

#: Dead period used once a (finite) backoff schedule runs out.
_EXHAUSTED_DEAD_FOR = 300.0

BackoffFactory = Callable[[], Iterator[float]]


def defaultBackoff(rng: Optional[random.Random] = None) -> BackoffFactory:
    """
    @return: a factory of Finagle's default dead-period schedule,
        C{equalJittered(5 s, 300 s)}.
    """
    source = rng or random.Random()
    return lambda: equalJittered(5.0, 300.0, source)


def _fresh(factory: BackoffFactory) -> Iterator[float]:
    return itertools.chain(factory(), itertools.repeat(_EXHAUSTED_DEAD_FOR))


class Ema:
    """
    An exponential moving average over unevenly spaced samples (Finagle's
    C{Ema}): each sample's weight decays with the distance, in C{window}
    units, since the previous one.

    @param window: the decay constant, in the units of the stamps.
    """

    __slots__ = ("_window", "_time", "value")

    def __init__(self, window: float) -> None:
        self._window = window
        self._time: Optional[float] = None
        self.value = 0.0

    def update(self, stamp: float, x: float) -> float:
        """
        Add sample C{x} taken at C{stamp} (stamps must not go backwards).

        @return: the new average.
        """
        if self._time is None:
            self._time = stamp
            self.value = x
            return x
        td = max(stamp - self._time, 0)
        self._time = max(stamp, self._time)
        w = math.exp(-td / self._window) if self._window else 0.0
        self.value = x * (1.0 - w) + self.value * w
        return self.value

    def reset(self) -> None:
        self._time = None
        self.value = 0.0


@implementer(IFailureAccrualPolicy)
class ConsecutiveFailuresPolicy:
    """
    Dead after C{failures} consecutive failures; each further failure while
    still failing (a failed probe) asks for the next, longer, dead period.

    @param failures: the threshold (>= 1).
    @param backoff: a factory of dead-period schedules (seconds).
    """

    def __init__(self, failures: int, backoff: BackoffFactory) -> None:
        if failures < 1:
            raise ValueError(f"failures must be >= 1, got {failures}")
        self.failures = failures
        self._backoff = backoff
        self._schedule = _fresh(backoff)
        self.consecutiveFailures = 0

    def recordSuccess(self) -> None:
        self.consecutiveFailures = 0

    def recordFailure(self) -> Optional[float]:
        self.consecutiveFailures += 1
        if self.consecutiveFailures >= self.failures:
            return next(self._schedule)
        return None

    def revived(self) -> None:
        self.consecutiveFailures = 0
        self._schedule = _fresh(self._backoff)

    def __repr__(self) -> str:
        return f"<ConsecutiveFailuresPolicy {self.consecutiveFailures}/{self.failures}>"


class _SuccessRateBase:
    """
    Shared logic of the success-rate policies: an L{Ema} of 1 (success) and
    0 (failure) samples, compared with the required rate on each failure.
    """

    def __init__(self, successRate: float, window: float, backoff: BackoffFactory) -> None:
        if not 0.0 <= successRate <= 1.0:
            raise ValueError(f"successRate must be between 0 and 1, got {successRate}")
        if window <= 0:
            raise ValueError(f"the window must be positive, got {window}")
        self.requiredSuccessRate = successRate
        self.window = window
        self._backoff = backoff
        self._schedule = _fresh(backoff)
        self._ema = Ema(window)

    @property
    def successRate(self) -> float:
        """
        The current weighted success rate (1.0 before any request).
        """
        return self._ema.value if self._ema._time is not None else 1.0

    def _stamp(self) -> float:
        raise NotImplementedError()

    def _sufficient(self) -> bool:
        return True

    def recordSuccess(self) -> None:
        self._ema.update(self._stamp(), 1.0)

    def recordFailure(self) -> Optional[float]:
        stamp = self._stamp()
        rate = self._ema.update(stamp, 0.0)
        if stamp >= self.window and rate < self.requiredSuccessRate and self._sufficient():
            return next(self._schedule)
        return None

    def revived(self) -> None:
        self._schedule = _fresh(self._backoff)
        self._resetStamps()
        self._ema.reset()

    def _resetStamps(self) -> None:
        raise NotImplementedError()


@implementer(IFailureAccrualPolicy)
class SuccessRatePolicy(_SuccessRateBase):
    """
    Dead when the success rate, weighted over the last C{requests} requests,
    is below C{successRate}; never before C{requests} requests (since start
    or the last revival) have been recorded.

    @param successRate: the required rate, 0 to 1.
    @param requests: the window, in requests (>= 1).
    @param backoff: a factory of dead-period schedules (seconds).
    """

    def __init__(self, successRate: float, requests: int, backoff: BackoffFactory) -> None:
        super().__init__(successRate, requests, backoff)
        self._count = 0

    def _stamp(self) -> float:
        self._count += 1
        return self._count

    def _resetStamps(self) -> None:
        self._count = 0

    def __repr__(self) -> str:
        return f"<SuccessRatePolicy sr={self.successRate:.3f} required={self.requiredSuccessRate}>"


@implementer(IFailureAccrualPolicy)
class SuccessRateWindowedPolicy(_SuccessRateBase):
    """
    Dead when the success rate, weighted over the last C{window} seconds,
    is below C{successRate}; never before C{window} seconds have passed
    since start or revival, nor with fewer than C{minRequests} requests in
    the last window.

    @param successRate: the required rate, 0 to 1.
    @param windowSecs: the window, in seconds (> 0).
    @param backoff: a factory of dead-period schedules (seconds).
    @param clock: an C{IReactorTime}.
    @param minRequests: requests needed in the last window.
    """

    def __init__(
        self,
        successRate: float,
        windowSecs: float,
        backoff: BackoffFactory,
        clock: Any,
        minRequests: int = DEFAULT_MIN_REQUESTS,
    ) -> None:
        super().__init__(successRate, windowSecs * 1000.0, backoff)
        self._clock = clock
        self.minRequests = minRequests
        self._start = self._nowMs()
        self._requests = WindowedAdder(int(windowSecs * 1000), 5, self._nowMs)

    def _nowMs(self) -> int:
        return round(self._clock.seconds() * 1000)

    def _stamp(self) -> float:
        return self._nowMs() - self._start

    def _sufficient(self) -> bool:
        return self._requests.sum() >= self.minRequests

    def recordSuccess(self) -> None:
        self._requests.incr()
        super().recordSuccess()

    def recordFailure(self) -> Optional[float]:
        self._requests.incr()
        return super().recordFailure()

    def _resetStamps(self) -> None:
        self._start = self._nowMs()
        self._requests.reset()

    def __repr__(self) -> str:
        return f"<SuccessRateWindowedPolicy sr={self.successRate:.3f} required={self.requiredSuccessRate}>"


@implementer(IFailureAccrualPolicy)
class NonePolicy:
    """
    Failure accrual turned off: endpoints are never marked dead.
    """

    def recordSuccess(self) -> None:
        pass

    def recordFailure(self) -> Optional[float]:
        return None

    def revived(self) -> None:
        pass

    def __repr__(self) -> str:
        return "<NonePolicy>"
