# -*- test-case-name: tests.test_http_framing -*-
"""
Tests for the strict HTTP/1.1 parser, chunked decoder, headers, heads and
body sources.
"""

from __future__ import annotations

from typing import Any, List, Optional

from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from linkerpy.protocol.http.errors import BodyAborted, FramingError, RequestRejected
from linkerpy.protocol.http.framing import ChunkedDecoder
from linkerpy.protocol.http.headers import Headers, connectionTokens, stripHopByHop
from linkerpy.protocol.http.message import RequestHead, ResponseHead, responseHasBody
from linkerpy.protocol.http.parser import (
    HeadLimits,
    checkPartialHead,
    parseFieldBlock,
    parseRequestHead,
    parseResponseHead,
)
from linkerpy.protocol.http.stream import EMPTY_BODY, BytesBody, ConnectionBody, ReplayBuffer, collect
from tests.test_http_framing_cases import LIMIT_CASES, REQUEST_CASES, RESPONSE_CASES

LIMITS = HeadLimits()


def parseRequest(raw: bytes, limits: HeadLimits = LIMITS) -> RequestHead:
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        checkPartialHead(raw, limits)
        raise AssertionError("incomplete head")
    return parseRequestHead(raw, end, limits)


def requestOutcome(raw: bytes, limits: HeadLimits = LIMITS) -> Any:
    """
    200 if the request (head and any chunked body) is accepted, else the
    rejection status.
    """
    try:
        end = raw.find(b"\r\n\r\n")
        if end < 0:
            checkPartialHead(raw, limits)
            return "incomplete"
        head = parseRequestHead(raw, end, limits)
        if head.chunked:
            decoder = ChunkedDecoder(limits)
            if decoder.feed(raw[end + 4 :], lambda data: None) is None:
                return "incomplete body"
        return 200
    except RequestRejected as e:
        return e.status
    except FramingError:
        return 400


def responseOutcome(raw: bytes, method: bytes = b"GET") -> bool:
    try:
        end = raw.find(b"\r\n\r\n")
        if end < 0:
            checkPartialHead(raw, LIMITS, request=False)
            return True
        head, hasBody = parseResponseHead(raw, end, method)
        if head.chunked:
            ChunkedDecoder(LIMITS).feed(raw[end + 4 :], lambda data: None)
        return True
    except FramingError:
        return False


class RequestCatalogueTests(SynchronousTestCase):
    """
    Every case of the shared catalogue gets the expected outcome.
    """

    def test_catalogue(self) -> None:
        """
        Each request in the catalogue is accepted or rejected with its
        expected status.
        """
        failures = []
        for name, raw, status in REQUEST_CASES + LIMIT_CASES:
            got = requestOutcome(raw)
            if got != status:
                failures.append(f"{name}: got {got}, expected {status}")
        self.assertEqual(failures, [])

    def test_responseCatalogue(self) -> None:
        """
        Each response in the catalogue is accepted or rejected as expected.
        """
        failures = []
        for name, raw, ok in RESPONSE_CASES:
            got = responseOutcome(raw)
            if got != ok:
                failures.append(f"{name}: got {got}, expected {ok}")
        self.assertEqual(failures, [])


