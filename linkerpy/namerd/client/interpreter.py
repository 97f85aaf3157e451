# -*- test-case-name: tests.test_namerd_client -*-
"""
C{interpreter: {kind: io.l5d.namerd.http}}: names bound by namerd.

C{bind(dtab, path)} streams C{/api/1/bind/<ns>?path=...&watch=true} (with
C{dtab=} when the router's base and local dtabs are not empty) and turns
each document into a name tree of L{Bound}.  Each bound id's address set
streams from C{/api/1/addr/<ns>?path=<id>&watch=true}, once per id however
many trees mention it, and only while something observes it.  Both streams
start when the router first observes the binding and stop when it lets go.

While namerd is unreachable every value keeps its last good state, so
requests go on being routed with the last bindings and addresses.
"""

from __future__ import annotations

import json
import weakref
from typing import Any, Dict, Optional, Tuple

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from linkerpy.interfaces import IInterpreter
from linkerpy.namerd.client.stream import WatchClient, connectionFor
from linkerpy.namerd.jsoncodec import addrFromJSON, boundTreeFromJSON, delegateTreeFromJSON
from linkerpy.naming import Activity, AddrPending, Bound, Dtab, Failed, Ok, Path, Pending, Var

__all__ = ["NamerdHttpInterpreter", "interpreterStateResources"]

log = Logger()


class _StreamedVar(Var[Any]):
    """
    A Var fed by a watch stream that runs while the Var is observed.
    """

    __slots__ = ("_interp", "_what", "_query", "_client", "_label")

    def __init__(self, interp: "NamerdHttpInterpreter", what: str, query: Dict[str, str], initial: Any, label: str) -> None:
        Var.__init__(self, initial)
        self._interp = interp
        self._what = what
        self._query = query
        self._label = label
        self._client: Optional[WatchClient] = None

    def _start(self) -> None:
        conn = self._interp.connection
        url = conn.url(self._what, **self._query)
        self._client = WatchClient(conn, self._what, url, self._onDocument, self._onError, self._label)
        self._client.start()

    def _stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.stop()

    def _onDocument(self, document: Any) -> None:
        raise NotImplementedError()

    def _onError(self, message: str) -> None:
        pass


class _BindVar(_StreamedVar):
    __slots__ = ()

    def _onDocument(self, document: Any) -> None:
        self._set(Ok(boundTreeFromJSON(document, self._interp.boundFor)))

    def _onError(self, message: str) -> None:
        # Keep a good binding through later errors; report errors only
        # when there never was one.
        if not isinstance(self._value, Ok):
            self._set(Failed(Exception(message)))


class _AddrVar(_StreamedVar):
    __slots__ = ()

    def _onDocument(self, document: Any) -> None:
        addr = addrFromJSON(document)
        if addr is not AddrPending:
            self._set(addr)


def _whenAddressed(state: Any) -> "Var[Any]":
    """
    Hold a new bound tree back (as L{Pending}) until the address set of
    each of its leaves is known: the router then keeps routing with the
    previous tree until the new one can take traffic, and a first request
    waits for addresses instead of failing with "no endpoints".
    """
    if not isinstance(state, Ok):
        return Var.const(state)
    bounds = [leaf.value for leaf in state.value.leaves()]
    if not bounds:
        return Var.const(state)
    return Var.collect([b.addr for b in bounds]).map(
        lambda addrs: Pending if any(a is AddrPending for a in addrs) else state
    )


@implementer(IInterpreter)
class NamerdHttpInterpreter:
    """
    An interpreter asking namerd's HTTP API.

    @ivar connection: the shared L{linkerpy.namerd.client.stream.NamerdConnection}.
    """

    kind = "io.l5d.namerd.http"

    def __init__(self, config: Any, context: Any, transformers: Any = ()) -> None:
        self.config = config
        self.reactor = context.reactor
        self.namespace = config.namespace
        self.connection = connectionFor(context, config)
        self.transformers = list(transformers)
        self._binds: "weakref.WeakValueDictionary[Tuple[Dtab, Path], Var[Any]]" = weakref.WeakValueDictionary()
        self._addrs: "weakref.WeakValueDictionary[Path, Var[Any]]" = weakref.WeakValueDictionary()

    # -- binding ---------------------------------------------------------------------

    def boundFor(self, ident: Path, residual: Path) -> Bound:
        """
        The L{Bound} of a leaf: its address var is shared by id.
        """
        return Bound(ident, self.addrVar(ident), residual)

    def addrVar(self, ident: Path) -> "Var[Any]":
        var = self._addrs.get(ident)
        if var is None:
            var = _AddrVar(self, "addr", {"path": ident.show, "watch": "true"}, AddrPending, ident.show)
            self._addrs[ident] = var
        return var

    def bind(self, dtab: Dtab, path: Path) -> "Activity[Any]":
        key = (dtab, path)
        var = self._binds.get(key)
        if var is None:
            query = {"path": path.show, "watch": "true"}
            if not dtab.isEmpty:
                query["dtab"] = dtab.show
            label = path.show if dtab.isEmpty else f"{path.show} with {dtab.show}"
            var = self._binds[key] = _BindVar(self, "bind", query, Pending, label)
        act: Activity[Any] = Activity(var.flatMap(_whenAddressed))
        for transformer in self.transformers:
            act = act.flatMap(transformer.transform)
        return act

    # -- delegation --------------------------------------------------------------------

    def delegate(self, dtab: Dtab, path: Path) -> Deferred:
        query = {"path": path.show}
        if not dtab.isEmpty:
            query["dtab"] = dtab.show
        d = self.connection.http.get(
            self.connection.url("delegate", **query), reactor=self.reactor, timeout=10.0
        )

        def body(response: Any) -> Deferred:
            return response.content().addCallback(lambda content: (response.code, content))

        def parse(result: Tuple[int, bytes]) -> Any:
            code, content = result
            text = content.decode("utf-8", "replace")
            if code != 200:
                raise Exception(f"namerd answered {code}: {text.strip()}")
            return delegateTreeFromJSON(json.loads(text))

        return d.addCallback(body).addCallback(parse)

    # -- admin ----------------------------------------------------------------------------

    def adminResources(self) -> Dict[str, Any]:
        """
        C{/interpreter_state/io.l5d.namerd.http/<ns>.json}: this
        interpreter's connection and streams.
        """
        return {f"/interpreter_state/{self.kind}/{self.namespace}.json": StateResource(self.connection)}


def interpreterStateResources(routers: Any) -> Dict[str, Any]:
    """
    The admin resources of every router whose interpreter is
    C{io.l5d.namerd.http}: C{/<label>/interpreter_state/io.l5d.namerd.http/<ns>.json}
    for each, and the same path without the label for the first router
    using each namespace (Linkerd serves the labelled form).

    @param routers: L{linkerpy.interfaces.IRouter}s.
    """
    out: Dict[str, Any] = {}
    for router in routers:
        interpreter = router.interpreter()
        resources = getattr(interpreter, "adminResources", None)
        if not isinstance(interpreter, NamerdHttpInterpreter) or resources is None:
            continue
        for path, resource in resources().items():
            out[f"/{router.label}{path}"] = resource
            out.setdefault(path, resource)
    return out


def StateResource(connection: Any) -> Any:
    """
    A JSON resource showing a connection's state.
    """
    from linkerpy.admin.resources import JSONResource

    return JSONResource(connection.state)
