# -*- test-case-name: tests.test_telemetry -*-
"""
Prometheus exposition of the metrics tree (C{telemetry: [{kind:
io.l5d.prometheus}]}), named and labelled as Linkerd does:

    rt/http/client/$/inet/127.1/8080/requests
      → rt:client:requests{rt="http", client="$/inet/127.1/8080"}
    rt/http/client/$/inet/127.1/8080/service/svc/foo/success
      → rt:client:service:success{rt="http", client="...", service="svc/foo"}
    rt/http/server/127.0.0.1/4140/request_latency_ms
      → rt:server:request_latency_ms{rt="http", server="127.0.0.1/4140", quantile="0.5"} ...

Counters are exposed untyped (so their names stay exactly Linkerd's, with
no C{_total} suffix), gauges as gauges, stats as summaries with
C{quantile} samples plus C{_count}, C{_sum} and C{_avg}.  Rendering uses
C{prometheus_client}'s exposition code.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Iterator, List, Tuple

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric

from linkerpy.telemetry.metrics import Counter, Gauge, MetricsTree, Stat

_INVALID = re.compile(r"[^a-zA-Z0-9_:]")
_SCOPES = ("server", "service", "client")
QUANTILES = (("0", None), ("0.5", 0.5), ("0.9", 0.9), ("0.95", 0.95), ("0.99", 0.99), ("0.999", 0.999), ("0.9999", 0.9999), ("1", None))


def nameAndLabels(path: List[str]) -> Tuple[str, Dict[str, str]]:
    """
    Split a metric's tree path into a Prometheus name and labels.
    """
    labels: Dict[str, str] = {}
    parts: List[str] = []
    rest = list(path)
    if len(rest) >= 3 and rest[0] == "rt":
        labels["rt"] = rest[1]
        parts.append("rt")
        rest = rest[2:]
        if len(rest) >= 3 and rest[0] in _SCOPES:
            scope = rest[0]
            labels[scope] = rest[1]
            parts.append(scope)
            rest = rest[2:]
            if scope == "client" and len(rest) >= 3 and rest[0] == "service":
                labels["service"] = rest[1]
                parts.append("service")
                rest = rest[2:]
    if len(rest) >= 2 and rest[-2] in ("failures", "exn"):
        labels["exception"] = rest[-1]
        rest = rest[:-1]
    parts.extend(rest)
    name = ":".join(parts)
    return _INVALID.sub("_", name), labels


class TreeCollector:
    """
    A C{prometheus_client} collector over a L{MetricsTree}.
    """

    def __init__(self, tree: MetricsTree, prefix: str = "") -> None:
        self.tree = tree
        self.prefix = prefix

    def collect(self) -> Iterator[Metric]:
        families: Dict[Tuple[str, str], Metric] = {}
        for path, metric in self.tree.walk():
            name, labels = nameAndLabels(path)
            name = self.prefix + name
            if not name or name[0].isdigit():
                name = "_" + name
            if isinstance(metric, Counter):
                family = _family(families, name, "unknown")
                family.add_sample(name, labels, metric.value)
            elif isinstance(metric, Gauge):
                family = _family(families, name, "gauge")
                family.add_sample(name, labels, metric.value)
            elif isinstance(metric, Stat):
                snap = metric.snapshot()
                family = _family(families, name, "summary")
                for label, q in QUANTILES:
                    if q is None:
                        value = (snap.min if label == "0" else snap.max) or 0.0
                    else:
                        value = snap.quantile(q)
                    family.add_sample(name, dict(labels, quantile=label), value)
                family.add_sample(name + "_count", labels, snap.count)
                family.add_sample(name + "_sum", labels, snap.sum)
                avg = _family(families, name + "_avg", "gauge")
                avg.add_sample(name + "_avg", labels, (snap.sum / snap.count) if snap.count else 0.0)
        return iter(families.values())


def _family(families: Dict[Tuple[str, str], Metric], name: str, kind: str) -> Metric:
    family = families.get((name, kind))
    if family is None:
        family = families[(name, kind)] = Metric(name, name, kind)
    return family


def render(tree: MetricsTree, prefix: str = "") -> bytes:
    """
    The Prometheus text exposition of C{tree}.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TreeCollector(tree, prefix))
    return generate_latest(registry)
