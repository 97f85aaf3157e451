# -*- test-case-name: tests.test_workers -*-
"""
Tests for L{linkerpy.workers}: C{twistd linkerpy --workers N} end to end
(shared ports, aggregated metrics, restarts, graceful shutdown), and the
parts it is built from.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import Any, Dict, List

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from linkerpy.config.model import parseLinkerConfig
from linkerpy.process import usesTLS
from linkerpy.workers import openListeners, serverRequests, serversOf, withPorts
from tests.support import TwistdProcess, httpGet, startOrigin, waitForDeferred, waitUntil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def routerConfig(originPort: int, **extra: Any) -> Dict[str, Any]:
    config: Dict[str, Any] = {
        "admin": {"port": 0},
        "telemetry": [{"kind": "io.l5d.prometheus"}],
        "routers": [{"protocol": "http", "dtab": f"/svc=>/$/inet/127.0.0.1/{originPort}", "servers": [{"port": 0}]}],
    }
    config.update(extra)
    return config


@defer.inlineCallbacks
def getJSON(proc: TwistdProcess, path: str) -> Any:
    response, body = yield httpGet(proc.url("admin", path))
    if response.code != 200:
        raise AssertionError(f"{path}: {response.code} {body!r}")
    return json.loads(body.decode("utf-8"))


@defer.inlineCallbacks
def readyWorkers(proc: TwistdProcess, count: int) -> Any:
    """
    Poll C{/admin/workers.json} until C{count} workers are ready; fire with it.
    """
    state: Dict[str, Any] = {}

    @defer.inlineCallbacks
    def check() -> Any:
        state["workers"] = yield getJSON(proc, "/admin/workers.json")
        return sum(1 for w in state["workers"]["workers"] if w["ready"]) == count

    yield waitForDeferred(check, 60.0, f"{count} ready workers")
    return state["workers"]


class WorkersEndToEndTests(TestCase):
    """
    C{twistd linkerpy --workers 2} with real sockets.
    """

    timeout = 240

    @defer.inlineCallbacks
    def test_trafficMetricsAndShutdown(self) -> Any:
        """
        Two workers share the router's port (port 0 resolved once), both
        serve connections, the parent's admin shows counters equal to the
        number of requests (JSON and Prometheus), and POST /admin/shutdown
        stops the workers and the parent cleanly.
        """
        origin = startOrigin(self)
        proc = TwistdProcess(routerConfig(origin.portNumber), args=("--workers", "2"))
        self.addCleanup(proc.stop)
        yield proc.start(waitFor=("admin", "router http"))
        self.assertEqual(len(proc.routerPorts["http"]), 1)
        port = proc.routerPort("http")
        workers = yield readyWorkers(proc, 2)
        pids = [w["pid"] for w in workers["workers"]]
        self.assertEqual(len(set(pids)), 2)
        requests = 120
        for i in range(requests):
            response, body = yield httpGet(f"http://127.0.0.1:{port}/n{i}", headers={"Host": "web"})
            self.assertEqual((response.code, body), (200, b"origin"))
        self.assertEqual(len(origin.requests), requests)
        server = f"rt/http/server/127.0.0.1/{port}/requests"

        @defer.inlineCallbacks
        def counted() -> Any:
            metrics = yield getJSON(proc, "/admin/metrics.json")
            return metrics.get(server) == requests

        yield waitForDeferred(counted, 30.0, "aggregated counters")
        metrics = yield getJSON(proc, "/admin/metrics.json")
        self.assertEqual(metrics["rt/http/service/svc/web/requests"], requests)
        self.assertEqual(metrics["rt/http/service/svc/web/success"], requests)
        self.assertEqual(metrics["rt/http/client/$/inet/127.0.0.1/%d/requests" % origin.portNumber], requests)
        self.assertEqual(metrics[f"rt/http/server/127.0.0.1/{port}/request_latency_ms.count"], requests)
        response, text = yield httpGet(proc.url("admin", "/admin/metrics/prometheus"))
        self.assertIn(
            f'rt:server:requests{{rt="http",server="127.0.0.1/{port}"}} {float(requests)}'.encode(), text
        )
        workers = yield getJSON(proc, "/admin/workers.json")
        perWorker = [w["requests"] for w in workers["workers"]]
        self.assertEqual(sum(perWorker), requests)
        # 120 new connections hashed over two sockets: both take some.
        self.assertTrue(all(n > 0 for n in perWorker), perWorker)
        response, _ = yield httpGet(proc.url("admin", "/admin/shutdown"), method="POST")
        self.assertEqual(response.code, 200)
        code = yield proc.ended
        self.assertEqual(code, 0)
        yield waitUntil(lambda: not any(alive(pid) for pid in pids), 30.0, "workers to exit")
        self.assertIn(b"worker 0 exited", proc.output)

    @defer.inlineCallbacks
    def test_restartAndSigterm(self) -> Any:
        """
        A worker that dies is restarted (traffic keeps flowing, its counters
        are kept in the totals), and SIGTERM stops the workers and the parent.
        """
        origin = startOrigin(self)
        proc = TwistdProcess(routerConfig(origin.portNumber), args=("--workers", "2"))
        self.addCleanup(proc.stop)
        yield proc.start(waitFor=("admin", "router http"))
        port = proc.routerPort("http")
        workers = yield readyWorkers(proc, 2)
        for i in range(40):
            response, _ = yield httpGet(f"http://127.0.0.1:{port}/", headers={"Host": "web"})
            self.assertEqual(response.code, 200)
        before = yield getJSON(proc, "/admin/metrics.json")
        server = f"rt/http/server/127.0.0.1/{port}/requests"
        self.assertEqual(before[server], 40)
        victim = workers["workers"][0]
        os.kill(victim["pid"], 9)

        @defer.inlineCallbacks
        def replaced() -> Any:
            state = yield getJSON(proc, "/admin/workers.json")
            byIndex = {w["index"]: w for w in state["workers"]}
            fresh = byIndex.get(victim["index"])
            return state["restarts"] == 1 and fresh is not None and fresh["ready"] and fresh["pid"] != victim["pid"]

        yield waitForDeferred(replaced, 60.0, "the worker to be restarted")
        # The log line travels through a pipe, apart from the admin's answer.
        yield waitUntil(lambda: b"died (signal 9); restarting" in proc.output, 30.0, "the restart to be logged")
        for i in range(40):
            response, _ = yield httpGet(f"http://127.0.0.1:{port}/", headers={"Host": "web"})
            self.assertEqual(response.code, 200)
        after = yield getJSON(proc, "/admin/metrics.json")
        self.assertEqual(after[server], 80)
        state = yield getJSON(proc, "/admin/workers.json")
        pids = [w["pid"] for w in state["workers"]]
        code = yield proc.stop()
        # SIGTERM drains the workers and the parent exits 0.
        self.assertEqual(code, 0)
        self.assertIn(b"Server Shut Down", proc.output)
        self.assertIn(b"worker 0 exited", proc.output)
        self.assertIn(b"worker 1 exited", proc.output)
        yield waitUntil(lambda: not any(alive(pid) for pid in pids), 30.0, "workers to exit")


def parsed(raw: Dict[str, Any]) -> Any:
    return parseLinkerConfig(raw)


class ListenerTests(SynchronousTestCase):
    """
    L{openListeners}, L{withPorts}, L{serversOf}.
    """

    raw = {
        "admin": {"port": 0},
        "routers": [
            {"protocol": "http", "label": "a", "dtab": "/svc=>/$/inet/127.0.0.1/1", "servers": [{"port": 0}, {"port": 0}]},
            {"protocol": "tcp", "label": "b", "dtab": "/svc=>/$/inet/127.0.0.1/1", "servers": [{"port": 0, "dstName": "/svc/x"}]},
        ],
    }

    def test_portZeroSharedByWorkers(self) -> None:
        """
        Each server gets one port, bound once per worker with SO_REUSEPORT.
        """
        config = parsed(self.raw)
        ports, perWorker = openListeners(config, 3)
        self.addCleanup(lambda: [s.close() for group in perWorker for *_, s in group])
        self.assertEqual(sorted(ports), [(0, 0), (0, 1), (1, 0)])
        self.assertEqual(len(set(ports.values())), 3)
        self.assertEqual(len(perWorker), 3)
        for group in perWorker:
            self.assertEqual([(i, j, port) for i, j, _, port, _ in group], [(i, j, ports[(i, j)]) for i, j in sorted(ports)])
            for *_, sock in group:
                self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT), 1)
                self.assertEqual(sock.getsockname()[1], ports[(0, 0)] if _[:2] == (0, 0) else sock.getsockname()[1])
        # Every worker's socket accepts connections.
        for group in perWorker:
            _, _, ip, port, sock = group[0]
            client = socket.create_connection((ip, port), timeout=10)
            client.close()

    def test_bindFailureClosesSockets(self) -> None:
        """
        An address that cannot be bound raises, leaving nothing open.
        """
        blocker = socket.socket()
        self.addCleanup(blocker.close)
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        raw = json.loads(json.dumps(self.raw))
        raw["routers"][1]["servers"][0]["port"] = blocker.getsockname()[1]
        self.assertRaises(OSError, openListeners, parsed(raw), 2)

    def test_withPorts(self) -> None:
        """
        L{withPorts} sets the bound ports and one worker, keeping the rest.
        """
        raw = dict(self.raw, workers=4)
        config = parsed(raw)
        changed = withPorts(config, {(0, 1): 4141, (1, 0): 4242})
        self.assertEqual(changed.workers, 1)
        self.assertEqual([s.port for _, _, s in serversOf(changed)], [0, 4141, 4242])
        self.assertEqual(changed.routers[1].config.servers[0].dstName, config.routers[1].config.servers[0].dstName)
        self.assertEqual(changed.routers[0].config.dtab, config.routers[0].config.dtab)

    def test_serverRequests(self) -> None:
        """
        L{serverRequests} adds up the servers' request counters of a dump.
        """
        dumped = [
            [["rt", "http", "server", "127.0.0.1/1", "requests"], "counter", 3],
            [["rt", "http", "server", "127.0.0.1/2", "requests"], "counter", 4],
            [["rt", "http", "service", "svc/a", "requests"], "counter", 100],
            [["rt", "http", "server", "127.0.0.1/1", "success"], "counter", 3],
        ]
        self.assertEqual(serverRequests(dumped), 7)


class ProcessSetupTests(SynchronousTestCase):
    """
    L{usesTLS} and the start-up import trimming of L{prepareProcess}.
    """

    def test_usesTLS(self) -> None:
        """
        A C{tls} setting anywhere, or an h2 router, counts as TLS.
        """
        plain = {"routers": [{"protocol": "http", "servers": [{"port": 0}]}]}
        self.assertFalse(usesTLS(parsed(plain)))
        origination = {"routers": [{"protocol": "http", "client": {"kind": "io.l5d.global", "tls": {"commonName": "x"}}, "servers": [{"port": 0}]}]}
        self.assertTrue(usesTLS(parsed(origination)))
        h2 = {"routers": [{"protocol": "h2", "servers": [{"port": 0}]}]}
        self.assertTrue(usesTLS(parsed(h2)))

    def test_importsTrimmed(self) -> None:
        """
        Without TLS in the configuration, the reactor and the admin server
        are imported without pyOpenSSL and h2; both still load on demand
        afterwards, and TLS then works.
        """
        script = (
            "import sys, json\n"
            "from linkerpy.config.model import parseLinkerConfig\n"
            "from linkerpy.process import prepareProcess\n"
            "c = parseLinkerConfig({'routers': [{'protocol': 'http', 'servers': [{'port': 0}]}]})\n"
            "reactor = prepareProcess(c)\n"
            "import linkerpy.linker\n"
            "before = sorted(m for m in ('OpenSSL', 'h2', 'cryptography') if m in sys.modules)\n"
            "from twisted.protocols.tls import TLSMemoryBIOFactory\n"
            "import linkerpy.tls.client\n"
            "print(json.dumps([before, 'OpenSSL' in sys.modules, type(reactor).__name__, hasattr(reactor, '_linkerpyPending')]))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=ROOT),
        )
        self.assertEqual(out.returncode, 0, out.stderr)
        before, after, reactorType, tuned = json.loads(out.stdout.strip().splitlines()[-1])
        self.assertEqual(before, [])
        self.assertTrue(after)
        self.assertEqual(reactorType, "EPollReactor")
        self.assertTrue(tuned)

    def test_tlsConfigImportsNormally(self) -> None:
        """
        With TLS configured, nothing is hidden.
        """
        script = (
            "import sys\n"
            "from linkerpy.config.model import parseLinkerConfig\n"
            "from linkerpy.process import prepareProcess\n"
            "c = parseLinkerConfig({'routers': [{'protocol': 'h2', 'servers': [{'port': 0}]}]})\n"
            "prepareProcess(c)\n"
            "from twisted.internet import tcp\n"
            "print(tcp._TLSConnectionMixin.__module__)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=ROOT),
        )
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.strip().splitlines()[-1], "twisted.internet._newtls")


__all__: List[str] = []
