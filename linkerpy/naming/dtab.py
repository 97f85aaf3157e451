# -*- test-case-name: tests.test_naming_values -*-
"""
Delegation tables: ordered lists of C{prefix => tree} rewrite rules.

Later dentries take precedence; every matching dentry applies (no
longest-prefix rule).  L{Dtab.lookup} is one rewrite step; binding (repeated
lookups down to concrete names) lives in L{linkerpy.naming.binding}.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

from linkerpy.naming.path import ANY, Path, Prefix
from linkerpy.naming.tree import Alt, Leaf, Neg, NameTree

__all__ = ["Dentry", "Dtab"]


class Dentry:
    """
    One delegation rule: a L{Prefix} and a destination L{NameTree} of paths.
    """

    __slots__ = ("prefix", "dst", "_hash", "_show")

    nop: "Dentry"

    def __init__(self, prefix: Prefix, dst: NameTree) -> None:
        if isinstance(prefix, Path):
            prefix = Prefix.fromPath(prefix)
        self.prefix = prefix
        self.dst = dst
        self._hash: Optional[int] = None
        self._show: Optional[str] = None

    @classmethod
    def read(cls, text: str) -> "Dentry":
        """
        Parse C{prefix => tree}.
        """
        from linkerpy.naming.parser import readDentry

        return readDentry(text)

    @property
    def show(self) -> str:
        s = self._show
        if s is None:
            s = self._show = self.prefix.show + "=>" + self.dst.show
        return s

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Dentry):
            return NotImplemented
        return self.prefix == other.prefix and self.dst == other.dst

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = self._hash = hash((self.prefix, self.dst))
        return h

    def __repr__(self) -> str:
        return f"Dentry({self.show})"

    def __str__(self) -> str:
        return self.show


#: The placeholder dentry of a delegation tree's root.
Dentry.nop = Dentry(Prefix(b"$", b"nop"), Neg)


class Dtab:
    """
    An immutable sequence of L{Dentry}; hashable, so usable as a cache key.

    C{Dtab.read("/svc => /#/io.l5d.fs; /svc/x => /$/inet/127.0.0.1/80")}.
    C{base + local} concatenates (C{local}'s rules take precedence).
    """

    __slots__ = ("dentries", "_hash", "_show", "_index")

    empty: "Dtab"

    def __init__(self, dentries: Iterable[Dentry] = ()) -> None:
        self.dentries: Tuple[Dentry, ...] = tuple(dentries)
        self._hash: Optional[int] = None
        self._show: Optional[str] = None
        self._index: Optional[_TrieNode] = None

    @classmethod
    def read(cls, text: str) -> "Dtab":
        """
        Parse C{dentry; dentry; ...} (a trailing C{;}, whitespace and C{#}
        comments allowed; an empty string is the empty dtab).

        @raise linkerpy.naming.parser.ParseError: on bad syntax.
        """
        from linkerpy.naming.parser import readDtab

        return readDtab(text)

    @classmethod
    def __structure__(cls, raw: Any) -> "Dtab":
        if raw is None:
            return cls.empty
        if not isinstance(raw, str):
            raise ValueError(f"expected a dtab string such as '/svc => /#/io.l5d.fs', got {type(raw).__name__}")
        return cls.read(raw)

    def __unstructure__(self) -> str:
        return self.show

    @property
    def show(self) -> str:
        """
        Dentries joined with C{;}, each shown as C{prefix=>tree}.
        """
        s = self._show
        if s is None:
            s = self._show = ";".join(d.show for d in self.dentries)
        return s

    def __add__(self, other: "Dtab") -> "Dtab":
        if not isinstance(other, Dtab):
            return NotImplemented
        if not other.dentries:
            return self
        if not self.dentries:
            return other
        return Dtab(self.dentries + other.dentries)

    def __iter__(self) -> Iterator[Dentry]:
        return iter(self.dentries)

    def __len__(self) -> int:
        return len(self.dentries)

    def __getitem__(self, i: int) -> Dentry:
        return self.dentries[i]

    @property
    def isEmpty(self) -> bool:
        return not self.dentries

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Dtab):
            return NotImplemented
        return self.dentries == other.dentries

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = self._hash = hash(("Dtab", self.dentries))
        return h

    def __repr__(self) -> str:
        return f"Dtab({self.show!r})"

    def __str__(self) -> str:
        return self.show

    # -- lookup -------------------------------------------------------------

    def _buildIndex(self) -> "_TrieNode":
        root = _TrieNode()
        for i, d in enumerate(self.dentries):
            node = root
            for e in d.prefix.elems:
                if e is ANY:
                    if node.any is None:
                        node.any = _TrieNode()
                    node = node.any
                else:
                    child = node.children.get(e)
                    if child is None:
                        child = node.children[e] = _TrieNode()
                    node = child
            node.entries.append(i)
        self._index = root
        return root

    def matching(self, path: Path) -> List[Dentry]:
        """
        @return: the dentries whose prefix matches C{path}, latest first.
        """
        dentries = self.dentries
        if len(dentries) <= 8:
            return [d for d in reversed(dentries) if d.prefix.matches(path)]
        root = self._index or self._buildIndex()
        found: List[int] = list(root.entries)
        frontier = [root]
        for e in path.elems:
            nxt = []
            for node in frontier:
                child = node.children.get(e)
                if child is not None:
                    nxt.append(child)
                    found.extend(child.entries)
                if node.any is not None:
                    nxt.append(node.any)
                    found.extend(node.any.entries)
            if not nxt:
                break
            frontier = nxt
        found.sort(reverse=True)
        return [dentries[i] for i in found]

    def lookup(self, path: Path) -> NameTree:
        """
        One rewrite step: every matching dentry's destination with the
        residual (the path beyond the prefix) appended to each leaf, latest
        dentry first; C{Neg} if none matches, the single tree if one does,
        an L{Alt} otherwise.
        """
        matches = self.matching(path)
        if not matches:
            return Neg
        trees = [_rewrite(d.dst, path.drop(len(d.prefix))) for d in matches]
        if len(trees) == 1:
            return trees[0]
        return Alt(*trees)


class _TrieNode:
    """
    A node of the prefix index: literal children, a wildcard child, and the
    indices of the dentries whose prefix ends here.
    """

    __slots__ = ("children", "any", "entries")

    def __init__(self) -> None:
        self.children: Dict[bytes, "_TrieNode"] = {}
        self.any: Optional["_TrieNode"] = None
        self.entries: List[int] = []


def _rewrite(dst: NameTree, residual: Path) -> NameTree:
    if not residual.elems:
        return dst
    if isinstance(dst, Leaf):
        return Leaf(dst.value + residual)
    return dst.map(lambda p: p + residual)


Dtab.empty = Dtab()
