# -*- test-case-name: tests.test_namerd_api -*-
"""
The control plane's model: a store, the configured namers, and one
interpreter per namespace whose dtab is the namespace's stored dtab.

Live answers (bind trees, address sets) are shared: every watcher of the
same question observes the same derived L{Var}, and it is released when the
last one goes away.
"""

from __future__ import annotations

import weakref
from typing import Any, Dict, List, Sequence, Tuple

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from linkerpy.interfaces import IInterpreter
from linkerpy.namerd.errors import checkNamespace
from linkerpy.naming import (
    Activity,
    AddrBound,
    AddrFailed,
    AddrNeg,
    AddrPending,
    Dtab,
    Empty,
    Fail,
    Failed,
    Leaf,
    NameTree,
    Ok,
    Path,
    Pending,
    Var,
)

__all__ = ["Namerd", "NamespaceInterpreter", "mergeAddrs", "stripTransformerPrefix"]

log = Logger()

_PERCENT = b"%"
_CONCRETE = (b"#", b"$")


def stripTransformerPrefix(path: Path) -> Path:
    """
    C{/%/io.l5d.port/4141/#/io.l5d.fs/x} → C{/#/io.l5d.fs/x}: drop a
    transformer's C{/%/<prefix>} so the namers see the concrete name.
    """
    elems = path.elems
    if not elems or elems[0] != _PERCENT:
        return path
    for i in range(1, len(elems)):
        if elems[i] in _CONCRETE:
            return path.drop(i)
    return path


def mergeAddrs(tree: NameTree, addrs: Sequence[Any]) -> Any:
    """
    The address set of a whole bound tree: every leaf's addresses together
    (Namerd's C{resolve}).
    """
    if not addrs:
        if tree is Empty:
            return AddrBound(())
        if tree is Fail:
            return AddrFailed(Exception("the name failed to bind (Fail)"))
        return AddrNeg
    addresses: set = set()
    bound = pending = False
    failure = None
    for addr in addrs:
        if isinstance(addr, AddrBound):
            bound = True
            addresses.update(addr.addresses)
        elif isinstance(addr, AddrFailed):
            failure = failure or addr
        elif addr is AddrPending:
            pending = True
    if bound:
        return AddrBound(addresses)
    if pending:
        return AddrPending
    if failure is not None:
        return failure
    return AddrNeg


def _leafBounds(tree: NameTree) -> List[Any]:
    seen: Dict[Any, Any] = {}
    for leaf in tree.leaves():
        seen.setdefault(leaf.value, leaf.value)
    return list(seen.values())


def resolveVar(states: "Var[Any]") -> "Var[Any]":
    """
    A Var of the merged address set of the bound trees in an activity's
    C{states}.
    """

    def follow(state: Any) -> "Var[Any]":
        if isinstance(state, Ok):
            tree = state.value
            bounds = _leafBounds(tree)
            if not bounds:
                return Var.const(mergeAddrs(tree, ()))
            return Var.collect([b.addr for b in bounds]).map(lambda addrs: mergeAddrs(tree, addrs))
        if isinstance(state, Failed):
            return Var.const(AddrFailed(state.exception))
        return Var.const(AddrPending)

    return states.flatMap(follow)


@implementer(IInterpreter)
class NamespaceInterpreter:
    """
    Binds through a namespace's stored dtab (followed by the dtab given to
    L{bind}), the namers and the system namers.
    """

    def __init__(self, namerd: "Namerd", ns: str) -> None:
        from linkerpy.naming.interpreter import ConfiguredNamersInterpreter

        self.namerd = namerd
        self.ns = ns
        self.inner = ConfiguredNamersInterpreter(namerd.reactor, namerd.namers, system=namerd.system)
        self.dtab = namerd.dtabActivity(ns)

    def bind(self, dtab: Dtab, path: Path) -> "Activity[NameTree]":
        inner = self.inner

        def follow(state: Any) -> "Var[Any]":
            if isinstance(state, Ok):
                return inner.bind(state.value + dtab, path).states
            return Var.const(state)

        return Activity(self.dtab.states.flatMap(follow))

    def delegate(self, dtab: Dtab, path: Path) -> Deferred:
        d = self.dtab.toDeferred()
        return d.addCallback(lambda stored: self.inner.delegate(stored + dtab, path))

    def bindConcrete(self, path: Path) -> "Activity[NameTree]":
        """
        Bind a concrete name (C{/#/...}, C{/$/...}) with the namers only,
        ignoring the dtab.
        """
        from linkerpy.naming.binding import bind

        return bind(self.inner.lookup, Leaf(stripTransformerPrefix(path)))


