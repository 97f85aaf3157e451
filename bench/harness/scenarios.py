# -*- test-case-name: tests.test_bench_harness -*-
"""
The measurements: HTTP keep-alive, TLS-terminating HTTPS, TCP (throughput
and new connections per second) and memory.

Each scenario starts its targets once, warms each up, then runs the
repeats round-robin (run 1 of every target, then run 2, ..., with the
target order rotated each round) so slow drift on a shared machine spreads
over all targets instead of landing on one.  Proxy CPU time is read from
C{/proc} around every load run.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import attrs

from bench.harness import configs
from bench.harness.idleconns import READY_MARKER
from bench.harness.loadgen import LoadFailed, runIperf, runWrk
from bench.harness.parsing import WRK_LUA_SCRIPT, WrkResult
from bench.harness.procs import (
    ProcessFailed,
    busyShare,
    coreTimes,
    cpuList,
    cpuSeconds,
    cpuTicks,
    memoryKiB,
    waitFor,
)
from bench.harness.targets import (
    Context,
    Running,
    TargetSpec,
    Unavailable,
    directTarget,
    startHttpTarget,
    startIperfServer,
    startTcpTarget,
    stopTarget,
)

Log = Callable[[str], None]

#: A run is invalid when socket errors exceed this share of its requests.
MAX_ERROR_SHARE = 0.01


@attrs.define
class Settings:
    """
    Durations and sizes for one harness run.
    """

    runs: int = 3
    durationS: float = 10.0
    warmupS: float = 2.0
    pypyWarmupS: float = 10.0
    tcpDurationS: float = 5.0
    connections: Sequence[int] = (32, 1)
    tlsConnections: Sequence[int] = (32,)
    connRateConnections: int = 32
    idleConnections: int = 1000


@attrs.define
class TargetResult:
    """
    One target's runs in one case.

    @ivar reference: the row measures the origin directly (the harness's
        ceiling), not a proxy.
    """

    target: str
    available: bool = True
    reason: Optional[str] = None
    reference: bool = False
    command: List[str] = attrs.Factory(list)
    runs: List[Dict[str, Any]] = attrs.Factory(list)


@attrs.define
class CaseData:
    """
    One table of results: a scenario, a case within it, the baseline for
    ratios, and each target's runs.
    """

    scenario: str
    case: str
    title: str
    baseline: str
    metrics: List[str]
    results: Dict[str, TargetResult] = attrs.Factory(dict)

    def result(self, target: str) -> TargetResult:
        """
        The (created on demand) result for C{target}.
        """
        if target not in self.results:
            self.results[target] = TargetResult(target)
        return self.results[target]

    def markUnavailable(self, target: str, reason: str) -> None:
        """
        Record that C{target} could not take part.
        """
        r = self.result(target)
        r.available = False
        r.reason = reason


def wrkRunMetrics(result: WrkResult, cpuS: Optional[float]) -> Dict[str, Any]:
    """
    The per-run record of a wrk run: rates, latency percentiles, CPU per
    request, error counts and whether the run is valid (no non-2xx
    responses, socket errors under 1 %).
    """
    socketErrors = result.errorCount - result.errors.get("status", 0)
    valid = (
        result.requests > 0
        and result.errors.get("status", 0) == 0
        and socketErrors <= MAX_ERROR_SHARE * result.requests
    )
    cpuPerReq = None
    if cpuS is not None and result.requests > 0:
        cpuPerReq = cpuS * 1e6 / result.requests
    return {
        "rps": result.rps,
        "p50_ms": result.latencyMs.get("p50"),
        "p90_ms": result.latencyMs.get("p90"),
        "p99_ms": result.latencyMs.get("p99"),
        "p999_ms": result.latencyMs.get("p999"),
        "cpu_us_per_req": cpuPerReq,
        "cpu_s": cpuS,
        "requests": result.requests,
        "duration_s": result.durationS,
        "errors": dict(result.errors),
        "valid": valid,
    }


def lastLine(text: str, width: int = 160) -> str:
    """
    The last non-blank line of a message (for a one-line progress note).
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else "?"
    return last if len(last) <= width else last[: width - 3] + "..."


def _rotate(items: Sequence[Running], k: int) -> List[Running]:
    if not items:
        return []
    k %= len(items)
    return list(items[k:]) + list(items[:k])


