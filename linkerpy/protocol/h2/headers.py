# -*- test-case-name: tests.test_h2_headers -*-
"""
HTTP/2 header lists: an ordered list of C{(name, value)} pairs, names
lower-cased, pseudo-header fields (C{:method}, C{:path}...) first.

L{H2Headers} offers the lookup and edit methods of
L{linkerpy.protocol.http.headers.Headers} (C{get}, C{getLast}, C{getAll},
C{set}, C{add}, C{remove}, C{removePrefix}, C{in}), so the identifiers and
the C{l5d-*} header rules of L{linkerpy.protocol.http.l5d} work on h2
requests unchanged.  Names given in any case are lower-cased (HTTP/2 field
names are lower case on the wire).
"""

from __future__ import annotations

from typing import Iterable, Iterator, List, Optional, Tuple

from hpack import NeverIndexedHeaderTuple

__all__ = ["H2Headers", "CONNECTION_SPECIFIC", "sanitize"]

#: Fields that are meaningless, or forbidden, in HTTP/2 (RFC 9113 section
#: 8.2.2).  C{te} is allowed only as C{te: trailers}; it is kept when so.
CONNECTION_SPECIFIC = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
    }
)

_PSEUDO_ORDER = {b":method": 0, b":scheme": 1, b":authority": 2, b":path": 3, b":status": 0, b":protocol": 4}


class H2Headers:
    """
    An HTTP/2 header list.

    @ivar items: the C{(name, value)} pairs, names lower-cased, in order.
    """

    __slots__ = ("items",)

    def __init__(self, pairs: Optional[Iterable[Tuple[bytes, bytes]]] = None) -> None:
        self.items: List[Tuple[bytes, bytes]] = []
        if pairs is not None:
            for name, value in pairs:
                self.items.append((name.lower(), value))

    @classmethod
    def fromWire(cls, pairs: List[Tuple[bytes, bytes]]) -> "H2Headers":
        """
        Wrap a header list decoded (and validated) by C{h2}: names are
        already lower case.  The list is not copied.
        """
        h = cls.__new__(cls)
        h.items = pairs
        return h

    # -- reading -----------------------------------------------------------

    def get(self, name: bytes, default: Optional[bytes] = None) -> Optional[bytes]:
        """
        The first value of C{name}, or C{default}.
        """
        name = name.lower()
        for n, v in self.items:
            if n == name:
                return v
        return default

    def getLast(self, name: bytes, default: Optional[bytes] = None) -> Optional[bytes]:
        """
        The last value of C{name}, or C{default}.
        """
        name = name.lower()
        for n, v in reversed(self.items):
            if n == name:
                return v
        return default

    def getAll(self, name: bytes) -> List[bytes]:
        """
        Every value of C{name}, in order.
        """
        name = name.lower()
        return [v for n, v in self.items if n == name]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, bytes):
            return False
        name = name.lower()
        for n, _ in self.items:
            if n == name:
                return True
        return False

    def __iter__(self) -> Iterator[Tuple[bytes, bytes]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, H2Headers):
            return NotImplemented
        return self.items == other.items

    def __repr__(self) -> str:
        return f"H2Headers({self.items!r})"

    def names(self) -> List[bytes]:
        return [n for n, _ in self.items]

    # -- writing -----------------------------------------------------------

    def add(self, name: bytes, value: bytes) -> None:
        """
        Append a field (pseudo-header fields go after the existing ones,
        before the regular fields).
        """
        name = name.lower()
        if name[:1] == b":":
            self._insertPseudo(name, value)
        else:
            self.items.append((name, value))

    def set(self, name: bytes, value: bytes) -> None:
        """
        Replace every value of C{name} with one C{value} (at the position of
        the first occurrence, or appended).
        """
        name = name.lower()
        items = self.items
        for i, (n, _) in enumerate(items):
            if n == name:
                items[i] = (name, value)
                if any(n2 == name for n2, _ in items[i + 1 :]):
                    self.items = items[: i + 1] + [it for it in items[i + 1 :] if it[0] != name]
                return
        if name[:1] == b":":
            self._insertPseudo(name, value)
        else:
            items.append((name, value))

    def setUnindexed(self, name: bytes, value: bytes) -> None:
        """
        Like L{set}, for a value that differs on every message (a trace
        id): HPACK sends it literally instead of filling the header
        compression table with it.
        """
        self.set(name, value)
        name = name.lower()
        items = self.items
        for i, (n, v) in enumerate(items):
            if n == name:
                items[i] = NeverIndexedHeaderTuple(n, v)
                return

    def _insertPseudo(self, name: bytes, value: bytes) -> None:
        items = self.items
        i = 0
        while i < len(items) and items[i][0][:1] == b":":
            i += 1
        items.insert(i, (name, value))

    def remove(self, name: bytes) -> int:
        """
        Remove every field called C{name}; return how many.
        """
        name = name.lower()
        before = len(self.items)
        self.items = [it for it in self.items if it[0] != name]
        return before - len(self.items)

    def removeNames(self, names: "frozenset[bytes] | set[bytes]") -> int:
        before = len(self.items)
        self.items = [it for it in self.items if it[0] not in names]
        return before - len(self.items)

    def removePrefix(self, prefix: bytes) -> int:
        """
        Remove every field whose name starts with C{prefix}.
        """
        prefix = prefix.lower()
        before = len(self.items)
        self.items = [it for it in self.items if not it[0].startswith(prefix)]
        return before - len(self.items)

    def copy(self) -> "H2Headers":
        return H2Headers.fromWire(list(self.items))

    def regular(self) -> "H2Headers":
        """
        A copy without the pseudo-header fields.
        """
        return H2Headers.fromWire([it for it in self.items if it[0][:1] != b":"])

    def toWire(self) -> List[Tuple[bytes, bytes]]:
        """
        The list to hand to C{h2}: pseudo-header fields first, in the
        conventional order.
        """
        items = self.items
        pseudo = [it for it in items if it[0][:1] == b":"]
        if not pseudo:
            return items
        regular = [it for it in items if it[0][:1] != b":"]
        pseudo.sort(key=lambda it: _PSEUDO_ORDER.get(it[0], 9))
        return pseudo + regular


def sanitize(headers: H2Headers) -> None:
    """
    Remove connection-specific fields (and C{te} other than C{trailers}),
    in place: what a proxy must not forward over HTTP/2.
    """
    items = headers.items
    for name, value in items:
        if name in CONNECTION_SPECIFIC or (name == b"te" and value.strip().lower() != b"trailers"):
            break
    else:
        return
    headers.items = [
        (n, v)
        for n, v in items
        if n not in CONNECTION_SPECIFIC and not (n == b"te" and v.strip().lower() != b"trailers")
    ]
