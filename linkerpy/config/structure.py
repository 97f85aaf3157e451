# -*- test-case-name: tests.test_config -*-
"""
Turning raw configuration (mappings, lists, scalars from YAML) into frozen,
typed C{attrs} objects, once, at start-up.

Conventions for config classes (see C{docs/plugins.md}):

  - a config class is an C{@attrs.frozen} class; each field's name is its YAML
    key (override with C{setting(key=...)});
  - annotate fields with Python 3.9-compatible typing: C{Optional[int]},
    C{Tuple[str, ...]}, C{Dict[str, int]}, C{Literal['a', 'b']}, another
    config class, or a type with a C{__structure__(raw)} classmethod that
    raises C{ValueError} with a message on bad input (e.g. L{Path}, L{Dtab});
  - a field holding a plugin chosen by C{kind:} is typed L{Configured} (or a
    tuple of them) and declared with C{setting(plugin=IFooPlugin)};
  - C{check=} on a field, or a C{validateConfig(self)} method on the class
    yielding C{(subkey, message)} pairs, adds semantic checks;
  - a field without a default is a required key.

Every problem is collected (not only the first) and reported with its key
path and line.
"""

from __future__ import annotations

import collections.abc
import difflib
import sys
import typing
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Type

import attrs

from linkerpy.config.errors import ConfigError, Problem, joinPath
from linkerpy.config.load import LineDict, lineAt, lineOf

try:  # Python 3.9 has typing.Literal; keep the lookup explicit for clarity.
    from typing import Literal
except ImportError:  # pragma: no cover
    Literal = None  # type: ignore[assignment]

_NoneType = type(None)

#: Keys accepted (and ignored) on any plugin mapping, for Linkerd 1 compatibility.
COMPAT_PLUGIN_KEYS = frozenset({"experimental"})


@attrs.frozen
class Configured:
    """
    A plugin selected by C{kind} together with its typed configuration.

    @ivar kind: the selected kind (or protocol).
    @ivar plugin: the plugin descriptor (provides an C{I*Plugin} interface).
    @ivar config: an instance of C{plugin.configType}.
    @ivar path: the key path of this object in the config file.
    """

    kind: str
    plugin: Any = attrs.field(eq=False, repr=False)
    config: Any
    path: str = attrs.field(default="", eq=False, repr=False)


def setting(
    default: Any = attrs.NOTHING,
    *,
    key: Optional[str] = None,
    check: Optional[Callable[[Any], Optional[str]]] = None,
    plugin: Any = None,
    kindKey: str = "kind",
    oneOrMany: bool = False,
    rawDefault: Any = None,
    doc: str = "",
    factory: Optional[Callable[[], Any]] = None,
    pluginArgs: Optional[Dict[str, Any]] = None,
    defaultKind: Optional[str] = None,
) -> Any:
    """
    Declare a config field with structuring metadata.

    @param default: the value when the key is absent (omit for a required key).
    @param key: the YAML key, when it differs from the field name.
    @param check: C{callable(value) -> error message or None}.
    @param plugin: the C{I*Plugin} interface of a L{Configured} field.
    @param kindKey: the key selecting the plugin (C{kind}, or C{protocol}).
    @param oneOrMany: accept a single object where a list is expected.
    @param rawDefault: a raw (YAML-shaped) default for a plugin field, e.g.
        C{{'kind': 'io.l5d.header.token'}}, structured when the key is absent.
    @param doc: one line for the generated configuration reference.
    @param defaultKind: the kind used when a plugin mapping has no
        C{kind} key (Linkerd defaults C{service:}/C{client:} to
        C{io.l5d.global}).
    @param pluginArgs: keyword arguments for plugins whose config class
        depends on context: when the plugin has C{configTypeFor(registry,
        **pluginArgs)}, its result is used instead of C{configType} (the
        C{service:}/C{client:} kinds use it to accept the keys of every
        installed policy module).
    """
    metadata = {
        "key": key,
        "check": check,
        "plugin": plugin,
        "kindKey": kindKey,
        "oneOrMany": oneOrMany,
        "rawDefault": rawDefault,
        "doc": doc,
        "pluginArgs": pluginArgs,
        "defaultKind": defaultKind,
    }
    if rawDefault is not None and default is attrs.NOTHING and factory is None:
        default = None
    if factory is not None:
        return attrs.field(factory=factory, metadata=metadata)
    return attrs.field(default=default, metadata=metadata)


def yamlKey(field: "attrs.Attribute[Any]") -> str:
    """
    The YAML key of an attrs field.
    """
    return field.metadata.get("key") or field.name.lstrip("_")


class _Invalid:
    """
    Marks a value that failed to structure (its problems are recorded).
    """

    def __repr__(self) -> str:
        return "<invalid>"


