# -*- test-case-name: tests.test_h2_router -*-
"""
Plugin descriptors of the HTTP/2 router: the C{h2} protocol and the
C{io.l5d.header.path} identifier.  Import-light: runtime modules load in
the factories.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs
from twisted.plugin import IPlugin
from zope.interface import implementer

from linkerpy.config import checks
from linkerpy.config.structure import setting
from linkerpy.interfaces import IIdentifierPlugin, IProtocolPlugin
from linkerpy.naming.path import Path
from linkerpy.protocol.h2.config import H2ClientCore, H2RouterConfig, H2ServiceCore


@implementer(IPlugin, IProtocolPlugin)
class H2ProtocolPlugin:
    """
    C{protocol: h2}: the HTTP/2 router (gRPC included).
    """

    kind = "h2"
    configType = H2RouterConfig
    defaultPort = 4142
    serviceConfigType = H2ServiceCore
    clientConfigType = H2ClientCore

    def newRouter(self, config: H2RouterConfig, context: Any, namers: Any) -> Any:
        from linkerpy.protocol.h2.router import H2Router

        return H2Router(config, context, namers, config.label or self.kind)


@attrs.frozen
class HeaderPathConfig:
    header: str = setting(":path", doc="the header holding the path (last value wins)")
    segments: Optional[int] = setting(None, check=checks.positive, doc="how many leading segments name the request (default all)")


@implementer(IPlugin, IIdentifierPlugin)
class HeaderPathIdentifierPlugin:
    """
    C{io.l5d.header.path}: name h2 requests by a path (gRPC:
    C{/package.Service/Method}; C{segments: 1} routes by service).
    """

    kind = "io.l5d.header.path"
    configType = HeaderPathConfig
    protocols = frozenset({"h2"})

    def newIdentifier(self, config: HeaderPathConfig, prefix: Path, context: Any, protocol: str = "h2") -> Any:
        from linkerpy.protocol.h2.identifiers import HeaderPathIdentifier

        return HeaderPathIdentifier(prefix, config.header, config.segments)


h2Protocol = H2ProtocolPlugin()
headerPathIdentifier = HeaderPathIdentifierPlugin()
