# -*- test-case-name: tests.test_http_router -*-
"""
Configuration of C{protocol: http} routers (Linkerd 1's HTTP/1.1 router
keys, plus linkerpy's limits).

Every limit has a finite default (C{docs/security.md} lists them with the
reasoning): request line 4 KiB (414), header block 8 KiB and 100 fields
(431), request head 30 s (408), body idle 60 s (408), keep-alive idle 5 min,
10,000 connections and 2,000 requests in flight per server (503 beyond),
1,000 requests queued per endpoint pool when C{maxSize} is set, upstream
connect 5 s.  A limit set to C{null} (where allowed) is unbounded.
"""

from __future__ import annotations

from typing import Iterator, Optional, Tuple

import attrs

from linkerpy.config import checks
from linkerpy.config.model import SocketOptions
from linkerpy.config.structure import Configured, setting
from linkerpy.interfaces import IFailureAccrualPlugin, IIdentifierPlugin, ILoadBalancerPlugin, IPolicySourcePlugin, IResponseClassifierPlugin
from linkerpy.router.config import RouterConfig, ServerConfig, SessionConfig
from linkerpy.tls.config import ClientTlsConfig

#: Default C{servers[].maxConnections}: ten times the benchmark's 1,000 open
#: connections; about 2 fds each (downstream and upstream) fit a 20k-24k
#: C{ulimit -n}.
DEFAULT_MAX_CONNECTIONS = 10000
#: Default C{servers[].maxConcurrentRequests}: twice Envoy's per-cluster
#: C{max_requests} (1024); at a few thousand requests per second, more in
#: flight is queueing, better shed with a retryable 503.
DEFAULT_MAX_CONCURRENT_REQUESTS = 2000
#: Default C{hostConnectionPool.maxWaiters} (when C{hostConnectionPool} is
#: given): Envoy's C{max_pending_requests} is 1024.
DEFAULT_MAX_WAITERS = 1000


@attrs.frozen
class ForwardedLabeler:
    """
    How C{addForwardedHeader} names a party: C{ip}, C{ip:port},
    C{connectionRandom}, C{requestRandom}, C{router}, or C{static} (with
    C{label}).
    """

    kind: str = setting(
        "requestRandom",
        check=lambda v: None
        if v in ("ip", "ip:port", "connectionRandom", "requestRandom", "router", "static")
        else f"unknown labeler kind {v!r}; expected ip, ip:port, connectionRandom, requestRandom, router or static",
    )
    label: Optional[str] = setting(None, doc="for kind static")

    def validateConfig(self) -> Iterator[Tuple[str, str]]:
        if self.kind == "static" and not self.label:
            yield "label", "a static labeler needs a label"


@attrs.frozen
class AddForwardedHeader:
    """
    Add an RFC 7239 C{Forwarded} header to requests.
    """

    by: ForwardedLabeler = setting(attrs.Factory(ForwardedLabeler), doc="labels this router")
    for_: ForwardedLabeler = setting(attrs.Factory(ForwardedLabeler), key="for", doc="labels the client")


@attrs.frozen(kw_only=True)
class HttpServerConfig(ServerConfig):
    """
    A server of an HTTP/1.1 router.
    """

    port: int = setting(4140, check=checks.port, doc="listen port (0 = ephemeral)")
    addForwardedHeader: Optional[AddForwardedHeader] = setting(None, doc="add a Forwarded header ({} for defaults)")
    timestampHeader: Optional[str] = setting(None, doc="add this header with the receive time in ms since the epoch")
    maxCallDepth: int = setting(1000, check=checks.positive, doc="requests with more Via entries get 400 (proxy loops)")
    # Finite defaults for the limits the generic ServerConfig leaves unbounded
    # (see docs/security.md for how they compare with nginx, Envoy, HAProxy).
    maxConnections: Optional[int] = setting(
        DEFAULT_MAX_CONNECTIONS,
        check=checks.positive,
        doc="connections beyond this are closed as soon as accepted (null: unlimited)",
    )
    maxConcurrentRequests: Optional[int] = setting(
        DEFAULT_MAX_CONCURRENT_REQUESTS,
        check=checks.positive,
        doc="requests in flight beyond this get 503 with l5d-retryable (null: unlimited)",
    )
    requestHeadTimeoutMs: int = setting(30000, check=checks.positive, doc="a request head must arrive within this (408)")
    bodyIdleTimeoutMs: int = setting(60000, check=checks.positive, doc="a request body may pause this long")
    keepAliveIdleTimeMs: int = setting(
        300000, check=checks.positive, doc="idle keep-alive connections close after this (serverSession.idleTimeMs wins)"
    )


