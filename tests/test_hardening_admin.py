# -*- test-case-name: tests.test_hardening_admin -*-
"""
Admin and control API safety: the admin server binds loopback by default,
mutating endpoints need POST and (when configured) a bearer token, bodies
are size-limited, and huge or deeply nested dtab/path inputs to
C{/delegator.json} and namerd's API get a 4xx (or a short 5xx message),
never a traceback, and never take the server down.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, List, Tuple
from urllib.parse import quote

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.support import TwistdProcess, adminPort, httpGet, startLinker
from tests.test_hardening_origins import TIMEOUT, routerConfig, sendRaw, startFaultOrigin, statusOf

TOKEN = "hardening-token-0123456789"

#: Markers of a leaked Python traceback or exception repr.
LEAKS = (b"Traceback", b'File "', b"RecursionError", b"<twisted.python.failure", b"Exception:")


def nasty() -> List[Tuple[str, str, str]]:
    """
    (name, dtab, path) inputs meant to hurt a dtab/path parser or the
    delegation (depth, size, loops, fan-out, odd characters).
    """
    chain = ";".join(f"/n{i}=>/n{i + 1}" for i in range(3000))
    return [
        ("deep parentheses", "/svc=>" + "(" * 5000 + "/a" + ")" * 5000, "/svc/a"),
        ("deep path", "/svc=>/$/inet/127.0.0.1/1", "/" + "/".join(["x"] * 20000)),
        ("long segment", "/svc=>/a", "/svc/" + "x" * 60000),
        ("delegation chain", chain, "/n0"),
        ("self loop", "/a=>/a", "/a"),
        ("two-step loop", "/a=>/b;/b=>/a", "/a"),
        ("growing loop", "/a=>/a/a", "/a"),
        ("alternation fan-out", ";".join(f"/n{i}=>/n{i + 1}|/n{i + 1}" for i in range(40)), "/n0"),
        ("union fan-out", ";".join(f"/n{i}=>/n{i + 1}&/n{i + 1}" for i in range(40)), "/n0"),
        ("huge weights", "/a=>1e308*/b & 1e308*/c", "/a"),
        ("negative weight", "/a=>-1*/b", "/a"),
        ("NUL and controls", "/a=>/b\x00\x01", "/a\x00"),
        ("unicode", "/\u00e9=>/\U0001f600", "/\u00e9"),
        ("unbalanced", "/a=>((/b", "/a"),
        ("empty", "", ""),
        ("only separators", ";;;;=>=>", "//"),
        ("many dentries", ";".join(f"/p{i}=>/q{i}" for i in range(4000)), "/p3999"),
        ("system namer abuse", "/a=>/$/inet/999.999.999.999/99999999", "/a"),
        ("nil/fail", "/a=>/$/nil;/b=>/$/fail", "/a"),
    ]


def leaked(body: bytes) -> bool:
    return any(marker in body for marker in LEAKS)


class AdminBindingTests(TestCase):
    """
    Where the admin server listens.
    """

    @inlineCallbacks
    def test_loopbackByDefault(self) -> Any:
        """
        Without admin.ip the admin server and the router's servers listen
        on 127.0.0.1 only.
        """
        origin = startFaultOrigin(self)
        linker = startLinker(self, routerConfig(origin.portNumber))
        self.assertEqual(linker.adminService.port.getHost().host, "127.0.0.1")
        self.assertEqual(linker.routers[0].service().ports[0].getHost().host, "127.0.0.1")
        response, body = yield httpGet(f"http://127.0.0.1:{adminPort(linker)}/admin/ping")
        self.assertEqual(body, b"pong")


class AdminControlTests(TestCase):
    """
    Mutating endpoints: method, token, category switches, body size.
    """

    timeout = 300

    def start(self, **admin: Any) -> Any:
        origin = startFaultOrigin(self)
        linker = startLinker(self, routerConfig(origin.portNumber, admin=admin))
        # A shutdown that got through would stop this test's reactor: record
        # it instead (the real one is exercised on twistd processes).
        self.shutdowns: List[int] = []
        resource = linker.admin.exact.get("/admin/shutdown")
        resource.shutdown = lambda: self.shutdowns.append(1)
        return linker, f"http://127.0.0.1:{adminPort(linker)}"

    @inlineCallbacks
    def test_shutdownNeedsPost(self) -> Any:
        """
        GET, PUT and DELETE of /admin/shutdown get 405 with Allow: POST.
        """
        linker, base = self.start()
        for method in ("GET", "PUT", "DELETE", "PATCH"):
            response, _ = yield httpGet(base + "/admin/shutdown", method=method)
            self.assertEqual(response.code, 405, method)
            self.assertEqual(response.headers.getRawHeaders("allow"), ["POST"], method)
        self.assertEqual(self.shutdowns, [])

    @inlineCallbacks
    def test_headOfPostOnlyEndpoint(self) -> Any:
        """
        HEAD /admin/shutdown gets 405 like the other methods.
        """
        linker, base = self.start()
        response, _ = yield httpGet(base + "/admin/shutdown", method="HEAD")
        self.flushLoggedErrors(AttributeError)
        self.assertEqual(self.shutdowns, [])
        self.assertEqual(response.code, 405)

    @inlineCallbacks
    def test_tokenRequired(self) -> Any:
        """
        With admin.auth, POSTs without the exact bearer token get 401 with
        WWW-Authenticate and change nothing; reads stay open.
        """
        linker, base = self.start(auth={"token": TOKEN})
        wrong = [
            {},
            {"Authorization": "Bearer wrong-token-0123456789"},
            {"Authorization": f"bearer {TOKEN}"},
            {"Authorization": f"Bearer {TOKEN[:-1]}"},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": TOKEN},
        ]
        for headers in wrong:
            response, _ = yield httpGet(base + "/admin/shutdown", method="POST", headers=headers)
            self.assertEqual(response.code, 401, headers)
            self.assertTrue(response.headers.getRawHeaders("www-authenticate"))
        response, _ = yield httpGet(
            base + "/delegator.json", method="POST", data=b"{}", headers={"Content-Type": "application/json"}
        )
        self.assertEqual(response.code, 401)
        self.assertEqual(self.shutdowns, [])
        response, body = yield httpGet(base + "/admin/ping")
        self.assertEqual((response.code, body), (200, b"pong"))
        response, _ = yield httpGet(base + "/admin/shutdown", method="POST", headers={"Authorization": f"Bearer {TOKEN}"})
        self.assertEqual((response.code, self.shutdowns), (200, [1]))

    @inlineCallbacks
    def test_controlDisabled(self) -> Any:
        """
        security.controlEnabled false hides /admin/shutdown (404).
        """
        linker, base = self.start(security={"controlEnabled": False})
        response, _ = yield httpGet(base + "/admin/shutdown", method="POST")
        self.assertEqual(response.code, 404)
        self.assertEqual(self.shutdowns, [])

    @inlineCallbacks
    def test_bodySizeLimit(self) -> Any:
        """
        Bodies over admin.maxRequestBodyKB get 413 whether announced by
        Content-Length (before any body is read) or sent chunked.
        """
        linker, base = self.start(maxRequestBodyKB=1)
        port = adminPort(linker)
        big = json.dumps({"dtab": "/a=>/b", "path": "/a" + "/x" * 1000}).encode()
        response, body = yield httpGet(base + "/delegator.json", method="POST", data=big, headers={"Content-Type": "application/json"})
        self.assertEqual(response.code, 413)
        # announced 10 GB, nothing sent: refused at once
        data = yield sendRaw(
            self, port, b"POST /delegator.json HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n"
        )
        self.assertEqual(statusOf(data), 413, data)
        chunk = b"x" * 800
        data = yield sendRaw(
            self,
            port,
            b"POST /delegator.json HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            + (b"%x\r\n%s\r\n" % (len(chunk), chunk)) * 3
            + b"0\r\n\r\n",
        )
        self.assertEqual(statusOf(data), 413, data)

    @inlineCallbacks
    def test_shutdownWithToken(self) -> Any:
        """
        A twistd router with admin.auth from a tokenFile: a wrong token
        gets 401, the right one shuts it down (exit 0).
        """
        directory = tempfile.mkdtemp(prefix="linkerpy-hardening-")
        path = os.path.join(directory, "token")
        with open(path, "w") as f:
            f.write(TOKEN + "\n")
        origin = startFaultOrigin(self)
        proc = TwistdProcess(routerConfig(origin.portNumber, admin={"auth": {"tokenFile": path}}), directory=directory)
        self.addCleanup(proc.stop)
        yield proc.start(waitFor=("admin", "router http"))
        response, _ = yield httpGet(proc.url(path="/admin/shutdown"), method="POST", headers={"Authorization": "Bearer nope-nope-nope-nope"})
        self.assertEqual(response.code, 401)
        self.assertIsNone(proc.exitCode)
        response, _ = yield httpGet(proc.url(path="/admin/shutdown"), method="POST", headers={"Authorization": f"Bearer {TOKEN}"})
        self.assertEqual(response.code, 200)
        code = yield proc.ended
        self.assertEqual(code, 0)


class DelegatorAbuseTests(TestCase):
    """
    C{/delegator.json} with hostile inputs.
    """

    timeout = 600

    @inlineCallbacks
    def test_hostileInputs(self) -> Any:
        """
        Every nasty dtab/path, by GET and by POST, gets a bounded answer
        (2xx/4xx, or a one-line 5xx), never a traceback; the admin server
        still answers afterwards.
        """
        origin = startFaultOrigin(self)
        linker = startLinker(self, routerConfig(origin.portNumber))
        base = f"http://127.0.0.1:{adminPort(linker)}"
        problems = []
        for name, dtab, path in nasty():
            post = json.dumps({"namespace": "http", "dtab": dtab, "path": path}).encode("utf-8")
            response, body = yield httpGet(
                base + "/delegator.json", method="POST", data=post, headers={"Content-Type": "application/json"}, timeout=TIMEOUT
            )
            if leaked(body) or response.code >= 500 and (len(body) > 300 or b"\n" in body.rstrip(b"\n")):
                problems.append(f"POST {name}: {response.code} {body[:120]!r}")
            url = f"{base}/delegator.json?path={quote(path[:3000])}&dtab={quote(dtab[:3000])}"
            response, body = yield httpGet(url, timeout=TIMEOUT)
            if leaked(body) or response.code >= 500 and len(body) > 300:
                problems.append(f"GET {name}: {response.code} {body[:120]!r}")
        # malformed JSON bodies
        for raw in (b"{", b"[]", b'{"dtab": 1, "path": "/a"}', b'{"dtab": "/a=>/b"}', b"\xff\xfe", b"[" * 500 + b"]" * 500):
            response, body = yield httpGet(base + "/delegator.json", method="POST", data=raw, headers={"Content-Type": "application/json"})
            if response.code not in (400, 413) or leaked(body):
                problems.append(f"JSON {raw[:20]!r}: {response.code} {body[:120]!r}")
        self.assertEqual(problems, [])
        response, body = yield httpGet(base + "/admin/ping")
        self.assertEqual(body, b"pong")

    @inlineCallbacks
    def test_deeplyNestedJSON(self) -> Any:
        """
        A POST body of JSON nested 5,000 deep gets 400, as namerd's API
        answers, not a RecursionError turned into 500.
        """
        origin = startFaultOrigin(self)
        linker = startLinker(self, routerConfig(origin.portNumber))
        base = f"http://127.0.0.1:{adminPort(linker)}"
        raw = b'{"a":' * 5000 + b"1" + b"}" * 5000
        response, body = yield httpGet(base + "/delegator.json", method="POST", data=raw, headers={"Content-Type": "application/json"})
        self.flushLoggedErrors(RecursionError)
        self.assertFalse(leaked(body))
        self.assertEqual(response.code, 400)


    @inlineCallbacks
    def test_policyAndMetricsQueries(self) -> Any:
        """
        /admin/policy.json and /admin/metrics.json with huge or malformed
        query values answer 4xx without a traceback.
        """
        origin = startFaultOrigin(self)
        linker = startLinker(self, routerConfig(origin.portNumber))
        base = f"http://127.0.0.1:{adminPort(linker)}"
        urls = [
            "/admin/policy.json?path=" + quote("/" + "/".join(["x"] * 3000)),
            "/admin/policy.json?path=" + quote("(((((("),
            "/admin/policy.json?path=%ff%fe",
            "/admin/policy.json?router=nope&path=/a",
            "/admin/metrics.json?q=" + "a/" * 2000,
            "/admin/metrics.json?q=%00",
            "/" + "a" * 5000,
            "/admin/%2e%2e/%2e%2e/etc/passwd",
        ]
        for url in urls:
            response, body = yield httpGet(base + url)
            self.assertLess(response.code, 500, url)
            self.assertGreaterEqual(response.code, 400, url)
            self.assertFalse(leaked(body), url)


class NamerdAbuseTests(TestCase):
    """
    namerd's HTTP API with hostile inputs and without the token.
    """

    timeout = 600

    @inlineCallbacks
    def setUp(self) -> Any:
        from linkerpy.namerd.api import NamerdAPI
        from linkerpy.namerd.core import Namerd
        from linkerpy.namerd.service import ApiSite
        from linkerpy.namerd.storage.memory import InMemoryStore
        from linkerpy.plugins.registry import defaultRegistry

        store = InMemoryStore()
        yield store.start()
        self.addCleanup(store.close)
        namerd = Namerd(store, [], reactor, defaultRegistry())
        self.api = NamerdAPI(namerd, reactor, token=TOKEN, requestTimeout=2.0)
        self.site = ApiSite(self.api, 64 * 1024, reactor)
        port = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.addCleanup(self._stop, port)
        self.base = f"http://127.0.0.1:{port.getHost().port}"

    def _stop(self, port: Any) -> Any:
        self.site.closeAll()
        return port.stopListening()

    def call(self, method: str, path: str, body: Any = None, token: bool = True, contentType: str = "application/dtab") -> Any:
        headers = {"Content-Type": contentType}
        if token:
            headers["Authorization"] = f"Bearer {TOKEN}"
        data = body.encode("utf-8") if isinstance(body, str) else body
        return httpGet(self.base + path, method=method, data=data, headers=headers, timeout=TIMEOUT)

    @inlineCallbacks
    def test_mutationsNeedToken(self) -> Any:
        """
        POST, PUT and DELETE without the token get 401 and change nothing.
        """
        for method in ("POST", "PUT", "DELETE"):
            response, _ = yield self.call(method, "/api/1/dtabs/ns", "/a=>/b", token=False)
            self.assertEqual(response.code, 401, method)
        response, body = yield self.call("GET", "/api/1/dtabs")
        self.assertEqual(json.loads(body), [])

    @inlineCallbacks
    def test_hostileDtabsAndPaths(self) -> Any:
        """
        Hostile dtab bodies, namespaces and paths get 4xx (or a one-line
        5xx), never a traceback, and nothing invalid is stored.
        """
        response, _ = yield self.call("POST", "/api/1/dtabs/good", "/svc=>/$/inet/127.0.0.1/1")
        self.assertEqual(response.code, 204)
        problems = []
        for name, dtab, path in nasty():
            response, body = yield self.call("PUT", "/api/1/dtabs/good", dtab)
            if response.code not in (204, 400, 413) or leaked(body):
                problems.append(f"PUT {name}: {response.code} {body[:100]!r}")
            for endpoint in ("bind", "delegate", "resolve"):
                url = f"/api/1/{endpoint}/good?path={quote(path[:3000])}&dtab={quote(dtab[:3000])}"
                response, body = yield self.call("GET", url)
                if leaked(body) or response.code >= 500 and len(body) > 300:
                    problems.append(f"{endpoint} {name}: {response.code} {body[:100]!r}")
        for ns in ("a" * 5000, "..", "a/b", "%00", "x y", "\u00e9"):
            response, body = yield self.call("GET", "/api/1/dtabs/" + quote(ns, safe=""))
            if response.code not in (400, 404) or leaked(body):
                problems.append(f"namespace {ns[:10]!r}: {response.code}")
        response, body = yield self.call("PUT", "/api/1/dtabs/good", "/a=>/b;" * 20000)
        if response.code != 413:
            problems.append(f"oversized body: {response.code}")
        response, body = yield self.call("PUT", "/api/1/dtabs/good", b'[{"prefix":' * 3000, contentType="application/json")
        if response.code not in (400, 413) or leaked(body):
            problems.append(f"deep JSON: {response.code} {body[:100]!r}")
        self.assertEqual(problems, [])
        response, body = yield self.call("GET", "/api/1/dtabs/good", contentType="application/dtab")
        self.assertEqual(response.code, 200)
