# -*- test-case-name: tests.test_plugins -*-
"""
The plugin registry: C{kind} to plugin descriptor, per role.

Built-in and third-party plugins are found the same way, by
L{twisted.plugin.getPlugins} over the C{twisted.plugins} package (every
C{twisted/plugins/} directory on C{sys.path}).  Tests build a registry from
an explicit list instead.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple

from zope.interface.interface import InterfaceClass

from linkerpy import interfaces

#: Every plugin role, i.e. every C{I*Plugin} interface.
PLUGIN_ROLES: Tuple[InterfaceClass, ...] = tuple(
    getattr(interfaces, name)
    for name in interfaces.__all__
    if name.endswith("Plugin") and name != "IPluginKind"
)


class RegistryError(Exception):
    """
    The set of plugins is inconsistent (e.g. two plugins claim one kind).
    """


class PluginRegistry:
    """
    Plugin descriptors indexed by role and kind.
    """

    def __init__(self, plugins: Iterable[Any]):
        self._byRole: Dict[InterfaceClass, Dict[str, Any]] = {role: {} for role in PLUGIN_ROLES}
        self._origins: Dict[Tuple[InterfaceClass, str], str] = {}
        problems: List[str] = []
        for plugin in plugins:
            for role in PLUGIN_ROLES:
                if not role.providedBy(plugin):
                    continue
                kind = plugin.kind
                table = self._byRole[role]
                origin = _originOf(plugin)
                if kind in table and table[kind] is not plugin:
                    problems.append(
                        f"two {role.__name__} plugins claim kind {kind!r}: "
                        f"{self._origins[(role, kind)]} and {origin}"
                    )
                    continue
                table[kind] = plugin
                self._origins[(role, kind)] = origin
        if problems:
            raise RegistryError("; ".join(problems))

    @classmethod
    def fromPlugins(cls) -> "PluginRegistry":
        """
        Discover every installed plugin with L{twisted.plugin.getPlugins}.
        """
        from twisted.plugin import getPlugins

        import twisted.plugins

        found: Dict[int, Any] = {}
        for role in PLUGIN_ROLES:
            for plugin in getPlugins(role, twisted.plugins):
                found[id(plugin)] = plugin
        return cls(found.values())

    def lookup(self, role: InterfaceClass, kind: str) -> Optional[Any]:
        """
        @return: the plugin of C{role} with C{kind}, or C{None}.
        """
        return self._byRole.get(role, {}).get(kind)

    def kinds(self, role: InterfaceClass) -> List[str]:
        """
        @return: the sorted kinds known for C{role}.
        """
        return sorted(self._byRole.get(role, {}))

    def plugins(self, role: InterfaceClass) -> List[Any]:
        """
        @return: the plugins of C{role}, sorted by kind.
        """
        table = self._byRole.get(role, {})
        return [table[k] for k in sorted(table)]

    def origin(self, role: InterfaceClass, kind: str) -> Optional[str]:
        """
        @return: where the plugin came from (its class's module), for messages.
        """
        return self._origins.get((role, kind))

    def withPlugins(self, extra: Iterable[Any]) -> "PluginRegistry":
        """
        @return: a new registry holding these plugins and C{extra}.
        """
        mine: List[Any] = []
        seen = set()
        for table in self._byRole.values():
            for plugin in table.values():
                if id(plugin) not in seen:
                    seen.add(id(plugin))
                    mine.append(plugin)
        return PluginRegistry(mine + list(extra))


def _originOf(plugin: Any) -> str:
    cls = type(plugin)
    return f"{cls.__module__}.{cls.__qualname__}"


_default: Optional[PluginRegistry] = None


def defaultRegistry() -> PluginRegistry:
    """
    The registry of installed plugins, discovered once per process.
    """
    global _default
    if _default is None:
        _default = PluginRegistry.fromPlugins()
    return _default
