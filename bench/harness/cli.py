# -*- test-case-name: tests.test_bench_harness -*-
"""
C{python -m bench}: parse options, install what is missing, start the
origin, run the chosen scenarios, print the tables and write the JSON (and
optionally a PNG chart).

The run is never pass/fail: it exits 0 whatever it measured, 2 when an
essential tool is missing, 130 when interrupted (after writing what it has).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Set

from bench.harness import install, report
from bench.harness.idleconns import raiseFileLimit
from bench.harness.procs import PortAllocator, ProcessManager, cpuList, installSignalHandlers, logTo
from bench.harness.scenarios import (
    CaseData,
    Settings,
    httpScenario,
    memoryScenario,
    tcpScenario,
    tlsScenario,
)
from bench.harness.targets import DEFAULT_LINKERPY_COMMAND, Context, TargetSpec, Unavailable, startOrigin

SCENARIOS = ("http", "tls", "tcp", "memory")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def buildParser() -> argparse.ArgumentParser:
    """
    The command-line options.
    """
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure linkerpy side by side with nginx and HAProxy on this machine.",
    )
    p.add_argument("--only", default=",".join(SCENARIOS),
                   help="comma-separated scenarios to run: http,tls,tcp,memory (default: all)")
    p.add_argument("--runs", type=int, default=None, help="repeats per measurement (default 3; --quick: 1)")
    p.add_argument("--duration", type=float, default=None, help="seconds per HTTP/TLS run (default 10)")
    p.add_argument("--tcp-duration", type=float, default=None, help="seconds per TCP run (default 5)")
    p.add_argument("--warmup", type=float, default=None, help="warm-up seconds per target (default 2)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 run, short durations")
    p.add_argument("--pypy", action="store_true", help="add linkerpy (and Twisted) rows under PyPy")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="add a 'linkerpy --workers N' row")
    p.add_argument("--json", dest="jsonPath", default=None, metavar="PATH", help="also write the JSON here")
    p.add_argument("--chart", dest="chartPath", default=None, metavar="PATH.png", help="render a PNG chart")
    p.add_argument("--linkerpy-cmd", dest="linkerpyCmd", default=DEFAULT_LINKERPY_COMMAND,
                   help="command template starting linkerpy; {twistd}, {python}, {config} are expanded "
                        f"(default: {DEFAULT_LINKERPY_COMMAND!r})")
    p.add_argument("--skip", default="", help="comma-separated target names to leave out (e.g. twisted-rp)")
    p.add_argument("--proxy-cpus", dest="proxyCpus", default="0", help="taskset CPU list for proxies (default 0)")
    p.add_argument("--client-cpus", dest="clientCpus", default="1",
                   help="taskset CPU list for wrk, iperf3, the origin and helpers (default 1)")
    p.add_argument("--idle-connections", dest="idleConnections", type=int, default=1000,
                   help="idle client connections for the memory scenario (default 1000)")
    p.add_argument("--no-install", dest="install", action="store_false", help="never install anything")
    p.add_argument("--keep-temp", dest="keepTemp", action="store_true",
                   help="keep the temporary directory (configs, logs) for inspection")
    return p


def parseOptions(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """
    Parse and normalise options: C{--quick} defaults, C{--only} checked and
    split into C{scenarios}, C{--skip} into a set.
    """
    parser = buildParser()
    opts = parser.parse_args(argv)
    scenarios = [s.strip() for s in opts.only.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown or not scenarios:
        parser.error(f"--only takes a comma-separated subset of {','.join(SCENARIOS)}; got {opts.only!r}")
    opts.scenarios = [s for s in SCENARIOS if s in scenarios]
    quick = opts.quick
    if opts.runs is None:
        opts.runs = 1 if quick else 3
    if opts.duration is None:
        opts.duration = 3.0 if quick else 10.0
    if opts.tcp_duration is None:
        opts.tcp_duration = 2.0 if quick else 5.0
    if opts.warmup is None:
        opts.warmup = 1.0 if quick else 2.0
    if opts.runs < 1 or opts.duration < 1 or opts.tcp_duration < 1 or opts.warmup < 0:
        parser.error("--runs, --duration and --tcp-duration must be at least 1, --warmup at least 0")
    if opts.workers is not None and opts.workers < 1:
        parser.error("--workers must be at least 1")
    if opts.idleConnections < 1:
        parser.error("--idle-connections must be at least 1")
    opts.skipped = {s.strip() for s in opts.skip.split(",") if s.strip()}
    return opts


def settingsFrom(opts: argparse.Namespace) -> Settings:
    """
    Scenario settings from parsed options.
    """
    return Settings(
        runs=opts.runs,
        durationS=opts.duration,
        warmupS=opts.warmup,
        pypyWarmupS=3.0 if opts.quick else 10.0,
        tcpDurationS=opts.tcp_duration,
        idleConnections=opts.idleConnections,
    )


def targetsFor(scenario: str, opts: argparse.Namespace) -> List[TargetSpec]:
    """
    The rows of one scenario, in display order, minus C{--skip}.
    """
    specs: List[TargetSpec] = []
    if scenario == "http":
        specs = [TargetSpec("origin", "origin"), TargetSpec("nginx", "nginx"), TargetSpec("haproxy", "haproxy"),
                 TargetSpec("twisted-rp", "twisted"), TargetSpec("linkerpy", "linkerpy")]
    elif scenario == "tls":
        specs = [TargetSpec("nginx", "nginx"), TargetSpec("linkerpy", "linkerpy")]
    elif scenario == "tcp":
        specs = [TargetSpec("direct", "origin"), TargetSpec("haproxy", "haproxy"), TargetSpec("twisted-pf", "twisted"),
                 TargetSpec("twisted-pf-tuned", "twisted", tuned=True), TargetSpec("python-epoll", "python-epoll"),
                 TargetSpec("linkerpy", "linkerpy")]
    elif scenario == "memory":
        specs = [TargetSpec("nginx", "nginx"), TargetSpec("haproxy", "haproxy"),
                 TargetSpec("twisted-rp", "twisted"), TargetSpec("linkerpy", "linkerpy")]
    if opts.workers is not None:
        specs.append(TargetSpec(f"linkerpy-w{opts.workers}", "linkerpy", workers=opts.workers))
    if opts.pypy:
        specs.append(TargetSpec("linkerpy-pypy", "linkerpy", runtime="pypy"))
        if scenario in ("http", "memory"):
            specs.append(TargetSpec("twisted-rp-pypy", "twisted", runtime="pypy"))
    return [s for s in specs if s.name not in opts.skipped]


def requiredBinaries(scenarios: Sequence[str]) -> List[str]:
    """
    The external programs the chosen scenarios run.
    """
    needed = ["nginx", "wrk", "taskset"]
    if set(scenarios) & {"http", "tcp", "memory"}:
        needed.append("haproxy")
    if "tcp" in scenarios:
        needed.append("iperf3")
    if "tls" in scenarios:
        needed.append("openssl")
    return needed


def _usableCpus(opts: argparse.Namespace, log: Any) -> None:
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return

    def cpus(spec: str) -> Set[int]:
        return set(cpuList(spec))

    try:
        ok = cpus(opts.proxyCpus) <= allowed and cpus(opts.clientCpus) <= allowed
    except ValueError:
        ok = False
    if not ok:
        log(f"warning: CPUs {opts.proxyCpus}/{opts.clientCpus} not all usable here ({sorted(allowed)}); "
            "running unpinned")
        opts.proxyCpus = opts.clientCpus = None
    elif set(cpus(opts.proxyCpus)) & set(cpus(opts.clientCpus)):
        log("warning: proxy and client CPU sets overlap; proxies do not have a core to themselves")


def _loadavg() -> List[float]:
    try:
        return [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    except (OSError, ValueError):
        return []


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """
    Run the benchmark; see the module docstring for exit codes.
    """
    opts = parseOptions(argv)
    log = logTo(sys.stdout)
    started = _utcnow()
    t0 = time.monotonic()
    log(f"linkerpy bench: scenarios {','.join(opts.scenarios)}, {opts.runs} run(s), "
        f"{opts.duration:g}s HTTP/TLS, {opts.tcp_duration:g}s TCP")

    binaries = install.ensureBinaries(requiredBinaries(opts.scenarios), log, opts.install)
    essential = [b for b in ("nginx", "wrk") if binaries.get(b) is None]
    if essential:
        log(f"cannot run without: {', '.join(essential)}")
        return 2
    if binaries.get("taskset") is None:
        log("warning: taskset missing; running unpinned")
    pythons: Dict[str, str] = {"cpython": sys.executable}
    if opts.pypy:
        pypy = install.ensurePypyVenv(REPO_ROOT, log, opts.install)
        if pypy is not None:
            pythons["pypy"] = pypy
        binaries["pypy3"] = install.which("pypy3")
    chartOk = install.ensureMatplotlib(log) if opts.chartPath else False
    _usableCpus(opts, log)

    # Children inherit this: the memory scenario's proxies need well over
    # 1,000 descriptors, more than a common default soft limit of 1024.
    limit = raiseFileLimit(4 * opts.idleConnections + 1024)
    if limit < 2 * opts.idleConnections + 256:
        log(f"warning: open-file limit {limit} may be too low for {opts.idleConnections} idle connections")

    workDir = tempfile.mkdtemp(prefix="linkerpy-bench-")
    manager = ProcessManager(workDir)
    ctx = Context(
        manager=manager, ports=PortAllocator(), workDir=workDir, repoRoot=REPO_ROOT, binaries=binaries,
        pythons=pythons, proxyCpus=opts.proxyCpus, clientCpus=opts.clientCpus, originCpus=opts.clientCpus,
        startTimeout=90.0 if opts.pypy else 60.0, linkerpyCommand=opts.linkerpyCmd,
    )
    settings = settingsFrom(opts)
    cases: List[CaseData] = []
    interrupted = False
    loadStart = _loadavg()
    installSignalHandlers()
    try:
        origin = startOrigin(ctx)
        log(f"origin: nginx on 127.0.0.1:{origin.port} (CPUs {opts.clientCpus}); work dir {workDir}")
        runners = {"http": httpScenario, "tls": tlsScenario, "tcp": tcpScenario, "memory": memoryScenario}
        for scenario in opts.scenarios:
            log(f"[{scenario}]")
            runners[scenario](ctx, settings, origin, targetsFor(scenario, opts), log, cases)
    except Unavailable as e:
        log(f"the origin could not start: {e}")
        return 2
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: stopping every process and writing what was measured")
    finally:
        manager.stopAll()
        if opts.keepTemp:
            log(f"kept {workDir}")
        else:
            shutil.rmtree(workDir, ignore_errors=True)

    finished = _utcnow()
    meta: Dict[str, Any] = {
        "startedAt": started.isoformat(),
        "finishedAt": finished.isoformat(),
        "elapsedS": round(time.monotonic() - t0, 1),
        "interrupted": interrupted,
        "machine": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "loadavgStart": loadStart,
            "loadavgEnd": _loadavg(),
        },
        "tools": install.toolVersions(binaries),
        "pinning": {"proxy": opts.proxyCpus, "loadGenerator": opts.clientCpus, "origin": opts.clientCpus,
                    "helpers": opts.clientCpus},
        "options": {
            "scenarios": opts.scenarios, "runs": opts.runs, "durationS": opts.duration,
            "tcpDurationS": opts.tcp_duration, "warmupS": opts.warmup, "quick": opts.quick, "pypy": opts.pypy,
            "workers": opts.workers, "linkerpyCommand": opts.linkerpyCmd, "skipped": sorted(opts.skipped),
            "connections": list(settings.connections), "tlsConnections": list(settings.tlsConnections),
            "connRateConnections": settings.connRateConnections, "idleConnections": settings.idleConnections,
        },
    }
    doc = report.buildDocument(meta, cases)
    print()
    print(report.renderTable(cases))
    print()
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    resultsPath = os.path.join(REPO_ROOT, "bench", "results", f"{stamp}.json")
    report.writeJson(doc, resultsPath)
    log(f"JSON: {resultsPath}")
    if opts.jsonPath:
        report.writeJson(doc, opts.jsonPath)
        log(f"JSON: {opts.jsonPath}")
    if opts.chartPath:
        if chartOk:
            report.renderChart(doc, opts.chartPath)
            log(f"chart: {opts.chartPath}")
        else:
            log("chart skipped: matplotlib unavailable")
    log(f"done in {doc['elapsedS']:.0f}s")
    return 130 if interrupted else 0