INVALID: Any = _Invalid()

_hintsCache: Dict[type, Dict[str, Any]] = {}


def typeHints(cls: type) -> Dict[str, Any]:
    """
    Resolved annotations of an attrs class (cached).
    """
    hints = _hintsCache.get(cls)
    if hints is None:
        try:
            hints = dict(typing.get_type_hints(cls))
        except NameError:
            module = sys.modules.get(cls.__module__)
            globalns = dict(vars(module)) if module else {}
            globalns.setdefault("Configured", Configured)
            hints = dict(typing.get_type_hints(cls, globalns=globalns))
        for f in attrs.fields(cls):
            # Classes made with attrs.make_class carry types on the fields only.
            if f.name not in hints and f.type is not None and not isinstance(f.type, str):
                hints[f.name] = f.type
        _hintsCache[cls] = hints
    return hints


def _describe(raw: Any) -> str:
    if raw is None:
        return "null"
    if isinstance(raw, bool):
        return f"boolean {str(raw).lower()}"
    if isinstance(raw, (int, float)):
        return f"number {raw!r}"
    if isinstance(raw, str):
        return f"string {raw!r}"
    if isinstance(raw, dict):
        return "a mapping"
    if isinstance(raw, list):
        return "a list"
    return type(raw).__name__


class Structurer:
    """
    Structures raw config into typed objects, collecting problems.

    @ivar registry: a L{linkerpy.plugins.registry.PluginRegistry} used to
        resolve C{kind:} keys.
    """

    def __init__(self, registry: Any):
        self.registry = registry
        self.problems: List[Problem] = []

    # -- entry points -------------------------------------------------------

    def structure(self, tp: Any, raw: Any, path: str = "", line: Optional[int] = None) -> Any:
        """
        Structure C{raw} as type C{tp}; problems accumulate in C{self.problems}.

        @return: the value, or L{INVALID}.
        """
        return self._struct(tp, raw, path, {}, line)

    def structurePlugin(
        self,
        interface: Any,
        raw: Any,
        path: str = "",
        kindKey: str = "kind",
        line: Optional[int] = None,
        pluginArgs: Optional[Dict[str, Any]] = None,
    ) -> Any:
        """
        Structure a C{kind:}-selected plugin mapping into a L{Configured}.
        """
        return self._plugin(interface, kindKey, raw, path, line, pluginArgs)

    def problem(self, path: str, message: str, line: Optional[int] = None) -> Any:
        self.problems.append(Problem(path, message, line))
        return INVALID

    # -- dispatch -------------------------------------------------------------

    def _struct(self, tp: Any, raw: Any, path: str, meta: Dict[str, Any], line: Optional[int]) -> Any:
        if line is None:
            line = getattr(raw, "line", None)
        if tp is Configured:
            iface = meta.get("plugin")
            if iface is None:  # pragma: no cover - a programming error
                raise TypeError(f"{path}: Configured field without plugin=")
            return self._plugin(
                iface, meta.get("kindKey", "kind"), raw, path, line, meta.get("pluginArgs"), meta.get("defaultKind")
            )
        if tp is Any or tp is object:
            return raw
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is typing.Union:
            return self._union(args, raw, path, meta, line)
        if Literal is not None and origin is Literal:
            if raw in args and not (isinstance(raw, bool) and not any(isinstance(a, bool) for a in args)):
                return raw
            choices = ", ".join(repr(a) for a in args)
            return self.problem(path, f"expected one of {choices}, got {_describe(raw)}", line)
        if origin in (tuple, list, collections.abc.Sequence):
            return self._sequence(tp, args, raw, path, meta, line)
        if origin in (dict, collections.abc.Mapping):
            return self._mapping(args, raw, path, meta, line)
        if tp is bool:
            if isinstance(raw, bool):
                return raw
            return self.problem(path, f"expected a boolean (true/false), got {_describe(raw)}", line)
        if tp is int:
            if isinstance(raw, int) and not isinstance(raw, bool):
                return raw
            return self.problem(path, f"expected an integer, got {_describe(raw)}", line)
        if tp is float:
            if isinstance(raw, (int, float)) and not isinstance(raw, bool):
                return float(raw)
            return self.problem(path, f"expected a number, got {_describe(raw)}", line)
        if tp is str:
            if isinstance(raw, str):
                return raw
            return self.problem(path, f"expected a string, got {_describe(raw)}", line)
        if isinstance(tp, type) and attrs.has(tp):
            return self._attrs(tp, raw, path, line)
        hook = getattr(tp, "__structure__", None)
        if hook is not None:
            try:
                return hook(raw)
            except (ValueError, TypeError) as e:
                return self.problem(path, str(e), line)
        raise TypeError(f"{path}: cannot structure type {tp!r}")  # pragma: no cover

    def _union(self, args: Tuple[Any, ...], raw: Any, path: str, meta: Dict[str, Any], line: Optional[int]) -> Any:
        nonNone = [a for a in args if a is not _NoneType]
        if raw is None and len(nonNone) < len(args):
            return None
        if len(nonNone) == 1:
            return self._struct(nonNone[0], raw, path, meta, line)
        firstProblems: Optional[List[Problem]] = None
        for alternative in nonNone:
            saved = self.problems
            self.problems = []
            value = self._struct(alternative, raw, path, meta, line)
            tried, self.problems = self.problems, saved
            if not tried:
                return value
            if firstProblems is None:
                firstProblems = tried
        self.problems.extend(firstProblems or [])
        return INVALID

    def _sequence(
        self, tp: Any, args: Tuple[Any, ...], raw: Any, path: str, meta: Dict[str, Any], line: Optional[int]
    ) -> Any:
        itemType = args[0] if args else Any
        if meta.get("oneOrMany") and isinstance(raw, dict):
            raw = [raw]
        if not isinstance(raw, list):
            return self.problem(path, f"expected a list, got {_describe(raw)}", line)
        items = []
        ok = True
        for i, item in enumerate(raw):
            value = self._struct(itemType, item, joinPath(path, i), meta, lineOf(raw, i))
            ok = ok and value is not INVALID
            items.append(value)
        return tuple(items) if ok else INVALID

    def _mapping(self, args: Tuple[Any, ...], raw: Any, path: str, meta: Dict[str, Any], line: Optional[int]) -> Any:
        keyType, valueType = args if args else (Any, Any)
        if not isinstance(raw, dict):
            return self.problem(path, f"expected a mapping, got {_describe(raw)}", line)
        result = {}
        ok = True
        for k, v in raw.items():
            kk = self._struct(keyType, k, joinPath(path, k), {}, lineOf(raw, k))
            vv = self._struct(valueType, v, joinPath(path, k), meta, lineOf(raw, k))
            ok = ok and kk is not INVALID and vv is not INVALID
            result[kk] = vv
        return result if ok else INVALID

    def _attrs(self, cls: type, raw: Any, path: str, line: Optional[int]) -> Any:
        fields = [f for f in attrs.fields(cls) if f.init]
        byKey = {yamlKey(f): f for f in fields}
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            return self.problem(path, f"expected a mapping with keys {sorted(byKey)}, got {_describe(raw)}", line)
        hints = typeHints(cls)
        before = len(self.problems)
        for key in raw:
            if key not in byKey:
                hint = difflib.get_close_matches(str(key), list(byKey), n=1)
                suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
                known = ", ".join(sorted(byKey)) or "none"
                self.problem(
                    joinPath(path, key),
                    f"unknown key {key!r}{suggestion}; expected one of: {known}",
                    lineOf(raw, key),
                )
        kwargs: Dict[str, Any] = {}
        for key, f in byKey.items():
            childPath = joinPath(path, key)
            if key in raw:
                value = self._struct(hints[f.name], raw[key], childPath, dict(f.metadata), lineOf(raw, key))
            elif f.metadata.get("rawDefault") is not None:
                value = self._struct(hints[f.name], f.metadata["rawDefault"], childPath, dict(f.metadata), line)
            elif f.default is attrs.NOTHING:
                self.problem(childPath, f"missing required key {key!r}", line)
                continue
            else:
                continue
            if value is INVALID:
                continue
            check = f.metadata.get("check")
            if check is not None and value is not None:
                message = check(value)
                if message:
                    self.problem(childPath, message, lineOf(raw, key) or line)
                    continue
            kwargs[f.alias] = value
        if len(self.problems) > before:
            return INVALID
        try:
            obj = cls(**kwargs)
        except (ValueError, TypeError) as e:
            return self.problem(path, str(e), line)
        validate = getattr(obj, "validateConfig", None)
        if validate is not None:
            for subkey, message in validate() or ():
                self.problem(joinPath(path, subkey) if subkey != "" else path, message, lineAt(raw, subkey) or line)
            if len(self.problems) > before:
                return INVALID
        return obj

    def _plugin(
        self,
        interface: Any,
        kindKey: str,
        raw: Any,
        path: str,
        line: Optional[int],
        pluginArgs: Optional[Dict[str, Any]] = None,
        defaultKind: Optional[str] = None,
    ) -> Any:
        role = getattr(interface, "__name__", str(interface))
        if not isinstance(raw, dict):
            return self.problem(path, f"expected a mapping with a {kindKey!r} key, got {_describe(raw)}", line)
        kind = raw.get(kindKey, defaultKind)
        if kind is None:
            return self.problem(path, f"missing required key {kindKey!r}", line)
        if not isinstance(kind, str):
            return self.problem(joinPath(path, kindKey), f"expected a string, got {_describe(kind)}", lineOf(raw, kindKey))
        plugin = self.registry.lookup(interface, kind)
        if plugin is None:
            known = ", ".join(self.registry.kinds(interface)) or "none"
            hint = difflib.get_close_matches(kind, self.registry.kinds(interface), n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            return self.problem(
                joinPath(path, kindKey),
                f"unknown {kindKey} {kind!r} for {_roleName(role)}{suggestion}; known: {known}",
                lineOf(raw, kindKey),
            )
        rest = LineDict((k, v) for k, v in raw.items() if k != kindKey and k not in COMPAT_PLUGIN_KEYS)
        rest.line = getattr(raw, "line", line)
        rest.lines = getattr(raw, "lines", {})
        for k in COMPAT_PLUGIN_KEYS & set(raw):
            if not isinstance(raw[k], bool):
                self.problem(joinPath(path, k), f"expected a boolean, got {_describe(raw[k])}", lineOf(raw, k))
        configType = plugin.configType
        typeFor = getattr(plugin, "configTypeFor", None)
        if typeFor is not None and pluginArgs is not None:
            configType = typeFor(self.registry, **pluginArgs)
        config = self._attrs(configType, rest, path, line)
        if config is INVALID:
            return INVALID
        return Configured(kind=kind, plugin=plugin, config=config, path=path)


def _roleName(interfaceName: str) -> str:
    name = interfaceName
    if name.startswith("I"):
        name = name[1:]
    if name.endswith("Plugin"):
        name = name[: -len("Plugin")]
    words = []
    for ch in name:
        if ch.isupper() and words:
            words.append(" ")
        words.append(ch.lower())
    return "".join(words)


def structure(tp: Any, raw: Any, registry: Any, path: str = "", source: Optional[str] = None) -> Any:
    """
    Structure C{raw} as C{tp}, raising one L{ConfigError} listing every problem.
    """
    s = Structurer(registry)
    value = s.structure(tp, raw, path)
    if s.problems or value is INVALID:
        raise ConfigError(s.problems or [Problem(path, "invalid")], source)
    return value


def structurePlugin(
    interface: Any,
    raw: Any,
    registry: Any,
    path: str = "",
    kindKey: str = "kind",
    pluginArgs: Optional[Dict[str, Any]] = None,
) -> Configured:
    """
    Structure one C{kind:}-selected plugin mapping, raising L{ConfigError}.
    """
    s = Structurer(registry)
    value = s.structurePlugin(interface, raw, path, kindKey, pluginArgs=pluginArgs)
    if s.problems or value is INVALID:
        raise ConfigError(s.problems or [Problem(path, "invalid")])
    return value  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------
# Back to plain data (for /config.json and the control plane)


def unstructure(value: Any) -> Any:
    """
    Render a structured config as JSON-compatible data.

    Types with an C{__unstructure__()} method (L{Path}, L{Dtab}) render
    themselves; L{Configured} renders as its config with the kind key added.
    """
    if isinstance(value, Configured):
        body = unstructure(value.config)
        out = {"kind": value.kind}
        if isinstance(body, dict):
            out.update(body)
        return out
    hook = getattr(value, "__unstructure__", None)
    if hook is not None and not isinstance(value, type):
        return hook()
    if attrs.has(type(value)):
        out = {}
        for f in attrs.fields(type(value)):
            if not f.init:
                continue
            out[yamlKey(f)] = unstructure(getattr(value, f.name))
        return out
    if isinstance(value, (list, tuple, frozenset, set)):
        return [unstructure(v) for v in value]
    if isinstance(value, dict):
        return {str(k): unstructure(v) for k, v in value.items()}
    return value


def fieldDocs(cls: Type[Any]) -> Iterable[Tuple[str, Any, str, str]]:
    """
    Yield C{(key, default, type description, doc)} for each field of a config
    class: the source of the generated configuration reference.
    """
    hints = typeHints(cls)
    for f in attrs.fields(cls):
        if not f.init:
            continue
        default = f.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory()  # type: ignore[union-attr]
        if f.metadata.get("rawDefault") is not None:
            default = f.metadata["rawDefault"]
        yield yamlKey(f), default, _typeName(hints[f.name]), f.metadata.get("doc", "")


def _typeName(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Configured:
        return "object (by kind)"
    if origin is typing.Union:
        names = [_typeName(a) for a in args if a is not _NoneType]
        return " or ".join(names)
    if Literal is not None and origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (tuple, list):
        return f"list of {_typeName(args[0])}" if args else "list"
    if origin in (dict,):
        return f"map of {_typeName(args[1])}" if args else "map"
    return getattr(tp, "__name__", str(tp))
