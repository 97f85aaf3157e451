# -*- test-case-name: tests.test_bench_harness -*-
"""
The systems under test and how to start them: the nginx origin, nginx and
HAProxy as proxies, Twisted's ReverseProxyResource, and linkerpy (HTTP, TLS
and TCP routers, optionally under PyPy or with C{--workers N}).

A target that cannot start raises L{Unavailable} with the reason (usually
the tail of its log); the scenario reports it as unavailable and goes on.
"""

from __future__ import annotations

import os
import shlex
from typing import Dict, List, Optional, Sequence, Tuple

import attrs

from bench.harness import configs
from bench.harness.procs import (
    ManagedProcess,
    PortAllocator,
    ProcessFailed,
    ProcessManager,
    descendants,
    portOpen,
    waitFor,
    waitForHttp,
)

#: How linkerpy is started unless C{--linkerpy-cmd} says otherwise.
#: C{{twistd}} expands to "run twistd with the target's interpreter",
#: C{{python}} to that interpreter, C{{config}} to the generated YAML.
DEFAULT_LINKERPY_COMMAND = "{twistd} -n --pidfile= linkerpy -c {config}"

_TWISTD_CODE = "from twisted.scripts.twistd import run; run()"


class Unavailable(Exception):
    """
    A target could not be started; the message says why.
    """


@attrs.frozen
class TargetSpec:
    """
    One row of the results.

    @ivar name: unique row name (C{"nginx"}, C{"linkerpy-pypy"}).
    @ivar kind: C{origin}, C{nginx}, C{haproxy}, C{twisted}, C{python-epoll} (TCP only) or
        C{linkerpy}.
    @ivar runtime: C{cpython} or C{pypy} (Python targets only).
    @ivar workers: C{--workers N} for linkerpy, or L{None}.
    @ivar tuned: run the Twisted forwarder on linkerpy's event-loop tuning.
    """

    name: str
    kind: str
    runtime: str = "cpython"
    workers: Optional[int] = None
    tuned: bool = False


@attrs.define
class Context:
    """
    What starting a target needs.
    """

    manager: ProcessManager
    ports: PortAllocator
    workDir: str
    repoRoot: str
    binaries: Dict[str, Optional[str]]
    pythons: Dict[str, str]
    proxyCpus: Optional[str] = "0"
    clientCpus: Optional[str] = "1"
    originCpus: Optional[str] = "1"
    startTimeout: float = 60.0
    linkerpyCommand: str = DEFAULT_LINKERPY_COMMAND


@attrs.define
class Running:
    """
    A started target.

    @ivar port: where the load goes (for TCP targets: the route to the HTTP
        origin, used for the connection-rate test).
    @ivar ports: other named ports (C{iperf} for TCP targets).
    @ivar owned: whether the scenario should stop it (the shared origin is
        not stopped by the "origin direct" row).
    """

    spec: TargetSpec
    procs: List[ManagedProcess]
    port: int
    ports: Dict[str, int] = attrs.Factory(dict)
    owned: bool = True
    command: List[str] = attrs.Factory(list)

    def pids(self) -> List[int]:
        """
        Every live process of this target (workers included).
        """
        found: List[int] = []
        for proc in self.procs:
            for pid in descendants(proc.pid):
                if pid not in found:
                    found.append(pid)
        return found


def _binary(ctx: Context, name: str) -> str:
    path = ctx.binaries.get(name)
    if path is None:
        raise Unavailable(f"{name} is not installed")
    return path


def _write(ctx: Context, name: str, text: str) -> str:
    # Targets restart in every scenario: keep each generated file (for
    # --keep-temp) by numbering repeats.
    path = os.path.join(ctx.workDir, name)
    stem, ext = os.path.splitext(name)
    n = 1
    while os.path.exists(path):
        n += 1
        path = os.path.join(ctx.workDir, f"{stem}-{n}{ext}")
    with open(path, "w") as f:
        f.write(text)
    return path


def _startChecked(
    ctx: Context,
    spec: TargetSpec,
    argv: Sequence[str],
    probePort: int,
    tls: bool = False,
    env: Optional[Dict[str, str]] = None,
    cwd: Optional[str] = None,
    cpus: Optional[str] = None,
    expectBody: Optional[bytes] = configs.ORIGIN_BODY,
) -> ManagedProcess:
    try:
        proc = ctx.manager.start(spec.name, argv, cpus=cpus or ctx.proxyCpus, env=env, cwd=cwd)
    except ProcessFailed as e:
        raise Unavailable(str(e)) from e
    try:
        if expectBody is None:
            waitFor(lambda: portOpen(probePort), ctx.startTimeout, proc, what=f"port {probePort}")
        else:
            waitForHttp(probePort, expectBody, ctx.startTimeout, proc, tls=tls)
    except ProcessFailed as e:
        ctx.manager.stop(proc)
        raise Unavailable(str(e)) from e
    return proc


