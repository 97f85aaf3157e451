# -*- test-case-name: tests.test_http_router_e2e -*-
"""
What every router protocol (HTTP/1.1, HTTP/2, TCP) shares: the
L{linkerpy.interfaces.IRouter} methods, server TLS, client TLS files read at
start-up, and the service that listens on the servers, sweeps idle routes
and drains on shutdown (its listening and draining part, L{ListeningService},
also serves the httpsRedirect router).

A protocol's router subclasses L{RouterBase} and provides
C{serverFactory(index, server)} (the plaintext protocol factory of one
server) and C{serverListening(index, server, factory, scope, address)}
(called once the port is bound, with the server's metrics scope, before any
connection can be accepted).
"""

from __future__ import annotations

import random
from typing import Any, Dict, List, Optional, Sequence

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.logger import Logger

from linkerpy.net import listenTCP

log = Logger()


class RouterBase:
    """
    The protocol-independent parts of a running router.

    @cvar protocolName: C{'http'}, C{'h2'}, C{'tcp'}.
    @cvar serverAlpn: ALPN protocols offered by TLS servers (C{None}: none).
    @ivar core: the L{linkerpy.router.routing.RoutingCore}.
    @ivar adapter: the protocol adapter (its C{tlsCreators} originate TLS).
    @ivar serverTLS: server index to L{linkerpy.tls.server.ServerTLS}.
    """

    protocolName = "?"
    serverAlpn: Optional[Sequence[bytes]] = None

    def setUp(self, config: Any, context: Any, label: str) -> None:
        self.config = config
        self.label = label
        self.context = context
        self.reactor = context.reactor
        self.metrics = context.metrics
        self.random = random.Random()
        self.serverTLS: Dict[int, Any] = {}

    def buildIdentifiers(self) -> List[Any]:
        return [
            identifier.plugin.newIdentifier(
                identifier.config, self.config.dstPrefix, self.context.child(identifier.path), self.protocolName
            )
            for identifier in self.config.identifier
        ]

    def buildServerTLS(self) -> None:
        """
        Load every server's TLS files now (a bad file is a start-up error).
        """
        for i, server in enumerate(self.config.servers):
            if server.tls is not None:
                from linkerpy.tls.server import ServerTLS

                self.serverTLS[i] = ServerTLS(
                    server.tls,
                    self.reactor,
                    f"{self.context.configPath}.servers[{i}].tls",
                    alpn=self.serverAlpn,
                    metrics=self.metrics.scope("tls", str(i)),
                )

    def prepareClientTLS(self) -> None:
        """
        Read the client TLS files of the policy known now, so a bad CA or
        client certificate is a start-up error (and C{--check} finds it).
        Policies pushed later by a control plane are checked when used.  The
        adapter's C{tlsCreators} (and with them the TLS libraries) are only
        touched when some client policy enables TLS.
        """
        from linkerpy.config.errors import ConfigError

        entries = self.core.clientEntries.sample()
        if not isinstance(entries, (tuple, list)):
            return
        problems = []
        for entry in entries:
            tls = entry.values.get("tls")
            if tls is None or not tls.enabled:
                continue
            try:
                self.adapter.tlsCreators.prepare(tls, configPath=f"{entry.origin or self.context.configPath + '.client'}.tls")
            except ConfigError as e:
                problems.extend(e.problems)
        if problems:
            raise ConfigError(problems)

    # -- IRouter ----------------------------------------------------------------

    def service(self) -> Any:
        return self._service

    def interpreter(self) -> Any:
        return self.core.interpreter

    def baseDtab(self) -> Any:
        return self.core.baseDtab

    def adminResources(self) -> Dict[str, Any]:
        """
        The interpreter's state pages (e.g. a control-plane interpreter's
        connection and last update), under C{/<label>/...}.
        """
        resources = getattr(self.core.interpreter, "adminResources", None)
        if resources is None:
            return {}
        return {f"/{self.label}{path}": resource for path, resource in resources().items()}

    def drain(self, graceSeconds: float) -> Deferred:
        return self._service.drain(graceSeconds)

    def policyFor(self, path: Any, scope: str = "service") -> Dict[str, Any]:
        """
        The effective service (or client) policy for a name, for
        C{/admin/policy.json}.
        """
        return self.core.describePolicy(path, scope)

    # -- hooks ---------------------------------------------------------------------

    def serverFactory(self, index: int, server: Any) -> Any:
        raise NotImplementedError()

    def serverListening(self, index: int, server: Any, factory: Any, scope: Any, address: Any) -> Optional[str]:
        """
        @return: an optional note for the "listening on" log line.
        """
        raise NotImplementedError()

    def closed(self) -> None:
        """
        The router stopped: release what the core does not own (access logs).
        """


class ListeningService(MultiService):
    """
    The listening ports of a router's servers and their protocol factories:
    opened one by one, drained together (ports closed, then each factory's
    C{drain}).
    """

    def __init__(self) -> None:
        super().__init__()
        self.ports: List[Any] = []
        self.factories: List[Any] = []
        self._draining: Optional[Deferred] = None

    def listenOn(self, reactor: Any, server: Any, factory: Any, wrapped: Any = None) -> Any:
        """
        Listen on C{server}'s address (with its C{socketOptions}) with
        C{wrapped} (e.g. a TLS wrapper of C{factory}) or C{factory}.

        @return: the bound address.
        """
        port = listenTCP(
            reactor, server.port, wrapped if wrapped is not None else factory,
            interface=server.ip, backlog=1024, options=server.socketOptions,
        )
        self.ports.append(port)
        self.factories.append(factory)
        return port.getHost()

    def drain(self, graceSeconds: float) -> Deferred:
        if self._draining is not None:
            return self._draining
        stops = [succeed(port.stopListening()) for port in self.ports]
        drains = [factory.drain(graceSeconds) for factory in self.factories]
        self._draining = DeferredList(stops + drains, consumeErrors=True)
        return self._draining


class RouterService(ListeningService):
    """
    Opens a router's servers (its children reload TLS certificates), sweeps
    idle routes and clients, and drains on stop.
    """

    def __init__(self, router: RouterBase) -> None:
        super().__init__()
        self.router = router
        for tls in router.serverTLS.values():
            tls.setServiceParent(self)
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
        factory = router.serverFactory(index, server)
        wrapped: Any = factory
        tls = router.serverTLS.get(index)
        if tls is not None:
            from linkerpy.tls.server import wrapServerFactory

            wrapped = wrapServerFactory(factory, tls)
        address = self.listenOn(router.reactor, server, factory, wrapped)
        scope = router.metrics.scope("server", server.label or f"{address.host}/{address.port}")
        # No connection can be accepted before this method returns.
        note = router.serverListening(index, server, factory, scope, address)
        log.info(
            "router {label} listening on {host}:{port}{note}",
            label=router.label,
            host=address.host,
            port=address.port,
            note=f" ({note})" if note else "",
        )

    def stopService(self) -> Deferred:
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        d = self.drain(self.router.config.bindingTimeoutMs / 1000.0)

        def closed(_: Any) -> Any:
            self.router.core.close()
            self.router.closed()
            return MultiService.stopService(self)

        return d.addBoth(closed)

