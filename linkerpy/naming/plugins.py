# -*- test-case-name: tests.test_naming_plugins -*-
"""
Plugin descriptors for namers, interpreters and transformers.

Import-light: configuration classes and descriptors only; each factory
imports its runtime module when called.
"""

from __future__ import annotations

import weakref
from typing import Any, Iterator, List, Optional, Sequence, Tuple, Union

import attrs
from twisted.plugin import IPlugin
from zope.interface import implementer

from linkerpy.config.structure import Configured, setting
from linkerpy.interfaces import IInterpreterPlugin, INamerPlugin, ITransformerPlugin
from linkerpy.naming.path import Path

__all__ = [
    "NamerPrefix",
    "FsNamerConfig",
    "RewriteNamerConfig",
    "DnsSrvNamerConfig",
    "DnsHost",
    "DefaultInterpreterConfig",
    "FsInterpreterConfig",
    "PortTransformerConfig",
    "LocalhostTransformerConfig",
    "SpecificHostTransformerConfig",
    "PathTransformerConfig",
    "namerPrefix",
    "buildNamers",
    "buildTransformers",
    "systemNamerFor",
]


class NamerPrefix:
    """
    The C{prefix} of a namer or transformer: C{io.l5d.fs} or C{/disco} (a
    leading C{/#} or C{/%} is accepted and dropped).  Structures to a L{Path}.
    """

    @classmethod
    def __structure__(cls, raw: Any) -> Path:
        if not isinstance(raw, str) or not raw.strip():
            raise ValueError("expected a prefix such as 'io.l5d.fs' or '/disco'")
        text = raw.strip()
        if not text.startswith("/"):
            text = "/" + text
        path = Path.read(text)
        if path.elems[:1] in ((b"#",), (b"%",)):
            path = path.drop(1)
        if not path.elems:
            raise ValueError("a prefix needs at least one element")
        return path


def _transformers() -> Any:
    return setting((), plugin=ITransformerPlugin, doc="transformers applied to the bound names, in order")


def _port(value: int) -> Optional[str]:
    return None if 1 <= value <= 65535 else "expected a port between 1 and 65535"


def _positive(value: float) -> Optional[str]:
    return None if value > 0 else "expected a positive number"


# ---------------------------------------------------------------------------
# Namers


@attrs.frozen
class FsNamerConfig:
    """
    C{io.l5d.fs}: one file per service under C{rootDir}.
    """

    rootDir: str = setting(doc="the directory holding one file per service")
    prefix: Optional[NamerPrefix] = setting(None, doc="serve /#/<prefix> (default io.l5d.fs)")
    transformers: Tuple[Configured, ...] = _transformers()


@attrs.frozen
class RewriteNamerConfig:
    """
    C{io.l5d.rewrite}: rewrite C{pattern} matches into C{name}.
    """

    prefix: NamerPrefix = setting(doc="serve /#/<prefix> (required)")
    pattern: str = setting(doc="a path pattern with * and {captures}")
    name: str = setting(doc="the path to delegate to, with {captures} substituted")
    transformers: Tuple[Configured, ...] = _transformers()

    def validateConfig(self) -> Iterator[Tuple[str, str]]:
        if not self.pattern.startswith("/"):
            yield "pattern", "a pattern starts with '/'"
        if not self.name.startswith("/"):
            yield "name", "a name starts with '/'"


@attrs.frozen
class DnsHost:
    """
    A DNS server: C{host} and C{port} (53).
    """

    host: str = setting(doc="server address")
    port: int = setting(53, check=_port, doc="server port")


def _hostPort(value: Any) -> Optional[str]:
    if isinstance(value, DnsHost):
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"expected 'host:port' or {{host, port}}, got {value!r}"
    return None


@attrs.frozen
class DnsSrvNamerConfig:
    """
    C{io.l5d.dnssrv}: SRV records, refreshed periodically.
    """

    refreshIntervalSeconds: float = setting(5.0, check=_positive, doc="seconds between lookups")
    dnsHosts: Tuple[Union[DnsHost, str], ...] = setting((), doc="DNS servers (host:port or {host, port}); default resolv.conf")
    prefix: Optional[NamerPrefix] = setting(None, doc="serve /#/<prefix> (default io.l5d.dnssrv)")
    transformers: Tuple[Configured, ...] = _transformers()

    def validateConfig(self) -> Iterator[Tuple[str, str]]:
        for i, h in enumerate(self.dnsHosts):
            message = _hostPort(h)
            if message:
                yield f"dnsHosts[{i}]", message

    def servers(self) -> List[Tuple[str, int]]:
        out = []
        for h in self.dnsHosts:
            if isinstance(h, DnsHost):
                out.append((h.host, h.port))
            else:
                host, _, port = h.rpartition(":")
                out.append((host.strip("[]"), int(port)))
        return out


