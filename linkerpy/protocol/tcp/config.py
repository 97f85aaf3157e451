# -*- test-case-name: tests.test_tcp_config -*-
"""
Configuration of C{protocol: tcp} routers, in the spirit of linkerd-tcp:
each server either names its connections with a fixed C{dstName} or leaves
naming to the router's identifier (C{io.l5d.tls.sni}); C{tls} on a server
terminates TLS; C{client.tls} originates it.
"""

from __future__ import annotations

from typing import Iterator, Optional, Tuple

import attrs

from linkerpy.config import checks
from linkerpy.config.model import SocketOptions
from linkerpy.config.structure import Configured, setting
from linkerpy.interfaces import IFailureAccrualPlugin, IIdentifierPlugin, ILoadBalancerPlugin, IPolicySourcePlugin
from linkerpy.naming.path import Path
from linkerpy.router.config import RouterConfig
from linkerpy.tls.config import ClientTlsConfig, ServerTlsConfig

#: The default listening port of TCP servers: the first port of Linkerd's
#: 414x family (http 4140, mux 4141, h2 4142, thriftmux 4144) that no
#: Linkerd 1 protocol uses.
DEFAULT_TCP_PORT = 4143

#: Default upstream connect timeout (ms), TCP connect plus TLS handshake.
DEFAULT_CONNECT_TIMEOUT_MS = 5000

#: Default idle timeout (ms): a connection with no byte either way for an
#: hour is closed (Envoy's tcp_proxy default).
DEFAULT_IDLE_TIMEOUT_MS = 3600000

#: Default C{servers[].maxConnections}, as for HTTP servers: each relayed
#: connection holds two file descriptors.
DEFAULT_MAX_CONNECTIONS = 10000

#: Default bound on receiving the ClientHello (passthrough) or completing the
#: TLS handshake (termination).
DEFAULT_HANDSHAKE_TIMEOUT_MS = 10000


@attrs.frozen(kw_only=True)
class TcpServerConfig:
    """
    One listening address of a TCP router.
    """

    port: int = setting(DEFAULT_TCP_PORT, check=checks.port, doc="listen port (0 = ephemeral)")
    ip: str = setting("127.0.0.1", check=checks.ipAddress, doc="listen address; 0.0.0.0 for all")
    label: Optional[str] = setting(None, doc="name in metrics (default: ip/port)")
    dstName: Optional[Path] = setting(
        None, doc="the name every connection gets (e.g. /svc/redis); default: the router's identifier names it"
    )
    tls: Optional[ServerTlsConfig] = setting(None, doc="terminate TLS and route the decrypted bytes")
    connectTimeoutMs: Optional[int] = setting(
        None, check=checks.positive, doc="upstream connect (and TLS handshake) timeout; client.connectTimeoutMs wins; default 5000"
    )
    idleTimeoutMs: int = setting(
        DEFAULT_IDLE_TIMEOUT_MS, check=checks.nonNegative, doc="close a connection with no traffic either way for this long (0 = never)"
    )
    handshakeTimeoutMs: int = setting(
        DEFAULT_HANDSHAKE_TIMEOUT_MS,
        check=checks.positive,
        doc="the ClientHello (passthrough) or the whole TLS handshake (termination) must arrive within this",
    )
    maxConnections: Optional[int] = setting(
        DEFAULT_MAX_CONNECTIONS, check=checks.positive, doc="connections beyond this are closed at once (null: unlimited)"
    )
    socketOptions: Optional[SocketOptions] = setting(None)


@attrs.frozen
class TcpClientCore:
    """
    The core C{client:} keys of TCP routers (besides those of policy modules
    such as C{requeueBudget}).
    """

    loadBalancer: Optional[Configured] = setting(None, plugin=ILoadBalancerPlugin, doc="default p2c (least connections)")
    failureAccrual: Optional[Configured] = setting(
        None, plugin=IFailureAccrualPlugin, doc="default io.l5d.consecutiveFailures, 5 failures"
    )
    connectTimeoutMs: Optional[int] = setting(
        None, check=checks.positive, doc="connect plus TLS handshake timeout (default: the server's, else 5000)"
    )
    tls: Optional[ClientTlsConfig] = setting(None, doc="originate TLS to matching clients")
    failFast: Optional[bool] = setting(None, doc="accepted for Linkerd compatibility")


