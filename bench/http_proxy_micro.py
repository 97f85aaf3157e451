#!/usr/bin/env python3
"""
Micro-benchmark of the HTTP/1.1 data-plane layer (not a test: it never fails
because something is slow).

  python bench/http_proxy_micro.py                # proxy figures, CPython (+ PyPy if found)
  python bench/http_proxy_micro.py parse          # head parser micro-benchmark
  python bench/http_proxy_micro.py --duration 20 --connections 50 --pypy /tmp/pypyvenv/bin/python

What it runs, each target pinned to CPU 0, and wrk and the nginx origin to
CPU 1 (when taskset exists):

  - C{origin}: nginx (one worker) answering every request with a 100-byte body;
  - C{bare}: a bare Twisted C{Protocol} answering a canned reply (the ceiling
    for anything built on Twisted);
  - C{minimal}: a small Protocol-level proxy with pooled upstream
    connections and no validation (the reference the layer is held to);
  - C{proxy}: linkerpy's server + pool + passthrough handler in front of the
    nginx origin (the layer this benchmark is about).

For each it reports requests/s from wrk and the target process's CPU time
per request (from C{/proc/<pid>/stat}), after a warm-up run (PyPy's JIT).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BODY = b"x" * 99 + b"\n"

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx.err;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ default_type text/plain; return 200 "{body}"; }}
    }}
}}
"""


# -- child processes ----------------------------------------------------------------


def minimalProxyFactory(reactor, originPort: int):  # type: ignore[no-untyped-def]
    """
    The reference point of the brief: a small Protocol-level proxy with
    pooled upstream connections and no validation at all (it forwards raw
    request bytes and relies on Content-Length responses).
    """
    from twisted.internet.protocol import ClientFactory, Factory, Protocol

    idle: list = []

    class Upstream(Protocol):
        downstream = None
        buf = b""
        need = -1

        def connectionMade(self) -> None:
            self.downstream._upstreamReady(self)

        def dataReceived(self, data: bytes) -> None:
            buf = self.buf + data
            down = self.downstream
            if self.need < 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    self.buf = buf
                    return
                i = buf.lower().find(b"content-length:", 0, end)
                length = int(buf[i + 15 : buf.find(b"\r\n", i)])
                self.need = end + 4 + length
            if len(buf) >= self.need:
                down.transport.write(buf[: self.need])
                self.buf = b""
                self.need = -1
                self.downstream = None
                idle.append(self)
                down._done()
            else:
                self.buf = buf

    class UpstreamFactory(ClientFactory):
        protocol = Upstream

        def __init__(self, down) -> None:  # type: ignore[no-untyped-def]
            self.down = down

        def buildProtocol(self, addr):  # type: ignore[no-untyped-def]
            p = Upstream()
            p.downstream = self.down
            return p

    class Downstream(Protocol):
        buf = b""
        busy = False

        def dataReceived(self, data: bytes) -> None:
            self.buf += data
            self._next()

        def _next(self) -> None:
            if self.busy:
                return
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self.pending = self.buf[: end + 4]
            self.buf = self.buf[end + 4 :]
            self.busy = True
            if idle:
                self._upstreamReady(idle.pop())
            else:
                reactor.connectTCP("127.0.0.1", originPort, UpstreamFactory(self))

        def _upstreamReady(self, up) -> None:  # type: ignore[no-untyped-def]
            up.downstream = self
            up.transport.write(self.pending)

        def _done(self) -> None:
            self.busy = False
            self._next()

    return Factory.forProtocol(Downstream)


