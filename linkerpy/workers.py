# -*- test-case-name: tests.test_workers -*-
"""
Running on every core: C{workers: N} (or C{twistd linkerpy --workers N}).

One reactor is one core.  With C{N > 1} workers, the C{twistd} process is a
I{parent} that routes nothing itself:

  - it opens the routers' listening sockets: for every server, one socket
    per worker, all bound to the same address with C{SO_REUSEPORT} (a server
    configured with port 0 gets a free port, the same for every worker), so
    the kernel spreads new connections evenly over the workers; it logs
    C{router <label> listening on <ip>:<port>} once per server;
  - it starts N worker processes (C{python -m linkerpy.workers}), each
    handed its sockets; a worker is a complete linkerpy (namers, routers,
    policy, pools) without an admin server, and adopts the sockets instead
    of binding;
  - it serves the admin server itself: C{/admin/metrics.json}, the
    Prometheus page and every other metrics view show the I{sum} over the
    workers (counters and gauges added, latency histograms merged bucket by
    bucket), collected from the workers when the page is asked for;
  - it restarts a worker that dies (after a pause that grows while workers
    keep dying), and on C{POST /admin/shutdown} or SIGTERM it asks every
    worker to drain (C{admin.shutdownGraceMs}) and waits for them to exit.

A worker talks to the parent over pipes: commands on its standard input
(C{metrics}, C{stop}), replies on file descriptor 3 (C{ready}, C{M <json>}),
log lines on standard output, which the parent relays into its own log.  A
worker whose parent disappears (end of its standard input) stops.  Process
set-up (imports, event loop, garbage collector) is L{linkerpy.process}.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import attrs
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.logger import Logger

from linkerpy.process import prepareProcess

log = Logger()

#: Seconds the parent waits for a worker's metrics before using what it has.
METRICS_TIMEOUT = 2.0
#: Pause before restarting a worker that died, doubled (up to
#: L{RESTART_MAX}) while workers die within L{RESTART_RESET} seconds of
#: starting.
RESTART_DELAY = 0.5
RESTART_MAX = 30.0
RESTART_RESET = 10.0


# -- sockets ------------------------------------------------------------------------------


def serversOf(config: Any) -> List[Tuple[int, int, Any]]:
    """
    C{(router index, server index, server config)} for every server of
    every router.
    """
    out = []
    for i, router in enumerate(config.routers):
        for j, server in enumerate(getattr(router.config, "servers", ()) or ()):
            if hasattr(server, "port") and hasattr(server, "ip"):
                out.append((i, j, server))
    return out


def withPorts(config: Any, ports: Dict[Tuple[int, int], int]) -> Any:
    """
    C{config} with the given server ports (C{(router, server) -> port}) and
    one worker.
    """
    routers = []
    for i, router in enumerate(config.routers):
        servers = getattr(router.config, "servers", None)
        if servers:
            servers = type(servers)(
                attrs.evolve(s, port=ports[(i, j)]) if (i, j) in ports else s for j, s in enumerate(servers)
            )
            router = attrs.evolve(router, config=attrs.evolve(router.config, servers=servers))
        routers.append(router)
    return attrs.evolve(config, routers=type(config.routers)(routers), workers=1)


def _family(ip: str) -> int:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def openListeners(config: Any, workers: int) -> Tuple[Dict[Tuple[int, int], int], List[List[Tuple[int, int, str, int, socket.socket]]]]:
    """
    Bind every server's address once per worker with C{SO_REUSEPORT}.

    @return: C{(ports, perWorker)}: the bound port of each server, and for
        each worker C{[(router, server, ip, port, socket), ...]}.
    @raise OSError: an address cannot be bound.
    """
    ports: Dict[Tuple[int, int], int] = {}
    perWorker: List[List[Tuple[int, int, str, int, socket.socket]]] = [[] for _ in range(workers)]
    opened: List[socket.socket] = []
    try:
        for i, j, server in serversOf(config):
            ip = server.ip
            port = server.port
            backlog = 1024
            options = getattr(server, "socketOptions", None)
            if options is not None and getattr(options, "backlog", None):
                backlog = int(options.backlog)
            for k in range(workers):
                s = socket.socket(_family(ip), socket.SOCK_STREAM)
                opened.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                s.bind((ip, port))
                port = s.getsockname()[1]
                s.listen(backlog)
                s.setblocking(False)
                perWorker[k].append((i, j, ip, port, s))
            ports[(i, j)] = port
    except OSError:
        for s in opened:
            s.close()
        raise
    return ports, perWorker


# -- the parent ---------------------------------------------------------------------------


#: The timestamp a worker's log line starts with (the parent adds its own).
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT[0-9:.]+(?:Z|[+-]\d{2}:?\d{2}) ")


class WorkerProtocol(ProcessProtocol):
    """
    The parent's side of one worker process.
    """

    def __init__(self, pool: "WorkerPool", index: int) -> None:
        self.pool = pool
        self.index = index
        self.ready = False
        self.ended = False
        self.startedAt = pool.reactor.seconds()
        self.exited: Deferred = Deferred()
        self.lastMetrics: Optional[List[Any]] = None
        self._waiting: List[Deferred] = []
        self._control = b""
        self._lines = {1: b"", 2: b""}

    @property
    def pid(self) -> Optional[int]:
        return self.transport.pid if self.transport is not None else None

    def childDataReceived(self, fd: int, data: bytes) -> None:
        if fd == 3:
            self._control += data
            while b"\n" in self._control:
                line, self._control = self._control.split(b"\n", 1)
                self._controlLine(line)
            return
        buffered = self._lines.get(fd, b"") + data
        *lines, rest = buffered.split(b"\n")
        self._lines[fd] = rest[-65536:]
        for line in lines:
            self._relay(line)

    def _relay(self, line: bytes) -> None:
        text = _TIMESTAMP.sub("", line.decode("utf-8", "replace").rstrip(), count=1)
        # The parent logged every listening address already (and tools
        # read those lines to find the ports): do not repeat them.
        if not text or " listening on " in text:
            return
        log.info("worker {index}: {line}", index=self.index, line=text)

    def _controlLine(self, line: bytes) -> None:
        if line == b"ready":
            self.ready = True
            log.info("worker {index} (pid {pid}) ready", index=self.index, pid=self.pid)
        elif line.startswith(b"M "):
            try:
                self.lastMetrics = json.loads(line[2:])
            except ValueError:
                return
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(self.lastMetrics)

    def requestMetrics(self) -> Deferred:
        """
        Ask the worker for its metrics; fires with the dump, or with the
        last one known after L{METRICS_TIMEOUT} seconds.
        """
        d: Deferred = Deferred()
        if self.ended or not self.ready:
            d.callback(self.lastMetrics)
            return d
        self._waiting.append(d)
        if len(self._waiting) == 1:
            self.transport.writeToChild(0, b"metrics\n")
        reactor = self.pool.reactor

        def late() -> None:
            if not d.called:
                if d in self._waiting:
                    self._waiting.remove(d)
                d.callback(self.lastMetrics)

        timer = reactor.callLater(METRICS_TIMEOUT, late)
        d.addBoth(lambda result: (timer.cancel() if timer.active() else None, result)[1])
        return d

    def stop(self) -> None:
        """
        Ask the worker to drain and exit.
        """
        if self.ended or self.transport is None:
            return
        try:
            self.transport.signalProcess("TERM")
        except Exception:
            pass

    def kill(self) -> None:
        if self.ended or self.transport is None:
            return
        try:
            self.transport.signalProcess("KILL")
        except Exception:
            pass

    def processEnded(self, reason: Any) -> None:
        self.ended = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(self.lastMetrics)
        code = getattr(reason.value, "exitCode", None)
        sig = getattr(reason.value, "signal", None)
        self.exited.callback(None)
        self.pool._workerEnded(self, code, sig)


class FreshMetricsResource:
    """
    Wraps a metrics admin resource of the parent: before rendering, the
    workers' metrics are collected into the parent's tree.
    """

    isLeaf = True

    def __init__(self, pool: "WorkerPool", inner: Any) -> None:
        self.pool = pool
        self.inner = inner

    def render_GET(self, request: Any) -> Any:
        from twisted.web.server import NOT_DONE_YET

        d = self.pool.collectMetrics()

        def render(_: Any) -> None:
            try:
                body = self.inner.render_GET(request)
            except Exception:
                log.failure("rendering metrics failed")
                request.setResponseCode(500)
                body = b"internal error\n"
            if body is not NOT_DONE_YET:
                if body:
                    request.write(body)
                request.finish()

        d.addBoth(render)
        return NOT_DONE_YET

    render_HEAD = render_GET


class WorkersResource:
    """
    C{GET /admin/workers.json} (parent only): each worker's index, pid,
    readiness, uptime and the requests its servers received, plus the
    number of restarts.
    """

    isLeaf = True

    def __init__(self, pool: "WorkerPool") -> None:
        self.pool = pool

    def render_GET(self, request: Any) -> Any:
        from twisted.web.server import NOT_DONE_YET

        from linkerpy.admin.resources import writeJSON

        pool = self.pool

        def render(_: Any) -> None:
            now = pool.reactor.seconds()
            workers = [
                {
                    "index": w.index,
                    "pid": w.pid,
                    "ready": w.ready,
                    "uptimeSecs": round(now - w.startedAt, 3),
                    "requests": serverRequests(w.lastMetrics or []),
                }
                for _, w in sorted(pool.workers.items())
            ]
            body = writeJSON(request, {"workers": workers, "restarts": pool.restarts})
            request.write(body)
            request.finish()

        pool.collectMetrics().addBoth(render)
        return NOT_DONE_YET


def serverRequests(dumped: List[Any]) -> int:
    """
    The C{rt/<router>/server/<address>/requests} counters of a metrics dump,
    added up.
    """
    total = 0
    for path, kind, value in dumped:
        if kind == "counter" and len(path) == 5 and path[0] == "rt" and path[2] == "server" and path[4] == "requests":
            total += int(value)
    return total


class WorkerPool(MultiService):
    """
    The parent process of C{twistd linkerpy --workers N}.

    @ivar control: the parent's L{linkerpy.linker.Linker}: it serves the
        admin server (with the workers' metrics); its routers never listen.
    @ivar workers: the live L{WorkerProtocol}s, by index.
    """

    def __init__(self, configPath: str, workers: int, config: Any, reactor: Any, registry: Any = None) -> None:
        super().__init__()
        from linkerpy.linker import Linker
        from linkerpy.plugins.registry import defaultRegistry

        self.configPath = os.path.abspath(configPath)
        self.count = workers
        self.config = config
        self.reactor = reactor
        self.control = _buildOrExit(lambda: Linker(config, registry or defaultRegistry(), reactor, configPath=configPath), configPath)
        for router in self.control.routers:
            router.service().disownServiceParent()
        self.control.setServiceParent(self)
        self._wrapMetrics()
        self.workers: Dict[int, WorkerProtocol] = {}
        self.sockets: List[List[Tuple[int, int, str, int, socket.socket]]] = []
        self.ports: Dict[Tuple[int, int], int] = {}
        self.stopping = False
        self._delays: Dict[int, float] = {}
        self._restarts: Dict[int, Any] = {}
        self._retired = None  # dumps of dead workers, counters and stats only
        self._collecting: Optional[Deferred] = None
        self.restarts = 0

    def _wrapMetrics(self) -> None:
        admin = self.control.admin
        paths = {"/admin/metrics.json", "/metrics.json"}
        for telemeter in self.control.telemeters:
            paths.update(telemeter.adminResources())
        for path in paths:
            inner = admin.exact.get(path)
            if inner is not None and hasattr(inner, "render_GET"):
                admin.exact[path] = FreshMetricsResource(self, inner)
        admin.mount("/admin/workers.json", WorkersResource(self))
        index = admin.exact.get("/admin")
        if index is not None and hasattr(index, "text"):
            from linkerpy.admin.resources import endpointIndex

            index.text = endpointIndex({p: None for p in admin.paths()})

    # -- lifecycle ----------------------------------------------------------------

    def startService(self) -> None:
        from linkerpy.config.model import routerLabel

        self.ports, self.sockets = openListeners(self.config, self.count)
        for i, j, server in serversOf(self.config):
            label = routerLabel(self.config.routers[i])
            log.info("router {label} listening on {host}:{port}", label=label, host=server.ip, port=self.ports[(i, j)])
        for index in range(self.count):
            self._spawn(index)
        super().startService()

    def _spawn(self, index: int) -> None:
        self._restarts.pop(index, None)
        if self.stopping:
            return
        listeners = []
        childFDs: Dict[int, Any] = {0: "w", 1: "r", 2: "r", 3: "r"}
        fd = 4
        for i, j, ip, port, sock in self.sockets[index]:
            childFDs[fd] = sock.fileno()
            listeners.append([i, j, ip, port, fd, int(_family(ip))])
            fd += 1
        argv = [
            sys.executable, "-m", "linkerpy.workers",
            "--config", self.configPath,
            "--index", str(index),
            "--listeners", json.dumps(listeners),
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in [_sourceRoot(), env.get("PYTHONPATH", "")] if p)
        worker = WorkerProtocol(self, index)
        self.workers[index] = worker
        self.reactor.spawnProcess(worker, sys.executable, argv, env=env, path=os.getcwd(), childFDs=childFDs)
        log.info("worker {index} started (pid {pid})", index=index, pid=worker.pid)

    def _workerEnded(self, worker: WorkerProtocol, code: Optional[int], sig: Optional[int]) -> None:
        index = worker.index
        if self.workers.get(index) is worker:
            del self.workers[index]
        if worker.lastMetrics:
            self._retire(worker.lastMetrics)
        if self.stopping:
            log.info("worker {index} exited", index=index)
            return
        how = f"signal {sig}" if sig else f"status {code}"
        lived = self.reactor.seconds() - worker.startedAt
        delay = self._delays.get(index, RESTART_DELAY)
        if lived >= RESTART_RESET:
            delay = RESTART_DELAY
        self._delays[index] = min(delay * 2, RESTART_MAX)
        self.restarts += 1
        log.warn("worker {index} died ({how}); restarting in {delay}s", index=index, how=how, delay=delay)
        self._restarts[index] = self.reactor.callLater(delay, self._spawn, index)

    def _retire(self, dumped: List[Any]) -> None:
        from linkerpy.telemetry.metrics import MetricsTree

        if self._retired is None:
            self._retired = MetricsTree()
        self._retired.merge(dumped, gauges=False)

    def stopService(self) -> Deferred:
        """
        Drain: every worker gets SIGTERM (it drains for
        C{admin.shutdownGraceMs}), then exits; workers still running after
        that (plus a margin) are killed.
        """
        self.stopping = True
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        workers = list(self.workers.values())
        for worker in workers:
            worker.stop()
        grace = self.config.admin.shutdownGraceMs / 1000.0 + 10.0
        timer = self.reactor.callLater(grace, lambda: [w.kill() for w in workers])
        done = DeferredList([w.exited for w in workers], consumeErrors=True)

        def closed(_: Any) -> Any:
            if timer.active():
                timer.cancel()
            for group in self.sockets:
                for *_, sock in group:
                    sock.close()
            self.sockets = []
            return MultiService.stopService(self)

        return done.addBoth(closed)

    # -- metrics ------------------------------------------------------------------------

    def collectMetrics(self) -> Deferred:
        """
        Gather every worker's metrics and put their sum into the parent's
        metrics tree; fires when done (requests arriving meanwhile share
        the collection).
        """
        if self._collecting is not None:
            d: Deferred = Deferred()
            self._collecting.addBoth(lambda result: (d.callback(None), result)[1])
            return d
        workers = list(self.workers.values())
        asks = [w.requestMetrics() for w in workers]
        collecting = self._collecting = DeferredList(asks, consumeErrors=True)

        def merge(results: Any) -> None:
            self._collecting = None
            from linkerpy.telemetry.metrics import MetricsTree

            merged = MetricsTree()
            if self._retired is not None:
                merged.merge(self._retired.dump())
            for ok, dumped in results:
                if ok and dumped:
                    merged.merge(dumped)
            root = self.control.metrics
            root.children = merged.children
            for child in root.children.values():
                child.parent = root
            root.metric = merged.metric

        return collecting.addCallback(merge)


def _buildOrExit(build: Any, path: str) -> Any:
    """
    C{build()}, or print the configuration problem it found and exit 1 (as
    the single-process C{twistd linkerpy} does).
    """
    from linkerpy.config.errors import ConfigError

    try:
        return build()
    except ConfigError as e:
        if e.source is None:
            e.source = path
        sys.stderr.write(e.render() + "\n")
        sys.stderr.flush()
        raise SystemExit(1)


def _sourceRoot() -> str:
    """
    The directory holding the C{linkerpy} package (so workers import the
    same code as the parent).
    """
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- the worker ----------------------------------------------------------------------------


class ControlProtocol(Protocol):
    """
    A worker's end of the control pipes: commands from the parent on
    standard input, replies on file descriptor 3.
    """

    def __init__(self, linker: Any, reactor: Any) -> None:
        self.linker = linker
        self.reactor = reactor
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            if line == b"metrics":
                payload = json.dumps(self.linker.metrics.dump(), separators=(",", ":")).encode("utf-8")
                self.transport.write(b"M " + payload + b"\n")
            elif line == b"stop":
                self._stop()
        if len(self.buffer) > 4096:
            self.buffer = b""

    def connectionLost(self, reason: Any = None) -> None:
        # The parent is gone (or closed our input): stop.
        self._stop()

    def _stop(self) -> None:
        if self.reactor.running:
            self.reactor.stop()


def workerMain(argv: Optional[Sequence[str]] = None) -> None:
    """
    C{python -m linkerpy.workers --config PATH --index N --listeners JSON}:
    one worker process (started by L{WorkerPool}).
    """
    import argparse

    parser = argparse.ArgumentParser(prog="linkerpy.workers")
    parser.add_argument("--config", required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--listeners", default="[]")
    args = parser.parse_args(argv)

    from twisted.logger import globalLogBeginner, textFileLogObserver

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)], redirectStandardIO=False)

    from linkerpy.config.errors import ConfigError
    from linkerpy.config.model import loadLinkerConfig

    try:
        config = loadLinkerConfig(args.config)
    except ConfigError as e:
        sys.stderr.write(e.render() + "\n")
        raise SystemExit(1)
    listeners = json.loads(args.listeners)
    config = withPorts(config, {(i, j): port for i, j, ip, port, fd, family in listeners})
    reactor = prepareProcess(config)

    from linkerpy.net import inheritListeners

    inheritListeners({(ip, port): (fd, family) for i, j, ip, port, fd, family in listeners}, reactor)

    from linkerpy.linker import Linker
    from linkerpy.plugins.registry import defaultRegistry

    linker = _buildOrExit(lambda: Linker(config, defaultRegistry(), reactor, configPath=args.config), args.config)
    linker.adminService.disownServiceParent()

    from twisted.internet.stdio import StandardIO

    control = ControlProtocol(linker, reactor)

    def start() -> None:
        linker.startService()
        StandardIO(control, stdin=0, stdout=3, reactor=reactor)
        control.transport.write(b"ready\n")

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", linker.stopService)
    reactor.run()


if __name__ == "__main__":
    workerMain()
