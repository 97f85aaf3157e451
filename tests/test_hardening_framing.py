# -*- test-case-name: tests.test_hardening_framing -*-
"""
The strict framing rule through the whole HTTP router (a real
L{linkerpy.linker.Linker} on 127.0.0.1, not just the server layer): every
ambiguous or malformed request gets its status (400, 414, 431, 501, 505...)
and a closed connection, and the origin receives nothing; every malformed
origin response becomes a 502 and is never passed on; the origin never
parses a request the client did not send (no desync).

The catalogue of C{tests/test_http_framing_cases.py} is replayed, plus the
cases below (CVE classes from C{hardening.md} section 1.3).
"""

from __future__ import annotations

from typing import Any, List, Tuple

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.support import routerPort, startLinker
from tests.test_hardening_origins import (
    FaultOrigin,
    completeResponses,
    connectRaw,
    routerConfig,
    sendRaw,
    startFaultOrigin,
    statusOf,
)
from tests.test_http_framing_cases import LIMIT_CASES, REQUEST_CASES, RESPONSE_CASES, req, resp

H = b"Host: example.com"
CH = b"Transfer-Encoding: chunked"
P = b"POST / HTTP/1.1"
G = b"GET / HTTP/1.1"

#: More request cases (name, bytes, status; 200 = forwarded).
EXTRA_REQUEST_CASES: List[Tuple[str, bytes, int]] = [
    # CVE-2019-18277 and friends: control characters around transfer codings
    ("TE vertical tab without space", req(P, H, b"Transfer-Encoding:\x0bchunked", body=b"0\r\n\r\n"), 400),
    ("TE trailing vertical tab", req(P, H, b"Transfer-Encoding: chunked\x0b", body=b"0\r\n\r\n"), 400),
    ("TE form feed", req(P, H, b"Transfer-Encoding:\x0cchunked", body=b"0\r\n\r\n"), 400),
    ("TE with NUL", req(P, H, b"Transfer-Encoding: chunked\x00", body=b"0\r\n\r\n"), 400),
    ("TE quoted", req(P, H, b'Transfer-Encoding: "chunked"', body=b"0\r\n\r\n"), 400),
    ("TE chunked with a parameter", req(P, H, b"Transfer-Encoding: chunked;q=1", body=b"0\r\n\r\n"), 400),
    ("TE identity then chunked", req(P, H, b"Transfer-Encoding: identity, chunked", body=b"0\r\n\r\n"), 501),
    # CVE-2021-32715, CVE-2023-40225: Content-Length shapes
    ("CL vertical tab", req(P, H, b"Content-Length:\x0b3", body=b"abc"), 400),
    ("CL plus sign without space", req(P, H, b"Content-Length:+3", body=b"abc"), 400),
    ("CL 2^64+1", req(P, H, b"Content-Length: 18446744073709551617", body=b"abc"), 400),
    ("CL one of two values empty", req(P, H, b"Content-Length: 3", b"Content-Length:", body=b"abc"), 400),
    ("CL with underscore digit separator", req(P, H, b"Content-Length: 1_0", body=b"abc"), 400),
    ("CL and TE identity", req(P, H, b"Content-Length: 3", b"Transfer-Encoding: identity", body=b"abc"), 400),
    # CVE-2023-25725: empty header names
    ("empty header name mid-block", req(G, b"X-A: 1", b": v", H), 400),
    ("empty header name without value", req(G, H, b":"), 400),
    # CVE-2019-9900: NUL anywhere
    ("NUL in Host", req(G, b"Host: exa\x00mple.com"), 400),
    ("NUL at end of a value", req(G, H, b"X-A: a\x00"), 400),
    ("NUL in a header name", req(G, H, b"X-\x00: a"), 400),
    ("NUL in a chunk size line", req(P, H, CH, body=b"3\x00\r\nabc\r\n0\r\n\r\n"), 400),
    ("NUL in a chunk extension", req(P, H, CH, body=b"3;a=\x00\r\nabc\r\n0\r\n\r\n"), 400),
    ("NUL in a trailer", req(P, H, CH, body=b"0\r\nX-T: a\x00\r\n\r\n"), 400),
    ("obs-text in a header name", req(G, H, b"X-\xe9: a"), 400),
    # CVE-2023-45539: '#' in targets
    ("fragment in absolute-form", req(b"GET http://example.com/a#b HTTP/1.1", H), 400),
    ("bare fragment", req(b"GET /# HTTP/1.1", H), 400),
    ("fragment in Host", req(G, b"Host: example.com#x"), 400),
    ("escaped # is data", req(b"GET /a%23b HTTP/1.1", H), 200),
    # Host and absolute-form agreement (HAProxy h1_host_normalization)
    ("Host has a port, absolute-form has none", req(b"GET http://example.com/ HTTP/1.1", b"Host: example.com:8080"), 400),
    ("absolute-form port 443 with http scheme", req(b"GET http://example.com:443/ HTTP/1.1", H), 400),
    ("absolute-form https default port", req(b"GET https://example.com:443/ HTTP/1.1", H), 200),
    ("absolute-form host in upper case", req(b"GET http://EXAMPLE.com/ HTTP/1.1", H), 200),
    ("absolute-form without Host on HTTP/1.1", req(b"GET http://example.com/ HTTP/1.1"), 400),
    ("Host port with six digits", req(G, b"Host: example.com:123456"), 400),
    # request line shape
    ("request line trailing space", req(b"GET / HTTP/1.1 ", H), 400),
    ("request line leading space", req(b" GET / HTTP/1.1", H), 400),
    ("CONNECT in origin-form", req(b"CONNECT / HTTP/1.1", H), 501),
    # chunk lines
    ("chunk extension of 5000 bytes", req(P, H, CH, body=b"3;a=" + b"b" * 5000 + b"\r\nabc\r\n0\r\n\r\n"), 400),
    ("empty chunk size", req(P, H, CH, body=b"\r\nabc\r\n0\r\n\r\n"), 400),
    # accepted controls
    ("GET with a Content-Length body", req(G, H, b"Content-Length: 3", body=b"abc"), 200),
    ("obs-text in a value", req(G, H, b"X-A: \xe9t\xe9"), 200),
    ("underscore header name is an ordinary field", req(P, H, b"Content_Length: 3"), 200),
]

