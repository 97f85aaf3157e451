# -*- test-case-name: tests.test_http_router -*-
"""
Plugin descriptors of the HTTP/1.1 router: the C{http} protocol and its
identifiers.  Import-light: runtime modules load in the factories.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs
from twisted.plugin import IPlugin
from zope.interface import implementer

from linkerpy.config import checks
from linkerpy.config.structure import setting
from linkerpy.interfaces import IIdentifierPlugin, IProtocolPlugin
from linkerpy.naming.path import Path
from linkerpy.protocol.http.config import HttpClientCore, HttpRouterConfig, HttpServiceCore


@implementer(IPlugin, IProtocolPlugin)
class HttpProtocolPlugin:
    """
    C{protocol: http}: the HTTP/1.1 router.
    """

    kind = "http"
    configType = HttpRouterConfig
    defaultPort = 4140
    serviceConfigType = HttpServiceCore
    clientConfigType = HttpClientCore

    def newRouter(self, config: HttpRouterConfig, context: Any, namers: Any) -> Any:
        from linkerpy.protocol.http.router import HttpRouter

        return HttpRouter(config, context, namers, config.label or self.kind)


@attrs.frozen
class HeaderTokenConfig:
    header: Optional[str] = setting(None, doc="the header naming the request (default Host; :authority on h2)")


@attrs.frozen
class MethodAndHostConfig:
    httpUriInDst: bool = setting(False, doc="append the URI path segments to the name")


@attrs.frozen
class PathConfig:
    segments: int = setting(1, check=checks.positive, doc="how many leading path segments name the request")
    consume: bool = setting(False, doc="remove those segments from the forwarded URI")


@attrs.frozen
class HeaderPathConfig:
    header: str = setting("l5d-name", doc="the header holding a path such as /users")


@attrs.frozen
class StaticConfig:
    path: Path = setting(doc="the name every request gets (appended to dstPrefix)")


@implementer(IPlugin, IIdentifierPlugin)
class HeaderTokenIdentifierPlugin:
    kind = "io.l5d.header.token"
    configType = HeaderTokenConfig
    protocols = frozenset({"http", "h2"})

    def newIdentifier(self, config: HeaderTokenConfig, prefix: Path, context: Any, protocol: str = "http") -> Any:
        from linkerpy.protocol.http.identifiers import HeaderTokenIdentifier

        header = config.header or (":authority" if protocol == "h2" else "Host")
        return HeaderTokenIdentifier(prefix, header)


@implementer(IPlugin, IIdentifierPlugin)
class MethodAndHostIdentifierPlugin:
    kind = "io.l5d.methodAndHost"
    configType = MethodAndHostConfig
    protocols = frozenset({"http"})

    def newIdentifier(self, config: MethodAndHostConfig, prefix: Path, context: Any, protocol: str = "http") -> Any:
        from linkerpy.protocol.http.identifiers import MethodAndHostIdentifier

        return MethodAndHostIdentifier(prefix, config.httpUriInDst)


@implementer(IPlugin, IIdentifierPlugin)
class PathIdentifierPlugin:
    kind = "io.l5d.path"
    configType = PathConfig
    protocols = frozenset({"http"})

    def newIdentifier(self, config: PathConfig, prefix: Path, context: Any, protocol: str = "http") -> Any:
        from linkerpy.protocol.http.identifiers import PathIdentifier

        return PathIdentifier(prefix, config.segments, config.consume)


@implementer(IPlugin, IIdentifierPlugin)
class HeaderPathIdentifierPlugin:
    kind = "io.l5d.header"
    configType = HeaderPathConfig
    protocols = frozenset({"http"})

    def newIdentifier(self, config: HeaderPathConfig, prefix: Path, context: Any, protocol: str = "http") -> Any:
        from linkerpy.protocol.http.identifiers import HeaderPathIdentifier

        return HeaderPathIdentifier(prefix, config.header)


@implementer(IPlugin, IIdentifierPlugin)
class StaticIdentifierPlugin:
    kind = "io.l5d.static"
    configType = StaticConfig
    protocols = frozenset({"http", "h2"})

    def newIdentifier(self, config: StaticConfig, prefix: Path, context: Any, protocol: str = "http") -> Any:
        from linkerpy.protocol.http.identifiers import StaticIdentifier

        return StaticIdentifier(prefix, config.path)


httpProtocol = HttpProtocolPlugin()
headerToken = HeaderTokenIdentifierPlugin()
methodAndHost = MethodAndHostIdentifierPlugin()
pathIdentifier = PathIdentifierPlugin()
headerPath = HeaderPathIdentifierPlugin()
staticIdentifier = StaticIdentifierPlugin()