@attrs.frozen
class TcpServiceCore:
    """
    The core C{service:} keys of TCP routers: none yet (TCP connections are
    not classified or retried; totalTimeoutMs and retries do not apply).
    """


@attrs.frozen(kw_only=True)
class TcpRouterConfig(RouterConfig):
    """
    A C{protocol: tcp} router.
    """

    servers: Tuple[TcpServerConfig, ...] = setting(doc="listening addresses")
    identifier: Tuple[Configured, ...] = setting(
        (),
        plugin=IIdentifierPlugin,
        oneOrMany=True,
        doc="names connections of servers without dstName (io.l5d.tls.sni)",
    )
    service: Configured = setting(
        plugin=IPolicySourcePlugin,
        pluginArgs={"scope": "service", "protocol": "tcp"},
        rawDefault={"kind": "io.l5d.global"},
        defaultKind="io.l5d.global",
        doc="per-service policy",
    )
    client: Configured = setting(
        plugin=IPolicySourcePlugin,
        pluginArgs={"scope": "client", "protocol": "tcp"},
        rawDefault={"kind": "io.l5d.global"},
        defaultKind="io.l5d.global",
        doc="per-client policy (loadBalancer, failureAccrual, connectTimeoutMs, tls, requeueBudget)",
    )

    def validateConfig(self) -> Iterator[Tuple[str, str]]:
        if not self.servers:
            yield "servers", "a router needs at least one server"
        for i, identifier in enumerate(self.identifier):
            protocols = getattr(identifier.plugin, "protocols", None)
            if protocols is not None and "tcp" not in protocols:
                yield f"identifier[{i}].kind", f"identifier {identifier.kind!r} does not apply to tcp routers"
        if not self.identifier:
            for i, server in enumerate(self.servers):
                if server.dstName is None:
                    yield (
                        f"servers[{i}].dstName",
                        "missing dstName: a server without dstName needs a router identifier "
                        "(e.g. identifier: {kind: io.l5d.tls.sni})",
                    )


@attrs.frozen
class SniIdentifierConfig:
    """
    C{io.l5d.tls.sni}: name a connection C{<dstPrefix>/<server name>}.
    """

    defaultDst: Optional[Path] = setting(
        None, doc="the name of connections whose ClientHello has no server name; default: close them"
    )


@attrs.frozen(kw_only=True)
class RedirectServerConfig:
    """
    One listening address of an C{httpsRedirect} router.
    """

    port: int = setting(8080, check=checks.port, doc="listen port (0 = ephemeral)")
    ip: str = setting("127.0.0.1", check=checks.ipAddress, doc="listen address; 0.0.0.0 for all")
    label: Optional[str] = setting(None, doc="name in metrics (default: ip/port)")
    maxConnections: Optional[int] = setting(
        DEFAULT_MAX_CONNECTIONS, check=checks.positive, doc="connections beyond this are closed at once (null: unlimited)"
    )
    socketOptions: Optional[SocketOptions] = setting(None)


def _redirectStatus(value: int) -> Optional[str]:
    if value not in (301, 302, 307, 308):
        return f"expected a redirect status (301, 302, 307 or 308), got {value}"
    return None


@attrs.frozen(kw_only=True)
class HttpsRedirectConfig:
    """
    A C{protocol: httpsRedirect} router: answers every HTTP request with a
    redirect to the same host and target over HTTPS.
    """

    label: Optional[str] = setting(None, doc="router name in metrics and admin (default: httpsRedirect)")
    servers: Tuple[RedirectServerConfig, ...] = setting(doc="listening addresses")
    httpsPort: int = setting(443, check=checks.port, doc="port written in Location (left out when 443)")
    status: int = setting(308, check=_redirectStatus, doc="301, 302, 307 or 308")
    maxHeadersKB: int = setting(8, check=checks.positive, doc="largest request header block (431 beyond)")
    requestHeadTimeoutMs: int = setting(10000, check=checks.positive, doc="a request head must arrive within this (408)")

    def validateConfig(self) -> Iterator[Tuple[str, str]]:
        if not self.servers:
            yield "servers", "a router needs at least one server"
