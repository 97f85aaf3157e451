# -*- test-case-name: tests.test_router_config -*-
"""
Router and server configuration keys common to every protocol (Linkerd's
C{routers[]} and C{servers[]}).  Protocols subclass these and add their own.
"""

from __future__ import annotations

from typing import Iterator, Optional, Tuple

import attrs

from linkerpy.config import checks
from linkerpy.config.model import SocketOptions
from linkerpy.config.structure import Configured, setting
from linkerpy.interfaces import IInterpreterPlugin
from linkerpy.naming.dtab import Dtab
from linkerpy.naming.path import Path
from linkerpy.tls.config import ServerTlsConfig


@attrs.frozen
class BindingCacheConfig:
    """
    Sizes of the router's caches (Linkerd's C{bindingCache}).
    """

    paths: int = setting(1000, check=checks.positive, doc="logical names kept bound")
    trees: int = setting(1000, check=checks.positive, doc="accepted for Linkerd compatibility (same as paths)")
    bounds: int = setting(1000, check=checks.positive, doc="accepted for Linkerd compatibility (same as clients)")
    clients: int = setting(1000, check=checks.positive, doc="concrete clients kept (with their pools)")
    idleTtlSecs: int = setting(600, check=checks.positive, doc="unused names and clients expire after this long")


@attrs.frozen
class SessionConfig:
    """
    Connection expiry (C{serverSession}, C{clientSession}).
    """

    idleTimeMs: Optional[int] = setting(None, check=checks.positive, doc="close a connection idle this long")
    lifeTimeMs: Optional[int] = setting(None, check=checks.positive, doc="close a connection this old (between requests)")


@attrs.frozen
class ServerConfig:
    """
    One listening address of a router.
    """

    port: int = setting(0, check=checks.port, doc="listen port (0 = ephemeral)")
    ip: str = setting("127.0.0.1", check=checks.ipAddress, doc="listen address; 0.0.0.0 for all")
    label: Optional[str] = setting(None, doc="name in metrics (default: ip/port)")
    socketOptions: Optional[SocketOptions] = setting(None)
    tls: Optional[ServerTlsConfig] = setting(None, doc="terminate TLS on this server")
    maxConcurrentRequests: Optional[int] = setting(None, check=checks.positive, doc="requests beyond this get 503")
    maxConnections: Optional[int] = setting(None, check=checks.positive, doc="connections beyond this are closed at once")
    announce: Tuple[str, ...] = setting((), doc="accepted for Linkerd compatibility; no announcers yet")
    clearContext: bool = setting(False, doc="strip inbound l5d-* context headers (for edge servers)")
    timeoutMs: Optional[int] = setting(None, check=checks.positive, doc="server-side bound on a whole request")
    serverSession: SessionConfig = setting(attrs.Factory(SessionConfig))


@attrs.frozen
class RouterConfig:
    """
    Keys common to every router protocol.
    """

    label: Optional[str] = setting(None, doc="router name in metrics and admin (default: the protocol)")
    dstPrefix: Path = setting(attrs.Factory(lambda: Path.read("/svc")), doc="prefix of identified names")
    dtab: Dtab = setting(attrs.Factory(lambda: Dtab.empty), doc="the base dtab")
    interpreter: Configured = setting(plugin=IInterpreterPlugin, rawDefault={"kind": "default"})
    bindingTimeoutMs: int = setting(10000, check=checks.positive, doc="how long a request waits for its name to bind")
    bindingCache: BindingCacheConfig = setting(attrs.Factory(BindingCacheConfig))
    originator: bool = setting(False, doc="first hop (metrics only)")

    def validateConfig(self) -> Iterator[Tuple[str, str]]:
        return iter(())
