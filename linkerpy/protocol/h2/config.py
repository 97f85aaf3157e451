# -*- test-case-name: tests.test_h2_router -*-
"""
Configuration of C{protocol: h2} routers: Linkerd 1's HTTP/2 router keys,
server flow-control and abuse limits, and the h2 service and client core
keys (C{classificationTimeoutMs}, C{retryBufferSize}, window sizes...).
"""

from __future__ import annotations

from typing import Iterator, Optional, Tuple

import attrs

from linkerpy.config import checks
from linkerpy.config.model import SocketOptions
from linkerpy.config.structure import Configured, setting
from linkerpy.interfaces import (
    IFailureAccrualPlugin,
    IIdentifierPlugin,
    ILoadBalancerPlugin,
    IPolicySourcePlugin,
    IResponseClassifierPlugin,
)
from linkerpy.router.config import RouterConfig, ServerConfig, SessionConfig
from linkerpy.tls.config import ClientTlsConfig

#: The smallest and largest SETTINGS_MAX_FRAME_SIZE (RFC 9113 section 6.5.2).
MIN_FRAME = 16384
MAX_FRAME = 16777215
#: The largest flow-control window.
MAX_WINDOW = 2**31 - 1

_frameSize = checks.between(MIN_FRAME, MAX_FRAME)
_window = checks.between(1, MAX_WINDOW)
_ratio = checks.between(0.0, 1.0)


@attrs.frozen(kw_only=True)
class H2ServerConfig(ServerConfig):
    """
    A server of an HTTP/2 router.
    """

    port: int = setting(4142, check=checks.port, doc="listen port (0 = ephemeral)")
    maxCallDepth: int = setting(10, check=checks.positive, doc="requests with more Via entries get 400 (proxy loops)")
    maxConcurrentStreamsPerConnection: int = setting(
        250, check=checks.positive, doc="SETTINGS_MAX_CONCURRENT_STREAMS advertised and enforced"
    )
    initialStreamWindowBytes: int = setting(65535, check=_window, doc="SETTINGS_INITIAL_WINDOW_SIZE (per-stream receive window)")
    connectionWindowBytes: int = setting(
        1048576, check=_window, doc="connection receive window (all streams together; HTTP/2's default is 65535)"
    )
    maxFrameBytes: int = setting(MIN_FRAME, check=_frameSize, doc="SETTINGS_MAX_FRAME_SIZE")
    maxHeaderListBytes: int = setting(65536, check=checks.positive, doc="SETTINGS_MAX_HEADER_LIST_SIZE; beyond it the connection ends")
    headerTableBytes: Optional[int] = setting(None, check=checks.nonNegative, doc="SETTINGS_HEADER_TABLE_SIZE (default 4096)")
    windowUpdateRatio: Optional[float] = setting(None, check=_ratio, doc="accepted for Linkerd compatibility")
    maxResetsPerSecond: int = setting(
        200, check=checks.positive, doc="client stream resets per second before GOAWAY ENHANCE_YOUR_CALM (rapid reset)"
    )
    maxControlFramesPerSecond: int = setting(
        500, check=checks.positive, doc="client PING/SETTINGS frames per second before GOAWAY ENHANCE_YOUR_CALM"
    )
    prefaceTimeoutMs: int = setting(10000, check=checks.positive, doc="the client preface (and TLS handshake) must arrive within this")
    keepAliveIdleTimeMs: int = setting(
        300000, check=checks.positive, doc="connections without streams close after this (serverSession.idleTimeMs wins)"
    )


@attrs.frozen
class RetryBufferSize:
    """
    C{retryBufferSize}: how much of a request and of a response is kept so
    that a request can be retried.
    """

    requestBytes: int = setting(16383, check=checks.nonNegative, doc="request data kept for retries")
    responseBytes: int = setting(16383, check=checks.nonNegative, doc="response data held while waiting to classify")


@attrs.frozen
class H2ServiceCore:
    """
    The core C{service:} keys of h2 routers (besides those of policy modules
    such as C{totalTimeoutMs} and C{retries}).
    """

    responseClassifier: Optional[Configured] = setting(
        None, plugin=IResponseClassifierPlugin, doc="default io.l5d.h2.nonRetryable5XX"
    )
    classificationTimeoutMs: Optional[int] = setting(
        None, check=checks.nonNegative, doc="how long a response is held for its stream to end before classifying (default 100)"
    )
    retryBufferSize: Optional[RetryBufferSize] = setting(None, doc="default {requestBytes: 16383, responseBytes: 16383}")


