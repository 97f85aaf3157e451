# -*- test-case-name: tests.test_errors -*-
"""
Errors the router produces, and the one place they map to statuses.

Every error a router generates carries a status (what an HTTP client sees)
and a message (the C{l5d-err} header and the text body).  Protocols render
them; nothing else decides statuses.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence


class RoutingError(Exception):
    """
    Base class: a request could not be routed or answered.

    @cvar status: the HTTP status the error maps to.
    @ivar message: the explanation sent in C{l5d-err} and the body.
    @ivar retryable: whether a retry is safe (nothing reached the origin),
        rendered as C{l5d-retryable: true}.
    """

    status = 502

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(message)
        self.message = message
        self.retryable = retryable


# -- 4xx: the request itself is at fault -----------------------------------------


class BadRequest(RoutingError):
    """
    A request the router refuses to route (400).
    """

    status = 400


class UnidentifiedRequest(BadRequest):
    """
    No identifier could name the request.
    """

    def __init__(self, description: str, reasons: Sequence[str]):
        reason = "; ".join(reasons) if reasons else "no identifier"
        super().__init__(f"Unknown destination: {description} / {reason}")


class InvalidDtabHeader(BadRequest):
    """
    A malformed C{l5d-dtab} or C{l5d-ctx-dtab} header.
    """

    def __init__(self, header: str, problem: str):
        super().__init__(f"Invalid {header} header: {problem}")


class ClientRequestError(RoutingError):
    """
    The downstream client broke its own request (its body stalled past the
    body idle timeout, was malformed, or the client went away) while it was
    being forwarded: 400 or 408.  It says nothing about the origin, so it
    never counts against the endpoint in failure accrual.
    """

    clientFault = True

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class MaxCallDepthExceeded(BadRequest):
    """
    The request has passed through too many proxies (a loop).
    """

    def __init__(self, limit: int):
        super().__init__(f"Maximum number of calls ({limit}) has been exceeded. Please check for proxy loops.")


# -- 5xx: routing or upstream failure ------------------------------------------------


class NoBrokersAvailable(RoutingError):
    """
    The name bound to nothing usable: Neg, Fail, Empty, or no addresses (502).
    """

    status = 502

    def __init__(self, service: str, baseDtab: str, localDtab: str, why: str = ""):
        lines = ["Unable to route request!", ""]
        if why:
            lines.append(why)
        lines.append(f"service name: {service}")
        lines.append("dtab:")
        lines.extend(f"  {d}" for d in _dentries(baseDtab))
        if localDtab:
            lines.append("override dtab:")
            lines.extend(f"  {d}" for d in _dentries(localDtab))
        super().__init__("\n".join(lines))
        self.service = service


class ConnectionFailed(RoutingError):
    """
    The selected endpoint refused or dropped the connection before anything
    was written (502, retryable).
    """

    status = 502

    def __init__(self, address: str, service: str = "", client: str = "", addresses: Sequence[str] = (), cause: str = ""):
        lines = [f"Unable to establish connection to {address}." + (f" ({cause})" if cause else ""), ""]
        if service:
            lines.append(f"service name: {service}")
        if client:
            lines.append(f"client name: {client}")
        if addresses:
            lines.append(f"addresses: [{', '.join(addresses)}]")
        lines.append(f"selected address: {address}")
        super().__init__("\n".join(lines), retryable=True)
        self.address = address


class UpstreamError(RoutingError):
    """
    The origin misbehaved after the request was sent: reset, malformed or
    truncated response (502).
    """

    status = 502


class TLSOriginationFailed(RoutingError):
    """
    A TLS handshake with the origin failed (untrusted, name mismatch,
    expired...) (502).  Never falls back to plaintext.
    """

    status = 502


class RequestTimeout(RoutingError):
    """
    A timeout fired (503): C{kind} is C{total}, C{attempt}, C{binding},
    C{connect}, C{deadline} or C{server}.
    """

    status = 503

    _WHAT = {
        "total": "total timeout (totalTimeoutMs) while waiting for a response for the request, including retries (if applicable)",
        "attempt": "request attempt timeout (requestAttemptTimeoutMs) while waiting for a response from one attempt",
        "binding": "binding timeout (bindingTimeoutMs) while binding the name",
        "connect": "connect timeout (connectTimeoutMs) while connecting",
        "deadline": "the request's deadline (l5d-ctx-deadline) while waiting for a response",
        "server": "server timeout (servers[].timeoutMs) while waiting for a response",
        "response": "with no response from the origin (client.responseIdleTimeoutMs)",
    }

    def __init__(self, kind: str, milliseconds: float, service: str = "", client: str = ""):
        what = self._WHAT.get(kind, kind)
        where = ""
        if service:
            where += f" for service {service}"
        if client:
            where += f" via client {client}"
        ms = int(milliseconds) if float(milliseconds).is_integer() else round(milliseconds, 3)
        super().__init__(f"exceeded {ms}.milliseconds {what}{where}", retryable=False)
        self.kind = kind
        self.milliseconds = milliseconds


class GatewayTimeout(RequestTimeout):
    """
    The origin accepted the request and then sent nothing for
    C{responseIdleTimeoutMs} (504).
    """

    status = 504

    def __init__(self, milliseconds: float, address: str, service: str = "", client: str = ""):
        super().__init__("response", milliseconds, service=service, client=client)
        self.message = f"{self.message}; origin {address}"
        self.args = (self.message,)
        self.address = address


class Overloaded(RoutingError):
    """
    A limit refused the request (C{maxConcurrentRequests}, pool
    C{maxWaiters}) (503).
    """

    status = 503

    def __init__(self, message: str):
        super().__init__(message, retryable=True)


class HttpResponseError(RoutingError):
    """
    A plugin's deliberate answer with a given status (e.g. 429 from a rate
    limiter, 401 from an authoriser).
    """

    def __init__(self, status: int, message: str, headers: Optional[Any] = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or []


def statusFor(error: BaseException) -> int:
    """
    The HTTP status for any exception reaching the top of a request path:
    router errors carry theirs; anything unexpected is a 502.
    """
    if isinstance(error, RoutingError):
        return error.status
    return 502


def messageFor(error: BaseException) -> str:
    """
    The explanation for any exception (never a traceback).
    """
    if isinstance(error, RoutingError):
        return error.message
    text = str(error)
    return text if text else type(error).__name__


def _dentries(dtab: str) -> Sequence[str]:
    return [d.strip() for d in dtab.split(";") if d.strip()]
