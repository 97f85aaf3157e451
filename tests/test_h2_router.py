"""
Tests for the C{protocol: h2} router (L{linkerpy.protocol.h2.router} and
friends): an in-process router on 127.0.0.1 between an HTTP/2 client and
HTTP/2 origins, over real sockets; plus its configuration and plugins.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Dict, List, Optional

from h2.errors import ErrorCodes
from twisted.internet import defer, reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from linkerpy.interfaces import IIdentifierPlugin, IProtocolPlugin
from linkerpy.naming.path import Path
from linkerpy.protocol.h2.errors import StreamReset
from linkerpy.protocol.h2.headers import H2Headers
from linkerpy.protocol.h2.pool import H2ClientPool
from linkerpy.protocol.h2.testing import buildRouter, fetch, originFactory, requestHeaders
from linkerpy.protocol.http.stream import collect
from tests.support import waitUntil

TIMEOUT = 60


def h2Registry() -> Any:
    """
    The installed plugins.
    """
    from linkerpy.plugins.registry import defaultRegistry

    return defaultRegistry()


class RouterHarness:
    """
    Origins and a router started on the real reactor, cleaned up by the
    test case.
    """

    def __init__(self, case: TestCase) -> None:
        self.case = case
        self.ports: List[Any] = []

    def origin(self, fn: Any, **kw: Any) -> Any:
        factory = originFactory(reactor, fn, **kw)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.case.addCleanup(port.stopListening)
        self.case.addCleanup(lambda: [c.abortConnection() for c in list(factory.connections)])
        factory.port = port.getHost().port
        return factory

    def router(self, raw: Dict[str, Any]) -> Any:
        raw = dict(raw)
        raw.setdefault("protocol", "h2")
        raw.setdefault("servers", [{"port": 0}])
        router = buildRouter(raw, reactor, h2Registry())
        service = router.service()
        service.startService()
        self.case.addCleanup(service.stopService)
        router.port = service.ports[0].getHost().port
        return router

    def client(self, router: Any) -> H2ClientPool:
        pool = H2ClientPool(reactor, "127.0.0.1", router.port)
        self.case.addCleanup(pool.close)
        return pool


def ok(exchange: Any) -> None:
    """
    Answer 200 with the request's headers (as C{name: value} lines).
    """
    lines = b"\n".join(n + b": " + v for n, v in exchange.request.headers)
    exchange.respondBytes(H2Headers([(b":status", b"200")]), lines)


def metric(router: Any, name: str) -> Any:
    return router.rootMetrics.flatten().get(name)


class RouterTests(TestCase):
    """
    Requests through an in-process h2 router.
    """

    timeout = TIMEOUT

    def setUp(self) -> None:
        self.h = RouterHarness(self)

    @defer.inlineCallbacks
    def test_routesByAuthority(self) -> Any:
        """
        The default identifier names the request by C{:authority}; the
        origin sees the l5d-* headers and Via.
        """
        origin = self.h.origin(ok)
        router = self.h.router({"dtab": f"/svc/dog => /$/inet/127.0.0.1/{origin.port}"})
        fetched = yield fetch(self.h.client(router), requestHeaders(authority=b"dog", extra=[(b"l5d-dtab", b"/a=>/b")]))
        self.assertEqual(fetched.status, 200)
        seen = dict(line.split(b": ", 1) for line in fetched.body.split(b"\n"))
        self.assertEqual(seen[b"l5d-dst-service"], b"/svc/dog")
        self.assertEqual(seen[b"l5d-dst-client"], f"/$/inet/127.0.0.1/{origin.port}".encode())
        self.assertEqual(seen[b"l5d-ctx-dtab"], b"/a=>/b")
        self.assertNotIn(b"l5d-dtab", seen)
        self.assertIn(b"l5d-ctx-trace", seen)
        self.assertIn(b"l5d-reqid", seen)
        self.assertEqual(seen[b"via"], b"2 linkerpy")
        self.assertEqual(fetched.headers.get(b"via"), b"2 linkerpy")
        self.assertEqual(metric(router, "rt/h2/service/svc/dog/success"), 1)

    @defer.inlineCallbacks
    def test_headerPathIdentifier(self) -> Any:
        """
        C{io.l5d.header.path} with one segment routes gRPC-style paths by
        service name, each to its own origin.
        """
        a = self.h.origin(lambda e: e.respondBytes(H2Headers([(b":status", b"200")]), b"a"))
        b = self.h.origin(lambda e: e.respondBytes(H2Headers([(b":status", b"200")]), b"b"))
        router = self.h.router(
            {
                "identifier": {"kind": "io.l5d.header.path", "segments": 1},
                "dtab": f"/svc/pkg.A => /$/inet/127.0.0.1/{a.port}; /svc/pkg.B => /$/inet/127.0.0.1/{b.port}",
            }
        )
        client = self.h.client(router)
        first = yield fetch(client, requestHeaders(path=b"/pkg.A/Get", method=b"POST"), b"")
        second = yield fetch(client, requestHeaders(path=b"/pkg.B/Put?x=1", method=b"POST"), b"")
        self.assertEqual((first.body, second.body), (b"a", b"b"))

    @defer.inlineCallbacks
    def test_unidentifiedIsRefused(self) -> Any:
        """
        A request no identifier can name is refused with RST_STREAM
        REFUSED_STREAM.
        """
        router = self.h.router({"identifier": {"kind": "io.l5d.header.token", "header": "x-service"}})
        error = yield self.assertFailure(fetch(self.h.client(router), requestHeaders()), StreamReset)
        self.assertEqual(error.errorCode, ErrorCodes.REFUSED_STREAM)
        self.assertEqual(metric(router, "rt/h2/server/127.0.0.1/%d/refused" % router.port), 1)

    @defer.inlineCallbacks
    def test_noRouteIs502(self) -> Any:
        """
        A name the dtab cannot bind is a 502 with C{l5d-err}.
        """
        router = self.h.router({"dtab": "/svc/cat => /$/inet/127.0.0.1/1"})
        fetched = yield fetch(self.h.client(router), requestHeaders(authority=b"ralph"))
        self.assertEqual(fetched.status, 502)
        self.assertIn(b"Unable to route request", fetched.headers.get(b"l5d-err"))
        self.assertIn(b"service name: /svc/ralph", fetched.body)

    @defer.inlineCallbacks
    def test_connectionRefusedIs502(self) -> Any:
        """
        An origin that refuses connections gives 502 with C{l5d-err}.
        """
        from twisted.internet.protocol import Factory

        port = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
        dead = port.getHost().port
        yield port.stopListening()
        router = self.h.router({"dtab": f"/svc/dog => /$/inet/127.0.0.1/{dead}"})
        fetched = yield fetch(self.h.client(router), requestHeaders(authority=b"dog"))
        self.assertEqual(fetched.status, 502)
        self.assertIn(b"Unable to establish connection", fetched.headers.get(b"l5d-err"))

    @defer.inlineCallbacks
    def test_serverTimeout(self) -> Any:
        """
        A server's C{timeoutMs} bounds a request: 503 with C{l5d-err}, and
        the origin's stream is reset.
        """
        aborted: List[Any] = []
        origin = self.h.origin(lambda e: setattr(e, "abortHandler", aborted.append))
        router = self.h.router(
            {"dtab": f"/svc/dog => /$/inet/127.0.0.1/{origin.port}", "servers": [{"port": 0, "timeoutMs": 200}]}
        )
        fetched = yield fetch(self.h.client(router), requestHeaders(authority=b"dog"))
        self.assertEqual(fetched.status, 503)
        self.assertIn(b"exceeded 200.milliseconds", fetched.headers.get(b"l5d-err"))
        yield waitUntil(lambda: bool(aborted), TIMEOUT, "the origin's stream to be reset")

    @defer.inlineCallbacks
    def test_maxCallDepth(self) -> Any:
        """
        More C{Via} entries than C{maxCallDepth} (10 by default) is a 400.
        """
        origin = self.h.origin(ok)
        router = self.h.router({"dtab": f"/svc/dog => /$/inet/127.0.0.1/{origin.port}"})
        client = self.h.client(router)
        via = b", ".join([b"2 hop"] * 11)
        fetched = yield fetch(client, requestHeaders(authority=b"dog", extra=[(b"via", via)]))
        self.assertEqual(fetched.status, 400)
        self.assertIn(b"Maximum number of calls (10)", fetched.body)
        fetched = yield fetch(client, requestHeaders(authority=b"dog", extra=[(b"via", b", ".join([b"2 hop"] * 10))]))
        self.assertEqual(fetched.status, 200)

    @defer.inlineCallbacks
    def test_successClassInTrailers(self) -> Any:
        """
        A response with trailers gets C{l5d-success-class} in its trailers,
        not in its headers.
        """

        def streaming(exchange: Any) -> None:
            sink = exchange.respond(H2Headers([(b":status", b"200")]))
            sink.write(b"aaaa")
            reactor.callLater(0.2, lambda: (sink.write(b"bbbb"), sink.end(H2Headers([(b"grpc-status", b"0")]))))

        origin = self.h.origin(streaming)
        router = self.h.router({"dtab": f"/svc/dog => /$/inet/127.0.0.1/{origin.port}"})
        fetched = yield fetch(self.h.client(router), requestHeaders(authority=b"dog"))
        self.assertEqual(fetched.body, b"aaaabbbb")
        self.assertIsNone(fetched.headers.get(b"l5d-success-class"))
        self.assertEqual(fetched.trailers.get(b"l5d-success-class"), b"1.0")
        self.assertEqual(fetched.trailers.get(b"grpc-status"), b"0")

    @defer.inlineCallbacks
    def test_failureStats(self) -> Any:
        """
        A 500 is passed through and counted as a failure by the server,
        service and client (nonRetryable5XX, the default); a response
        without data carries its class in C{l5d-success-class}.
        """
        origin = self.h.origin(lambda e: e.respondBytes(H2Headers([(b":status", b"500")]), b""))
        router = self.h.router({"dtab": f"/svc/dog => /$/inet/127.0.0.1/{origin.port}"})
        fetched = yield fetch(self.h.client(router), requestHeaders(authority=b"dog"))
        self.assertEqual((fetched.status, fetched.headers.get(b"l5d-success-class")), (500, b"0.0"))
        client = f"rt/h2/client/$/inet/127.0.0.1/{origin.port}"
        yield waitUntil(lambda: metric(router, f"rt/h2/server/127.0.0.1/{router.port}/failures") == 1, TIMEOUT, "server stats")
        self.assertEqual(metric(router, "rt/h2/service/svc/dog/failures"), 1)
        self.assertEqual(metric(router, f"{client}/failures"), 1)
        self.assertEqual(metric(router, f"{client}/service/svc/dog/failures"), 1)
        self.assertEqual(metric(router, f"{client}/status/500"), 1)

    @defer.inlineCallbacks
    def test_retryableRead5XX(self) -> Any:
        """
        With C{io.l5d.h2.retryableRead5XX} a GET answered 500 is retried and
        the client sees the 200.
        """
        calls: List[int] = []

        def flaky(exchange: Any) -> None:
            calls.append(1)
            status = b"500" if len(calls) == 1 else b"200"
            exchange.respondBytes(H2Headers([(b":status", status)]), status)

        origin = self.h.origin(flaky)
        router = self.h.router(
            {
                "dtab": f"/svc/dog => /$/inet/127.0.0.1/{origin.port}",
                "service": {"kind": "io.l5d.global", "responseClassifier": {"kind": "io.l5d.h2.retryableRead5XX"}},
            }
        )
        fetched = yield fetch(self.h.client(router), requestHeaders(authority=b"dog"))
        self.assertEqual((fetched.status, len(calls)), (200, 2))
        self.assertEqual(metric(router, "rt/h2/service/svc/dog/retries/total"), 1)
        self.assertEqual(metric(router, "rt/h2/service/svc/dog/success"), 1)

    @defer.inlineCallbacks
    def test_postWithBodyRetriedWithinBuffer(self) -> Any:
        """
        A request with data within C{retryBufferSize.requestBytes} is
        re-sent whole; a larger one is not retried.
        """
        bodies: List[bytes] = []

        def flaky(exchange: Any) -> None:
            def got(data: bytes) -> None:
                bodies.append(data)
                status = b"503" if len(bodies) % 2 == 1 else b"200"
                exchange.respondBytes(H2Headers([(b":status", status)]), b"")

            collect(exchange.body).addCallback(got)

        origin = self.h.origin(flaky)
        router = self.h.router(
            {
                "dtab": f"/svc/dog => /$/inet/127.0.0.1/{origin.port}",
                "service": {
                    "kind": "io.l5d.global",
                    "responseClassifier": {"kind": "io.l5d.h2.retryableAll5XX"},
                    "retryBufferSize": {"requestBytes": 1000},
                },
            }
        )
        client = self.h.client(router)
        fetched = yield fetch(client, requestHeaders(authority=b"dog", method=b"POST"), b"x" * 900)
        self.assertEqual((fetched.status, bodies), (200, [b"x" * 900, b"x" * 900]))
        fetched = yield fetch(client, requestHeaders(authority=b"dog", method=b"POST"), b"y" * 5000)
        self.assertEqual((fetched.status, len(bodies)), (503, 3))

    def grpcLike(self, calls: List[int], size: int, trailersAfter: float) -> Any:
        """
        An origin answering like gRPC: headers, C{size} bytes, then trailers
        (after C{trailersAfter} seconds) saying 14 the first time, 0 after.
        """

        def answer(exchange: Any) -> None:
            calls.append(1)
            status = b"14" if len(calls) == 1 else b"0"
            sink = exchange.respond(H2Headers([(b":status", b"200"), (b"content-type", b"application/grpc")]))
            sink.write(b"m" * size)
            end = lambda: sink.end(H2Headers([(b"grpc-status", status)]))  # noqa: E731
            if trailersAfter:
                reactor.callLater(trailersAfter, end)
            else:
                end()

        return self.h.origin(answer)

    def grpcRouter(self, origin: Any, **service: Any) -> Any:
        service.update({"kind": "io.l5d.global", "responseClassifier": {"kind": "io.l5d.h2.grpc.default"}})
        return self.h.router({"dtab": f"/svc/dog => /$/inet/127.0.0.1/{origin.port}", "service": service})

    @defer.inlineCallbacks
    def test_heldResponseRetried(self) -> Any:
        """
        A response whose trailers (status 14) arrive within the
        classification window and buffer is retried.
        """
        calls: List[int] = []
        router = self.grpcRouter(self.grpcLike(calls, 100, 0.0))
        fetched = yield fetch(self.h.client(router), requestHeaders(authority=b"dog", method=b"POST"), b"")
        self.assertEqual((fetched.trailers.get(b"grpc-status"), len(calls)), (b"0", 2))
        self.assertEqual(fetched.trailers.get(b"l5d-success-class"), b"1.0")

    @defer.inlineCallbacks
    def test_responseBeyondBufferPassedOn(self) -> Any:
        """
        A response with more data than C{retryBufferSize.responseBytes} is
        passed on before its trailers and is not retried.
        """
        calls: List[int] = []
        router = self.grpcRouter(self.grpcLike(calls, 5000, 0.0), retryBufferSize={"responseBytes": 1000})
        fetched = yield fetch(self.h.client(router), requestHeaders(authority=b"dog", method=b"POST"), b"")
        self.assertEqual((fetched.trailers.get(b"grpc-status"), len(calls)), (b"14", 1))
        self.assertEqual(fetched.trailers.get(b"l5d-success-class"), b"0.0")
        self.assertEqual(metric(router, "rt/h2/service/svc/dog/failures"), 1)

    @defer.inlineCallbacks
    def test_slowTrailersPassedOn(self) -> Any:
        """
        A response whose stream outlasts C{classificationTimeoutMs} is passed
        on (its data reaches the client before the trailers) and is not
        retried.
        """
        calls: List[int] = []
        router = self.grpcRouter(self.grpcLike(calls, 100, 0.5), classificationTimeoutMs=50)
        response = yield self.h.client(router).request(requestHeaders(authority=b"dog", method=b"POST"))
        self.assertIsNone(response.head.trailers)
        data = yield collect(response.body)
        self.assertEqual((len(data), response.head.trailers.get(b"grpc-status"), len(calls)), (100, b"14", 1))

    @defer.inlineCallbacks
    def test_maxConcurrentRequestsRefuses(self) -> Any:
        """
        Requests beyond a server's C{maxConcurrentRequests} are refused with
        REFUSED_STREAM.
        """
        held: List[Any] = []
        origin = self.h.origin(held.append)
        router = self.h.router(
            {"dtab": f"/svc/dog => /$/inet/127.0.0.1/{origin.port}", "servers": [{"port": 0, "maxConcurrentRequests": 1}]}
        )
        client = self.h.client(router)
        first = fetch(client, requestHeaders(authority=b"dog"))
        yield waitUntil(lambda: bool(held), TIMEOUT, "the first request to reach the origin")
        error = yield self.assertFailure(fetch(client, requestHeaders(authority=b"dog")), StreamReset)
        self.assertEqual(error.errorCode, ErrorCodes.REFUSED_STREAM)
        held[0].respondBytes(H2Headers([(b":status", b"200")]), b"")
        self.assertEqual((yield first).status, 200)

    @defer.inlineCallbacks
    def test_clientResetReachesOrigin(self) -> Any:
        """
        A client that resets its stream mid-response gets the origin's
        stream reset too.
        """
        aborted: List[Any] = []

        def slow(exchange: Any) -> None:
            exchange.abortHandler = aborted.append
            exchange.respond(H2Headers([(b":status", b"200")])).write(b"first")

        origin = self.h.origin(slow)
        router = self.h.router({"dtab": f"/svc/dog => /$/inet/127.0.0.1/{origin.port}"})
        response = yield self.h.client(router).request(requestHeaders(authority=b"dog"))
        response.body.abort()
        yield waitUntil(lambda: bool(aborted), TIMEOUT, "the origin's stream to be reset")
        self.assertEqual(aborted[0].value.errorCode, ErrorCodes.CANCEL)

    @defer.inlineCallbacks
    def test_clientResetBeforeResponse(self) -> Any:
        """
        A client reset while the origin has not answered resets the
        origin's stream.
        """
        aborted: List[Any] = []
        origin = self.h.origin(lambda e: setattr(e, "abortHandler", aborted.append))
        router = self.h.router({"dtab": f"/svc/dog => /$/inet/127.0.0.1/{origin.port}"})
        d = self.h.client(router).request(requestHeaders(authority=b"dog"))
        yield waitUntil(lambda: bool(origin.handler.exchanges), TIMEOUT, "the request to reach the origin")
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        yield waitUntil(lambda: bool(aborted), TIMEOUT, "the origin's stream to be reset")
        self.assertEqual(aborted[0].value.errorCode, ErrorCodes.CANCEL)

    @defer.inlineCallbacks
    def test_originResetReachesClient(self) -> Any:
        """
        An origin reset after the response headers resets the client's
        stream with the same code; before them, likewise.
        """

        def reset(exchange: Any) -> None:
            if exchange.request.path == b"/late":
                exchange.respond(H2Headers([(b":status", b"200")])).write(b"partial")
                reactor.callLater(0.1, exchange.reset, ErrorCodes.INTERNAL_ERROR)
            else:
                exchange.reset(ErrorCodes.ENHANCE_YOUR_CALM)

        origin = self.h.origin(reset)
        router = self.h.router({"dtab": f"/svc/dog => /$/inet/127.0.0.1/{origin.port}"})
        client = self.h.client(router)
        error = yield self.assertFailure(fetch(client, requestHeaders(authority=b"dog", path=b"/late")), StreamReset)
        self.assertEqual(error.errorCode, ErrorCodes.INTERNAL_ERROR)
        error = yield self.assertFailure(fetch(client, requestHeaders(authority=b"dog", path=b"/early")), StreamReset)
        self.assertEqual(error.errorCode, ErrorCodes.ENHANCE_YOUR_CALM)

    @defer.inlineCallbacks
    def test_clearContext(self) -> Any:
        """
        With C{clearContext}, inbound l5d-* headers are dropped and router
        errors carry no l5d-err and no body.
        """
        origin = self.h.origin(ok)
        router = self.h.router(
            {"dtab": f"/svc/dog => /$/inet/127.0.0.1/{origin.port}", "servers": [{"port": 0, "clearContext": True}]}
        )
        client = self.h.client(router)
        fetched = yield fetch(client, requestHeaders(authority=b"dog", extra=[(b"l5d-dtab", b"/svc/dog=>/$/fail"), (b"l5d-ctx-x", b"1")]))
        self.assertEqual(fetched.status, 200)
        seen = dict(line.split(b": ", 1) for line in fetched.body.split(b"\n"))
        self.assertEqual(
            sorted(n for n in seen if n.startswith(b"l5d-")),
            [b"l5d-ctx-trace", b"l5d-dst-client", b"l5d-dst-service", b"l5d-reqid"],
        )
        fetched = yield fetch(client, requestHeaders(authority=b"cat"))
        self.assertEqual((fetched.status, fetched.body, fetched.headers.get(b"l5d-err")), (502, b"", None))

    @defer.inlineCallbacks
    def test_accessLog(self) -> Any:
        """
        C{h2AccessLog} writes one line per request.
        """
        path = os.path.join(tempfile.mkdtemp(prefix="h2-log-"), "access.log")
        origin = self.h.origin(ok)
        router = self.h.router(
            {
                "dtab": f"/svc/dog => /$/inet/127.0.0.1/{origin.port}",
                "h2AccessLog": path,
                "h2AccessLogFormat": "{method} {uri} {version} {status} {service}",
            }
        )
        yield fetch(self.h.client(router), requestHeaders(authority=b"dog", path=b"/logged"))

        def logged() -> bool:
            with open(path) as f:
                return "GET /logged HTTP/2.0 200 /svc/dog" in f.read()

        yield waitUntil(logged, TIMEOUT, "the access log line")

    @defer.inlineCallbacks
    def test_drain(self) -> Any:
        """
        Draining the router sends GOAWAY to its clients, lets in-flight
        requests finish, and closes the connections.
        """
        held: List[Any] = []
        origin = self.h.origin(held.append)
        router = self.h.router({"dtab": f"/svc/dog => /$/inet/127.0.0.1/{origin.port}"})
        client = self.h.client(router)
        d = fetch(client, requestHeaders(authority=b"dog"))
        yield waitUntil(lambda: bool(held), TIMEOUT, "the request to reach the origin")
        drained = router.drain(30.0)
        yield waitUntil(lambda: client.current is None, TIMEOUT, "the client to see GOAWAY")
        held[0].respondBytes(H2Headers([(b":status", b"200")]), b"finished")
        fetched = yield d
        self.assertEqual(fetched.body, b"finished")
        yield drained


class TLSTests(TestCase):
    """
    TLS with ALPN h2 on both sides of the router.
    """

    timeout = TIMEOUT

    @defer.inlineCallbacks
    def test_tlsBothSides(self) -> Any:
        """
        A TLS client negotiating h2 (with a client certificate) reaches a TLS
        origin (ALPN h2, name verified) through the router, which forwards
        C{x-forwarded-client-cert} for the verified certificate and drops
        the client's own value.
        """
        from linkerpy.config.structure import structure
        from linkerpy.tls.client import ClientTLSCreators
        from linkerpy.tls.config import ClientTlsConfig, ServerTlsConfig
        from linkerpy.tls.server import ServerTLS, wrapServerFactory
        from linkerpy.tls.testing import newCA, writeCA, writeLeaf

        directory = tempfile.mkdtemp(prefix="h2-tls-")
        ca = newCA()
        caPath = writeCA(ca, os.path.join(directory, "ca.pem"))
        originCert = writeLeaf(directory, "origin", ca, "origin.test")
        routerCert = writeLeaf(directory, "router", ca, "router.test")
        clientCert = writeLeaf(directory, "client", ca, "client.test")
        h = RouterHarness(self)

        def answer(exchange: Any) -> None:
            xfcc = exchange.request.headers.get(b"x-forwarded-client-cert") or b"none"
            body = b"secure " + (b"tls" if exchange.isSecure else b"plain")
            exchange.respondBytes(H2Headers([(b":status", b"200"), (b"x-seen-xfcc", xfcc)]), body)

        factory = originFactory(reactor, answer)
        originTLS = ServerTLS(structure(ServerTlsConfig, {"certPath": originCert.cert, "keyPath": originCert.key}, None), reactor, alpn=[b"h2"])
        port = reactor.listenTCP(0, wrapServerFactory(factory, originTLS), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: [c.abortConnection() for c in list(factory.connections)])
        router = h.router(
            {
                "dtab": f"/svc/dog => /$/inet/127.0.0.1/{port.getHost().port}",
                "servers": [{"port": 0, "tls": {"certPath": routerCert.cert, "keyPath": routerCert.key, "caCertPath": caPath}}],
                "client": {
                    "kind": "io.l5d.global",
                    "tls": {"commonName": "origin.test", "trustCertsBundle": caPath},
                    "forwardClientCert": True,
                },
            }
        )
        clientTLS = {
            "commonName": "router.test",
            "trustCertsBundle": caPath,
            "clientAuth": {"certPath": clientCert.cert, "keyPath": clientCert.key},
        }
        creator = ClientTLSCreators(reactor).creatorFor(structure(ClientTlsConfig, clientTLS, None), alpn=[b"h2"])
        pool = H2ClientPool(reactor, "127.0.0.1", router.port, tlsCreator=creator)
        self.addCleanup(pool.close)
        fetched = yield fetch(pool, requestHeaders(authority=b"dog", extra=[(b"x-forwarded-client-cert", b"Hash=forged")]))
        self.assertEqual((fetched.status, fetched.body), (200, b"secure tls"))
        xfcc = fetched.headers.get(b"x-seen-xfcc")
        self.assertTrue(xfcc.startswith(b"Hash="), xfcc)
        self.assertIn(b"DNS=client.test", xfcc)


    @defer.inlineCallbacks
    def test_originWithoutH2(self) -> Any:
        """
        A TLS origin that does not agree to ALPN h2 is a 502 explaining so;
        nothing falls back to HTTP/1.1.
        """
        from linkerpy.config.structure import structure
        from linkerpy.tls.config import ServerTlsConfig
        from linkerpy.tls.server import ServerTLS, wrapServerFactory
        from linkerpy.tls.testing import newCA, writeCA, writeLeaf

        directory = tempfile.mkdtemp(prefix="h2-tls-")
        ca = newCA()
        caPath = writeCA(ca, os.path.join(directory, "ca.pem"))
        originCert = writeLeaf(directory, "origin", ca, "origin.test")
        factory = originFactory(reactor, ok)
        originTLS = ServerTLS(
            structure(ServerTlsConfig, {"certPath": originCert.cert, "keyPath": originCert.key}, None), reactor, alpn=[b"http/1.1"]
        )
        port = reactor.listenTCP(0, wrapServerFactory(factory, originTLS), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        h = RouterHarness(self)
        router = h.router(
            {
                "dtab": f"/svc/dog => /$/inet/127.0.0.1/{port.getHost().port}",
                "client": {"kind": "io.l5d.global", "tls": {"commonName": "origin.test", "trustCertsBundle": caPath}},
            }
        )
        fetched = yield fetch(h.client(router), requestHeaders(authority=b"dog"))
        self.assertEqual(fetched.status, 502)
        self.assertIn(b"negotiate h2", fetched.headers.get(b"l5d-err"), fetched.headers.get(b"l5d-err"))
        self.assertEqual(factory.handler.exchanges, [])


class IdentifierTests(SynchronousTestCase):
    """
    L{HeaderPathIdentifier} (C{io.l5d.header.path}).
    """

    def identify(self, value: bytes, segments: Optional[int] = None, header: str = ":path") -> Any:
        from linkerpy.protocol.h2.identifiers import HeaderPathIdentifier
        from linkerpy.protocol.h2.server import H2Request

        identifier = HeaderPathIdentifier(Path.read("/svc"), header, segments)
        return identifier.identify(H2Request(H2Headers([(header.encode(), value)]), False))

    def test_allSegments(self) -> None:
        """
        Without C{segments} the whole path (query ignored) names the request.
        """
        self.assertEqual(self.identify(b"/pkg.Svc/Method?x=1").path.show, "/svc/pkg.Svc/Method")

    def test_segments(self) -> None:
        """
        With C{segments: 1}, a gRPC path is named by its service.
        """
        self.assertEqual(self.identify(b"/pkg.Svc/Method", 1).path.show, "/svc/pkg.Svc")

    def test_tooShort(self) -> None:
        """
        A path with fewer segments than required is unidentified.
        """
        self.assertIn("fewer than 3", self.identify(b"/a/b", 3).reason)

    def test_otherHeader(self) -> None:
        """
        Another header can hold the path.
        """
        self.assertEqual(self.identify(b"/users/1", 1, "x-route").path.show, "/svc/users")


class ConfigTests(SynchronousTestCase):
    """
    The h2 router configuration and plugins.
    """

    def structure(self, raw: Dict[str, Any]) -> Any:
        from linkerpy.config.structure import structurePlugin

        return structurePlugin(IProtocolPlugin, raw, h2Registry(), path="routers[0]", kindKey="protocol")

    def test_plugins(self) -> None:
        """
        The built-in h2 plugins provide their interfaces and are installed.
        """
        from linkerpy.plugins.registry import defaultRegistry
        from linkerpy.protocol.h2.plugins import h2Protocol, headerPathIdentifier

        verifyObject(IProtocolPlugin, h2Protocol)
        verifyObject(IIdentifierPlugin, headerPathIdentifier)
        registry = defaultRegistry()
        self.assertIs(registry.lookup(IProtocolPlugin, "h2"), h2Protocol)
        self.assertIs(registry.lookup(IIdentifierPlugin, "io.l5d.header.path"), headerPathIdentifier)

    def test_defaults(self) -> None:
        """
        Linkerd's h2 defaults, and linkerpy's limits.
        """
        config = self.structure({"protocol": "h2", "servers": [{}]}).config
        server = config.servers[0]
        self.assertEqual(
            (server.port, server.maxCallDepth, server.maxConcurrentStreamsPerConnection, server.initialStreamWindowBytes),
            (4142, 10, 250, 65535),
        )
        self.assertEqual((server.maxFrameBytes, server.maxHeaderListBytes, server.maxResetsPerSecond), (16384, 65536, 200))
        self.assertEqual([i.kind for i in config.identifier], ["io.l5d.header.token"])
        self.assertEqual(config.dstPrefix.show, "/svc")

    def test_serviceAndClientKeys(self) -> None:
        """
        h2 service keys (classifier, classification timeout, retry buffer)
        and client keys (windows, TLS...) are accepted per prefix.
        """
        config = self.structure(
            {
                "protocol": "h2",
                "servers": [{"port": 0}],
                "service": {
                    "kind": "io.l5d.static",
                    "configs": [
                        {
                            "prefix": "/svc/pkg.Echo",
                            "responseClassifier": {"kind": "io.l5d.h2.grpc.default"},
                            "classificationTimeoutMs": 250,
                            "retryBufferSize": {"requestBytes": 100, "responseBytes": 200},
                        }
                    ],
                },
                "client": {"kind": "io.l5d.global", "initialStreamWindowBytes": 1048576, "connectTimeoutMs": 1000},
            }
        ).config
        entry = config.service.config.configs[0]
        self.assertEqual((entry.classificationTimeoutMs, entry.retryBufferSize.responseBytes), (250, 200))
        self.assertEqual(config.client.config.initialStreamWindowBytes, 1048576)

    def test_badValues(self) -> None:
        """
        Out-of-range frame sizes and windows are configuration errors with
        key paths.
        """
        from linkerpy.config.errors import ConfigError

        with self.assertRaises(ConfigError) as e:
            self.structure({"protocol": "h2", "servers": [{"maxFrameBytes": 100, "initialStreamWindowBytes": 0}]})
        text = str(e.exception)
        self.assertIn("routers[0].servers[0].maxFrameBytes", text)
        self.assertIn("routers[0].servers[0].initialStreamWindowBytes", text)

    def test_httpOnlyIdentifierRejected(self) -> None:
        """
        An HTTP/1.1-only identifier is refused on an h2 router.
        """
        from linkerpy.config.errors import ConfigError

        with self.assertRaises(ConfigError) as e:
            self.structure({"protocol": "h2", "servers": [{}], "identifier": {"kind": "io.l5d.methodAndHost"}})
        self.assertIn("does not apply to h2 routers", str(e.exception))
