# -*- test-case-name: tests.test_naming_admin -*-
"""
Admin resources for naming: C{/delegator.json}, C{/bound-names.json} and
C{/namer_state/<prefix>.json}.

They are C{twisted.web} resources; the admin server mounts them (see
L{namingResources}).  Handlers never let an exception or a traceback reach
a response: failures become short messages with 4xx/5xx statuses.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from linkerpy.naming.delegate import addrToJSON
from linkerpy.naming.dtab import Dtab
from linkerpy.naming.path import Path

__all__ = ["DelegatorResource", "BoundNamesResource", "NamerStateResource", "namingResources"]

_log = Logger()

#: Seconds before a delegation answers 503 "Request timed out.".
DELEGATE_TIMEOUT = 2.0
#: Largest accepted POST body, and longest accepted dtab or path text.
MAX_BODY = 64 * 1024

LookupRouter = Callable[[Optional[str]], Optional[Tuple[Any, Dtab]]]


def _clock(clock: Any) -> Any:
    if clock is not None:
        return clock
    from twisted.internet import reactor  # the admin server runs on the global reactor

    return reactor


def _respond(request: Request, status: int, body: str, contentType: bytes = b"text/plain; charset=utf-8") -> None:
    if getattr(request, "_disconnected", False) or request.finished:
        return
    request.setResponseCode(status)
    request.setHeader(b"content-type", contentType)
    request.write(body.encode("utf-8"))
    request.finish()


def _text(request: Request, status: int, body: str) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return body.encode("utf-8")


def _arg(request: Request, name: str) -> Optional[str]:
    values = (request.args or {}).get(name.encode("ascii"))
    if not values:
        return None
    return values[0].decode("utf-8", "replace")


def _mediaType(request: Request) -> str:
    raw = request.getHeader(b"content-type") or b""
    return raw.split(b";", 1)[0].strip().lower().decode("latin-1")


class DelegatorResource(Resource):
    """
    C{/delegator.json}: explain how a path binds.

    C{GET ?path=&dtab=&namespace=} or C{POST} (C{application/json})
    C{{"namespace", "dtab", "path"}}.  C{namespace} is a router label (the
    first router by default); C{dtab} is the complete table to use (the
    router's base dtab when the parameter is absent).
    """

    isLeaf = True

    def __init__(
        self,
        lookupRouter: LookupRouter,
        namers: Sequence[Tuple[Path, Any]] = (),
        clock: Any = None,
        timeout: float = DELEGATE_TIMEOUT,
    ) -> None:
        super().__init__()
        self.lookupRouter = lookupRouter
        self.namers = list(namers)
        self.clock = clock
        self.timeout = timeout

    def render_GET(self, request: Request) -> Any:
        return self._delegate(request, _arg(request, "namespace"), _arg(request, "dtab"), _arg(request, "path"))

    def render_POST(self, request: Request) -> Any:
        if _mediaType(request) != "application/json":
            return _text(request, 415, "Unsupported Media Type: use application/json\n")
        body = request.content.read(MAX_BODY + 1) if request.content is not None else b""
        if len(body) > MAX_BODY:
            return _text(request, 413, f"request body larger than {MAX_BODY} bytes\n")
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            data = None
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("dtab"), str)
            or not isinstance(data.get("path"), str)
            or not isinstance(data.get("namespace"), (str, type(None)))
        ):
            shown = body[:200].decode("utf-8", "replace")
            return _text(request, 400, f"Malformed delegation request: {shown}\n")
        return self._delegate(request, data.get("namespace"), data["dtab"], data["path"])

    def _interpreter(self, namespace: Optional[str]) -> Optional[Tuple[Any, Dtab]]:
        found = self.lookupRouter(namespace)
        if found is None and namespace is None:
            from linkerpy.naming.interpreter import ConfiguredNamersInterpreter
            from linkerpy.naming.plugins import systemNamerFor

            clock = _clock(self.clock)
            return ConfiguredNamersInterpreter(clock, self.namers, system=systemNamerFor(clock)), Dtab.empty
        return found

    def _delegate(self, request: Request, namespace: Optional[str], dtabText: Optional[str], pathText: Optional[str]) -> Any:
        if (dtabText is not None and len(dtabText) > MAX_BODY) or (pathText is not None and len(pathText) > MAX_BODY):
            return _text(request, 413, "dtab or path too long\n")
        found = self._interpreter(namespace)
        if found is None:
            return _text(request, 404, f"Unknown namespace: {namespace}\n")
        interpreter, baseDtab = found
        try:
            dtab = baseDtab if dtabText is None else Dtab.read(dtabText)
        except ValueError as e:
            return _text(request, 400, f"Invalid dtab: {e}\n")
        try:
            if pathText is None:
                raise ValueError("missing 'path' parameter")
            path = Path.read(pathText)
        except ValueError as e:
            return _text(request, 400, f"Invalid path: {e}\n")
        delegate = getattr(interpreter, "delegate", None)
        if delegate is None:
            return _text(request, 501, f"Name Interpreter for {namespace} cannot show delegations\n")
        finished = request.notifyFinish()
        d = maybeDeferred(delegate, dtab, path)
        d.addTimeout(self.timeout, _clock(self.clock))

        def ok(tree: Any) -> None:
            _respond(request, 200, tree.toJSONText(), b"application/json")

        def failed(f: Failure) -> None:
            from twisted.internet.defer import TimeoutError as DeferTimeout

            if f.check(DeferTimeout):
                _respond(request, 503, "Request timed out.")
            else:
                _respond(request, 500, f"Delegation failed: {f.getErrorMessage()}\n")

        d.addCallbacks(ok, failed).addErrback(lambda f: _log.failure("delegator.json", f))
        finished.addErrback(lambda _: d.cancel())
        return NOT_DONE_YET


def _enumerate(namer: Any) -> "Deferred[List[Path]]":
    names = getattr(namer, "names", None)
    prefix = getattr(namer, "prefix", None)
    if names is None or prefix is None:
        return _done([])
    return maybeDeferred(names).addCallback(lambda keys: [prefix + Path.fromElems(k) for k in keys])


def _done(value: Any) -> "Deferred[Any]":
    d: Deferred[Any] = Deferred()
    d.callback(value)
    return d


class BoundNamesResource(Resource):
    """
    C{/bound-names.json}: the concrete names enumerating namers (C{io.l5d.fs})
    know about, as a sorted JSON array of ids.
    """

    isLeaf = True

    def __init__(self, namers: Sequence[Tuple[Path, Any]], clock: Any = None, timeout: float = DELEGATE_TIMEOUT) -> None:
        super().__init__()
        self.namers = list(namers)
        self.clock = clock
        self.timeout = timeout

    def render_GET(self, request: Request) -> Any:
        finished = request.notifyFinish()
        d = gatherResults([_enumerate(n) for _, n in self.namers], consumeErrors=True)
        d.addTimeout(self.timeout, _clock(self.clock))
        d.addCallbacks(
            lambda lists: _respond(
                request, 200, json.dumps(sorted({p.show for l in lists for p in l})), b"application/json"
            ),
            lambda f: _respond(request, 503, f"could not list names: {f.getErrorMessage()}\n"),
        )
        finished.addErrback(lambda _: d.cancel())
        return NOT_DONE_YET


class NamerStateResource(Resource):
    """
    C{/namer_state/<prefix>.json}: the current address set of every name a
    namer knows, C{{"<id>": <addr JSON>}}.  C{<prefix>} is the namer's
    configured prefix (C{io.l5d.fs}, or C{disco} for C{prefix: /disco}).
    """

    isLeaf = True

    def __init__(self, namers: Sequence[Tuple[Path, Any]], clock: Any = None, timeout: float = DELEGATE_TIMEOUT) -> None:
        super().__init__()
        self.namers = list(namers)
        self.clock = clock
        self.timeout = timeout

    def render_GET(self, request: Request) -> Any:
        parts = [p.decode("utf-8", "replace") for p in (request.postpath or []) if p]
        name = "/".join(parts)
        if not name.endswith(".json"):
            return _text(request, 404, "not found: use /namer_state/<prefix>.json\n")
        try:
            wanted = Path(b"#") + Path.read("/" + name[: -len(".json")].strip("/"))
        except ValueError:
            return _text(request, 404, "no such namer\n")
        namers = [n for p, n in self.namers if p == wanted]
        if not namers:
            return _text(request, 404, f"no namer at {wanted.show}\n")
        finished = request.notifyFinish()
        states = [maybeDeferred(getattr(n, "state", lambda: {})) for n in namers]
        d = gatherResults(states, consumeErrors=True)
        d.addTimeout(self.timeout, _clock(self.clock))

        def render(results: List[Dict[Path, Any]]) -> None:
            merged: Dict[str, Any] = {}
            for result in results:
                for ident, addr in sorted(result.items()):
                    merged.setdefault(ident.show, addrToJSON(addr))
            _respond(request, 200, json.dumps(merged), b"application/json")

        d.addCallbacks(render, lambda f: _respond(request, 503, f"namer state unavailable: {f.getErrorMessage()}\n"))
        finished.addErrback(lambda _: d.cancel())
        return NOT_DONE_YET


def namingResources(lookupRouter: LookupRouter, namers: Sequence[Tuple[Path, Any]], clock: Any = None) -> Dict[str, Resource]:
    """
    @return: the naming admin resources by mount path (a path ending in
        C{/} is a prefix).
    """
    return {
        "/delegator.json": DelegatorResource(lookupRouter, namers, clock),
        "/bound-names.json": BoundNamesResource(namers, clock),
        "/namer_state/": NamerStateResource(namers, clock),
    }
