# -*- test-case-name: tests.test_tcp_config -*-
"""
Plugin descriptors of the TCP router: the C{tcp} and C{httpsRedirect}
protocols and the C{io.l5d.tls.sni} identifier.  Import-light: runtime
modules load in the factories.
"""

from __future__ import annotations

from typing import Any

from twisted.plugin import IPlugin
from zope.interface import implementer

from linkerpy.interfaces import IIdentifierPlugin, IProtocolPlugin
from linkerpy.naming.path import Path
from linkerpy.protocol.tcp.config import (
    DEFAULT_TCP_PORT,
    HttpsRedirectConfig,
    SniIdentifierConfig,
    TcpClientCore,
    TcpRouterConfig,
    TcpServiceCore,
)


@implementer(IPlugin, IProtocolPlugin)
class TcpProtocolPlugin:
    """
    C{protocol: tcp}: byte streams routed by C{dstName} or TLS server name.
    """

    kind = "tcp"
    configType = TcpRouterConfig
    defaultPort = DEFAULT_TCP_PORT
    serviceConfigType = TcpServiceCore
    clientConfigType = TcpClientCore

    def newRouter(self, config: TcpRouterConfig, context: Any, namers: Any) -> Any:
        from linkerpy.protocol.tcp.router import TcpRouter

        return TcpRouter(config, context, namers, config.label or self.kind)


@implementer(IPlugin, IProtocolPlugin)
class HttpsRedirectProtocolPlugin:
    """
    C{protocol: httpsRedirect}: answer plain HTTP with a redirect to HTTPS.
    """

    kind = "httpsRedirect"
    configType = HttpsRedirectConfig
    defaultPort = 8080

    def newRouter(self, config: HttpsRedirectConfig, context: Any, namers: Any) -> Any:
        from linkerpy.protocol.tcp.redirect import HttpsRedirectRouter

        return HttpsRedirectRouter(config, context, config.label or self.kind)


@implementer(IPlugin, IIdentifierPlugin)
class SniIdentifierPlugin:
    """
    C{io.l5d.tls.sni}: name TCP connections C{<dstPrefix>/<TLS server name>}.
    """

    kind = "io.l5d.tls.sni"
    configType = SniIdentifierConfig
    protocols = frozenset({"tcp"})

    def newIdentifier(self, config: SniIdentifierConfig, prefix: Path, context: Any, protocol: str = "tcp") -> Any:
        from linkerpy.protocol.tcp.identifiers import SniIdentifier

        return SniIdentifier(prefix, config.defaultDst)


tcpProtocol = TcpProtocolPlugin()
httpsRedirectProtocol = HttpsRedirectProtocolPlugin()
sniIdentifier = SniIdentifierPlugin()
