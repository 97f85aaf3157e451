# -*- test-case-name: tests.test_namerd_service -*-
"""
The running control plane: the store, the namers, the interfaces and the
admin server built from a L{linkerpy.namerd.config.NamerdConfig}, as one
C{MultiService}.
"""

from __future__ import annotations

from typing import Any, List, Optional, Set

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.web.server import Site

from linkerpy.admin.server import LimitedRequest
from linkerpy.net import listenTCP
from linkerpy.plugins.context import BuildContext
from linkerpy.telemetry.metrics import MetricsTree

__all__ = ["NamerdService", "HttpControllerService", "ApiSite"]

log = Logger()


class ApiSite(Site):
    """
    The API's C{Site}: bounded request bodies (413), no per-request
    logging, and a record of open connections so they can be closed on
    stop (watch streams never end by themselves).
    """

    requestFactory = LimitedRequest
    displayTracebacks = False

    def __init__(self, resource: Any, maxBodyBytes: int, reactor: Any) -> None:
        super().__init__(resource, reactor=reactor)
        self.maxBodyBytes = maxBodyBytes
        self.timeOut = 60
        self.openProtocols: Set[Any] = set()

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        if protocol is None:
            return None
        site = self
        lost = protocol.connectionLost

        def connectionLost(reason: Any) -> None:
            site.openProtocols.discard(protocol)
            lost(reason)

        protocol.connectionLost = connectionLost
        self.openProtocols.add(protocol)
        return protocol

    def closeAll(self) -> None:
        for protocol in list(self.openProtocols):
            # HTTP channels come wrapped (_GenericHTTPChannelProtocol): the
            # transport is the inner channel's.
            transport = getattr(protocol, "transport", None) or getattr(
                getattr(protocol, "_channel", None), "transport", None
            )
            if transport is not None:
                transport.abortConnection()

    def log(self, request: Any) -> None:
        pass


class HttpControllerService(Service):
    """
    Listens for C{io.l5d.httpController}.

    @ivar port: the listening port once started.
    """

    def __init__(self, config: Any, context: Any, namerd: Any) -> None:
        from linkerpy.namerd.api import NamerdAPI

        self.config = config
        self.reactor = context.reactor
        token = config.auth.resolve() if config.auth is not None else None
        self.api = NamerdAPI(
            namerd,
            self.reactor,
            token=token,
            maxWatches=config.maxWatches,
            requestTimeout=config.requestTimeoutMs / 1000.0,
            metrics=context.metrics,
        )
        self.site = ApiSite(self.api, config.maxRequestBodyKB * 1024, self.reactor)
        self.port: Any = None

    def startService(self) -> None:
        super().startService()
        self.port = listenTCP(
            self.reactor, self.config.port, self.site, interface=self.config.ip, options=self.config.socketOptions
        )
        address = self.port.getHost()
        log.info(
            "interface io.l5d.httpController listening on {host}:{port}", host=address.host, port=address.port
        )

    def stopService(self) -> Any:
        super().stopService()
        port, self.port = self.port, None
        d = port.stopListening() if port is not None else succeed(None)
        self.site.closeAll()
        return d


