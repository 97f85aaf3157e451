# -*- test-case-name: tests.test_linker -*-
"""
The running router process: namers, routers, telemeters and the admin
server built from a L{LinkerConfig}, as one C{MultiService}.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.logger import Logger

from linkerpy.admin.resources import (
    JSONResource,
    MetricsJSONResource,
    PolicyResource,
    ShutdownResource,
    TextResource,
    endpointIndex,
)
from linkerpy.admin.server import AdminRoot, AdminSite
from linkerpy.config.model import LinkerConfig, routerLabel
from linkerpy.config.structure import Configured, unstructure
from linkerpy.net import listenTCP
from linkerpy.plugins.context import BuildContext
from linkerpy.telemetry.metrics import MetricsTree

log = Logger()


def namerPrefix(namer: Configured) -> Any:
    """
    The path a configured namer serves: C{/#} followed by its C{prefix}
    (default C{/<kind>}).
    """
    from linkerpy.naming import Path

    prefix = getattr(namer.config, "prefix", None)
    if prefix is None:
        prefix = Path.read("/" + namer.kind)
    return Path.read("/#") + prefix


class Linker(MultiService):
    """
    Everything one C{twistd linkerpy} process runs.

    @ivar config: the L{LinkerConfig}.
    @ivar metrics: the root of the metrics tree.
    @ivar routers: the L{linkerpy.interfaces.IRouter}s, in config order.
    @ivar namers: C{[(prefix Path, INamer)]} in config order.
    """

    def __init__(self, config: LinkerConfig, registry: Any, reactor: Any, configPath: Optional[str] = None):
        super().__init__()
        self.config = config
        self.registry = registry
        self.reactor = reactor
        self.configPath = configPath
        self.metrics = MetricsTree()
        self.stopping = False
        context = BuildContext(reactor=reactor, metrics=self.metrics, registry=registry)
        self.namers: List[Tuple[Any, Any]] = []
        for i, namer in enumerate(config.namers):
            ctx = context.child(f"namers[{i}]", "namer", namerPrefix(namer).show)
            self.namers.append((namerPrefix(namer), namer.plugin.newNamer(namer.config, ctx)))
        self.routers: List[Any] = []
        for i, router in enumerate(config.routers):
            label = routerLabel(router)
            ctx = context.child(f"routers[{i}]", "rt", label)
            built = router.plugin.newRouter(router.config, ctx, self.namers)
            self.routers.append(built)
            built.service().setServiceParent(self)
        self.telemeters = []
        for i, telemeter in enumerate(config.telemetry):
            ctx = context.child(f"telemetry[{i}]")
            built = telemeter.plugin.newTelemeter(telemeter.config, ctx)
            self.telemeters.append(built)
            svc = built.service()
            if svc is not None:
                svc.setServiceParent(self)
        self.admin = self.buildAdmin()
        self.adminService = AdminService(self)
        self.adminService.setServiceParent(self)

    # -- admin -------------------------------------------------------------------

    def buildAdmin(self) -> AdminRoot:
        token = self.config.admin.auth.resolve() if self.config.admin.auth else None
        root = AdminRoot(self.config.admin, token)
        root.mount("/admin/ping", TextResource("pong"))
        configJSON = unstructure(self.config)
        root.mount("/config.json", JSONResource(lambda: configJSON))
        metrics = MetricsJSONResource(lambda: self.metrics)
        root.mount("/admin/metrics.json", metrics)
        root.mount("/metrics.json", metrics)
        root.mount("/admin/shutdown", ShutdownResource(self.shutdown, self.reactor))
        root.mount("/admin/policy.json", PolicyResource(self.routerByLabel))
        for path, resource in self.namingResources().items():
            root.mount(path, resource)
        for router in self.routers:
            for path, resource in router.adminResources().items():
                root.mount(path, resource)
        for telemeter in self.telemeters:
            for path, resource in telemeter.adminResources().items():
                root.mount(path, resource)
        index = TextResource("")
        root.mount("/admin", index)
        root.mount("/admin/index.txt", index)
        index.text = endpointIndex({p: None for p in root.paths()})
        return root

    def namingResources(self) -> Dict[str, Any]:
        try:
            from linkerpy.admin.naming import namingResources
        except ImportError:  # pragma: no cover - naming admin not installed
            return {}
        return namingResources(self.lookupRouter, self.namers, clock=self.reactor)  # type: ignore[no-any-return]

    def lookupRouter(self, label: Optional[str]) -> Optional[Tuple[Any, Any]]:
        """
        The interpreter and base dtab of the router with C{label} (the first
        router when C{label} is C{None}).
        """
        for router in self.routers:
            if label is None or router.label == label:
                return router.interpreter(), router.baseDtab()
        return None

    def routerByLabel(self, label: Optional[str]) -> Any:
        """
        The router with C{label}, or the first router for C{None}.
        """
        for router in self.routers:
            if label is None or router.label == label:
                return router
        return None

    def adminSite(self) -> AdminSite:
        return AdminSite(self.admin, self.config.admin.maxRequestBodyKB * 1024, reactor=self.reactor)

    # -- lifecycle ---------------------------------------------------------------

    def shutdown(self) -> Deferred:
        """
        Graceful shutdown: drain every router for up to
        C{admin.shutdownGraceMs}, then stop the reactor.
        """
        if self.stopping:
            return succeed(None)
        self.stopping = True
        grace = self.config.admin.shutdownGraceMs / 1000.0
        log.info("shutting down: draining routers for up to {grace}s", grace=grace)
        drains = [router.drain(grace) for router in self.routers]
        d = DeferredList(drains, consumeErrors=True)

        def stop(_: Any) -> None:
            if self.reactor.running:
                self.reactor.stop()

        d.addBoth(stop)
        return d

    def stopService(self) -> Deferred:
        # Reached on SIGTERM/reactor.stop(): drain (bounded) before the
        # listening services are torn down.
        grace = self.config.admin.shutdownGraceMs / 1000.0
        drains = [router.drain(grace) for router in self.routers]
        d = DeferredList(drains, consumeErrors=True)
        d.addBoth(lambda _: super(Linker, self).stopService())
        return d


class AdminService(Service):
    """
    Listens for the admin server and logs the bound address.
    """

    def __init__(self, linker: Linker):
        self.linker = linker
        self.port: Any = None
        self.tls: Any = None
        if linker.config.admin.tls is not None:
            from linkerpy.tls.server import ServerTLS

            self.tls = ServerTLS(linker.config.admin.tls, linker.reactor, "admin.tls", alpn=[b"http/1.1"])

    def startService(self) -> None:
        super().startService()
        admin = self.linker.config.admin
        site = self.linker.adminSite()
        factory: Any = site
        if self.tls is not None:
            from linkerpy.tls.server import wrapServerFactory

            self.tls.startService()
            factory = wrapServerFactory(site, self.tls)
        self.port = listenTCP(self.linker.reactor, admin.port, factory, interface=admin.ip, options=admin.socketOptions)
        address = self.port.getHost()
        log.info("admin listening on {host}:{port}", host=address.host, port=address.port)

    def stopService(self) -> Any:
        super().stopService()
        if self.tls is not None and self.tls.running:
            self.tls.stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None


def dumpConfig(config: LinkerConfig) -> str:
    return json.dumps(unstructure(config), indent=2)