@attrs.frozen
class PoolConfig:
    """
    C{hostConnectionPool}: upstream connections per endpoint.
    """

    minSize: int = setting(0, check=checks.nonNegative, doc="connections kept open even when idle")
    maxSize: Optional[int] = setting(None, check=checks.positive, doc="most connections per endpoint (default unbounded)")
    idleTimeMs: Optional[int] = setting(None, check=checks.positive, doc="close pooled connections idle this long")
    maxWaiters: Optional[int] = setting(
        DEFAULT_MAX_WAITERS,
        check=checks.nonNegative,
        doc="requests queued for a connection at maxSize beyond this fail at once (503; null: unlimited)",
    )


@attrs.frozen
class HttpClientCore:
    """
    The core C{client:} keys of HTTP routers (besides those of policy
    modules such as C{requestAttemptTimeoutMs} and C{requeueBudget}).
    """

    loadBalancer: Optional[Configured] = setting(None, plugin=ILoadBalancerPlugin, doc="default p2c")
    failureAccrual: Optional[Configured] = setting(
        None, plugin=IFailureAccrualPlugin, doc="default io.l5d.consecutiveFailures, 5 failures"
    )
    hostConnectionPool: Optional[PoolConfig] = setting(None)
    clientSession: Optional[SessionConfig] = setting(None, doc="idleTimeMs / lifeTimeMs of upstream connections")
    connectTimeoutMs: Optional[int] = setting(None, check=checks.positive, doc="default 5000")
    responseIdleTimeoutMs: Optional[int] = setting(
        None,
        check=checks.nonNegative,
        doc="default 60000: an origin silent this long during an exchange gets 504 (or a cut-short response); 0 = never",
    )
    socketOptions: Optional[SocketOptions] = setting(None)
    tls: Optional[ClientTlsConfig] = setting(None, doc="originate TLS to matching clients")
    forwardClientCert: Optional[bool] = setting(None, doc="send x-forwarded-client-cert (default false)")
    failFast: Optional[bool] = setting(None, doc="accepted for Linkerd compatibility")


@attrs.frozen
class HttpServiceCore:
    """
    The core C{service:} keys of HTTP routers (besides those of policy
    modules such as C{totalTimeoutMs} and C{retries}).
    """

    responseClassifier: Optional[Configured] = setting(
        None, plugin=IResponseClassifierPlugin, doc="default io.l5d.http.nonRetryable5XX"
    )


@attrs.frozen(kw_only=True)
class HttpRouterConfig(RouterConfig):
    """
    A C{protocol: http} router.
    """

    servers: Tuple[HttpServerConfig, ...] = setting(doc="listening addresses")
    identifier: Tuple[Configured, ...] = setting(
        plugin=IIdentifierPlugin,
        oneOrMany=True,
        rawDefault=[{"kind": "io.l5d.header.token"}],
        doc="one identifier or a list tried in order",
    )
    service: Configured = setting(
        plugin=IPolicySourcePlugin,
        pluginArgs={"scope": "service", "protocol": "http"},
        rawDefault={"kind": "io.l5d.global"},
        defaultKind="io.l5d.global",
        doc="per-service policy",
    )
    client: Configured = setting(
        plugin=IPolicySourcePlugin,
        pluginArgs={"scope": "client", "protocol": "http"},
        rawDefault={"kind": "io.l5d.global"},
        defaultKind="io.l5d.global",
        doc="per-client policy",
    )
    httpAccessLog: Optional[str] = setting(None, doc="access log file (/dev/stdout works)")
    httpAccessLogFormat: Optional[str] = setting(None, doc="log line format; default: common log format")
    httpAccessLogRollPolicy: Optional[str] = setting(None, doc="accepted for Linkerd compatibility; use logrotate")
    httpAccessLogAppend: bool = setting(True)
    httpAccessLogRotateCount: int = setting(-1)
    maxHeadersKB: int = setting(8, check=checks.positive, doc="largest request header block (431 beyond)")
    maxInitialLineKB: int = setting(4, check=checks.positive, doc="longest request line (414 beyond)")
    maxHeaderCount: int = setting(100, check=checks.positive, doc="most request header fields (431 beyond)")
    maxErrResponseKB: int = setting(5120, check=checks.positive, doc="router error bodies are truncated to this")
    streamingEnabled: bool = setting(True, doc="linkerpy always streams; accepted for Linkerd compatibility")
    streamAfterContentLengthKB: int = setting(5, doc="accepted for Linkerd compatibility")
    compressionLevel: int = setting(-1, doc="accepted for Linkerd compatibility; no compression is done")
    retryBufferKB: int = setting(64, check=checks.positive, doc="request bodies up to this are kept for retries")

    def validateConfig(self) -> Iterator[Tuple[str, str]]:
        if not self.servers:
            yield "servers", "a router needs at least one server"
        for i, identifier in enumerate(self.identifier):
            protocols = getattr(identifier.plugin, "protocols", None)
            if protocols is not None and "http" not in protocols:
                yield f"identifier[{i}].kind", f"identifier {identifier.kind!r} does not apply to http routers"
