# -*- test-case-name: tests.test_http_client -*-
"""
Exceptions raised by the HTTP/1.1 data-plane layer.

Two families:

  - L{RequestRejected}: the I{downstream} (client-facing) side received a
    message that is malformed or ambiguous.  It carries the status the server
    answers with (400, 408, 414, 417, 431, 501, 505) before closing.

  - L{UpstreamError} and its subclasses: an exchange with an I{upstream}
    (origin) failed.  Each carries C{address} (the endpoint), and the two
    flags a router needs to decide whether a retry is safe:

      - C{requestWritten}: at least one byte of the request was handed to the
        upstream connection.  When C{False} the origin cannot have seen the
        request and any request may be retried.
      - C{responseStarted}: at least one byte of a response was received.
        When C{True} the failure happened while reading the response (head or
        body); the response may already be partly forwarded downstream.
"""

from __future__ import annotations

from typing import Any, Optional

__all__ = [
    "FramingError",
    "RequestRejected",
    "UpstreamError",
    "ConnectionFailed",
    "ConnectionRefused",
    "ConnectTimeout",
    "TLSHandshakeFailed",
    "ConnectionReset",
    "ResponseTimeout",
    "ResponseProtocolError",
    "PoolExhausted",
    "PoolClosed",
    "RequestBodyFailed",
    "BodyAborted",
]


class FramingError(Exception):
    """
    A message (head, chunked body or trailers) violates the strict HTTP/1.1
    framing rules.

    @ivar status: the HTTP status to answer with when this happens on a
        request (400 unless a more specific one applies).
    @ivar reason: a short human-readable explanation (sent as the body of
        the error response on the server side).
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class RequestRejected(FramingError):
    """
    The server rejected a request before handing it to the handler.  The
    server answers C{status} with a short text body and closes.
    """


class BodyAborted(Exception):
    """
    A message body ended abnormally (the peer vanished, a framing error, a
    timeout, or an explicit abort).  Passed to
    L{IBodyConsumer.bodyAborted<linkerpy.protocol.http.interfaces.IBodyConsumer.bodyAborted>}
    wrapped in a C{Failure}; C{cause} is the underlying exception if any.
    """

    def __init__(self, reason: str, cause: Optional[BaseException] = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cause = cause


class UpstreamError(Exception):
    """
    Base class of failures talking to an upstream endpoint.

    @ivar address: the endpoint, C{(host, port)}, or C{None} if unknown.
    @ivar requestWritten: C{True} if any request byte was written.
    @ivar responseStarted: C{True} if any response byte was received.
    @ivar cause: the underlying exception (a Twisted connection error, a
        L{FramingError}, ...), or C{None}.
    """

    #: Default message prefix, overridden by subclasses.
    summary = "upstream failure"

    def __init__(
        self,
        address: Any = None,
        requestWritten: bool = False,
        responseStarted: bool = False,
        cause: Optional[BaseException] = None,
        detail: str = "",
    ) -> None:
        self.address = address
        self.requestWritten = requestWritten
        self.responseStarted = responseStarted
        self.cause = cause
        self.detail = detail
        super().__init__(self.describe())

    def describe(self) -> str:
        """
        A one-line description, e.g. for an C{l5d-err} header.
        """
        where = ""
        if self.address is not None:
            try:
                host, port = self.address[0], self.address[1]
                where = f" {host}:{port}"
            except (TypeError, IndexError):
                where = f" {self.address}"
        text = f"{self.summary}{where}"
        if self.detail:
            text = f"{text}: {self.detail}"
        return text

    @property
    def retrySafe(self) -> bool:
        """
        C{True} when the origin cannot have processed the request: nothing was
        written.  (Whether a written request may be retried is policy, decided
        by the router from the method and the classifier.)
        """
        return not self.requestWritten


class ConnectionFailed(UpstreamError):
    """
    No connection could be established (nothing was written).
    """

    summary = "unable to establish connection to"


class ConnectionRefused(ConnectionFailed):
    """
    The endpoint refused the TCP connection.
    """

    summary = "connection refused by"


class ConnectTimeout(ConnectionFailed):
    """
    The TCP connection (and TLS handshake, if any) did not complete within
    the connect timeout.
    """

    summary = "connect timed out to"

    #: the connect timeout that expired, in milliseconds (set by the pool)
    timeoutMs: "int | None" = None


class TLSHandshakeFailed(ConnectionFailed):
    """
    The TLS handshake with the endpoint failed (certificate rejected, protocol
    mismatch).  No request byte reached the origin.
    """

    summary = "TLS handshake failed with"


class ConnectionReset(UpstreamError):
    """
    An established connection closed or was reset during the exchange.
    Check C{requestWritten}/C{responseStarted} for how far it got.
    """

    summary = "connection closed by"


class ResponseTimeout(UpstreamError):
    """
    The origin sent nothing for C{responseIdleTimeout} seconds while a
    request waited for its response (or for more of its body).  The
    connection is closed.
    """

    summary = "no response in time from"


class ResponseProtocolError(UpstreamError):
    """
    The upstream response violated the strict framing rules (malformed status
    line, CL+TE, bad chunking, oversized head, obs-fold...).
    C{responseStarted} is C{True}.
    """

    summary = "invalid response from"


class PoolExhausted(UpstreamError):
    """
    The pool is at C{maxSize} and already has C{maxWaiters} requests waiting
    for a connection; the request failed fast without being written.
    """

    summary = "connection pool exhausted for"


class PoolClosed(UpstreamError):
    """
    The pool was closed (its client expired or the router is stopping).
    """

    summary = "connection pool closed for"


class RequestBodyFailed(UpstreamError):
    """
    The request body source failed (the downstream client vanished or sent a
    malformed body) while the request was being forwarded.  The upstream
    connection is closed.
    """

    summary = "request body failed while sending to"
