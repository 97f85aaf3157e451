# -*- test-case-name: tests.test_config -*-
"""
The top of the configuration tree, shaped like Linkerd 1's: C{admin},
C{routers}, C{namers}, C{telemetry}, C{usage}.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Tuple

import attrs

from linkerpy.config import checks
from linkerpy.config.structure import Configured, setting
from linkerpy.interfaces import INamerPlugin, IProtocolPlugin, ITelemeterPlugin
from linkerpy.tls.config import ServerTlsConfig


@attrs.frozen
class SocketOptions:
    """
    Socket options (Linkerd's C{socketOptions}). On a server (or the admin
    server, or a control-plane interface) they apply to the listening
    socket and to every connection it accepts; on a client, to every
    upstream connection it makes (C{reuseAddr}, C{reusePort} and C{backlog}
    only mean something on a listener).
    """

    noDelay: bool = setting(True, doc="TCP_NODELAY")
    reuseAddr: bool = setting(True, doc="SO_REUSEADDR on the listening socket")
    reusePort: bool = setting(False, doc="SO_REUSEPORT on the listening socket (lets several processes share a port)")
    readTimeoutMs: Optional[int] = setting(
        None, check=checks.positive, doc="abort a connection on which nothing has been read for this long (null: never)"
    )
    writeTimeoutMs: Optional[int] = setting(
        None, check=checks.positive, doc="abort a connection whose unsent output has not moved for this long (null: never)"
    )
    keepAlive: bool = setting(False, doc="SO_KEEPALIVE")
    backlog: Optional[int] = setting(
        None, check=checks.positive, doc="listen backlog (default: 1024 on router servers, 50 on admin and control-plane servers)"
    )


@attrs.frozen
class AuthConfig:
    """
    A bearer token required on mutating admin or control-plane requests.
    """

    token: Optional[str] = setting(None, doc="the token itself")
    tokenFile: Optional[str] = setting(None, doc="a file holding the token (preferred: keeps it out of the config)")

    def validateConfig(self) -> Iterator[Tuple[str, str]]:
        if (self.token is None) == (self.tokenFile is None):
            yield "", "give exactly one of 'token' or 'tokenFile'"
        elif self.token is not None and len(self.token) < 16:
            yield "token", "a token must be at least 16 characters long"

    def resolve(self) -> str:
        """
        The token text (reading C{tokenFile}).
        """
        if self.token is not None:
            return self.token
        with open(self.tokenFile or "", encoding="utf-8") as f:
            return f.read().strip()


@attrs.frozen
class AdminSecurity:
    """
    Which admin endpoint categories are served (Linkerd's C{admin.security}).
    """

    uiEnabled: bool = setting(True, doc="dashboard, config.json, metrics, delegator")
    controlEnabled: bool = setting(True, doc="mutating endpoints such as /admin/shutdown")
    diagnosticsEnabled: bool = setting(True, doc="everything else")
    pathWhitelist: Tuple[str, ...] = setting((), doc="regexes always allowed")
    pathBlacklist: Tuple[str, ...] = setting((), doc="regexes always refused (404), beating everything")


@attrs.frozen
class AdminConfig:
    """
    The admin server.
    """

    ip: str = setting("127.0.0.1", check=checks.ipAddress, doc="listen address (loopback by default)")
    port: int = setting(9990, check=checks.port, doc="listen port")
    shutdownGraceMs: int = setting(10000, check=checks.nonNegative, doc="how long in-flight requests may take to finish on shutdown")
    socketOptions: Optional[SocketOptions] = setting(None)
    tls: Optional[ServerTlsConfig] = setting(None, doc="serve the admin over TLS")
    security: AdminSecurity = setting(attrs.Factory(AdminSecurity))
    auth: Optional[AuthConfig] = setting(None, doc="require a bearer token on mutating endpoints")
    maxRequestBodyKB: int = setting(64, check=checks.positive, doc="largest admin request body accepted")
    httpIdentifierPort: Optional[int] = setting(None, check=checks.port, doc="accepted for Linkerd compatibility; not served")
    workerThreads: int = setting(2, check=checks.positive, doc="accepted for Linkerd compatibility; no effect")


@attrs.frozen
class UsageConfig:
    """
    Linkerd's anonymous usage reporting.  linkerpy never reports usage; the
    keys are accepted so Linkerd configs load unchanged.
    """

    orgId: Optional[str] = setting(None)
    enabled: bool = setting(True)


def _serversOf(router: Configured) -> List[Tuple[int, Any]]:
    return list(enumerate(getattr(router.config, "servers", ())))


def routerLabel(router: Configured) -> str:
    """
    A router's label: its C{label} key, or its protocol name.
    """
    return getattr(router.config, "label", None) or router.kind


@attrs.frozen
class LinkerConfig:
    """
    A whole linkerpy configuration file.
    """

    routers: Tuple[Configured, ...] = setting(
        plugin=IProtocolPlugin, kindKey="protocol", doc="the routers (at least one)"
    )
    admin: AdminConfig = setting(attrs.Factory(AdminConfig))
    namers: Tuple[Configured, ...] = setting((), plugin=INamerPlugin, doc="configured namers")
    telemetry: Tuple[Configured, ...] = setting((), plugin=ITelemeterPlugin, doc="telemeters")
    usage: UsageConfig = setting(attrs.Factory(UsageConfig))
    workers: int = setting(1, check=checks.positive, doc="reactor processes sharing the listening ports")

    def validateConfig(self) -> Iterator[Tuple[str, str]]:
        if not self.routers:
            yield "routers", "no routers configured; at least one router is required"
        labels: Dict[str, int] = {}
        for i, router in enumerate(self.routers):
            label = routerLabel(router)
            if label in labels:
                yield (
                    f"routers[{i}].label",
                    f"duplicate router label {label!r} (also used by routers[{labels[label]}]); "
                    "give each router a unique label",
                )
            else:
                labels[label] = i
        bound: Dict[int, List[Tuple[str, str]]] = {}
        if self.admin.port:
            bound.setdefault(self.admin.port, []).append((self.admin.ip, "admin.port"))
        for i, router in enumerate(self.routers):
            for j, server in _serversOf(router):
                port = getattr(server, "port", None)
                ip = getattr(server, "ip", "127.0.0.1")
                if not port:
                    continue
                where = f"routers[{i}].servers[{j}].port"
                for otherIp, otherWhere in bound.get(port, []):
                    if ip == otherIp or "0.0.0.0" in (ip, otherIp) or "::" in (ip, otherIp):
                        yield where, f"{ip}:{port} conflicts with {otherWhere} ({otherIp}:{port}); two servers cannot share an address"
                        break
                bound.setdefault(port, []).append((ip, where))

    def summary(self) -> str:
        """
        One line: routers, servers, namers (printed by C{--check}).
        """
        servers = []
        for router in self.routers:
            for _, server in _serversOf(router):
                servers.append(f"{getattr(server, 'ip', '?')}:{getattr(server, 'port', '?')}")
        routers = ", ".join(f"{routerLabel(r)} ({r.kind})" for r in self.routers)
        namers = ", ".join(n.kind for n in self.namers) or "none"
        return (
            f"{len(self.routers)} router(s): {routers}; "
            f"{len(servers)} server(s): {', '.join(servers)}; "
            f"{len(self.namers)} namer(s): {namers}"
        )


def parseLinkerConfig(raw: Any, registry: Any = None, source: Optional[str] = None) -> LinkerConfig:
    """
    Structure raw config data (already parsed YAML) into a L{LinkerConfig}.

    @param registry: the plugin registry; the installed plugins by default.
    @raise linkerpy.config.errors.ConfigError: listing every problem.
    """
    from linkerpy.config.errors import ConfigError, Problem
    from linkerpy.config.structure import structure

    if registry is None:
        from linkerpy.plugins.registry import defaultRegistry

        registry = defaultRegistry()
    if raw is None:
        raise ConfigError([Problem("", "the configuration is empty; a 'routers' list is required")], source)
    if not isinstance(raw, dict):
        raise ConfigError([Problem("", "expected a mapping at the top level (admin, routers, namers, ...)")], source)
    return structure(LinkerConfig, raw, registry, source=source)  # type: ignore[no-any-return]


def loadLinkerConfig(path: str, registry: Any = None) -> LinkerConfig:
    """
    Read, parse and structure a configuration file.

    @raise linkerpy.config.errors.ConfigError: listing every problem.
    """
    from linkerpy.config.load import loadFile

    return parseLinkerConfig(loadFile(path), registry, source=path)