def serve(kind: str, port: int, originPort: int, portFile: str) -> None:
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory, Protocol

    if kind == "bare":
        reply = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (
            len(BODY),
            BODY,
        )

        class Bare(Protocol):
            buf = b""

            def dataReceived(self, data: bytes) -> None:
                buf = self.buf + data
                n = buf.count(b"\r\n\r\n")
                if n:
                    self.transport.write(reply * n)
                    buf = buf[buf.rfind(b"\r\n\r\n") + 4 :]
                self.buf = buf

        factory = Factory.forProtocol(Bare)
    elif kind == "minimal":
        factory = minimalProxyFactory(reactor, originPort)
    else:
        from linkerpy.protocol.http.passthrough import PassthroughHandler
        from linkerpy.protocol.http.pool import HTTPConnectionPool
        from linkerpy.protocol.http.server import HTTPServerFactory

        pool = HTTPConnectionPool(reactor, "127.0.0.1", originPort)
        factory = HTTPServerFactory(PassthroughHandler(pool), clock=reactor)
    listening = reactor.listenTCP(port, factory, interface="127.0.0.1", backlog=1024)
    with open(portFile + ".tmp", "w") as f:
        f.write(str(listening.getHost().port))
    os.rename(portFile + ".tmp", portFile)
    reactor.run()


# -- parent ----------------------------------------------------------------------------


def cpuSeconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def pinned(cmd: List[str], cpu: Optional[int]) -> List[str]:
    if cpu is not None and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu)] + cmd
    return cmd


def waitForFile(path: str, proc: subprocess.Popen, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                return f.read().strip()
        if proc.poll() is not None:
            raise RuntimeError(f"child exited with {proc.returncode}")
        time.sleep(0.05)
    raise RuntimeError("child did not start in time")


def wrk(port: int, duration: float, connections: int, cpu: Optional[int]) -> float:
    out = subprocess.run(
        pinned(["wrk", "-t1", f"-c{connections}", f"-d{max(1, int(duration))}s", f"http://127.0.0.1:{port}/"], cpu),
        capture_output=True,
        text=True,
        timeout=duration + 60,
    ).stdout
    m = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    if "Non-2xx" in out or "Socket errors" in out:
        print("    wrk reported errors:", " | ".join(l.strip() for l in out.splitlines() if "rror" in l or "Non-2xx" in l))
    return float(m.group(1)) if m else 0.0


def measure(pid: int, port: int, args: argparse.Namespace) -> Tuple[float, float]:
    wrk(port, args.warmup, args.connections, 1)
    before = cpuSeconds(pid) if pid else 0.0
    rps = wrk(port, args.duration, args.connections, 1)
    after = cpuSeconds(pid) if pid else 0.0
    requests = rps * args.duration
    usPerRequest = (after - before) / requests * 1e6 if requests and pid else 0.0
    return rps, usPerRequest


def startChild(python: str, kind: str, originPort: int, tmp: str) -> Tuple[subprocess.Popen, int]:
    portFile = os.path.join(tmp, f"{kind}-{os.getpid()}-{time.monotonic_ns()}.port")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        pinned([python, os.path.abspath(__file__), "serve", kind, "--origin-port", str(originPort), "--port-file", portFile], 0),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(portFile + ".log", "w"),
        start_new_session=True,
    )
    return proc, int(waitForFile(portFile, proc))


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except Exception:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except Exception:
            pass


def run(args: argparse.Namespace) -> None:
    tmp = tempfile.mkdtemp(prefix="linkerpy-micro-")
    procs: List[subprocess.Popen] = []
    results: Dict[str, Tuple[float, float]] = {}
    try:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        originPort = s.getsockname()[1]
        s.close()
        conf = os.path.join(tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(dir=tmp, port=originPort, body=BODY.decode().strip() + "\\n"))
        nginx = subprocess.Popen(
            pinned(["nginx", "-c", conf, "-p", tmp], 1), stderr=subprocess.DEVNULL, start_new_session=True
        )
        procs.append(nginx)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", originPort), 1).close()
                break
            except OSError:
                time.sleep(0.05)
        nginxPid = int(waitForFile(os.path.join(tmp, "nginx.pid"), nginx))
        workers = subprocess.run(["pgrep", "-P", str(nginxPid)], capture_output=True, text=True).stdout.split()
        if not args.no_origin:
            results["origin (nginx)"] = measure(int(workers[0]) if workers else 0, originPort, args)
        interpreters = [("cpython", args.python)]
        if args.pypy and os.path.exists(args.pypy):
            interpreters.append(("pypy", args.pypy))
        for label, python in interpreters:
            for kind in args.kinds.split(","):
                proc, port = startChild(python, kind, originPort, tmp)
                procs.append(proc)
                try:
                    results[f"{kind} ({label})"] = measure(proc.pid, port, args)
                finally:
                    stop(proc)
                    procs.remove(proc)
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{args.connections} connections, {args.duration:g} s per run, target on CPU 0, wrk and origin on CPU 1")
    print(f"{'target':<24}{'req/s':>10}{'CPU us/req':>12}")
    for name, (rps, us) in results.items():
        print(f"{name:<24}{rps:>10.0f}{us:>12.1f}")


