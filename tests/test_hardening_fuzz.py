# -*- test-case-name: tests.test_hardening_fuzz -*-
"""
Property-based fuzzing (hypothesis) of the inputs an operator or a client
controls besides HTTP framing (which C{tests/test_http_framing_fuzz.py}
covers):

  - the dtab, name tree and path parsers, with adversarial text (deep
    nesting, long inputs, odd characters): a value or C{ParseError}, never
    another exception, and what parses shows and re-parses the same;
  - delegation and binding of fuzzed dtabs: they end (value or one of the
    naming errors), never a C{RecursionError};
  - the configuration parser, with random YAML-shaped documents built from
    the real key vocabulary and plugin kinds: a L{LinkerConfig} or a
    L{ConfigError} whose problems carry key paths, never anything else;
  - the YAML loader, with random text: data or a C{ConfigError}.
"""

from __future__ import annotations

import typing
from typing import Any, List, Set

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from linkerpy.config.errors import ConfigError
from linkerpy.config.load import loadText
from linkerpy.config.model import LinkerConfig, parseLinkerConfig
from linkerpy.config.structure import typeHints
from linkerpy.naming.binding import BindingTooLarge, NamerExceededMaxDepth
from linkerpy.naming.delegate import DelegationDepthExceeded
from linkerpy.naming.dtab import Dtab
from linkerpy.naming.parser import ParseError
from linkerpy.naming.path import Path
from linkerpy.naming.tree import NameTree
from linkerpy.plugins.registry import PLUGIN_ROLES, defaultRegistry

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# -- dtab and path text ------------------------------------------------------------------

_PIECES = st.sampled_from(
    ["/", "/a", "/svc", "/$/inet/127.0.0.1/80", "/#/io.l5d.fs", "=>", ";", "|", "&", "(", ")", "*", "0.5", "1e9",
     "-1", "!", "~", "$", "#", ".", "..", " ", "\t", "\n", "\x00", "%", "%zz", "\\x41", "\\", "\u00e9", "\U0001f600",
     "\ufeff", "/*", "*/", "//", "=>/", "/a=>/b", "/a=>/b;", "0*", "2 * ", "{", "}", "[", "]", "\"", "'"]
)
_SEGMENT = st.text(alphabet=st.characters(codec="utf-8"), min_size=0, max_size=12)
DTAB_TEXT = st.one_of(
    st.lists(st.one_of(_PIECES, _SEGMENT), max_size=40).map("".join),
    # deep nesting, sometimes unbalanced
    st.tuples(st.integers(0, 400), st.integers(0, 400)).map(lambda t: "/a=>" + "(" * t[0] + "/b" + ")" * t[1]),
    # long alternations and unions
    st.tuples(st.integers(1, 3000), st.sampled_from(["|", "&", ";", " & 0.5*"])).map(lambda t: "/a=>" + t[1].join(["/b"] * t[0])),
    # long paths
    st.integers(1, 5000).map(lambda n: "/x" * n),
)


def _naming() -> Any:
    from linkerpy.naming.interpreter import ConfiguredNamersInterpreter
    from linkerpy.naming.plugins import systemNamerFor

    clock = Clock()
    return ConfiguredNamersInterpreter(clock, [], system=systemNamerFor(clock))


_INTERPRETER = _naming()
_NAMING_ERRORS = (DelegationDepthExceeded, BindingTooLarge, NamerExceededMaxDepth)

#: dtabs with cycles and fan-out over a few names, to exercise delegation.
_NAMES = st.sampled_from(["/a", "/b", "/c", "/a/b", "/b/a", "/$/nil", "/$/fail", "/$/inet/127.0.0.1/1", "/#/nope"])
_TREE = st.recursive(
    _NAMES,
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: "(" + " | ".join(xs) + ")"),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: "(" + " & ".join(f"0.5*{x}" for x in xs) + ")"),
    ),
    max_leaves=8,
)
LOOPY_DTABS = st.lists(st.tuples(st.sampled_from(["/a", "/b", "/c", "/a/b"]), _TREE), min_size=1, max_size=8).map(
    lambda ds: ";".join(f"{p}=>{t}" for p, t in ds)
)


