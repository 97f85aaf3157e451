# -*- test-case-name: tests.test_bench_harness -*-
"""
Tests for the benchmark harness's pure parts: output parsing, aggregation,
ratio tables, the JSON document, generated configurations and option
handling.  Nothing here runs a benchmark.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import yaml
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from bench.harness import configs, report
from bench.harness.cli import parseOptions, requiredBinaries, targetsFor
from bench.harness.parsing import (
    WRK_JSON_MARKER,
    WRK_LUA_SCRIPT,
    ParseError,
    WrkResult,
    parseCpuLines,
    parseDuration,
    parseIperf3Json,
    parseProcStat,
    parseScaled,
    parseStatusKiB,
    parseWrkOutput,
)
from bench.harness.procs import busyShare, cpuList, cpuSeconds
from bench.harness.scenarios import CaseData, wrkRunMetrics
from bench.harness.stats import Summary, ratio, summarise
from bench.harness.epollforward import Forwarder
from bench.harness.portforward import parseRoute
from bench.harness.targets import linkerpyArgv

WRK_TEXT = """\
Running 3s test @ http://127.0.0.1:18081/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   478.29us  202.65us   6.77ms   76.67%
    Req/Sec    40.80k     1.78k   43.09k    80.00%
  Latency Distribution
     50%  478.00us
     75%  591.00us
     90%  691.00us
     99%    1.00ms
  121763 requests in 3.00s, 28.33MB read
  Socket errors: connect 0, read 12, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:  40575.59
