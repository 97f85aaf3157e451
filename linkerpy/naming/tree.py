# -*- test-case-name: tests.test_naming_values -*-
"""
Name trees: the right-hand side of a dentry and the result of binding.

Nodes are L{Leaf}, L{Alt} (ordered fallback), L{Union} of L{Weighted}
branches, and the singletons L{Neg} (C{~}, no such name), L{Fail} (C{!},
stop) and L{Empty} (C{$}, exists but has no members).  Trees are immutable
and hashable.  C{show}, C{simplify} and C{eval} follow Finagle exactly (see
C{docs/naming.md}).
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable, FrozenSet, Iterator, Optional, Tuple

__all__ = [
    "NameTree",
    "Leaf",
    "Alt",
    "Union",
    "Weighted",
    "Neg",
    "Fail",
    "Empty",
    "formatWeight",
]

_CENT = Decimal("0.01")


def formatWeight(w: float) -> str:
    """
    Java's C{String.format("%.2f", w)}: HALF_UP rounding of the shortest
    decimal representation (C{0.125} gives C{0.13}, where Python's C{%} gives C{0.12}).
    """
    if math.isnan(w):
        return "NaN"
    if math.isinf(w):
        return "Infinity" if w > 0 else "-Infinity"
    return format(Decimal(repr(float(w))).quantize(_CENT, ROUND_HALF_UP), "f")


class NameTree:
    """
    Base class of all name tree nodes.
    """

    __slots__ = ()

    @staticmethod
    def read(text: str) -> "NameTree":
        """
        Parse a name tree (C{/a | 2 * /b & /c}, C{~}, C{!}, C{$}).

        @raise linkerpy.naming.parser.ParseError: on bad syntax.
        """
        from linkerpy.naming.parser import readTree

        return readTree(text)

    @property
    def show(self) -> str:
        """
        The canonical concrete syntax; parses back to an equal tree.
        """
        return _show(self)

    def simplify(self) -> "NameTree":
        """
        @return: the tree with Neg alternatives and Neg/Fail union branches
            removed, and single-child Alt/Union nodes collapsed (a fixpoint).
        """
        return _simplify(self)

    def eval(self) -> Optional[FrozenSet[Any]]:
        """
        @return: the set of leaf values the tree denotes (weights ignored), or
            C{None} when it is negative or failed.
        """
        kind, values = _eval(self)
        return values if kind == "ok" else None

    def map(self, fn: Callable[[Any], Any]) -> "NameTree":
        """
        @return: the same shape with C{fn} applied to every leaf value.
        """
        return self

    def leaves(self) -> Iterator["Leaf"]:
        """
        Yield the leaves, left to right.
        """
        return iter(())

    def __str__(self) -> str:
        return self.show


class Leaf(NameTree):
    """
    A leaf holding a value (a L{linkerpy.naming.Path} or a L{linkerpy.naming.Bound}).
    """

    __slots__ = ("value", "_hash")

    def __init__(self, value: Any) -> None:
        self.value = value
        self._hash: Optional[int] = None

    def map(self, fn: Callable[[Any], Any]) -> NameTree:
        return Leaf(fn(self.value))

    def leaves(self) -> Iterator["Leaf"]:
        yield self

    def __eq__(self, other: object) -> bool:
        return self is other or (isinstance(other, Leaf) and self.value == other.value)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = self._hash = hash(("Leaf", self.value))
        return h

    def __repr__(self) -> str:
        return f"Leaf({self.value!r})"


class Weighted:
    """
    A union branch: a weight (a float) and a tree.
    """

    __slots__ = ("weight", "tree")

    defaultWeight = 1.0

    def __init__(self, weight: float, tree: NameTree) -> None:
        self.weight = float(weight)
        self.tree = tree

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Weighted) and self.weight == other.weight and self.tree == other.tree

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(("Weighted", self.weight, self.tree))

    def __repr__(self) -> str:
        return f"Weighted({self.weight!r},{self.tree!r})"


class Alt(NameTree):
    """
    Ordered alternatives: the first that is not negative wins.
    """

    __slots__ = ("trees", "_hash")

    def __init__(self, *trees: NameTree) -> None:
        self.trees: Tuple[NameTree, ...] = trees
        self._hash: Optional[int] = None

    def map(self, fn: Callable[[Any], Any]) -> NameTree:
        return Alt(*(t.map(fn) for t in self.trees))

    def leaves(self) -> Iterator[Leaf]:
        for t in self.trees:
            yield from t.leaves()

    def __eq__(self, other: object) -> bool:
        return self is other or (isinstance(other, Alt) and self.trees == other.trees)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = self._hash = hash(("Alt", self.trees))
        return h

    def __repr__(self) -> str:
        return "Alt(" + ",".join(repr(t) for t in self.trees) + ")"


class Union(NameTree):
    """
    A weighted union of L{Weighted} branches: traffic is split by weight.
    """

    __slots__ = ("trees", "_hash")

    def __init__(self, *trees: Weighted) -> None:
        for w in trees:
            if not isinstance(w, Weighted):
                raise TypeError(f"Union takes Weighted branches, got {w!r}")
        self.trees: Tuple[Weighted, ...] = trees
        self._hash: Optional[int] = None

    @classmethod
    def of(cls, *trees: NameTree) -> "Union":
        """
        A union of trees, each of weight 1.
        """
        return cls(*(Weighted(1.0, t) for t in trees))

    def map(self, fn: Callable[[Any], Any]) -> NameTree:
        return Union(*(Weighted(w.weight, w.tree.map(fn)) for w in self.trees))

    def leaves(self) -> Iterator[Leaf]:
        for w in self.trees:
            yield from w.tree.leaves()

    def __eq__(self, other: object) -> bool:
        return self is other or (isinstance(other, Union) and self.trees == other.trees)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = self._hash = hash(("Union", self.trees))
        return h

    def __repr__(self) -> str:
        return "Union(" + ",".join(repr(t) for t in self.trees) + ")"


class _Singleton(NameTree):
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __reduce__(self) -> str:
        return self._name


#: No such name (C{~}): an enclosing Alt falls through to its next alternative.
Neg: NameTree = _Singleton("Neg")
#: Failure (C{!}): stops an Alt; binding yields Fail.
Fail: NameTree = _Singleton("Fail")
#: A name that exists but has no members (C{$}).
Empty: NameTree = _Singleton("Empty")

_SYMBOLS = {id(Neg): "~", id(Fail): "!", id(Empty): "$"}


# ---------------------------------------------------------------------------
# show


def _leafShow(value: Any) -> str:
    show = getattr(value, "show", None)
    if isinstance(show, str):
        return show
    return str(value)


def _show(t: NameTree) -> str:
    while True:
        if isinstance(t, Union) and len(t.trees) == 1:
            t = t.trees[0].tree
        elif isinstance(t, Alt) and len(t.trees) == 1:
            t = t.trees[0]
        else:
            break
    if isinstance(t, Alt):
        return " | ".join(_show1(c) for c in t.trees)
    return _show1(t)


def _show1(t: NameTree) -> str:
    while True:
        if isinstance(t, Union) and len(t.trees) == 1:
            t = t.trees[0].tree
        elif isinstance(t, Alt) and len(t.trees) == 1:
            t = t.trees[0]
        else:
            break
    if isinstance(t, Union):
        return " & ".join(
            ("" if w.weight == 1.0 else formatWeight(w.weight) + "*") + _showSimple(w.tree) for w in t.trees
        )
    if isinstance(t, Alt):
        return "(" + _show(t) + ")"
    return _showSimple(t)


def _showSimple(t: NameTree) -> str:
    while True:
        if isinstance(t, Union) and len(t.trees) == 1:
            t = t.trees[0].tree
        elif isinstance(t, Alt) and len(t.trees) == 1:
            t = t.trees[0]
        else:
            break
    if isinstance(t, (Union, Alt)):
        return "(" + _show(t) + ")"
    if isinstance(t, Leaf):
        return _leafShow(t.value)
    return _SYMBOLS[id(t)]


# ---------------------------------------------------------------------------
# simplify and eval


def _simplify(t: NameTree) -> NameTree:
    if isinstance(t, Alt):
        trees = t.trees
        if not trees:
            return Neg
        if len(trees) == 1:
            return _simplify(trees[0])
        out = []
        for child in trees:
            s = _simplify(child)
            if s is Fail:
                out.append(Fail)
                break
            if s is Neg:
                continue
            out.append(s)
        if not out:
            return Neg
        if len(out) == 1:
            return out[0]
        return Alt(*out)
    if isinstance(t, Union):
        branches = t.trees
        if not branches:
            return Neg
        if len(branches) == 1:
            return _simplify(branches[0].tree)
        kept = []
        for w in branches:
            s = _simplify(w.tree)
            if s is Neg or s is Fail:
                continue
            kept.append(Weighted(w.weight, s))
        if not kept:
            return Neg
        if len(kept) == 1:
            return kept[0].tree
        return Union(*kept)
    return t


_NONE: FrozenSet[Any] = frozenset()


def _eval(t: NameTree) -> Tuple[str, FrozenSet[Any]]:
    """
    @return: C{("ok", values)}, C{("neg", {})} or C{("fail", {})}.
    """
    if isinstance(t, Leaf):
        return "ok", frozenset((t.value,))
    if t is Empty:
        return "ok", _NONE
    if t is Neg:
        return "neg", _NONE
    if t is Fail:
        return "fail", _NONE
    if isinstance(t, Alt):
        for child in t.trees:
            kind, values = _eval(child)
            if kind == "neg":
                continue
            return kind, values
        return "neg", _NONE
    if isinstance(t, Union):
        if len(t.trees) == 1:
            return _eval(t.trees[0].tree)
        found = False
        acc: set = set()
        for w in t.trees:
            kind, values = _eval(w.tree)
            if kind == "ok":
                found = True
                acc.update(values)
        return ("ok", frozenset(acc)) if found else ("neg", _NONE)
    raise TypeError(f"not a name tree: {t!r}")
