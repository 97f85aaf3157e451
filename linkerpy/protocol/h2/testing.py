# -*- test-case-name: tests.test_h2_router -*-
"""
Helpers for testing HTTP/2 code: a scripted origin server, a one-call
client, and an in-process h2 router built from a raw configuration.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from twisted.internet.defer import Deferred

from linkerpy.protocol.h2.connection import H2Settings
from linkerpy.protocol.h2.headers import H2Headers
from linkerpy.protocol.h2.server import H2ServerFactory, ServerLimits
from linkerpy.protocol.http.stream import BytesBody, collect

__all__ = ["FunctionHandler", "originFactory", "requestHeaders", "fetch", "Fetched", "buildRouter"]


class FunctionHandler:
    """
    A handler calling C{fn(exchange)} for every request.
    """

    def __init__(self, fn: Callable[[Any], None]) -> None:
        self.fn = fn
        self.exchanges: List[Any] = []

    def handleRequest(self, exchange: Any) -> None:
        self.exchanges.append(exchange)
        self.fn(exchange)


def originFactory(
    clock: Any, fn: Callable[[Any], None], settings: Optional[H2Settings] = None, limits: Optional[ServerLimits] = None
) -> H2ServerFactory:
    """
    An HTTP/2 server factory answering with C{fn(exchange)}; its handler
    (a L{FunctionHandler}) records the exchanges.
    """
    return H2ServerFactory(FunctionHandler(fn), settings, limits, clock=clock)


def requestHeaders(
    path: bytes = b"/", authority: bytes = b"test", method: bytes = b"GET", extra: Sequence[Tuple[bytes, bytes]] = ()
) -> H2Headers:
    """
    A request header list.
    """
    return H2Headers(
        [(b":method", method), (b":scheme", b"http"), (b":authority", authority), (b":path", path)] + list(extra)
    )


class Fetched:
    """
    A whole response: C{status}, C{headers}, C{body} (bytes), C{trailers}.
    """

    def __init__(self, status: int, headers: H2Headers, body: bytes, trailers: Optional[H2Headers]) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.trailers = trailers

    def __repr__(self) -> str:
        return f"<Fetched {self.status} {self.headers!r} {len(self.body)} bytes trailers={self.trailers!r}>"


def fetch(target: Any, headers: H2Headers, body: Optional[bytes] = None) -> "Deferred[Fetched]":
    """
    One request through C{target} (an L{H2ClientPool<linkerpy.protocol.h2.pool.H2ClientPool>}
    or an L{H2ClientProtocol<linkerpy.protocol.h2.client.H2ClientProtocol>}),
    reading the whole response.
    """
    d = target.request(headers, BytesBody(body) if body is not None else None)

    def read(response: Any) -> Any:
        def done(data: bytes) -> Fetched:
            return Fetched(response.head.status, response.head.headers, data, response.body.trailers)

        return collect(response.body).addCallback(done)

    return d.addCallback(read)


def buildRouter(raw: Dict[str, Any], reactor: Any, registry: Any, namers: Sequence[Any] = ()) -> Any:
    """
    Structure C{raw} (one C{routers[]} entry, C{protocol: h2}) and build the
    router (not started).
    """
    from linkerpy.config.structure import structurePlugin
    from linkerpy.interfaces import IProtocolPlugin
    from linkerpy.plugins.context import BuildContext
    from linkerpy.telemetry.metrics import MetricsTree

    configured = structurePlugin(IProtocolPlugin, raw, registry, path="routers[0]", kindKey="protocol")
    label = configured.config.label or configured.kind
    metrics = MetricsTree()
    context = BuildContext(reactor=reactor, metrics=metrics, registry=registry).child("routers[0]", "rt", label)
    router = configured.plugin.newRouter(configured.config, context, list(namers))
    router.rootMetrics = metrics
    return router
