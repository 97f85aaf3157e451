"""
End-to-end behaviour of the HTTP router over real sockets: the Linkerd 1
behaviours its own end-to-end tests assert (routing, errors, header
propagation, clearContext, call depth, connection reuse, statistics), in
this process with real origins on 127.0.0.1.
"""

from __future__ import annotations

import os
import tempfile

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from tests.support import httpGet, rawRequest, routerPort, startLinker, startOrigin, waitUntil


def routerConfig(dtab: str, **router):
    config = {
        "admin": {"port": 0},
        "routers": [dict({"protocol": "http", "dtab": dtab, "servers": [{"port": 0}]}, **router)],
    }
    return config


class RoutingTests(TestCase):
    """
    Routing by Host through the dtab, and router-made errors.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_hostRouting(self):
        """
        Host felix routes through /svc/felix => /p/cat to cat; the origin sees the l5d-dst headers.
        """
        cat = startOrigin(self, "cat")
        dog = startOrigin(self, "dog")
        linker = startLinker(
            self,
            routerConfig(f"/p/cat=>/$/inet/127.0.0.1/{cat.portNumber};/p/dog=>/$/inet/127.0.0.1/{dog.portNumber};/svc/felix=>/p/cat;/svc/clifford=>/p/dog"),
        )
        port = routerPort(linker)
        response, body = yield httpGet(f"http://127.0.0.1:{port}/meow", headers={"Host": "felix"})
        self.assertEqual((response.code, body), (200, b"cat"))
        [seen] = cat.requests
        self.assertEqual(seen.uri, b"/meow")
        self.assertEqual(seen.header("l5d-dst-service"), b"/svc/felix")
        self.assertEqual(seen.header("l5d-dst-client"), b"/$/inet/127.0.0.1/%d" % cat.portNumber)
        self.assertIsNone(seen.header("l5d-dst-residual"))
        self.assertIsNotNone(seen.header("l5d-reqid"))
        self.assertIsNotNone(seen.header("l5d-ctx-trace"))
        self.assertEqual(seen.header("via"), b"1.1 linkerpy")
        self.assertEqual(response.headers.getRawHeaders("l5d-success-class"), ["1.0"])
        response, body = yield httpGet(f"http://127.0.0.1:{port}/", headers={"Host": "clifford"})
        self.assertEqual(body, b"dog")

    @defer.inlineCallbacks
    def test_firstRequestWaitsForDNS(self):
        """
        The first request to a name whose addresses are still being resolved waits for them (no "no endpoints").
        """
        cat = startOrigin(self, "cat")
        linker = startLinker(self, routerConfig(f"/svc=>/$/inet/localhost/{cat.portNumber}"))
        response, body = yield httpGet(f"http://127.0.0.1:{routerPort(linker)}/", headers={"Host": "felix"})
        self.assertEqual((response.code, body), (200, b"cat"))

    @defer.inlineCallbacks
    def test_residual(self):
        """
        The unmatched rest of the name is sent as l5d-dst-residual.
        """
        cat = startOrigin(self, "cat")
        linker = startLinker(self, routerConfig(f"/svc=>/$/inet/127.0.0.1/{cat.portNumber}", identifier={"kind": "io.l5d.path", "segments": 2}))
        response, body = yield httpGet(f"http://127.0.0.1:{routerPort(linker)}/a/b/c", headers={"Host": "x"})
        self.assertEqual(response.code, 200)
        self.assertEqual(cat.requests[0].header("l5d-dst-residual"), b"/a/b")

    @defer.inlineCallbacks
    def test_unroutable(self):
        """
        A name with no dentry is a 502 whose l5d-err and body name the service and dtab.
        """
        linker = startLinker(self, routerConfig("/svc/felix=>/$/inet/127.0.0.1/1"))
        response, body = yield httpGet(f"http://127.0.0.1:{routerPort(linker)}/", headers={"Host": "ralph-machio"})
        self.assertEqual(response.code, 502)
        [err] = response.headers.getRawHeaders("l5d-err")
        self.assertIn("Unable to route request", err)
        self.assertIn(b"service name: /svc/ralph-machio", body)
        self.assertIn(b"/svc/felix=>/$/inet/127.0.0.1/1", body)

    @defer.inlineCallbacks
    def test_emptyHost(self):
        """
        A request with an empty Host is a 400 with l5d-err.
        """
        linker = startLinker(self, routerConfig("/svc=>/$/inet/127.0.0.1/1"))
        raw = yield rawRequest(routerPort(linker), b"GET / HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n")
        self.assertTrue(raw.startswith(b"HTTP/1.1 400 "), raw)
        self.assertIn(b"l5d-err: Unknown destination", raw)

    @defer.inlineCallbacks
    def test_connectionRefused(self):
        """
        A refused connection is a 502 naming the address; server and service count the failure.
        """
        origin = startOrigin(self)
        dead = origin.portNumber
        yield origin.stop()
        linker = startLinker(self, routerConfig(f"/svc/dog=>/$/inet/127.0.0.1/{dead}"))
        response, body = yield httpGet(f"http://127.0.0.1:{routerPort(linker)}/", headers={"Host": "dog"})
        self.assertEqual(response.code, 502)
        self.assertIn(f"Unable to establish connection to 127.0.0.1:{dead}", response.headers.getRawHeaders("l5d-err")[0])
        metrics = linker.metrics.flatten()
        server = [k for k in metrics if k.startswith("rt/http/server/") and k.endswith("/failures")]
        self.assertEqual([metrics[k] for k in server], [1])
        self.assertEqual(metrics["rt/http/service/svc/dog/failures"], 1)

    @defer.inlineCallbacks
    def test_absoluteForm(self):
        """
        A proxy-style absolute-form request is routed by its authority and forwarded in origin form.
        """
        cat = startOrigin(self, "cat")
        linker = startLinker(self, routerConfig(f"/svc/felix=>/$/inet/127.0.0.1/{cat.portNumber}"))
        raw = yield rawRequest(routerPort(linker), b"GET http://felix/x?y=1 HTTP/1.1\r\nHost: felix\r\nConnection: close\r\n\r\n")
        self.assertTrue(raw.startswith(b"HTTP/1.1 200"), raw)
        self.assertEqual(cat.requests[0].uri, b"/x?y=1")


class HeaderTests(TestCase):
    """
    l5d-dtab, dtab-local, clearContext, timestampHeader, call depth.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_l5dDtab(self):
        """
        l5d-dtab and l5d-ctx-dtab override routing and reach the origin as l5d-ctx-dtab only.
        """
        a = startOrigin(self, "a")
        b = startOrigin(self, "b")
        linker = startLinker(self, routerConfig(f"/svc/x=>/$/inet/127.0.0.1/{a.portNumber}"))
        port = routerPort(linker)
        for header in ("l5d-dtab", "l5d-ctx-dtab"):
            override = f"/svc/x=>/$/inet/127.0.0.1/{b.portNumber}"
            response, body = yield httpGet(f"http://127.0.0.1:{port}/", headers={"Host": "x", header: override})
            self.assertEqual(body, b"b")
            seen = b.requests[-1]
            self.assertEqual(seen.header("l5d-ctx-dtab"), override.encode())
            self.assertIsNone(seen.header("l5d-dtab"))
            self.assertIsNone(seen.header("dtab-local"))

    @defer.inlineCallbacks
    def test_dtabLocalIgnored(self):
        """
        dtab-local is ignored for routing and forwarded untouched, with no l5d-ctx-dtab added.
        """
        a = startOrigin(self, "a")
        linker = startLinker(self, routerConfig(f"/svc/x=>/$/inet/127.0.0.1/{a.portNumber}"))
        response, body = yield httpGet(f"http://127.0.0.1:{routerPort(linker)}/", headers={"Host": "x", "dtab-local": "/svc/x=>/$/inet/127.0.0.1/1"})
        self.assertEqual(body, b"a")
        self.assertEqual(a.requests[0].header("dtab-local"), b"/svc/x=>/$/inet/127.0.0.1/1")
        self.assertIsNone(a.requests[0].header("l5d-ctx-dtab"))

    @defer.inlineCallbacks
    def test_malformedDtabHeader(self):
        """
        A malformed l5d-dtab is a 400 with l5d-err, and the origin sees nothing.
        """
        a = startOrigin(self, "a")
        linker = startLinker(self, routerConfig(f"/svc/x=>/$/inet/127.0.0.1/{a.portNumber}"))
        response, body = yield httpGet(f"http://127.0.0.1:{routerPort(linker)}/", headers={"Host": "x", "l5d-dtab": "/svc/x=>"})
        self.assertEqual(response.code, 400)
        self.assertIn("l5d-dtab", response.headers.getRawHeaders("l5d-err")[0])
        self.assertEqual(a.requests, [])

    @defer.inlineCallbacks
    def test_clearContext(self):
        """
        With clearContext the origin sees exactly the router's own l5d headers.
        """
        a = startOrigin(self, "a")
        linker = startLinker(self, routerConfig(f"/svc/x=>/$/inet/127.0.0.1/{a.portNumber}", servers=[{"port": 0, "clearContext": True}]))
        yield httpGet(f"http://127.0.0.1:{routerPort(linker)}/", headers={"Host": "x", "l5d-dtab": "/a=>/b", "l5d-ctx-thing": "x"})
        seen = {k for k in a.requests[0].headers if k.startswith(b"l5d-")}
        self.assertEqual(seen, {b"l5d-dst-service", b"l5d-dst-client", b"l5d-reqid", b"l5d-ctx-trace"})

    @defer.inlineCallbacks
    def test_noClearContext(self):
        """
        Without clearContext, context headers pass through and l5d-dtab becomes l5d-ctx-dtab.
        """
        a = startOrigin(self, "a")
        linker = startLinker(self, routerConfig(f"/svc/x=>/$/inet/127.0.0.1/{a.portNumber}"))
        yield httpGet(f"http://127.0.0.1:{routerPort(linker)}/", headers={"Host": "x", "l5d-dtab": "/a=>/b", "l5d-ctx-thing": "x"})
        seen = {k for k in a.requests[0].headers if k.startswith(b"l5d-")}
        self.assertEqual(seen, {b"l5d-dst-service", b"l5d-dst-client", b"l5d-reqid", b"l5d-ctx-trace", b"l5d-ctx-dtab", b"l5d-ctx-thing"})

    @defer.inlineCallbacks
    def test_clearContextError(self):
        """
        With clearContext a routing error carries no l5d headers and an empty body.
        """
        linker = startLinker(self, routerConfig("/svc/x=>/$/inet/127.0.0.1/1", servers=[{"port": 0, "clearContext": True}]))
        response, body = yield httpGet(f"http://127.0.0.1:{routerPort(linker)}/", headers={"Host": "x"})
        self.assertEqual(response.code, 502)
        self.assertEqual(body, b"")
        for name in ("l5d-err", "l5d-success-class", "l5d-retryable"):
            self.assertFalse(response.headers.hasHeader(name), name)

    @defer.inlineCallbacks
    def test_timestampHeader(self):
        """
        timestampHeader adds the receive time in milliseconds.
        """
        a = startOrigin(self, "a")
        linker = startLinker(self, routerConfig(f"/svc/x=>/$/inet/127.0.0.1/{a.portNumber}", servers=[{"port": 0, "timestampHeader": "x-request-start"}]))
        yield httpGet(f"http://127.0.0.1:{routerPort(linker)}/", headers={"Host": "x"})
        int(a.requests[0].header("x-request-start"))

    @defer.inlineCallbacks
    def test_maxCallDepth(self):
        """
        More Via entries than maxCallDepth is a 400 explaining the proxy loop.
        """
        a = startOrigin(self, "a")
        linker = startLinker(self, routerConfig(f"/svc/x=>/$/inet/127.0.0.1/{a.portNumber}", servers=[{"port": 0, "maxCallDepth": 2}]))
        response, body = yield httpGet(f"http://127.0.0.1:{routerPort(linker)}/", headers={"Host": "x", "Via": "hop1, hop2, hop3"})
        self.assertEqual(response.code, 400)
        self.assertIn(b"Maximum number of calls (2) has been exceeded. Please check for proxy loops.", body)
        self.assertEqual(a.requests, [])

    @defer.inlineCallbacks
    def test_connectionCloseNotForwarded(self):
        """
        The client's Connection: close is not forwarded, and the origin connection is reused.
        """
        a = startOrigin(self, "a")
        linker = startLinker(self, routerConfig(f"/svc/x=>/$/inet/127.0.0.1/{a.portNumber}"))
        port = routerPort(linker)
        for _ in range(3):
            raw = yield rawRequest(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            self.assertTrue(raw.startswith(b"HTTP/1.1 200"), raw)
        self.assertEqual(a.connections, 1)
        for request in a.requests:
            self.assertNotEqual(request.header("connection"), b"close")
        self.assertEqual(linker.metrics.flatten()[f"rt/http/client/$/inet/127.0.0.1/{a.portNumber}/connects"], 1)

    @defer.inlineCallbacks
    def test_reconnect(self):
        """
        An origin connection the origin closed while idle is replaced transparently.
        """
        a = startOrigin(self, "a")
        a.port.factory.timeOut = 0.2  # the origin closes idle keep-alive connections quickly
        linker = startLinker(self, routerConfig(f"/svc/x=>/$/inet/127.0.0.1/{a.portNumber}"))
        port = routerPort(linker)
        yield httpGet(f"http://127.0.0.1:{port}/", headers={"Host": "x"})
        gauge = f"rt/http/client/$/inet/127.0.0.1/{a.portNumber}/connections"
        yield waitUntil(lambda: linker.metrics.flatten()[gauge] == 0, 20, "the origin to close the idle connection")
        response, body = yield httpGet(f"http://127.0.0.1:{port}/", headers={"Host": "x"})
        self.assertEqual((response.code, body), (200, b"a"))
        self.assertEqual(a.connections, 2)


class StatsTests(TestCase):
    """
    Counters under rt/<router>/{server,service,client}.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_defaultClassifier(self):
        """
        A 200 then a 500 count one success and one failure everywhere; the 500 is passed through.
        """
        a = startOrigin(self, "a")
        a.script = [(200, b"ok", {}), (500, b"boom", {})]
        linker = startLinker(self, routerConfig(f"/svc/x=>/$/inet/127.0.0.1/{a.portNumber}"))
        port = routerPort(linker)
        r1, _ = yield httpGet(f"http://127.0.0.1:{port}/", headers={"Host": "x"})
        r2, body = yield httpGet(f"http://127.0.0.1:{port}/", headers={"Host": "x"})
        self.assertEqual((r1.code, r2.code, body), (200, 500, b"boom"))
        self.assertEqual(r2.headers.getRawHeaders("l5d-success-class"), ["0.0"])
        m = linker.metrics.flatten()
        client = f"rt/http/client/$/inet/127.0.0.1/{a.portNumber}"
        server = next(k[: -len("/requests")] for k in m if k.startswith("rt/http/server/") and k.endswith("/requests"))
        for scope in (server, client, "rt/http/service/svc/x"):
            self.assertEqual((m[f"{scope}/requests"], m[f"{scope}/success"], m[f"{scope}/failures"]), (2, 1, 1), scope)
        self.assertEqual(m[f"{client}/status/500"], 1)
        self.assertEqual(m[f"{server}/status/2XX"], 1)
        self.assertEqual(m[f"{client}/service/svc/x/requests"], 2)
        self.assertEqual(m["rt/http/service/svc/x/request_latency_ms.count"], 2)

    @defer.inlineCallbacks
    def test_accessLogs(self):
        """
        Two routers with their own access logs each log their own requests.
        """
        a = startOrigin(self, "a")
        tmp = tempfile.mkdtemp()
        logs = [os.path.join(tmp, "one.log"), os.path.join(tmp, "two.log")]
        config = {
            "admin": {"port": 0},
            "routers": [
                {"protocol": "http", "label": label, "dtab": f"/svc=>/$/inet/127.0.0.1/{a.portNumber}", "httpAccessLog": log, "servers": [{"port": 0}]}
                for label, log in (("one", logs[0]), ("two", logs[1]))
            ],
        }
        linker = startLinker(self, config)
        yield httpGet(f"http://127.0.0.1:{routerPort(linker, 'one')}/first", headers={"Host": "x"})
        yield httpGet(f"http://127.0.0.1:{routerPort(linker, 'two')}/second", headers={"Host": "x"})

        def logged(path, text):
            with open(path) as f:
                return text in f.read()

        yield waitUntil(lambda: logged(logs[0], '"GET /first HTTP/1.1" 200') and logged(logs[1], '"GET /second HTTP/1.1" 200'), 20, "access log lines")
        self.assertFalse(logged(logs[0], "/second"))
        self.assertFalse(logged(logs[1], "/first"))

    @defer.inlineCallbacks
    def test_clientSessionIdle(self):
        """
        clientSession.idleTimeMs closes idle origin connections (the connections gauge drops to 0).
        """
        a = startOrigin(self, "a")
        linker = startLinker(self, routerConfig(f"/svc/x=>/$/inet/127.0.0.1/{a.portNumber}", client={"kind": "io.l5d.global", "clientSession": {"idleTimeMs": 500}}))
        yield httpGet(f"http://127.0.0.1:{routerPort(linker)}/", headers={"Host": "x"})
        gauge = f"rt/http/client/$/inet/127.0.0.1/{a.portNumber}/connections"
        self.assertEqual(linker.metrics.flatten()[gauge], 1)
        yield waitUntil(lambda: linker.metrics.flatten()[gauge] == 0, 10, "the idle connection to close")

    @defer.inlineCallbacks
    def test_serverSession(self):
        """
        serverSession idle and lifetime limits close client connections and count them.
        """
        a = startOrigin(self, "a")
        linker = startLinker(self, routerConfig(f"/svc/x=>/$/inet/127.0.0.1/{a.portNumber}", servers=[{"port": 0, "serverSession": {"idleTimeMs": 300}}]))
        port = routerPort(linker)
        raw = yield rawRequest(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=15)
        self.assertTrue(raw.startswith(b"HTTP/1.1 200"))
        m = linker.metrics.flatten()
        idle = next(k for k in m if k.startswith("rt/http/server/") and k.endswith("/idle"))
        self.assertEqual(m[idle], 1)
