# -*- test-case-name: tests.test_naming_values -*-
"""
Paths and dentry prefixes: sequences of non-empty byte-string elements.

A L{Path} names something (C{/svc/hello}, C{/$/inet/127.0.0.1/8080}); a
L{Prefix} is the left-hand side of a dentry and may hold C{*} wildcards.
Both are immutable, hashable and cheap to compare: the hash is computed once
and the elements are a tuple of C{bytes}.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional, Tuple, Union

__all__ = ["Path", "Prefix", "ANY", "isShowable", "showElem"]

#: The bytes allowed unescaped in a shown element.
_SHOWABLE = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_:.#$%-")


def isShowable(ch: str) -> bool:
    """
    @return: whether C{ch} (one character) may appear unescaped in a label.
    """
    return len(ch) == 1 and ord(ch) < 128 and ord(ch) in _SHOWABLE


def showElem(elem: bytes) -> str:
    """
    Render one element: as is when every byte is showable, otherwise every
    byte as a lower-case C{\\xhh} escape (Finagle's rule).
    """
    for b in elem:
        if b not in _SHOWABLE:
            return "".join("\\x%02x" % b for b in elem)
    return elem.decode("ascii")


def _toElem(e: Union[bytes, str, bytearray, memoryview]) -> bytes:
    if isinstance(e, str):
        e = e.encode("utf-8")
    elif not isinstance(e, bytes):
        e = bytes(e)
    if not e:
        raise ValueError("path elements must be non-empty")
    return e


class Path:
    """
    An immutable sequence of non-empty C{bytes} elements.

    C{Path("svc", "hello")} (strings are UTF-8 encoded) or
    C{Path.read("/svc/hello")}.

    @ivar elems: the elements, a C{tuple} of C{bytes}.
    """

    __slots__ = ("elems", "_hash", "_show")

    empty: "Path"

    def __init__(self, *elems: Union[bytes, str]) -> None:
        self.elems: Tuple[bytes, ...] = tuple(_toElem(e) for e in elems)
        self._hash: Optional[int] = None
        self._show: Optional[str] = None

    @classmethod
    def fromElems(cls, elems: Tuple[bytes, ...]) -> "Path":
        """
        Build a path from a tuple of already-valid (non-empty C{bytes}) elements, without checks.
        """
        p = object.__new__(cls)
        p.elems = elems
        p._hash = None
        p._show = None
        return p

    @classmethod
    def read(cls, text: str) -> "Path":
        """
        Parse the concrete syntax (C{/a/b}, C{\\xhh} escapes, surrounding
        whitespace allowed).

        @raise linkerpy.naming.parser.ParseError: on bad syntax.
        """
        from linkerpy.naming.parser import readPath

        return readPath(text)

    @classmethod
    def __structure__(cls, raw: Any) -> "Path":
        if not isinstance(raw, str):
            raise ValueError(f"expected a path string such as '/svc', got {type(raw).__name__}")
        return cls.read(raw)

    def __unstructure__(self) -> str:
        return self.show

    @property
    def show(self) -> str:
        """
        The showable form: C{/} + elements joined by C{/}; C{/} when empty.
        """
        s = self._show
        if s is None:
            s = self._show = "/" + "/".join(showElem(e) for e in self.elems)
        return s

    @property
    def isEmpty(self) -> bool:
        return not self.elems

    def startsWith(self, prefix: "Path") -> bool:
        """
        @return: whether C{prefix}'s elements are the first elements of this path.
        """
        n = len(prefix.elems)
        return n <= len(self.elems) and self.elems[:n] == prefix.elems

    def drop(self, n: int) -> "Path":
        """
        @return: the path without its first C{n} elements.
        """
        if n <= 0:
            return self
        return Path.fromElems(self.elems[n:])

    def take(self, n: int) -> "Path":
        """
        @return: the first C{n} elements.
        """
        if n >= len(self.elems):
            return self
        return Path.fromElems(self.elems[: max(n, 0)])

    def __add__(self, other: "Path") -> "Path":
        if not isinstance(other, Path):
            return NotImplemented
        if not other.elems:
            return self
        if not self.elems:
            return other
        return Path.fromElems(self.elems + other.elems)

    def __len__(self) -> int:
        return len(self.elems)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.elems)

    def __getitem__(self, i: int) -> bytes:
        return self.elems[i]

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Path):
            return NotImplemented
        return self.elems == other.elems

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = self._hash = hash(("Path", self.elems))
        return h

    def __lt__(self, other: "Path") -> bool:
        return self.elems < other.elems

    def __repr__(self) -> str:
        return "Path(" + ",".join(e.decode("utf-8", "replace") for e in self.elems) + ")"

    def __str__(self) -> str:
        return self.show

    def __reduce__(self) -> Any:
        return (Path.fromElems, (self.elems,))


Path.empty = Path()


class _Any:
    """
    The C{*} wildcard element of a L{Prefix}.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "*"

    def __reduce__(self) -> str:
        return "ANY"


#: The wildcard element of a dentry prefix (matches any one path element).
ANY: Any = _Any()


class Prefix:
    """
    A dentry prefix: labels (C{bytes}) and C{*} wildcards (L{ANY}).

    @ivar elems: a C{tuple} of C{bytes} or L{ANY}.
    """

    __slots__ = ("elems", "_hash", "_show", "_literal")

    empty: "Prefix"

    def __init__(self, *elems: Any) -> None:
        self.elems: Tuple[Any, ...] = tuple(e if e is ANY else _toElem(e) for e in elems)
        self._hash: Optional[int] = None
        self._show: Optional[str] = None
        self._literal = ANY not in self.elems

    @classmethod
    def fromElems(cls, elems: Tuple[Any, ...]) -> "Prefix":
        p = object.__new__(cls)
        p.elems = elems
        p._hash = None
        p._show = None
        p._literal = ANY not in elems
        return p

    @classmethod
    def fromPath(cls, path: Path) -> "Prefix":
        """
        A prefix without wildcards, equal to C{path}.
        """
        return cls.fromElems(path.elems)

    @classmethod
    def read(cls, text: str) -> "Prefix":
        """
        Parse a prefix (a path where an element may be C{*}).
        """
        from linkerpy.naming.parser import readPrefix

        return readPrefix(text)

    @property
    def show(self) -> str:
        s = self._show
        if s is None:
            s = self._show = "/" + "/".join("*" if e is ANY else showElem(e) for e in self.elems)
        return s

    def matches(self, path: Path) -> bool:
        """
        @return: whether every element of the prefix matches the path's
            element at the same position (C{*} matches any element).
        """
        mine = self.elems
        theirs = path.elems
        n = len(mine)
        if n > len(theirs):
            return False
        if self._literal:
            return theirs[:n] == mine
        for i in range(n):
            e = mine[i]
            if e is not ANY and e != theirs[i]:
                return False
        return True

    def __len__(self) -> int:
        return len(self.elems)

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Prefix):
            return NotImplemented
        return self.elems == other.elems

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = self._hash = hash(("Prefix", self.elems))
        return h

    def __repr__(self) -> str:
        return f"Prefix({self.show})"

    def __str__(self) -> str:
        return self.show


Prefix.empty = Prefix()
