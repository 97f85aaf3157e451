# -*- test-case-name: tests.test_telemetry -*-
"""
Tests for L{linkerpy.telemetry.metrics}: stats (bucket histograms), and
dumping and merging trees (how a worker pool adds up its workers' metrics).
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from linkerpy.telemetry.metrics import DEFAULT_BUCKETS, MetricsTree, Stat
from linkerpy.telemetry.prometheus import render


class StatTests(SynchronousTestCase):
    """
    L{Stat}.
    """

    def test_buckets(self) -> None:
        """
        A value goes to the first bucket whose upper bound is at least the
        value (a bound is inclusive, as in Prometheus); the last bucket is
        unbounded.
        """
        stat = Stat((1.0, 10.0))
        for value in (0.5, 1.0, 1.5, 10.0, 11.0, 1e9):
            stat.add(value)
        self.assertEqual(stat.bounds, (1.0, 10.0, float("inf")))
        self.assertEqual(stat.counts, [2, 2, 2])
        snap = stat.snapshot()
        self.assertEqual(snap.buckets, [(1.0, 2.0), (10.0, 4.0), (float("inf"), 6.0)])
        self.assertEqual((snap.count, snap.min, snap.max), (6.0, 0.5, 1e9))
        self.assertEqual(snap.sum, 0.5 + 1.0 + 1.5 + 10.0 + 11.0 + 1e9)

    def test_minMax(self) -> None:
        """
        Min and max follow the values, in any order; an empty stat has none.
        """
        stat = Stat()
        self.assertEqual((stat.min, stat.max, stat.snapshot().quantile(0.5)), (None, None, 0.0))
        for value in (5.0, 3.0, 9.0, 4.0):
            stat.add(value)
        self.assertEqual((stat.min, stat.max), (3.0, 9.0))

    def test_quantiles(self) -> None:
        """
        Percentiles interpolate within buckets and stay within min and max.
        """
        stat = Stat()
        for i in range(100):
            stat.add(0.3)
        flat = stat.snapshot().flat()
        self.assertEqual(flat["p50"], 0.3)
        self.assertEqual(flat["p99"], 0.3)
        self.assertEqual(flat["count"], 100.0)
        self.assertAlmostEqual(flat["avg"], 0.3)

    def test_merge(self) -> None:
        """
        L{Stat.merge} adds bucket counts, count and sum, and widens min/max.
        """
        a, b = Stat(), Stat()
        a.add(1.0)
        b.add(0.1)
        b.add(700.0)
        a.merge(list(b.counts), b.sum, b.min, b.max)
        self.assertEqual(a.count, 3)
        self.assertEqual((a.min, a.max), (0.1, 700.0))
        self.assertAlmostEqual(a.sum, 701.1)
        self.assertEqual(sum(a.counts), 3)
        self.assertRaises(ValueError, a.merge, [1, 2], 0.0, None, None)

    def test_defaultBuckets(self) -> None:
        """
        The default bounds are 1-2-5 steps from 0.1 to 500,000 plus infinity.
        """
        self.assertEqual(DEFAULT_BUCKETS[0], 0.1)
        self.assertEqual(DEFAULT_BUCKETS[-2], 500000)
        self.assertEqual(Stat().bounds[-1], float("inf"))


class DumpMergeTests(SynchronousTestCase):
    """
    L{MetricsTree.dump} and L{MetricsTree.merge}.
    """

    def worker(self, requests: int, latencies: list) -> MetricsTree:
        tree = MetricsTree()
        tree.counter("rt", "http", "server", "127.0.0.1/4140", "requests").value = requests
        tree.gauge("rt", "http", "client", "$/inet/127.1/80", "connections").set(2)
        tree.gauge("rt", "http", "client", "$/inet/127.1/80", "endpoints", fn=lambda: 1)
        stat = tree.stat("rt", "http", "server", "127.0.0.1/4140", "request_latency_ms")
        for value in latencies:
            stat.add(value)
        return tree

    def test_sum(self) -> None:
        """
        Merging JSON round-tripped dumps sums counters and gauges and merges
        histograms, so the flat view shows totals.
        """
        total = MetricsTree()
        for tree in (self.worker(10, [1.0, 2.0]), self.worker(5, [40.0])):
            total.merge(json.loads(json.dumps(tree.dump())))
        flat = total.flatten()
        self.assertEqual(flat["rt/http/server/127.0.0.1/4140/requests"], 15)
        self.assertEqual(flat["rt/http/client/$/inet/127.1/80/connections"], 4)
        self.assertEqual(flat["rt/http/client/$/inet/127.1/80/endpoints"], 2)
        self.assertEqual(flat["rt/http/server/127.0.0.1/4140/request_latency_ms.count"], 3.0)
        self.assertEqual(flat["rt/http/server/127.0.0.1/4140/request_latency_ms.max"], 40.0)
        self.assertEqual(flat["rt/http/server/127.0.0.1/4140/request_latency_ms.min"], 1.0)
        text = render(total).decode()
        self.assertIn('rt:server:requests{rt="http",server="127.0.0.1/4140"} 15.0', text)
        self.assertIn('rt:server:request_latency_ms_count{rt="http",server="127.0.0.1/4140"} 3.0', text)

    def test_withoutGauges(self) -> None:
        """
        C{gauges=False} keeps counters and stats only (a dead worker's).
        """
        total = MetricsTree()
        total.merge(self.worker(3, [1.0]).dump(), gauges=False)
        flat = total.flatten()
        self.assertEqual(flat["rt/http/server/127.0.0.1/4140/requests"], 3)
        self.assertNotIn("rt/http/client/$/inet/127.1/80/connections", flat)

    def test_kindConflict(self) -> None:
        """
        A path that is another kind of metric in the target is skipped.
        """
        total = MetricsTree()
        total.stat("a")
        total.merge([[["a"], "counter", 3], [["b"], "counter", 1]])
        self.assertEqual(total.flatten()["b"], 1)
        self.assertEqual(total.flatten()["a.count"], 0.0)