class RequestHeadTests(SynchronousTestCase):
    """
    What a valid request head parses into.
    """

    def test_fields(self) -> None:
        """
        Names keep their case, values lose surrounding whitespace, order is
        kept.
        """
        head = parseRequest(b"GET /a?b=c HTTP/1.1\r\nHost: h\r\nX-Foo:  bar \t\r\nx-foo: baz\r\n\r\n")
        self.assertEqual(head.method, b"GET")
        self.assertEqual(head.target, b"/a?b=c")
        self.assertEqual(head.version, b"HTTP/1.1")
        self.assertEqual(list(head.headers), [(b"Host", b"h"), (b"X-Foo", b"bar"), (b"x-foo", b"baz")])
        self.assertEqual(head.headers.getAll(b"X-FOO"), [b"bar", b"baz"])
        self.assertIsNone(head.contentLength)
        self.assertFalse(head.chunked)
        self.assertFalse(head.hasBody)

    def test_hopByHopStripped(self) -> None:
        """
        Hop-by-hop fields and every field named by Connection are removed
        (but Host cannot be removed that way).
        """
        head = parseRequest(
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret, host\r\nX-Secret: 1\r\n"
            b"Keep-Alive: 5\r\nProxy-Connection: x\r\nTE: trailers\r\nTrailer: x\r\nUpgrade: foo\r\n"
            b"Proxy-Authorization: p\r\nProxy-Authenticate: q\r\nX-Kept: 2\r\n\r\n"
        )
        self.assertEqual(list(head.headers), [(b"Host", b"h"), (b"X-Kept", b"2")])
        self.assertIsNone(head.upgrade)

    def test_framingFieldsOnHead(self) -> None:
        """
        Content-Length and Transfer-Encoding become attributes, not headers.
        """
        head = parseRequest(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\n")
        self.assertEqual(head.contentLength, 3)
        self.assertNotIn(b"content-length", head.headers)
        head = parseRequest(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
        self.assertTrue(head.chunked)
        self.assertNotIn(b"transfer-encoding", head.headers)

    def test_keepAlive(self) -> None:
        """
        HTTP/1.1 is persistent unless C{Connection: close}; HTTP/1.0 only with
        C{Connection: keep-alive}.
        """
        cases = [
            (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", True),
            (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", False),
            (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Keep-Alive, Close\r\n\r\n", False),
            (b"GET / HTTP/1.0\r\n\r\n", False),
            (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", True),
            (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", False),
        ]
        for raw, expected in cases:
            self.assertEqual(parseRequest(raw).keepAlive, expected, raw)

    def test_absoluteFormRewritten(self) -> None:
        """
        An absolute-form target becomes origin-form; without Host (HTTP/1.0)
        the authority becomes the Host.
        """
        head = parseRequest(b"GET HTTP://example.com/p?q HTTP/1.1\r\nHost: EXAMPLE.com:80\r\n\r\n")
        self.assertEqual(head.target, b"/p?q")
        self.assertEqual(head.scheme, b"http")
        self.assertEqual(head.headers.get(b"host"), b"EXAMPLE.com:80")
        head = parseRequest(b"GET https://example.com:443 HTTP/1.0\r\n\r\n")
        self.assertEqual(head.target, b"/")
        self.assertEqual(head.headers.get(b"host"), b"example.com:443")
        head = parseRequest(b"GET http://example.com?x HTTP/1.0\r\n\r\n")
        self.assertEqual(head.target, b"/?x")

    def test_upgrade(self) -> None:
        """
        C{Connection: upgrade} plus C{Upgrade} on HTTP/1.1 marks an upgrade;
        C{h2c} and upgrades without the Connection token are stripped.
        """
        head = parseRequest(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        self.assertEqual(head.upgrade, b"websocket")
        self.assertTrue(head.isUpgrade)
        self.assertNotIn(b"upgrade", head.headers)
        for raw in [
            b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: x\r\n\r\n",
            b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        ]:
            head = parseRequest(raw)
            self.assertIsNone(head.upgrade, raw)
            self.assertNotIn(b"http2-settings", head.headers)

    def test_expectContinue(self) -> None:
        """
        C{Expect: 100-continue} is recorded and not kept as a header; it is
        ignored on HTTP/1.0.
        """
        head = parseRequest(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n")
        self.assertTrue(head.expectContinue)
        self.assertNotIn(b"expect", head.headers)
        head = parseRequest(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
        self.assertFalse(head.expectContinue)

    def test_connectWhenAllowed(self) -> None:
        """
        CONNECT with an authority-form target is accepted when enabled.
        """
        limits = HeadLimits(allowConnect=True)
        head = parseRequest(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", limits)
        self.assertEqual(head.target, b"example.com:443")
        self.assertEqual(requestOutcome(b"CONNECT example.com HTTP/1.1\r\nHost: example.com\r\n\r\n", limits), 400)
        self.assertEqual(requestOutcome(b"CONNECT / HTTP/1.1\r\nHost: example.com\r\n\r\n", limits), 400)

    def test_limitsConfigurable(self) -> None:
        """
        The line, section and count limits follow the configuration.
        """
        small = HeadLimits(maxInitialLine=20, maxHeaderBytes=40, maxHeaderCount=2)
        self.assertEqual(requestOutcome(b"GET /" + b"a" * 20 + b" HTTP/1.1\r\nHost: h\r\n\r\n", small), 414)
        self.assertEqual(requestOutcome(b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 40 + b"\r\n\r\n", small), 431)
        self.assertEqual(requestOutcome(b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n", small), 431)
        self.assertEqual(requestOutcome(b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\n\r\n", small), 200)

    def test_partialHeadLimits(self) -> None:
        """
        An incomplete head is rejected as soon as it exceeds a limit or shows
        a bare line ending, without waiting for its end.
        """
        with self.assertRaises(RequestRejected) as e:
            checkPartialHead(b"GET /" + b"a" * 5000, LIMITS)
        self.assertEqual(e.exception.status, 414)
        with self.assertRaises(RequestRejected) as e:
            checkPartialHead(b"GET / HTTP/1.1\r\nX: " + b"a" * 9000, LIMITS)
        self.assertEqual(e.exception.status, 431)
        with self.assertRaises(RequestRejected) as e:
            checkPartialHead(b"GET / HTTP/1.1\nHost: a\n", LIMITS)
        self.assertEqual(e.exception.status, 400)
        with self.assertRaises(RequestRejected):
            checkPartialHead(b"GET / HTTP/1.1\r\nHost: a\rb", LIMITS)
        checkPartialHead(b"GET / HTTP/1.1\r\nHost: a\r", LIMITS)

    def test_rejectionReasons(self) -> None:
        """
        Rejections say what was wrong.
        """
        with self.assertRaises(RequestRejected) as e:
            parseRequest(b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n")
        self.assertIn("folding", e.exception.reason)
        with self.assertRaises(RequestRejected) as e:
            parseRequest(b"GET / HTTP/1.1\r\nHost: h\r\nX : a\r\n\r\n")
        self.assertIn("whitespace", e.exception.reason)


class RequestSerializeTests(SynchronousTestCase):
    """
    Requests are re-serialised from the head.
    """

    def test_roundTrip(self) -> None:
        """
        A parsed head serialises as HTTP/1.1 with its own framing field.
        """
        head = parseRequest(b"POST /x HTTP/1.1\r\nHost: h\r\nX-A:  1 \r\nContent-Length: 3\r\n\r\n")
        self.assertEqual(
            head.serialize(), b"POST /x HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nContent-Length: 3\r\n\r\n"
        )
        head = parseRequest(b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
        self.assertEqual(head.serialize(), b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")

    def test_http10WithoutHost(self) -> None:
        """
        An HTTP/1.0 request without Host is forwarded as HTTP/1.1 with an
        empty Host, as Linkerd does.
        """
        head = parseRequest(b"GET / HTTP/1.0\r\n\r\n")
        self.assertEqual(head.serialize(), b"GET / HTTP/1.1\r\nHost: \r\n\r\n")

    def test_upgrade(self) -> None:
        """
        Upgrade requests carry C{Connection: upgrade} and their C{Upgrade}.
        """
        head = parseRequest(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
        self.assertEqual(
            head.serialize(), b"GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        )

    def test_bodylessPost(self) -> None:
        """
        A router-made POST without a body gets C{Content-Length: 0}.
        """
        self.assertIn(b"Content-Length: 0\r\n", RequestHead(b"POST", b"/", Headers([(b"Host", b"h")])).serialize())


class ResponseHeadTests(SynchronousTestCase):
    """
    Response framing rules (RFC 9112 section 6.3).
    """

    def parse(self, raw: bytes, method: bytes = b"GET") -> Any:
        return parseResponseHead(raw, raw.find(b"\r\n\r\n"), method)

    def test_bodyRules(self) -> None:
        """
        HEAD, 1xx, 204 and 304 responses have no body; others are framed by
        CL, chunked, or the connection closing.
        """
        head, hasBody = self.parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", b"HEAD")
        self.assertFalse(hasBody)
        self.assertEqual(head.contentLength, 5)
        head, hasBody = self.parse(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n")
        self.assertFalse(hasBody)
        head, hasBody = self.parse(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        self.assertFalse(hasBody)
        self.assertIsNone(head.contentLength)
        head, hasBody = self.parse(b"HTTP/1.1 200 OK\r\n\r\n")
        self.assertTrue(hasBody)
        self.assertFalse(head.keepAlive)
        head, hasBody = self.parse(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n")
        self.assertFalse(head.keepAlive)
        head, hasBody = self.parse(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n")
        self.assertTrue(head.keepAlive)
        self.assertFalse(responseHasBody(200, b"CONNECT"))
        self.assertTrue(responseHasBody(404, b"CONNECT"))

    def test_hopByHopStripped(self) -> None:
        """
        Response hop-by-hop fields, including those named by Connection, are
        removed.
        """
        head, _ = self.parse(
            b"HTTP/1.1 200 OK\r\nConnection: x-a\r\nX-A: 1\r\nKeep-Alive: t\r\nX-B: 2\r\nContent-Length: 0\r\n\r\n"
        )
        self.assertEqual(list(head.headers), [(b"X-B", b"2")])

    def test_serializeRoundTrip(self) -> None:
        """
        L{ResponseHead.serialize} produces what parses back to the same head.
        """
        head, _ = self.parse(b"HTTP/1.1 404 Nope\r\nX-A: b\r\nTransfer-Encoding: chunked\r\n\r\n")
        again, _ = self.parse(head.serialize())
        self.assertEqual((again.status, again.reason, again.headers, again.chunked), (404, b"Nope", head.headers, True))


class ChunkedDecoderTests(SynchronousTestCase):
    """
    Strict chunked decoding.
    """

    def decode(self, data: bytes, step: Optional[int] = None) -> Any:
        decoder = ChunkedDecoder(LIMITS)
        out: List[bytes] = []
        if step is None:
            rest = decoder.feed(data, out.append)
        else:
            rest = None
            for i in range(0, len(data), step):
                rest = decoder.feed(data[i : i + step], out.append)
                if rest is not None:
                    rest += data[i + step :]
                    break
        return b"".join(out), rest, decoder.trailers

    def test_valid(self) -> None:
        """
        Chunks, extensions, upper-case hex and trailers decode, whatever the
        split of the input.
        """
        data = b'5;a=b ; c="x;y"\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\nContent-Length: 9\r\n\r\nNEXT'
        for step in (None, 1, 2, 3, 7):
            body, rest, trailers = self.decode(data, step)
            self.assertEqual(body, b"hello0123456789")
            self.assertEqual(rest, b"NEXT")
            self.assertEqual(list(trailers), [(b"X-T", b"1")])

    def test_invalid(self) -> None:
        """
        Malformed size lines, data not followed by CRLF and bad trailers are
        rejected, whatever the split of the input.
        """
        bad = [
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXY0\r\n\r\n",
            b"5;\r\nhello\r\n0\r\n\r\n",
            b"5;a=\r\nhello\r\n0\r\n\r\n",
            b"10000000000000005\r\nhello\r\n",
            b"0\r\nX-T 1\r\n\r\n",
            b"0\r\nX-T: 1\nY: 2\r\n\r\n",
            b"5" + b";a=b" * 2000 + b"\r\n",
        ]
        for data in bad:
            for step in (None, 1, 3):
                self.assertRaises(FramingError, self.decode, data, step)

    def test_sizeLineBounded(self) -> None:
        """
        An endless chunk-size line is rejected once past the limit.
        """
        decoder = ChunkedDecoder(LIMITS)
        decoder.feed(b"5;a=b", lambda d: None)
        self.assertRaises(FramingError, decoder.feed, b";a=b" * 1100, lambda d: None)


class HeadersTests(SynchronousTestCase):
    """
    L{Headers}.
    """

    def test_operations(self) -> None:
        """
        Lookups ignore case; set replaces all values in place; remove returns
        a count.
        """
        h = Headers([(b"A", b"1"), (b"b", b"2"), (b"a", b"3")])
        self.assertEqual(h.get(b"a"), b"1")
        self.assertEqual(h.getLast(b"A"), b"3")
        self.assertEqual(h.getAll(b"A"), [b"1", b"3"])
        self.assertIn(b"B", h)
        h.set(b"A", b"9")
        self.assertEqual(list(h), [(b"A", b"9"), (b"b", b"2")])
        h.add(b"l5d-x", b"1")
        h.add(b"L5D-Y", b"2")
        self.assertEqual(h.removePrefix(b"L5d-"), 2)
        self.assertEqual(h.remove(b"b"), 1)
        self.assertEqual(h.serialize(), b"A: 9\r\n")

    def test_validation(self) -> None:
        """
        Names and values that would break framing are refused.
        """
        h = Headers()
        for name, value in [(b"A B", b"x"), (b"", b"x"), (b"A", b"x\r\nB: y"), (b"A", b" x"), (b"A", b"\x00")]:
            self.assertRaises(ValueError, h.add, name, value)
            self.assertRaises(ValueError, h.set, name, value)

    def test_stripHopByHop(self) -> None:
        """
        L{stripHopByHop} removes the fixed list and the Connection-named
        fields.
        """
        h = Headers([(b"Connection", b"close, X-A"), (b"X-A", b"1"), (b"TE", b"trailers"), (b"X-B", b"2")])
        self.assertEqual(stripHopByHop(h), 3)
        self.assertEqual(list(h), [(b"X-B", b"2")])
        self.assertEqual(connectionTokens(b" a, ,B ,"), [b"a", b"b"])

    def test_fieldBlock(self) -> None:
        """
        Trailer sections drop fields that may not be trailers.
        """
        h = parseFieldBlock(b"X-A: 1\r\nContent-Length: 2\r\nHost: x\r\n")
        self.assertEqual(list(h), [(b"X-A", b"1")])


class _Owner:
    def __init__(self) -> None:
        self.events: List[str] = []

    def _bodyPause(self, source: Any) -> None:
        self.events.append("pause")

    def _bodyResume(self, source: Any) -> None:
        self.events.append("resume")

    def _bodyAbort(self, source: Any, reason: Any) -> None:
        self.events.append("abort")

    def _bodyAttached(self, source: Any) -> None:
        self.events.append("attached")


class _Consumer:
    def __init__(self) -> None:
        self.data: List[bytes] = []
        self.ended: Any = "no"
        self.failure: Optional[Failure] = None

    def dataReceived(self, data: bytes) -> None:
        self.data.append(data)

    def bodyEnd(self, trailers: Any) -> None:
        self.ended = trailers

    def bodyAborted(self, reason: Failure) -> None:
        self.failure = reason


class StreamTests(SynchronousTestCase):
    """
    Body sources.
    """

    def test_connectionBodyBuffersUntilAttached(self) -> None:
        """
        Data before attach is buffered; past the limit the owner is paused,
        and attaching resumes it.
        """
        owner = _Owner()
        body = ConnectionBody(owner, None, bufferLimit=4)
        body._deliver(b"abc")
        self.assertEqual(owner.events, [])
        body._deliver(b"de")
        self.assertEqual(owner.events, ["pause"])
        consumer = _Consumer()
        body.attach(consumer)
        self.assertEqual(consumer.data, [b"abc", b"de"])
        self.assertEqual(owner.events, ["pause", "attached", "resume"])
        body._deliver(b"f")
        body._finish(None)
        self.assertEqual(consumer.data, [b"abc", b"de", b"f"])
        self.assertIsNone(consumer.ended)

    def test_connectionBodyPauseResumeAbort(self) -> None:
        """
        The consumer's pause/resume/abort reach the owner.
        """
        owner = _Owner()
        body = ConnectionBody(owner, 10)
        consumer = _Consumer()
        body.attach(consumer)
        body.pause()
        body.pause()
        body.resume()
        body.abort()
        self.assertEqual(owner.events, ["attached", "pause", "resume", "abort"])
        body._deliver(b"late")
        self.assertEqual(consumer.data, [])

    def test_connectionBodyFailsLateAttach(self) -> None:
        """
        A body that failed before anyone attached reports it on attach.
        """
        body = ConnectionBody(_Owner(), None)
        body._fail(Failure(BodyAborted("gone")))
        consumer = _Consumer()
        body.attach(consumer)
        self.assertIsInstance(consumer.failure.value, BodyAborted)

    def test_bytesAndEmpty(self) -> None:
        """
        In-memory bodies deliver synchronously.
        """
        self.assertEqual(self.successResultOf(collect(BytesBody(b"abc"))), b"abc")
        self.assertEqual(self.successResultOf(collect(EMPTY_BODY)), b"")
        self.failureResultOf(collect(BytesBody(b"abcdef"), maxBytes=3), BodyAborted)

    def test_replayWithinLimit(self) -> None:
        """
        A second view replays the kept bytes then continues with the live
        body.
        """
        owner = _Owner()
        source = ConnectionBody(owner, None)
        replay = ReplayBuffer(source, maxBytes=10)
        first = _Consumer()
        replay.newSource().attach(first)
        source._deliver(b"abc")
        second = _Consumer()
        replay.newSource().attach(second)
        source._deliver(b"de")
        source._finish(None)
        self.assertEqual(first.data, [b"abc"])
        self.assertEqual(second.data, [b"abc", b"de"])
        self.assertIsNone(second.ended)
        third = _Consumer()
        replay.newSource().attach(third)
        self.assertEqual(b"".join(third.data), b"abcde")
        self.assertTrue(replay.retryable)

    def test_replayBeyondLimit(self) -> None:
        """
        Past C{maxBytes} the body is not kept and no new view can be made.
        """
        source = ConnectionBody(_Owner(), None)
        replay = ReplayBuffer(source, maxBytes=4)
        consumer = _Consumer()
        replay.newSource().attach(consumer)
        source._deliver(b"abcdef")
        self.assertFalse(replay.retryable)
        self.assertRaises(ValueError, replay.newSource)
        self.assertEqual(consumer.data, [b"abcdef"])
