# -*- test-case-name: tests.test_namerd_config -*-
"""
Plugin descriptors of the control plane (import-light: runtime modules load
inside the factories).

Namerd side: storage kinds C{io.l5d.inMemory}, C{io.l5d.fs},
C{io.l5d.etcd}; interface kind C{io.l5d.httpController}.

Router side: interpreter C{io.l5d.namerd.http} and policy source
C{io.l5d.namerd.http} (for C{service:} and C{client:}).
"""

from __future__ import annotations

import re
from typing import Any, Dict, Optional, Tuple

import attrs
from twisted.plugin import IPlugin
from zope.interface import implementer

from linkerpy.config import checks
from linkerpy.config.structure import Configured, setting
from linkerpy.interfaces import (
    IInterpreterPlugin,
    INamerdInterfacePlugin,
    IPolicySourcePlugin,
    IStoragePlugin,
    ITransformerPlugin,
)

__all__ = [
    "NamerdAddress",
    "RetryConfig",
    "NamerdHttpInterpreterConfig",
    "NamerdHttpPolicyConfig",
    "inMemoryStorage",
    "fsStorage",
    "etcdStorage",
    "httpController",
    "namerdHttpInterpreter",
    "namerdHttpPolicy",
]


# ---------------------------------------------------------------------------
# Namerd side


@implementer(IPlugin, IStoragePlugin)
class InMemoryStoragePlugin:
    kind = "io.l5d.inMemory"

    @property
    def configType(self) -> type:
        from linkerpy.namerd.config import InMemoryStorageConfig

        return InMemoryStorageConfig

    def newStorage(self, config: Any, context: Any) -> Any:
        from linkerpy.namerd.storage.memory import InMemoryStore

        return InMemoryStore({"dtabs": {ns: dtab.show for ns, dtab in config.namespaces.items()}})


@implementer(IPlugin, IStoragePlugin)
class FsStoragePlugin:
    kind = "io.l5d.fs"

    @property
    def configType(self) -> type:
        from linkerpy.namerd.config import FsStorageConfig

        return FsStorageConfig

    def newStorage(self, config: Any, context: Any) -> Any:
        from linkerpy.namerd.storage.fs import FsStore

        return FsStore(config.rootDir, context.reactor, config.pollIntervalMs / 1000.0)


@implementer(IPlugin, IStoragePlugin)
class EtcdStoragePlugin:
    kind = "io.l5d.etcd"

    @property
    def configType(self) -> type:
        from linkerpy.namerd.config import EtcdStorageConfig

        return EtcdStorageConfig

    def newStorage(self, config: Any, context: Any) -> Any:
        from linkerpy.namerd.storage.etcd import EtcdStore

        return EtcdStore(
            config.host,
            config.port,
            {"dtabs": config.pathPrefix, "policy": config.policyPrefix},
            context.reactor,
            metrics=context.metrics.scope("etcd"),
            backoff=(config.retryBaseMs / 1000.0, config.retryMaxMs / 1000.0),
            timeout=config.timeoutMs / 1000.0,
        )


@implementer(IPlugin, INamerdInterfacePlugin)
class HttpControllerPlugin:
    kind = "io.l5d.httpController"
    defaultPort = 4180

    @property
    def configType(self) -> type:
        from linkerpy.namerd.config import HttpControllerConfig

        return HttpControllerConfig

    def newInterface(self, config: Any, context: Any, namerd: Any) -> Any:
        from linkerpy.namerd.service import HttpControllerService

        return HttpControllerService(config, context, namerd)


# ---------------------------------------------------------------------------
# Router side

_HOSTPORT = re.compile(r"^\[?([^\[\]/]+?)\]?:(\d+)$")


class NamerdAddress:
    """
    Where namerd's HTTP API listens: C{/$/inet/<host>/<port>},
    C{<host>:<port>} or C{http://<host>:<port>}.

    (A plain value class, not an attrs one, so the structurer uses its
    C{__structure__}.)
    """

    __slots__ = ("host", "port")

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NamerdAddress) and (self.host, self.port) == (other.host, other.port)

    def __hash__(self) -> int:
        return hash((self.host, self.port))

    def __repr__(self) -> str:
        return f"NamerdAddress({self.host!r}, {self.port})"

    @classmethod
    def __structure__(cls, raw: Any) -> "NamerdAddress":
        if not isinstance(raw, str):
            raise ValueError(f"expected an address such as /$/inet/127.0.0.1/4180 or 127.0.0.1:4180, got {raw!r}")
        text = raw.strip()
        host: Optional[str] = None
        port: Optional[str] = None
        if text.startswith("/$/inet/"):
            parts = text[len("/$/inet/"):].split("/")
            if len(parts) == 2:
                host, port = parts
        else:
            if text.startswith("http://"):
                text = text[len("http://"):].rstrip("/")
            m = _HOSTPORT.match(text)
            if m:
                host, port = m.group(1), m.group(2)
        if not host or not port or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                f"expected an address such as /$/inet/127.0.0.1/4180, 127.0.0.1:4180 or http://host:4180, got {raw!r}"
            )
        return cls(host, int(port))

    def __unstructure__(self) -> str:
        return f"/$/inet/{self.host}/{self.port}"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def _namespace(value: str) -> Optional[str]:
    from linkerpy.namerd.errors import InvalidNamespace, checkNamespace

    try:
        checkNamespace(value)
    except InvalidNamespace as e:
        return str(e)
    return None