def namerPrefix(kind: str, config: Any) -> Path:
    """
    The full path a namer serves: C{/#} + its C{prefix} (default C{/<kind>}).
    """
    prefix = getattr(config, "prefix", None)
    if prefix is None:
        prefix = Path(kind)
    return Path(b"#") + prefix


def _wrap(namer: Any, config: Any, context: Any) -> Any:
    if not config.transformers:
        return namer
    from linkerpy.naming.transformers import transformNamer

    return transformNamer(namer, buildTransformers(config.transformers, context))


@implementer(IPlugin, INamerPlugin)
class FsNamerPlugin:
    kind = "io.l5d.fs"
    configType = FsNamerConfig

    def newNamer(self, config: FsNamerConfig, context: Any) -> Any:
        from linkerpy.naming.fs import FsNamer

        return _wrap(FsNamer(context.reactor, config.rootDir, namerPrefix(self.kind, config)), config, context)


@implementer(IPlugin, INamerPlugin)
class RewriteNamerPlugin:
    kind = "io.l5d.rewrite"
    configType = RewriteNamerConfig

    def newNamer(self, config: RewriteNamerConfig, context: Any) -> Any:
        from linkerpy.naming.rewrite import RewritingNamer

        return _wrap(RewritingNamer(config.pattern, config.name), config, context)


@implementer(IPlugin, INamerPlugin)
class DnsSrvNamerPlugin:
    kind = "io.l5d.dnssrv"
    configType = DnsSrvNamerConfig

    def newNamer(self, config: DnsSrvNamerConfig, context: Any) -> Any:
        from linkerpy.naming.dnssrv import DnsSrvNamer, newResolver

        resolver = newResolver(context.reactor, config.servers())
        namer = DnsSrvNamer(context.reactor, namerPrefix(self.kind, config), resolver, config.refreshIntervalSeconds)
        return _wrap(namer, config, context)


def buildNamers(namers: Sequence[Configured], context: Any) -> List[Tuple[Path, Any]]:
    """
    Build configured namers: C{[(full prefix, INamer)]} in declaration order.
    """
    out = []
    for i, n in enumerate(namers):
        prefix = namerPrefix(n.kind, n.config)
        ctx = context.child(f"namers[{i}]", "namer", prefix.show) if hasattr(context, "child") else context
        out.append((prefix, n.plugin.newNamer(n.config, ctx)))
    return out


# ---------------------------------------------------------------------------
# Interpreters


_systemNamers: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


def systemNamerFor(reactor: Any) -> Any:
    """
    The L{linkerpy.naming.system.SystemNamer} shared by everything using
    C{reactor} (one DNS cache per process).
    """
    from linkerpy.naming.system import SystemNamer

    try:
        namer = _systemNamers.get(reactor)
    except TypeError:  # pragma: no cover - unhashable/unweakrefable reactor
        return SystemNamer(reactor)
    if namer is None:
        namer = SystemNamer(reactor)
        try:
            _systemNamers[reactor] = namer
        except TypeError:  # pragma: no cover
            pass
    return namer


@attrs.frozen
class DefaultInterpreterConfig:
    """
    C{default}: the router's dtab, then the configured namers, then C{/$/}.
    """

    transformers: Tuple[Configured, ...] = _transformers()


@attrs.frozen
class FsInterpreterConfig:
    """
    C{io.l5d.fs}: like C{default}, with a dtab read from (and watched in) a file.
    """

    dtabFile: str = setting(doc="the dtab file, prepended to the router's dtab")
    transformers: Tuple[Configured, ...] = _transformers()


@implementer(IPlugin, IInterpreterPlugin)
class DefaultInterpreterPlugin:
    kind = "default"
    configType = DefaultInterpreterConfig

    def newInterpreter(self, config: DefaultInterpreterConfig, context: Any, namers: Sequence[Tuple[Path, Any]]) -> Any:
        from linkerpy.naming.interpreter import ConfiguredNamersInterpreter

        return ConfiguredNamersInterpreter(
            context.reactor, namers, buildTransformers(config.transformers, context), systemNamerFor(context.reactor)
        )


@implementer(IPlugin, IInterpreterPlugin)
class FsInterpreterPlugin:
    kind = "io.l5d.fs"
    configType = FsInterpreterConfig

    def newInterpreter(self, config: FsInterpreterConfig, context: Any, namers: Sequence[Tuple[Path, Any]]) -> Any:
        from linkerpy.naming.fs import DtabFile
        from linkerpy.naming.interpreter import ConfiguredNamersInterpreter

        dtabFile = DtabFile(context.reactor, config.dtabFile)
        dtabFile.start()
        interpreter = ConfiguredNamersInterpreter(
            context.reactor,
            namers,
            buildTransformers(config.transformers, context),
            systemNamerFor(context.reactor),
            dtabVar=dtabFile.var,
        )
        interpreter.dtabFile = dtabFile  # type: ignore[attr-defined]
        return interpreter


