"""
C{com.acme.static}: a namer serving a fixed table of services, written as a
third party would write one.

    namers:
    - kind: com.acme.static
      services:
        users: ["127.0.0.1:8080", "127.0.0.1:8081"]
    routers:
    - protocol: http
      dtab: /svc => /#/com.acme.static
      servers: [{port: 4140}]
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import attrs
from twisted.plugin import IPlugin
from zope.interface import implementer

from linkerpy.config.structure import setting
from linkerpy.interfaces import INamer, INamerPlugin
from linkerpy.naming import Activity, Address, AddrBound, Bound, Leaf, Neg, Path, Var


def _checkServices(services: Dict[str, Tuple[str, ...]]) -> Optional[str]:
    for name, addresses in services.items():
        for address in addresses:
            host, sep, port = address.rpartition(":")
            if not sep or not host or not port.isdigit():
                return f"service {name!r}: {address!r} is not host:port"
    return None


@attrs.frozen
class StaticConfig:
    """
    The namer's YAML keys (besides C{kind}, and the C{prefix} and
    C{transformers} every namer accepts).
    """

    services: Dict[str, Tuple[str, ...]] = setting(check=_checkServices, doc="service name to host:port list")
    prefix: Optional[Path] = setting(None, doc="default /com.acme.static")


@implementer(INamer)
class StaticNamer:
    """
    Looks the first path element up in a fixed table.
    """

    def __init__(self, table: Dict[bytes, Tuple[Address, ...]]) -> None:
        self._bound = {
            name: Var(AddrBound(addresses)) for name, addresses in table.items()
        }

    def lookup(self, path: Path) -> Activity:
        if not len(path) or path[0] not in self._bound:
            return Activity.value(Neg)  # not ours: delegation falls through
        name = path[0]
        bound = Bound(Path.read("/#/com.acme.static") + Path.fromElems((name,)), self._bound[name], path.drop(1))
        return Activity.value(Leaf(bound))


@implementer(IPlugin, INamerPlugin)
class StaticNamerPlugin:
    """
    The plugin descriptor: a kind, a config class and a factory.
    """

    kind = "com.acme.static"
    configType = StaticConfig

    def newNamer(self, config: StaticConfig, context: Any) -> StaticNamer:
        table = {}
        for name, addresses in config.services.items():
            parsed = []
            for address in addresses:
                host, _, port = address.rpartition(":")
                parsed.append(Address(host, int(port)))
            table[name.encode("utf-8")] = tuple(parsed)
        return StaticNamer(table)
