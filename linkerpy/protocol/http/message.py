# -*- test-case-name: tests.test_http_framing -*-
"""
Request and response heads, and how they are written back to the wire.

A head is what the parser produced (or what a router built): the start line,
the end-to-end L{Headers} and the body framing, kept apart from the headers.
Messages are always I{re-serialised} from these objects; raw header bytes
received from a peer are never forwarded.

Framing is described by two attributes on both heads:

  - C{contentLength}: an C{int} when the body length is known
    (C{Content-Length}), else C{None};
  - C{chunked}: C{True} when the body is chunked.

A request with neither has no body.  A response with neither has a body
delimited by the connection closing, unless it is bodiless (see
L{responseHasBody}).
"""

from __future__ import annotations

from typing import Optional

from linkerpy.protocol.http.headers import Headers

__all__ = [
    "RequestHead",
    "ResponseHead",
    "HTTP10",
    "HTTP11",
    "REASONS",
    "responseHasBody",
]

HTTP10 = b"HTTP/1.0"
HTTP11 = b"HTTP/1.1"

#: Standard reason phrases, used when a head is built without one.
REASONS = {
    100: b"Continue",
    101: b"Switching Protocols",
    200: b"OK",
    201: b"Created",
    202: b"Accepted",
    204: b"No Content",
    206: b"Partial Content",
    301: b"Moved Permanently",
    302: b"Found",
    304: b"Not Modified",
    307: b"Temporary Redirect",
    308: b"Permanent Redirect",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    411: b"Length Required",
    413: b"Content Too Large",
    414: b"URI Too Long",
    417: b"Expectation Failed",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    505: b"HTTP Version Not Supported",
}


def responseHasBody(status: int, requestMethod: bytes) -> bool:
    """
    RFC 9112 section 6.3: responses to C{HEAD}, C{1xx}, C{204} and C{304}
    never have a body (and neither does a 2xx answer to C{CONNECT}, which
    starts a tunnel instead).
    """
    if status < 200 or status == 204 or status == 304:
        return False
    if requestMethod == b"HEAD":
        return False
    if requestMethod == b"CONNECT" and status < 300:
        return False
    return True


class RequestHead:
    """
    A request's start line, end-to-end headers and body framing.

    @ivar method: the method token, e.g. C{b"GET"}.
    @ivar target: the request target in origin-form (C{b"/path?query"});
        C{b"*"} for C{OPTIONS *}; C{b"host:port"} for C{CONNECT}.  An
        absolute-form target received from a client has been rewritten to
        origin-form and its authority moved to the C{Host} header.
    @ivar version: C{b"HTTP/1.1"} or C{b"HTTP/1.0"} as received.  Requests
        are always forwarded upstream as HTTP/1.1.
    @ivar headers: the end-to-end L{Headers} (hop-by-hop and framing fields
        removed).
    @ivar contentLength: the body length, or C{None}.
    @ivar chunked: C{True} if the body is chunked.
    @ivar keepAlive: C{True} if the client wants the connection kept open
        after this exchange (HTTP/1.1 without C{Connection: close}, or
        HTTP/1.0 with C{Connection: keep-alive}).
    @ivar upgrade: the C{Upgrade} value (e.g. C{b"websocket"}) if this is a
        protocol upgrade request (C{Connection: upgrade} + C{Upgrade}),
        else C{None}.  It is re-emitted with C{Connection: upgrade} when the
        request is serialised.
    @ivar expectContinue: C{True} if the client sent
        C{Expect: 100-continue}.  The server answers C{100 Continue} itself
        when the handler starts reading the body; the field is not
        forwarded.
    @ivar scheme: C{b"http"} or C{b"https"} when the target was in
        absolute-form, else C{None}.
    """

    __slots__ = (
        "method",
        "target",
        "version",
        "headers",
        "contentLength",
        "chunked",
        "keepAlive",
        "upgrade",
        "expectContinue",
        "scheme",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        headers: Optional[Headers] = None,
        version: bytes = HTTP11,
        contentLength: Optional[int] = None,
        chunked: bool = False,
        keepAlive: bool = True,
        upgrade: Optional[bytes] = None,
        expectContinue: bool = False,
        scheme: Optional[bytes] = None,
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers if headers is not None else Headers()
        self.contentLength = contentLength
        self.chunked = chunked
        self.keepAlive = keepAlive
        self.upgrade = upgrade
        self.expectContinue = expectContinue
        self.scheme = scheme

    @property
    def hasBody(self) -> bool:
        """
        C{True} if a body follows the head (a positive or unknown length).
        """
        return self.chunked or bool(self.contentLength)

    @property
    def isUpgrade(self) -> bool:
        """
        C{True} for a protocol upgrade request (e.g. WebSocket).
        """
        return self.upgrade is not None

    @property
    def host(self) -> Optional[bytes]:
        """
        The C{Host} header value (the authority), or C{None}.
        """
        return self.headers.get(b"host")

    def copy(self) -> "RequestHead":
        """
        A copy with its own L{Headers} (so a retry can rewrite headers).
        """
        return RequestHead(
            self.method,
            self.target,
            self.headers.copy(),
            self.version,
            self.contentLength,
            self.chunked,
            self.keepAlive,
            self.upgrade,
            self.expectContinue,
            self.scheme,
        )

    def serialize(self) -> bytes:
        """
        The head as sent upstream: C{HTTP/1.1}, the headers, an empty C{Host}
        if there is none (HTTP/1.0 clients may omit it), the framing field,
        and C{Connection: upgrade}/C{Upgrade} for upgrade requests.
        """
        headers = self.headers
        parts = [self.method, b" ", self.target, b" HTTP/1.1\r\n", headers.serialize()]
        for item in headers._items:
            if item[0] == b"host":
                break
        else:
            parts.append(b"Host: \r\n")
        if self.contentLength is not None:
            parts.append(b"Content-Length: %d\r\n" % self.contentLength)
        elif self.chunked:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        elif self.method in _BODY_METHODS:
            parts.append(b"Content-Length: 0\r\n")
        if self.upgrade is not None:
            parts.append(b"Connection: upgrade\r\nUpgrade: " + self.upgrade + b"\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    def __repr__(self) -> str:
        return (
            f"<RequestHead {self.method.decode('latin-1')} {self.target.decode('latin-1')} "
            f"{self.version.decode('latin-1')} {len(self.headers)} headers "
            f"cl={self.contentLength} chunked={self.chunked}>"
        )


#: Methods that get an explicit C{Content-Length: 0} when they have no body.
_BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})


