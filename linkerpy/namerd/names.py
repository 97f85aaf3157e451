# -*- test-case-name: tests.test_namerd_api -*-
"""
The naming half of the HTTP API: bind, addr, resolve, delegate and
bound-names.

A bind answer shows each leaf's address set, so the rendered document of a
binding depends on the bound tree and on the addresses of its leaves: the
live document is a derived L{Var} observing both, and a watch writes a line
whenever its rendering changes.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional, Tuple

from twisted.internet.defer import Deferred

from linkerpy.namerd.httputil import Timeout, flag, respond, respondJSON, waitFor
from linkerpy.namerd.jsoncodec import addrToJSON, boundTreeToJSON
from linkerpy.namerd.watch import SKIP, EndOfStream
from linkerpy.naming import AddrPending, Failed, Ok, Var

__all__ = ["NamesHandlers", "bindDocument"]

_COMPACT = (",", ":")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=_COMPACT, ensure_ascii=False)


def _leafBounds(tree: Any) -> Tuple[Any, ...]:
    seen: Dict[Any, Any] = {}
    for leaf in tree.leaves():
        seen.setdefault(leaf.value, leaf.value)
    return tuple(seen.values())


def bindDocument(states: "Var[Any]") -> "Var[Any]":
    """
    A Var of C{(kind, payload)}: C{("pending", None)}, C{("failed", message)}
    or C{("ok", (json text, settled))}, where C{settled} says no leaf's
    address set is still pending.
    """

    def follow(state: Any) -> "Var[Any]":
        if isinstance(state, Ok):
            tree = state.value
            bounds = _leafBounds(tree)
            if not bounds:
                return Var.const(("ok", (_dumps(boundTreeToJSON(tree)), True)))

            def render(addrs: Tuple[Any, ...]) -> Any:
                text = _dumps(boundTreeToJSON(tree))
                return ("ok", (text, all(a is not AddrPending for a in addrs)))

            return Var.collect([b.addr for b in bounds]).map(render)
        if isinstance(state, Failed):
            return Var.const(("failed", str(state.exception) or type(state.exception).__name__))
        return Var.const(("pending", None))

    return states.flatMap(follow)


class NamesHandlers:
    """
    Handlers bound to a L{linkerpy.namerd.api.NamerdAPI}.
    """

    def __init__(self, api: Any) -> None:
        self.api = api

    @property
    def namerd(self) -> Any:
        return self.api.namerd

    def _query(self, request: Any, needPath: bool = True) -> Any:
        from linkerpy.namerd.api import parseQuery

        return parseQuery(request, needPath)

    def _wait(self, request: Any, var: Any, ready: Any, render: Any) -> Deferred:
        """
        Answer a non-watch request once C{var} is C{ready}, or with what it
        holds when the request timeout expires.
        """
        d = waitFor(var, ready, self.api.clock, self.api.requestTimeout)

        def timedOut(failure: Any) -> Any:
            failure.trap(Timeout)
            return render(failure.value.last, timedOut=True)

        d.addCallback(render)
        d.addErrback(timedOut)
        return d

    # -- bind ------------------------------------------------------------------------

    def bind(self, request: Any, ns: Optional[str]) -> Any:
        from linkerpy.namerd.api import ApiError

        path, dtab = self._query(request)
        doc = bindDocument(self.namerd.bindStates(ns, dtab, path))
        if flag(request, "watch"):
            def line(value: Any) -> Any:
                kind, payload = value
                if kind == "pending":
                    return SKIP
                if kind == "failed":
                    raise EndOfStream(payload)
                return payload[0]

            return self.api.watch(request, doc, line)

        def render(value: Any, timedOut: bool = False) -> None:
            kind, payload = value if value is not None else ("pending", None)
            if kind == "ok":
                respond(request, 200, payload[0], b"application/json")
            elif kind == "failed":
                raise ApiError(500, f"binding failed: {payload}")
            else:
                raise ApiError(503, "Request timed out.")

        return self._wait(request, doc, lambda v: v[0] == "failed" or (v[0] == "ok" and v[1][1]), render)

    # -- addr and resolve ----------------------------------------------------------------

    def _addr(self, request: Any, var: Any) -> Any:
        if flag(request, "watch"):
            return self.api.watch(request, var, lambda a: SKIP if a is AddrPending else _dumps(addrToJSON(a)))

        def render(addr: Any, timedOut: bool = False) -> None:
            respondJSON(request, addrToJSON(addr if addr is not None else AddrPending))

        return self._wait(request, var, lambda a: a is not AddrPending, render)

    def addr(self, request: Any, ns: Optional[str]) -> Any:
        path, _ = self._query(request)
        return self._addr(request, self.namerd.addrVar(ns, path))

    def resolve(self, request: Any, ns: Optional[str]) -> Any:
        path, dtab = self._query(request)
        return self._addr(request, self.namerd.resolveVar(ns, dtab, path))

    # -- delegate ----------------------------------------------------------------------

    def delegate(self, request: Any, ns: Optional[str]) -> Any:
        from linkerpy.namerd.api import ApiError
        from linkerpy.namerd.errors import InvalidNamespace, checkNamespace
        from linkerpy.namerd.httputil import arg

        if flag(request, "watch"):
            raise ApiError(400, "delegate does not support watch=true")
        if ns is None:
            ns = arg(request, "namespace") or "default"
            try:
                checkNamespace(ns)
            except InvalidNamespace as e:
                raise ApiError(400, str(e))
        path, dtab = self._query(request)
        d = self.namerd.interpreter(ns).delegate(dtab, path)
        clock = self.api.clock
        call = clock.callLater(self.api.requestTimeout, d.cancel)

        def done(tree: Any) -> None:
            respond(request, 200, tree.toJSONText(), b"application/json")

        def failed(failure: Any) -> None:
            from twisted.internet.defer import CancelledError

            if failure.check(CancelledError):
                raise ApiError(503, "Request timed out.")
            raise ApiError(500, f"delegation failed: {failure.getErrorMessage()}")

        def stop(result: Any) -> Any:
            if call.active():
                call.cancel()
            return result

        d.addBoth(stop)
        d.addCallbacks(done, failed)
        return d

    # -- bound names ---------------------------------------------------------------------

    def boundNames(self, request: Any, ns: Optional[str]) -> Any:
        from linkerpy.naming import Pending

        var = self.namerd.boundNames()
        if flag(request, "watch"):
            return self.api.watch(request, var, lambda names: SKIP if names is Pending else _dumps(list(names)))

        def render(names: Any, timedOut: bool = False) -> None:
            from linkerpy.namerd.api import ApiError

            if names is None or names is Pending:
                raise ApiError(503, "Request timed out.")
            respondJSON(request, list(names))

        return self._wait(request, var, lambda names: names is not Pending, render)
