#!/usr/bin/env python3
# (a measuring tool, not tested: it never fails because something is slow)
"""
A/B comparison of linkerpy source trees by CPU time per request (not a test).

    python -m bench.ab A=/tmp/base B=/work/main              # CPython, 32 connections
    python -m bench.ab A=/tmp/base B=. --runs 6 --duration 5 --connections 1
    python -m bench.ab B=. --python /tmp/pypyvenv-lead/bin/python --warmup 15
    python -m bench.ab B=. --profile 10                       # py-spy flat profile of B under load
    python -m bench.ab A=/tmp/base B=. --tcp                  # TCP router, a new connection per request

Each variant is a directory holding a C{linkerpy} package (a checkout or an
exported commit: C{git archive HEAD | tar -x -C /tmp/base}).  The harness's
nginx origin is started on the client CPUs; each variant runs as C{twistd
linkerpy} with the harness's HTTP config, pinned to the proxy CPU, with its
directory first on C{PYTHONPATH}.  Runs alternate A, B, A, B... in one
sitting, and the summary gives the median CPU microseconds per request of
each variant (utime+stime of every process of the variant, divided by the
requests wrk completed), which is steady while req/s follows whatever else
the shared machine does.

With C{--tcp} each variant runs the harness's C{protocol: tcp} router in
front of the origin instead, and wrk sends C{Connection: close}: every
request is one new client connection and one new origin connection through
the router, so the figure is CPU microseconds per proxied connection.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.harness import configs  # noqa: E402
from bench.harness.loadgen import runWrk  # noqa: E402
from bench.harness.parsing import WRK_LUA_SCRIPT  # noqa: E402
from bench.harness.procs import (  # noqa: E402
    PortAllocator,
    ProcessManager,
    cpuSeconds,
    cpuTicks,
    descendants,
    waitForHttp,
)

#: The variant's process.  C{BENCH_WITHOUT} (a variant's C{@BENCH_WITHOUT=parse,stats}) takes parts
#: of the work out first, for a lower bound (see C{bench/bounds.py}).
TWISTD = (
    "import os\n"
    "if os.environ.get('BENCH_WITHOUT'):\n"
    "    from bench.bounds import apply; apply(os.environ['BENCH_WITHOUT'])\n"
    "from twisted.scripts.twistd import run; run()"
)


def startVariant(
    manager: ProcessManager, ports: PortAllocator, work: str, name: str, root: str, args: argparse.Namespace, originPort: int
) -> Tuple[object, int]:
    port = ports.allocate()
    if args.tcp:
        text = configs.linkerpyTcp(ports.allocate(), [configs.TcpRoute(port, "/svc/origin", originPort)])
    else:
        disco = os.path.join(work, f"{name}-disco")
        configs.writeFsNamer(disco, configs.SERVICE_NAME, originPort)
        text = configs.linkerpyHttp(port, ports.allocate(), disco, args.tlsPair)
    if args.workers:
        text += f"workers: {args.workers}\n"
    conf = os.path.join(work, f"{name}.yaml")
    with open(conf, "w") as f:
        f.write(text)
    argv = [args.python, "-c", TWISTD, "-n", "--pidfile=", *args.twistd_args.split(), "linkerpy", "-c", conf]
    root, *extra = root.split("@")
    # The variant's tree first; this checkout last, for bench.bounds.
    env = {"PYTHONPATH": os.path.abspath(root) + os.pathsep + ROOT}
    env.update(dict(kv.split("=", 1) for kv in args.env + extra))
    proc = manager.start(name, argv, cpus=args.proxy_cpus, env=env, cwd=work)
    waitForHttp(port, configs.ORIGIN_BODY, 90.0, proc, tls=args.tlsPair is not None)
    return proc, port


def measure(manager: ProcessManager, proc: object, port: int, seconds: float, args: argparse.Namespace, script: str) -> Tuple[float, float, float]:
    pids = descendants(proc.pid)  # type: ignore[attr-defined]
    sysBefore = _sysTicks(pids)
    before = cpuTicks(pids)
    scheme = "https" if args.tlsPair is not None else "http"
    result = runWrk(
        manager, f"{scheme}://127.0.0.1:{port}/", args.connections, seconds, script,
        headers=[f"Host: {configs.SERVICE_NAME}"] + (["Connection: close"] if args.tcp else []), cpus=args.client_cpus,
    )
    after = cpuTicks(pids)
    cpu = cpuSeconds(before, after)
    requests = result.requests
    if requests:
        measure.lastSys = (_sysTicks(pids) - sysBefore) / os.sysconf("SC_CLK_TCK") / requests * 1e6  # type: ignore[attr-defined]
    if result.errorCount:
        print(f"  wrk errors: {result.errors}", flush=True)
    return (cpu / requests * 1e6 if requests else float("nan")), result.rps, result.latencyMs.get("p99", float("nan"))


def _sysTicks(pids: List[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                total += int(f.read().rsplit(")", 1)[1].split()[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("variants", nargs="+", help="NAME=DIR[@KEY=VALUE...] (a directory holding the linkerpy package, and environment variables for it)")
    p.add_argument("--runs", type=int, default=4)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--proxy-cpus", default="0")
    p.add_argument("--client-cpus", default="1")
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for the linkerpy processes")
    p.add_argument("--tcp", action="store_true", help="the TCP router, one new connection per request (CPU us per connection)")
    p.add_argument("--tls", action="store_true", help="terminate TLS on the router's server (HTTPS load)")
    p.add_argument("--twistd-args", default="", help="extra twistd options, e.g. '--profile=/tmp/p.out --profiler=cprofile --savestats'")
    p.add_argument("--during", default="", help="run this shell command ({pid} = the first variant's reactor process) during one load run, then SIGINT it")
    p.add_argument("--profile", type=float, default=0.0, help="py-spy the first variant for this many seconds under load")
    args = p.parse_args()
    if args.tcp and args.tls:
        p.error("--tcp and --tls cannot be combined (the TCP router passes bytes through)")
    variants = [v.split("=", 1) for v in args.variants]
    work = tempfile.mkdtemp(prefix="linkerpy-ab-")
    manager = ProcessManager(work)
    ports = PortAllocator()
    args.tlsPair = configs.makeCertificate(work) if args.tls else None
    script = os.path.join(work, "summary.lua")
    with open(script, "w") as f:
        f.write(WRK_LUA_SCRIPT)
    originPort = ports.allocate()
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        os.makedirs(os.path.join(work, "origin-tmp", sub), exist_ok=True)
    conf = os.path.join(work, "origin.conf")
    with open(conf, "w") as f:
        f.write(configs.nginxOrigin(work, originPort))
    origin = manager.start("origin", ["nginx", "-p", work, "-e", os.path.join(work, "origin.err"), "-c", conf], cpus=args.client_cpus)
    waitForHttp(originPort, configs.ORIGIN_BODY, 30.0, origin)
    started: Dict[str, Tuple[object, int]] = {}
    results: Dict[str, List[Tuple[float, float, float]]] = {name: [] for name, _ in variants}
    try:
        for name, root in variants:
            started[name] = startVariant(manager, ports, work, name, root, args, originPort)
            measure(manager, *started[name], args.warmup, args, script)
        if args.during:
            import shlex
            import signal

            proc, port = started[variants[0][0]]
            pid = descendants(proc.pid)[-1] if args.workers else proc.pid  # type: ignore[attr-defined]
            helper = subprocess.Popen(shlex.split(args.during.replace("{pid}", str(pid))))
            time.sleep(0.5)
            r = measure(manager, proc, port, args.duration, args, script)
            helper.send_signal(signal.SIGINT)
            helper.wait(60)
            print(f"during run: {r[0]:.1f} us/req, {r[1]:,.0f} req/s, requests {r[1] * args.duration:,.0f}")
            return
        if args.profile:
            name = variants[0][0]
            proc, port = started[name]
            pid = descendants(proc.pid)[-1] if args.workers else proc.pid  # type: ignore[attr-defined]
            out = os.path.join(work, "profile.txt")
            spy = subprocess.Popen(["py-spy", "record", "-p", str(pid), "-f", "raw", "-r", "250", "-d", str(int(args.profile)), "-o", out],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            measure(manager, proc, port, args.profile + 2, args, script)
            spy.wait(60)
            print(f"profile: {out}")
            summarise(out)
            return
        for i in range(args.runs):
            order = variants if i % 2 == 0 else list(reversed(variants))
            for name, _ in order:
                r = measure(manager, *started[name], args.duration, args, script)
                results[name].append(r)
                print(f"run {i + 1} {name}: {r[0]:.1f} us/req (sys {getattr(measure, 'lastSys', 0):.1f}), {r[1]:,.0f} req/s, p99 {r[2]:.2f} ms", flush=True)
    finally:
        manager.stopAll()
    print(f"\n{args.connections} connections, {args.runs} x {args.duration:g}s, {os.path.basename(args.python)}")
    for name, _ in variants:
        cpu = [r[0] for r in results[name]]
        rps = [r[1] for r in results[name]]
        if cpu:
            p99 = [r[2] for r in results[name]]
            print(f"{name:<12} median {statistics.median(cpu):6.1f} us/req [{min(cpu):.1f}-{max(cpu):.1f}]  {statistics.median(rps):9,.0f} req/s  p99 {statistics.median(p99):.2f} ms [{min(p99):.2f}-{max(p99):.2f}]")


def summarise(path: str, top: int = 45) -> None:
    """
    Print self and inclusive sample shares per function from a py-spy raw
    (collapsed stacks) file.
    """
    own: Dict[str, int] = {}
    incl: Dict[str, int] = {}
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            n = int(count)
            if "_bootstrap" in stack:
                continue  # idle pool threads
            total += n
            frames = stack.split(";")
            for fr in set(frames):
                key = _short(fr)
                incl[key] = incl.get(key, 0) + n
            key = _short(frames[-1])
            own[key] = own.get(key, 0) + n
    print(f"{total} samples\n-- self --")
    for k, v in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{100.0 * v / total:5.1f}%  {k}")
    print("-- inclusive --")
    for k, v in sorted(incl.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{100.0 * v / total:5.1f}%  {k}")


def _short(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file.py)"
    name, _, rest = frame.partition(" (")
    fname = rest.rsplit(":", 1)[0].rsplit("/", 1)[-1]
    return f"{name} ({fname})"


if __name__ == "__main__":
    main()
