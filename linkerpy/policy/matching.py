# -*- test-case-name: tests.test_policy_matching -*-
"""
Prefix patterns for C{service:} and C{client:} config entries (Linkerd's
PathMatcher): C{/svc/*}, C{/#/io.l5d.fs/{service}}, C{/$/inet/{host}/*}.

A pattern matches a name when each of its segments matches the name's
segment at the same position (the name may be longer):

  - a literal segment must equal the name's segment (its shown form);
  - C{*} matches any one segment;
  - a segment containing C{{var}} is a regular expression where each
    capture is C{(.*)} (greedy, as in Linkerd: C{{a}-{b}} on C{x-y-z} gives
    C{a=x-y}, C{b=z}); captured values are substituted into templates such as
    C{tls.commonName: "{service}.example.com"}.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Pattern, Tuple, Union

from linkerpy.naming.path import Path
from linkerpy.naming.path import showElem

_VAR = re.compile(r"\{([a-zA-Z0-9.:_-]+)\}")
_VALID_LITERAL = re.compile(r"^[A-Za-z0-9_:.#$%\-]+$")

Segment = Union[str, None, Tuple[Pattern[str], Tuple[str, ...]]]


class PathMatcher:
    """
    A compiled prefix pattern.

    @ivar pattern: the source text.
    """

    __slots__ = ("pattern", "_segments")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._segments: List[Segment] = _compile(pattern)

    @classmethod
    def __structure__(cls, raw: Any) -> "PathMatcher":
        if not isinstance(raw, str):
            raise ValueError(f"expected a prefix pattern string such as '/svc/*', got {raw!r}")
        return cls(raw)

    def __unstructure__(self) -> str:
        return self.pattern

    def __repr__(self) -> str:
        return f"PathMatcher({self.pattern!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PathMatcher) and other.pattern == self.pattern

    def __hash__(self) -> int:
        return hash(self.pattern)

    @property
    def variables(self) -> Tuple[str, ...]:
        names: List[str] = []
        for seg in self._segments:
            if isinstance(seg, tuple):
                names.extend(seg[1])
        return tuple(names)

    def match(self, path: Path) -> Optional[Dict[str, str]]:
        """
        @return: the captured variables (possibly empty) if C{path} starts
            with a match of this pattern, else C{None}.
        """
        elems = path.elems
        if len(elems) < len(self._segments):
            return None
        captures: Dict[str, str] = {}
        for seg, elem in zip(self._segments, elems):
            if seg is None:
                continue
            shown = showElem(elem)
            if isinstance(seg, str):
                if shown != seg:
                    return None
                continue
            regex, names = seg
            m = regex.fullmatch(shown)
            if m is None:
                return None
            captures.update(zip(names, m.groups()))
        return captures

    def substitute(self, template: str, captures: Dict[str, str]) -> str:
        """
        Replace C{{var}} occurrences in C{template} with captured values;
        unknown variables are left as they are.
        """
        return _VAR.sub(lambda m: captures.get(m.group(1), m.group(0)), template)


def _compile(pattern: str) -> List[Segment]:
    text = pattern.strip()
    if not text.startswith("/"):
        raise ValueError(f"prefix pattern must start with '/', got {pattern!r}")
    parts = [p for p in text.split("/")[1:]]
    if parts == [""]:
        return []
    segments: List[Segment] = []
    for part in parts:
        if part == "":
            raise ValueError(f"empty segment in prefix pattern {pattern!r}")
        if part == "*":
            segments.append(None)
            continue
        if "{" in part or "}" in part:
            names = tuple(_VAR.findall(part))
            pieces = _VAR.split(part)
            regex = ""
            for i, piece in enumerate(pieces):
                if i % 2:
                    regex += "(.*)"
                else:
                    if "{" in piece or "}" in piece:
                        raise ValueError(f"malformed capture in prefix pattern segment {part!r}")
                    regex += re.escape(piece)
            segments.append((re.compile(regex), names))
            continue
        if not _VALID_LITERAL.match(part):
            raise ValueError(f"invalid characters in prefix pattern segment {part!r}")
        segments.append(part)
    return segments


def substituteTemplate(template: Optional[str], captures: Dict[str, str]) -> Optional[str]:
    """
    Replace C{{var}} in C{template} with C{captures}; C{None} passes through.
    """
    if template is None:
        return None
    return _VAR.sub(lambda m: captures.get(m.group(1), m.group(0)), template)
