# -*- test-case-name: tests.test_namerd_api -*-
"""
The C{io.l5d.httpController} interface: Namerd's HTTP API, plus policy
documents.

    GET    /api/1/dtabs                    sorted JSON list of namespaces
    GET    /api/1/dtabs/<ns>               the dtab (JSON, or text with Accept: application/dtab) + ETag
    HEAD   /api/1/dtabs/<ns>               ETag only
    POST   /api/1/dtabs/<ns>               create (409 if it exists)
    PUT    /api/1/dtabs/<ns>               update; If-Match makes it a compare-and-swap (412, 404)
    DELETE /api/1/dtabs/<ns>               delete (404 if absent)
    GET    /api/1/policy[/<ns>] ...        the same for policy documents
    GET    /api/1/bind/<ns>?path=[&dtab=]  the bound tree of a logical name
    GET    /api/1/addr/<ns>?path=          the address set of a concrete name
    GET    /api/1/resolve/<ns>?path=[&dtab=]  the address set of a logical name
    GET    /api/1/delegate[/<ns>]?path=[&dtab=]  the delegation tree
    GET    /api/1/bound-names              concrete names known to enumerating namers

C{?watch=true} on the GETs (except delegate) streams one document per line
on every change (see L{linkerpy.namerd.watch}).  Mutations need a bearer
token when C{auth} is configured; bodies are size-limited (413).
"""

from __future__ import annotations

import hmac
import json
from typing import Any, Callable, Dict, Optional, Tuple

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from linkerpy.namerd import names
from linkerpy.namerd.documents import DocumentError, mediaType, parseDtabBody, parsePolicyBody
from linkerpy.namerd.errors import (
    InvalidNamespace,
    NamespaceExists,
    NoSuchNamespace,
    StoreUnavailable,
    VersionMismatch,
    checkNamespace,
)
from linkerpy.namerd.httputil import arg, etagOf, flag, respond, respondJSON, versionFromETag
from linkerpy.namerd.jsoncodec import dtabToJSON
from linkerpy.namerd.watch import SKIP, WatchStream
from linkerpy.naming import Dtab, Pending

__all__ = ["NamerdAPI"]

log = Logger()

_MUTATING = frozenset({b"POST", b"PUT", b"DELETE", b"PATCH"})

Handler = Callable[[Any, Optional[str]], Any]


