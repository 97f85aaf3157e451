# -*- test-case-name: tests.test_naming_binding -*-
"""
The default interpreter: dtab, then configured namers, then C{/$/} namers.

L{ConfiguredNamersInterpreter} is Linkerd's interpreter of the same name:
C{bind(dtab, path)} gives a live L{Activity} of the bound tree and
C{delegate(dtab, path)} a Deferred L{DelegateTree}.  The C{io.l5d.fs}
interpreter is the same class with a watched dtab var prepended to the
dtab it is given.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from twisted.internet.defer import Deferred, DeferredList
from zope.interface import implementer

from linkerpy.interfaces import IInterpreter
from linkerpy.naming.addr import AddrPending
from linkerpy.naming.binding import bind as bindTree
from linkerpy.naming.delegate import DelegateTree, Delegation, DLeaf, DTransformation, mapLeaves
from linkerpy.naming.dtab import Dtab
from linkerpy.naming.path import Path
from linkerpy.naming.system import SystemNamer
from linkerpy.naming.tree import Leaf, NameTree, Neg
from linkerpy.naming.var import Activity, Closable, Pending, Var

__all__ = ["ConfiguredNamersInterpreter", "namerLookup"]

#: Delegation passes waiting on pending namers before giving up on them.
_MAX_PASSES = 20


def namerLookup(namers: Sequence[Tuple[Path, Any]], system: SystemNamer, path: Path, start: int = 0) -> Any:
    """
    Ask the namers (in preference order) whose prefix matches, falling
    through on Neg, then the system namer.

    @return: a L{NameTree} or an L{Activity} of one.
    """
    i = start
    n = len(namers)
    while i < n:
        prefix, namer = namers[i]
        if path.startsWith(prefix):
            act = namer.lookup(path.drop(len(prefix)))
            nxt = i + 1

            def fallthrough(tree: NameTree, nxt: int = nxt) -> Activity[Any]:
                if tree is Neg:
                    rest = namerLookup(namers, system, path, nxt)
                    return rest if isinstance(rest, Activity) else Activity.value(rest)
                return Activity.value(tree)

            return act.flatMap(fallthrough)
        i += 1
    return system.lookup(path)


@implementer(IInterpreter)
class ConfiguredNamersInterpreter:
    """
    Binds through the dtab, the configured namers and the system namers.

    @ivar namers: C{(prefix, namer)} pairs in declaration order; C{prefix}
        is the full path the namer answers for (C{/#/io.l5d.fs}).  The last
        declared is asked first.
    @ivar transformers: L{ITransformer}s applied, in order, to bound trees.
    @ivar dtabVar: a L{Var} of a L{Dtab} prepended to the dtab of every
        request (the C{io.l5d.fs} interpreter's file), or C{None}.
    """

    def __init__(
        self,
        reactor: Any,
        namers: Sequence[Tuple[Path, Any]] = (),
        transformers: Sequence[Any] = (),
        system: Optional[SystemNamer] = None,
        dtabVar: "Optional[Var[Dtab]]" = None,
    ) -> None:
        self.reactor = reactor
        self.namers = list(namers)
        self._preference = list(reversed(self.namers))
        self.system = system if system is not None else SystemNamer(reactor)
        self.transformers = list(transformers)
        self.dtabVar = dtabVar

    def lookup(self, path: Path) -> Any:
        """
        The namers' (and system namers') answer for C{path}, without the dtab.
        """
        return namerLookup(self._preference, self.system, path)

    def _lookupWith(self, dtab: Dtab) -> Any:
        def lookup(path: Path) -> Any:
            tree = dtab.lookup(path)
            if tree is not Neg:
                return tree
            return namerLookup(self._preference, self.system, path)

        return lookup

    def bind(self, dtab: Dtab, path: Path) -> Activity[NameTree]:
        """
        @param dtab: the full dtab (router base dtab + request-local dtab).
        @return: a live L{Activity} of the bound tree (no C{Alt}), transformed.
        """
        if self.dtabVar is None:
            act = bindTree(self._lookupWith(dtab), Leaf(path))
        else:
            act = Activity(
                self.dtabVar.flatMap(lambda fileDtab: bindTree(self._lookupWith(fileDtab + dtab), Leaf(path)).states)
            )
        for t in self.transformers:
            act = act.flatMap(t.transform)
        return act

    def delegate(self, dtab: Dtab, path: Path) -> "Deferred[DelegateTree]":
        """
        @return: a Deferred L{DelegateTree}, fired once every namer it asked
            has answered and every bound address set is known (not pending);
            cancel it to give up.
        """
        full = dtab if self.dtabVar is None else self.dtabVar.sample() + dtab
        return _DelegateSession(self, full, path).start()


class _DelegateSession:
    def __init__(self, interpreter: ConfiguredNamersInterpreter, dtab: Dtab, path: Path) -> None:
        self.interpreter = interpreter
        self.dtab = dtab
        self.path = path
        self.memo: Dict[Path, Any] = {}
        self.held: Dict[int, Tuple[Closable, List[Any]]] = {}
        self.waiting: Optional[Deferred] = None
        self.result: "Deferred[DelegateTree]" = Deferred(self._cancel)
        self.passes = 0
        self.done = False

    def start(self) -> "Deferred[DelegateTree]":
        self._attempt()
        return self.result

    def _lookup(self, path: Path) -> Any:
        if path in self.memo:
            return self.memo[path]
        looked = self.interpreter.lookup(path)
        self.memo[path] = looked
        return looked

    def _stateOf(self, path: Path, activity: Activity[Any]) -> Any:
        entry = self.held.get(id(activity))
        if entry is None:
            box: List[Any] = [None]
            closable = activity.states.observe(lambda s: box.__setitem__(0, s))
            entry = self.held[id(activity)] = (closable, box)
        return entry[1][0]

    def _attempt(self) -> None:
        if self.done:
            return
        self.passes += 1
        delegation = Delegation(self.dtab, self._lookup, self._stateOf)
        try:
            tree = delegation.run(self.path)
        except Exception as e:
            self._finish(None, e)
            return
        if delegation.pending and self.passes < _MAX_PASSES:
            waits = [a.states.changesTo(lambda s: s is not Pending) for a in delegation.pending]
            self.waiting = DeferredList(waits, consumeErrors=True)
            self.waiting.addCallback(lambda _: self._attempt())
            return
        for t in self.interpreter.transformers:
            tree = _transformDelegate(t, tree)
        addrs = [b.addr.changesTo(lambda a: a is not AddrPending) for b in tree.bounds()]
        if not addrs:
            self._finish(tree, None)
            return
        self.waiting = DeferredList(addrs, consumeErrors=True)
        self.waiting.addCallback(lambda _: self._finish(tree, None))

    def _release(self) -> None:
        held, self.held = self.held, {}
        for closable, _ in held.values():
            closable.close()

    def _finish(self, tree: Optional[DelegateTree], error: Optional[BaseException]) -> None:
        if self.done:
            return
        self.done = True
        self._release()
        if error is not None:
            self.result.errback(error)
        else:
            self.result.callback(tree)

    def _cancel(self, d: Deferred) -> None:
        self.done = True
        self._release()
        if self.waiting is not None:
            self.waiting.cancel()


def _transformDelegate(transformer: Any, tree: DelegateTree) -> DelegateTree:
    mapBound = getattr(transformer, "transformBound", None)
    if mapBound is None:
        return tree
    name = type(transformer).__name__

    def leaf(node: DLeaf) -> DelegateTree:
        if isinstance(node.value, Path):
            return node
        after = mapBound(node.value)
        return DTransformation(node.path, name, node.value, DLeaf(after.id, node.dentry, after))

    return mapLeaves(tree, leaf)
