# -*- test-case-name: tests.test_namerd_config -*-
"""
Namerd's configuration file (Linkerd's Namerd shape): C{admin},
C{storage}, C{namers}, C{interfaces}, C{telemetry}; and the config classes
of the storage and interface kinds.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Tuple

import attrs

from linkerpy.config import checks
from linkerpy.config.model import AdminConfig, AuthConfig, SocketOptions
from linkerpy.config.structure import Configured, setting
from linkerpy.interfaces import INamerdInterfacePlugin, INamerPlugin, IStoragePlugin, ITelemeterPlugin
from linkerpy.naming.dtab import Dtab

__all__ = [
    "NamerdConfig",
    "InMemoryStorageConfig",
    "FsStorageConfig",
    "EtcdStorageConfig",
    "HttpControllerConfig",
    "parseNamerdConfig",
    "loadNamerdConfig",
]


def _namespaces(value: Dict[str, Any]) -> Optional[str]:
    from linkerpy.namerd.errors import InvalidNamespace, checkNamespace

    for ns in value:
        try:
            checkNamespace(ns)
        except InvalidNamespace as e:
            return str(e)
    return None


def _keyPrefix(value: str) -> Optional[str]:
    if not value.startswith("/") or value.rstrip("/") == "":
        return f"expected a key prefix starting with '/', such as '/namerd/dtabs', got {value!r}"
    return None


@attrs.frozen
class InMemoryStorageConfig:
    """
    C{io.l5d.inMemory}: dtabs kept in memory, lost on restart.
    """

    namespaces: Dict[str, Dtab] = setting(attrs.Factory(dict), check=_namespaces, doc="initial dtabs by namespace")


@attrs.frozen
class FsStorageConfig:
    """
    C{io.l5d.fs}: one file per namespace under C{rootDir} (kept across restarts).
    """

    rootDir: str = setting(doc="the directory (created if missing); relative to the working directory")
    pollIntervalMs: int = setting(1000, check=checks.positive, doc="how often to look for changes made by others")


@attrs.frozen
class EtcdStorageConfig:
    """
    C{io.l5d.etcd}: documents in etcd v3 (through its JSON gateway).
    """

    host: str = setting("localhost", doc="etcd client host")
    port: int = setting(2379, check=checks.port, doc="etcd client port")
    pathPrefix: str = setting("/namerd/dtabs", check=_keyPrefix, doc="key prefix of dtabs")
    policyPrefix: str = setting("/namerd/policy", check=_keyPrefix, doc="key prefix of policy documents")
    timeoutMs: int = setting(10000, check=checks.positive, doc="timeout of each etcd request")
    retryBaseMs: int = setting(500, check=checks.positive, doc="first delay before re-watching after a failure")
    retryMaxMs: int = setting(30000, check=checks.positive, doc="longest delay before re-watching")

    def validateConfig(self) -> Iterator[Tuple[str, str]]:
        if self.pathPrefix.rstrip("/") == self.policyPrefix.rstrip("/"):
            yield "policyPrefix", "the policy prefix must differ from pathPrefix"
        if self.retryMaxMs < self.retryBaseMs:
            yield "retryMaxMs", "must be at least retryBaseMs"


@attrs.frozen
class HttpControllerConfig:
    """
    C{io.l5d.httpController}: Namerd's HTTP API (dtabs, bind, addr,
    resolve, delegate, bound-names) plus policy documents.
    """

    ip: str = setting("127.0.0.1", check=checks.ipAddress, doc="listen address")
    port: int = setting(4180, check=checks.port, doc="listen port (0 = ephemeral)")
    socketOptions: Optional[SocketOptions] = setting(None)
    auth: Optional[AuthConfig] = setting(None, doc="require a bearer token on POST, PUT and DELETE")
    maxRequestBodyKB: int = setting(256, check=checks.positive, doc="larger request bodies get 413")
    maxWatches: int = setting(10000, check=checks.positive, doc="open watch streams beyond this get 503")
    requestTimeoutMs: int = setting(10000, check=checks.positive, doc="how long a non-watch bind/addr/delegate waits for an answer")


@attrs.frozen
class NamerdConfig:
    """
    A whole namerd configuration file.
    """

    storage: Configured = setting(plugin=IStoragePlugin, doc="where dtabs and policies are kept")
    interfaces: Tuple[Configured, ...] = setting(plugin=INamerdInterfacePlugin, doc="the APIs served (at least one)")
    admin: AdminConfig = setting(attrs.Factory(AdminConfig))
    namers: Tuple[Configured, ...] = setting((), plugin=INamerPlugin, doc="namers used to bind names")
    telemetry: Tuple[Configured, ...] = setting((), plugin=ITelemeterPlugin, doc="telemeters")

    def validateConfig(self) -> Iterator[Tuple[str, str]]:
        if not self.interfaces:
            yield "interfaces", "no interfaces configured; at least one (e.g. io.l5d.httpController) is required"
        bound: List[Tuple[str, int, str]] = []
        if self.admin.port:
            bound.append((self.admin.ip, self.admin.port, "admin.port"))
        for i, iface in enumerate(self.interfaces):
            port = getattr(iface.config, "port", None)
            ip = getattr(iface.config, "ip", "127.0.0.1")
            if not port:
                continue
            where = f"interfaces[{i}].port"
            for otherIp, otherPort, otherWhere in bound:
                if port == otherPort and (ip == otherIp or "0.0.0.0" in (ip, otherIp)):
                    yield where, f"{ip}:{port} conflicts with {otherWhere} ({otherIp}:{otherPort})"
                    break
            bound.append((ip, port, where))

    def summary(self) -> str:
        """
        One line for C{--check}.
        """
        ifaces = ", ".join(
            f"{i.kind} on {getattr(i.config, 'ip', '?')}:{getattr(i.config, 'port', '?')}" for i in self.interfaces
        )
        namers = ", ".join(n.kind for n in self.namers) or "none"
        return f"storage {self.storage.kind}; {len(self.interfaces)} interface(s): {ifaces}; namers: {namers}"


def parseNamerdConfig(raw: Any, registry: Any = None, source: Optional[str] = None) -> NamerdConfig:
    """
    Structure parsed YAML into a L{NamerdConfig}.

    @raise linkerpy.config.errors.ConfigError: listing every problem.
    """
    from linkerpy.config.errors import ConfigError, Problem
    from linkerpy.config.structure import structure

    if registry is None:
        from linkerpy.plugins.registry import defaultRegistry

        registry = defaultRegistry()
    if not isinstance(raw, dict):
        raise ConfigError([Problem("", "expected a mapping at the top level (admin, storage, namers, interfaces)")], source)
    return structure(NamerdConfig, raw, registry, source=source)  # type: ignore[no-any-return]


def loadNamerdConfig(path: str, registry: Any = None) -> NamerdConfig:
    """
    Read and structure a namerd configuration file.
    """
    from linkerpy.config.load import loadFile

    return parseNamerdConfig(loadFile(path), registry, source=path)