@attrs.frozen
class RetryConfig:
    """
    Reconnection backoff (Linkerd's C{retry}): jittered, growing from
    C{baseSeconds} to C{maxSeconds}.
    """

    baseSeconds: float = setting(5.0, check=checks.positive, doc="first delay before reconnecting")
    maxSeconds: float = setting(600.0, check=checks.positive, doc="longest delay before reconnecting")

    def validateConfig(self) -> Any:
        if self.maxSeconds < self.baseSeconds:
            yield "maxSeconds", "must be at least baseSeconds"


@attrs.frozen
class NamerdHttpInterpreterConfig:
    """
    Binds names through namerd's HTTP API: bound trees and addresses are
    streamed, and the last good answers are kept while namerd is away.
    """

    dst: NamerdAddress = setting(doc="namerd's httpController: /$/inet/<host>/<port> or host:port")
    namespace: str = setting("default", check=_namespace, doc="the dtab namespace")
    retry: RetryConfig = setting(attrs.Factory(RetryConfig), doc="reconnection backoff")
    transformers: Tuple[Configured, ...] = setting((), plugin=ITransformerPlugin, doc="applied to bound trees, in order")


@attrs.frozen
class NamerdHttpPolicyConfig:
    """
    Service or client policy streamed from a namerd policy namespace.
    """

    dst: NamerdAddress = setting(doc="namerd's httpController: /$/inet/<host>/<port> or host:port")
    namespace: str = setting("default", check=_namespace, doc="the policy namespace")
    retry: RetryConfig = setting(attrs.Factory(RetryConfig), doc="reconnection backoff")


@implementer(IPlugin, IInterpreterPlugin)
class NamerdHttpInterpreterPlugin:
    kind = "io.l5d.namerd.http"
    configType = NamerdHttpInterpreterConfig

    def newInterpreter(self, config: Any, context: Any, namers: Any) -> Any:
        from linkerpy.namerd.client.interpreter import NamerdHttpInterpreter

        transformers = [
            t.plugin.newTransformer(t.config, context.child(f"{context.configPath}.transformers[{i}]"))
            for i, t in enumerate(config.transformers)
        ]
        return NamerdHttpInterpreter(config, context, transformers)


_policyTypes: Dict[Tuple[str, Optional[str]], type] = {}


@implementer(IPlugin, IPolicySourcePlugin)
class NamerdHttpPolicyPlugin:
    """
    Policy streamed from a namerd policy namespace (keys C{dst},
    C{namespace}, C{retry}, as for the interpreter of the same kind); the
    document's C{service} or C{client} section gives the entries.

    C{controlPlane} marks it as a kind that cannot appear inside a policy
    document itself.
    """

    kind = "io.l5d.namerd.http"
    scopes = frozenset({"service", "client"})
    configType = NamerdHttpPolicyConfig
    controlPlane = True

    def configTypeFor(self, registry: Any, scope: str, protocol: Optional[str] = None) -> type:
        # The router's protocol travels with the config so the pushed
        # documents are structured for the right protocol.
        key = (scope, protocol)
        cls = _policyTypes.get(key)
        if cls is None:
            cls = type(f"NamerdHttpPolicyConfig_{scope}_{protocol}", (NamerdHttpPolicyConfig,), {})
            cls = attrs.frozen(cls)
            cls.scope = scope  # type: ignore[attr-defined]
            cls.protocol = protocol or "http"  # type: ignore[attr-defined]
            cls.__module__ = __name__
            _policyTypes[key] = cls
        return cls

    def newPolicySource(self, config: Any, scope: str, context: Any) -> Any:
        from linkerpy.namerd.client.policy import NamerdPolicySource

        protocol = getattr(type(config), "protocol", "http")
        return NamerdPolicySource(config, scope, protocol, context)


inMemoryStorage = InMemoryStoragePlugin()
fsStorage = FsStoragePlugin()
etcdStorage = EtcdStoragePlugin()
httpController = HttpControllerPlugin()
namerdHttpInterpreter = NamerdHttpInterpreterPlugin()
namerdHttpPolicy = NamerdHttpPolicyPlugin()
