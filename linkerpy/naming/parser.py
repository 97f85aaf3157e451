# -*- test-case-name: tests.test_naming_parse -*-
"""
The concrete syntax of paths, prefixes, name trees, dentries and dtabs.

A hand-written recursive-descent parser with Finagle's grammar and error
messages (C{"'/' expected but 'i' found at '[i]nvalid'"}); see
C{docs/naming.md}.  Whitespace and C{#} comments are skipped between tokens,
never inside a path.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING, List

from linkerpy.naming.path import ANY, Path, Prefix, isShowable

if TYPE_CHECKING:  # pragma: no cover
    from linkerpy.naming.dtab import Dentry, Dtab
    from linkerpy.naming.tree import NameTree

__all__ = ["ParseError", "readPath", "readPrefix", "readTree", "readDentry", "readDtab", "MAX_NESTING"]

#: Deepest parenthesis nesting accepted in a name tree (keeps recursion bounded).
MAX_NESTING = 64

_EOI = "\uffff"
_SHOWABLE_RUN = re.compile(r"[0-9A-Za-z_:.#$%-]+")
_HEX = frozenset("0123456789abcdefABCDEF")
_NON_BREAKING = frozenset("\u00a0\u2007\u202f")
_JAVA_SPACE_CONTROLS = frozenset("\t\n\u000b\f\r\u001c\u001d\u001e\u001f")


class ParseError(ValueError):
    """
    Text that is not a valid path, prefix, name tree, dentry or dtab.

    The message says what was expected, what was found and where, with the
    offending character in brackets: C{"'=' expected but '&' found at '/[&]!'"}.

    @ivar text: the input.
    @ivar column: the 0-based offset of the problem in C{text}.
    @ivar expected: what the parser expected there.
    """

    def __init__(self, message: str, text: str, column: int, expected: str) -> None:
        super().__init__(message)
        self.text = text
        self.column = column
        self.expected = expected


def _isJavaWhitespace(ch: str) -> bool:
    if ch in _JAVA_SPACE_CONTROLS:
        return True
    if ch in _NON_BREAKING or ord(ch) < 0x80:
        return ch == " "
    return unicodedata.category(ch) in ("Zs", "Zl", "Zp")


class _Parser:
    __slots__ = ("s", "n", "i", "nesting")

    def __init__(self, s: str) -> None:
        if not isinstance(s, str):
            raise TypeError(f"expected a str to parse, got {type(s).__name__}")
        self.s = s
        self.n = len(s)
        self.i = 0
        self.nesting = 0

    # -- primitives ---------------------------------------------------------

    def peek(self) -> str:
        return self.s[self.i] if self.i < self.n else _EOI

    def illegal(self, expected: str, found: str) -> ParseError:
        s, i = self.s, self.i
        if i >= self.n:
            shown = s + "[]"
        else:
            shown = s[:i] + "[" + s[i] + "]" + s[i + 1 :]
        foundText = "end of input" if found == _EOI else f"'{found}'"
        return ParseError(f"{expected} expected but {foundText} found at '{shown}'", s, i, expected)

    def maybeEat(self, ch: str) -> bool:
        if self.i < self.n and self.s[self.i] == ch:
            self.i += 1
            return True
        return False

    def eat(self, ch: str) -> None:
        if not self.maybeEat(ch):
            raise self.illegal(f"'{ch}'", self.peek())

    def eatWhitespace(self) -> None:
        s, n, i = self.s, self.n, self.i
        while i < n:
            ch = s[i]
            if ch == "#":
                while i < n and s[i] != "\n":
                    i += 1
            elif _isJavaWhitespace(ch):
                i += 1
            else:
                break
        self.i = i

    def ensureEnd(self) -> None:
        self.eatWhitespace()
        if self.i < self.n:
            raise self.illegal("end of input", self.peek())

    # -- paths and prefixes --------------------------------------------------

    @staticmethod
    def isLabelChar(ch: str) -> bool:
        return ch == "\\" or isShowable(ch)

    def parseHex(self) -> int:
        ch = self.peek()
        if ch in _HEX:
            self.i += 1
            return int(ch, 16)
        raise self.illegal("hex char", ch)

    def parseLabel(self) -> bytes:
        out = bytearray()
        while True:
            run = _SHOWABLE_RUN.match(self.s, self.i)
            if run is not None:
                self.i = run.end()
                out += run.group().encode("ascii")
                if not self.isLabelChar(self.peek()):
                    return bytes(out)
                continue
            ch = self.peek()
            if ch == "\\":
                self.i += 1
                self.eat("x")
                hi = self.parseHex()
                lo = self.parseHex()
                out.append(hi << 4 | lo)
            else:
                raise self.illegal("label char", ch)
            if not self.isLabelChar(self.peek()):
                return bytes(out)

    def parsePath(self) -> Path:
        self.eatWhitespace()
        self.eat("/")
        if not self.isLabelChar(self.peek()):
            return Path.empty
        labels: List[bytes] = []
        while True:
            labels.append(self.parseLabel())
            if not self.maybeEat("/"):
                break
        return Path.fromElems(tuple(labels))

    def parsePrefix(self) -> Prefix:
        self.eatWhitespace()
        self.eat("/")
        ch = self.peek()
        if ch != "*" and not self.isLabelChar(ch):
            return Prefix.empty
        elems: List[object] = []
        while True:
            if self.maybeEat("*"):
                elems.append(ANY)
            else:
                elems.append(self.parseLabel())
            if not self.maybeEat("/"):
                break
        return Prefix.fromElems(tuple(elems))

    # -- trees --------------------------------------------------------------

    def parseTree(self) -> "NameTree":
        from linkerpy.naming.tree import Alt

        trees = []
        while True:
            trees.append(self.parseTree1())
            self.eatWhitespace()
            if not self.maybeEat("|"):
                break
        if len(trees) == 1:
            return trees[0]
        return Alt(*trees)

    def parseTree1(self) -> "NameTree":
        from linkerpy.naming.tree import Union

        weighted = []
        while True:
            weighted.append(self.parseWeighted())
            self.eatWhitespace()
            if not self.maybeEat("&"):
                break
        if len(weighted) == 1:
            return weighted[0].tree
        return Union(*weighted)

    def parseWeighted(self) -> "object":
        from linkerpy.naming.tree import Weighted

        self.eatWhitespace()
        weight = 1.0
        if self.isNumberChar(self.peek()):
            weight = self.parseNumber()
            self.eatWhitespace()
            self.eat("*")
            self.eatWhitespace()
        return Weighted(weight, self.parseSimple())

    @staticmethod
    def isNumberChar(ch: str) -> bool:
        return ch == "." or (ch != _EOI and ch.isdecimal())

    def parseNumber(self) -> float:
        start = self.i
        seenDot = False
        while self.isNumberChar(self.peek()):
            if self.peek() == ".":
                if seenDot:
                    raise self.illegal("number char", ".")
                seenDot = True
            self.i += 1
        text = self.s[start : self.i]
        if text == "." or not text.replace(".", "").isascii():
            raise self.illegal("weight", text[-1])
        return float(text)

    def parseSimple(self) -> "NameTree":
        from linkerpy.naming.tree import Empty, Fail, Leaf, Neg

        self.eatWhitespace()
        ch = self.peek()
        if ch == "(":
            if self.nesting >= MAX_NESTING:
                raise self.illegal(f"at most {MAX_NESTING} levels of parentheses", ch)
            self.i += 1
            self.nesting += 1
            tree = self.parseTree()
            self.eatWhitespace()
            self.eat(")")
            self.nesting -= 1
            return tree
        if ch == "/":
            return Leaf(self.parsePath())
        if ch == "!":
            self.i += 1
            return Fail
        if ch == "~":
            self.i += 1
            return Neg
        if ch == "$":
            self.i += 1
            return Empty
        raise self.illegal("simple", ch)

    # -- dtabs --------------------------------------------------------------

    def parseDentry(self) -> "Dentry":
        from linkerpy.naming.dtab import Dentry

        prefix = self.parsePrefix()
        self.eatWhitespace()
        self.eat("=")
        self.eat(">")
        return Dentry(prefix, self.parseTree())

    def parseDtab(self) -> "Dtab":
        from linkerpy.naming.dtab import Dtab

        dentries = []
        while True:
            self.eatWhitespace()
            if self.i < self.n:
                dentries.append(self.parseDentry())
                self.eatWhitespace()
            if not self.maybeEat(";"):
                break
        return Dtab(dentries)


def readPath(text: str) -> Path:
    """
    Parse a whole string as a L{Path}.

    @raise ParseError: when it is not one.
    """
    p = _Parser(text)
    path = p.parsePath()
    p.ensureEnd()
    return path


def readPrefix(text: str) -> Prefix:
    """
    Parse a whole string as a dentry L{Prefix}.
    """
    p = _Parser(text)
    prefix = p.parsePrefix()
    p.ensureEnd()
    return prefix


def readTree(text: str) -> "NameTree":
    """
    Parse a whole string as a L{linkerpy.naming.tree.NameTree} of L{Path}.
    """
    p = _Parser(text)
    tree = p.parseTree()
    p.ensureEnd()
    return tree


def readDentry(text: str) -> "Dentry":
    """
    Parse a whole string as one L{linkerpy.naming.dtab.Dentry}.
    """
    p = _Parser(text)
    dentry = p.parseDentry()
    p.ensureEnd()
    return dentry


def readDtab(text: str) -> "Dtab":
    """
    Parse a whole string as a L{linkerpy.naming.dtab.Dtab}.
    """
    p = _Parser(text)
    dtab = p.parseDtab()
    p.ensureEnd()
    return dtab