# ---------------------------------------------------------------------------
# Transformers


@attrs.frozen
class PortTransformerConfig:
    """
    C{io.l5d.port}: send to C{port} on every address.
    """

    port: int = setting(check=_port, doc="the port to use")
    prefix: Optional[NamerPrefix] = setting(None, doc="id prefix (default io.l5d.port/<port>)")


@attrs.frozen
class LocalhostTransformerConfig:
    """
    C{io.l5d.localhost}: keep only this host's addresses.
    """

    prefix: Optional[NamerPrefix] = setting(None, doc="id prefix (default io.l5d.localhost)")


@attrs.frozen
class SpecificHostTransformerConfig:
    """
    C{io.l5d.specificHost}: keep only C{host}'s addresses.
    """

    host: str = setting(doc="an IP address or host name")
    prefix: Optional[NamerPrefix] = setting(None, doc="id prefix (default io.l5d.specificHost)")


@attrs.frozen
class PathTransformerConfig:
    """
    C{io.l5d.replace} / C{io.l5d.const}: a path bound with the C{/$/} namers.
    """

    path: Path = setting(doc="the path to bind, e.g. /$/inet/127.0.0.1/4140")
    prefix: Optional[NamerPrefix] = setting(None, doc="id prefix (default the kind)")


@implementer(IPlugin, ITransformerPlugin)
class PortTransformerPlugin:
    kind = "io.l5d.port"
    configType = PortTransformerConfig

    def newTransformer(self, config: PortTransformerConfig, context: Any) -> Any:
        from linkerpy.naming.transformers import PortTransformer

        return PortTransformer(config.port, config.prefix)


@implementer(IPlugin, ITransformerPlugin)
class LocalhostTransformerPlugin:
    kind = "io.l5d.localhost"
    configType = LocalhostTransformerConfig

    def newTransformer(self, config: LocalhostTransformerConfig, context: Any) -> Any:
        from linkerpy.naming.transformers import FilteringTransformer, localAddresses
        from linkerpy.naming.var import Var

        return FilteringTransformer(config.prefix or Path(self.kind), Var(localAddresses()))


@implementer(IPlugin, ITransformerPlugin)
class SpecificHostTransformerPlugin:
    kind = "io.l5d.specificHost"
    configType = SpecificHostTransformerConfig

    def newTransformer(self, config: SpecificHostTransformerConfig, context: Any) -> Any:
        from linkerpy.naming.transformers import FilteringTransformer, resolvedHost

        return FilteringTransformer(config.prefix or Path(self.kind), resolvedHost(context.reactor, config.host))


@implementer(IPlugin, ITransformerPlugin)
class ReplaceTransformerPlugin:
    kind = "io.l5d.replace"
    configType = PathTransformerConfig

    def newTransformer(self, config: PathTransformerConfig, context: Any) -> Any:
        from linkerpy.naming.transformers import ReplaceTransformer

        return ReplaceTransformer(systemNamerFor(context.reactor), config.path, config.prefix)


@implementer(IPlugin, ITransformerPlugin)
class ConstTransformerPlugin:
    kind = "io.l5d.const"
    configType = PathTransformerConfig

    def newTransformer(self, config: PathTransformerConfig, context: Any) -> Any:
        from linkerpy.naming.transformers import ConstTransformer

        return ConstTransformer(systemNamerFor(context.reactor), config.path, config.prefix)


def buildTransformers(transformers: Sequence[Configured], context: Any) -> List[Any]:
    """
    Build C{transformers:} entries, in order.
    """
    return [t.plugin.newTransformer(t.config, context) for t in transformers]


fsNamer = FsNamerPlugin()
rewriteNamer = RewriteNamerPlugin()
dnsSrvNamer = DnsSrvNamerPlugin()
defaultInterpreter = DefaultInterpreterPlugin()
fsInterpreter = FsInterpreterPlugin()
portTransformer = PortTransformerPlugin()
localhostTransformer = LocalhostTransformerPlugin()
specificHostTransformer = SpecificHostTransformerPlugin()
replaceTransformer = ReplaceTransformerPlugin()
constTransformer = ConstTransformerPlugin()

#: Every built-in naming plugin.
PLUGINS = (
    fsNamer,
    rewriteNamer,
    dnsSrvNamer,
    defaultInterpreter,
    fsInterpreter,
    portTransformer,
    localhostTransformer,
    specificHostTransformer,
    replaceTransformer,
    constTransformer,
)