def parseBench(args: argparse.Namespace) -> None:
    sys.path.insert(0, ROOT)
    from typing import Any

    from linkerpy.protocol.http.parser import parseRequestHead, parseResponseHead

    req = (
        b"GET /api/v1/items?id=12345&x=y HTTP/1.1\r\nHost: example.com\r\nUser-Agent: wrk/4.1\r\n"
        b"Accept: */*\r\nAccept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n"
        b"X-Request-Id: 0123456789abcdef\r\n\r\n"
    )
    resp = (
        b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 27 Nov 2026 04:15:58 GMT\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 100\r\nConnection: keep-alive\r\n\r\n"
    )
    n = args.iterations
    end = req.find(b"\r\n\r\n")
    rend = resp.find(b"\r\n\r\n")
    def best(fn: Any) -> float:
        """
        Best of three runs, in CPU seconds (the machine is shared).
        """
        times = []
        for _ in range(3):
            start = time.process_time()
            for _ in range(n):
                fn()
            times.append(time.process_time() - start)
        return min(times)

    def splitOnly() -> None:
        block = req[req.find(b"\r\n") + 2 : end]
        req[: req.find(b"\r\n")].split(b" ")
        [line.partition(b":") for line in block.split(b"\r\n")]

    rows = []
    for _ in range(2):  # second round after warm-up (PyPy JIT)
        rows = [
            ("request head, strict pure-Python", best(lambda: parseRequestHead(req, end))),
            ("response head, strict pure-Python", best(lambda: parseResponseHead(resp, rend, b"GET"))),
            ("request head, pure split only, no checks", best(splitOnly)),
        ]
        try:
            import httptools
        except ImportError:
            continue

        class Sink:
            def __init__(self) -> None:
                self.headers: list = []

            def on_url(self, url: bytes) -> None:
                self.url = url

            def on_header(self, name: bytes, value: bytes) -> None:
                self.headers.append((name, value))

        sink = Sink()
        parser = httptools.HttpRequestParser(sink)

        def viaHttptools() -> None:
            sink.headers = []
            parser.feed_data(req)

        rows.append(("request head, httptools, no checks", best(viaHttptools)))
    print(f"{sys.implementation.name} {sys.version.split()[0]}")
    for name, seconds in rows:
        print(f"  {name:<42}{seconds / n * 1e6:8.2f} us")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", nargs="?", default="run", choices=["run", "parse", "serve"])
    p.add_argument("kind", nargs="?", default="proxy", choices=["bare", "minimal", "proxy"])
    p.add_argument("--kinds", default="bare,minimal,proxy", help="targets to run, comma-separated")
    p.add_argument("--no-origin", action="store_true", help="do not measure nginx directly")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--pypy", default="/tmp/pypyvenv/bin/python")
    p.add_argument("--iterations", type=int, default=200000)
    p.add_argument("--origin-port", type=int, default=0)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file", default="")
    args = p.parse_args()
    if args.mode == "serve":
        serve(args.kind, args.port, args.origin_port, args.port_file)
    elif args.mode == "parse":
        parseBench(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