def startOrigin(ctx: Context) -> Running:
    """
    Start the nginx origin (fixed 100-byte body) pinned to the origin CPUs.
    """
    spec = TargetSpec("origin", "origin")
    nginx = _binary(ctx, "nginx")
    port = ctx.ports.allocate()
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        os.makedirs(os.path.join(ctx.workDir, "origin-tmp", sub), exist_ok=True)
    conf = _write(ctx, "origin-nginx.conf", configs.nginxOrigin(ctx.workDir, port))
    argv = [nginx, "-p", ctx.workDir, "-e", os.path.join(ctx.workDir, "origin-error.log"), "-c", conf]
    proc = _startChecked(ctx, spec, argv, port, cpus=ctx.originCpus)
    return Running(spec, [proc], port, command=proc.argv)


def directTarget(origin: Running, name: str = "origin") -> Running:
    """
    The "origin direct" row: load straight at the origin (the harness's
    ceiling); CPU is the origin's own.
    """
    return Running(TargetSpec(name, "origin"), origin.procs, origin.port, owned=False, command=origin.command)


def _startNginx(ctx: Context, spec: TargetSpec, originPort: int, tls: Optional[Tuple[str, str]]) -> Running:
    nginx = _binary(ctx, "nginx")
    port = ctx.ports.allocate()
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        os.makedirs(os.path.join(ctx.workDir, f"{spec.name}-tmp", sub), exist_ok=True)
    conf = _write(ctx, f"{spec.name}.conf", configs.nginxProxy(ctx.workDir, port, originPort, tls, name=spec.name))
    argv = [nginx, "-p", ctx.workDir, "-e", os.path.join(ctx.workDir, f"{spec.name}-error.log"), "-c", conf]
    proc = _startChecked(ctx, spec, argv, port, tls=tls is not None)
    return Running(spec, [proc], port, command=proc.argv)


def _startHaproxy(ctx: Context, spec: TargetSpec, text: str, probePort: int, expectBody: Optional[bytes]) -> ManagedProcess:
    haproxy = _binary(ctx, "haproxy")
    conf = _write(ctx, f"{spec.name}.cfg", text)
    return _startChecked(ctx, spec, [haproxy, "-db", "-f", conf], probePort, expectBody=expectBody)


def _startTwisted(ctx: Context, spec: TargetSpec, originPort: int) -> Running:
    python = ctx.pythons.get(spec.runtime)
    if python is None:
        raise Unavailable(f"no {spec.runtime} interpreter")
    port = ctx.ports.allocate()
    argv = [python, "-m", "bench.harness.rproxy", "--port", str(port), "--origin-port", str(originPort)]
    env = {"PYTHONPATH": ctx.repoRoot}
    proc = _startChecked(ctx, spec, argv, port, env=env, cwd=ctx.repoRoot)
    return Running(spec, [proc], port, command=proc.argv)


def linkerpyArgv(template: str, python: str, configPath: str, workers: Optional[int]) -> List[str]:
    """
    Expand the linkerpy command template (see L{DEFAULT_LINKERPY_COMMAND})
    and append C{--workers N} when asked.
    """
    argv: List[str] = []
    for token in shlex.split(template):
        if token == "{twistd}":
            argv += [python, "-c", _TWISTD_CODE]
        else:
            argv.append(token.replace("{python}", python).replace("{config}", configPath))
    if workers is not None:
        argv += ["--workers", str(workers)]
    return argv


def _startLinkerpy(
    ctx: Context, spec: TargetSpec, configText: str, probePort: int, tls: bool, expectBody: Optional[bytes]
) -> ManagedProcess:
    python = ctx.pythons.get(spec.runtime)
    if python is None:
        raise Unavailable(f"no {spec.runtime} interpreter (use --pypy to set one up)")
    conf = _write(ctx, f"{spec.name}.yaml", configText)
    argv = linkerpyArgv(ctx.linkerpyCommand, python, conf, spec.workers)
    return _startChecked(ctx, spec, argv, probePort, tls=tls, env={"PYTHONPATH": ctx.repoRoot},
                         cwd=ctx.workDir, expectBody=expectBody)


