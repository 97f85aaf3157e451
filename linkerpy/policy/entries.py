# -*- test-case-name: tests.test_policy_entries -*-
"""
Policy entries: the objects under C{service:} and C{client:}, and how the
entries matching one name fold into that name's policy.

An entry's keys are the union of

  - the protocol's I{core} keys (e.g. C{responseClassifier} for services;
    C{loadBalancer}, C{failureAccrual}, C{tls}... for clients), and
  - the keys owned by every installed policy module of that scope
    (C{totalTimeoutMs} by C{totalTimeout}, C{retries} by C{retries},
    C{requestAttemptTimeoutMs} by C{attemptTimeout}...), so a third-party
    module's keys are accepted as soon as its dropin is installed.

Every key of an entry is optional: C{None} means "not set here".  For a
name, every entry whose C{prefix} matches contributes in list order, and a
key set by a later entry overrides the same key set by an earlier one (a
whole key's value is replaced: C{retries} from a later entry replaces
C{retries} from an earlier one, it is not merged field by field).  Keys no
entry sets take the module's or core's default.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple

import attrs

from linkerpy.config.structure import typeHints
from linkerpy.interfaces import IPolicyModulePlugin, IProtocolPlugin
from linkerpy.naming.path import Path
from linkerpy.policy.matching import PathMatcher

SERVICE = "service"
CLIENT = "client"
SCOPES = (SERVICE, CLIENT)


class PolicyKeyConflict(Exception):
    """
    Two policy modules (or a module and the core) claim the same key.
    """


def coreType(registry: Any, scope: str, protocol: Optional[str]) -> Optional[type]:
    """
    The protocol's core keys for C{scope}: the protocol plugin's
    C{serviceConfigType}/C{clientConfigType}.
    """
    if protocol is None:
        return None
    plugin = registry.lookup(IProtocolPlugin, protocol)
    if plugin is None:
        return None
    return getattr(plugin, f"{scope}ConfigType", None)


def modulePlugins(registry: Any, scope: str, protocol: Optional[str]) -> List[Any]:
    """
    The installed policy module plugins of C{scope} that apply to C{protocol}.
    """
    result = []
    for plugin in registry.plugins(IPolicyModulePlugin):
        if plugin.scope != scope:
            continue
        protocols = getattr(plugin, "protocols", None)
        if protocols is not None and protocol is not None and protocol not in protocols:
            continue
        result.append(plugin)
    return result


_entryTypes: Dict[Tuple[int, str, Optional[str], bool], type] = {}


def entryType(registry: Any, scope: str, protocol: Optional[str], withPrefix: bool) -> type:
    """
    The (cached) attrs class of a policy entry for C{scope} and C{protocol}.

    @param withPrefix: whether the entry has a required C{prefix} key
        (C{io.l5d.static} entries) or not (C{io.l5d.global}).
    @raise PolicyKeyConflict: two sources of keys claim one key.
    """
    cacheKey = (id(registry), scope, protocol, withPrefix)
    cached = _entryTypes.get(cacheKey)
    if cached is not None:
        return cached
    fields: Dict[str, Any] = {}
    owners: Dict[str, str] = {}
    if withPrefix:
        fields["prefix"] = attrs.field(
            type=PathMatcher,
            metadata={"doc": "name pattern: '*' matches one segment, '{var}' captures"},
        )
        owners["prefix"] = "entry"
    sources: List[Tuple[str, type]] = []
    core = coreType(registry, scope, protocol)
    if core is not None:
        sources.append((f"{protocol} {scope} core", core))
    for plugin in modulePlugins(registry, scope, protocol):
        sources.append((f"policy module {plugin.kind!r}", plugin.configType))
    for owner, source in sources:
        hints = typeHints(source)
        for f in attrs.fields(source):
            key = f.metadata.get("key") or f.name
            if key in owners:
                raise PolicyKeyConflict(f"{scope} key {key!r} is claimed by both {owners[key]} and {owner}")
            owners[key] = owner
            tp = hints[f.name]
            fields[key] = attrs.field(type=Optional[tp], default=None, metadata=dict(f.metadata))
    name = f"{(protocol or 'any').capitalize()}{scope.capitalize()}{'Static' if withPrefix else 'Global'}Entry"
    cls = attrs.make_class(name, fields, frozen=True)
    cls.__module__ = __name__
    cls.keyOwners = owners  # type: ignore[attr-defined]
    _entryTypes[cacheKey] = cls
    return cls


def entryValues(entry: Any) -> Dict[str, Any]:
    """
    The keys an entry sets (those that are not C{None}), without C{prefix}.
    """
    out = {}
    for f in attrs.fields(type(entry)):
        if f.name == "prefix":
            continue
        value = getattr(entry, f.name)
        if value is not None:
            out[f.name] = value
    return out


@attrs.frozen
class PolicyEntry:
    """
    One entry in fold order.

    @ivar matcher: which names it applies to.
    @ivar values: the keys it sets.
    @ivar origin: where it came from, for C{/admin/policy.json}
        (e.g. C{routers[0].service.configs[1]} or a control-plane namespace).
    """

    matcher: PathMatcher
    values: Dict[str, Any] = attrs.field(hash=False)
    origin: str = ""


@attrs.frozen
class FoldedPolicy:
    """
    The policy of one name.

    @ivar name: the name it was folded for.
    @ivar values: key to value, for every key some matching entry set.
    @ivar captures: C{{var}} captures of the matching prefixes (later
        entries override earlier ones).
    @ivar matched: the entries that matched, in fold order.
    """

    name: Path
    values: Dict[str, Any] = attrs.field(eq=False)
    captures: Dict[str, str] = attrs.field(eq=False)
    matched: Tuple[PolicyEntry, ...] = attrs.field(eq=False)

    def get(self, key: str, default: Any = None) -> Any:
        value = self.values.get(key)
        return default if value is None else value

    def describe(self) -> Dict[str, Any]:
        """
        JSON-friendly explanation (for C{/admin/policy.json}).
        """
        from linkerpy.config.structure import unstructure

        return {
            "name": self.name.show,
            "matched": [{"prefix": e.matcher.pattern, "origin": e.origin} for e in self.matched],
            "captures": dict(self.captures),
            "policy": {k: unstructure(v) for k, v in sorted(self.values.items())},
        }


def fold(entries: Iterable[PolicyEntry], name: Path) -> FoldedPolicy:
    """
    Fold every entry matching C{name}, in order; later keys win.
    """
    values: Dict[str, Any] = {}
    captures: Dict[str, str] = {}
    matched: List[PolicyEntry] = []
    for entry in entries:
        found = entry.matcher.match(name)
        if found is None:
            continue
        matched.append(entry)
        captures.update(found)
        values.update(entry.values)
    return FoldedPolicy(name, values, captures, tuple(matched))
