"""
A bounded soak test of a real C{twistd linkerpy} router under mixed load
with faults injected at the origins.  It measures; it is not a unit test.

    python -m bench.soak                      # 5 minutes
    python -m bench.soak --duration 120 --json soak.json
    python -m bench.soak --python pypy3       # the router under another interpreter

One process runs the load generator and two origins (an C{io.l5d.fs} namer
lists both, so the router's load balancer and failure accrual see them as
one client); the router runs as a child C{twistd linkerpy}.  The load mixes
GET and POST, keep-alive and one-request connections, small and 1 MiB
request bodies, 2 MiB responses read slowly, request bodies trickled in,
and requests whose origin answers slowly, resets the connection (before the
head, or in the middle of the body), or answers 500 with and without
C{l5d-retryable}.  One origin "dies" periodically: it stops listening and
drops its connections for a few seconds.

It reports requests sent, answered as expected, errors by kind, requests
lost (no status line at all), non-idempotent requests the origins saw more
than once without having asked for a retry (must be 0), and the router's
RSS and open descriptors over time (they should stay flat).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet import defer, protocol, reactor
from twisted.internet.protocol import ClientCreator, Factory, Protocol
from twisted.internet.task import deferLater

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LISTEN = re.compile(r"(admin|router soak) listening on [0-9.]+:(\d+)")
_CL = re.compile(rb"\r\ncontent-length:[ \t]*([0-9]+)", re.I)


def sleep(seconds: float) -> defer.Deferred:
    return deferLater(reactor, seconds, lambda: None)


# -- origins ------------------------------------------------------------------------------


class OriginProtocol(Protocol):
    """
    Parses requests (the router sends well-formed ones) and answers by path;
    faults keyed by request id fire on the first attempt only, so a retry
    can succeed.
    """

    def connectionMade(self) -> None:
        self.buffer = b""
        self.busy = False
        self.factory.conns.add(self)

    def connectionLost(self, reason: Any) -> None:
        self.factory.conns.discard(self)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while not self.busy:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[: end + 4]
            if b"transfer-encoding: chunked" in head.lower():
                # (the load sends Content-Length bodies; chunked ones end at the last chunk)
                stop = self.buffer.find(b"0\r\n\r\n", end + 4)
                if stop < 0:
                    return
                rest = self.buffer[stop + 5 :]
            else:
                m = _CL.search(head)
                length = int(m.group(1)) if m else 0
                if len(self.buffer) < end + 4 + length:
                    return
                rest = self.buffer[end + 4 + length :]
            self.buffer = rest
            self.busy = True
            self.factory.origin.handle(self, head)

    def answer(self, status: int, body: bytes = b"ok", extra: bytes = b"") -> None:
        if self.transport is None:
            return
        self.transport.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n%s\r\n" % (status, len(body), extra) + body)
        self.busy = False
        if self.buffer:
            self.dataReceived(b"")


class Origin:
    """
    One origin endpoint that can die and come back on the same port.
    """

    def __init__(self, name: str, ledger: Dict[Tuple[bytes, bytes], int]) -> None:
        self.name = name
        self.ledger = ledger
        self.factory = Factory.forProtocol(OriginProtocol)
        self.factory.noisy = False
        self.factory.origin = self  # type: ignore[attr-defined]
        self.factory.conns = set()  # type: ignore[attr-defined]
        self.listener: Any = reactor.listenTCP(0, self.factory, backlog=1024, interface="127.0.0.1")
        self.port = self.listener.getHost().port
        self.deaths = 0

    def handle(self, proto: OriginProtocol, head: bytes) -> None:
        line = head.split(b"\r\n", 1)[0]
        method, target, _ = line.split(b" ", 2)
        m = re.search(rb"\r\nx-soak-id: *([^\r]+)", head, re.I)
        rid = m.group(1) if m else b"-"
        key = (method, rid)
        seen = self.ledger.get(key, 0)
        self.ledger[key] = seen + 1
        parts = target.split(b"/")
        kind = parts[1] if len(parts) > 1 else b""
        t = proto.transport
        if kind == b"slow":
            ms = int(parts[2]) if len(parts) > 2 else 300
            reactor.callLater(ms / 1000.0, proto.answer, 200, b"slow")
        elif kind == b"500":
            proto.answer(500 if not seen else 200, b"fault")
        elif kind == b"500r":
            proto.answer(500 if not seen else 200, b"fault", b"l5d-retryable: true\r\n" if not seen else b"")
        elif kind == b"reset" and not seen:
            t.abortConnection()
        elif kind == b"reset-mid":
            t.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            reactor.callLater(0.02, t.abortConnection)
        elif kind == b"big":
            size = int(parts[2]) * 1024 if len(parts) > 2 else 1 << 20
            t.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            block = b"b" * 65536
            left = size
            while left > 0:
                t.write(block[: min(left, len(block))])
                left -= len(block)
            proto.busy = False
        else:
            proto.answer(200, b"ok")

    def die(self) -> defer.Deferred:
        self.deaths += 1
        for proto in list(self.factory.conns):
            if proto.transport is not None:
                proto.transport.abortConnection()
        return defer.maybeDeferred(self.listener.stopListening)

    def revive(self) -> None:
        self.listener = reactor.listenTCP(self.port, self.factory, backlog=1024, interface="127.0.0.1")


# -- the router process ----------------------------------------------------------------------


class RouterProcess(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.ports: Dict[str, int] = {}
        self.ended: defer.Deferred = defer.Deferred()
        self.exit: Any = None

    def outReceived(self, data: bytes) -> None:
        self.output += data
        for m in _LISTEN.finditer(data.decode("utf-8", "replace")):
            self.ports.setdefault(m.group(1), int(m.group(2)))

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        self.exit = getattr(reason.value, "exitCode", None)
        if self.exit is None:
            self.exit = f"signal {getattr(reason.value, 'signal', '?')}"
        self.ended.callback(self.exit)


def startRouter(python: str, origins: List[Origin], directory: str) -> RouterProcess:
    disco = os.path.join(directory, "disco")
    os.makedirs(disco, exist_ok=True)
    with open(os.path.join(disco, "soak"), "w") as f:
        f.write("".join(f"127.0.0.1 {o.port}\n" for o in origins))
    config = {
        "admin": {"port": 0, "shutdownGraceMs": 10000},
        "namers": [{"kind": "io.l5d.fs", "rootDir": disco}],
        "routers": [
            {
                "protocol": "http",
                "label": "soak",
                "dtab": "/svc=>/#/io.l5d.fs",
                "servers": [{"port": 0}],
                "service": {"kind": "io.l5d.global", "totalTimeoutMs": 10000,
                            "responseClassifier": {"kind": "io.l5d.http.retryableRead5XX"}},
                "client": {"kind": "io.l5d.global", "clientSession": {"idleTimeMs": 2000},
                           "failureAccrual": {"kind": "io.l5d.consecutiveFailures", "failures": 5,
                                              "backoff": {"kind": "constant", "ms": 1000}}},
            }
        ],
    }
    path = os.path.join(directory, "soak.json")
    with open(path, "w") as f:
        json.dump(config, f)
    proc = RouterProcess()
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONUNBUFFERED="1")
    argv = [python, "-c", "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()",
            "-n", "--pidfile=", "--logfile=-", "linkerpy", "-c", path]
    proc.transport = reactor.spawnProcess(proc, python, argv, env=env, path=directory)
    return proc


def procStats(pid: int) -> Tuple[int, int]:
    """
    (RSS in KiB, open descriptors) of a process.
    """
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


# -- the client side ---------------------------------------------------------------------------


class Response:
    def __init__(self) -> None:
        self.status: Optional[int] = None
        self.complete = False
        self.bodyBytes = 0
        self.err = b""


class ClientConn(Protocol):
    """
    One client connection: a request at a time; parses the response
    (Content-Length, chunked or close-delimited) without keeping large bodies.
    """

    def connectionMade(self) -> None:
        self.buf = b""
        self.resp: Optional[Response] = None
        self.waiting: Optional[defer.Deferred] = None
        self.state = "head"
        self.left = 0
        self.chunked = False
        self.closeDelimited = False
        self.slowRead = False
        self.open = True

    def send(self, raw: bytes, slowRead: bool = False) -> defer.Deferred:
        self.resp = Response()
        self.state = "head"
        self.slowRead = slowRead
        self.waiting = defer.Deferred()
        if raw:
            self.transport.write(raw)
        return self.waiting

    def dataReceived(self, data: bytes) -> None:
        if self.slowRead:
            self.transport.pauseProducing()
            reactor.callLater(0.002, self._resume)
        self.buf += data
        self._parse()

    def _resume(self) -> None:
        if self.open:
            self.transport.resumeProducing()

    def _parse(self) -> None:
        resp = self.resp
        if resp is None:
            return
        if self.state == "head":
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end]
            self.buf = self.buf[end + 4 :]
            resp.status = int(head[9:12])
            lower = head.lower()
            m = re.search(rb"\r\nl5d-err: ([^\r]{0,60})", head, re.I)
            resp.err = m.group(1) if m else b""
            self.chunked = b"\r\ntransfer-encoding: chunked" in lower
            m = _CL.search(head)
            self.closeDelimited = not self.chunked and m is None
            self.left = int(m.group(1)) if m else 0
            self.state = "body"
        if self.state == "body":
            if self.chunked:
                while True:
                    if self.left > 0:
                        n = min(self.left, len(self.buf))
                        resp.bodyBytes += n
                        self.buf = self.buf[n:]
                        self.left -= n
                        if self.left:
                            return
                        self.left = -2  # CRLF after data
                    if self.left == -2:
                        if len(self.buf) < 2:
                            return
                        self.buf = self.buf[2:]
                        self.left = 0
                    eol = self.buf.find(b"\r\n")
                    if eol < 0:
                        return
                    size = int(self.buf[:eol].split(b";")[0], 16)
                    self.buf = self.buf[eol + 2 :]
                    if size == 0:
                        if not self.buf.startswith(b"\r\n"):
                            return
                        self.buf = self.buf[2:]
                        return self._done(True)
                    self.left = size
            elif self.closeDelimited:
                resp.bodyBytes += len(self.buf)
                self.buf = b""
            else:
                n = min(self.left, len(self.buf))
                resp.bodyBytes += n
                self.left -= n
                self.buf = self.buf[n:]
                if self.left == 0:
                    self._done(True)

    def _done(self, complete: bool) -> None:
        resp, d = self.resp, self.waiting
        self.resp = None
        self.waiting = None
        if resp is not None and d is not None:
            resp.complete = complete
            d.callback(resp)

    def connectionLost(self, reason: Any) -> None:
        self.open = False
        if self.resp is not None:
            self._done(self.closeDelimited and self.resp.status is not None)


#: (weight, name, method, path, body bytes, keep-alive, slow body, slow read, expected statuses)
SCENARIOS: List[Tuple[int, str, bytes, str, int, bool, bool, bool, Tuple[Any, ...]]] = [
    (30, "get-keepalive", b"GET", "/ok", 0, True, False, False, (200,)),
    (10, "get-new-connection", b"GET", "/ok", 0, False, False, False, (200,)),
    (14, "post-small", b"POST", "/ok", 1024, True, False, False, (200,)),
    (3, "post-1MiB", b"POST", "/ok", 1 << 20, False, False, False, (200,)),
    (4, "get-2MiB-slow-reader", b"GET", "/big/2048", 0, True, False, True, (200,)),
    (4, "post-trickled-body", b"POST", "/ok", 4096, True, True, False, (200,)),
    (6, "get-slow-origin", b"GET", "/slow/300", 0, True, False, False, (200,)),
    (5, "get-500-then-ok", b"GET", "/500", 0, True, False, False, (200,)),
    (4, "post-500", b"POST", "/500", 64, True, False, False, (500,)),
    (4, "post-500-retryable", b"POST", "/500r", 64, True, False, False, (200,)),
    (4, "get-reset-then-ok", b"GET", "/reset", 0, True, False, False, (200,)),
    (3, "post-reset", b"POST", "/reset", 64, True, False, False, (502,)),
    (3, "get-reset-mid-body", b"GET", "/reset-mid", 0, True, False, False, ("truncated",)),
]


class Load:
    def __init__(self, port: int, deadline: float, rng: random.Random, only: Optional[List[str]] = None) -> None:
        self.port = port
        self.deadline = deadline
        self.rng = rng
        self.counter = 0
        self.sent = 0
        self.outcomes: Dict[str, int] = {}
        self.byScenario: Dict[str, Dict[str, int]] = {}
        self.posts: Dict[bytes, str] = {}
        chosen = [s for s in SCENARIOS if not only or s[1] in only]
        total = sum(s[0] for s in chosen)
        self.table = [(s[0] / total, s) for s in chosen]

    def pick(self) -> Any:
        x = self.rng.random()
        for weight, scenario in self.table:
            x -= weight
            if x <= 0:
                return scenario
        return self.table[-1][1]

    def record(self, scenario: str, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        per = self.byScenario.setdefault(scenario, {})
        per[outcome] = per.get(outcome, 0) + 1

    @defer.inlineCallbacks
    def connect(self) -> Any:
        try:
            conn = yield ClientCreator(reactor, ClientConn).connectTCP("127.0.0.1", self.port, timeout=10)
        except Exception as e:  # noqa: BLE001 - reported as an outcome
            return e
        return conn

    @defer.inlineCallbacks
    def worker(self) -> Any:
        conn: Optional[ClientConn] = None
        while reactor.seconds() < self.deadline:
            _, name, method, path, size, keepAlive, slowBody, slowRead, expected = self.pick()
            self.counter += 1
            rid = b"%d" % self.counter
            if method == b"POST":
                self.posts[rid] = path
            if conn is None or not conn.open or not keepAlive:
                if conn is not None and conn.open:
                    conn.transport.loseConnection()
                conn = yield self.connect()
                if not isinstance(conn, ClientConn):
                    self.sent += 1
                    self.record(name, f"connect-failed:{type(conn).__name__}")
                    conn = None
                    yield sleep(0.05)
                    continue
            head = b"%s %s HTTP/1.1\r\nHost: soak\r\nx-soak-id: %s\r\n" % (method, path.encode(), rid)
            if not keepAlive:
                head += b"Connection: close\r\n"
            body = b"p" * size
            if method == b"POST":
                head += b"Content-Length: %d\r\n" % size
            self.sent += 1
            if slowBody:
                d = conn.send(head + b"\r\n" + body[:1000], slowRead)
                for i in range(1, 4):
                    yield sleep(0.1)
                    if conn.open:
                        conn.transport.write(body[i * 1000 : (i + 1) * 1000] if i < 3 else body[3000:])
            else:
                d = conn.send(head + b"\r\n" + body, slowRead)
            d.addTimeout(60, reactor)
            try:
                resp = yield d
            except defer.TimeoutError:
                self.record(name, "lost:timeout")
                conn.transport.abortConnection()
                conn = None
                continue
            if resp.status is None:
                self.record(name, "lost:no-status")
                conn = None
                continue
            if resp.complete and resp.status in expected:
                self.record(name, "ok")
            elif not resp.complete and "truncated" in expected and resp.status == 200:
                self.record(name, "ok")
            elif not resp.complete:
                self.record(name, f"truncated:{resp.status}")
                conn = None
            else:
                err = resp.err.decode("latin-1").split("%")[0].split(" (")[0][:40]
                self.record(name, f"status:{resp.status} {err}".strip())
            if conn is not None and (not conn.open or not keepAlive):
                conn = None
        if conn is not None and conn.open:
            conn.transport.loseConnection()


# -- the run -------------------------------------------------------------------------------------


@defer.inlineCallbacks
def soak(opts: argparse.Namespace) -> Any:
    directory = tempfile.mkdtemp(prefix="linkerpy-soak-")
    ledger: Dict[Tuple[bytes, bytes], int] = {}
    origins = [Origin("a", ledger), Origin("b", ledger)]
    router = startRouter(opts.python, origins, directory)

    def killRouter() -> None:
        if router.exit is None:
            try:
                router.transport.signalProcess("KILL")
            except Exception:  # noqa: BLE001
                pass

    reactor.addSystemEventTrigger("before", "shutdown", killRouter)
    started = time.time()
    while ("router soak" not in router.ports or "admin" not in router.ports) and router.exit is None:
        if time.time() - started > 120:
            raise RuntimeError("router did not start:\n" + router.output.decode(errors="replace")[-2000:])
        yield sleep(0.1)
    if router.exit is not None:
        raise RuntimeError("router exited:\n" + router.output.decode(errors="replace")[-2000:])
    pid = router.transport.pid
    port = router.ports["router soak"]
    log = lambda text: print(text, flush=True)  # noqa: E731
    log(f"router pid {pid} on 127.0.0.1:{port}; origins {[o.port for o in origins]}; {opts.duration:.0f} s, {opts.workers} workers")
    rest0 = procStats(pid)
    load = Load(port, reactor.seconds() + opts.duration, random.Random(opts.seed), opts.only)
    samples: List[Dict[str, Any]] = []
    workers = [load.worker() for _ in range(opts.workers)]
    begin = reactor.seconds()
    nextDeath = begin + 20
    while reactor.seconds() < load.deadline:
        yield sleep(1)
        now = reactor.seconds()
        if opts.deaths and now >= nextDeath and now + 10 < load.deadline:
            victim = origins[1]
            yield victim.die()
            log(f"  t={now - begin:5.0f}s origin {victim.name} died")
            yield sleep(4)
            victim.revive()
            log(f"  t={reactor.seconds() - begin:5.0f}s origin {victim.name} back")
            nextDeath = reactor.seconds() + 30
        if int(now - begin) % 10 == 0:
            rss, fds = procStats(pid)
            samples.append({"t": round(now - begin), "sent": load.sent, "rssKB": rss, "fds": fds})
            log(f"  t={now - begin:5.0f}s sent {load.sent:7d}  rss {rss / 1024:6.1f} MiB  fds {fds}")
    for w in workers:
        yield w
    # at rest: client connections closed, pooled upstream connections expire
    # (clientSession.idleTimeMs 2 s): descriptors should be back to the start
    restDeadline = reactor.seconds() + 20
    rest1 = procStats(pid)
    while reactor.seconds() < restDeadline and rest1[1] > rest0[1]:
        yield sleep(0.5)
        rest1 = procStats(pid)
    # graceful stop
    exitCode: Any = None
    try:
        from twisted.web.client import Agent

        agent = Agent(reactor)
        yield agent.request(b"POST", b"http://127.0.0.1:%d/admin/shutdown" % router.ports["admin"])
        exitCode = yield router.ended.addTimeout(60, reactor)
    except Exception as e:  # noqa: BLE001 - reported
        exitCode = f"shutdown failed: {e!r}"
    duplicates = sorted(rid.decode() for (method, rid), n in ledger.items()
                        if method == b"POST" and n > 1 and load.posts.get(rid) != "/500r")
    retried = [n for (method, rid), n in ledger.items() if method == b"POST" and load.posts.get(rid) == "/500r"]
    warm = [s for s in samples if s["t"] >= 20] or samples
    lost = sum(v for k, v in load.outcomes.items() if k.startswith("lost"))
    report = {
        "durationS": round(reactor.seconds() - begin, 1),
        "workers": opts.workers,
        "python": opts.python,
        "sent": load.sent,
        "ok": load.outcomes.get("ok", 0),
        "lost": lost,
        "outcomes": dict(sorted(load.outcomes.items(), key=lambda kv: -kv[1])),
        "byScenario": load.byScenario,
        "originRequests": sum(ledger.values()),
        "duplicatedNonIdempotent": len(duplicates),
        "duplicateIds": duplicates[:20],
        "retryablePostsMaxSends": max(retried) if retried else 0,
        "originDeaths": origins[1].deaths,
        "rssKB": {"start": rest0[0], "warm": warm[0]["rssKB"] if warm else None, "end": warm[-1]["rssKB"] if warm else None,
                  "max": max(s["rssKB"] for s in samples) if samples else None, "atRest": rest1[0]},
        "fds": {"start": rest0[1], "max": max(s["fds"] for s in samples) if samples else None, "atRest": rest1[1]},
        "samples": samples,
        "routerExit": exitCode,
    }
    log("")
    log(f"sent {report['sent']}, answered as expected {report['ok']}, lost {lost}, "
        f"duplicated non-idempotent {report['duplicatedNonIdempotent']}, router exit {exitCode}")
    mib = lambda kb: "-" if kb is None else f"{kb / 1024:.1f}"  # noqa: E731
    log(f"RSS start {mib(rest0[0])} MiB, after warm-up {mib(report['rssKB']['warm'])} MiB, "
        f"end {mib(report['rssKB']['end'])} MiB, max {mib(report['rssKB']['max'])} MiB; "
        f"fds start {rest0[1]}, max {report['fds']['max']}, at rest {rest1[1]}")
    log("outcomes:")
    for outcome, n in report["outcomes"].items():
        log(f"  {n:8d}  {outcome}")
    log("not ok, by scenario:")
    for scenario, per in sorted(load.byScenario.items()):
        bad = {k: v for k, v in per.items() if k != "ok"}
        if bad:
            log(f"  {scenario}: {bad} of {sum(per.values())}")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(report, f, indent=2)
    return report


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load (default 300)")
    parser.add_argument("--workers", type=int, default=24, help="concurrent client loops (default 24)")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the router (default: this one)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the load mix")
    parser.add_argument("--json", help="also write the report here")
    parser.add_argument("--only", type=lambda v: v.split(","), default=None,
                        help="comma-separated scenario names to run (default: the whole mix: "
                        + ", ".join(s[1] for s in SCENARIOS) + ")")
    parser.add_argument("--no-deaths", dest="deaths", action="store_false", help="keep both origins alive")
    opts = parser.parse_args(argv)
    unknown = set(opts.only or ()) - {s[1] for s in SCENARIOS}
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if opts.duration <= 0 or opts.duration > 3600:
        parser.error("--duration must be between 0 and 3600 seconds")
    result: Dict[str, Any] = {}

    def run() -> None:
        d = soak(opts)

        def done(r: Any) -> None:
            result["r"] = r
            reactor.stop()

        def failed(f: Any) -> None:
            result["error"] = f
            reactor.stop()

        d.addCallbacks(done, failed)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    reactor.callWhenRunning(run)
    reactor.run()
    if "error" in result:
        sys.stderr.write(result["error"].getTraceback())
        sys.stderr.flush()
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
