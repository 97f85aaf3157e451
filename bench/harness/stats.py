# -*- test-case-name: tests.test_bench_harness -*-
"""
Aggregation: the median of repeated runs with its min-max spread, and
ratios of one target's median to a baseline's.
"""

from __future__ import annotations

import statistics
from typing import Any, Dict, Iterable, List, Optional

import attrs


@attrs.frozen
class Summary:
    """
    The median of a metric over repeated runs, with its spread.

    @ivar median: the median (the mean of the two middle values for an even
        count).
    @ivar low: the smallest value.
    @ivar high: the largest value.
    @ivar count: how many runs produced a value.
    """

    median: float
    low: float
    high: float
    count: int

    def asDict(self) -> Dict[str, Any]:
        """
        The JSON form: C{{"median", "min", "max", "n"}}.
        """
        return {"median": self.median, "min": self.low, "max": self.high, "n": self.count}


def summarise(values: Iterable[Optional[float]]) -> Optional[Summary]:
    """
    Summarise the values of one metric over runs, ignoring missing ones.

    @return: L{None} when no run produced a value.
    """
    present: List[float] = [float(v) for v in values if v is not None]
    if not present:
        return None
    return Summary(
        median=statistics.median(present), low=min(present), high=max(present), count=len(present)
    )


def ratio(value: Optional[Summary], baseline: Optional[Summary]) -> Optional[float]:
    """
    The ratio of two medians, or L{None} if either is missing or the
    baseline's median is zero.
    """
    if value is None or baseline is None or baseline.median == 0:
        return None
    return value.median / baseline.median
