"""
Tests for the C{httpsRedirect} router (L{linkerpy.protocol.tcp.redirect}):
how C{Location} is built, and the router over a real socket.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from linkerpy.protocol.tcp.redirect import redirectLocation
from tests.test_tcp_support import Client, buildTcpRouter, connect, metric


class LocationTests(SynchronousTestCase):
    """
    L{redirectLocation}.
    """

    def test_hostAndTarget(self) -> None:
        """
        The Host's name (lower-cased, port dropped) and the target make the
        HTTPS URL; port 443 is left out, others are written.
        """
        self.assertEqual(redirectLocation(b"WWW.Example.test:8080", b"/a/b?c=d", 443), b"https://www.example.test/a/b?c=d")
        self.assertEqual(redirectLocation(b"www.example.test", b"/", 4443), b"https://www.example.test:4443/")
        self.assertEqual(redirectLocation(b"[::1]:80", b"/x", 443), b"https://[::1]/x")
        self.assertEqual(redirectLocation(b"10.0.0.1", b"/x", 443), b"https://10.0.0.1/x")
        self.assertEqual(redirectLocation(b"example.test.", b"*", 443), b"https://example.test/")

    def test_badHosts(self) -> None:
        """
        A missing Host, or one that is not a host name, gives no location.
        """
        for host in (None, b"", b"bad host", b"a/b", b"evil.example@good", b"x:y:z", b"a" * 300, b"h\r\nx: y"):
            self.assertIsNone(redirectLocation(host, b"/", 443), host)


def fetch(url: str, host: str, method: str = "GET", data: Any = None) -> defer.Deferred:
    """
    One request (redirects not followed); fires with C{(response, body)}.
    """
    import treq
    from twisted.web.client import HTTPConnectionPool

    pool = HTTPConnectionPool(reactor, persistent=False)
    d = treq.request(method, url, headers={"Host": [host]}, data=data, allow_redirects=False, timeout=60, pool=pool)
    return d.addCallback(lambda r: treq.content(r).addCallback(lambda body: (r, body)))


class RouterTests(TestCase):
    """
    The redirect router on a real socket.
    """

    timeout = 120

    @defer.inlineCallbacks
    def test_redirects(self) -> Any:
        """
        Every request gets the configured redirect status and Location;
        a request without a usable Host gets 400; both are counted.
        """
        router = buildTcpRouter({"protocol": "httpsRedirect", "status": 301, "httpsPort": 8443, "servers": [{"port": 0}]}, reactor)
        service = router.service()
        service.startService()
        self.addCleanup(service.stopService)
        port = service.ports[0].getHost().port
        response, body = yield fetch(f"http://127.0.0.1:{port}/path?q=1", "shop.example.test", "POST", b"ignored")
        self.assertEqual(response.code, 301)
        self.assertEqual(response.headers.getRawHeaders("location"), ["https://shop.example.test:8443/path?q=1"])
        self.assertEqual(body, b"")
        response, _ = yield fetch(f"http://127.0.0.1:{port}/", "not a host")
        self.assertEqual(response.code, 400)  # refused by the HTTP framing rules already
        client = yield connect(self, port, Client(b"GET /x HTTP/1.0\r\n\r\n"))
        yield client.done
        self.assertTrue(client.received.startswith(b"HTTP/1.1 400 "), client.received)
        scope = f"rt/httpsRedirect/server/127.0.0.1/{port}"
        self.assertEqual(metric(router, f"{scope}/redirects"), 1)
        self.assertEqual(metric(router, f"{scope}/bad_requests"), 1)
