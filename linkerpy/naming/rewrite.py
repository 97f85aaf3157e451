# -*- test-case-name: tests.test_naming_namers -*-
"""
Path patterns (Linkerd's C{PathMatcher}) and the C{io.l5d.rewrite} namer.

A pattern such as C{/foo/{A}/*/{B}.com} is matched against the first
elements of a path: literal segments must equal the element's shown form,
C{*} matches any element, and C{{name}} captures (greedily) inside a
segment.  Captures are substituted into a template (C{/{A}/and/{B}}).
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Pattern

from zope.interface import implementer

from linkerpy.interfaces import INamer
from linkerpy.naming.path import Path
from linkerpy.naming.tree import Leaf, NameTree, Neg
from linkerpy.naming.var import Activity

__all__ = ["PathMatcher", "RewritingNamer"]

_CAPTURE = re.compile(r"\{([a-zA-Z0-9.:_-]+)\}")


class PathMatcher:
    """
    A compiled pattern.

    @ivar pattern: the pattern text.
    """

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        segments = [s for s in pattern.split("/") if s]
        self._segments: List[Optional[Pattern[str]]] = []
        self._names: List[List[str]] = []
        for seg in segments:
            if seg == "*":
                self._segments.append(None)
                self._names.append([])
                continue
            names: List[str] = []
            regex = ""
            pos = 0
            for m in _CAPTURE.finditer(seg):
                regex += re.escape(seg[pos : m.start()]) + "(.*)"
                names.append(m.group(1))
                pos = m.end()
            regex += re.escape(seg[pos:])
            self._segments.append(re.compile(regex + r"\Z", re.DOTALL))
            self._names.append(names)

    def extract(self, path: Path) -> Optional[Dict[str, str]]:
        """
        @return: the captures when the pattern matches the start of C{path},
            else C{None}.
        """
        if len(path.elems) < len(self._segments):
            return None
        captures: Dict[str, str] = {}
        for i, regex in enumerate(self._segments):
            if regex is None:
                continue
            shown = path.take(i + 1).drop(i).show[1:]
            m = regex.match(shown)
            if m is None:
                return None
            for name, value in zip(self._names[i], m.groups()):
                captures[name] = value
        return captures

    def substitute(self, path: Path, template: str) -> Optional[str]:
        """
        @return: C{template} with C{{name}} replaced by the captures, or
            C{None} when the pattern does not match.
        """
        captures = self.extract(path)
        if captures is None:
            return None
        return _CAPTURE.sub(lambda m: captures.get(m.group(1), m.group(0)), template)


@implementer(INamer)
class RewritingNamer:
    """
    The C{io.l5d.rewrite} namer: C{Leaf(Path(name with captures))} when the
    pattern matches the start of the path (the rest of the path is dropped),
    C{Neg} otherwise.
    """

    def __init__(self, pattern: str, name: str) -> None:
        self.matcher = PathMatcher(pattern)
        self.name = name

    def rewrite(self, path: Path) -> NameTree:
        """
        @raise linkerpy.naming.ParseError: when the substituted name is not a path.
        """
        text = self.matcher.substitute(path, self.name)
        if text is None:
            return Neg
        return Leaf(Path.read(text))

    def lookup(self, path: Path) -> Activity[NameTree]:
        try:
            return Activity.value(self.rewrite(path))
        except ValueError as e:
            return Activity.exception(e)
