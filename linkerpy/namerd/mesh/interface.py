# -*- test-case-name: tests.test_mesh_server -*-
"""
C{interfaces: [{kind: io.l5d.mesh}]}: namerd's gRPC mesh API on its own
port (4321 by default), over HTTP/2 with prior knowledge, or TLS with ALPN
C{h2} when C{tls} is configured.

At start-up it logs C{interface io.l5d.mesh listening on <ip>:<port>}.
On stop, open streams end with C{UNAVAILABLE} (so clients reconnect to
the next namerd at once) and connections are closed.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.application.service import MultiService
from twisted.internet.defer import DeferredList, succeed
from twisted.logger import Logger

from linkerpy.net import listenTCP

__all__ = ["MeshInterfaceService"]

log = Logger()

#: How long connections get to finish after GOAWAY when namerd stops.
STOP_GRACE_SECONDS = 1.0


class MeshInterfaceService(MultiService):
    """
    Listens for C{io.l5d.mesh}.

    @ivar server: the L{GrpcServer<linkerpy.namerd.mesh.server.GrpcServer>}.
    @ivar factory: the HTTP/2 server factory.
    @ivar port: the listening port once started.
    """

    kind = "io.l5d.mesh"

    def __init__(self, config: Any, context: Any, namerd: Any) -> None:
        super().__init__()
        from linkerpy.namerd.mesh.server import GrpcServer
        from linkerpy.namerd.mesh.services import MeshServices
        from linkerpy.protocol.h2.connection import H2Settings
        from linkerpy.protocol.h2.server import H2ServerFactory, ServerLimits

        self.config = config
        self.reactor = context.reactor
        self.metrics = context.metrics
        self.meshServices = MeshServices(namerd, self.reactor, config.requestTimeoutMs / 1000.0)
        self.server = GrpcServer(
            self.meshServices.methods(),
            self.reactor,
            maxMessageBytes=config.maxMessageKB * 1024,
            maxStreams=config.maxStreams,
            metrics=self.metrics,
            readTimeout=config.requestTimeoutMs / 1000.0,
        )
        noDelay = config.socketOptions.noDelay if config.socketOptions is not None else True
        settings = H2Settings(
            maxConcurrentStreams=config.maxConcurrentStreamsPerConnection,
            initialStreamWindowBytes=config.initialStreamWindowBytes,
            noDelay=noDelay,
        )
        self.factory = H2ServerFactory(
            self.server, settings, ServerLimits(), clock=self.reactor, metrics=self.metrics.scope("server")
        )
        self.tls: Optional[Any] = None
        if config.tls is not None:
            from linkerpy.tls.server import ServerTLS

            self.tls = ServerTLS(
                config.tls, self.reactor, f"{context.configPath}.tls", alpn=[b"h2"], metrics=self.metrics.scope("tls")
            )
            self.tls.setServiceParent(self)
        self.port: Any = None

    def startService(self) -> None:
        super().startService()
        factory: Any = self.factory
        if self.tls is not None:
            from linkerpy.tls.server import wrapServerFactory

            factory = wrapServerFactory(self.factory, self.tls)
        self.port = listenTCP(self.reactor, self.config.port, factory, interface=self.config.ip, options=self.config.socketOptions)
        address = self.port.getHost()
        log.info("interface io.l5d.mesh listening on {host}:{port}", host=address.host, port=address.port)

    def stopService(self) -> Any:
        port, self.port = self.port, None
        stopped = succeed(port.stopListening()) if port is not None else succeed(None)
        self.server.shutdown()
        drained = self.factory.drain(STOP_GRACE_SECONDS)
        d = DeferredList([stopped, drained], consumeErrors=True)
        d.addBoth(lambda _: MultiService.stopService(self))
        return d
