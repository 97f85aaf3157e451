# -*- test-case-name: tests.test_backoff -*-
"""
Backoff schedules: endless iterators of delays, in seconds.

A schedule is made fresh for each use (each request's retries, each
endpoint's run of dead periods) and consumed with C{next()}.  Randomness
comes from an injected C{random.Random}, so tests can seed it.

Schedules (Finagle's C{Backoff}):

  - L{constant}: the same delay forever.
  - L{decorrelatedJittered}: starts at C{start}; each next delay is drawn
    uniformly from C{[previous, min(3 * previous, maximum))}, so delays grow
    by random steps of up to 3x and never exceed C{maximum}.
  - L{equalJittered}: starts at C{start}; the k-th next delay is
    C{start * 2**(k-1)} plus a uniform jitter of up to the same amount
    (C{[5, 10)}, C{[10, 20)}, ... for C{start} 5), and becomes C{maximum}
    for good once it would reach it.  Failure accrual's default dead
    periods are C{equalJittered(5, 300)}.

Configuration (C{retries.backoff} and C{failureAccrual.backoff}) is a small
Literal-discriminated union: the C{kind} key selects L{ConstantBackoffConfig}
(C{constant}) or L{JitteredBackoffConfig} (C{jittered}).  Fields are typed
L{BackoffConfig}; its C{__structure__} dispatches on C{kind} and structures
the mapping into the selected class (problems are reported under the
backoff's key path with the offending sub-key named).
"""

from __future__ import annotations

import itertools
import random
from typing import Any, Dict, Iterator, Literal, Optional

import attrs

from linkerpy.config import checks
from linkerpy.config.structure import setting

__all__ = [
    "constant",
    "decorrelatedJittered",
    "equalJittered",
    "BackoffConfig",
    "ConstantBackoffConfig",
    "JitteredBackoffConfig",
    "BACKOFF_KINDS",
]

_MAX_SHIFT = 62


def constant(seconds: float) -> Iterator[float]:
    """
    @return: C{seconds}, forever.
    """
    if seconds < 0:
        raise ValueError(f"a backoff delay must be >= 0, got {seconds}")
    return itertools.repeat(float(seconds))


def _checkRange(start: float, maximum: float) -> None:
    if not start > 0:
        raise ValueError(f"backoff start must be > 0, got {start}")
    if not maximum >= start:
        raise ValueError(f"backoff maximum ({maximum}) must be >= start ({start})")


def decorrelatedJittered(start: float, maximum: float, rng: random.Random) -> Iterator[float]:
    """
    Finagle's C{Backoff.decorrelatedJittered(start, maximum)}.

    @param start: the first delay (seconds, > 0).
    @param maximum: the largest delay (seconds, >= C{start}).
    @param rng: the source of randomness.
    @return: an endless iterator of delays.
    """
    _checkRange(start, maximum)
    return _decorrelated(float(start), float(maximum), rng.random)


def _decorrelated(current: float, maximum: float, rand: Any) -> Iterator[float]:
    while True:
        yield current
        upper = maximum if current >= maximum / 3.0 else current * 3.0
        span = upper - current
        if span > 0:
            current = min(current + rand() * span, maximum)


def equalJittered(start: float, maximum: float, rng: random.Random) -> Iterator[float]:
    """
    Finagle's C{Backoff.equalJittered(start, maximum)}.

    @param start: the first delay (seconds, > 0).
    @param maximum: the largest delay (seconds, >= C{start}).
    @param rng: the source of randomness.
    @return: an endless iterator of delays.
    """
    _checkRange(start, maximum)
    return _equal(float(start), float(maximum), rng.random)


def _equal(start: float, maximum: float, rand: Any) -> Iterator[float]:
    yield start
    if start == maximum:
        yield from itertools.repeat(maximum)
        return
    attempt = 1
    while True:
        shift = 1 << min(attempt - 1, _MAX_SHIFT)
        halfExp = maximum if start >= maximum / shift else start * shift
        jitter = rand() * halfExp
        if halfExp == maximum or halfExp + jitter >= maximum:
            yield from itertools.repeat(maximum)
            return
        yield halfExp + jitter
        attempt += 1


# ---------------------------------------------------------------------------
# Configuration


class BackoffConfig:
    """
    Base of the backoff config classes, and the field type to use for a
    C{backoff:} key: structuring dispatches on C{kind} (see the module
    docstring).  Subclasses provide C{kind} and L{newBackoff}.
    """

    kind: str

    @classmethod
    def __structure__(cls, raw: Any) -> "BackoffConfig":
        from linkerpy.config.structure import INVALID, Structurer

        if not isinstance(raw, dict):
            raise ValueError(f"expected a mapping with a 'kind' key ({_kindList()})")
        kind = raw.get("kind")
        if kind is None:
            raise ValueError(f"missing required key 'kind' ({_kindList()})")
        target = BACKOFF_KINDS.get(kind) if isinstance(kind, str) else None
        if target is None:
            raise ValueError(f"kind: unknown backoff kind {kind!r}; known: {_kindList()}")
        structurer = Structurer(registry=None)
        value = structurer.structure(target, raw)
        if structurer.problems or value is INVALID:
            raise ValueError("; ".join(str(p) for p in structurer.problems) or "invalid backoff")
        return value  # type: ignore[no-any-return]

    def newBackoff(self, rng: Optional[random.Random] = None) -> Iterator[float]:
        """
        @param rng: randomness for jittered kinds (a fresh C{random.Random}
            when omitted).
        @return: a fresh schedule of delays in seconds.
        """
        raise NotImplementedError()


def _kindList() -> str:
    return ", ".join(repr(k) for k in sorted(BACKOFF_KINDS))


@attrs.frozen
class ConstantBackoffConfig(BackoffConfig):
    """
    C{kind: constant}: the same delay before every retry.
    """

    kind: Literal["constant"] = setting("constant", doc="selects this backoff")
    ms: int = setting(0, check=checks.nonNegative, doc="the delay in milliseconds (default 0: retry at once)")

    def newBackoff(self, rng: Optional[random.Random] = None) -> Iterator[float]:
        return constant(self.ms / 1000.0)


def _positiveMs(value: int) -> Optional[str]:
    if value <= 0:
        return f"expected a positive number of milliseconds, got {value}"
    return None


@attrs.frozen
class JitteredBackoffConfig(BackoffConfig):
    """
    C{kind: jittered}: decorrelated jitter between C{minMs} and C{maxMs}
    (Finagle's C{Backoff.decorrelatedJittered}).
    """

    minMs: int = setting(check=_positiveMs, doc="the first (and smallest) delay in milliseconds (required)")
    maxMs: int = setting(check=_positiveMs, doc="the largest delay in milliseconds (required)")
    kind: Literal["jittered"] = setting("jittered", doc="selects this backoff")

    def validateConfig(self) -> Any:
        if self.maxMs < self.minMs:
            yield ("maxMs", f"must be >= minMs ({self.minMs}), got {self.maxMs}")

    def newBackoff(self, rng: Optional[random.Random] = None) -> Iterator[float]:
        return decorrelatedJittered(self.minMs / 1000.0, self.maxMs / 1000.0, rng or random.Random())


#: C{kind} to config class.
BACKOFF_KINDS: Dict[str, type] = {
    "constant": ConstantBackoffConfig,
    "jittered": JitteredBackoffConfig,
}
