# -*- test-case-name: tests.test_http_identifiers -*-
"""
HTTP identifiers: name a request as a logical path under the router's
C{dstPrefix} (Linkerd's C{io.l5d.header.token}, C{io.l5d.methodAndHost},
C{io.l5d.path}, C{io.l5d.header}, C{io.l5d.static}).

Identification runs on every request, so the identifiers that derive a
name from a header keep a bounded memo of value → path: a busy router names
the same few hosts over and over, and reusing the same L{Path} object also
makes the route-cache lookup that follows cheap.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from zope.interface import implementer

from linkerpy.errors import BadRequest
from linkerpy.interfaces import IIdentifier
from linkerpy.naming.path import Path

_MEMO_LIMIT = 4096


class Identified:
    """
    A request was named.

    @ivar path: the logical name.
    @ivar target: a rewritten request target (C{io.l5d.path} with
        C{consume}), or C{None} to keep the request's.
    @ivar pathBytes: C{path.show} as bytes (for C{l5d-dst-service}).
    """

    __slots__ = ("path", "target", "pathBytes")

    def __init__(self, path: Path, target: Optional[bytes] = None) -> None:
        self.path = path
        self.target = target
        self.pathBytes = path.show.encode("ascii")


class Unidentified:
    """
    An identifier could not name the request (the next one is tried).
    """

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _memo(cache: Dict[Any, Any], key: Any, make: Any) -> Any:
    value = cache.get(key)
    if value is None:
        value = make(key)
        if len(cache) >= _MEMO_LIMIT:
            cache.clear()
        cache[key] = value
    return value


@implementer(IIdentifier)
class HeaderTokenIdentifier:
    """
    C{io.l5d.header.token}: C{<dstPrefix>/<header value>}, the value taken
    as one path element as is (C{foo:8080} stays one element).
    """

    def __init__(self, prefix: Path, header: str = "Host") -> None:
        self.prefix = prefix
        self.header = header.lower().encode("ascii")
        self._absent = Unidentified(f"{header} header is absent")
        self._memo: Dict[bytes, Identified] = {}

    def identify(self, request: Any) -> Any:
        value = request.headers.getLast(self.header) if self.header != b"host" else request.headers.get(b"host")
        if not value:
            return self._absent
        found = self._memo.get(value)
        if found is None:
            found = _memo(self._memo, value, lambda v: Identified(self.prefix + Path.fromElems((v,))))
        return found


@implementer(IIdentifier)
class MethodAndHostIdentifier:
    """
    C{io.l5d.methodAndHost}: C{<prefix>/1.1/<METHOD>/<host>[/<uri path>]}
    for HTTP/1.1 (host lower-cased), C{<prefix>/1.0/<METHOD>[/<uri path>]}
    for HTTP/1.0.
    """

    def __init__(self, prefix: Path, httpUriInDst: bool = False) -> None:
        self.prefix = prefix
        self.httpUriInDst = httpUriInDst
        self._missing = Unidentified("HTTP/1.1 request missing hostname")

    def identify(self, request: Any) -> Any:
        method = request.method
        if request.version == b"HTTP/1.1":
            host = request.headers.get(b"host")
            if not host:
                return self._missing
            elems = (b"1.1", method, host.lower())
        elif request.version == b"HTTP/1.0":
            elems = (b"1.0", method)
        else:
            return Unidentified(f"unsupported HTTP version {request.version!r}")
        if self.httpUriInDst:
            elems = elems + tuple(_pathSegments(request.target))
        return Identified(self.prefix + Path.fromElems(elems))


@implementer(IIdentifier)
class PathIdentifier:
    """
    C{io.l5d.path}: C{<prefix>/<first N segments of the URI path>}; with
    C{consume}, those segments are removed from the forwarded URI.
    """

    def __init__(self, prefix: Path, segments: int = 1, consume: bool = False) -> None:
        self.prefix = prefix
        self.segments = segments
        self.consume = consume
        self._short = Unidentified("not enough segments in path")

    def identify(self, request: Any) -> Any:
        target = request.target
        segs = _pathSegments(target)
        if len(segs) < self.segments:
            return self._short
        path = self.prefix + Path.fromElems(tuple(segs[: self.segments]))
        if not self.consume:
            return Identified(path)
        return Identified(path, _consume(target, self.segments))


@implementer(IIdentifier)
class HeaderPathIdentifier:
    """
    C{io.l5d.header}: the header's value, which must be a path
    (C{/svc/users}), appended to the prefix.  A value that is not a valid
    path is a 400.
    """

    def __init__(self, prefix: Path, header: str = "l5d-name") -> None:
        self.prefix = prefix
        self.header = header.lower().encode("ascii")
        self.headerName = header
        self._absent = Unidentified(f"{header} header is absent")
        self._memo: Dict[bytes, Identified] = {}

    def identify(self, request: Any) -> Any:
        value = request.headers.getLast(self.header)
        if not value:
            return self._absent
        found = self._memo.get(value)
        if found is None:
            try:
                text = value.decode("ascii")
                path = Path.read(text)
            except (UnicodeDecodeError, ValueError) as e:
                raise BadRequest(f"Invalid {self.headerName} header: {e}")
            found = _memo(self._memo, value, lambda v: Identified(self.prefix + path))
        return found


@implementer(IIdentifier)
class StaticIdentifier:
    """
    C{io.l5d.static}: always C{<prefix> + path}.
    """

    def __init__(self, prefix: Path, path: Path) -> None:
        self.result = Identified(prefix + path)

    def identify(self, request: Any) -> Any:
        return self.result


def _pathSegments(target: bytes) -> list:
    path = target.split(b"?", 1)[0].split(b"#", 1)[0]
    return [s for s in path.split(b"/") if s]


def _consume(target: bytes, n: int) -> bytes:
    path, sep, query = target.partition(b"?")
    parts = path.split(b"/")
    # parts[0] is "" (leading slash); drop the first n non-empty segments.
    kept = []
    dropped = 0
    for part in parts[1:]:
        if dropped < n and part:
            dropped += 1
            continue
        kept.append(part)
    rest = b"/" + b"/".join(kept) if kept else b"/"
    if rest.startswith(b"//"):
        rest = rest[1:]
    return rest + (sep + query if sep else b"")
