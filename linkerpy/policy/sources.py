# -*- test-case-name: tests.test_policy_entries -*-
"""
Policy sources: where a router's C{service:} and C{client:} entries come
from.  C{io.l5d.global} and C{io.l5d.static} read them from the config file;
control-plane kinds (C{io.l5d.namerd.http}, C{io.l5d.mesh}) stream them.
"""

from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

import attrs
from zope.interface import implementer

from linkerpy.interfaces import IPolicySource
from linkerpy.policy.entries import PolicyEntry, entryValues
from linkerpy.policy.matching import PathMatcher


@implementer(IPolicySource)
class FixedPolicySource:
    """
    Entries that never change (from the configuration file).
    """

    def __init__(self, entries: Sequence[PolicyEntry], description: str = "file") -> None:
        from linkerpy.naming import Var

        self._entries = Var(tuple(entries))
        self._description = description

    def entries(self) -> Any:
        return self._entries

    def describe(self) -> str:
        return self._description


def globalEntries(config: Any, origin: str) -> Tuple[PolicyEntry, ...]:
    """
    The single entry of an C{io.l5d.global} config: it matches every name.
    """
    return (PolicyEntry(PathMatcher("/"), entryValues(config), origin),)


def staticEntries(config: Any, origin: str) -> Tuple[PolicyEntry, ...]:
    """
    The entries of an C{io.l5d.static} config, in list order.
    """
    return tuple(
        PolicyEntry(entry.prefix, entryValues(entry), f"{origin}.configs[{i}]")
        for i, entry in enumerate(config.configs)
    )


_staticTypes: Dict[Tuple[int, str, Any], type] = {}


def staticConfigType(registry: Any, scope: str, protocol: Any) -> type:
    """
    The config class of C{io.l5d.static}: C{configs: [entry...]}.
    """
    from typing import Tuple as T

    from linkerpy.policy.entries import entryType

    key = (id(registry), scope, protocol)
    cls = _staticTypes.get(key)
    if cls is None:
        entry = entryType(registry, scope, protocol, withPrefix=True)
        cls = attrs.make_class(
            f"Static{scope.capitalize()}Config",
            {"configs": attrs.field(type=T[entry, ...], metadata={"doc": "entries, folded in order"})},  # type: ignore[valid-type]
            frozen=True,
        )
        cls.__module__ = __name__
        _staticTypes[key] = cls
    return cls
