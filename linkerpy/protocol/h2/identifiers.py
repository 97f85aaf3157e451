# -*- test-case-name: tests.test_h2_router -*-
"""
HTTP/2 identifiers.  C{io.l5d.header.token} is shared with HTTP/1.1 (see
L{linkerpy.protocol.http.identifiers}); C{io.l5d.header.path} is h2's: it
names a request by the path in a header (C{:path} by default), which for
gRPC is C{/package.Service/Method}.
"""

from __future__ import annotations

from typing import Dict, Optional

from zope.interface import implementer

from linkerpy.interfaces import IIdentifier
from linkerpy.naming.path import Path
from linkerpy.protocol.http.identifiers import Identified, Unidentified

_MEMO_LIMIT = 4096


@implementer(IIdentifier)
class HeaderPathIdentifier:
    """
    C{io.l5d.header.path}: C{<dstPrefix>/<segments of the path in the
    header>}: the first C{segments} segments when set (fewer is
    unidentified), else all of them.  The query string and fragment are
    ignored; the last value of the header is used.
    """

    def __init__(self, prefix: Path, header: str = ":path", segments: Optional[int] = None) -> None:
        self.prefix = prefix
        self.header = header.lower().encode("ascii")
        self.segments = segments
        self._absent = Unidentified(f"{header} header is absent")
        self._short = Unidentified(f"the {header} header has fewer than {segments} path segments")
        self._memo: Dict[bytes, object] = {}

    def identify(self, request: object) -> object:
        value = request.headers.getLast(self.header)  # type: ignore[attr-defined]
        if not value:
            return self._absent
        found = self._memo.get(value)
        if found is None:
            found = self._name(value)
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[value] = found
        return found

    def _name(self, value: bytes) -> object:
        path = value.split(b"?", 1)[0].split(b"#", 1)[0]
        segments = [s for s in path.split(b"/") if s]
        if self.segments is not None:
            if len(segments) < self.segments:
                return self._short
            segments = segments[: self.segments]
        if not segments:
            return Unidentified("the path is empty")
        try:
            return Identified(self.prefix + Path.fromElems(tuple(segments)))
        except ValueError as e:
            return Unidentified(f"the path is not a valid name: {e}")
