# -*- test-case-name: tests.test_mesh_config -*-
"""
Configuration of the three C{io.l5d.mesh} kinds: namerd's interface, and
the router's interpreter and policy source.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import attrs

from linkerpy.config import checks
from linkerpy.config.model import SocketOptions
from linkerpy.config.structure import Configured, setting
from linkerpy.interfaces import ITransformerPlugin
from linkerpy.namerd.plugins import NamerdAddress, RetryConfig
from linkerpy.naming.path import Path
from linkerpy.tls.config import ClientTlsConfig, ServerTlsConfig

__all__ = ["MeshAddress", "MeshInterfaceConfig", "MeshInterpreterConfig", "MeshPolicyConfig", "checkRoot"]


class MeshAddress(NamerdAddress):
    """
    Where namerd's mesh interface listens: C{/$/inet/<host>/<port>} or
    C{<host>:<port>}.
    """

    __slots__ = ()

    @classmethod
    def __structure__(cls, raw: Any) -> "MeshAddress":
        try:
            parsed = NamerdAddress.__structure__(raw)
        except ValueError:
            raise ValueError(f"expected an address such as /$/inet/127.0.0.1/4321 or 127.0.0.1:4321, got {raw!r}")
        return cls(parsed.host, parsed.port)

    @property
    def authority(self) -> bytes:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}".encode("ascii")

    def __repr__(self) -> str:
        return f"MeshAddress({self.host!r}, {self.port})"


def checkRoot(root: Path) -> Optional[str]:
    """
    A root names one namespace: exactly one valid namespace element.
    """
    from linkerpy.namerd.errors import InvalidNamespace, checkNamespace

    if len(root) != 1:
        return f"expected a root of exactly one element naming a namespace, such as /default, got {root.show}"
    try:
        checkNamespace(root.elems[0].decode("utf-8"))
    except (UnicodeDecodeError, InvalidNamespace) as e:
        return str(e)
    return None


@attrs.frozen
class MeshInterfaceConfig:
    """
    C{io.l5d.mesh}: the gRPC mesh API (Linkerd 1's C{io.linkerd.mesh}
    Interpreter, Resolver, Delegator and Codec services, plus linkerpy's
    Policy service) over HTTP/2.
    """

    ip: str = setting("127.0.0.1", check=checks.ipAddress, doc="listen address")
    port: int = setting(4321, check=checks.port, doc="listen port (0 = ephemeral)")
    socketOptions: Optional[SocketOptions] = setting(None)
    tls: Optional[ServerTlsConfig] = setting(None, doc="serve TLS (ALPN h2)")
    requestTimeoutMs: int = setting(10000, check=checks.positive, doc="how long a unary call waits for an answer")
    maxMessageKB: int = setting(4096, check=checks.positive, doc="larger request messages get RESOURCE_EXHAUSTED")
    maxStreams: int = setting(10000, check=checks.positive, doc="open streaming calls beyond this get RESOURCE_EXHAUSTED")
    maxConcurrentStreamsPerConnection: int = setting(
        10000, check=checks.positive, doc="SETTINGS_MAX_CONCURRENT_STREAMS (a router opens one stream per name and id)"
    )
    initialStreamWindowBytes: int = setting(65535, check=checks.positive, doc="per-stream receive window")


@attrs.frozen
class MeshInterpreterConfig:
    """
    Binds names through namerd's gRPC mesh API: bound trees and replicas
    are streamed, and the last good answers are kept while namerd is away.
    """

    dst: MeshAddress = setting(doc="namerd's io.l5d.mesh interface: /$/inet/<host>/<port> or host:port")
    root: Path = setting(Path("default"), check=checkRoot, doc="the namespace, as a one-element path")
    retry: RetryConfig = setting(attrs.Factory(RetryConfig), doc="reconnection backoff")
    tls: Optional[ClientTlsConfig] = setting(None, doc="TLS to namerd (ALPN h2)")
    connectTimeoutMs: int = setting(5000, check=checks.positive, doc="connect (and TLS handshake) timeout")
    initialStreamWindowSizeKB: int = setting(1024, check=checks.positive, doc="per-stream receive window")
    transformers: Tuple[Configured, ...] = setting((), plugin=ITransformerPlugin, doc="applied to bound trees, in order")


@attrs.frozen
class MeshPolicyConfig:
    """
    Service or client policy streamed from namerd's gRPC mesh API (the
    Policy service).
    """

    dst: MeshAddress = setting(doc="namerd's io.l5d.mesh interface: /$/inet/<host>/<port> or host:port")
    root: Path = setting(Path("default"), check=checkRoot, doc="the policy namespace, as a one-element path")
    retry: RetryConfig = setting(attrs.Factory(RetryConfig), doc="reconnection backoff")
    tls: Optional[ClientTlsConfig] = setting(None, doc="TLS to namerd (ALPN h2)")
    connectTimeoutMs: int = setting(5000, check=checks.positive, doc="connect (and TLS handshake) timeout")