Transfer/sec:      9.44MB
"""

WRK_JSON = (
    WRK_JSON_MARKER
    + '{"requests":565377,"duration_us":3000449,"bytes":140778873,'
    '"errors":{"connect":0,"read":0,"write":0,"status":0,"timeout":0},'
    '"latency_us":{"min":14,"mean":121.845,"max":2133,"stdev":59.4,'
    '"p50":122,"p90":135,"p99":189,"p999":1146}}'
)

IPERF_JSON = json.dumps(
    {
        "start": {},
        "intervals": [],
        "end": {
            "sum_sent": {"bytes": 1, "bits_per_second": 1.0, "seconds": 5.0},
            "sum_received": {"bytes": 14812345678, "bits_per_second": 23.7e9, "seconds": 5.0002},
        },
    }
)


class WrkParsingTests(SynchronousTestCase):
    """
    Tests for parsing wrk's output.
    """

    def test_durationUnits(self) -> None:
        """
        wrk durations in us, ms, s and m become seconds.
        """
        self.assertAlmostEqual(parseDuration("121.84us"), 121.84e-6)
        self.assertAlmostEqual(parseDuration("2.13ms"), 2.13e-3)
        self.assertAlmostEqual(parseDuration("1.00s"), 1.0)
        self.assertAlmostEqual(parseDuration("3.00m"), 180.0)

    def test_durationRejectsGarbage(self) -> None:
        """
        A string that is not a wrk duration raises L{ParseError}.
        """
        self.assertRaises(ParseError, parseDuration, "fast")
        self.assertRaises(ParseError, parseDuration, "12 parsecs")

    def test_scaledCounts(self) -> None:
        """
        Counts with k/M suffixes are scaled.
        """
        self.assertAlmostEqual(parseScaled("189.60k"), 189600.0)
        self.assertAlmostEqual(parseScaled("1.5M"), 1.5e6)
        self.assertAlmostEqual(parseScaled("42"), 42.0)
        self.assertRaises(ParseError, parseScaled, "lots")

    def test_jsonLinePreferred(self) -> None:
        """
        The Lua script's JSON line gives exact counts, duration and
        percentiles (microseconds turned into milliseconds).
        """
        result = parseWrkOutput(WRK_TEXT.replace("Requests/sec", WRK_JSON + "\nRequests/sec"))
        self.assertEqual(result.requests, 565377)
        self.assertAlmostEqual(result.durationS, 3.000449)
        self.assertAlmostEqual(result.latencyMs["p99"], 0.189)
        self.assertAlmostEqual(result.latencyMs["p999"], 1.146)
        self.assertEqual(result.errorCount, 0)
        self.assertAlmostEqual(result.rps, 565377 / 3.000449)

    def test_textFallback(self) -> None:
        """
        Without the JSON line, the text report's requests, duration,
        percentiles, socket errors and non-2xx count are read.
        """
        result = parseWrkOutput(WRK_TEXT)
        self.assertEqual(result.requests, 121763)
        self.assertAlmostEqual(result.durationS, 3.0)
        self.assertAlmostEqual(result.latencyMs["p50"], 0.478)
        self.assertAlmostEqual(result.latencyMs["p99"], 1.0)
        self.assertAlmostEqual(result.latencyMs["max"], 6.77)
        self.assertEqual(result.errors, {"connect": 0, "read": 12, "write": 0, "status": 7, "timeout": 3})
        self.assertEqual(result.errorCount, 22)

    def test_nothingUsable(self) -> None:
        """
        Output with neither form (wrk failed to connect at all) raises.
        """
        self.assertRaises(ParseError, parseWrkOutput, "unable to connect to 127.0.0.1:1 Connection refused\n")

    def test_brokenJsonLine(self) -> None:
        """
        A truncated JSON line raises rather than falling back silently.
        """
        self.assertRaises(ParseError, parseWrkOutput, WRK_JSON_MARKER + '{"requests": 5')

    def test_zeroDuration(self) -> None:
        """
        A zero-length run has a rate of zero, not a division error.
        """
        self.assertEqual(WrkResult(10, 0.0, {}, {}).rps, 0.0)

    def test_luaScriptPrintsMarker(self) -> None:
        """
        The Lua script defines only C{done} (keeping wrk's fast path) and
        prints the marker the parser looks for.
        """
        self.assertIn("done = function", WRK_LUA_SCRIPT)
        self.assertNotIn("response = function", WRK_LUA_SCRIPT)
        self.assertIn(WRK_JSON_MARKER.strip(), WRK_LUA_SCRIPT)


class OtherParsingTests(SynchronousTestCase):
    """
    Tests for parsing iperf3 and C{/proc} output.
    """

    def test_iperf3(self) -> None:
        """
        The receiver's throughput and byte count come from
        C{end.sum_received}.
        """
        result = parseIperf3Json(IPERF_JSON)
        self.assertAlmostEqual(result.gbps, 23.7)
        self.assertEqual(result.bytes, 14812345678)

    def test_iperf3Error(self) -> None:
        """
        An iperf3 error document, non-JSON output and a document without
        results all raise L{ParseError}.
        """
        self.assertRaises(ParseError, parseIperf3Json, json.dumps({"error": "unable to connect"}))
        self.assertRaises(ParseError, parseIperf3Json, "iperf3: error")
        self.assertRaises(ParseError, parseIperf3Json, json.dumps({"end": {}}))

    def test_procStatOddName(self) -> None:
        """
        Fields are counted after the last parenthesis, so a command name
        with spaces and parentheses does not shift them.
        """
        line = "4242 (we (ird) name) S 17 4242 4242 0 -1 4194560 100 0 0 0 321 123 0 0 20 0 3 0 5 0 0\n"
        self.assertEqual(parseProcStat(line), (17, 321, 123))
        self.assertRaises(ParseError, parseProcStat, "4242 no parens")

    def test_statusKiB(self) -> None:
        """
        C{kB} fields are read by name; a missing one is L{None}.
        """
        text = "Name:\tnginx\nVmHWM:\t   15000 kB\nVmRSS:\t   14400 kB\n"
        self.assertEqual(parseStatusKiB(text), 14400)
        self.assertEqual(parseStatusKiB(text, "VmHWM"), 15000)
        self.assertIsNone(parseStatusKiB("Name:\tkthreadd\n"))

    def test_cpuLines(self) -> None:
        """
        Per-CPU busy and total ticks come from C{/proc/stat}, idle being
        idle plus iowait; the aggregate C{cpu} line is skipped.
        """
        text = (
            "cpu  10 0 10 100 0 0 0 0 0 0\n"
            "cpu0 5 1 4 40 10 0 0 0 0 0\n"
            "cpu1 5 0 6 60 0 0 0 0 0 0\n"
            "intr 12345\n"
        )
        self.assertEqual(parseCpuLines(text), {"cpu0": (10, 60), "cpu1": (11, 71)})


class ProcessArithmeticTests(SynchronousTestCase):
    """
    Tests for the arithmetic over C{/proc} snapshots.
    """

    def test_busyShare(self) -> None:
        """
        The busy share of a CPU set is busy ticks over total ticks summed
        over the set; unknown CPUs give L{None}.
        """
        before = {"cpu0": (100, 1000), "cpu1": (0, 1000)}
        after = {"cpu0": (190, 1100), "cpu1": (50, 1100)}
        self.assertAlmostEqual(busyShare(before, after, [0]), 0.9)
        self.assertAlmostEqual(busyShare(before, after, [0, 1]), 0.7)
        self.assertIsNone(busyShare(before, after, [7]))

    def test_cpuList(self) -> None:
        """
        taskset CPU lists expand to CPU numbers.
        """
        self.assertEqual(cpuList("0"), [0])
        self.assertEqual(cpuList("0,2-4"), [0, 2, 3, 4])
        self.assertEqual(cpuList(None), [])
        self.assertRaises(ValueError, cpuList, "zero")

    def test_cpuSecondsCountsNewProcesses(self) -> None:
        """
        CPU time sums the growth of every process, counting one that
        appeared between snapshots (a new worker) from zero.
        """
        from bench.harness.procs import CLOCK_TICKS

        before = {1: 100, 2: 50}
        after = {1: 100 + CLOCK_TICKS, 2: 50, 3: CLOCK_TICKS}
        self.assertAlmostEqual(cpuSeconds(before, after), 2.0)


class StatsTests(SynchronousTestCase):
    """
    Tests for medians, spreads and ratios.
    """

    def test_oddMedian(self) -> None:
        """
        With an odd count the median is the middle value; min and max are
        the extremes.
        """
        self.assertEqual(summarise([3.0, 1.0, 2.0]), Summary(2.0, 1.0, 3.0, 3))

    def test_evenMedian(self) -> None:
        """
        With an even count the median is the mean of the middle two.
        """
        self.assertEqual(summarise([4, 1, 3, 2]), Summary(2.5, 1.0, 4.0, 4))

    def test_missingIgnored(self) -> None:
        """
        Missing values are skipped, and all-missing gives L{None}.
        """
        self.assertEqual(summarise([None, 5.0]), Summary(5.0, 5.0, 5.0, 1))
        self.assertIsNone(summarise([None, None]))
        self.assertIsNone(summarise([]))

    def test_ratio(self) -> None:
        """
        The ratio divides medians, and is L{None} without a value, without a
        baseline or with a zero baseline.
        """
        a, b = Summary(50.0, 40.0, 60.0, 3), Summary(200.0, 190.0, 210.0, 3)
        self.assertAlmostEqual(ratio(a, b), 0.25)
        self.assertIsNone(ratio(None, b))
        self.assertIsNone(ratio(a, None))
        self.assertIsNone(ratio(a, Summary(0.0, 0.0, 0.0, 1)))


def _wrk(requests: int, status: int = 0, read: int = 0) -> WrkResult:
    return WrkResult(
        requests=requests,
        durationS=10.0,
        errors={"connect": 0, "read": read, "write": 0, "status": status, "timeout": 0},
        latencyMs={"p50": 0.5, "p90": 0.9, "p99": 2.0, "p999": 4.0},
    )


class RunMetricsTests(SynchronousTestCase):
    """
    Tests for turning one wrk run into a record.
    """

    def test_cleanRun(self) -> None:
        """
        A run without errors is valid, and CPU per request is CPU seconds
        over requests, in microseconds.
        """
        m = wrkRunMetrics(_wrk(100000), cpuS=5.0)
        self.assertTrue(m["valid"])
        self.assertAlmostEqual(m["rps"], 10000.0)
        self.assertAlmostEqual(m["cpu_us_per_req"], 50.0)
        self.assertEqual(m["p99_ms"], 2.0)

    def test_statusErrorsInvalidate(self) -> None:
        """
        Any non-2xx/3xx response makes the run invalid (a proxy answering
        502 fast is not fast).
        """
        self.assertFalse(wrkRunMetrics(_wrk(100000, status=1), cpuS=1.0)["valid"])

    def test_socketErrorThreshold(self) -> None:
        """
        Socket errors up to 1 % of requests are tolerated; more invalidate.
        """
        self.assertTrue(wrkRunMetrics(_wrk(100000, read=1000), cpuS=1.0)["valid"])
        self.assertFalse(wrkRunMetrics(_wrk(100000, read=1001), cpuS=1.0)["valid"])

    def test_noRequests(self) -> None:
        """
        A run that completed nothing is invalid and has no CPU per request.
        """
        m = wrkRunMetrics(_wrk(0), cpuS=1.0)
        self.assertFalse(m["valid"])
        self.assertIsNone(m["cpu_us_per_req"])


def _httpCase() -> CaseData:
    case = CaseData("http", "c32", "HTTP test", "nginx", ["rps", "p50_ms", "p99_ms", "cpu_us_per_req"])
    for rps, cpu in ((100.0, 10.0), (120.0, 12.0), (110.0, 11.0)):
        case.result("nginx").runs.append(
            {"rps": rps, "p50_ms": 1.0, "p99_ms": 2.0, "cpu_us_per_req": cpu, "valid": True,
             "proxy_cpu_busy": 0.9, "client_cpu_busy": 0.5}
        )
    for rps in (50.0, 60.0):
        case.result("linkerpy").runs.append(
            {"rps": rps, "p50_ms": 3.0, "p99_ms": 8.0, "cpu_us_per_req": 44.0, "valid": True}
        )
    case.result("linkerpy").runs.append({"rps": 9999.0, "valid": False, "errors": {"status": 12}})
    case.markUnavailable("linkerpy-w2", "linkerpy exited with status 2 before HTTP 200:\nusage: --workers unknown\n")
    return case


class ReportTests(SynchronousTestCase):
    """
    Tests for the ratio table and the JSON document.
    """

    def test_ratiosToBaseline(self) -> None:
        """
        Ratios divide each target's median by the baseline's; invalid runs
        do not count; the baseline's own ratio is 1.
        """
        ratios = report.caseRatios(_httpCase())
        self.assertAlmostEqual(ratios["nginx"]["rps"], 1.0)
        self.assertAlmostEqual(ratios["linkerpy"]["rps"], 55.0 / 110.0)
        self.assertAlmostEqual(ratios["linkerpy"]["cpu_us_per_req"], 4.0)
        self.assertNotIn("p50_ms", ratios["linkerpy"])
        self.assertNotIn("linkerpy-w2", ratios)

    def test_missingBaseline(self) -> None:
        """
        Without a baseline result, ratios are missing rather than wrong.
        """
        case = _httpCase()
        case.markUnavailable("nginx", "nginx is not installed")
        self.assertIsNone(report.caseRatios(case)["linkerpy"]["rps"])
        self.assertIn("linkerpy  ", report.renderCase(case))

    def test_table(self) -> None:
        """
        The table shows median [min-max], ratios, busy shares, valid/total
        runs, and notes for invalid runs and unavailable targets with their
        reason.
        """
        text = report.renderCase(_httpCase())
        self.assertIn("HTTP test", text)
        self.assertIn("110 [100-120]", text)
        self.assertIn("0.50x", text)
        self.assertIn("4.00x", text)
        self.assertIn("90%/50%", text)
        self.assertIn("2/3", text)
        self.assertIn("linkerpy: 1 invalid run(s)", text)
        self.assertIn("linkerpy-w2  unavailable", text)
        self.assertIn("usage: --workers unknown", text)

    def test_reasonLinesShortened(self) -> None:
        """
        Reasons keep their first lines, non-blank, cut to a width.
        """
        lines = report.reasonLines("first\n\n" + "x" * 500 + "\nthird\nfourth\nfifth", limit=3, width=20)
        self.assertEqual(lines, ["first", "x" * 17 + "...", "third"])

    def test_reasonLinesKeepEnds(self) -> None:
        """
        A long log tail keeps its first line and its last one (a traceback's
        exception), with an ellipsis between.
        """
        reason = "x exited:\nTraceback (most recent call last):\n  File a\n  File b\nModuleNotFoundError: w"
        self.assertEqual(
            report.reasonLines(reason, limit=4),
            ["x exited:", "Traceback (most recent call last):", "...", "ModuleNotFoundError: w"],
        )

    def test_documentShape(self) -> None:
        """
        The JSON document carries the schema, metadata, and per case each
        target's runs, summary (median/min/max/n) and ratios; unavailable
        targets carry their reason and no summary.
        """
        doc = report.buildDocument({"startedAt": "2026-01-01T00:00:00+00:00"}, [_httpCase()])
        doc = json.loads(json.dumps(doc))
        self.assertEqual(doc["schema"], report.SCHEMA)
        self.assertEqual(doc["startedAt"], "2026-01-01T00:00:00+00:00")
        (case,) = doc["cases"]
        self.assertEqual((case["scenario"], case["case"], case["baseline"]), ("http", "c32", "nginx"))
        byTarget = {r["target"]: r for r in case["results"]}
        self.assertEqual(byTarget["nginx"]["summary"]["rps"], {"median": 110.0, "min": 100.0, "max": 120.0, "n": 3})
        self.assertEqual(len(byTarget["linkerpy"]["runs"]), 3)
        self.assertEqual(byTarget["linkerpy"]["summary"]["rps"]["n"], 2)
        self.assertAlmostEqual(byTarget["linkerpy"]["ratios"]["rps"], 0.5)
        self.assertFalse(byTarget["linkerpy-w2"]["available"])
        self.assertIn("--workers", byTarget["linkerpy-w2"]["reason"])
        self.assertNotIn("summary", byTarget["linkerpy-w2"])

    def test_referenceRowsMarked(self) -> None:
        """
        A row measuring the origin directly is marked as a reference in the
        JSON, so charts and readers do not take it for a proxy.
        """
        case = _httpCase()
        case.result("origin").runs.append({"rps": 900.0, "valid": True})
        case.result("origin").reference = True
        byTarget = {r["target"]: r for r in report.caseDocument(case)["results"]}
        self.assertTrue(byTarget["origin"]["reference"])
        self.assertFalse(byTarget["nginx"]["reference"])

    def test_chart(self) -> None:
        """
        The chart is a PNG drawn from the JSON document.
        """
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise SkipTest("matplotlib is not installed (the harness installs it on demand)")
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp)
        path = os.path.join(tmp, "chart.png")
        report.renderChart(json.loads(json.dumps(report.buildDocument({}, [_httpCase()]))), path)
        with open(path, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    def test_markdown(self) -> None:
        """
        A saved document renders as Markdown tables, optionally limited to
        some targets.
        """
        doc = json.loads(json.dumps(report.buildDocument({}, [_httpCase()])))
        text = report.renderMarkdown(doc)
        self.assertIn("| target | req/s | vs nginx |", text)
        self.assertIn("| nginx | 110 [100-120] | 1.00x |", text)
        self.assertIn("| linkerpy-w2 | unavailable |", text)
        self.assertNotIn("linkerpy", report.renderMarkdown(doc, only={"nginx"}))

    def test_writeJson(self) -> None:
        """
        The document is written (directories created) and reads back equal.
        """
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp)
        path = os.path.join(tmp, "deep", "out.json")
        doc = report.buildDocument({}, [_httpCase()])
        report.writeJson(doc, path)
        with open(path) as f:
            self.assertEqual(json.load(f), json.loads(json.dumps(doc)))


class ConfigTests(SynchronousTestCase):
    """
    Tests for the generated configurations.
    """

    def test_originBody(self) -> None:
        """
        The origin's body is exactly 100 bytes and appears in its config.
        """
        self.assertEqual(len(configs.ORIGIN_BODY), 100)
        self.assertIn(configs.ORIGIN_BODY.decode(), configs.nginxOrigin("/tmp/x", 9000))

    def test_linkerpyHttp(self) -> None:
        """
        The linkerpy HTTP config has Linkerd 1's shape: one http router with
        the fs dtab and a loopback server, the fs namer, the Prometheus
        telemeter and a loopback admin port.
        """
        doc = yaml.safe_load(configs.linkerpyHttp(4140, 9990, "/tmp/disco"))
        self.assertEqual(doc["admin"], {"ip": "127.0.0.1", "port": 9990})
        self.assertEqual(doc["namers"], [{"kind": "io.l5d.fs", "rootDir": "/tmp/disco"}])
        self.assertEqual(doc["telemetry"], [{"kind": "io.l5d.prometheus"}])
        (router,) = doc["routers"]
        self.assertEqual(router["protocol"], "http")
        self.assertEqual(router["dtab"].strip(), "/svc => /#/io.l5d.fs;")
        self.assertEqual(router["servers"], [{"port": 4140, "ip": "127.0.0.1"}])

    def test_linkerpyHttpTls(self) -> None:
        """
        With a certificate, the server gets C{tls.certPath}/C{tls.keyPath}.
        """
        doc = yaml.safe_load(configs.linkerpyHttp(4143, 9990, "/tmp/disco", tls=("/c.pem", "/k.pem")))
        self.assertEqual(doc["routers"][0]["servers"][0]["tls"], {"certPath": "/c.pem", "keyPath": "/k.pem"})

    def test_linkerpyTcp(self) -> None:
        """
        The TCP config has one server per route with its C{dstName}, and a
        dtab sending each name to C{/$/inet/127.0.0.1/<port>}.
        """
        routes = [configs.TcpRoute(5000, "/svc/iperf", 5201), configs.TcpRoute(5001, "/svc/origin", 8080)]
        doc = yaml.safe_load(configs.linkerpyTcp(9990, routes))
        (router,) = doc["routers"]
        self.assertEqual(router["protocol"], "tcp")
        self.assertEqual(
            router["servers"],
            [{"port": 5000, "ip": "127.0.0.1", "dstName": "/svc/iperf"},
             {"port": 5001, "ip": "127.0.0.1", "dstName": "/svc/origin"}],
        )
        self.assertIn("/svc/iperf => /$/inet/127.0.0.1/5201;", router["dtab"])
        self.assertIn("/svc/origin => /$/inet/127.0.0.1/8080;", router["dtab"])

    def test_nginxProxy(self) -> None:
        """
        The nginx proxy keeps upstream connections alive (HTTP/1.1,
        C{keepalive 64}, C{Connection} cleared) with one worker, and only
        enables TLS when given a certificate.
        """
        plain = configs.nginxProxy("/tmp/w", 8000, 9000)
        for needle in ("worker_processes 1;", "keepalive 64;", "proxy_http_version 1.1;",
                       'proxy_set_header Connection "";', "listen 127.0.0.1:8000 ", "server 127.0.0.1:9000;"):
            self.assertIn(needle, plain)
        self.assertNotIn("ssl", plain)
        tls = configs.nginxProxy("/tmp/w", 8000, 9000, tls=("/c.pem", "/k.pem"))
        self.assertIn("listen 127.0.0.1:8000 ssl", tls)
        self.assertIn("ssl_certificate /c.pem;", tls)

    def test_haproxy(self) -> None:
        """
        HAProxy runs one thread; HTTP mode reuses server connections; TCP
        mode has one listener per route.
        """
        http = configs.haproxyHttp(8000, 9000)
        for needle in ("nbthread 1", "mode http", "http-reuse always", "bind 127.0.0.1:8000",
                       "server origin 127.0.0.1:9000"):
            self.assertIn(needle, http)
        tcp = configs.haproxyTcp([(8000, 5201), (8001, 9000)])
        self.assertIn("mode tcp", tcp)
        self.assertIn("bind 127.0.0.1:8001", tcp)
        self.assertIn("server target 127.0.0.1:5201", tcp)

    def test_fsNamerFile(self) -> None:
        """
        The io.l5d.fs file is named after the service and holds the origin's
        address.
        """
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp)
        path = configs.writeFsNamer(os.path.join(tmp, "disco"), "bench", 9000)
        self.assertEqual(os.path.basename(path), "bench")
        with open(path) as f:
            self.assertEqual(f.read(), "127.0.0.1 9000\n")


class OptionTests(SynchronousTestCase):
    """
    Tests for command-line handling and target selection.
    """

    def test_defaults(self) -> None:
        """
        By default every scenario runs three times for ten seconds.
        """
        opts = parseOptions([])
        self.assertEqual(opts.scenarios, ["http", "tls", "tcp", "memory"])
        self.assertEqual((opts.runs, opts.duration, opts.tcp_duration), (3, 10.0, 5.0))

    def test_quick(self) -> None:
        """
        C{--quick} shortens everything to one short run, unless a value is
        given explicitly.
        """
        opts = parseOptions(["--quick"])
        self.assertEqual((opts.runs, opts.duration, opts.tcp_duration, opts.warmup), (1, 3.0, 2.0, 1.0))
        self.assertEqual(parseOptions(["--quick", "--runs", "2"]).runs, 2)

    def test_only(self) -> None:
        """
        C{--only} selects scenarios (in the canonical order) and rejects
        unknown names.
        """
        self.assertEqual(parseOptions(["--only", "memory,http"]).scenarios, ["http", "memory"])
        self.assertRaises(SystemExit, parseOptions, ["--only", "http,udp"])
        self.assertRaises(SystemExit, parseOptions, ["--only", ","])

    def test_badNumbers(self) -> None:
        """
        Zero runs or workers are refused.
        """
        self.assertRaises(SystemExit, parseOptions, ["--runs", "0"])
        self.assertRaises(SystemExit, parseOptions, ["--workers", "0"])

    def test_targets(self) -> None:
        """
        HTTP compares the origin, nginx, HAProxy, Twisted and linkerpy;
        C{--workers}, C{--pypy} add rows and C{--skip} removes them.
        """
        names = [t.name for t in targetsFor("http", parseOptions([]))]
        self.assertEqual(names, ["origin", "nginx", "haproxy", "twisted-rp", "linkerpy"])
        opts = parseOptions(["--workers", "2", "--pypy", "--skip", "twisted-rp,haproxy"])
        specs = {t.name: t for t in targetsFor("http", opts)}
        self.assertEqual(list(specs), ["origin", "nginx", "linkerpy", "linkerpy-w2", "linkerpy-pypy",
                                       "twisted-rp-pypy"])
        self.assertEqual(specs["linkerpy-w2"].workers, 2)
        self.assertEqual(specs["linkerpy-pypy"].runtime, "pypy")
        self.assertEqual([t.name for t in targetsFor("tcp", parseOptions([]))],
                         ["direct", "haproxy", "twisted-pf", "twisted-pf-tuned", "python-epoll", "linkerpy"])
        self.assertEqual([t.name for t in targetsFor("tls", parseOptions([]))], ["nginx", "linkerpy"])

    def test_portforwardRoutes(self) -> None:
        """
        The plain Twisted forwarder takes C{LISTEN:TARGET} port pairs and
        refuses anything else.
        """
        import argparse

        self.assertEqual(parseRoute("8080:9000"), (8080, 9000))
        for bad in ("8080", "8080:", ":9000", "a:9000", "0:9000", "8080:65536", "1:2:3"):
            self.assertRaises(argparse.ArgumentTypeError, parseRoute, bad)

    def test_requiredBinaries(self) -> None:
        """
        Only the tools the chosen scenarios use are required.
        """
        self.assertNotIn("iperf3", requiredBinaries(["http"]))
        self.assertIn("iperf3", requiredBinaries(["tcp"]))
        self.assertIn("openssl", requiredBinaries(["tls"]))
        self.assertNotIn("haproxy", requiredBinaries(["tls"]))

    def test_linkerpyCommand(self) -> None:
        """
        The linkerpy template expands C{{twistd}} to running twistd with the
        target's interpreter, C{{config}} to the config path, and appends
        C{--workers N} when asked.
        """
        argv = linkerpyArgv("{twistd} -n --pidfile= linkerpy -c {config}", "/py", "/c.yaml", None)
        self.assertEqual(argv[:2], ["/py", "-c"])
        self.assertIn("twistd", argv[2])
        self.assertEqual(argv[3:], ["-n", "--pidfile=", "linkerpy", "-c", "/c.yaml"])
        custom = linkerpyArgv("{python} -m linkerpy.cli {config}", "/pypy", "/c.yaml", 2)
        self.assertEqual(custom, ["/pypy", "-m", "linkerpy.cli", "/c.yaml", "--workers", "2"])


class EpollForwarderTests(SynchronousTestCase):
    """
    The plain-Python forwarder of the C{python-epoll} row relays both ways,
    with back-pressure, and closes the pair when the target closes.
    """

    def test_relaysBothWaysAndCloses(self) -> None:
        import socket
        import threading

        origin = socket.socket()
        origin.bind(("127.0.0.1", 0))
        origin.listen(1)
        origin.settimeout(10)
        self.addCleanup(origin.close)
        forwarder = Forwarder()
        port = forwarder.listen(0, origin.getsockname())
        stop = threading.Event()
        thread = threading.Thread(target=forwarder.run, args=(stop,), daemon=True)
        thread.start()
        self.addCleanup(thread.join, 10)
        self.addCleanup(stop.set)

        request = b"q" * 100_000
        reply = bytes(range(256)) * 20_000  # 5 MB, against a small client receive buffer
        received: list = []

        def serve() -> None:
            conn, _ = origin.accept()
            conn.settimeout(10)
            with conn:
                data = b""
                while len(data) < len(request):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                received.append(data)
                conn.sendall(reply)

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        self.addCleanup(server.join, 10)
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.settimeout(10)
        self.addCleanup(client.close)
        client.connect(("127.0.0.1", port))
        client.sendall(request)
        got = []
        while True:
            chunk = client.recv(65536)
            if not chunk:
                break
            got.append(chunk)
        self.assertEqual(received, [request])
        self.assertEqual(len(b"".join(got)), len(reply))
        self.assertEqual(b"".join(got), reply)
