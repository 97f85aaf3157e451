# -*- test-case-name: tests.test_budget -*-
"""
Retry budgets, with Finagle's semantics exactly.

A budget limits retries to a fraction of recent traffic plus a small
reserve, so that retries cannot multiply load during an outage:

  - every request (not every attempt) calls L{RetryBudget.deposit};
  - a retry may happen only if L{RetryBudget.tryWithdraw} says so;
  - deposits (and withdrawals) expire about C{ttlSecs} later: the window
    moves in steps of C{ttlSecs / 10} (Twitter util's C{WindowedAdder});
  - a permanent reserve of C{minRetriesPerSec * ttlSecs} retries is always
    available on top of the deposits.

The arithmetic is Finagle's integer token bucket: a deposit adds 1000
tokens, a withdrawal takes C{int(1000 / percentCanRetry)} tokens, the
reserve is C{minRetriesPerSec * ttlSecs * withdrawal} tokens, and the
L{balance} (the C{retries/budget} gauge) is C{tokens // withdrawal}.  With
the defaults (10 s, 10/s, 0.2) a fresh budget holds 100 retries and every
5 requests add one: after 10 requests the balance is 102.  With
C{percentCanRetry: 0}, deposits are worth nothing and each retry costs one
token of the reserve; with both C{minRetriesPerSec} and C{percentCanRetry}
0 no retry is ever allowed.

Budgets are used per service (C{retries.budget}, for classified retries)
and per client (C{requeueBudget}, for connection-level requeues);
L{RetryBudgetConfig} is the configuration of both.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional

import attrs

from linkerpy.config import checks
from linkerpy.config.structure import setting

__all__ = ["WindowedAdder", "RetryBudget", "RetryBudgetConfig", "SCALE_FACTOR"]

#: Tokens per deposit: lets C{percentCanRetry} exceed 1 with integer tokens.
SCALE_FACTOR = 1000.0


class WindowedAdder:
    """
    A sum over a sliding time window, kept in C{slices - 1} completed slices
    plus the current one (Twitter util's C{WindowedAdder}): additions older
    than roughly C{rangeMs} stop counting, a slice (C{rangeMs / slices}) at
    a time.

    @param rangeMs: the window, in milliseconds.
    @param slices: how many slices the window is cut into (> 1).
    @param nowMs: C{callable() -> int}, the current time in milliseconds.
    """

    __slots__ = ("_window", "_n", "_nowMs", "_current", "_buf", "_i", "_old")

    def __init__(self, rangeMs: int, slices: int, nowMs: Callable[[], int]) -> None:
        if slices <= 1:
            raise ValueError(f"slices must be > 1, got {slices}")
        self._window = rangeMs // slices
        self._n = slices - 1
        self._nowMs = nowMs
        self._current = 0
        self._buf: List[int] = [0] * self._n
        self._i = 0
        self._old = nowMs()

    def _expire(self) -> None:
        now = self._nowMs()
        n = self._n
        self._buf[self._i] = self._current
        self._current = 0
        self._i = (self._i + 1) % n
        skip = min((now - self._old) // self._window - 1, n) if self._window > 0 else n
        if skip > 0:
            for k in range(skip):
                self._buf[(self._i + k) % n] = 0
            self._i = (self._i + skip) % n
        self._old = now

    def reset(self) -> None:
        """
        Forget everything; the window starts now.
        """
        self._buf = [0] * self._n
        self._current = 0
        self._old = self._nowMs()

    def add(self, x: int) -> None:
        """
        Add C{x} (may be negative) to the current slice.
        """
        if self._nowMs() - self._old >= self._window:
            self._expire()
        self._current += x

    def incr(self) -> None:
        self.add(1)

    def sum(self) -> int:
        """
        @return: the sum of the additions still inside the window.
        """
        if self._nowMs() - self._old >= self._window:
            self._expire()
        return self._current + sum(self._buf)


class RetryBudget:
    """
    A token-bucket retry budget (Finagle's C{RetryBudget.apply}).

    @param clock: an C{IReactorTime} (C{seconds()}).
    @param ttlSecs: how long a deposit counts, 1 to 60 seconds.
    @param minRetriesPerSec: the reserve rate, >= 0.
    @param percentCanRetry: retries allowed per deposit, 0 to 1000.
    """

    def __init__(
        self,
        clock: Any,
        ttlSecs: int = 10,
        minRetriesPerSec: int = 10,
        percentCanRetry: float = 0.2,
    ) -> None:
        if not 1 <= ttlSecs <= 60:
            raise ValueError(f"ttlSecs must be between 1 and 60, got {ttlSecs}")
        if minRetriesPerSec < 0:
            raise ValueError(f"minRetriesPerSec must be >= 0, got {minRetriesPerSec}")
        if not 0.0 <= percentCanRetry <= SCALE_FACTOR:
            raise ValueError(f"percentCanRetry must be between 0 and {SCALE_FACTOR:g}, got {percentCanRetry}")
        self.ttlSecs = ttlSecs
        self.minRetriesPerSec = minRetriesPerSec
        self.percentCanRetry = percentCanRetry
        self._empty = minRetriesPerSec == 0 and percentCanRetry == 0.0
        if percentCanRetry == 0.0:
            self._deposit = 0
            self._withdrawal = 1
        else:
            self._deposit = int(SCALE_FACTOR)
            self._withdrawal = int(SCALE_FACTOR / percentCanRetry)
        self._reserve = minRetriesPerSec * ttlSecs * self._withdrawal
        self._clock = clock
        self._tokens = WindowedAdder(ttlSecs * 1000, 10, self._nowMs)

    def _nowMs(self) -> int:
        return round(self._clock.seconds() * 1000)

    def deposit(self) -> None:
        """
        A request was made: credit the budget.
        """
        if not self._empty and self._deposit:
            self._tokens.add(self._deposit)

    def tryWithdraw(self) -> bool:
        """
        Ask for one retry.

        @return: C{True} (and the retry is paid for) if the balance allows
            it, else C{False} (and nothing changes).
        """
        if self._empty:
            return False
        if self._tokens.sum() + self._reserve >= self._withdrawal:
            self._tokens.add(-self._withdrawal)
            return True
        return False

    @property
    def balance(self) -> int:
        """
        The number of retries that could be made now (the C{retries/budget}
        gauge).
        """
        if self._empty:
            return 0
        return (self._tokens.sum() + self._reserve) // self._withdrawal

    def __repr__(self) -> str:
        return (
            f"<RetryBudget ttlSecs={self.ttlSecs} minRetriesPerSec={self.minRetriesPerSec} "
            f"percentCanRetry={self.percentCanRetry} balance={self.balance}>"
        )


def _ttl(value: int) -> Optional[str]:
    if not 1 <= value <= 60:
        return f"expected a number of seconds between 1 and 60, got {value}"
    return None


@attrs.frozen
class RetryBudgetConfig:
    """
    A retry budget: C{retries.budget} (per service) and C{requeueBudget}
    (per client).
    """

    ttlSecs: int = setting(10, check=_ttl, doc="how long a request's deposit counts, 1 to 60 seconds")
    minRetriesPerSec: int = setting(
        10, check=checks.nonNegative, doc="retries always allowed per second on top of deposits (0: none)"
    )
    percentCanRetry: float = setting(
        0.2, check=checks.between(0, 1000), doc="retries allowed per request made, 0 to 1000 (0.2: one in five)"
    )

    def newBudget(self, clock: Any) -> RetryBudget:
        """
        @param clock: an C{IReactorTime}.
        @return: a fresh L{RetryBudget}.
        """
        return RetryBudget(clock, self.ttlSecs, self.minRetriesPerSec, self.percentCanRetry)
