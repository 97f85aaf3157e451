# -*- test-case-name: tests.test_config_reference -*-
"""
Generate the configuration reference (C{docs/configuration.md}) from the
config classes themselves, so it lists every kind and key with its default
and cannot drift: a test compares the committed file with this output.

    python -m linkerpy.config.reference > docs/configuration.md
"""

from __future__ import annotations

import inspect
import json
import sys
from typing import Any, Iterable, List, Optional, Set, Tuple

import attrs

from linkerpy import interfaces
from linkerpy.config.structure import Configured, fieldDocs, typeHints, unstructure

#: Roles in the order the reference lists them, with a heading and where they appear.
ROLES: Tuple[Tuple[Any, str, str], ...] = (
    (interfaces.IProtocolPlugin, "Router protocols", "`routers[].protocol`"),
    (interfaces.IIdentifierPlugin, "Identifiers", "`routers[].identifier`"),
    (interfaces.INamerPlugin, "Namers", "`namers[]`"),
    (interfaces.IInterpreterPlugin, "Interpreters", "`routers[].interpreter`"),
    (interfaces.ITransformerPlugin, "Transformers", "`interpreter.transformers[]`, `namers[].transformers[]`"),
    (interfaces.IPolicySourcePlugin, "Service and client policy kinds", "`routers[].service`, `routers[].client`"),
    (interfaces.IPolicyModulePlugin, "Policy modules (keys of service/client entries)", "`service` / `client` entries"),
    (interfaces.IResponseClassifierPlugin, "Response classifiers", "`service.responseClassifier`"),
    (interfaces.ILoadBalancerPlugin, "Load balancers", "`client.loadBalancer`"),
    (interfaces.IFailureAccrualPlugin, "Failure accrual", "`client.failureAccrual`"),
    (interfaces.ITelemeterPlugin, "Telemeters", "`telemetry[]`"),
    (interfaces.IStoragePlugin, "Namerd storage", "namerd `storage`"),
    (interfaces.INamerdInterfacePlugin, "Namerd interfaces", "namerd `interfaces[]`"),
)


def _default(value: Any) -> str:
    if value is attrs.NOTHING:
        return "**required**"
    if value is None:
        return "none"
    if attrs.has(type(value)):
        return "(see below)"
    try:
        rendered = unstructure(value)
        text = json.dumps(rendered, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"`{text}`"


def _firstLine(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    paragraph = doc.strip().split("\n\n")[0]
    return _markdown(" ".join(paragraph.split()))


def _markdown(text: str) -> str:
    """
    Epytext inline markup to Markdown: C{x} and L{x} to `x`.
    """
    import re

    return re.sub(r"[CLI]\{([^{}]*)\}", r"`\1`", text)


def _table(cls: type, seen: Set[type], pending: List[Tuple[str, type]], prefix: str) -> List[str]:
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    hints = typeHints(cls)
    byName = {f.name: f for f in attrs.fields(cls)}
    for key, default, typeName, doc in fieldDocs(cls):
        field = next((f for f in byName.values() if (f.metadata.get("key") or f.name.lstrip("_")) == key), None)
        plugin = field.metadata.get("plugin") if field is not None else None
        if plugin is not None:
            typeName = f"object (by {field.metadata.get('kindKey', 'kind')}; see {_roleTitle(plugin)})"
        lines.append(f"| `{key}` | {typeName} | {_default(default)} | {_markdown(doc)} |")
        if field is not None:
            for nested in _nestedClasses(hints[field.name]):
                if nested not in seen:
                    seen.add(nested)
                    pending.append((f"{prefix}.{key}" if prefix else key, nested))
    return lines


def _nestedClasses(tp: Any) -> Iterable[type]:
    import typing

    if isinstance(tp, type) and attrs.has(tp) and tp is not Configured:
        yield tp
        return
    for arg in typing.get_args(tp):
        yield from _nestedClasses(arg)


def _roleTitle(role: Any) -> str:
    for r, title, _ in ROLES:
        if r is role:
            return title
    return role.__name__


def _section(title: str, cls: type, seen: Set[type], level: int = 3) -> List[str]:
    out: List[str] = []
    pending: List[Tuple[str, type]] = [(title, cls)]
    first = True
    while pending:
        name, current = pending.pop(0)
        heading = "#" * (level if first else level + 1)
        out.append(f"{heading} {name}" if first else f"{heading} `{name}`")
        out.append("")
        description = _firstLine(current)
        if description:
            out.append(description)
            out.append("")
        if attrs.fields(current):
            out.extend(_table(current, seen, pending, "" if first else name))
        else:
            out.append("No keys.")
        out.append("")
        first = False
    return out


def generate(registry: Optional[Any] = None) -> str:
    """
    The whole reference as Markdown.
    """
    from linkerpy.config.model import LinkerConfig
    from linkerpy.plugins.registry import PluginRegistry

    registry = registry or PluginRegistry.fromPlugins()
    out = [
        "# Configuration reference",
        "",
        "Generated from the configuration classes by `python -m linkerpy.config.reference`; a test keeps this",
        "file identical to that output, so every key listed here exists and every default is the real one.",
        "Keys follow Linkerd 1 (camelCase); unknown keys are errors. Any plugin object also accepts",
        "`experimental: true` (ignored), for Linkerd compatibility.",
        "",
        "## Top level (`twistd linkerpy`)",
        "",
    ]
    seen: Set[type] = set()
    out.extend(_section("linkerpy.yaml", LinkerConfig, seen))
    for role, title, where in ROLES:
        plugins = registry.plugins(role)
        if not plugins:
            continue
        out.append(f"## {title}")
        out.append("")
        out.append(f"Used at {where}.")
        out.append("")
        for plugin in plugins:
            configType = plugin.configType
            if role is interfaces.IPolicySourcePlugin:
                out.append(f"### `{plugin.kind}`")
                out.append("")
                out.append(_firstLine(plugin))
                out.append("")
                out.extend(_policyKeys(registry, plugin))
                continue
            label = "protocol" if role is interfaces.IProtocolPlugin else "kind"
            out.extend(_section(f"{label}: `{plugin.kind}`", configType, seen))
            if role is interfaces.IProtocolPlugin:
                for scope in ("service", "client"):
                    core = getattr(plugin, f"{scope}ConfigType", None)
                    if core is not None:
                        out.extend(_section(f"`{plugin.kind}` {scope} entry keys (core)", core, seen, level=4))
    return "\n".join(out).rstrip() + "\n"


def _policyKeys(registry: Any, plugin: Any) -> List[str]:
    if plugin.kind == "io.l5d.static":
        return [
            "`configs`: a list of entries, each with a `prefix` (a name pattern: `*` matches one segment,",
            "`{var}` captures) and any entry keys; every entry whose prefix matches a name applies, in order,",
            "later keys overriding earlier ones.",
            "",
        ]
    if plugin.kind == "io.l5d.global":
        return ["The entry keys directly, applied to every name.", ""]
    return []


def main() -> None:
    sys.stdout.write(generate())


if __name__ == "__main__":
    main()


__all__ = ["generate", "main"]
