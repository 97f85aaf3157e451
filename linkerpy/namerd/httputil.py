# -*- test-case-name: tests.test_namerd_api -*-
"""
Small helpers of the HTTP API: answering a request that may have gone
away, query arguments, ETags, and waiting for a live value with a timeout.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Callable, Dict, Optional

from twisted.internet.defer import CancelledError, Deferred

__all__ = ["respond", "respondJSON", "arg", "flag", "etagOf", "versionFromETag", "waitFor", "Timeout"]


def respond(
    request: Any,
    status: int,
    text: str = "",
    contentType: bytes = b"text/plain; charset=utf-8",
    headers: Optional[Dict[bytes, bytes]] = None,
) -> None:
    """
    Answer and finish C{request}, unless the client has gone away.
    """
    if request.finished or getattr(request, "_disconnected", False):
        return
    request.setResponseCode(status)
    for name, value in (headers or {}).items():
        request.setHeader(name, value)
    if status in (204, 304):
        request.finish()
        return
    body = text.encode("utf-8")
    if body and not body.endswith(b"\n"):
        body += b"\n"
    request.setHeader(b"content-type", contentType)
    request.setHeader(b"content-length", b"%d" % len(body))
    request.write(body)
    request.finish()


def respondJSON(request: Any, value: Any, status: int = 200, headers: Optional[Dict[bytes, bytes]] = None) -> None:
    respond(request, status, json.dumps(value, separators=(",", ":"), ensure_ascii=False), b"application/json", headers)


def arg(request: Any, name: str) -> Optional[str]:
    """
    The first value of query argument C{name}, decoded, or C{None}.
    """
    values = (request.args or {}).get(name.encode("ascii"))
    if not values:
        return None
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        return None


def flag(request: Any, name: str) -> bool:
    value = arg(request, name)
    return value is not None and value.lower() in ("1", "true", "yes", "on", "")


def etagOf(version: bytes) -> bytes:
    """
    Namerd's ETag: the version, base64-encoded.
    """
    return base64.b64encode(version)


def versionFromETag(value: bytes) -> Optional[bytes]:
    """
    The version in an C{If-Match} header (quotes and C{W/} tolerated), or
    C{None} when it cannot be one of ours (it then matches nothing).
    """
    text = value.strip()
    if text.startswith(b"W/"):
        text = text[2:]
    if len(text) >= 2 and text[:1] == b'"' and text[-1:] == b'"':
        text = text[1:-1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


class Timeout(Exception):
    """
    A live value did not settle in time.
    """


def waitFor(var: Any, ready: Callable[[Any], bool], clock: Any, seconds: float) -> Deferred:
    """
    @return: a Deferred firing with the first value of C{var} for which
        C{ready} is true, or failing with L{Timeout} (carrying the last
        value seen as C{.last}) after C{seconds}.
    """
    seen: Dict[str, Any] = {}

    def check(value: Any) -> bool:
        seen["last"] = value
        return ready(value)

    d = var.changesTo(check)

    def timedOut() -> None:
        d.cancel()

    call = clock.callLater(seconds, timedOut)

    def done(result: Any) -> Any:
        if call.active():
            call.cancel()
        return result

    def translate(failure: Any) -> Any:
        failure.trap(CancelledError)
        error = Timeout("Request timed out.")
        error.last = seen.get("last")  # type: ignore[attr-defined]
        raise error

    d.addBoth(done)
    d.addErrback(translate)
    return d
