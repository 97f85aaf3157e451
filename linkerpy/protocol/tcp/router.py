# -*- test-case-name: tests.test_tcp_router -*-
"""
The C{protocol: tcp} router: its servers and the routing core they share.

Everything that can be checked or built before a connection arrives is
done when the router is built: server certificates are loaded (so
C{--check} reports bad files), client TLS files of statically configured
client policies are read, identifiers are made per server.
"""

from __future__ import annotations

import random
from typing import Any, Dict, List, Optional, Sequence, Tuple

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.logger import Logger
from zope.interface import implementer

from linkerpy.interfaces import IRouter
from linkerpy.protocol.tcp.adapter import TcpProtocolAdapter
from linkerpy.protocol.tcp.identifiers import FixedIdentifier
from linkerpy.protocol.tcp.server import ServerSettings, TcpServerFactory
from linkerpy.router.routing import RoutingCore

log = Logger()


@implementer(IRouter)
class TcpRouter:
    """
    A running C{protocol: tcp} router.
    """

    def __init__(self, config: Any, context: Any, namers: Sequence[Tuple[Any, Any]], label: str) -> None:
        self.config = config
        self.label = label
        self.context = context
        self.reactor = context.reactor
        self.metrics = context.metrics
        self.random = random.Random()
        from linkerpy.tls.client import ClientTLSCreators

        self.tlsCreators = ClientTLSCreators(self.reactor)
        self.adapter = TcpProtocolAdapter(self.reactor, self.tlsCreators)
        self.core = RoutingCore(label, config, context, namers, self.adapter, rng=self.random)
        self._prepareClientTLS(context.configPath)
        self.identifiers = [
            identifier.plugin.newIdentifier(identifier.config, config.dstPrefix, context.child(identifier.path), "tcp")
            for identifier in config.identifier
        ]
        self.serverTLS: Dict[int, Any] = {}
        self.settings: List[ServerSettings] = []
        for i, server in enumerate(config.servers):
            tls = None
            if server.tls is not None:
                from linkerpy.tls.server import ServerTLS

                tls = self.serverTLS[i] = ServerTLS(
                    server.tls,
                    self.reactor,
                    f"{context.configPath}.servers[{i}].tls",
                    metrics=self.metrics.scope("tls", str(i)),
                )
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
                    noDelay=server.socketOptions.noDelay if server.socketOptions is not None else True,
                    keepAlive=server.socketOptions.keepAlive if server.socketOptions is not None else False,
                )
            )
        self._service = TcpRouterService(self)

    def _prepareClientTLS(self, configPath: str) -> None:
        """
        Read the TLS files of the client policies known now, so that a bad
        file is a start-up error rather than a failed connection.
        """
        entries = self.core.clientEntries.sample()
        if not isinstance(entries, (tuple, list)):
            return  # not known yet (a control plane): checked per connection
        from linkerpy.config.errors import ConfigError

        problems = []
        for entry in entries:
            tls = entry.values.get("tls")
            if tls is None or not tls.enabled:
                continue
            try:
                self.tlsCreators.prepare(tls, f"{entry.origin or configPath + '.client'}.tls")
            except ConfigError as e:
                problems.extend(e.problems)
        if problems:
            raise ConfigError(problems)

    # IRouter

    def service(self) -> Any:
        return self._service

    def interpreter(self) -> Any:
        return self.core.interpreter

    def baseDtab(self) -> Any:
        return self.core.baseDtab

    def adminResources(self) -> Dict[str, Any]:
        return {}

    def drain(self, graceSeconds: float) -> Deferred:
        return self._service.drain(graceSeconds)

    def policyFor(self, path: Any, scope: str = "service") -> Dict[str, Any]:
        """
        The effective service (or client) policy for a name, for
        C{/admin/policy.json}.
        """
        return self.core.describePolicy(path, scope)


class TcpRouterService(MultiService):
    """
    Opens the router's servers (its children reload TLS certificates);
    drains them on stop.
    """

    def __init__(self, router: TcpRouter) -> None:
        super().__init__()
        self.router = router
        for tls in router.serverTLS.values():
            tls.setServiceParent(self)
        self.ports: List[Any] = []
        self.factories: List[TcpServerFactory] = []
        self._draining: Optional[Deferred] = None
        self._sweeper: Any = None

    def startService(self) -> None:
        super().startService()
        from twisted.internet.task import LoopingCall

        router = self.router
        for i, server in enumerate(router.config.servers):
            self.listen(i, server)
        self._sweeper = LoopingCall(router.core.expireIdle)
        self._sweeper.clock = router.reactor
        self._sweeper.start(min(60.0, router.core.idleTtl / 2.0), now=False)

    def listen(self, index: int, server: Any) -> None:
        router = self.router
        settings = router.settings[index]
        factory = TcpServerFactory(router.core, settings, router.reactor, name=f"{router.label}/{index}")
        wrapped: Any = factory
        if settings.tls is not None:
            from linkerpy.tls.server import wrapServerFactory

            wrapped = wrapServerFactory(factory, settings.tls)
        port = router.reactor.listenTCP(server.port, wrapped, interface=server.ip, backlog=_backlog(server))
        address = port.getHost()
        factory.name = f"{router.label} {address.host}:{address.port}"
        # No connection can be accepted before this method returns.
        factory.setMetrics(router.metrics.scope("server", server.label or f"{address.host}/{address.port}"))
        self.ports.append(port)
        self.factories.append(factory)
        mode = "tls" if settings.tls is not None else ("sni passthrough" if settings.readHello else "plain")
        log.info(
            "router {label} listening on {host}:{port} ({mode})",
            label=router.label,
            host=address.host,
            port=address.port,
            mode=mode,
        )

    def drain(self, graceSeconds: float) -> Deferred:
        if self._draining is not None:
            return self._draining
        stops = [succeed(port.stopListening()) for port in self.ports]
        drains = [factory.drain(graceSeconds) for factory in self.factories]
        self._draining = DeferredList(stops + drains, consumeErrors=True)
        return self._draining

    def stopService(self) -> Deferred:
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        d = self.drain(self.router.config.bindingTimeoutMs / 1000.0)

        def closed(_: Any) -> Any:
            self.router.core.close()
            return MultiService.stopService(self)

        return d.addBoth(closed)


def _backlog(server: Any) -> int:
    options = server.socketOptions
    if options is not None and getattr(options, "backlog", None):
        return int(options.backlog)
    return 1024


__all__ = ["TcpRouter", "TcpRouterService"]
