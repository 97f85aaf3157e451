# -*- test-case-name: tests.test_http_l5d -*-
"""
Linkerd's request and response headers (C{l5d-*}, C{Via}), read on ingress
and written on egress.

Ingress (server side):
  - C{l5d-ctx-dtab} then C{l5d-dtab} values are parsed (each separately) and
    concatenated into the request-local dtab, then removed; a malformed
    value is a 400.  C{dtab-local} is ignored and forwarded untouched.
  - C{l5d-ctx-deadline} (C{<timestamp ns> <deadline ns>}, several values
    combine to the strictest) tightens the request's timeout, then is removed.
  - C{l5d-ctx-trace} continues a trace (or one is started); C{l5d-sample}
    is read and removed.
  - with C{clearContext}, every C{l5d-*} request header is removed first.
  - more C{Via} entries than C{maxCallDepth} is a 400 (a proxy loop).

Egress (client side, every attempt): C{l5d-dst-service}, C{l5d-dst-client},
C{l5d-dst-residual} (when not empty), C{l5d-ctx-dtab} (when the local dtab
is not empty), C{l5d-ctx-deadline} (when there is a deadline),
C{l5d-ctx-trace}, C{l5d-reqid}, and C{Via: 1.1 linkerpy} appended.
"""

from __future__ import annotations

import base64
import random
import struct
from typing import Any, Optional

from linkerpy.errors import InvalidDtabHeader
from linkerpy.naming.dtab import Dtab

L5D_DTAB = b"l5d-dtab"
L5D_CTX_DTAB = b"l5d-ctx-dtab"
L5D_CTX_DEADLINE = b"l5d-ctx-deadline"
L5D_CTX_TRACE = b"l5d-ctx-trace"
L5D_SAMPLE = b"l5d-sample"
L5D_REQID = b"l5d-reqid"
L5D_DST_SERVICE = b"l5d-dst-service"
L5D_DST_CLIENT = b"l5d-dst-client"
L5D_DST_RESIDUAL = b"l5d-dst-residual"
L5D_ERR = b"l5d-err"
L5D_RETRYABLE = b"l5d-retryable"
L5D_SUCCESS_CLASS = b"l5d-success-class"
VIA = b"via"
VIA_ENTRY = b"1.1 linkerpy"

_dtabMemo: dict = {}
_pack = struct.Struct(">QQQQ").pack
_b64encode = base64.b64encode


def readLocalDtab(headers: Any) -> Dtab:
    """
    Parse and remove C{l5d-ctx-dtab} and C{l5d-dtab}: the request-local dtab
    is C{ctx ++ user}.

    @raise InvalidDtabHeader: a value does not parse.
    """
    ctx = headers.getAll(L5D_CTX_DTAB)
    user = headers.getAll(L5D_DTAB)
    if not ctx and not user:
        return Dtab.empty
    headers.remove(L5D_CTX_DTAB)
    headers.remove(L5D_DTAB)
    result = Dtab.empty
    for name, values in ((L5D_CTX_DTAB, ctx), (L5D_DTAB, user)):
        for value in values:
            result = result + _parseDtab(name, value)
    return result


