# -*- test-case-name: tests.test_perf_fastpath -*-
"""
Tests for L{linkerpy.protocol.http.fastpath}: when the fused path is used,
and that it behaves exactly like the composed stack (same responses, same
counters), over real sockets.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Tuple

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from linkerpy.errors import NoBrokersAvailable
from linkerpy.protocol.http.adapter import HttpProtocolAdapter
from linkerpy.protocol.http.fastpath import FusedClient, FusedService
from linkerpy.protocol.http.pool import HTTPConnectionPool
from tests.support import httpGet, rawRequest, routerPort, startLinker, startOrigin


def config(dtab: str, **router: Any) -> Dict[str, Any]:
    r: Dict[str, Any] = {"protocol": "http", "dtab": dtab, "servers": [{"port": 0}]}
    r.update(router)
    return {"admin": {"port": 0}, "routers": [r]}


def counters(linker: Any) -> Dict[str, float]:
    """
    Every counter and histogram count (latency values and gauges vary).
    """
    out = {}
    for key, value in linker.metrics.flatten().items():
        key = re.sub(r"/127\.0\.0\.1/[0-9]+", "/127.0.0.1/P", key)
        if "/server/" in key:
            # The server's address differs between two linkers.
            key = key.split("/server/")[0] + "/server/*/" + key.split("/server/")[1].split("/", 2)[-1]
        if "." in key.rsplit("/", 1)[-1]:
            if key.endswith(".count"):
                out[key] = value
            continue
        out[key] = value
    for key in list(out):
        if key.endswith(("/connections", "/idle", "/waiters", "/endpoints", "/budget", "/pending")):
            del out[key]
    return out


def closedPort() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class FusedSelectionTests(TestCase):
    """
    Which names get the fused path.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_defaultStackIsFused(self) -> Any:
        """
        With the default policy (retries and requeues only) both the route
        and the client are fused, and a request goes through the pool's
        callback interface (no Deferred from the pool).
        """
        origin = startOrigin(self)
        linker = startLinker(self, config(f"/svc=>/$/inet/127.0.0.1/{origin.portNumber}"))
        used: List[str] = []
        send, request = HTTPConnectionPool.send, HTTPConnectionPool.request
        self.patch(HTTPConnectionPool, "send", lambda *a, **k: (used.append("send"), send(*a, **k))[1])
        self.patch(HTTPConnectionPool, "request", lambda *a, **k: (used.append("request"), request(*a, **k))[1])
        response, body = yield httpGet(f"http://127.0.0.1:{routerPort(linker)}/", headers={"Host": "web"})
        self.assertEqual((response.code, body), (200, b"origin"))
        core = linker.routers[0].core
        route = list(core.routes.values())[0]
        client = list(core.clients.values())[0]
        self.assertIsInstance(route.fast, FusedService)
        self.assertIsInstance(client.fast, FusedClient)
        self.assertEqual(used, ["send"])

    @defer.inlineCallbacks
    def test_timeoutsUseComposedStack(self) -> Any:
        """
        A total or attempt timeout (or a server timeout) keeps the composed
        stack for that scope.
        """
        origin = startOrigin(self)
        dtab = f"/svc=>/$/inet/127.0.0.1/{origin.portNumber}"
        linker = startLinker(
            self,
            config(
                dtab,
                service={"kind": "io.l5d.global", "totalTimeoutMs": 5000},
                client={"kind": "io.l5d.global", "requestAttemptTimeoutMs": 5000},
            ),
        )
        response, _ = yield httpGet(f"http://127.0.0.1:{routerPort(linker)}/", headers={"Host": "web"})
        self.assertEqual(response.code, 200)
        core = linker.routers[0].core
        self.assertIsNone(list(core.routes.values())[0].fast)
        self.assertIsNone(list(core.clients.values())[0].fast)
        linker2 = startLinker(self, config(dtab, servers=[{"port": 0, "timeoutMs": 5000}]))
        used: List[str] = []
        request = HTTPConnectionPool.request
        self.patch(HTTPConnectionPool, "request", lambda *a, **k: (used.append("request"), request(*a, **k))[1])
        response, _ = yield httpGet(f"http://127.0.0.1:{routerPort(linker2)}/", headers={"Host": "web"})
        self.assertEqual(response.code, 200)
        self.assertEqual(used, ["request"])


