# -*- test-case-name: tests.test_telemetry -*-
"""
The metrics tree: counters, gauges and stats (latency histograms) named like
Linkerd's (C{rt/<router>/server/<ip>/<port>/requests}).

Counters are plain attributes bumped on the hot path (C{counter.value += 1}
or C{counter.incr()}); stats are C{prometheus_client} histograms with fixed,
log-spaced buckets, from which C{/admin/metrics.json} derives its
percentiles.  Exporters (L{linkerpy.telemetry.prometheus}, the admin JSON)
walk the tree when asked; nothing is formatted per request.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Iterator, List, Optional, Tuple, Union

from prometheus_client import Histogram


#: Bucket upper bounds for latency-like stats (milliseconds): 1-2-5 steps.
DEFAULT_BUCKETS: Tuple[float, ...] = tuple(
    m * 10**e for e in range(-1, 6) for m in (1, 2, 5)
) + (float("inf"),)

#: Percentiles rendered by the flat JSON, as Linkerd/TwitterServer does.
PERCENTILES = (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99), ("p9990", 0.999), ("p9999", 0.9999))


class Counter:
    """
    A monotonically increasing count.
    """

    __slots__ = ("value",)
    kind = "counter"

    def __init__(self) -> None:
        self.value = 0

    def incr(self, n: int = 1) -> None:
        self.value += n


class Gauge:
    """
    A value that goes up and down: either set explicitly or read from a callable.
    """

    __slots__ = ("_value", "_fn")
    kind = "gauge"

    def __init__(self, fn: Optional[Callable[[], float]] = None) -> None:
        self._value: float = 0
        self._fn = fn

    def set(self, value: float) -> None:
        self._value = value

    def add(self, delta: float) -> None:
        self._value += delta

    @property
    def value(self) -> float:
        if self._fn is not None:
            try:
                return self._fn()
            except Exception:
                return 0
        return self._value


class Stat:
    """
    A distribution (e.g. C{request_latency_ms}), recorded by a
    C{prometheus_client} histogram with fixed buckets (a value goes to the
    first bucket whose upper bound is >= it), plus min and max.

    A parent process aggregating workers adds their distributions with
    L{merge}; the merged counts are kept beside the histogram and included
    in every snapshot.
    """

    __slots__ = ("histogram", "_observe", "bounds", "min", "max", "_extra", "_extraSum")
    kind = "stat"

    def __init__(self, buckets: Tuple[float, ...] = DEFAULT_BUCKETS) -> None:
        bounds = tuple(float(b) for b in buckets)
        if not bounds or bounds[-1] != float("inf"):
            bounds += (float("inf"),)
        self.bounds = bounds
        self.histogram = Histogram("stat", "", registry=None, buckets=bounds)
        self._observe = self.histogram.observe
        self.min: Optional[float] = None
        self.max: Optional[float] = None
        self._extra: Optional[List[int]] = None
        self._extraSum = 0.0

    def add(self, value: float) -> None:
        self._observe(value)
        high = self.max
        if high is None:
            self.min = self.max = value
        elif value > high:
            self.max = value
        elif value < self.min:  # type: ignore[operator]
            self.min = value

    def merge(self, counts: List[int], total: float, minimum: Optional[float], maximum: Optional[float]) -> None:
        """
        Add another distribution with the same buckets (e.g. a worker
        process's) into this one.
        """
        if len(counts) != len(self.bounds):
            raise ValueError("bucket counts differ")
        extra = self._extra
        if extra is None:
            extra = self._extra = [0] * len(self.bounds)
        for i, n in enumerate(counts):
            extra[i] += n
        self._extraSum += total
        if minimum is not None and (self.min is None or minimum < self.min):
            self.min = minimum
        if maximum is not None and (self.max is None or maximum > self.max):
            self.max = maximum

    def _read(self) -> Tuple[List[int], float]:
        cumulative: List[float] = []
        total = 0.0
        for metric in self.histogram.collect():
            for sample in metric.samples:
                if sample.name.endswith("_bucket"):
                    cumulative.append(sample.value)
                elif sample.name.endswith("_sum"):
                    total = sample.value
        counts = []
        previous = 0.0
        for value in cumulative:
            counts.append(int(value - previous))
            previous = value
        if self._extra is not None:
            counts = [a + b for a, b in zip(counts, self._extra)]
            total += self._extraSum
        return counts, total

    @property
    def counts(self) -> List[int]:
        """
        Observations per bucket (not cumulative).
        """
        return self._read()[0]

    @property
    def count(self) -> int:
        return sum(self._read()[0])

    @property
    def sum(self) -> float:
        return self._read()[1]

    def snapshot(self) -> "StatSnapshot":
        counts, total = self._read()
        buckets: List[Tuple[float, float]] = []
        cumulative = 0
        for bound, n in zip(self.bounds, counts):
            cumulative += n
            buckets.append((bound, float(cumulative)))
        return StatSnapshot(buckets, float(cumulative), total, self.min, self.max)


class StatSnapshot:
    """
    Cumulative bucket counts of a L{Stat} at one moment.
    """

    def __init__(
        self,
        buckets: List[Tuple[float, float]],
        count: float,
        total: float,
        minimum: Optional[float],
        maximum: Optional[float],
    ) -> None:
        self.buckets = buckets
        self.count = count
        self.sum = total
        self.min = minimum
        self.max = maximum

    def quantile(self, q: float) -> float:
        """
        Estimate a quantile by linear interpolation within its bucket (as
        Prometheus' C{histogram_quantile} does), clamped to the observed
        min and max.
        """
        if self.count == 0:
            return 0.0
        rank = q * self.count
        lower = 0.0
        previous = 0.0
        for bound, cumulative in self.buckets:
            if cumulative >= rank:
                upper = bound if not math.isinf(bound) else (self.max or lower)
                inBucket = cumulative - previous
                fraction = (rank - previous) / inBucket if inBucket else 1.0
                value = lower + (upper - lower) * fraction
                if self.max is not None:
                    value = min(value, self.max)
                if self.min is not None:
                    value = max(value, self.min)
                return value
            lower = bound
            previous = cumulative
        return self.max or 0.0

    def flat(self) -> Dict[str, float]:
        out: Dict[str, float] = {
            "count": self.count,
            "sum": self.sum,
            "avg": (self.sum / self.count) if self.count else 0.0,
            "min": self.min if self.min is not None else 0.0,
            "max": self.max if self.max is not None else 0.0,
        }
        for name, q in PERCENTILES:
            out[name] = self.quantile(q)
        return out


Metric = Union[Counter, Gauge, Stat]


class MetricsTree:
    """
    A node of the metrics tree.  C{scope('rt', 'http')} returns a child; the
    leaf constructors return the existing metric when asked twice.
    """

    def __init__(self, name: str = "", parent: Optional["MetricsTree"] = None) -> None:
        self.name = name
        self.parent = parent
        self.children: Dict[str, MetricsTree] = {}
        self.metric: Optional[Metric] = None

    # -- navigation ---------------------------------------------------------

    def scope(self, *names: str) -> "MetricsTree":
        """
        The child node for C{names}, created if needed.  Each name is one
        node, even if it contains C{/} (a client id such as
        C{$/inet/127.1/8080} is one scope, as in Finagle).
        """
        node = self
        for name in names:
            child = node.children.get(name)
            if child is None:
                child = node.children[name] = MetricsTree(name, node)
            node = child
        return node

    def path(self) -> List[str]:
        parts: List[str] = []
        node: Optional[MetricsTree] = self
        while node is not None and node.parent is not None:
            parts.append(node.name)
            node = node.parent
        return list(reversed(parts))

    def find(self, *names: str) -> Optional["MetricsTree"]:
        node: Optional[MetricsTree] = self
        for name in names:
            if node is None:
                return None
            node = node.children.get(name)
        return node

    def query(self, path: str) -> Optional["MetricsTree"]:
        """
        The subtree at a C{/}-separated path such as C{rt/http/client/$/inet/127.1/8080},
        where one node's name may itself contain C{/}.
        """
        parts = [p for p in path.split("/") if p]
        node: Optional[MetricsTree] = self
        i = 0
        while node is not None and i < len(parts):
            for j in range(len(parts), i, -1):
                child = node.children.get("/".join(parts[i:j]))
                if child is not None:
                    node, i = child, j
                    break
            else:
                return None
        return node

    def remove(self, *names: str) -> None:
        """
        Drop a subtree (e.g. an expired client).
        """
        node = self.find(*names)
        if node is not None and node.parent is not None:
            node.parent.children.pop(node.name, None)

    # -- leaves ---------------------------------------------------------------

    def counter(self, *names: str) -> Counter:
        return self._leaf(names, Counter)  # type: ignore[return-value]

    def gauge(self, *names: str, fn: Optional[Callable[[], float]] = None) -> Gauge:
        node = self.scope(*names)
        if node.metric is None or (fn is not None and not isinstance(node.metric, Gauge)):
            node.metric = Gauge(fn)
        elif fn is not None:
            node.metric._fn = fn  # type: ignore[union-attr]
        return node.metric  # type: ignore[return-value]

    def stat(self, *names: str) -> Stat:
        return self._leaf(names, Stat)  # type: ignore[return-value]

    def _leaf(self, names: Tuple[str, ...], cls: type) -> Metric:
        node = self.scope(*names)
        if node.metric is None:
            node.metric = cls()
        elif not isinstance(node.metric, cls):
            raise TypeError(f"metric {'/'.join(node.path())} is a {node.metric.kind}, not a {cls.kind}")  # type: ignore[attr-defined]
        return node.metric

    # -- export -----------------------------------------------------------------

    def walk(self) -> Iterator[Tuple[List[str], Metric]]:
        """
        Yield C{(path segments, metric)} for every metric below this node.
        """
        stack: List[Tuple[List[str], MetricsTree]] = [([], self)]
        while stack:
            prefix, node = stack.pop()
            if node.metric is not None:
                yield prefix, node.metric
            for name in sorted(node.children, reverse=True):
                stack.append((prefix + [name], node.children[name]))

    def flatten(self) -> Dict[str, float]:
        """
        Linkerd's flat C{metrics.json}: C{{'a/b/c': value}}, with stats
        expanded into C{.count}, C{.p50}, ... entries.
        """
        out: Dict[str, float] = {}
        for path, metric in self.walk():
            key = "/".join(path)
            if isinstance(metric, Stat):
                for suffix, value in metric.snapshot().flat().items():
                    out[f"{key}.{suffix}"] = value
            else:
                out[key] = metric.value
        return out

    def dump(self) -> List[List[object]]:
        """
        Every metric's raw state, JSON-ready, for another process to
        L{merge}: C{[[path, "counter", value], [path, "gauge", value],
        [path, "stat", [bounds, counts, sum, min, max]], ...]}.
        """
        out: List[List[object]] = []
        for path, metric in self.walk():
            if isinstance(metric, Stat):
                bounds = [b if b != float("inf") else None for b in metric.bounds]
                out.append([path, "stat", [bounds, list(metric.counts), metric.sum, metric.min, metric.max]])
            else:
                out.append([path, metric.kind, metric.value])
        return out

    def merge(self, dumped: List[List[object]], gauges: bool = True) -> None:
        """
        Add a L{dump} (e.g. a worker process's metrics) into this tree:
        counters and gauges are summed, stats merge their buckets.

        @param gauges: also add the gauges (a dead worker's last dump is
            kept for its counters and stats only).
        """
        for path, kind, value in dumped:
            names = [str(p) for p in path]  # type: ignore[union-attr]
            try:
                if kind == "counter":
                    self.counter(*names).value += value  # type: ignore[operator]
                elif kind == "gauge":
                    if gauges:
                        gauge = self.gauge(*names)
                        gauge.set(gauge.value + value)  # type: ignore[operator]
                elif kind == "stat":
                    bounds, counts, total, low, high = value  # type: ignore[misc]
                    buckets = tuple(float("inf") if b is None else b for b in bounds)
                    node = self.scope(*names)
                    if node.metric is None:
                        node.metric = Stat(buckets)
                    stat = node.metric
                    if isinstance(stat, Stat) and stat.bounds == buckets:
                        stat.merge(counts, total, low, high)
            except TypeError:
                continue  # the same path is another kind elsewhere: skip it

    def toTree(self) -> Dict[str, object]:
        """
        Nested form (C{?tree=true}): leaves are keyed C{counter}, C{gauge} or C{stat}.
        """
        out: Dict[str, object] = {}
        if self.metric is not None:
            if isinstance(self.metric, Stat):
                out["stat"] = self.metric.snapshot().flat()
            else:
                out[self.metric.kind] = self.metric.value
        for name in sorted(self.children):
            out[name] = self.children[name].toTree()
        return out

