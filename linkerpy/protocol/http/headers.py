# -*- test-case-name: tests.test_http_framing -*-
"""
An ordered, case-preserving, case-insensitively looked-up list of header
fields, and the hop-by-hop rules.

Names and values are C{bytes}.  Lookups take any case (C{b"Host"} or
C{b"host"}); passing lower-case names is slightly faster.

Headers parsed from the network contain only end-to-end fields: the parser
has already removed the hop-by-hop fields (L{HOP_BY_HOP} and every field a
C{Connection} header names) and the framing fields (C{Content-Length},
C{Transfer-Encoding}), which live on the message head instead
(L{linkerpy.protocol.http.message}).
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

__all__ = [
    "Headers",
    "HOP_BY_HOP",
    "FRAMING",
    "connectionTokens",
    "stripHopByHop",
    "validName",
    "validValue",
]

#: Hop-by-hop fields (RFC 9110 section 7.6.1, plus the obsolete
#: C{Proxy-Connection} and the proxy authentication fields, as Linkerd does).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)

#: Fields that carry message framing; the message head owns them.
FRAMING = frozenset({b"content-length", b"transfer-encoding"})

_UNCLEAN = HOP_BY_HOP | FRAMING

#: Fields a C{Connection} header may not remove (they are end-to-end and
#: needed for routing or framing); naming them in C{Connection} is ignored.
PROTECTED = frozenset({b"host", b"content-length", b"transfer-encoding"})

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_VALUE = re.compile(rb"(?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?\Z")


_TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_VALUE_CHARS = b"\t" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))
_WHITESPACE = (0x20, 0x09)

#: Names already validated, with their lower-case form (bounded).
_KNOWN_NAMES: Dict[bytes, bytes] = {}


def _checkName(name: bytes) -> bytes:
    """
    Validate a field name; return it lower-cased.
    """
    lname = _KNOWN_NAMES.get(name)
    if lname is None:
        if not name or name.translate(None, _TOKEN_CHARS):
            raise ValueError(f"invalid header name {name!r}")
        lname = name.lower()
        if len(_KNOWN_NAMES) < 4096:
            _KNOWN_NAMES[name] = lname
    return lname


def _checkValue(value: bytes) -> None:
    """
    Validate a field value (no controls, no surrounding whitespace).
    """
    if value and (value.translate(None, _VALUE_CHARS) or value[0] in _WHITESPACE or value[-1] in _WHITESPACE):
        raise ValueError(f"invalid header value {value!r}")


def validName(name: bytes) -> bool:
    """
    Is C{name} a valid field name (an RFC 9110 token)?
    """
    return _TOKEN.match(name) is not None


def validValue(value: bytes) -> bool:
    """
    Is C{value} a valid field value without leading or trailing whitespace
    (visible characters, spaces and tabs inside, no control characters)?
    """
    return _VALUE.match(value) is not None


def connectionTokens(value: bytes) -> List[bytes]:
    """
    Split a C{Connection} (or other comma-separated token list) value into
    lower-cased tokens, dropping empty elements.
    """
    if value.find(b",") < 0:
        token = value.strip(b" \t").lower()
        return [token] if token else []
    return [t for t in (p.strip(b" \t").lower() for p in value.split(b",")) if t]


class Headers:
    """
    Header fields in order.

    Internally a list of C{(lowercaseName, name, value)} tuples, so lookups
    need no case folding of the stored names.  Cheap to build (the parser
    fills L{_items} directly) and to serialise.
    """

    __slots__ = ("_items", "_clean")

    def __init__(self, pairs: Optional[Iterable[Tuple[bytes, bytes]]] = None) -> None:
        """
        @param pairs: initial C{(name, value)} pairs; each is validated.
        """
        self._items: List[Tuple[bytes, bytes, bytes]] = []
        #: C{True} while no hop-by-hop or framing field is present (the
        #: parser's output); lets writers skip a scan.
        self._clean = False
        if pairs is not None:
            for name, value in pairs:
                self.add(name, value)

    @classmethod
    def _trusted(cls, items: List[Tuple[bytes, bytes, bytes]]) -> "Headers":
        """
        Wrap an already-validated item list without copying (parser use).
        """
        h = cls.__new__(cls)
        h._items = items
        h._clean = True
        return h

    # -- reading -----------------------------------------------------------

    def get(self, name: bytes, default: Optional[bytes] = None) -> Optional[bytes]:
        """
        The first value of C{name}, or C{default}.
        """
        lname = name.lower()
        for item in self._items:
            if item[0] == lname:
                return item[2]
        return default

    def getLast(self, name: bytes, default: Optional[bytes] = None) -> Optional[bytes]:
        """
        The last value of C{name}, or C{default}.
        """
        lname = name.lower()
        for item in reversed(self._items):
            if item[0] == lname:
                return item[2]
        return default

    def getAll(self, name: bytes) -> List[bytes]:
        """
        Every value of C{name}, in order.
        """
        lname = name.lower()
        return [item[2] for item in self._items if item[0] == lname]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, bytes):
            return False
        lname = name.lower()
        for item in self._items:
            if item[0] == lname:
                return True
        return False

    def __iter__(self) -> Iterator[Tuple[bytes, bytes]]:
        """
        Iterate over C{(name, value)} pairs as received (case preserved).
        """
        for _, name, value in self._items:
            yield name, value

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(i[0], i[2]) for i in self._items] == [(i[0], i[2]) for i in other._items]

    def __repr__(self) -> str:
        return f"Headers({[(n, v) for _, n, v in self._items]!r})"

    def names(self) -> List[bytes]:
        """
        The lower-cased names, in order (with repetitions).
        """
        return [item[0] for item in self._items]

    # -- writing -----------------------------------------------------------

    def add(self, name: bytes, value: bytes) -> None:
        """
        Append a field.

        @raise ValueError: if C{name} is not a token or C{value} contains
            control characters, CR/LF, or leading/trailing whitespace.
        """
        lname = _checkName(name)
        _checkValue(value)
        if lname in _UNCLEAN:
            self._clean = False
        self._items.append((lname, name, value))

    def set(self, name: bytes, value: bytes) -> None:
        """
        Replace every value of C{name} with one C{value} (appended last if
        absent, otherwise at the position of the first occurrence).
        """
        lname = _checkName(name)
        _checkValue(value)
        if lname in _UNCLEAN:
            self._clean = False
        items = self._items
        n = len(items)
        for i in range(n):
            if items[i][0] == lname:
                items[i] = (lname, name, value)
                j = i + 1
                while j < n:
                    if items[j][0] == lname:
                        del items[j]
                        n -= 1
                    else:
                        j += 1
                return
        items.append((lname, name, value))

    def addTrusted(self, lname: bytes, name: bytes, value: bytes) -> None:
        """
        Append a field the caller built and knows to be valid (C{lname} is
        C{name} lower-cased; neither is hop-by-hop): no checks, for the
        router's own headers on the hot path.
        """
        self._items.append((lname, name, value))

    def setTrusted(self, lname: bytes, name: bytes, value: bytes) -> None:
        """
        L{set} without the checks, for values the caller built (see
        L{addTrusted}).
        """
        items = self._items
        for i in range(len(items)):
            if items[i][0] == lname:
                items[i] = (lname, name, value)
                self._items = items[: i + 1] + [item for item in items[i + 1 :] if item[0] != lname]
                return
        items.append((lname, name, value))

    def remove(self, name: bytes) -> int:
        """
        Remove every field called C{name}.

        @return: how many were removed.
        """
        lname = name.lower()
        before = len(self._items)
        self._items = [item for item in self._items if item[0] != lname]
        return before - len(self._items)

    def removeNames(self, lnames: "frozenset[bytes] | set[bytes]") -> int:
        """
        Remove every field whose lower-cased name is in C{lnames}.

        @return: how many were removed.
        """
        before = len(self._items)
        self._items = [item for item in self._items if item[0] not in lnames]
        return before - len(self._items)

    def removePrefix(self, prefix: bytes) -> int:
        """
        Remove every field whose name starts with C{prefix} (compared
        lower-cased, e.g. C{b"l5d-"}).

        @return: how many were removed.
        """
        prefix = prefix.lower()
        before = len(self._items)
        self._items = [item for item in self._items if not item[0].startswith(prefix)]
        return before - len(self._items)

    def copy(self) -> "Headers":
        """
        A shallow copy (the tuples are immutable).
        """
        h = Headers._trusted(list(self._items))
        h._clean = self._clean
        return h

    # -- serialisation -----------------------------------------------------

    def serialize(self) -> bytes:
        """
        The fields as C{b"Name: value\\r\\n"} lines (no final empty line).
        """
        out: List[bytes] = []
        for _, name, value in self._items:
            out += (name, b": ", value, b"\r\n")
        return b"".join(out)


def stripHopByHop(headers: Headers) -> int:
    """
    Remove the hop-by-hop fields from C{headers} in place: the fixed list
    L{HOP_BY_HOP} and every field named by a C{Connection} header (except
    L{PROTECTED} ones).  Use it on headers built or received outside this
    layer; parsed heads are already stripped.

    @return: how many fields were removed.
    """
    named = set(HOP_BY_HOP)
    for value in headers.getAll(b"connection"):
        for token in connectionTokens(value):
            if token not in PROTECTED:
                named.add(token)
    return headers.removeNames(named)
