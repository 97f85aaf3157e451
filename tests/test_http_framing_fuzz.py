# -*- test-case-name: tests.test_http_framing_fuzz -*-
"""
Property-based fuzzing of the request and response head parsers and the
chunked decoder: they never crash (only accept or raise the framing error),
and what they accept re-serialises to something that parses the same.
"""

from __future__ import annotations

from typing import Any, List, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from linkerpy.protocol.http.errors import FramingError, RequestRejected
from linkerpy.protocol.http.framing import ChunkedDecoder
from linkerpy.protocol.http.parser import HeadLimits, checkPartialHead, parseRequestHead, parseResponseHead

LIMITS = HeadLimits(allowConnect=True)
FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NASTY = st.sampled_from(
    [b"\r", b"\n", b"\x00", b"\x7f", b"\t", b" ", b":", b",", b";", b'"', b"\x0b", b"\xff", b"%", b"#", b"/", b"?", b"@"]
)
TEXT = st.lists(st.one_of(st.binary(min_size=0, max_size=6), NASTY), max_size=6).map(b"".join)
def mostly(valid: Any, noise: Any = None) -> Any:
    """
    Usually a valid choice, sometimes noise.
    """
    noise = TEXT if noise is None else noise
    return st.integers(0, 99).flatmap(lambda i: noise if i < 8 else valid)


TOKENS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*", min_size=1, max_size=8).map(
    lambda t: t.encode("ascii")
)
NAMES = mostly(
    st.sampled_from(
        [
            b"Host",
            b"host",
            b"Content-Length",
            b"Transfer-Encoding",
            b"Connection",
            b"Upgrade",
            b"Expect",
            b"Keep-Alive",
            b"TE",
            b"X-Custom",
            b"Proxy-Connection",
        ]
    )
    | TOKENS.map(lambda t: b"X-" + t),
)
VALUES = mostly(
    st.sampled_from(
        [
            b"example.com",
            b"chunked",
            b"gzip, chunked",
            b"5",
            b"5, 5",
            b"0",
            b"close",
            b"keep-alive",
            b"upgrade",
            b"websocket",
            b"100-continue",
            b" x ",
            b"",
        ]
    )
    | TOKENS,
)
LINE_ENDS = mostly(st.just(b"\r\n"), st.sampled_from([b"\n", b"\r", b" \r\n", b"\r\r\n"]))
METHODS = mostly(st.sampled_from([b"GET", b"POST", b"OPTIONS", b"CONNECT", b"HEAD", b"get"]) | TOKENS, TEXT | st.just(b"G T"))
TARGETS = mostly(
    st.sampled_from([b"/", b"/a?b=c", b"*", b"http://example.com/x", b"example.com:443", b"/%41", b"//x"])
    | TOKENS.map(lambda t: b"/" + t),
    TEXT.map(lambda t: b"/" + t) | TEXT,
)
VERSIONS = mostly(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]), st.sampled_from([b"HTTP/2.0", b"http/1.1", b"HTTP/1.1 "]))


@st.composite
def requestHeads(draw: Any) -> bytes:
    line = draw(METHODS) + b" " + draw(TARGETS) + b" " + draw(VERSIONS)
    parts = [line]
    if draw(st.integers(0, 3)):
        parts.append(b"Host: " + draw(st.sampled_from([b"example.com", b"example.com:80", b"[::1]"])) + b"\r\n")
    for name, value, end in draw(st.lists(st.tuples(NAMES, VALUES, LINE_ENDS), max_size=8)):
        parts.append(name + b":" + (b" " if draw(st.booleans()) else b"") + value + end)
    return parts[0] + draw(LINE_ENDS) + b"".join(parts[1:]) + b"\r\n"


@st.composite
def responseHeads(draw: Any) -> bytes:
    status = draw(mostly(st.sampled_from([b"200", b"101", b"204", b"304", b"404", b"999", b"20"])))
    line = draw(st.sampled_from([b"HTTP/1.1"] * 4 + [b"HTTP/1.0", b"HTTP/2"])) + b" " + status + b" " + draw(mostly(TOKENS))
    parts = [line, draw(LINE_ENDS)]
    for name, value, end in draw(st.lists(st.tuples(NAMES, VALUES, LINE_ENDS), max_size=8)):
        parts.append(name + b": " + value + end)
    return b"".join(parts) + b"\r\n"


def comparable(head: Any) -> Tuple[Any, ...]:
    # an empty body may be announced as Content-Length: 0 or not at all
    return (head.method, head.target, list(head.headers), head.contentLength or None, head.chunked, head.upgrade)


