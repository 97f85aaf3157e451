# -*- test-case-name: tests.test_http_framing -*-
"""
The strict HTTP/1.1 head parser and validation layer, for requests and
responses.

One rule: anything ambiguous or malformed is rejected (a L{RequestRejected}
with the status to answer, or a L{FramingError} for responses), never
"fixed up".  The only normalisations are the RFC-sanctioned ones: identical
repeated C{Content-Length} values are merged, and an absolute-form target is
rewritten to origin-form.

The parser is pure Python: it locates the end of the head, then validates
the start line and the whole field block with precompiled regular
expressions (one C-level pass each), and walks the fields once to pick out
the few that matter for framing and routing.  The same code runs on CPython
and PyPy (see C{docs/http-framing.md} for the measurements behind this
choice).
"""

from __future__ import annotations

import re
from typing import List, Optional, Tuple

from linkerpy.protocol.http.errors import FramingError, RequestRejected
from linkerpy.protocol.http.headers import PROTECTED, Headers, connectionTokens
from linkerpy.protocol.http.message import HTTP10, HTTP11, RequestHead, ResponseHead

__all__ = [
    "HeadLimits",
    "parseRequestHead",
    "parseResponseHead",
    "checkPartialHead",
    "parseFieldBlock",
    "explainFields",
]

#: Token characters (method, field names), for C{bytes.translate} checks.
_TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: Bytes allowed anywhere in a field block: HTAB, SP, visible ASCII,
#: obs-text, and CR/LF (which must then pair up as CRLF).
_FIELD_BLOCK_CHARS = b"\t\r\n" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))

_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]\Z")
#: Bytes allowed in a reason phrase.
_REASON_CHARS = b"\t" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))
_STATUS_LINE = re.compile(rb"HTTP/([0-9])\.([0-9]) ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*))?\Z")

