"""
The catalogue of raw HTTP/1.1 messages the strict framing rules must reject
(or accept), shared by the parser unit tests, the server connection tests
and the adversarial suite over real sockets.

Each request case is C{(name, raw bytes, expected status)}; C{200} means
"accepted" (forwarded to the origin).  Each response case is
C{(name, raw bytes, accepted)}.
"""

from __future__ import annotations

from typing import List, Tuple

H = b"Host: example.com\r\n"


def req(*lines: bytes, body: bytes = b"") -> bytes:
    """
    Join request lines with CRLF and end the head.
    """
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


REQUEST_CASES: List[Tuple[str, bytes, int]] = [
    # accepted controls
    ("simple GET", req(b"GET / HTTP/1.1", b"Host: example.com"), 200),
    ("HTTP/1.0 without Host", req(b"GET / HTTP/1.0"), 200),
    ("identical Content-Length values merged", req(b"POST / HTTP/1.1", H.strip(), b"Content-Length: 3", b"Content-Length: 3", body=b"abc"), 200),
    ("identical Content-Length list merged", req(b"POST / HTTP/1.1", H.strip(), b"Content-Length: 3, 3", body=b"abc"), 200),
    ("chunked body", req(b"POST / HTTP/1.1", H.strip(), b"Transfer-Encoding: chunked", body=b"3\r\nabc\r\n0\r\n\r\n"), 200),
    ("chunked, any case", req(b"POST / HTTP/1.1", H.strip(), b"Transfer-Encoding: ChUnKeD", body=b"0\r\n\r\n"), 200),
    ("HTAB inside a value", req(b"GET / HTTP/1.1", H.strip(), b"X-A: a\tb"), 200),
    ("trailing whitespace in a value", req(b"GET / HTTP/1.1", H.strip(), b"X-A: a  \t"), 200),
    ("OPTIONS asterisk-form", req(b"OPTIONS * HTTP/1.1", H.strip()), 200),
    ("absolute-form matching Host", req(b"GET http://Example.com:80/p?q HTTP/1.1", H.strip()), 200),
    ("absolute-form, HTTP/1.0 without Host", req(b"GET http://example.com/p HTTP/1.0"), 200),
    ("IPv6 Host", req(b"GET / HTTP/1.1", b"Host: [::1]:8080"), 200),
    ("empty Host", req(b"GET / HTTP/1.1", b"Host:"), 200),
    ("extension method", req(b"PURGE /x HTTP/1.1", H.strip()), 200),
    ("Expect 100-continue", req(b"POST / HTTP/1.1", H.strip(), b"Expect: 100-continue", b"Content-Length: 2", body=b"ok"), 200),
    ("chunk extensions", req(b"POST / HTTP/1.1", H.strip(), b"Transfer-Encoding: chunked", body=b'3;a=b;c="d e"\r\nabc\r\n0\r\n\r\n'), 200),
    # Content-Length
    ("CL and TE", req(b"POST / HTTP/1.1", H.strip(), b"Content-Length: 3", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"), 400),
    ("TE and CL", req(b"POST / HTTP/1.1", H.strip(), b"Transfer-Encoding: chunked", b"Content-Length: 3", body=b"0\r\n\r\n"), 400),
    ("CL with plus sign", req(b"POST / HTTP/1.1", H.strip(), b"Content-Length: +1", body=b"a"), 400),
    ("CL negative", req(b"POST / HTTP/1.1", H.strip(), b"Content-Length: -1"), 400),
    ("CL hex", req(b"POST / HTTP/1.1", H.strip(), b"Content-Length: 0x10"), 400),
    ("CL empty", req(b"POST / HTTP/1.1", H.strip(), b"Content-Length:"), 400),
    ("CL space inside", req(b"POST / HTTP/1.1", H.strip(), b"Content-Length: 1 0"), 400),
    ("CL decimal point", req(b"POST / HTTP/1.1", H.strip(), b"Content-Length: 1.0"), 400),
    ("CL differing values", req(b"POST / HTTP/1.1", H.strip(), b"Content-Length: 1", b"Content-Length: 2", body=b"ab"), 400),
    ("CL differing list", req(b"POST / HTTP/1.1", H.strip(), b"Content-Length: 1, 2", body=b"ab"), 400),
    ("CL empty list element", req(b"POST / HTTP/1.1", H.strip(), b"Content-Length: 1,", body=b"a"), 400),
    ("CL too many digits", req(b"POST / HTTP/1.1", H.strip(), b"Content-Length: 1234567890123456789"), 400),
    # Transfer-Encoding
    ("TE chunked twice in a list", req(b"POST / HTTP/1.1", H.strip(), b"Transfer-Encoding: chunked, chunked", body=b"0\r\n\r\n"), 400),
    ("TE gzip only", req(b"POST / HTTP/1.1", H.strip(), b"Transfer-Encoding: gzip", body=b"0\r\n\r\n"), 400),
    ("TE identity", req(b"POST / HTTP/1.1", H.strip(), b"Transfer-Encoding: identity", body=b"0\r\n\r\n"), 400),
    ("TE chunked then gzip", req(b"POST / HTTP/1.1", H.strip(), b"Transfer-Encoding: chunked, gzip", body=b"0\r\n\r\n"), 400),
    ("TE gzip then chunked (unknown coding)", req(b"POST / HTTP/1.1", H.strip(), b"Transfer-Encoding: gzip, chunked", body=b"0\r\n\r\n"), 501),
    ("TE duplicated across headers", req(b"POST / HTTP/1.1", H.strip(), b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"), 400),
    ("TE chunked and identity headers", req(b"POST / HTTP/1.1", H.strip(), b"Transfer-Encoding: chunked", b"Transfer-Encoding: identity", body=b"0\r\n\r\n"), 400),
    ("TE on HTTP/1.0", req(b"POST / HTTP/1.0", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"), 400),
    ("TE empty", req(b"POST / HTTP/1.1", H.strip(), b"Transfer-Encoding:", body=b"0\r\n\r\n"), 400),
    ("TE with vertical tab", req(b"POST / HTTP/1.1", H.strip(), b"Transfer-Encoding: \x0bchunked", body=b"0\r\n\r\n"), 400),
    ("TE xchunked", req(b"POST / HTTP/1.1", H.strip(), b"Transfer-Encoding: xchunked", body=b"0\r\n\r\n"), 400),
    # chunked bodies
    ("chunk size not hex", req(b"POST / HTTP/1.1", H.strip(), b"Transfer-Encoding: chunked", body=b"g\r\nabc\r\n0\r\n\r\n"), 400),
    ("chunk size 0x prefix", req(b"POST / HTTP/1.1", H.strip(), b"Transfer-Encoding: chunked", body=b"0x3\r\nabc\r\n0\r\n\r\n"), 400),
    ("chunk size with sign", req(b"POST / HTTP/1.1", H.strip(), b"Transfer-Encoding: chunked", body=b"+3\r\nabc\r\n0\r\n\r\n"), 400),
    ("chunk size leading space", req(b"POST / HTTP/1.1", H.strip(), b"Transfer-Encoding: chunked", body=b" 3\r\nabc\r\n0\r\n\r\n"), 400),
    ("chunk size trailing space", req(b"POST / HTTP/1.1", H.strip(), b"Transfer-Encoding: chunked", body=b"3 \r\nabc\r\n0\r\n\r\n"), 400),
    ("chunk size 17 hex digits", req(b"POST / HTTP/1.1", H.strip(), b"Transfer-Encoding: chunked", body=b"00000000000000003\r\nabc\r\n0\r\n\r\n"), 400),
    ("chunk size overflow", req(b"POST / HTTP/1.1", H.strip(), b"Transfer-Encoding: chunked", body=b"ffffffffffffffff\r\nabc\r\n0\r\n\r\n"), 400),
    ("chunk size beyond 2 GiB", req(b"POST / HTTP/1.1", H.strip(), b"Transfer-Encoding: chunked", body=b"80000000\r\nabc\r\n"), 400),
    ("chunk ext without name", req(b"POST / HTTP/1.1", H.strip(), b"Transfer-Encoding: chunked", body=b"3;\r\nabc\r\n0\r\n\r\n"), 400),
    ("chunk ext unterminated quote", req(b"POST / HTTP/1.1", H.strip(), b"Transfer-Encoding: chunked", body=b'3;a="b\r\nabc\r\n0\r\n\r\n'), 400),
    ("chunk ext with bare LF", req(b"POST / HTTP/1.1", H.strip(), b"Transfer-Encoding: chunked", body=b"3;a\nb\r\nabc\r\n0\r\n\r\n"), 400),
    ("chunk data without CRLF", req(b"POST / HTTP/1.1", H.strip(), b"Transfer-Encoding: chunked", body=b"3\r\nabcX\r\n0\r\n\r\n"), 400),
    ("chunk lines with bare LF", req(b"POST / HTTP/1.1", H.strip(), b"Transfer-Encoding: chunked", body=b"3\nabc\n0\n\n"), 400),
    ("trailer with obs-fold", req(b"POST / HTTP/1.1", H.strip(), b"Transfer-Encoding: chunked", body=b"0\r\nA: b\r\n c\r\n\r\n"), 400),
    # header syntax
    ("obs-fold", req(b"GET / HTTP/1.1", H.strip(), b"X-A: a", b" b"), 400),
    ("obs-fold with tab", req(b"GET / HTTP/1.1", H.strip(), b"X-A: a", b"\tb"), 400),
    ("first header line folded", req(b"GET / HTTP/1.1", b" Host: example.com"), 400),
    ("bare CR in value", req(b"GET / HTTP/1.1", H.strip(), b"X-A: a\rb"), 400),
    ("bare CR in request line", req(b"GET /\r HTTP/1.1", H.strip()), 400),
    ("bare LF line endings", b"GET / HTTP/1.1\nHost: example.com\n\n", 400),
    ("bare LF inside head", b"GET / HTTP/1.1\r\nHost: example.com\nX-A: b\r\n\r\n", 400),
    ("space before colon", req(b"GET / HTTP/1.1", H.strip(), b"X-A : b"), 400),
    ("tab before colon", req(b"GET / HTTP/1.1", H.strip(), b"X-A\t: b"), 400),
    ("space inside name", req(b"GET / HTTP/1.1", H.strip(), b"X A: b"), 400),
    ("empty header name", req(b"GET / HTTP/1.1", H.strip(), b": b"), 400),
    ("header without colon", req(b"GET / HTTP/1.1", H.strip(), b"X-A b"), 400),
    ("NUL in value", req(b"GET / HTTP/1.1", H.strip(), b"X-A: a\x00b"), 400),
    ("DEL in value", req(b"GET / HTTP/1.1", H.strip(), b"X-A: a\x7fb"), 400),
    ("control char in value", req(b"GET / HTTP/1.1", H.strip(), b"X-A: a\x01b"), 400),
    ("control char in name", req(b"GET / HTTP/1.1", H.strip(), b"X-\x01A: b"), 400),
    ("non-token char in name", req(b"GET / HTTP/1.1", H.strip(), b"X(A): b"), 400),
    # request line
    ("invalid method token", req(b"GE(T / HTTP/1.1", H.strip()), 400),
    ("NUL in method", req(b"GE\x00T / HTTP/1.1", H.strip()), 400),
    ("two spaces after method", req(b"GET  / HTTP/1.1", H.strip()), 400),
    ("space in target", req(b"GET /a b HTTP/1.1", H.strip()), 400),
    ("tab as separator", req(b"GET\t/ HTTP/1.1", H.strip()), 400),
    ("missing version", req(b"GET /", H.strip()), 400),
    ("lowercase version", req(b"GET / http/1.1", H.strip()), 400),
    ("malformed version", req(b"GET / HTTP/1.1.1", H.strip()), 400),
    ("HTTP/2.0 on HTTP/1 connection", req(b"GET / HTTP/2.0", H.strip()), 505),
    ("HTTP/1.2", req(b"GET / HTTP/1.2", H.strip()), 505),
    ("HTTP/0.9", req(b"GET / HTTP/0.9", H.strip()), 505),
    ("NUL in target", req(b"GET /a\x00b HTTP/1.1", H.strip()), 400),
    ("fragment in target", req(b"GET /a#b HTTP/1.1", H.strip()), 400),
    ("backslash in target", req(b"GET /a\\b HTTP/1.1", H.strip()), 400),
    ("non-ASCII byte in target", req(b"GET /\xc3\xa4 HTTP/1.1", H.strip()), 400),
    ("bad percent-escape", req(b"GET /%zz HTTP/1.1", H.strip()), 400),
    ("target not origin-form", req(b"GET foo HTTP/1.1", H.strip()), 400),
    ("asterisk-form for GET", req(b"GET * HTTP/1.1", H.strip()), 400),
    ("authority-form for GET", req(b"GET example.com:80 HTTP/1.1", H.strip()), 400),
    ("CONNECT not enabled", req(b"CONNECT example.com:443 HTTP/1.1", b"Host: example.com:443"), 501),
    # Host
    ("missing Host on HTTP/1.1", req(b"GET / HTTP/1.1"), 400),
    ("duplicate Host", req(b"GET / HTTP/1.1", H.strip(), H.strip()), 400),
    ("duplicate Host, different values", req(b"GET / HTTP/1.1", H.strip(), b"Host: evil.com"), 400),
    ("Host with space", req(b"GET / HTTP/1.1", b"Host: a b"), 400),
    ("Host with slash", req(b"GET / HTTP/1.1", b"Host: a/b"), 400),
    ("Host with userinfo", req(b"GET / HTTP/1.1", b"Host: u@a"), 400),
    ("Host with two ports", req(b"GET / HTTP/1.1", b"Host: a:1:2"), 400),
    ("Host with bad port", req(b"GET / HTTP/1.1", b"Host: a:8x"), 400),
    ("absolute-form disagreeing with Host", req(b"GET http://other.com/ HTTP/1.1", H.strip()), 400),
    ("absolute-form port disagreeing with Host", req(b"GET http://example.com:8080/ HTTP/1.1", H.strip()), 400),
    ("absolute-form with userinfo", req(b"GET http://u@example.com/ HTTP/1.1", H.strip()), 400),
    ("absolute-form without authority", req(b"GET http:///x HTTP/1.1", H.strip()), 400),
    ("absolute-form unknown scheme", req(b"GET ftp://example.com/ HTTP/1.1", H.strip()), 400),
    # expectations
    ("unknown expectation", req(b"GET / HTTP/1.1", H.strip(), b"Expect: teapot"), 417),
]

#: Request cases exceeding the default limits: (name, bytes, status).
LIMIT_CASES: List[Tuple[str, bytes, int]] = [
    ("request line over 4 KiB", req(b"GET /" + b"a" * 5000 + b" HTTP/1.1", H.strip()), 414),
    ("header section over 8 KiB", req(b"GET / HTTP/1.1", H.strip(), b"X-A: " + b"a" * 9000), 431),
    ("101 header fields", req(b"GET / HTTP/1.1", H.strip(), *[b"X-%d: v" % i for i in range(101)]), 431),
]


def resp(*lines: bytes, body: bytes = b"") -> bytes:
    """
    Join response lines with CRLF and end the head.
    """
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


RESPONSE_CASES: List[Tuple[str, bytes, bool]] = [
    ("plain 200", resp(b"HTTP/1.1 200 OK", b"Content-Length: 2", body=b"ok"), True),
    ("no reason phrase", resp(b"HTTP/1.1 200", b"Content-Length: 2", body=b"ok"), True),
    ("empty reason phrase", resp(b"HTTP/1.1 200 ", b"Content-Length: 2", body=b"ok"), True),
    ("chunked", resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked", body=b"2\r\nok\r\n0\r\n\r\n"), True),
    ("identical CL merged", resp(b"HTTP/1.1 200 OK", b"Content-Length: 2", b"Content-Length: 2", body=b"ok"), True),
    ("malformed status code", resp(b"HTTP/1.1 20 OK", b"Content-Length: 2", body=b"ok"), False),
    ("status code 600", resp(b"HTTP/1.1 600 Odd", b"Content-Length: 2", body=b"ok"), False),
    ("missing status code", resp(b"HTTP/1.1 OK", b"Content-Length: 2", body=b"ok"), False),
    ("HTTP/2 status line", resp(b"HTTP/2 200", b"Content-Length: 2", body=b"ok"), False),
    ("not HTTP", resp(b"XTTP/1.1 200 OK", b"Content-Length: 2", body=b"ok"), False),
    ("control char in reason", resp(b"HTTP/1.1 200 O\x00K", b"Content-Length: 2", body=b"ok"), False),
    ("CL and TE", resp(b"HTTP/1.1 200 OK", b"Content-Length: 2", b"Transfer-Encoding: chunked", body=b"2\r\nok\r\n0\r\n\r\n"), False),
    ("CL with sign", resp(b"HTTP/1.1 200 OK", b"Content-Length: +2", body=b"ok"), False),
    ("CL differing", resp(b"HTTP/1.1 200 OK", b"Content-Length: 2", b"Content-Length: 3", body=b"ok"), False),
    ("CL empty", resp(b"HTTP/1.1 200 OK", b"Content-Length:", body=b"ok"), False),
    ("TE gzip", resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding: gzip", body=b"ok"), False),
    ("TE chunked twice", resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked, chunked", body=b"0\r\n\r\n"), False),
    ("TE in HTTP/1.0 response", resp(b"HTTP/1.0 200 OK", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"), False),
    ("obs-fold", resp(b"HTTP/1.1 200 OK", b"X-A: a", b" b", b"Content-Length: 2", body=b"ok"), False),
    ("bare CR", resp(b"HTTP/1.1 200 OK", b"X-A: a\rb", b"Content-Length: 2", body=b"ok"), False),
    ("bare LF", b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", False),
    ("NUL in header", resp(b"HTTP/1.1 200 OK", b"X-A: a\x00", b"Content-Length: 2", body=b"ok"), False),
    ("space before colon", resp(b"HTTP/1.1 200 OK", b"Content-Length : 2", body=b"ok"), False),
    ("bad chunk size", resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked", body=b"zz\r\nok\r\n0\r\n\r\n"), False),
    ("chunk data without CRLF", resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked", body=b"2\r\nokX0\r\n\r\n"), False),
    ("oversized head", resp(b"HTTP/1.1 200 OK", b"X-A: " + b"a" * 9000, b"Content-Length: 2", body=b"ok"), False),
]
