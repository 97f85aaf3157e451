# -*- test-case-name: tests.test_tcp_router -*-
"""
Identifiers of TCP connections.

C{io.l5d.tls.sni} names a connection C{<dstPrefix>/<server name>} from the
TLS server name the client asked for: read from the ClientHello when the
server passes TLS through, or from the finished handshake when it
terminates TLS.  A connection without a server name gets C{defaultDst}, or
is refused.
"""

from __future__ import annotations

from typing import Dict, Optional

from zope.interface import implementer

from linkerpy.interfaces import IIdentifier
from linkerpy.naming.path import Path
from linkerpy.protocol.http.identifiers import Identified, Unidentified

_MEMO_LIMIT = 4096


@implementer(IIdentifier)
class SniIdentifier:
    """
    Names connections by TLS server name.

    The C{request} given to L{identify} is anything with a C{serverName}
    attribute (C{str} or C{None}); the TCP router passes its connection.

    @cvar needsServerName: tells the TCP router that servers which neither
        terminate TLS nor have a C{dstName} must read the ClientHello.
    """

    needsServerName = True

    def __init__(self, prefix: Path, defaultDst: Optional[Path] = None) -> None:
        self.prefix = prefix
        self.defaultDst = Identified(defaultDst) if defaultDst is not None else None
        self._memo: Dict[str, Identified] = {}
        self._noName = Unidentified("the client sent no TLS server name (SNI) and no defaultDst is configured")

    def identify(self, request: object) -> object:
        name = getattr(request, "serverName", None)
        if not name:
            return self.defaultDst or self._noName
        found = self._memo.get(name)
        if found is None:
            found = Identified(self.prefix + Path(name))
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[name] = found
        return found


@implementer(IIdentifier)
class FixedIdentifier:
    """
    Names every connection of a server with its C{dstName}.
    """

    needsServerName = False

    def __init__(self, name: Path) -> None:
        self.result = Identified(name)

    def identify(self, request: object) -> object:
        return self.result