# Request targets.  Beyond RFC 3986 (unreserved, sub-delims, ":", "@", "/",
# "?" and valid %-escapes) a few characters that are harmless for framing and
# common in the wild are allowed: "[", "]", "{", "}", "|", "^" and "`".
# Rejected: "#", '"', "<", ">", "\\", space, controls, bytes >= 0x80, and "%"
# not followed by two hex digits.
_TARGET_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/?[]{}|^`%"
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_ABSOLUTE_FORM = re.compile(rb"([Hh][Tt][Tt][Pp][Ss]?)://([^/?]*)([/?].*)?\Z", re.S)
_HOST = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=%]*(?::[0-9]{0,5})?\Z")
#: Characters of a reg-name (the host part of a Host header), as in _HOST.
_REG_NAME_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=%"
_HOST_IPV6 = re.compile(rb"\[[0-9A-Fa-f:.]+\](?::[0-9]{0,5})?\Z")
_AUTHORITY_FORM = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+):[0-9]{1,5}\Z"
)
_DIGITS = re.compile(rb"[0-9]{1,18}\Z")
_BARE_LF = re.compile(rb"(?:\A|[^\r])\n")
_BARE_CR = re.compile(rb"\r[^\n]")


def _validHost(host: bytes) -> bool:
    # The same as _HOST (reg-name characters, then optionally ":" and up to
    # five digits) without a regular expression: the common case is cheap.
    if host[:1] == b"[":
        if _HOST_IPV6.match(host) is None:
            return False
    else:
        name, colon, port = host.rpartition(b":")
        if not colon:
            name = host
        elif len(port) > 5 or (port and not port.isdigit()):
            return False
        if name.translate(None, _REG_NAME_CHARS):
            return False
    # (bytes.find: "in" on bytes costs an exception internally on CPython 3.11)
    return host.find(b"%") < 0 or _BAD_ESCAPE.search(host) is None


def _validTarget(target: bytes) -> bool:
    if target.translate(None, _TARGET_CHARS):
        return False
    return target.find(b"%") < 0 or _BAD_ESCAPE.search(target) is None


# Field kinds picked out while walking a request's fields.
_K_HOST = 1
_K_CL = 2
_K_TE = 3
_K_CONN = 4
_K_HOP = 5
_K_UPGRADE = 6
_K_EXPECT = 7

_REQUEST_SPECIAL = {
    b"host": _K_HOST,
    b"content-length": _K_CL,
    b"transfer-encoding": _K_TE,
    b"connection": _K_CONN,
    b"upgrade": _K_UPGRADE,
    b"expect": _K_EXPECT,
    b"keep-alive": _K_HOP,
    b"proxy-connection": _K_HOP,
    b"te": _K_HOP,
    b"trailer": _K_HOP,
    b"proxy-authenticate": _K_HOP,
    b"proxy-authorization": _K_HOP,
}

_RESPONSE_SPECIAL = {
    b"content-length": _K_CL,
    b"transfer-encoding": _K_TE,
    b"connection": _K_CONN,
    b"upgrade": _K_UPGRADE,
    b"keep-alive": _K_HOP,
    b"proxy-connection": _K_HOP,
    b"te": _K_HOP,
    b"trailer": _K_HOP,
    b"proxy-authenticate": _K_HOP,
    b"proxy-authorization": _K_HOP,
}

#: Fields that may not appear in a trailer section (they are dropped).
_TRAILER_FORBIDDEN = frozenset(
    {
        b"content-length",
        b"transfer-encoding",
        b"host",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"upgrade",
        b"expect",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"content-type",
        b"content-encoding",
        b"content-range",
        b"authorization",
        b"set-cookie",
        b"cookie",
    }
)

_DEFAULT_PORTS = {b"http": b"80", b"https": b"443"}


class HeadLimits:
    """
    Size limits for a message head.

    @ivar maxInitialLine: the longest request or status line, in bytes
        (C{maxInitialLineKB}; requests over it get 414).
    @ivar maxHeaderBytes: the largest field block, in bytes (C{maxHeadersKB};
        requests over it get 431).
    @ivar maxHeaderCount: the most fields (requests over it get 431).
    @ivar allowConnect: accept C{CONNECT} requests (otherwise 501).
    """

    __slots__ = ("maxInitialLine", "maxHeaderBytes", "maxHeaderCount", "allowConnect")

    def __init__(
        self,
        maxInitialLine: int = 4096,
        maxHeaderBytes: int = 8192,
        maxHeaderCount: int = 100,
        allowConnect: bool = False,
    ) -> None:
        self.maxInitialLine = maxInitialLine
        self.maxHeaderBytes = maxHeaderBytes
        self.maxHeaderCount = maxHeaderCount
        self.allowConnect = allowConnect

    @property
    def maxHeadBytes(self) -> int:
        """
        The most bytes a complete head (start line, fields, final CRLFs) may
        take; buffering stops there.
        """
        return self.maxInitialLine + self.maxHeaderBytes + 4


DEFAULT_LIMITS = HeadLimits()


def explainFields(block: bytes) -> str:
    """
    Say why a field block failed validation (slow path, error messages only).
    """
    for line in block.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            return "obsolete line folding in header"
        if b"\n" in line:
            return "bare LF in header"
        if b"\r" in line:
            return "bare CR in header"
        name, sep, value = line.partition(b":")
        if not sep:
            return "header line without a colon"
        if not name:
            return "empty header name"
        if name != name.strip(b" \t") or b" " in name or b"\t" in name:
            return "whitespace in or around header name"
        if name.translate(None, _TOKEN_CHARS):
            return "invalid character in header name"
        if value.translate(None, _FIELD_BLOCK_CHARS):
            return "control character in header value"
    return "malformed header section"


def checkPartialHead(buf: bytes, limits: HeadLimits, request: bool = True) -> None:
    """
    Validate what can be validated of an incomplete head (no CRLFCRLF yet):
    the limits and bare line endings, so that a client cannot make the
    server buffer more than the limits allow.

    @raise FramingError: (L{RequestRejected} when C{request}) on a problem.
    """
    exc = RequestRejected if request else FramingError
    lineEnd = buf.find(b"\r\n")
    if lineEnd < 0:
        if len(buf) > limits.maxInitialLine:
            raise exc("request line too long" if request else "status line too long", 414 if request else 502)
    elif lineEnd > limits.maxInitialLine:
        raise exc("request line too long" if request else "status line too long", 414 if request else 502)
    elif len(buf) - lineEnd - 2 > limits.maxHeaderBytes:
        raise exc("header section too large", 431 if request else 502)
    if buf.find(b"\n") >= 0 and _BARE_LF.search(buf) is not None:
        raise exc("bare LF line ending", 400 if request else 502)
    if buf.find(b"\r") >= 0 and _BARE_CR.search(buf) is not None:
        raise exc("bare CR in head", 400 if request else 502)


def _fields(
    buf: bytes, start: int, end: int, limits: HeadLimits, exc: type, special: dict
) -> Tuple[List[Tuple[bytes, bytes, bytes]], Optional[List[Tuple[int, bytes]]]]:
    """
    Validate and split the field block C{buf[start:end]} (lines separated by
    CRLF, no final CRLF).

    The checks run in C: one C{translate} finds forbidden bytes (controls,
    NUL, DEL), CR/LF counts prove every line ends in CRLF, and one
    C{translate} over the joined names proves they are tokens (which also
    rejects obs-fold, whitespace before the colon and empty names).

    @param special: lower-case name -> kind for the fields to pick out;
        they are returned in C{found} instead of the items (except Host,
        which is both).
    @return: C{(items, found)}: the other fields as
        C{(lowercaseName, name, value)}, and C{[(kind, value), ...]} or
        C{None}.
    """
    if end - start > limits.maxHeaderBytes:
        raise exc("header section too large", 431 if exc is RequestRejected else 502)
    block = buf[start:end]
    bad = 400 if exc is RequestRejected else 502
    if block.translate(None, _FIELD_BLOCK_CHARS):
        raise exc(explainFields(block), bad)
    lines = block.split(b"\r\n")
    n = len(lines)
    if n > limits.maxHeaderCount:
        raise exc("too many header fields", 431 if exc is RequestRejected else 502)
    if block.count(b"\n") != n - 1 or block.count(b"\r") != n - 1:
        raise exc(explainFields(block), bad)
    if block[:1] == b":" or block.find(b"\n:") >= 0:
        raise exc("empty header name", bad)
    items: List[Tuple[bytes, bytes, bytes]] = []
    append = items.append
    found: Optional[List[Tuple[int, bytes]]] = None
    for line in lines:
        name, sep, value = line.partition(b":")
        if not sep:
            raise exc(explainFields(block), bad)
        lname = name.lower()
        kind = special.get(lname)
        if kind is None:
            append((lname, name, value.strip(b" \t")))
        else:
            value = value.strip(b" \t")
            if kind == _K_HOST:
                append((lname, name, value))
            if found is None:
                found = [(kind, value)]
            else:
                found.append((kind, value))
    # Special fields matched a known (valid) lower-case name; check the rest.
    if b"".join([item[1] for item in items]).translate(None, _TOKEN_CHARS):
        raise exc(explainFields(block), bad)
    return items, found


def _contentLength(values: bytes, exc: type) -> int:
    if values.isdigit() and len(values) <= 18:
        return int(values)
    parts = values.split(b",")
    first = None
    for part in parts:
        part = part.strip(b" \t")
        if _DIGITS.match(part) is None:
            raise exc("invalid Content-Length", 400)
        if first is None:
            first = part
        elif int(part) != int(first):
            raise exc("conflicting Content-Length values", 400)
    return int(first)  # type: ignore[arg-type]


def _normalAuthority(authority: bytes, scheme: bytes) -> bytes:
    authority = authority.lower()
    default = _DEFAULT_PORTS.get(scheme)
    if default is not None and authority.endswith(b":" + default):
        authority = authority[: -len(default) - 1]
    elif authority.endswith(b":"):
        authority = authority[:-1]
    return authority


def parseRequestHead(buf: bytes, end: int, limits: HeadLimits = DEFAULT_LIMITS) -> RequestHead:
    """
    Parse and validate a request head.

    @param buf: bytes starting with the request line.
    @param end: the index of the CRLFCRLF ending the head in C{buf}.
    @raise RequestRejected: with the status to answer.
    @return: a L{RequestHead} whose headers are stripped of hop-by-hop and
        framing fields.
    """
    lineEnd = buf.find(b"\r\n", 0, end + 2)
    if lineEnd > limits.maxInitialLine:
        raise RequestRejected("request line too long", 414)
    parts = buf[:lineEnd].split(b" ")
    if len(parts) != 3:
        raise RequestRejected("malformed request line", 400)
    method, target, version = parts
    if version == b"HTTP/1.1":
        http11 = True
    elif version == b"HTTP/1.0":
        http11 = False
    elif _VERSION.match(version) is not None:
        raise RequestRejected("HTTP version not supported", 505)
    else:
        raise RequestRejected("malformed request line", 400)
    if not method or method.translate(None, _TOKEN_CHARS):
        raise RequestRejected("invalid method", 400)
    if not target:
        raise RequestRejected("malformed request line", 400)

    if lineEnd < end:
        items, found = _fields(buf, lineEnd + 2, end, limits, RequestRejected, _REQUEST_SPECIAL)
    else:
        items, found = [], None

    host = None
    hostCount = 0
    cls = None
    tes = None
    conns = None
    upgrade = None
    expect = None
    if found is not None:
        for kind, value in found:
            if kind == _K_HOST:
                hostCount += 1
                host = value
            elif kind == _K_CL:
                cls = value if cls is None else cls + b"," + value
            elif kind == _K_TE:
                if tes is None:
                    tes = [value]
                else:
                    tes.append(value)
            elif kind == _K_CONN:
                if conns is None:
                    conns = [value]
                else:
                    conns.append(value)
            elif kind == _K_UPGRADE:
                upgrade = value if upgrade is None else upgrade + b", " + value
            elif kind == _K_EXPECT:
                expect = value if expect is None else expect + b", " + value

    # Host
    if hostCount > 1:
        raise RequestRejected("duplicate Host header", 400)
    if host is not None:
        if not _validHost(host):
            raise RequestRejected("invalid Host header", 400)
    elif http11:
        raise RequestRejected("missing Host header", 400)

    # Request target
    scheme = None
    first = target[:1]
    if method == b"CONNECT":
        if not limits.allowConnect:
            raise RequestRejected("CONNECT is not supported", 501)
        if _AUTHORITY_FORM.match(target) is None or (target.find(b"%") >= 0 and _BAD_ESCAPE.search(target)):
            raise RequestRejected("CONNECT needs an authority-form target", 400)
    elif first == b"/":
        if not _validTarget(target):
            raise RequestRejected("invalid request target", 400)
    elif first == b"*":
        if target != b"*" or method != b"OPTIONS":
            raise RequestRejected("asterisk-form is only valid for OPTIONS", 400)
    else:
        a = _ABSOLUTE_FORM.match(target)
        if a is None:
            raise RequestRejected("invalid request target", 400)
        scheme = a.group(1).lower()
        authority = a.group(2)
        if not authority or not _validHost(authority):
            raise RequestRejected("invalid authority in request target", 400)
        path = a.group(3) or b"/"
        if not _validTarget(path):
            raise RequestRejected("invalid request target", 400)
        if host is not None:
            if _normalAuthority(authority, scheme) != _normalAuthority(host, scheme):
                raise RequestRejected("request target authority does not match Host", 400)
        else:
            items.append((b"host", b"Host", authority))
        target = path if path[:1] == b"/" else b"/" + path

    # Framing
    chunked = False
    contentLength = None
    if tes is not None:
        if not http11:
            raise RequestRejected("Transfer-Encoding in an HTTP/1.0 request", 400)
        if len(tes) > 1:
            raise RequestRejected("duplicate Transfer-Encoding header", 400)
        codings = connectionTokens(tes[0])
        if codings == [b"chunked"]:
            chunked = True
        elif not codings or codings[-1] != b"chunked" or b"chunked" in codings[:-1]:
            raise RequestRejected("invalid Transfer-Encoding", 400)
        else:
            raise RequestRejected("unsupported transfer coding", 501)
        if cls is not None:
            raise RequestRejected("both Content-Length and Transfer-Encoding", 400)
    elif cls is not None:
        contentLength = _contentLength(cls, RequestRejected)

    # Connection options
    close = False
    keepAliveToken = False
    upgradeToken = False
    if conns is not None:
        named = set()
        for value in conns:
            for token in connectionTokens(value):
                if token == b"close":
                    close = True
                elif token == b"keep-alive":
                    keepAliveToken = True
                elif token == b"upgrade":
                    upgradeToken = True
                elif token not in PROTECTED:
                    named.add(token)
        if named:
            items = [item for item in items if item[0] not in named]
    keepAlive = not close and (http11 or keepAliveToken)

    if upgrade is not None:
        if not (upgradeToken and http11) or chunked or contentLength:
            upgrade = None
        else:
            protocols = connectionTokens(upgrade)
            if not protocols or protocols == [b"h2c"]:
                upgrade = None

    expectContinue = False
    if expect is not None and http11:
        if expect.lower() == b"100-continue":
            expectContinue = True
        else:
            raise RequestRejected("unsupported expectation", 417)

    return RequestHead(
        method,
        target,
        Headers._trusted(items),
        HTTP11 if http11 else HTTP10,
        contentLength,
        chunked,
        keepAlive,
        upgrade,
        expectContinue,
        scheme,
    )


def parseResponseHead(
    buf: bytes, end: int, requestMethod: bytes, limits: HeadLimits = DEFAULT_LIMITS
) -> Tuple[ResponseHead, bool]:
    """
    Parse and validate a response head.

    @param end: the index of the CRLFCRLF ending the head in C{buf}.
    @param requestMethod: the method of the request it answers (C{HEAD}
        and C{CONNECT} change the framing).
    @raise FramingError: on anything malformed or ambiguous.
    @return: C{(head, hasBody)}.  When C{hasBody} is C{True} and the head has
        neither C{contentLength} nor C{chunked}, the body is delimited by
        the connection closing (and C{head.keepAlive} is C{False}).
    """
    lineEnd = buf.find(b"\r\n", 0, end + 2)
    if lineEnd > limits.maxInitialLine:
        raise FramingError("status line too long", 502)
    line = buf[:lineEnd]
    code = line[9:12]
    reason = line[13:]
    if (
        line[:9] == b"HTTP/1.1 " or line[:9] == b"HTTP/1.0 "
    ) and code.isdigit() and (lineEnd == 12 or line[12:13] == b" ") and not reason.translate(None, _REASON_CHARS):
        http11 = line[7] == 49  # "1"
    else:
        m = _STATUS_LINE.match(line)
        if m is None:
            raise FramingError("malformed status line", 502)
        raise FramingError("unsupported HTTP version in response", 502)
    status = int(code)
    if status < 100 or status > 599:
        raise FramingError("invalid status code", 502)

    if lineEnd < end:
        items, found = _fields(buf, lineEnd + 2, end, limits, FramingError, _RESPONSE_SPECIAL)
    else:
        items, found = [], None
    cls = None
    tes = None
    conns = None
    upgrade = None
    if found is not None:
        for kind, value in found:
            if kind == _K_CL:
                cls = value if cls is None else cls + b"," + value
            elif kind == _K_TE:
                if tes is None:
                    tes = [value]
                else:
                    tes.append(value)
            elif kind == _K_CONN:
                if conns is None:
                    conns = [value]
                else:
                    conns.append(value)
            elif kind == _K_UPGRADE:
                upgrade = value if upgrade is None else upgrade + b", " + value

    chunked = False
    contentLength = None
    if tes is not None:
        if not http11:
            raise FramingError("Transfer-Encoding in an HTTP/1.0 response", 502)
        if len(tes) > 1 or connectionTokens(tes[0]) != [b"chunked"]:
            raise FramingError("invalid Transfer-Encoding in response", 502)
        if cls is not None:
            raise FramingError("both Content-Length and Transfer-Encoding in response", 502)
        chunked = True
    elif cls is not None:
        contentLength = _contentLength(cls, FramingError)

    close = False
    keepAliveToken = False
    if conns is not None:
        named = set()
        for value in conns:
            for token in connectionTokens(value):
                if token == b"close":
                    close = True
                elif token == b"keep-alive":
                    keepAliveToken = True
                elif token != b"upgrade" and token not in PROTECTED:
                    named.add(token)
        if named:
            items = [item for item in items if item[0] not in named]
    keepAlive = not close and (http11 or keepAliveToken)

    if status < 200 or status == 204:
        contentLength = None
        chunked = False
        hasBody = False
    elif status == 304 or requestMethod == b"HEAD":
        hasBody = False
        chunked = False
    elif requestMethod == b"CONNECT" and status < 300:
        hasBody = False
        contentLength = None
        chunked = False
    else:
        hasBody = True
        if contentLength is None and not chunked:
            keepAlive = False
    if status != 101:
        upgrade = None

    head = ResponseHead(
        status,
        Headers._trusted(items),
        reason or b"",
        HTTP11 if http11 else HTTP10,
        contentLength,
        chunked,
        keepAlive,
        upgrade,
    )
    return head, hasBody


def parseFieldBlock(block: bytes, limits: HeadLimits = DEFAULT_LIMITS, request: bool = True) -> Headers:
    """
    Validate a field block (lines ending in CRLF, no final empty line), e.g.
    a trailer section, and return its fields minus those forbidden in
    trailers.

    @raise FramingError: on a malformed block.
    """
    if block.endswith(b"\r\n"):
        block = block[:-2]
    if not block:
        return Headers()
    items, found = _fields(block, 0, len(block), limits, RequestRejected if request else FramingError, _NO_SPECIAL)
    return Headers._trusted([item for item in items if item[0] not in _TRAILER_FORBIDDEN])


_NO_SPECIAL: dict = {}
