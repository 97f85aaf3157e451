# -*- test-case-name: tests.test_bench_harness -*-
"""
The load generators: wrk (HTTP and HTTPS, keep-alive or one connection per
request) and iperf3 (TCP throughput).  Each run is bounded: the tool's own
duration plus a fixed allowance, after which it is killed.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

from bench.harness.parsing import IperfResult, ParseError, WrkResult, parseIperf3Json, parseWrkOutput
from bench.harness.procs import ProcessManager

#: Extra seconds a bounded tool gets beyond its own duration before it is killed.
RUN_ALLOWANCE = 30.0


class LoadFailed(Exception):
    """
    A load-generator run failed or printed nothing usable.
    """


def wrkArgv(
    url: str,
    connections: int,
    durationS: float,
    scriptPath: str,
    headers: Sequence[str] = (),
    threads: int = 1,
    timeoutS: float = 5.0,
) -> List[str]:
    """
    The wrk command line: C{threads} threads (one per load-generator core),
    C{connections} connections, C{--latency}, our Lua summary script.
    """
    argv = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, int(round(durationS)))}s",
        f"--timeout={max(1, int(round(timeoutS)))}s", "--latency", "-s", scriptPath,
    ]
    for h in headers:
        argv += ["-H", h]
    argv.append(url)
    return argv


def runWrk(
    manager: ProcessManager,
    url: str,
    connections: int,
    durationS: float,
    scriptPath: str,
    headers: Sequence[str] = (),
    cpus: Optional[str] = None,
    threads: int = 1,
) -> WrkResult:
    """
    Run wrk once and parse its result.

    @raise LoadFailed: if wrk fails, times out, or prints nothing usable.
    """
    argv = wrkArgv(url, connections, durationS, scriptPath, headers, threads)
    result = manager.run(argv, timeout=durationS + RUN_ALLOWANCE, cpus=cpus)
    if result.timedOut:
        raise LoadFailed(f"wrk did not finish within {durationS + RUN_ALLOWANCE:.0f}s")
    try:
        return parseWrkOutput(result.stdout)
    except ParseError as e:
        raise LoadFailed(
            f"wrk exited {result.returncode}: {e}; stderr: {result.stderr.strip()[-300:]}"
        ) from e


def iperfArgv(port: int, durationS: float, omitS: int = 1) -> List[str]:
    """
    The iperf3 client command line: one TCP stream to C{127.0.0.1:port}
    for C{durationS} seconds (after C{omitS} unmeasured seconds), JSON output.
    """
    return [
        "iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(max(1, int(round(durationS)))),
        "-O", str(omitS), "-J",
    ]


def runIperf(
    manager: ProcessManager, port: int, durationS: float, cpus: Optional[str] = None, omitS: int = 1
) -> IperfResult:
    """
    Run one iperf3 client and parse its result.

    @raise LoadFailed: if iperf3 fails or times out.
    """
    result = manager.run(
        iperfArgv(port, durationS, omitS), timeout=durationS + omitS + RUN_ALLOWANCE, cpus=cpus
    )
    if result.timedOut:
        raise LoadFailed("iperf3 did not finish in time")
    try:
        return parseIperf3Json(result.stdout)
    except ParseError as e:
        raise LoadFailed(f"iperf3 exited {result.returncode}: {e}") from e