class RequestParserFuzzTests(SynchronousTestCase):
    """
    Fuzzing the request head parser.
    """

    @FUZZ
    @given(requestHeads())
    def test_grammarFuzz(self, raw: bytes) -> None:
        """
        Near-valid heads are accepted or rejected cleanly, and accepted ones
        re-serialise to a head that parses the same.
        """
        self.check(raw)

    @FUZZ
    @given(st.binary(max_size=300))
    def test_randomBytes(self, raw: bytes) -> None:
        """
        Arbitrary bytes never crash the parser.
        """
        self.check(raw + b"\r\n\r\n")
        self.check(b"GET / HTTP/1.1\r\n" + raw + b"\r\n\r\n")

    def check(self, raw: bytes) -> None:
        end = raw.find(b"\r\n\r\n")
        try:
            if end < 0:
                checkPartialHead(raw, LIMITS)
                return
            head = parseRequestHead(raw, end, LIMITS)
        except RequestRejected as e:
            self.assertIn(e.status, (400, 414, 417, 431, 501, 505))
            return
        again = head.serialize()
        end2 = again.find(b"\r\n\r\n")
        self.assertEqual(end2, len(again) - 4)
        reparsed = parseRequestHead(again, end2, LIMITS)
        expected = comparable(head)
        if b"host" not in head.headers:
            expected[2].append((b"Host", b""))
        self.assertEqual(comparable(reparsed), expected)


class ResponseParserFuzzTests(SynchronousTestCase):
    """
    Fuzzing the response head parser.
    """

    @FUZZ
    @given(responseHeads(), st.sampled_from([b"GET", b"HEAD", b"CONNECT"]))
    def test_grammarFuzz(self, raw: bytes, method: bytes) -> None:
        """
        Near-valid response heads are accepted or rejected cleanly, and
        accepted ones re-serialise to a head that parses the same.
        """
        self.check(raw, method)

    @FUZZ
    @given(st.binary(max_size=300))
    def test_randomBytes(self, raw: bytes) -> None:
        """
        Arbitrary bytes never crash the response parser.
        """
        self.check(raw + b"\r\n\r\n", b"GET")
        self.check(b"HTTP/1.1 200 OK\r\n" + raw + b"\r\n\r\n", b"GET")

    def check(self, raw: bytes, method: bytes) -> None:
        end = raw.find(b"\r\n\r\n")
        try:
            head, hasBody = parseResponseHead(raw, end, method, LIMITS)
        except FramingError:
            return
        again = head.serialize()
        reparsed, hasBody2 = parseResponseHead(again, again.find(b"\r\n\r\n"), method, LIMITS)
        self.assertEqual(
            (reparsed.status, reparsed.reason, list(reparsed.headers), reparsed.contentLength, reparsed.chunked),
            (head.status, head.reason, list(head.headers), head.contentLength, head.chunked),
        )
        self.assertEqual(hasBody2, hasBody)


class ChunkedFuzzTests(SynchronousTestCase):
    """
    Fuzzing the chunked decoder.
    """

    @FUZZ
    @given(st.binary(max_size=200), st.integers(min_value=1, max_value=20))
    def test_randomBytes(self, raw: bytes, step: int) -> None:
        """
        Arbitrary input either decodes, waits for more, or raises
        L{FramingError}.
        """
        decoder = ChunkedDecoder(LIMITS)
        try:
            for i in range(0, len(raw), step):
                if decoder.feed(raw[i : i + step], lambda data: None) is not None:
                    break
        except FramingError:
            pass

    @FUZZ
    @given(
        st.lists(st.binary(min_size=1, max_size=40), max_size=6),
        st.lists(st.integers(min_value=0, max_value=400), max_size=8),
    )
    def test_validEncodings(self, chunks: List[bytes], cuts: List[int]) -> None:
        """
        Any valid chunked encoding decodes to the original bytes, whatever
        the split of the input.
        """
        encoded = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\nTAIL"
        points = sorted({min(c, len(encoded)) for c in cuts} | {0, len(encoded)})
        decoder = ChunkedDecoder(LIMITS)
        out: List[bytes] = []
        rest = None
        for a, b in zip(points, points[1:]):
            rest = decoder.feed(encoded[a:b], out.append)
            if rest is not None:
                rest += encoded[b:]
                break
        self.assertEqual(b"".join(out), b"".join(chunks))
        self.assertEqual(rest, b"TAIL")