def startHttpTarget(
    ctx: Context, spec: TargetSpec, originPort: int, tls: Optional[Tuple[str, str]] = None
) -> Running:
    """
    Start one HTTP (or, with C{tls}, HTTPS-terminating) proxy in front of
    the origin and wait until a request through it returns the origin's
    body.

    @raise Unavailable: if it cannot start or does not proxy correctly.
    """
    if spec.kind == "nginx":
        return _startNginx(ctx, spec, originPort, tls)
    if spec.kind == "haproxy" and tls is None:
        port = ctx.ports.allocate()
        proc = _startHaproxy(ctx, spec, configs.haproxyHttp(port, originPort), port, configs.ORIGIN_BODY)
        return Running(spec, [proc], port, command=proc.argv)
    if spec.kind == "twisted" and tls is None:
        return _startTwisted(ctx, spec, originPort)
    if spec.kind == "linkerpy":
        port = ctx.ports.allocate()
        rootDir = os.path.join(ctx.workDir, f"{spec.name}-disco")
        configs.writeFsNamer(rootDir, configs.SERVICE_NAME, originPort)
        text = configs.linkerpyHttp(port, ctx.ports.allocate(), rootDir, tls)
        proc = _startLinkerpy(ctx, spec, text, port, tls is not None, configs.ORIGIN_BODY)
        return Running(spec, [proc], port, command=proc.argv)
    raise Unavailable(f"{spec.kind} has no {'TLS ' if tls else ''}HTTP target here")


#: The reference TCP forwarders: target kind -> module (same C{--route} options).
_FORWARDERS = {"twisted": "bench.harness.portforward", "python-epoll": "bench.harness.epollforward"}


def startTcpTarget(ctx: Context, spec: TargetSpec, iperfPort: int, originPort: int) -> Running:
    """
    Start one TCP proxy with two routes: to the iperf3 server (throughput)
    and to the HTTP origin (connection rate).  It is ready when an HTTP
    request through the second route returns the origin's body.

    @raise Unavailable: if it cannot start or does not forward.
    """
    httpPort, iperfListen = ctx.ports.allocate(), ctx.ports.allocate()
    if spec.kind == "haproxy":
        text = configs.haproxyTcp([(iperfListen, iperfPort), (httpPort, originPort)])
        proc = _startHaproxy(ctx, spec, text, httpPort, configs.ORIGIN_BODY)
    elif spec.kind == "linkerpy":
        routes = [
            configs.TcpRoute(iperfListen, "/svc/iperf", iperfPort),
            configs.TcpRoute(httpPort, "/svc/origin", originPort),
        ]
        text = configs.linkerpyTcp(ctx.ports.allocate(), routes)
        proc = _startLinkerpy(ctx, spec, text, httpPort, False, configs.ORIGIN_BODY)
    elif spec.kind in _FORWARDERS:
        python = ctx.pythons.get(spec.runtime)
        if python is None:
            raise Unavailable(f"no {spec.runtime} interpreter")
        argv = [python, "-m", _FORWARDERS[spec.kind],
                "--route", f"{iperfListen}:{iperfPort}", "--route", f"{httpPort}:{originPort}"]
        if spec.tuned:
            argv.append("--tuned")
        proc = _startChecked(ctx, spec, argv, httpPort, env={"PYTHONPATH": ctx.repoRoot}, cwd=ctx.repoRoot)
    else:
        raise Unavailable(f"{spec.kind} has no TCP target here")
    return Running(spec, [proc], httpPort, ports={"iperf": iperfListen}, command=proc.argv)


def startIperfServer(ctx: Context) -> Running:
    """
    Start C{iperf3 -s} on a free port, pinned with the load generator.
    """
    iperf = _binary(ctx, "iperf3")
    port = ctx.ports.allocate()
    spec = TargetSpec("iperf3-server", "iperf3")
    proc = _startChecked(ctx, spec, [iperf, "-s", "-B", "127.0.0.1", "-p", str(port)], port,
                         cpus=ctx.clientCpus, expectBody=None)
    return Running(spec, [proc], port, command=proc.argv)


def stopTarget(ctx: Context, running: Running) -> None:
    """
    Stop a target the scenario owns.
    """
    if running.owned:
        for proc in running.procs:
            ctx.manager.stop(proc)