class _Scenario:
    """
    Shared plumbing: the wrk script, target start-up with unavailability
    recording, warm-up, measured wrk runs.
    """

    def __init__(self, ctx: Context, settings: Settings, log: Log, sink: Optional[List[CaseData]] = None) -> None:
        self.ctx = ctx
        self.settings = settings
        self.log = log
        self.sink = sink if sink is not None else []
        self.script = os.path.join(ctx.workDir, "summary.lua")
        if not os.path.exists(self.script):
            with open(self.script, "w") as f:
                f.write(WRK_LUA_SCRIPT)

    def newCase(self, *args: Any) -> CaseData:
        """
        Create a case and add it to the sink straight away, so an
        interrupted run still reports the runs it finished.
        """
        case = CaseData(*args)
        self.sink.append(case)
        return case

    def startAll(
        self, specs: Sequence[TargetSpec], cases: Sequence[CaseData], start: Callable[[TargetSpec], Running]
    ) -> List[Running]:
        running: List[Running] = []
        for spec in specs:
            try:
                r = start(spec)
            except Unavailable as e:
                reason = str(e).strip()
                self.log(f"  {spec.name}: unavailable: {lastLine(reason)}")
                for case in cases:
                    case.markUnavailable(spec.name, reason)
                continue
            for case in cases:
                case.result(spec.name).command = list(r.command)
                case.result(spec.name).reference = spec.kind == "origin"
            running.append(r)
        return running

    def stopAll(self, running: Sequence[Running]) -> None:
        for r in running:
            stopTarget(self.ctx, r)

    def warmupFor(self, spec: TargetSpec) -> float:
        if spec.runtime == "pypy":
            return max(self.settings.warmupS, self.settings.pypyWarmupS)
        return self.settings.warmupS

    def wrk(self, r: Running, url: str, connections: int, durationS: float, headers: Sequence[str]) -> Dict[str, Any]:
        pids = r.pids()
        before = cpuTicks(pids)
        coresBefore = coreTimes()
        result = runWrk(self.ctx.manager, url, connections, durationS, self.script, headers, cpus=self.ctx.clientCpus)
        coresAfter = coreTimes()
        after = cpuTicks(set(pids) | set(r.pids()))
        m = wrkRunMetrics(result, cpuSeconds(before, after))
        m.update(self.busy(coresBefore, coresAfter))
        m["other_proxy_cpu_busy"] = self.otherLoad(r, m)
        return m

    def otherLoad(self, r: Running, m: Dict[str, Any]) -> Optional[float]:
        """
        The share of the proxy CPUs used by anything but the proxy during a
        run (other users of a shared machine, interrupts): a noise gauge.
        """
        proxyCpus = cpuList(self.ctx.proxyCpus)
        busy, cpuS, duration = m.get("proxy_cpu_busy"), m.get("cpu_s"), m.get("duration_s")
        if not r.owned or busy is None or cpuS is None or not duration or not proxyCpus:
            return None
        return max(0.0, busy - cpuS / (duration * len(proxyCpus)))

    def busy(self, before: Dict[str, Any], after: Dict[str, Any]) -> Dict[str, Optional[float]]:
        """
        How busy the proxy's and the load generator's CPUs were during a
        run (0..1): tells whether the proxy or the harness was the limit.
        """
        return {
            "proxy_cpu_busy": busyShare(before, after, cpuList(self.ctx.proxyCpus)),
            "client_cpu_busy": busyShare(before, after, cpuList(self.ctx.clientCpus)),
        }

    def alive(self, r: Running) -> bool:
        return all(p.alive() for p in r.procs)