class ResponseHead:
    """
    A response's status line, end-to-end headers and body framing.

    @ivar status: the status code (C{int}).
    @ivar reason: the reason phrase (C{bytes}, possibly empty).
    @ivar headers: the end-to-end L{Headers}.
    @ivar version: the version received from the origin (responses are
        always written downstream as C{HTTP/1.1}).
    @ivar contentLength: the body length, or C{None}.  For responses to
        C{HEAD} and for C{304} it is the announced length (forwarded as a
        C{Content-Length} header) while the body is empty.
    @ivar chunked: C{True} if the origin sent the body chunked.
    @ivar keepAlive: C{True} if the origin allows reusing its connection.
    @ivar upgrade: for a C{101} response, the C{Upgrade} value.
    """

    __slots__ = (
        "status",
        "reason",
        "headers",
        "version",
        "contentLength",
        "chunked",
        "keepAlive",
        "upgrade",
    )

    def __init__(
        self,
        status: int,
        headers: Optional[Headers] = None,
        reason: Optional[bytes] = None,
        version: bytes = HTTP11,
        contentLength: Optional[int] = None,
        chunked: bool = False,
        keepAlive: bool = True,
        upgrade: Optional[bytes] = None,
    ) -> None:
        self.status = status
        self.reason = REASONS.get(status, b"") if reason is None else reason
        self.headers = headers if headers is not None else Headers()
        self.version = version
        self.contentLength = contentLength
        self.chunked = chunked
        self.keepAlive = keepAlive
        self.upgrade = upgrade

    def copy(self) -> "ResponseHead":
        """
        A copy with its own L{Headers}.
        """
        return ResponseHead(
            self.status,
            self.headers.copy(),
            self.reason,
            self.version,
            self.contentLength,
            self.chunked,
            self.keepAlive,
            self.upgrade,
        )

    def statusLine(self) -> bytes:
        """
        C{b"HTTP/1.1 200 OK\\r\\n"}.
        """
        return b"HTTP/1.1 %d %s\r\n" % (self.status, self.reason)

    def serialize(self) -> bytes:
        """
        The head as an HTTP/1.1 origin would send it: status line, headers,
        the framing field (C{Content-Length} or C{Transfer-Encoding:
        chunked}), C{Connection: close} when not C{keepAlive}, and
        C{Connection: upgrade}/C{Upgrade} for a C{101}.  (The server
        connection writes responses itself, adapting the framing to the
        client; this is for tests and tools.)
        """
        parts = [self.statusLine(), self.headers.serialize()]
        if self.contentLength is not None:
            parts.append(b"Content-Length: %d\r\n" % self.contentLength)
        elif self.chunked:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        if self.status == 101 and self.upgrade is not None:
            parts.append(b"Connection: upgrade\r\nUpgrade: " + self.upgrade + b"\r\n")
        elif not self.keepAlive:
            parts.append(b"Connection: close\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    def __repr__(self) -> str:
        return (
            f"<ResponseHead {self.status} {self.reason.decode('latin-1')} "
            f"{len(self.headers)} headers cl={self.contentLength} chunked={self.chunked}>"
        )
