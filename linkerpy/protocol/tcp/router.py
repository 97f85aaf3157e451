# -*- test-case-name: tests.test_tcp_router -*-
"""
The C{protocol: tcp} router: its servers and the routing core they share.

Everything that can be checked or built before a connection arrives is
done when the router is built: server certificates are loaded (so
C{--check} reports bad files), client TLS files of statically configured
client policies are read, identifiers are made per server.
"""

from __future__ import annotations

from typing import Any, List, Sequence, Tuple

from twisted.logger import Logger
from zope.interface import implementer

from linkerpy.interfaces import IRouter
from linkerpy.protocol.tcp.adapter import TcpProtocolAdapter
from linkerpy.protocol.tcp.identifiers import FixedIdentifier
from linkerpy.protocol.tcp.server import ServerSettings, TcpServerFactory
from linkerpy.router.base import RouterBase, RouterService
from linkerpy.router.routing import RoutingCore

log = Logger()


@implementer(IRouter)
class TcpRouter(RouterBase):
    """
    A running C{protocol: tcp} router.
    """

    protocolName = "tcp"

    def __init__(self, config: Any, context: Any, namers: Sequence[Tuple[Any, Any]], label: str) -> None:
        self.setUp(config, context, label)
        from linkerpy.tls.client import ClientTLSCreators

        self.adapter = TcpProtocolAdapter(self.reactor, ClientTLSCreators(self.reactor))
        self.core = RoutingCore(label, config, context, namers, self.adapter, rng=self.random)
        self.prepareClientTLS()
        self.identifiers = self.buildIdentifiers()
        self.buildServerTLS()
        self.settings: List[ServerSettings] = []
        for i, server in enumerate(config.servers):
            tls = self.serverTLS.get(i)
            if server.dstName is not None:
                identifiers: List[Any] = [FixedIdentifier(server.dstName)]
            else:
                identifiers = self.identifiers
            readHello = tls is None and any(getattr(i, "needsServerName", False) for i in identifiers)
            self.settings.append(
                ServerSettings(
                    identifiers,
                    readHello,
                    tls,
                    server.connectTimeoutMs,
                    server.idleTimeoutMs / 1000.0 if server.idleTimeoutMs else None,
                    server.handshakeTimeoutMs / 1000.0,
                    server.maxConnections,
                )
            )
        self._service = RouterService(self)

    def serverFactory(self, index: int, server: Any) -> Any:
        return TcpServerFactory(self.core, self.settings[index], self.reactor, name=f"{self.label}/{index}")

    def serverListening(self, index: int, server: Any, factory: Any, scope: Any, address: Any) -> str:
        settings = self.settings[index]
        factory.name = f"{self.label} {address.host}:{address.port}"
        factory.setMetrics(scope)
        return "tls" if settings.tls is not None else ("sni passthrough" if settings.readHello else "plain")


__all__ = ["TcpRouter"]