class ParityTests(TestCase):
    """
    The same traffic through the fused path and through the composed stack
    gives the same responses and the same counters.
    """

    timeout = 120

    @defer.inlineCallbacks
    def both(self, scenario: Any) -> Any:
        """
        Run C{scenario(fused: bool)} (firing with C{(linker, responses)})
        both ways and compare.
        """
        fused = yield scenario(True)
        self.patch(HttpProtocolAdapter, "fuseService", lambda self, route, modules: None)
        self.patch(HttpProtocolAdapter, "fuseClient", lambda self, client, modules: None)
        composed = yield scenario(False)
        self.assertEqual(fused[1], composed[1])
        self.assertEqual(counters(fused[0]), counters(composed[0]))
        return fused

    @defer.inlineCallbacks
    def test_retries(self) -> Any:
        """
        Retryable 500s are retried (budget, counters, l5d-success-class),
        non-retryable methods are not, and every request ends up answered.
        """

        @defer.inlineCallbacks
        def scenario(fused: bool) -> Any:
            origin = startOrigin(self)
            origin.script = [(500, b"e", {}), (200, b"ok", {}), (500, b"e", {}), (500, b"e", {}), (503, b"e", {}),
                             (200, b"ok", {}), (500, b"e", {}), (200, b"ok", {})] * 3
            linker = startLinker(
                self,
                config(
                    f"/svc=>/$/inet/127.0.0.1/{origin.portNumber}",
                    service={"kind": "io.l5d.global", "responseClassifier": {"kind": "io.l5d.http.retryableRead5XX"},
                             "retries": {"budget": {"minRetriesPerSec": 0, "percentCanRetry": 0.25, "ttlSecs": 10}}},
                ),
            )
            port = routerPort(linker)
            responses: List[Tuple[Any, ...]] = []
            for i in range(12):
                method = "GET" if i % 3 else "POST"
                response, body = yield httpGet(f"http://127.0.0.1:{port}/{i}", headers={"Host": "web"}, method=method)
                responses.append((method, response.code, body, response.headers.getRawHeaders("l5d-success-class")))
            return linker, responses

        linker, responses = yield self.both(scenario)
        metrics = counters(linker)
        self.assertGreater(metrics["rt/http/service/svc/web/retries/total"], 0)
        self.assertGreater(metrics["rt/http/service/svc/web/retries/budget_exhausted"], 0)
        self.assertIn(("POST", 500, b"e", ["0.0"]), responses)

    @defer.inlineCallbacks
    def test_requeuesAndAccrual(self) -> Any:
        """
        Connection failures are requeued (up to the per-request limit) and
        the endpoint is then marked dead: 502s, then "no endpoints" 503s.
        """

        @defer.inlineCallbacks
        def scenario(fused: bool) -> Any:
            linker = startLinker(self, config(f"/svc=>/$/inet/127.0.0.1/{closedPort()}"))
            port = routerPort(linker)
            responses = []
            for i in range(4):
                response, body = yield httpGet(f"http://127.0.0.1:{port}/", headers={"Host": "web"})
                responses.append((response.code, bool(response.headers.getRawHeaders("l5d-err"))))
            return linker, responses

        linker, responses = yield self.both(scenario)
        self.assertEqual(responses[0], (502, True))
        metrics = counters(linker)
        self.assertGreater(metrics["rt/http/client/$/inet/127.0.0.1/P/retries/requeues"], 0)

    @defer.inlineCallbacks
    def test_unboundAndBodies(self) -> Any:
        """
        Unbound names (neg), POST bodies and chunked responses behave the same.
        """

        @defer.inlineCallbacks
        def scenario(fused: bool) -> Any:
            origin = startOrigin(self)
            linker = startLinker(self, config(f"/svc/web=>/$/inet/127.0.0.1/{origin.portNumber}"))
            port = routerPort(linker)
            responses = []
            response, body = yield httpGet(f"http://127.0.0.1:{port}/", headers={"Host": "nope"})
            responses.append((response.code, body.split(b"\n")[0][:40]))
            response, body = yield httpGet(f"http://127.0.0.1:{port}/", headers={"Host": "web"}, method="POST", data=b"x" * 5000)
            responses.append((response.code, body, origin.requests[-1].body == b"x" * 5000))
            raw = yield rawRequest(port, b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
            responses.append(raw.split(b"\r\n")[0])
            return linker, responses

        _, responses = yield self.both(scenario)
        self.assertEqual(responses[0][0], NoBrokersAvailable("/svc/nope", "", "", "").status)
        self.assertEqual(responses[1], (200, b"origin", True))
        self.assertEqual(responses[2], b"HTTP/1.1 200 OK")