class NamingParserFuzzTests(SynchronousTestCase):
    """
    The dtab, tree and path parsers against adversarial text.
    """

    @FUZZ
    @given(DTAB_TEXT)
    def test_parsersOnlyRaiseParseError(self, text: str) -> None:
        """Path.read, NameTree.read and Dtab.read give a value or ParseError; values re-parse to themselves."""
        for read in (Path.read, NameTree.read, Dtab.read):
            try:
                value = read(text)
            except ParseError:
                continue
            shown = value.show
            self.assertEqual(read(shown).show, shown)

    @FUZZ
    @given(st.binary(max_size=200))
    def test_parsersOnBytes(self, raw: bytes) -> None:
        """Text decoded from random bytes (as a query string is) never crashes the parsers."""
        text = raw.decode("utf-8", "replace")
        for read in (Path.read, NameTree.read, Dtab.read):
            try:
                read(text)
            except ParseError:
                pass


class DelegationFuzzTests(SynchronousTestCase):
    """
    Delegation and binding of looping, fanning-out dtabs terminate.
    """

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(LOOPY_DTABS, st.sampled_from(["/a", "/b", "/c", "/a/b/c"]))
    def test_delegationEnds(self, dtabText: str, pathText: str) -> None:
        """delegate() fires with a tree or one of the naming errors; bind() returns or raises one of them."""
        dtab = Dtab.read(dtabText)
        path = Path.read(pathText)
        results: List[Any] = []
        _INTERPRETER.delegate(dtab, path).addBoth(results.append)
        self.assertEqual(len(results), 1)
        result = results[0]
        if hasattr(result, "check"):
            self.assertIsNotNone(result.check(*_NAMING_ERRORS), result)
        else:
            self.assertTrue(result.toJSONText())
        try:
            _INTERPRETER.bind(dtab, path)
        except _NAMING_ERRORS:
            pass


# -- configuration documents -------------------------------------------------------------------


def _vocabulary() -> List[str]:
    """
    Every key of every configuration class (the model and every plugin's
    config type), walked through the type hints.
    """
    keys: Set[str] = set()
    seen: Set[type] = set()

    def walk(cls: Any) -> None:
        if not (isinstance(cls, type) and attrs.has(cls)) or cls in seen:
            return
        seen.add(cls)
        try:
            hints = typeHints(cls)
        except Exception:  # noqa: BLE001 - a class we cannot introspect adds no keys
            hints = {}
        for f in attrs.fields(cls):
            keys.add(f.metadata.get("key") or f.name)
            for t in _flatten(hints.get(f.name)):
                walk(t)

    walk(LinkerConfig)
    registry = defaultRegistry()
    for role in PLUGIN_ROLES:
        for plugin in registry.plugins(role):
            for attribute in ("configType", "serviceConfigType", "clientConfigType"):
                walk(getattr(plugin, attribute, None))
    return sorted(keys)


def _flatten(tp: Any) -> List[Any]:
    if tp is None:
        return []
    args = typing.get_args(tp)
    if not args:
        return [tp]
    out: List[Any] = []
    for a in args:
        out.extend(_flatten(a))
    return out


def _kinds() -> List[str]:
    registry = defaultRegistry()
    return sorted({p.kind for role in PLUGIN_ROLES for p in registry.plugins(role)})


KEYS = _vocabulary()
TOP_LEVEL = {f.metadata.get("key") or f.name for f in attrs.fields(LinkerConfig)}
KINDS = _kinds()
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, -1, 80, 65536, 2**31, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(KINDS),
    st.sampled_from(["127.0.0.1", "0.0.0.0", "::1", "localhost", "not-an-ip", "/svc=>/a", "/svc=>((", "/#/io.l5d.fs",
                     "", "\x00", "http", "h2", "tcp", "100ms", "1e309", "-0", "yes", "~"]),
    st.text(max_size=20),
)
_KEY = st.one_of(st.sampled_from(KEYS), st.sampled_from(KEYS).map(lambda k: k + "x"), st.text(max_size=8), st.integers(-2, 2))