class Namerd:
    """
    The store, the namers and the per-namespace interpreters.

    @ivar store: the L{linkerpy.interfaces.IDtabStore}.
    @ivar namers: C{[(prefix Path, INamer)]} in config order.
    """

    def __init__(
        self,
        store: Any,
        namers: Sequence[Tuple[Path, Any]],
        reactor: Any,
        registry: Any = None,
        metrics: Any = None,
    ) -> None:
        from linkerpy.naming.system import SystemNamer
        from linkerpy.telemetry.metrics import MetricsTree

        self.store = store
        self.namers = list(namers)
        self.reactor = reactor
        self.registry = registry
        self.metrics = metrics if metrics is not None else MetricsTree()
        self.system = SystemNamer(reactor)
        self._interpreters: "weakref.WeakValueDictionary[str, NamespaceInterpreter]" = weakref.WeakValueDictionary()
        self._live: "weakref.WeakValueDictionary[Tuple[Any, ...], Var[Any]]" = weakref.WeakValueDictionary()
        self._dtabErrors = self.metrics.counter("dtab_parse_errors")
        #: Seconds between refreshes of watched bound names.
        self.boundNamesInterval = 1.0

    # -- dtabs ---------------------------------------------------------------------

    def dtabActivity(self, ns: str) -> "Activity[Dtab]":
        """
        The namespace's stored dtab: empty when the namespace does not
        exist; a stored text that no longer parses (edited outside namerd)
        keeps the last good dtab.
        """
        checkNamespace(ns)
        key = ("dtab", ns)
        var = self._live.get(key)
        if var is None:
            last: List[Any] = []
            errors = self._dtabErrors

            def parse(doc: Any) -> Any:
                if doc is Pending:
                    return Pending
                if doc is None:
                    state: Any = Ok(Dtab.empty)
                else:
                    try:
                        state = Ok(Dtab.read(doc[0]))
                    except ValueError as e:
                        errors.incr()
                        log.warn("namespace {ns}: stored dtab does not parse: {error}", ns=ns, error=str(e))
                        return last[0] if last else Failed(e)
                last[:] = [state]
                return state

            var = self.store.observe("dtabs", ns).map(parse)
            self._live[key] = var
        return Activity(var)

    def interpreter(self, ns: str) -> NamespaceInterpreter:
        """
        The (shared) interpreter of a namespace.
        """
        checkNamespace(ns)
        interp = self._interpreters.get(ns)
        if interp is None:
            interp = self._interpreters[ns] = NamespaceInterpreter(self, ns)
        return interp

    # -- live answers ----------------------------------------------------------------

    def _shared(self, key: Tuple[Any, ...], make: Any) -> "Var[Any]":
        var = self._live.get(key)
        if var is None:
            var = self._live[key] = make()
        return var

    def bindStates(self, ns: str, dtab: Dtab, path: Path) -> "Var[Any]":
        """
        The states (L{Pending}/L{Ok}/L{Failed}) of C{path} bound in C{ns}
        with C{dtab} appended to the stored one.
        """
        interp = self.interpreter(ns)
        return self._shared(("bind", ns, dtab, path), lambda: interp.bind(dtab, path).states)

    def addrVar(self, ns: str, path: Path) -> "Var[Any]":
        """
        The address set of a concrete name.
        """
        interp = self.interpreter(ns)
        return self._shared(("addr", ns, path), lambda: resolveVar(interp.bindConcrete(path).states))

    def resolveVar(self, ns: str, dtab: Dtab, path: Path) -> "Var[Any]":
        """
        The address set of a logical name (bind, then every leaf's addresses).
        """
        states = self.bindStates(ns, dtab, path)
        return self._shared(("resolve", ns, dtab, path), lambda: resolveVar(states))

    def boundNames(self) -> "Var[Any]":
        """
        The concrete names the enumerating namers know: a sorted tuple of
        shown paths (L{Pending} until first known), refreshed every
        C{boundNamesInterval} seconds while observed.  A namer enumerates
        when it has C{prefix} and C{names()} (a Deferred of path element
        tuples), as C{io.l5d.fs} does.
        """
        return self._shared(("boundNames",), lambda: _BoundNamesVar(self))


class _BoundNamesVar(Var[Any]):
    """
    Polls the enumerating namers while observed.
    """

    __slots__ = ("_namerd", "_loop")

    def __init__(self, namerd: Namerd) -> None:
        Var.__init__(self, Pending)
        self._namerd = namerd
        self._loop: Any = None

    def _start(self) -> None:
        from twisted.internet.task import LoopingCall

        self._loop = LoopingCall(self._refresh)
        self._loop.clock = self._namerd.reactor
        self._loop.start(self._namerd.boundNamesInterval, now=True)

    def _stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()

    def _refresh(self) -> Deferred:
        from twisted.internet.defer import gatherResults, maybeDeferred

        lists = []
        for _, namer in self._namerd.namers:
            names = getattr(namer, "names", None)
            prefix = getattr(namer, "prefix", None)
            if names is None or prefix is None:
                continue
            d = maybeDeferred(names)
            d.addCallback(lambda keys, prefix=prefix: [(prefix + Path.fromElems(tuple(k))).show for k in keys])
            lists.append(d)
        d = gatherResults(lists, consumeErrors=True)

        def done(found: List[List[str]]) -> None:
            self._set(tuple(sorted({name for names in found for name in names})))

        def failed(failure: Any) -> None:
            log.warn("listing bound names failed: {error}", error=failure.getErrorMessage())

        return d.addCallbacks(done, failed)