class ApiError(Exception):
    """
    An answer other than success: C{status} and a message.
    """

    def __init__(self, status: int, message: str, headers: Optional[Dict[bytes, bytes]] = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


class NamerdAPI(Resource):
    """
    The whole API as one leaf resource.

    @ivar namerd: the L{linkerpy.namerd.core.Namerd}.
    @ivar token: the bearer token mutations need, or C{None}.
    """

    isLeaf = True

    def __init__(
        self,
        namerd: Any,
        clock: Any,
        token: Optional[str] = None,
        maxWatches: int = 10000,
        requestTimeout: float = 10.0,
        metrics: Any = None,
    ) -> None:
        super().__init__()
        from linkerpy.telemetry.metrics import MetricsTree

        self.namerd = namerd
        self.store = namerd.store
        self.clock = clock
        self.token = token
        self.maxWatches = maxWatches
        self.requestTimeout = requestTimeout
        self.metrics = metrics if metrics is not None else MetricsTree()
        self.watches = 0
        self.metrics.gauge("watches", fn=lambda: self.watches)
        self.requestsCounter = self.metrics.counter("requests")
        self.writesCounter = self.metrics.counter("writes")
        self.rejectedCounter = self.metrics.counter("rejected")
        self.names = names.NamesHandlers(self)
        self.routes: Dict[str, Tuple[Dict[bytes, Handler], bool]] = {
            "dtabs": (self._docMethods("dtabs"), True),
            "policy": (self._docMethods("policy"), True),
            "bind": ({b"GET": self.names.bind}, True),
            "addr": ({b"GET": self.names.addr}, True),
            "resolve": ({b"GET": self.names.resolve}, True),
            "delegate": ({b"GET": self.names.delegate}, True),
            "bound-names": ({b"GET": self.names.boundNames}, False),
        }

    # -- dispatch ------------------------------------------------------------------

    def render(self, request: Any) -> Any:
        self.requestsCounter.incr()
        try:
            result = self._dispatch(request)
        except ApiError as e:
            self._error(request, e)
            return NOT_DONE_YET
        except Exception:
            log.failure("namerd API {method} {path}", method=request.method, path=request.path)
            respond(request, 500, "internal error")
            return NOT_DONE_YET
        if isinstance(result, Deferred):
            result.addErrback(self._failed, request)
        return NOT_DONE_YET

    def _dispatch(self, request: Any) -> Any:
        try:
            path = request.path.decode("ascii")
        except UnicodeDecodeError:
            raise ApiError(400, "the request path is not ASCII")
        parts = path.split("/")
        # ['', 'api', '1', <what>, <ns>?]
        if len(parts) < 4 or parts[0] != "" or parts[1] != "api" or parts[2] != "1" or len(parts) > 5:
            raise ApiError(404, f"no such endpoint: {path}")
        what = parts[3]
        route = self.routes.get(what)
        if route is None:
            raise ApiError(404, f"no such endpoint: {path}")
        methods, takesNamespace = route
        ns: Optional[str] = None
        if len(parts) == 5:
            if not takesNamespace:
                raise ApiError(404, f"no such endpoint: {path}")
            ns = parts[4]
            try:
                checkNamespace(ns)
            except InvalidNamespace as e:
                raise ApiError(400, str(e))
        elif what in ("bind", "addr", "resolve"):
            raise ApiError(404, f"{path}: a namespace is required, e.g. /api/1/{what}/default")
        method = request.method
        handler = methods.get(method)
        if handler is None and method == b"HEAD":
            handler = methods.get(b"GET")
        if handler is None:
            allowed = sorted(m.decode("ascii") for m in methods) + (["HEAD"] if b"GET" in methods else [])
            raise ApiError(405, f"method {method.decode('ascii', 'replace')} not allowed; use {', '.join(allowed)}",
                           {b"allow": ", ".join(allowed).encode("ascii")})
        if method in _MUTATING:
            self._authorize(request)
        return handler(request, ns)

    def _authorize(self, request: Any) -> None:
        if self.token is None:
            return
        header = request.getHeader(b"authorization") or b""
        expected = b"Bearer " + self.token.encode("utf-8")
        if not hmac.compare_digest(header, expected):
            self.rejectedCounter.incr()
            raise ApiError(401, "a valid bearer token is required", {b"www-authenticate": b'Bearer realm="namerd"'})

    def _error(self, request: Any, error: ApiError) -> None:
        respond(request, error.status, str(error), headers=error.headers)

    def _failed(self, failure: Failure, request: Any) -> None:
        error = failure.value
        if isinstance(error, ApiError):
            self._error(request, error)
        elif isinstance(error, NamespaceExists):
            respond(request, 409, str(error))
        elif isinstance(error, NoSuchNamespace):
            respond(request, 404, str(error))
        elif isinstance(error, VersionMismatch):
            respond(request, 412, str(error))
        elif isinstance(error, StoreUnavailable):
            respond(request, 503, f"storage unavailable: {error}")
        else:
            log.failure("namerd API {method} {path}", failure, method=request.method, path=request.path)
            respond(request, 500, "internal error")

    # -- watches ---------------------------------------------------------------------

    def watch(self, request: Any, var: Any, render: Callable[[Any], Any], contentType: bytes = b"application/json") -> None:
        """
        Stream C{var} to the client (see L{WatchStream}).
        """
        if self.watches >= self.maxWatches:
            raise ApiError(503, f"too many open watches (limit {self.maxWatches})")
        self.watches += 1

        def closed() -> None:
            self.watches -= 1

        WatchStream(request, var, render, contentType, closed).start()

    # -- documents ---------------------------------------------------------------------

    def _docMethods(self, kind: str) -> Dict[bytes, Handler]:
        return {
            b"GET": lambda request, ns: self._get(kind, request, ns),
            b"POST": lambda request, ns: self._create(kind, request, ns),
            b"PUT": lambda request, ns: self._put(kind, request, ns),
            b"DELETE": lambda request, ns: self._delete(kind, request, ns),
        }

    def _wantsDtabText(self, request: Any) -> bool:
        accept = (request.getHeader(b"accept") or b"").decode("latin-1")
        types = [mediaType(part) for part in accept.split(",")]
        return any(t in ("application/dtab", "text/plain") for t in types) and "application/json" not in types

    def _renderDoc(self, kind: str, text: str, asText: bool) -> Tuple[str, bytes]:
        """
        @return: C{(body, content type)} of a stored document.
        """
        if kind == "dtabs":
            dtab = _readStoredDtab(text)
            if asText:
                return dtab.show, b"application/dtab"
            return json.dumps(dtabToJSON(dtab), separators=(",", ":")), b"application/json"
        return text, b"application/json"

    def _get(self, kind: str, request: Any, ns: Optional[str]) -> Any:
        watch = flag(request, "watch") and request.method == b"GET"
        if ns is None:
            if request.method == b"HEAD":
                raise ApiError(405, "HEAD needs a namespace")
            if watch:
                var = self.store.observeNamespaces(kind)
                return self.watch(request, var, lambda names: SKIP if names is Pending else json.dumps(list(names)))
            return self.store.list(kind).addCallback(lambda names: respondJSON(request, names))
        asText = kind == "dtabs" and self._wantsDtabText(request)
        if watch:
            def render(doc: Any) -> Any:
                if doc is Pending:
                    return SKIP
                if doc is None:
                    return "" if asText else "null"
                return self._renderDoc(kind, doc[0], asText)[0]

            contentType = b"application/dtab" if asText else b"application/json"
            return self.watch(request, self.store.observe(kind, ns), render, contentType)

        def found(doc: Any) -> None:
            if doc is None:
                raise NoSuchNamespace(kind, ns or "")
            text, version = doc
            body, contentType = self._renderDoc(kind, text, asText)
            respond(request, 200, body, contentType, {b"etag": etagOf(version)})

        return self.store.get(kind, ns).addCallback(found)

    def _body(self, request: Any) -> bytes:
        content = request.content
        if content is None:
            return b""
        content.seek(0)
        return content.read()  # type: ignore[no-any-return]

    def _parse(self, kind: str, request: Any) -> str:
        contentType = request.getHeader(b"content-type")
        contentType = contentType.decode("latin-1") if contentType else None
        body = self._body(request)
        try:
            if kind == "dtabs":
                return parseDtabBody(contentType, body).show
            return parsePolicyBody(contentType, body, self.namerd.registry)
        except DocumentError as e:
            raise ApiError(400, str(e))

    def _written(self, request: Any, version: bytes) -> None:
        self.writesCounter.incr()
        respond(request, 204, headers={b"etag": etagOf(version)})

    def _create(self, kind: str, request: Any, ns: Optional[str]) -> Any:
        if ns is None:
            raise ApiError(405, "POST needs a namespace: /api/1/%s/<namespace>" % kind)
        text = self._parse(kind, request)
        return self.store.create(kind, ns, text).addCallback(lambda version: self._written(request, version))

    def _put(self, kind: str, request: Any, ns: Optional[str]) -> Any:
        if ns is None:
            raise ApiError(405, "PUT needs a namespace: /api/1/%s/<namespace>" % kind)
        ifMatch = request.getHeader(b"if-match")
        expected: Optional[bytes] = None
        if ifMatch is not None:
            expected = versionFromETag(ifMatch)
            if expected is None:
                expected = b"\x00unmatchable"
        text = self._parse(kind, request)
        d = maybeDeferred(self.store.update, kind, ns, text, expected)
        return d.addCallback(lambda version: self._written(request, version))

    def _delete(self, kind: str, request: Any, ns: Optional[str]) -> Any:
        if ns is None:
            raise ApiError(405, "DELETE needs a namespace: /api/1/%s/<namespace>" % kind)

        def deleted(_: Any) -> None:
            self.writesCounter.incr()
            respond(request, 204)

        return self.store.delete(kind, ns).addCallback(deleted)


def _readStoredDtab(text: str) -> Dtab:
    try:
        return Dtab.read(text)
    except ValueError as e:
        raise ApiError(500, f"the stored dtab does not parse: {e}")


def parseQuery(request: Any, needPath: bool = True) -> Tuple[Any, Dtab]:
    """
    The C{path} and C{dtab} query arguments.

    @raise ApiError: 400 with Namerd's messages.
    """
    from linkerpy.naming import Path

    text = arg(request, "path")
    path = None
    if text is None or text == "":
        if needPath:
            raise ApiError(400, "the 'path' query parameter is required")
    else:
        try:
            path = Path.read(text)
        except ValueError as e:
            raise ApiError(400, f"Invalid path: {text} / {e}")
    dtabText = arg(request, "dtab")
    dtab = Dtab.empty
    if dtabText:
        try:
            dtab = Dtab.read(dtabText)
        except ValueError as e:
            raise ApiError(400, f"Invalid dtab: {e}")
    return path, dtab