def _parseDtab(name: bytes, value: bytes) -> Dtab:
    key = (name, value)
    found = _dtabMemo.get(key)
    if found is not None:
        return found  # type: ignore[no-any-return]
    try:
        dtab = Dtab.read(value.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as e:
        raise InvalidDtabHeader(name.decode("ascii"), str(e))
    if len(_dtabMemo) > 1024:
        _dtabMemo.clear()
    _dtabMemo[key] = dtab
    return dtab


def readDeadline(headers: Any) -> Optional[float]:
    """
    Parse and remove C{l5d-ctx-deadline}.

    @return: the strictest deadline as epoch seconds, or C{None}.  Values
        that do not parse are ignored (the header is advisory).
    """
    values = headers.getAll(L5D_CTX_DEADLINE)
    if not values:
        return None
    headers.remove(L5D_CTX_DEADLINE)
    best: Optional[float] = None
    for value in values:
        for item in value.split(b","):
            parts = item.split()
            if len(parts) != 2:
                continue
            try:
                deadline = int(parts[1]) / 1e9
            except ValueError:
                continue
            if best is None or deadline < best:
                best = deadline
    return best


def deadlineHeader(deadline: float, now: float) -> bytes:
    """
    The C{l5d-ctx-deadline} value for an outgoing request.
    """
    return b"%d %d" % (int(now * 1e9), int(deadline * 1e9))


def clearRequestContext(headers: Any) -> None:
    """
    C{clearContext}: drop every C{l5d-*} request header.
    """
    headers.removePrefix(b"l5d-")


def callDepth(headers: Any) -> int:
    """
    The number of comma-separated C{Via} entries.
    """
    count = 0
    for value in headers.getAll(VIA):
        count += sum(1 for part in value.split(b",") if part.strip())
    return count


def appendVia(headers: Any) -> None:
    """
    Append this router to C{Via}.
    """
    items = headers._items
    for item in items:
        if item[0] == VIA:
            break
    else:
        items.append(_VIA_ITEM)
        return
    headers.set(b"Via", b", ".join(headers.getAll(VIA) + [VIA_ENTRY]))


_VIA_ITEM = (VIA, b"Via", VIA_ENTRY)


def newTraceHeaders(rng: random.Random) -> "tuple[bytes, bytes]":
    """
    The C{l5d-ctx-trace} and C{l5d-reqid} values of a new trace (no
    incoming one): what C{Trace.new(rng)} gives, without the object.
    """
    span = rng.getrandbits(64)
    return _b64encode(_pack(span, span, span, 0)), b"%016x" % span


class Trace:
    """
    Finagle-style trace identifiers carried in C{l5d-ctx-trace}: 32 bytes,
    base64: span id, parent id, trace id, flags (8 bytes each, big-endian).
    """

    __slots__ = ("spanId", "parentId", "traceId", "flags", "_header", "_reqid")

    def __init__(self, spanId: int, parentId: int, traceId: int, flags: int = 0) -> None:
        self.spanId = spanId
        self.parentId = parentId
        self.traceId = traceId
        self.flags = flags
        self._header: Optional[bytes] = None
        self._reqid: Optional[bytes] = None

    @classmethod
    def new(cls, rng: random.Random) -> "Trace":
        """
        Start a trace (no incoming C{l5d-ctx-trace}).
        """
        span = rng.getrandbits(64)
        return cls(span, span, span, 0)

    @classmethod
    def fromHeaders(cls, headers: Any, rng: random.Random) -> "Trace":
        """
        Continue the incoming trace (a new span under it) or start one.
        Removes C{l5d-ctx-trace} and C{l5d-sample}.
        """
        raw = headers.getLast(L5D_CTX_TRACE)
        if raw is not None:
            headers.remove(L5D_CTX_TRACE)
        if L5D_SAMPLE in headers:
            headers.remove(L5D_SAMPLE)
        span = rng.getrandbits(64)
        if raw:
            try:
                data = base64.b64decode(raw, validate=True)
                if len(data) in (32, 40):
                    incomingSpan, _, traceId, flags = struct.unpack(">QQQQ", data[:32])
                    return cls(span, incomingSpan, traceId, flags)
            except (ValueError, struct.error):
                pass
        return cls(span, span, span, 0)

    def header(self) -> bytes:
        h = self._header
        if h is None:
            h = self._header = _b64encode(_pack(self.spanId, self.parentId, self.traceId, self.flags))
        return h

    def reqid(self) -> bytes:
        r = self._reqid
        if r is None:
            r = self._reqid = b"%016x" % self.traceId
        return r


def forwardedLabel(labeler: Any, peer: Any, local: Any, routerLabel: str, connectionToken: str, rng: random.Random) -> str:
    """
    One party's label for the C{Forwarded} header (RFC 7239 obfuscated
    identifiers start with C{_}).
    """
    kind = labeler.kind
    if kind == "ip":
        host = getattr(peer, "host", "unknown")
        return f'"[{host}]"' if ":" in host else host
    if kind == "ip:port":
        host = getattr(peer, "host", "unknown")
        port = getattr(peer, "port", 0)
        return f'"[{host}]:{port}"' if ":" in host else f'"{host}:{port}"'
    if kind == "connectionRandom":
        return "_" + connectionToken
    if kind == "router":
        return "_" + routerLabel
    if kind == "static":
        return "_" + (labeler.label or "")
    return "_" + "%010x" % rng.getrandbits(40)


def checkCallDepth(headers: Any, limit: int) -> None:
    """
    @raise linkerpy.errors.MaxCallDepthExceeded: more C{Via} entries than C{limit}.
    """
    if VIA in headers and callDepth(headers) > limit:
        from linkerpy.errors import MaxCallDepthExceeded

        raise MaxCallDepthExceeded(limit)


__all__ = [
    "readLocalDtab",
    "readDeadline",
    "deadlineHeader",
    "clearRequestContext",
    "callDepth",
    "appendVia",
    "Trace",
    "forwardedLabel",
    "checkCallDepth",
]