class LoadScenario(_Scenario):
    """
    wrk at fixed connection counts against HTTP or HTTPS targets.
    """

    def run(
        self,
        scenario: str,
        titleFor: Callable[[int], str],
        specs: Sequence[TargetSpec],
        start: Callable[[TargetSpec], Running],
        connections: Sequence[int],
        tls: bool = False,
        headers: Sequence[str] = (f"Host: {configs.SERVICE_NAME}",),
    ) -> List[CaseData]:
        """
        Start C{specs}, warm them up, run every connection count C{runs}
        times round-robin, stop them.
        """
        metrics = ["rps", "p50_ms", "p99_ms", "cpu_us_per_req"]
        cases = {c: self.newCase(scenario, f"c{c}", titleFor(c), "nginx", metrics) for c in connections}
        running = self.startAll(specs, list(cases.values()), start)
        scheme = "https" if tls else "http"
        try:
            for r in running:
                self.log(f"  warming up {r.spec.name}")
                try:
                    runWrk(self.ctx.manager, f"{scheme}://127.0.0.1:{r.port}/", max(connections),
                           self.warmupFor(r.spec), self.script, headers, cpus=self.ctx.clientCpus)
                except LoadFailed as e:
                    self.log(f"  {r.spec.name}: warm-up failed: {e}")
            dead: Dict[str, str] = {}
            for n in range(self.settings.runs):
                for conns in connections:
                    for r in _rotate(running, n):
                        if r.spec.name in dead:
                            continue
                        case = cases[conns]
                        try:
                            m = self.wrk(r, f"{scheme}://127.0.0.1:{r.port}/", conns, self.settings.durationS, headers)
                        except LoadFailed as e:
                            m = {"valid": False, "failure": str(e)}
                        case.result(r.spec.name).runs.append(m)
                        self.log(f"  run {n + 1}/{self.settings.runs} {scenario} c{conns} {r.spec.name}: " + _brief(m))
                        if not self.alive(r):
                            dead[r.spec.name] = "process exited during the benchmark"
                            for c in cases.values():
                                c.markUnavailable(r.spec.name, dead[r.spec.name] + ":\n" + r.procs[0].logTail())
        finally:
            self.stopAll(running)
        return list(cases.values())


def _brief(m: Dict[str, Any]) -> str:
    if "failure" in m:
        return "failed: " + m["failure"]
    parts = []
    if m.get("conn_per_s") is not None:
        parts.append(f"{m['conn_per_s']:,.0f} conn/s")
    elif m.get("rps") is not None:
        parts.append(f"{m['rps']:,.0f} req/s")
    if m.get("gbps") is not None:
        parts.append(f"{m['gbps']:.2f} Gbit/s")
    if m.get("p99_ms") is not None:
        parts.append(f"p99 {m['p99_ms']:.2f} ms")
    if m.get("cpu_us_per_req") is not None:
        parts.append(f"{m['cpu_us_per_req']:.1f} us CPU/req")
    if m.get("cpu_ms_per_gb") is not None:
        parts.append(f"{m['cpu_ms_per_gb']:.0f} ms CPU/GB")
    if m.get("proxy_cpu_busy") is not None and m.get("client_cpu_busy") is not None:
        parts.append(f"busy {m['proxy_cpu_busy']:.0%}/{m['client_cpu_busy']:.0%}")
    if not m.get("valid", True):
        parts.append(f"INVALID errors={m.get('errors')}")
    return ", ".join(parts)


def httpScenario(
    ctx: Context,
    settings: Settings,
    origin: Running,
    specs: Sequence[TargetSpec],
    log: Log,
    sink: Optional[List[CaseData]] = None,
) -> List[CaseData]:
    """
    HTTP/1.1 keep-alive at each of C{settings.connections}.
    """

    def start(spec: TargetSpec) -> Running:
        if spec.kind == "origin":
            return directTarget(origin, spec.name)
        return startHttpTarget(ctx, spec, origin.port)

    def title(c: int) -> str:
        return f"HTTP/1.1 keep-alive, {c} connection{'s' if c != 1 else ''}"

    return LoadScenario(ctx, settings, log, sink).run("http", title, specs, start, settings.connections)


def tlsScenario(
    ctx: Context,
    settings: Settings,
    origin: Running,
    specs: Sequence[TargetSpec],
    log: Log,
    sink: Optional[List[CaseData]] = None,
) -> List[CaseData]:
    """
    HTTPS terminated by the proxy (self-signed certificate), plain HTTP
    upstream, keep-alive at each of C{settings.tlsConnections}.
    """
    try:
        cert = configs.makeCertificate(ctx.workDir)
    except (RuntimeError, OSError) as e:
        cases = [CaseData("tls", f"c{c}", f"HTTPS (TLS terminated), {c} connections", "nginx",
                          ["rps", "p50_ms", "p99_ms", "cpu_us_per_req"]) for c in settings.tlsConnections]
        if sink is not None:
            sink.extend(cases)
        for case in cases:
            for spec in specs:
                case.markUnavailable(spec.name, f"no certificate: {e}")
        return cases

    def start(spec: TargetSpec) -> Running:
        return startHttpTarget(ctx, spec, origin.port, tls=cert)

    def title(c: int) -> str:
        return f"HTTPS (TLS terminated by the proxy), {c} connection{'s' if c != 1 else ''}"

    return LoadScenario(ctx, settings, log, sink).run(
        "tls", title, specs, start, settings.tlsConnections, tls=True
    )


