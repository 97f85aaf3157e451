# -*- test-case-name: tests.test_naming_delegate -*-
"""
Delegation trees: an explanation of how a path binds, step by step.

Unlike binding, delegation expands every alternative and every union branch
and records, at each node, the path looked up and the dentry that produced
it.  L{toJSON} renders Linkerd's C{/delegator.json} shapes exactly (field
order included).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, Generator, List, Optional, Sequence, Tuple

from linkerpy.naming.addr import WEIGHT_KEY, Addr, AddrBound, AddrFailed, AddrNeg, Bound
from linkerpy.naming.binding import MAX_DEPTH, MAX_LOOKUPS, BindingTooLarge, _Abort, trampoline
from linkerpy.naming.dtab import Dentry, Dtab
from linkerpy.naming.path import Path
from linkerpy.naming.tree import Alt, Empty, Fail, Leaf, NameTree, Neg, Union
from linkerpy.naming.var import Activity, Failed, Ok

__all__ = [
    "DelegateTree",
    "DNeg",
    "DFail",
    "DEmpty",
    "DException",
    "DDelegate",
    "DLeaf",
    "DAlt",
    "DUnion",
    "DTransformation",
    "DelegationDepthExceeded",
    "addrToJSON",
    "delegateTree",
]

_FAIL_PREFIX = Path(b"$", b"fail")


class DelegationDepthExceeded(Exception):
    """
    Delegation went deeper than L{MAX_DEPTH} lookups.
    """

    def __init__(self) -> None:
        super().__init__("Max recursion level reached.")


class DelegateTree:
    """
    A node of a delegation tree.

    @ivar path: the path handled at this node.
    @ivar dentry: the L{Dentry} that produced it, or C{None} at the root.
    """

    __slots__ = ("path", "dentry")
    type = ""

    def __init__(self, path: Path, dentry: Optional[Dentry]) -> None:
        self.path = path
        self.dentry = dentry

    def withDentry(self, dentry: Optional[Dentry]) -> "DelegateTree":
        clone = object.__new__(type(self))
        for cls in type(self).__mro__:
            for slot in getattr(cls, "__slots__", ()):
                setattr(clone, slot, getattr(self, slot))
        clone.dentry = dentry
        return clone

    def children(self) -> Sequence["DelegateTree"]:
        return ()

    def toJSON(self) -> Dict[str, Any]:
        """
        @return: the node as Linkerd's JSON object (a C{dict} in field order).
        """
        return _toJSON(self)

    def toJSONText(self) -> str:
        """
        @return: the compact JSON text, as C{/delegator.json} serves it.
        """
        return json.dumps(self.toJSON(), separators=(",", ":"), ensure_ascii=False)

    def bounds(self) -> List[Bound]:
        """
        @return: every L{Bound} in the tree (leaves and transformation inputs).
        """
        out: List[Bound] = []
        stack: List[DelegateTree] = [self]
        while stack:
            node = stack.pop()
            if isinstance(node, DLeaf) and isinstance(node.value, Bound):
                out.append(node.value)
            if isinstance(node, DTransformation):
                out.append(node.bound)
            stack.extend(node.children())
        return out

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path.show}>"


class DNeg(DelegateTree):
    __slots__ = ()
    type = "neg"


class DFail(DelegateTree):
    __slots__ = ()
    type = "fail"


class DEmpty(DelegateTree):
    __slots__ = ()
    type = "empty"


class DException(DelegateTree):
    __slots__ = ("exception",)
    type = "exception"

    def __init__(self, path: Path, dentry: Optional[Dentry], exception: BaseException) -> None:
        DelegateTree.__init__(self, path, dentry)
        self.exception = exception


class DDelegate(DelegateTree):
    __slots__ = ("tree",)
    type = "delegate"

    def __init__(self, path: Path, dentry: Optional[Dentry], tree: DelegateTree) -> None:
        DelegateTree.__init__(self, path, dentry)
        self.tree = tree

    def children(self) -> Sequence[DelegateTree]:
        return (self.tree,)


class DLeaf(DelegateTree):
    """
    A leaf: C{value} is a L{Path} (still to delegate) or a L{Bound}.
    """

    __slots__ = ("value",)
    type = "leaf"

    def __init__(self, path: Path, dentry: Optional[Dentry], value: Any) -> None:
        DelegateTree.__init__(self, path, dentry)
        self.value = value


class DAlt(DelegateTree):
    __slots__ = ("trees",)
    type = "alt"

    def __init__(self, path: Path, dentry: Optional[Dentry], trees: Sequence[DelegateTree]) -> None:
        DelegateTree.__init__(self, path, dentry)
        self.trees = tuple(trees)

    def children(self) -> Sequence[DelegateTree]:
        return self.trees


class DUnion(DelegateTree):
    """
    A union: C{trees} is a tuple of C{(weight, DelegateTree)}.
    """

    __slots__ = ("trees",)
    type = "union"

    def __init__(self, path: Path, dentry: Optional[Dentry], trees: Sequence[Tuple[float, DelegateTree]]) -> None:
        DelegateTree.__init__(self, path, dentry)
        self.trees = tuple(trees)

    def children(self) -> Sequence[DelegateTree]:
        return tuple(t for _, t in self.trees)


class DTransformation(DelegateTree):
    """
    A transformer's effect: C{bound} before, C{tree} after.
    """

    __slots__ = ("name", "bound", "tree")
    type = "transformation"

    def __init__(self, path: Path, name: str, bound: Bound, tree: DelegateTree) -> None:
        DelegateTree.__init__(self, path, None)
        self.name = name
        self.bound = bound
        self.tree = tree

    def children(self) -> Sequence[DelegateTree]:
        return (self.tree,)


# ---------------------------------------------------------------------------
# construction


def fromNameTree(path: Path, dentry: Optional[Dentry], tree: NameTree) -> DelegateTree:
    """
    Turn a name tree found for C{path} (via C{dentry}) into delegation nodes.
    """
    if tree is Empty:
        return DEmpty(path, dentry)
    if tree is Fail:
        return DFail(path, dentry)
    if tree is Neg:
        return DNeg(Path.empty, dentry)
    if isinstance(tree, Leaf):
        return DLeaf(path, dentry, tree.value)
    if isinstance(tree, Alt):
        return DAlt(path, dentry, [fromNameTree(path, dentry, t) for t in tree.trees])
    if isinstance(tree, Union):
        return DUnion(path, dentry, [(w.weight, fromNameTree(path, dentry, w.tree)) for w in tree.trees])
    raise TypeError(f"not a name tree: {tree!r}")


def simplify(tree: DelegateTree) -> DelegateTree:
    """
    Linkerd's C{DelegateTree.simplified}: collapse pass-through delegates,
    turn empty/single Alt and Union nodes into Neg/Delegate, and splice
    child Alts with the parent's path into the parent.
    """
    return trampoline(_simplify(tree))  # type: ignore[no-any-return]


def _simplify(tree: DelegateTree) -> Generator[Any, Any, DelegateTree]:
    if isinstance(tree, DDelegate):
        child = yield _simplify(tree.tree)
        if not isinstance(child, (DNeg, DFail, DEmpty)) and child.path == tree.path:
            return child.withDentry(tree.dentry)
        return DDelegate(tree.path, tree.dentry, child)
    if isinstance(tree, DAlt):
        if not tree.trees:
            return DNeg(tree.path, tree.dentry)
        if len(tree.trees) == 1:
            return (yield _simplify(DDelegate(tree.path, tree.dentry, tree.trees[0])))  # type: ignore[no-any-return]
        out: List[DelegateTree] = []
        for t in tree.trees:
            s = yield _simplify(t)
            if isinstance(s, DAlt) and s.path == tree.path:
                out.extend(s.trees)
            else:
                out.append(s)
        return DAlt(tree.path, tree.dentry, out)
    if isinstance(tree, DUnion):
        if not tree.trees:
            return DNeg(tree.path, tree.dentry)
        if len(tree.trees) == 1:
            return (yield _simplify(DDelegate(tree.path, tree.dentry, tree.trees[0][1])))  # type: ignore[no-any-return]
        branches = []
        for w, t in tree.trees:
            branches.append((w, (yield _simplify(t))))
        return DUnion(tree.path, tree.dentry, branches)
    return tree


def mapLeaves(tree: DelegateTree, fn: Callable[[DLeaf], DelegateTree]) -> DelegateTree:
    """
    Linkerd's C{DelegateTree.flatMap}: replace every leaf by C{fn(leaf)}.
    """

    def go(t: DelegateTree) -> Generator[Any, Any, DelegateTree]:
        if isinstance(t, DLeaf):
            return fn(t)
        if isinstance(t, DDelegate):
            return DDelegate(t.path, t.dentry, (yield go(t.tree)))
        if isinstance(t, DAlt):
            alts = []
            for c in t.trees:
                alts.append((yield go(c)))
            return DAlt(t.path, t.dentry, alts)
        if isinstance(t, DUnion):
            branches = []
            for w, c in t.trees:
                branches.append((w, (yield go(c))))
            return DUnion(t.path, t.dentry, branches)
        if isinstance(t, DTransformation):
            return DTransformation(t.path, t.name, t.bound, (yield go(t.tree)))
        return t

    return trampoline(go(tree))  # type: ignore[no-any-return]


class Delegation:
    """
    One delegation pass over C{dtab}.

    @ivar pending: the namer activities that were still pending (the caller
        waits for them and runs a new pass).
    """

    def __init__(
        self,
        dtab: Dtab,
        lookup: Callable[[Path], Any],
        stateOf: Callable[[Path, Activity[Any]], Any],
    ) -> None:
        self.dtab = dtab
        self._lookup = lookup
        self._stateOf = stateOf
        self.pending: List[Activity[Any]] = []
        self.budget = MAX_LOOKUPS

    def run(self, path: Path) -> DelegateTree:
        """
        @raise Exception: a failure at the top (e.g. the depth limit).
        """
        root = DLeaf(Path.empty, None, path)
        self.budget = MAX_LOOKUPS
        try:
            return simplify(trampoline(self._bind(0, root)))
        except _Abort as a:
            raise a.error

    def _lookupNode(self, dentry: Optional[Dentry], path: Path) -> DelegateTree:
        self.budget -= 1
        if self.budget < 0:
            raise _Abort(BindingTooLarge())
        matches = self.dtab.matching(path)
        if matches:
            subtrees = [
                fromNameTree(path, d, _withResidual(d.dst, path.drop(len(d.prefix)))) for d in matches
            ]
            if len(subtrees) == 1:
                return DDelegate(path, dentry, subtrees[0])
            return DAlt(path, dentry, subtrees)
        try:
            looked = self._lookup(path)
            if isinstance(looked, Activity):
                state = self._stateOf(path, looked)
                if isinstance(state, Ok):
                    looked = state.value
                elif isinstance(state, Failed):
                    raise state.exception
                else:
                    self.pending.append(looked)
                    looked = Neg
        except Exception as e:
            return DException(path, dentry, e)
        if looked is Neg:
            return DNeg(path, dentry)
        return fromNameTree(path, dentry, looked)

    def _bind(self, depth: int, tree: DelegateTree) -> Generator[Any, Any, DelegateTree]:
        if depth > MAX_DEPTH:
            raise DelegationDepthExceeded()
        if isinstance(tree, DLeaf):
            if isinstance(tree.value, Path):
                found = self._lookupNode(tree.dentry, tree.value)
                return (yield self._bind(depth + 1, found))  # type: ignore[no-any-return]
            return tree
        if isinstance(tree, DDelegate):
            return DDelegate(tree.path, tree.dentry, (yield self._bind(depth, tree.tree)))
        if isinstance(tree, DAlt):
            if not tree.trees:
                return DNeg(tree.path, tree.dentry)
            if len(tree.trees) == 1:
                return DDelegate(tree.path, tree.dentry, (yield self._bind(depth, tree.trees[0])))
            alts: List[DelegateTree] = []
            for t in tree.trees:
                try:
                    alts.append((yield self._bind(depth, t)))
                except Exception as e:
                    alts.append(DException(tree.path, tree.dentry, e))
            return DAlt(tree.path, tree.dentry, alts)
        if isinstance(tree, DUnion):
            if not tree.trees:
                return DNeg(tree.path, tree.dentry)
            if len(tree.trees) == 1:
                return DDelegate(tree.path, tree.dentry, (yield self._bind(depth, tree.trees[0][1])))
            branches: List[Tuple[float, DelegateTree]] = []
            for w, t in tree.trees:
                try:
                    branches.append((w, (yield self._bind(depth, t))))
                except Exception as e:
                    branches.append((w, DException(tree.path, tree.dentry, e)))
            return DUnion(tree.path, tree.dentry, branches)
        return tree


def _withResidual(dst: NameTree, residual: Path) -> NameTree:
    if not residual.elems:
        return dst
    return dst.map(lambda p: p + residual)


def delegateTree(dtab: Dtab, path: Path, lookup: Callable[[Path], Any]) -> DelegateTree:
    """
    Delegate once, sampling namer activities (pending ones count as Neg):
    a synchronous helper for tests and tools.
    """
    return Delegation(dtab, lookup, lambda p, act: act.states.sample()).run(path)


# ---------------------------------------------------------------------------
# JSON


def addrToJSON(addr: Addr) -> Dict[str, Any]:
    """
    Linkerd's JSON for an address set: C{bound} (with C{addrs} sorted),
    C{neg}, C{failed} (with C{cause}) or C{pending}.
    """
    if isinstance(addr, AddrBound):
        addrs = []
        for a in sorted(addr.addresses):
            meta = dict(a.meta)
            if a.weight != 1.0:
                meta[WEIGHT_KEY] = a.weight
            addrs.append({"ip": a.host, "port": a.port, "meta": meta})
        return {"type": "bound", "addrs": addrs, "meta": dict(addr.meta)}
    if addr is AddrNeg:
        return {"type": "neg"}
    if isinstance(addr, AddrFailed):
        return {"type": "failed", "cause": addr.message}
    return {"type": "pending"}


def boundToJSON(bound: Bound) -> Dict[str, Any]:
    """
    C{{"addr", "id", "path"}} for a bound name (the address as it is now).
    """
    return {"addr": addrToJSON(bound.addr.sample()), "id": bound.id.show, "path": bound.residual.show}


def _dentryJSON(dentry: Optional[Dentry]) -> Optional[Dict[str, str]]:
    if dentry is None or dentry is Dentry.nop:
        return None
    return {"prefix": dentry.prefix.show, "dst": dentry.dst.show}


def _toJSON(node: DelegateTree) -> Dict[str, Any]:
    def go(t: DelegateTree) -> Generator[Any, Any, Dict[str, Any]]:
        out: Dict[str, Any] = {"type": t.type}
        if isinstance(t, DNeg):
            out["path"] = "~" if not t.path.elems else t.path.show
        elif isinstance(t, DFail):
            out["path"] = t.path.show if t.path.startsWith(_FAIL_PREFIX) else "!"
        else:
            out["path"] = t.path.show
        if isinstance(t, DTransformation):
            out["name"] = t.name
            out["bound"] = boundToJSON(t.bound)
            out["tree"] = yield go(t.tree)
            return out
        d = _dentryJSON(t.dentry)
        if d is not None:
            out["dentry"] = d
        if isinstance(t, DDelegate):
            out["delegate"] = yield go(t.tree)
        elif isinstance(t, DAlt):
            alts = []
            for c in t.trees:
                alts.append((yield go(c)))
            out["alt"] = alts
        elif isinstance(t, DUnion):
            branches = []
            for w, c in t.trees:
                branches.append({"weight": w, "tree": (yield go(c))})
            out["union"] = branches
        elif isinstance(t, DLeaf):
            if isinstance(t.value, Bound):
                out["bound"] = boundToJSON(t.value)
            else:
                out["bound"] = {"addr": {"type": "pending"}, "id": t.value.show, "path": "/"}
        elif isinstance(t, DException):
            out["message"] = str(t.exception)
        return out

    return trampoline(go(node))  # type: ignore[no-any-return]