class NamerdService(MultiService):
    """
    Everything one C{twistd linkerpy-namerd} process runs.

    @ivar namerd: the L{linkerpy.namerd.core.Namerd}.
    @ivar metrics: the root of the metrics tree.
    """

    def __init__(self, config: Any, registry: Any, reactor: Any, configPath: Optional[str] = None) -> None:
        super().__init__()
        from linkerpy.linker import namerPrefix
        from linkerpy.namerd.core import Namerd

        self.config = config
        self.registry = registry
        self.reactor = reactor
        self.configPath = configPath
        self.metrics = MetricsTree()
        self.stopping = False
        context = BuildContext(reactor=reactor, metrics=self.metrics, registry=registry)
        storage = config.storage
        self.store = storage.plugin.newStorage(storage.config, context.child("storage", "namerd", "storage"))
        namers = []
        for i, namer in enumerate(config.namers):
            prefix = namerPrefix(namer)
            ctx = context.child(f"namers[{i}]", "namer", prefix.show)
            namers.append((prefix, namer.plugin.newNamer(namer.config, ctx)))
        self.namerd = Namerd(self.store, namers, reactor, registry, self.metrics.scope("namerd"))
        self.interfaces: List[Any] = []
        for i, iface in enumerate(config.interfaces):
            ctx = context.child(f"interfaces[{i}]", "namerd", iface.kind)
            svc = iface.plugin.newInterface(iface.config, ctx, self.namerd)
            self.interfaces.append(svc)
            svc.setServiceParent(self)
        self.telemeters: List[Any] = []
        for i, telemeter in enumerate(config.telemetry):
            built = telemeter.plugin.newTelemeter(telemeter.config, context.child(f"telemetry[{i}]"))
            self.telemeters.append(built)
            svc = built.service()
            if svc is not None:
                svc.setServiceParent(self)
        self.admin = self.buildAdmin()
        self.adminService = _AdminService(self)
        self.adminService.setServiceParent(self)

    def buildAdmin(self) -> Any:
        from linkerpy.admin.resources import (
            JSONResource,
            MetricsJSONResource,
            ShutdownResource,
            TextResource,
            endpointIndex,
        )
        from linkerpy.admin.server import AdminRoot
        from linkerpy.config.structure import unstructure
        from linkerpy.namerd.admin import DelegatorResource

        token = self.config.admin.auth.resolve() if self.config.admin.auth else None
        root = AdminRoot(self.config.admin, token)
        root.mount("/admin/ping", TextResource("pong"))
        configJSON = unstructure(self.config)
        root.mount("/config.json", JSONResource(lambda: configJSON))
        metrics = MetricsJSONResource(lambda: self.metrics)
        root.mount("/admin/metrics.json", metrics)
        root.mount("/metrics.json", metrics)
        root.mount("/admin/shutdown", ShutdownResource(self.shutdown, self.reactor))
        root.mount("/dtab/delegator.json", DelegatorResource(self.namerd, self.reactor))
        for telemeter in self.telemeters:
            for path, resource in telemeter.adminResources().items():
                root.mount(path, resource)
        index = TextResource("")
        root.mount("/admin", index)
        root.mount("/admin/index.txt", index)
        index.text = endpointIndex({p: None for p in root.paths()})
        return root

    def startService(self) -> None:
        d = self.store.start()
        d.addCallback(lambda _: log.info("storage ready: {store}", store=self.store.describe()))
        d.addErrback(lambda f: log.failure("storage failed to start", f))
        super().startService()

    def stopService(self) -> Deferred:
        d = super().stopService()
        d.addBoth(lambda _: self.store.close())
        return d

    def shutdown(self) -> Deferred:
        """
        C{/admin/shutdown}: stop the reactor (the services stop with it).
        """
        if not self.stopping:
            self.stopping = True
            if self.reactor.running:
                self.reactor.stop()
        return succeed(None)


class _AdminService(Service):
    def __init__(self, namerd: NamerdService) -> None:
        self.namerd = namerd
        self.port: Any = None

    def startService(self) -> None:
        from linkerpy.admin.server import AdminSite

        super().startService()
        admin = self.namerd.config.admin
        site = AdminSite(self.namerd.admin, admin.maxRequestBodyKB * 1024, reactor=self.namerd.reactor)
        self.port = listenTCP(self.namerd.reactor, admin.port, site, interface=admin.ip, options=admin.socketOptions)
        address = self.port.getHost()
        log.info("admin listening on {host}:{port}", host=address.host, port=address.port)

    def stopService(self) -> Any:
        super().stopService()
        port, self.port = self.port, None
        return port.stopListening() if port is not None else None