class TcpScenario(_Scenario):
    """
    TCP proxying: iperf3 throughput through each proxy, and new connections
    per second (wrk with C{Connection: close} against the HTTP origin behind
    the proxy: every request is a new TCP connection).
    """

    def run(self, origin: Running, specs: Sequence[TargetSpec]) -> List[CaseData]:
        """
        Start the iperf3 server and C{specs}, measure both cases
        round-robin, stop everything.
        """
        s = self.settings
        throughput = self.newCase("tcp", "throughput", "TCP throughput (iperf3, one stream)", "haproxy",
                              ["gbps", "cpu_ms_per_gb"])
        connRate = self.newCase("tcp", "connrate",
                            f"TCP new connections (wrk, Connection: close, {s.connRateConnections} concurrent)",
                            "haproxy", ["conn_per_s", "p99_ms", "cpu_us_per_conn"])
        cases = [throughput, connRate]
        try:
            iperfServer = startIperfServer(self.ctx)
        except Unavailable as e:
            for spec in specs:
                throughput.markUnavailable(spec.name, f"iperf3 server: {e}")
            iperfServer = None

        def start(spec: TargetSpec) -> Running:
            if spec.kind == "origin":
                r = directTarget(origin, spec.name)
                if iperfServer is not None:
                    r.ports["iperf"] = iperfServer.port
                return r
            if iperfServer is None:
                raise Unavailable("iperf3 server did not start")
            return startTcpTarget(self.ctx, spec, iperfServer.port, origin.port)

        running = self.startAll(specs, cases, start)
        headers = ["Connection: close", f"Host: {configs.SERVICE_NAME}"]
        try:
            for r in running:
                self.log(f"  warming up {r.spec.name}")
                try:
                    runIperf(self.ctx.manager, r.ports["iperf"], 1, cpus=self.ctx.clientCpus, omitS=0)
                    runWrk(self.ctx.manager, f"http://127.0.0.1:{r.port}/", s.connRateConnections,
                           self.warmupFor(r.spec), self.script, headers, cpus=self.ctx.clientCpus)
                except (LoadFailed, KeyError) as e:
                    self.log(f"  {r.spec.name}: warm-up failed: {e}")
            for n in range(s.runs):
                for r in _rotate(running, n):
                    m = self.iperf(r)
                    throughput.result(r.spec.name).runs.append(m)
                    self.log(f"  run {n + 1}/{s.runs} tcp throughput {r.spec.name}: " + _brief(m))
                for r in _rotate(running, n):
                    try:
                        m = self.wrk(r, f"http://127.0.0.1:{r.port}/", s.connRateConnections, s.tcpDurationS, headers)
                        m["conn_per_s"] = m["rps"]
                        m["cpu_us_per_conn"] = m["cpu_us_per_req"]
                    except LoadFailed as e:
                        m = {"valid": False, "failure": str(e)}
                    connRate.result(r.spec.name).runs.append(m)
                    self.log(f"  run {n + 1}/{s.runs} tcp connrate {r.spec.name}: " + _brief(m))
        finally:
            self.stopAll(running)
            if iperfServer is not None:
                stopTarget(self.ctx, iperfServer)
        return cases

    def iperf(self, r: Running) -> Dict[str, Any]:
        if "iperf" not in r.ports:
            return {"valid": False, "failure": "no iperf3 route"}
        isProxy = r.owned
        pids = r.pids() if isProxy else []
        before = cpuTicks(pids)
        coresBefore = coreTimes()
        try:
            res = runIperf(self.ctx.manager, r.ports["iperf"], self.settings.tcpDurationS,
                           cpus=self.ctx.clientCpus, omitS=0)
        except LoadFailed as e:
            return {"valid": False, "failure": str(e)}
        busy = self.busy(coresBefore, coreTimes())
        cpuS = cpuSeconds(before, cpuTicks(set(pids) | set(r.pids() if isProxy else []))) if isProxy else None
        gb = res.bytes / 1e9
        return {
            "gbps": res.gbps,
            "bytes": res.bytes,
            "duration_s": res.durationS,
            "cpu_s": cpuS,
            "cpu_ms_per_gb": (cpuS * 1e3 / gb) if (cpuS is not None and gb > 0) else None,
            "valid": res.bytes > 0,
            **busy,
        }