def _objects(depth: int) -> Any:
    if depth == 0:
        return _SCALARS
    inner = _objects(depth - 1)
    plugin = st.fixed_dictionaries(
        {"kind": st.sampled_from(KINDS)}, optional={"protocol": st.sampled_from(["http", "h2", "tcp", "bogus"])}
    )
    return st.one_of(
        _SCALARS,
        st.lists(inner, max_size=3),
        st.dictionaries(_KEY, inner, max_size=5),
        st.tuples(plugin, st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)).map(lambda t: {**t[1], **t[0]}),
    )


ROUTER = st.tuples(
    st.sampled_from(["http", "h2", "tcp", "httpsRedirect", "bogus", 1, None]),
    st.dictionaries(st.sampled_from(KEYS), _objects(3), max_size=6),
    st.lists(st.dictionaries(st.sampled_from(KEYS), _objects(2), max_size=4), max_size=2),
).map(lambda t: {**t[1], "protocol": t[0], "servers": t[2]})
DOCUMENTS = st.one_of(
    st.fixed_dictionaries(
        {"routers": st.one_of(st.lists(ROUTER, max_size=3), _objects(1))},
        optional={
            "admin": st.one_of(st.dictionaries(st.sampled_from(KEYS), _objects(2), max_size=5), _SCALARS),
            "namers": st.lists(_objects(2), max_size=3),
            "telemetry": st.lists(_objects(2), max_size=2),
            "usage": _objects(1),
            "workers": _SCALARS,
        },
    ),
    st.dictionaries(_KEY, _objects(3), max_size=5),
    _objects(2),
)


class ConfigFuzzTests(SynchronousTestCase):
    """
    The configuration parser against random YAML-shaped documents.
    """

    def test_vocabulary(self) -> None:
        """The fuzzer knows the real keys and kinds (so it reaches deep into the structurer)."""
        for key in ("routers", "servers", "maxConcurrentRequests", "hostConnectionPool", "totalTimeoutMs", "dtab", "auth"):
            self.assertIn(key, KEYS)
        self.assertIn("io.l5d.http.retryableRead5XX", KINDS)

    @settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(DOCUMENTS)
    def test_onlyConfigErrorsWithKeyPaths(self, document: Any) -> None:
        """parseLinkerConfig returns a LinkerConfig or raises ConfigError whose every problem has a path rooted in the document."""
        try:
            config = parseLinkerConfig(document)
        except ConfigError as e:
            self.assertTrue(e.problems)
            e.render()
            for problem in e.problems:
                self.assertIsInstance(problem.path, str)
                self.assertTrue(problem.message)
                if problem.path and isinstance(document, dict):
                    # rooted in the document, or naming a missing top-level key
                    roots = {str(k) for k in document} | TOP_LEVEL
                    path = problem.path
                    self.assertTrue(
                        any(path == k or path.startswith((k + ".", k + "[", f"[{k}]")) for k in roots), problem
                    )
            return
        self.assertIsInstance(config, LinkerConfig)

    @FUZZ
    @given(st.one_of(st.text(max_size=300), st.lists(st.sampled_from(["routers:", "\n", "  - ", "protocol: http", "{", "}", "[", "]", ":", "&a", "*a", "<<: *a", "!!python/object:os.system", "!!binary", "'", '"', "\t", "? ", "- -", "%YAML 1.1", "---", "..."]), max_size=30).map("".join)))
    def test_yamlTextOnlyConfigError(self, text: str) -> None:
        """Random text loads to data or raises ConfigError (never a YAML exception or object construction)."""
        try:
            data = loadText(text)
        except ConfigError:
            return
        try:
            parseLinkerConfig(data)
        except ConfigError:
            pass

    def test_billionLaughs(self) -> None:
        """Nested YAML aliases (a billion laughs) do not expand without bound: a ConfigError or a bounded value."""
        text = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
        for i, name in enumerate("bcdefghi"):
            prev = "abcdefghi"[i]
            text += f"{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
        text += "routers: *i\n"
        try:
            data = loadText(text)
        except ConfigError:
            return
        with self.assertRaises(ConfigError):
            parseLinkerConfig(data)