@attrs.frozen
class H2ClientCore:
    """
    The core C{client:} keys of h2 routers (besides those of policy modules
    such as C{requestAttemptTimeoutMs} and C{requeueBudget}).
    """

    loadBalancer: Optional[Configured] = setting(None, plugin=ILoadBalancerPlugin, doc="default p2c")
    failureAccrual: Optional[Configured] = setting(
        None, plugin=IFailureAccrualPlugin, doc="default io.l5d.consecutiveFailures, 5 failures"
    )
    clientSession: Optional[SessionConfig] = setting(None, doc="idleTimeMs / lifeTimeMs of upstream connections")
    connectTimeoutMs: Optional[int] = setting(None, check=checks.positive, doc="default 5000")
    socketOptions: Optional[SocketOptions] = setting(None)
    tls: Optional[ClientTlsConfig] = setting(None, doc="originate TLS (ALPN h2) to matching clients")
    forwardClientCert: Optional[bool] = setting(None, doc="send x-forwarded-client-cert (default false)")
    failFast: Optional[bool] = setting(None, doc="accepted for Linkerd compatibility")
    initialStreamWindowBytes: Optional[int] = setting(None, check=_window, doc="per-stream receive window (default 65535)")
    connectionWindowBytes: Optional[int] = setting(None, check=_window, doc="connection receive window (default 1048576)")
    maxFrameBytes: Optional[int] = setting(None, check=_frameSize, doc="SETTINGS_MAX_FRAME_SIZE (default 16384)")
    maxHeaderListBytes: Optional[int] = setting(None, check=checks.positive, doc="largest response header list (default 65536)")
    headerTableBytes: Optional[int] = setting(None, check=checks.nonNegative, doc="SETTINGS_HEADER_TABLE_SIZE (default 4096)")
    windowUpdateRatio: Optional[float] = setting(None, check=_ratio, doc="accepted for Linkerd compatibility")


@attrs.frozen(kw_only=True)
class H2RouterConfig(RouterConfig):
    """
    A C{protocol: h2} router.
    """

    servers: Tuple[H2ServerConfig, ...] = setting(doc="listening addresses")
    identifier: Tuple[Configured, ...] = setting(
        plugin=IIdentifierPlugin,
        oneOrMany=True,
        rawDefault=[{"kind": "io.l5d.header.token"}],
        doc="one identifier or a list tried in order (default io.l5d.header.token on :authority)",
    )
    service: Configured = setting(
        plugin=IPolicySourcePlugin,
        pluginArgs={"scope": "service", "protocol": "h2"},
        rawDefault={"kind": "io.l5d.global"},
        defaultKind="io.l5d.global",
        doc="per-service policy",
    )
    client: Configured = setting(
        plugin=IPolicySourcePlugin,
        pluginArgs={"scope": "client", "protocol": "h2"},
        rawDefault={"kind": "io.l5d.global"},
        defaultKind="io.l5d.global",
        doc="per-client policy",
    )
    h2AccessLog: Optional[str] = setting(None, doc="access log file (/dev/stdout works)")
    h2AccessLogFormat: Optional[str] = setting(None, doc="log line format; default: common log format")
    h2AccessLogRollPolicy: Optional[str] = setting(None, doc="accepted for Linkerd compatibility; use logrotate")
    h2AccessLogAppend: bool = setting(True)
    h2AccessLogRotateCount: int = setting(-1)
    experimental: bool = setting(False, doc="accepted for Linkerd compatibility (h2 is not experimental here)")
    maxErrResponseKB: int = setting(5, check=checks.positive, doc="router error bodies are truncated to this")

    def validateConfig(self) -> Iterator[Tuple[str, str]]:
        if not self.servers:
            yield "servers", "a router needs at least one server"
        for i, identifier in enumerate(self.identifier):
            protocols = getattr(identifier.plugin, "protocols", None)
            if protocols is not None and "h2" not in protocols:
                yield f"identifier[{i}].kind", f"identifier {identifier.kind!r} does not apply to h2 routers"
        if self.h2AccessLogFormat is not None:
            from linkerpy.protocol.http.accesslog import checkFormat

            problem = checkFormat(self.h2AccessLogFormat)
            if problem:
                yield "h2AccessLogFormat", problem