#: More response cases (name, bytes, accepted).
EXTRA_RESPONSE_CASES: List[Tuple[str, bytes, bool]] = [
    ("TE vertical tab", resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding:\x0bchunked", body=b"2\r\nok\r\n0\r\n\r\n"), False),
    ("empty header name", resp(b"HTTP/1.1 200 OK", b": x", b"Content-Length: 2", body=b"ok"), False),
    ("header without colon", resp(b"HTTP/1.1 200 OK", b"X-A b", b"Content-Length: 2", body=b"ok"), False),
    ("CL with plus sign, no space", resp(b"HTTP/1.1 200 OK", b"Content-Length:+2", body=b"ok"), False),
    ("CL 2^64+1", resp(b"HTTP/1.1 200 OK", b"Content-Length: 18446744073709551617", body=b"ok"), False),
    ("status line without version", resp(b"200 OK", b"Content-Length: 2", body=b"ok"), False),
    ("status code with letters", resp(b"HTTP/1.1 2x0 OK", b"Content-Length: 2", body=b"ok"), False),
    ("HTTP/1.2 status line", resp(b"HTTP/1.2 200 OK", b"Content-Length: 2", body=b"ok"), False),
    ("unsolicited 101", resp(b"HTTP/1.1 101 Switching Protocols", b"Upgrade: websocket", b"Connection: Upgrade"), False),
    ("header section of 101 fields", resp(b"HTTP/1.1 200 OK", *[b"X-%d: v" % i for i in range(101)], b"Content-Length: 2", body=b"ok"), False),
    ("chunk size 17 digits", resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked", body=b"00000000000000002\r\nok\r\n0\r\n\r\n"), False),
    ("NUL in a trailer", resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked", body=b"2\r\nok\r\n0\r\nX: \x00\r\n\r\n"), False),
]


#: Accepted cases without a usable Host: the default identifier answers 400.
HOSTLESS = {"HTTP/1.0 without Host", "empty Host"}


def _rawResponses(cases: List[Tuple[str, bytes, bool]]) -> Any:
    """
    Origin behaviour: C{/case/<i>} answers with the raw bytes of case C{i}.
    """

    def behave(proto: Any, request: Any) -> None:
        index = int(request.target.split(b"/")[2])
        proto.transport.write(cases[index][1])
        proto.done()

    return behave


class RequestFramingTests(TestCase):
    """
    Hostile request framing through the router.
    """

    timeout = 600

    def startRouter(self, origin: FaultOrigin) -> int:
        linker = startLinker(self, routerConfig(origin.portNumber))
        return routerPort(linker)

    @inlineCallbacks
    def test_rejectedRequests(self) -> Any:
        """
        Every rejected case gets its status and a closed connection, and the
        origin parses no request from it (a chunked body that turns bad may
        have started streaming, but never completes).
        """
        origin = startFaultOrigin(self)
        port = self.startRouter(origin)
        failures = []
        cases = [c for c in REQUEST_CASES + LIMIT_CASES + EXTRA_REQUEST_CASES if c[2] != 200]
        for name, raw, status in cases:
            before = len(origin.requests)
            data = yield sendRaw(self, port, raw)
            if statusOf(data) != status:
                failures.append(f"{name}: client got {data[:50]!r}, expected {status}")
            elif b"\r\nConnection: close\r\n" not in data.split(b"\r\n\r\n", 1)[0] + b"\r\n":
                failures.append(f"{name}: the {status} did not announce Connection: close")
            if len(origin.requests) != before:
                failures.append(f"{name}: the origin parsed {origin.requests[before:]!r}")
        self.assertEqual(failures, [])
        self.assertGreater(len(cases), 120)

    @inlineCallbacks
    def test_acceptedRequests(self) -> Any:
        """
        The valid cases are forwarded once each and answered 200; the origin
        parses exactly as many requests as the clients sent (no desync).
        """
        origin = startFaultOrigin(self)
        port = self.startRouter(origin)
        failures = []
        cases = [c for c in REQUEST_CASES + EXTRA_REQUEST_CASES if c[2] == 200]
        for name, raw, _ in cases:
            before = len(origin.requests)
            client = yield connectRaw(self, port)
            client.transport.write(raw)
            data = yield client.waitFor(
                lambda d: completeResponses(1)(d.split(b"\r\n\r\n", 1)[1] if d.startswith(b"HTTP/1.1 100 ") else d)
            )
            client.transport.loseConnection()
            if name in HOSTLESS:
                # Valid framing, but the Host identifier cannot name it.
                if statusOf(data) != 400 or b"l5d-err: Unknown destination" not in data:
                    failures.append(f"{name}: {data[:60]!r}")
                expected = before
            else:
                if b"HTTP/1.1 200 " not in data:
                    failures.append(f"{name}: {data[:60]!r}")
                expected = before + 1
            if len(origin.requests) != expected:
                failures.append(f"{name}: origin parsed {len(origin.requests) - before} requests")
        self.assertEqual(failures, [])

    @inlineCallbacks
    def test_pipelinedSmugglingAttempts(self) -> Any:
        """
        Classic CL.TE, TE.CL and TE.TE payloads followed by a pipelined
        request: 400, and the origin sees neither request.
        """
        origin = startFaultOrigin(self)
        port = self.startRouter(origin)
        smuggled = b"GET /smuggled HTTP/1.1\r\nHost: example.com\r\n\r\n"
        payloads = [
            b"POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
            b"POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\n"
            + smuggled
            + b"\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\nTransfer-encoding: identity\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\n",
        ]
        for payload in payloads:
            data = yield sendRaw(self, port, payload + smuggled)
            self.assertEqual(statusOf(data), 400, payload)
            self.assertEqual(data.count(b"HTTP/1.1 "), 1)
        self.assertEqual(origin.requests, [])

    @inlineCallbacks
    def test_pipelinedRequestsStayInOrder(self) -> Any:
        """
        Ten pipelined requests (one with a body) are answered in order and
        the origin parses exactly those ten.
        """
        origin = startFaultOrigin(self)
        port = self.startRouter(origin)
        client = yield connectRaw(self, port)
        raw = b""
        for i in range(10):
            if i == 4:
                raw += b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nbody4"
            else:
                raw += b"GET /slow/%d HTTP/1.1\r\nHost: h\r\n\r\n" % (10 * (10 - i))
        client.transport.write(raw)
        data = yield client.waitFor(completeResponses(10))
        bodies = [part.split(b"\r\n\r\n", 1)[1][:5] for part in data.split(b"HTTP/1.1 ")[1:]]
        self.assertEqual(bodies, [b"slow"] * 4 + [b"body4"] + [b"slow"] * 5)
        self.assertEqual([r.target for r in origin.requests], [b"/slow/%d" % (10 * (10 - i)) if i != 4 else b"/echo" for i in range(10)])

    @inlineCallbacks
    def test_normalisation(self) -> Any:
        """
        The origin gets a re-serialised head: origin-form target, Host from
        the request, no hop-by-hop fields (nor those Connection names, nor
        Upgrade: h2c), trimmed values (CVE-2019-18802), one Content-Length.
        """
        origin = startFaultOrigin(self)
        port = self.startRouter(origin)
        client = yield connectRaw(self, port)
        client.transport.write(
            b"POST http://example.com/p?q HTTP/1.1\r\nHost: example.com\r\nConnection: x-secret, HTTP2-Settings, Upgrade\r\n"
            b"X-Secret: 1\r\nKeep-Alive: 3\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nProxy-Authorization: p\r\nX-Kept:   v  \t\r\n"
            b"Content-Length: 2\r\nContent-Length: 2\r\n\r\nhi"
        )
        yield client.waitFor(completeResponses(1))
        [seen] = origin.requests
        self.assertEqual((seen.method, seen.target, seen.body), (b"POST", b"/p?q", b"hi"))
        self.assertEqual(seen.header(b"host"), b"example.com")
        self.assertEqual(seen.header(b"x-kept"), b"v")
        self.assertIn(b"\r\nX-Kept: v\r\n", seen.raw)
        self.assertEqual(seen.headers[b"content-length"], [b"2"])
        for name in (b"x-secret", b"keep-alive", b"proxy-connection", b"te", b"upgrade", b"http2-settings", b"proxy-authorization"):
            self.assertNotIn(name, seen.headers, name)
        self.assertNotIn(b"h2c", seen.raw)

    @inlineCallbacks
    def test_clientContextHeadersCleared(self) -> Any:
        """
        On a server with clearContext, a client's l5d-dtab cannot re-route
        the request and no inbound l5d-* header reaches the origin.
        """
        origin = startFaultOrigin(self)
        other = startFaultOrigin(self)
        linker = startLinker(self, routerConfig(origin.portNumber, server={"clearContext": True}))
        data = yield sendRaw(
            self,
            routerPort(linker),
            b"GET / HTTP/1.1\r\nHost: h\r\nl5d-dtab: /svc=>/$/inet/127.0.0.1/%d\r\nl5d-ctx-deadline: 1\r\n"
            b"l5d-ctx-x: y\r\nConnection: close\r\n\r\n" % other.portNumber,
        )
        self.assertEqual(statusOf(data), 200)
        self.assertEqual(other.requests, [])
        [seen] = origin.requests
        self.assertNotIn(b"l5d-dtab", seen.headers)
        self.assertNotIn(b"l5d-ctx-x", seen.headers)
        self.assertNotIn(b"l5d-ctx-deadline", seen.headers)


class ResponseFramingTests(TestCase):
    """
    Malformed origin responses through the router.
    """

    timeout = 600

    @inlineCallbacks
    def test_malformedResponses(self) -> Any:
        """
        Every malformed response case becomes a 502 for the client; nothing
        of it is passed on; well-formed cases pass.
        """
        cases = RESPONSE_CASES + EXTRA_RESPONSE_CASES
        origin = startFaultOrigin(self, _rawResponses(cases))
        linker = startLinker(self, routerConfig(origin.portNumber))
        port = routerPort(linker)
        failures = []
        for i, (name, raw, ok) in enumerate(cases):
            data = yield sendRaw(self, port, b"GET /case/%d HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" % i)
            if ok:
                if statusOf(data) != 200 or b"ok" not in data.partition(b"\r\n\r\n")[2]:
                    failures.append(f"{name}: {data[:80]!r}")
            else:
                if statusOf(data) != 502:
                    failures.append(f"{name}: client got {data[:80]!r}, expected 502")
                head, _, body = data.partition(b"\r\n\r\n")
                if b"X-A" in head or b"\r\nx-0:" in head.lower() or body.startswith(b"ok"):
                    failures.append(f"{name}: passed on: {data[:120]!r}")
        self.assertEqual(failures, [])

    @inlineCallbacks
    def test_unsolicitedSecondResponse(self) -> Any:
        """
        An origin sending a second, unsolicited response after the first
        (response splitting): the first is relayed, the connection is not
        reused, and no client ever sees the smuggled one.
        """
        origin = startFaultOrigin(self)
        linker = startLinker(self, routerConfig(origin.portNumber))
        port = routerPort(linker)
        client = yield connectRaw(self, port)
        client.transport.write(b"GET /smuggle HTTP/1.1\r\nHost: h\r\n\r\n")
        data = yield client.waitFor(completeResponses(1))
        self.assertTrue(data.endswith(b"ok"), data)
        for i in range(3):
            client.transport.write(b"GET /ok HTTP/1.1\r\nHost: h\r\n\r\n")
            data = yield client.waitFor(completeResponses(2 + i))
        self.assertNotIn(b"smuggled", data)
        self.assertEqual(data.count(b"HTTP/1.1 200 "), 4)
        # The confused connection was dropped: the /ok requests used a new one.
        self.assertEqual(len(origin.connections), 2)
        self.assertEqual(len(origin.requests), 4)
