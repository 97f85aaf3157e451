"""
End-to-end per-service policy over real sockets: the retry matrix with
Linkerd's exact counters, budgets, l5d-retryable, attempt and total
timeouts, and per-prefix policy.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from tests.support import httpGet, routerPort, startLinker, startOrigin

METHODS = ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", "PATCH", "POST"]

RETRIED = {
    "io.l5d.http.retryableIdempotent5XX": {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"},
    "io.l5d.http.retryableRead5XX": {"GET", "HEAD", "OPTIONS", "TRACE"},
    "io.l5d.http.retryableAll5XX": set(METHODS),
    "io.l5d.http.nonRetryable5XX": set(),
}


def config(origin, service=None, client=None, **router):
    r = {"protocol": "http", "dtab": f"/svc=>/$/inet/127.0.0.1/{origin.portNumber}", "servers": [{"port": 0}]}
    if service is not None:
        r["service"] = service
    if client is not None:
        r["client"] = client
    r.update(router)
    return {"admin": {"port": 0}, "routers": [r]}


class RetryMatrixTests(TestCase):
    """
    The origin fails the first attempt with 500, then succeeds.
    """

    timeout = 120

    @defer.inlineCallbacks
    def test_matrix(self):
        """
        Each classifier retries exactly its methods, with Linkerd's client and service counters.
        """
        for kind, retried in RETRIED.items():
            for method in METHODS:
                origin = startOrigin(self)
                origin.script = [(500, b"fail", {}), (200, b"ok", {})]
                linker = startLinker(self, config(origin, service={"kind": "io.l5d.global", "responseClassifier": {"kind": kind}}))
                response, body = yield httpGet(
                    f"http://127.0.0.1:{routerPort(linker)}/", headers={"Host": "foo"}, method=method, data=b"x" if method in ("PUT", "POST", "PATCH") else None
                )
                m = linker.metrics.flatten()
                client = f"rt/http/client/$/inet/127.0.0.1/{origin.portNumber}"
                where = f"{kind} {method}"
                if method in retried:
                    self.assertEqual(response.code, 200, where)
                    self.assertEqual(m[f"{client}/requests"], 2, where)
                    self.assertEqual(m[f"{client}/status/500"], 1, where)
                    self.assertEqual(m[f"{client}/status/200"], 1, where)
                    self.assertEqual(m["rt/http/service/svc/foo/retries/total"], 1, where)
                    self.assertEqual(m["rt/http/service/svc/foo/retries/per_request.max"], 1.0, where)
                    self.assertEqual(m["rt/http/service/svc/foo/success"], 1, where)
                else:
                    self.assertEqual(response.code, 500, where)
                    self.assertEqual(m[f"{client}/requests"], 1, where)
                    self.assertEqual(m["rt/http/service/svc/foo/retries/total"], 0, where)
                    self.assertEqual(m["rt/http/service/svc/foo/retries/per_request.max"], 0.0, where)
                yield linker.stopService()
                yield origin.stop()

    @defer.inlineCallbacks
    def test_l5dRetryable(self):
        """
        l5d-retryable: true from the origin makes a POST retryable even under the default classifier.
        """
        origin = startOrigin(self)
        origin.script = [(500, b"fail", {"l5d-retryable": "true"}), (200, b"ok", {})]
        linker = startLinker(self, config(origin))
        response, body = yield httpGet(f"http://127.0.0.1:{routerPort(linker)}/", headers={"Host": "foo"}, method="POST", data=b"payload")
        self.assertEqual((response.code, body), (200, b"ok"))
        self.assertEqual([r.body for r in origin.requests], [b"payload", b"payload"])

    @defer.inlineCallbacks
    def test_budgetExhausted(self):
        """
        With budget {0, 0.5, 10}: ok, 500 (retried), ok, 500 (budget exhausted) gives 200, 200, 500.
        """
        origin = startOrigin(self)
        origin.script = [(200, b"ok", {}), (500, b"f", {}), (200, b"ok", {}), (500, b"f", {}), (500, b"f", {})]
        service = {
            "kind": "io.l5d.global",
            "responseClassifier": {"kind": "io.l5d.http.retryableRead5XX"},
            "retries": {"budget": {"minRetriesPerSec": 0, "percentCanRetry": 0.5, "ttlSecs": 10}},
        }
        linker = startLinker(self, config(origin, service=service))
        port = routerPort(linker)
        codes = []
        totals = []
        exhausted = []
        for _ in range(3):
            response, _ = yield httpGet(f"http://127.0.0.1:{port}/", headers={"Host": "foo"})
            codes.append(response.code)
            m = linker.metrics.flatten()
            totals.append(m["rt/http/service/svc/foo/retries/total"])
            exhausted.append(m["rt/http/service/svc/foo/retries/budget_exhausted"])
        self.assertEqual(codes, [200, 200, 500])
        self.assertEqual(totals, [0, 1, 1])
        self.assertEqual(exhausted, [0, 0, 1])

    @defer.inlineCallbacks
    def test_perServicePolicy(self):
        """
        Static service configs give each prefix its own classifier.
        """
        origin = startOrigin(self)
        origin.script = [(500, b"f", {}), (200, b"ok", {}), (500, b"f", {}), (200, b"ok", {})]
        service = {
            "kind": "io.l5d.static",
            "configs": [
                {"prefix": "/svc/a", "responseClassifier": {"kind": "io.l5d.http.retryableRead5XX"}},
                {"prefix": "/svc/b", "responseClassifier": {"kind": "io.l5d.http.nonRetryable5XX"}},
            ],
        }
        linker = startLinker(self, config(origin, service=service))
        port = routerPort(linker)
        a, _ = yield httpGet(f"http://127.0.0.1:{port}/", headers={"Host": "a"})
        b, _ = yield httpGet(f"http://127.0.0.1:{port}/", headers={"Host": "b"})
        self.assertEqual((a.code, b.code), (200, 500))

    @defer.inlineCallbacks
    def test_allSuccessful(self):
        """
        allSuccessful counts a 500 as a success.
        """
        origin = startOrigin(self)
        origin.script = [(500, b"f", {})]
        linker = startLinker(self, config(origin, service={"kind": "io.l5d.global", "responseClassifier": {"kind": "io.l5d.http.allSuccessful"}}))
        response, _ = yield httpGet(f"http://127.0.0.1:{routerPort(linker)}/", headers={"Host": "foo"})
        self.assertEqual(response.code, 500)
        self.assertEqual(response.headers.getRawHeaders("l5d-success-class"), ["1.0"])
        self.assertEqual(linker.metrics.flatten()["rt/http/service/svc/foo/success"], 1)


class TimeoutTests(TestCase):
    """
    Attempt and total timeouts.
    """

    timeout = 120

    @defer.inlineCallbacks
    def test_attemptTimeoutThenSuccess(self):
        """
        A first attempt slower than requestAttemptTimeoutMs is retried (retryable classifier) and succeeds.
        """
        slow = startOrigin(self, "slow")
        slow.delay = 2.0
        fast = startOrigin(self, "fast")
        r = {
            "protocol": "http",
            "dtab": f"/svc=>/$/inet/127.0.0.1/{slow.portNumber} & /$/inet/127.0.0.1/{fast.portNumber}",
            "servers": [{"port": 0}],
        }
        # A weighted union picks a client per attempt; make the first pick the slow one by
        # retrying until the fast one answers.
        r["service"] = {"kind": "io.l5d.global", "responseClassifier": {"kind": "io.l5d.http.retryableRead5XX"}}
        r["client"] = {"kind": "io.l5d.global", "requestAttemptTimeoutMs": 300}
        linker = startLinker(self, {"admin": {"port": 0}, "routers": [r]})
        port = routerPort(linker)
        for _ in range(5):
            response, body = yield httpGet(f"http://127.0.0.1:{port}/", headers={"Host": "foo"})
            self.assertEqual((response.code, body), (200, b"fast"))
        m = linker.metrics.flatten()
        self.assertEqual(m["rt/http/service/svc/foo/success"], 5)
        self.assertEqual(m["rt/http/service/svc/foo/retries/total"], len(slow.requests))

    @defer.inlineCallbacks
    def test_attemptTimeoutNotRetried(self):
        """
        Under the default classifier an attempt timeout is a 503 naming the attempt timeout.
        """
        slow = startOrigin(self, "slow")
        slow.delay = 2.0
        linker = startLinker(self, config(slow, client={"kind": "io.l5d.global", "requestAttemptTimeoutMs": 200}))
        response, body = yield httpGet(f"http://127.0.0.1:{routerPort(linker)}/", headers={"Host": "foo"})
        self.assertEqual(response.code, 503)
        self.assertIn(b"exceeded 200.milliseconds request attempt timeout", body)
        self.assertEqual(len(slow.requests), 1)

    @defer.inlineCallbacks
    def test_totalTimeoutAcrossRetries(self):
        """
        totalTimeoutMs bounds the whole request, retries included, and says which service.
        """
        origin = startOrigin(self)
        origin.script = [(500, b"f", {})] * 50
        service = {
            "kind": "io.l5d.global",
            "totalTimeoutMs": 400,
            "responseClassifier": {"kind": "io.l5d.http.retryableRead5XX"},
            "retries": {"backoff": {"kind": "constant", "ms": 150}},
        }
        linker = startLinker(self, config(origin, service=service))
        response, body = yield httpGet(f"http://127.0.0.1:{routerPort(linker)}/", headers={"Host": "foo"})
        self.assertEqual(response.code, 503)
        self.assertIn(b"exceeded 400.milliseconds total timeout", body)
        self.assertIn(b"/svc/foo", body)
        self.assertIn("total timeout", response.headers.getRawHeaders("l5d-err")[0])
        self.assertTrue(2 <= len(origin.requests) <= 4, len(origin.requests))

    @defer.inlineCallbacks
    def test_deadlinePropagated(self):
        """
        The remaining deadline is sent downstream as l5d-ctx-deadline.
        """
        origin = startOrigin(self)
        linker = startLinker(self, config(origin, service={"kind": "io.l5d.global", "totalTimeoutMs": 5000}))
        yield httpGet(f"http://127.0.0.1:{routerPort(linker)}/", headers={"Host": "foo"})
        start, deadline = (int(x) for x in origin.requests[0].header("l5d-ctx-deadline").split())
        self.assertTrue(0 < deadline - start <= 5_000_000_000)
