# -*- test-case-name: tests.test_edge_redirect -*-
"""
C{protocol: httpsRedirect}: a tiny router that answers every plain HTTP
request with a redirect to the same host and target over HTTPS, for edge
configurations that serve HTTPS and keep port 80 only to send browsers
there.

It reuses the HTTP/1.1 server (strict framing, head size and time limits)
and never forwards anything.  C{Location} is built from the validated
C{Host} header (its port replaced by C{httpsPort}, left out when 443) and
the validated request target; a request without a usable C{Host} gets 400.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Optional

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from linkerpy.interfaces import IRouter
from linkerpy.router.base import ListeningService

log = Logger()

#: A Host header value: a DNS name, an IPv4 address or a bracketed IPv6
#: address, with an optional port.
_HOST = re.compile(rb"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?)(?::[0-9]{1,5})?$")


def redirectLocation(host: Optional[bytes], target: bytes, httpsPort: int) -> Optional[bytes]:
    """
    The C{Location} of the HTTPS twin of a request.

    @param host: the request's C{Host} header value.
    @param target: the request target (origin-form, validated by the
        server's framing rules; C{*} becomes C{/}).
    @param httpsPort: the HTTPS port (not written when 443).
    @return: the URL, or C{None} when C{host} is missing or not a host.
    """
    if not host or len(host) > 255:
        return None
    match = _HOST.match(host)
    if match is None:
        return None
    name = match.group(1).lower().rstrip(b".")
    if not name:
        return None
    if not target.startswith(b"/"):
        target = b"/"
    port = b"" if httpsPort == 443 else b":%d" % httpsPort
    return b"https://" + name + port + target


class RedirectHandler:
    """
    The L{IHTTPHandler<linkerpy.protocol.http.interfaces.IHTTPHandler>} of
    one redirect server.
    """

    def __init__(self, httpsPort: int, status: int, scope: Any) -> None:
        self.httpsPort = httpsPort
        self.status = status
        self.redirects = scope.counter("redirects")
        self.badRequests = scope.counter("bad_requests")

    def handleRequest(self, exchange: Any) -> None:
        request = exchange.request
        if exchange.body is not None and not getattr(exchange.body, "finished", True):
            exchange.body.abort()
        location = redirectLocation(request.headers.get(b"host"), request.target, self.httpsPort)
        if location is None:
            self.badRequests.value += 1
            exchange.respondError(400, b"a valid Host header is needed to redirect to HTTPS\n")
            return
        self.redirects.value += 1
        exchange.respondError(self.status, b"", [(b"Location", location)])


@implementer(IRouter)
class HttpsRedirectRouter:
    """
    A running C{protocol: httpsRedirect} router.
    """

    def __init__(self, config: Any, context: Any, label: str) -> None:
        self.config = config
        self.label = label
        self.reactor = context.reactor
        self.metrics = context.metrics
        self._service = RedirectService(self)

    def service(self) -> Any:
        return self._service

    def interpreter(self) -> Any:
        return None

    def baseDtab(self) -> Any:
        from linkerpy.naming.dtab import Dtab

        return Dtab.empty

    def adminResources(self) -> Dict[str, Any]:
        return {}

    def drain(self, graceSeconds: float) -> Deferred:
        return self._service.drain(graceSeconds)

    def policyFor(self, path: Any, scope: str = "service") -> Dict[str, Any]:
        return {"router": self.label, "scope": scope, "name": path.show, "policy": {}, "note": "redirect only"}


class RedirectService(ListeningService):
    """
    Opens the redirect servers; drains them on stop.
    """

    def __init__(self, router: HttpsRedirectRouter) -> None:
        super().__init__()
        self.router = router

    def startService(self) -> None:
        super().startService()
        from linkerpy.protocol.http.parser import HeadLimits
        from linkerpy.protocol.http.server import HTTPServerFactory, ServerTimeouts

        router = self.router
        config = router.config
        for server in config.servers:
            factory = HTTPServerFactory(
                None,
                limits=HeadLimits(maxHeaderBytes=config.maxHeadersKB * 1024),
                timeouts=ServerTimeouts(
                    headTimeout=config.requestHeadTimeoutMs / 1000.0,
                    bodyIdleTimeout=config.requestHeadTimeoutMs / 1000.0,
                    keepAliveTimeout=config.requestHeadTimeoutMs / 1000.0,
                ),
                clock=router.reactor,
                maxConnections=server.maxConnections,
            )
            address = self.listenOn(router.reactor, server, factory)
            scope = router.metrics.scope("server", server.label or f"{address.host}/{address.port}")
            factory.setMetrics(scope)
            factory.handler = RedirectHandler(config.httpsPort, config.status, scope)
            log.info(
                "router {label} listening on {host}:{port} (redirect to https)",
                label=router.label,
                host=address.host,
                port=address.port,
            )

    def stopService(self) -> Deferred:
        d = self.drain(5.0)
        return d.addBoth(lambda _: MultiService.stopService(self))


__all__ = ["HttpsRedirectRouter", "RedirectHandler", "redirectLocation"]