def tcpScenario(
    ctx: Context,
    settings: Settings,
    origin: Running,
    specs: Sequence[TargetSpec],
    log: Log,
    sink: Optional[List[CaseData]] = None,
) -> List[CaseData]:
    """
    See L{TcpScenario}.
    """
    return TcpScenario(ctx, settings, log, sink).run(origin, specs)


class MemoryScenario(_Scenario):
    """
    Resident memory of each proxy: idle (started, one request served), then
    with C{idleConnections} open idle keep-alive client connections held by
    a helper process.  Every run starts the target afresh.
    """

    def run(self, origin: Running, specs: Sequence[TargetSpec]) -> List[CaseData]:
        """
        Measure each spec C{runs} times.
        """
        n = self.settings.idleConnections
        case = self.newCase("memory", "rss", f"Memory: idle, and with {n} idle client connections", "nginx",
                        ["idle_rss_mib", "loaded_rss_mib", "per_conn_kib"])
        for run in range(self.settings.runs):
            for spec in specs:
                if not case.result(spec.name).available:
                    continue
                try:
                    r = startHttpTarget(self.ctx, spec, origin.port)
                except Unavailable as e:
                    case.markUnavailable(spec.name, str(e).strip())
                    self.log(f"  {spec.name}: unavailable: {lastLine(str(e))}")
                    continue
                case.result(spec.name).command = list(r.command)
                try:
                    m = self.measure(r, n)
                finally:
                    stopTarget(self.ctx, r)
                case.result(spec.name).runs.append(m)
                self.log(f"  run {run + 1}/{self.settings.runs} memory {spec.name}: " + _memBrief(m))
        return [case]

    def measure(self, r: Running, count: int) -> Dict[str, Any]:
        # Let start-up garbage settle before reading the idle figure.
        time.sleep(1.0)
        idleRss, idlePss = memoryKiB(r.pids())
        helper = self.ctx.manager.start(
            f"idleconns-{r.spec.name}",
            [self.ctx.pythons["cpython"], "-m", "bench.harness.idleconns", "--port", str(r.port),
             "--count", str(count), "--host", configs.SERVICE_NAME],
            cpus=self.ctx.clientCpus, env={"PYTHONPATH": self.ctx.repoRoot}, cwd=self.ctx.repoRoot,
        )
        try:
            ready: Dict[str, Any] = {}

            def isReady() -> bool:
                for line in reversed(helper.logTail(5).splitlines()):
                    if line.startswith(READY_MARKER):
                        ready.update(json.loads(line[len(READY_MARKER):]))
                        return True
                return False

            try:
                waitFor(isReady, 180.0, helper, what=f"{count} idle connections")
            except ProcessFailed as e:
                return {"valid": False, "failure": str(e), "idle_rss_mib": idleRss / 1024}
            time.sleep(1.0)
            loadedRss, loadedPss = memoryKiB(r.pids())
        finally:
            self.ctx.manager.stop(helper)
        opened = int(ready.get("open", 0))
        return {
            "idle_rss_mib": idleRss / 1024,
            "idle_pss_mib": None if idlePss is None else idlePss / 1024,
            "loaded_rss_mib": loadedRss / 1024,
            "loaded_pss_mib": None if loadedPss is None else loadedPss / 1024,
            "per_conn_kib": (loadedRss - idleRss) / opened if opened else None,
            "connections_open": opened,
            "connections_failed": int(ready.get("failed", 0)),
            "valid": opened == count,
        }


def _memBrief(m: Dict[str, Any]) -> str:
    if "failure" in m:
        return "failed: " + m["failure"].splitlines()[0]
    per = m.get("per_conn_kib")
    return (f"idle {m['idle_rss_mib']:.1f} MiB, with {m['connections_open']} conns "
            f"{m['loaded_rss_mib']:.1f} MiB" + (f" ({per:.1f} KiB/conn)" if per is not None else "")
            + ("" if m.get("valid") else f" INVALID ({m['connections_failed']} failed)"))


def memoryScenario(
    ctx: Context,
    settings: Settings,
    origin: Running,
    specs: Sequence[TargetSpec],
    log: Log,
    sink: Optional[List[CaseData]] = None,
) -> List[CaseData]:
    """
    See L{MemoryScenario}.
    """
    return MemoryScenario(ctx, settings, log, sink).run(origin, specs)
