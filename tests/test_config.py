"""
Tests for configuration loading and structuring (L{linkerpy.config}).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Optional, Tuple

import attrs
from twisted.plugin import IPlugin
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from linkerpy.config import checks
from linkerpy.config.errors import ConfigError
from linkerpy.config.load import loadText
from linkerpy.config.model import LinkerConfig, loadLinkerConfig, parseLinkerConfig
from linkerpy.config.structure import Configured, setting, structure, unstructure
from linkerpy.interfaces import INamerPlugin, IProtocolPlugin
from linkerpy.plugins.registry import PluginRegistry
from linkerpy.router.config import ServerConfig


@attrs.frozen(kw_only=True)
class FakeServer(ServerConfig):
    port: int = setting(7777, check=checks.port)


@attrs.frozen
class FakeRouterConfig:
    servers: Tuple[FakeServer, ...] = setting()
    label: Optional[str] = setting(None)
    timeoutMs: int = setting(100)


@implementer(IPlugin, IProtocolPlugin)
class FakeProtocol:
    kind = "fake"
    configType = FakeRouterConfig
    defaultPort = 7777

    def newRouter(self, config, context, namers):
        raise NotImplementedError()


@attrs.frozen
class FakeNamerConfig:
    rootDir: str = setting()
    prefix: Optional[str] = setting(None)


@implementer(IPlugin, INamerPlugin)
class FakeNamer:
    kind = "test.fake"
    configType = FakeNamerConfig

    def newNamer(self, config, context):
        raise NotImplementedError()


REGISTRY = PluginRegistry([FakeProtocol(), FakeNamer()])


def parse(text: str) -> LinkerConfig:
    return parseLinkerConfig(loadText(text, "test.yaml"), REGISTRY, "test.yaml")


def problems(text: str):
    try:
        parse(text)
    except ConfigError as e:
        return e.problems
    raise AssertionError("expected a ConfigError")


class ParseTests(SynchronousTestCase):
    """
    A valid file becomes typed, frozen objects with Linkerd's defaults.
    """

    def test_defaults(self) -> None:
        """
        Keys left out take their defaults (admin on loopback:9990, servers' ip loopback).
        """
        config = parse("routers:\n- protocol: fake\n  servers:\n  - port: 1234\n")
        self.assertEqual(config.admin.ip, "127.0.0.1")
        self.assertEqual(config.admin.port, 9990)
        self.assertEqual(config.admin.shutdownGraceMs, 10000)
        router = config.routers[0]
        self.assertIsInstance(router, Configured)
        self.assertEqual(router.kind, "fake")
        self.assertEqual(router.config.servers[0].port, 1234)
        self.assertEqual(router.config.servers[0].ip, "127.0.0.1")
        self.assertEqual(router.config.timeoutMs, 100)
        self.assertTrue(config.usage.enabled)

    def test_frozen(self) -> None:
        """
        Structured config objects cannot be mutated.
        """
        config = parse("routers:\n- protocol: fake\n  servers: [{}]\n")
        with self.assertRaises(attrs.exceptions.FrozenInstanceError):
            config.admin.port = 1  # type: ignore[misc]

    def test_json(self) -> None:
        """
        JSON files load the same way as YAML.
        """
        text = json.dumps({"admin": {"port": 0}, "routers": [{"protocol": "fake", "servers": [{"port": 5}]}]})
        config = parse(text)
        self.assertEqual(config.admin.port, 0)
        self.assertEqual(config.routers[0].config.servers[0].port, 5)

    def test_experimentalAccepted(self) -> None:
        """
        Linkerd's C{experimental: true} on plugin objects is accepted.
        """
        config = parse("routers:\n- protocol: fake\n  experimental: true\n  servers: [{}]\n")
        self.assertEqual(config.routers[0].kind, "fake")

    def test_unstructure(self) -> None:
        """
        The parsed config renders back to JSON-able data with kinds.
        """
        config = parse("routers:\n- protocol: fake\n  servers: [{port: 3}]\nnamers:\n- kind: test.fake\n  rootDir: /x\n")
        data = unstructure(config)
        json.dumps(data)
        self.assertEqual(data["routers"][0]["kind"], "fake")
        self.assertEqual(data["namers"][0]["rootDir"], "/x")
        self.assertEqual(data["admin"]["port"], 9990)

    def test_summary(self) -> None:
        """
        The one-line summary names routers, servers and namers.
        """
        config = parse("routers:\n- protocol: fake\n  label: a\n  servers: [{port: 3}]\nnamers:\n- kind: test.fake\n  rootDir: /x\n")
        self.assertEqual(
            config.summary(),
            "1 router(s): a (fake); 1 server(s): 127.0.0.1:3; 1 namer(s): test.fake",
        )


class ErrorTests(SynchronousTestCase):
    """
    Every kind of mistake is reported with its key path, line and expectation.
    """

    def test_unknownKey(self) -> None:
        """
        An unknown key names its path, line, and suggests the close match.
        """
        [p] = problems("routers:\n- protocol: fake\n  servers:\n  - prot: 1\n")
        self.assertEqual(p.path, "routers[0].servers[0].prot")
        self.assertEqual(p.line, 4)
        self.assertIn("unknown key 'prot'", p.message)
        self.assertIn("did you mean 'port'", p.message)

    def test_wrongType(self) -> None:
        """
        A value of the wrong type says what was expected.
        """
        [p] = problems("routers:\n- protocol: fake\n  servers:\n  - port: eighty\n")
        self.assertEqual(p.path, "routers[0].servers[0].port")
        self.assertEqual(p.line, 4)
        self.assertIn("expected an integer", p.message)

    def test_boolIsNotInt(self) -> None:
        """
        C{true} is not accepted where a number is expected.
        """
        [p] = problems("routers:\n- protocol: fake\n  servers:\n  - port: true\n")
        self.assertIn("expected an integer, got boolean true", p.message)

    def test_outOfRange(self) -> None:
        """
        Field checks report their message with the path.
        """
        [p] = problems("routers:\n- protocol: fake\n  servers:\n  - port: 70000\n")
        self.assertEqual(p.path, "routers[0].servers[0].port")
        self.assertIn("between 0 and 65535", p.message)

    def test_unknownKind(self) -> None:
        """
        An unknown kind lists the known ones.
        """
        [p] = problems("routers:\n- protocol: fake\n  servers: [{}]\nnamers:\n- kind: io.l5d.nope\n  rootDir: x\n")
        self.assertEqual(p.path, "namers[0].kind")
        self.assertEqual(p.line, 5)
        self.assertIn("unknown kind 'io.l5d.nope'", p.message)
        self.assertIn("test.fake", p.message)

    def test_unknownProtocol(self) -> None:
        """
        An unknown protocol is reported at C{routers[N].protocol}.
        """
        [p] = problems("routers:\n- protocol: gopher\n  servers: [{}]\n")
        self.assertEqual(p.path, "routers[0].protocol")
        self.assertIn("unknown protocol 'gopher'", p.message)

    def test_missingRequired(self) -> None:
        """
        A missing required key is named.
        """
        [p] = problems("routers:\n- protocol: fake\n")
        self.assertEqual(p.path, "routers[0].servers")
        self.assertIn("missing required key 'servers'", p.message)

    def test_missingRouters(self) -> None:
        """
        A config without routers is an error naming C{routers}.
        """
        [p] = problems("admin:\n  port: 9990\n")
        self.assertEqual(p.path, "routers")
        self.assertIn("missing required key 'routers'", p.message)

    def test_emptyRouters(self) -> None:
        """
        An empty routers list is an error.
        """
        [p] = problems("routers: []\n")
        self.assertEqual(p.path, "routers")
        self.assertIn("at least one router", p.message)

    def test_emptyFile(self) -> None:
        """
        An empty file is an error, not a crash.
        """
        [p] = problems("")
        self.assertIn("routers", p.message)

    def test_duplicateLabels(self) -> None:
        """
        Two routers with one label are refused, naming the second one's path.
        """
        text = "routers:\n- protocol: fake\n  servers: [{port: 1}]\n- protocol: fake\n  servers: [{port: 2}]\n"
        [p] = problems(text)
        self.assertEqual(p.path, "routers[1].label")
        self.assertIn("duplicate router label 'fake'", p.message)

    def test_conflictingPorts(self) -> None:
        """
        Two servers on one ip:port are refused, naming the path and the line.
        """
        text = (
            "routers:\n"
            "- protocol: fake\n  label: a\n  servers:\n  - port: 4140\n"
            "- protocol: fake\n  label: b\n  servers:\n  - port: 4141\n  - port: 4140\n"
        )
        [p] = problems(text)
        self.assertEqual(p.path, "routers[1].servers[1].port")
        self.assertEqual(p.line, 10)
        self.assertIn("conflicts with routers[0].servers[0].port", p.message)

    def test_wildcardConflicts(self) -> None:
        """
        0.0.0.0:port conflicts with any address on the same port.
        """
        text = "routers:\n- protocol: fake\n  servers:\n  - port: 4140\n  - port: 4140\n    ip: 0.0.0.0\n"
        [p] = problems(text)
        self.assertEqual(p.path, "routers[0].servers[1].port")

    def test_adminPortConflicts(self) -> None:
        """
        A server on the admin port is refused.
        """
        [p] = problems("admin: {port: 9990}\nrouters:\n- protocol: fake\n  servers: [{port: 9990}]\n")
        self.assertEqual(p.path, "routers[0].servers[0].port")

    def test_ephemeralPortsDoNotConflict(self) -> None:
        """
        Port 0 (ephemeral) never conflicts.
        """
        parse("admin: {port: 0}\nrouters:\n- protocol: fake\n  servers: [{port: 0}, {port: 0}]\n")

    def test_allProblemsReported(self) -> None:
        """
        Every problem is reported, not only the first.
        """
        found = problems("admin:\n  port: x\n  ipp: 1\nrouters:\n- protocol: fake\n  servers: [{port: -1}]\n")
        self.assertEqual(
            sorted(p.path for p in found),
            ["admin.ipp", "admin.port", "routers[0].servers[0].port"],
        )

    def test_yamlSyntax(self) -> None:
        """
        Malformed YAML is reported with its line.
        """
        [p] = problems("routers:\n- protocol: fake\n  servers: [\n")
        self.assertIn("not valid YAML", p.message)
        self.assertIsNotNone(p.line)

    def test_duplicateYamlKey(self) -> None:
        """
        A key given twice in one mapping is an error (YAML would silently keep the last).
        """
        [p] = problems("routers:\n- protocol: fake\n  servers: []\n  servers: [{}]\n")
        self.assertIn("duplicate key 'servers'", p.message)
        self.assertEqual(p.line, 4)

    def test_notAMapping(self) -> None:
        """
        A top level that is not a mapping is refused.
        """
        [p] = problems("- a\n- b\n")
        self.assertIn("expected a mapping", p.message)

    def test_renderedMessage(self) -> None:
        """
        The rendered error names the file, the path and the line.
        """
        with self.assertRaises(ConfigError) as ctx:
            parse("routers:\n- protocol: fake\n  servers:\n  - prot: 1\n")
        text = str(ctx.exception)
        self.assertIn("test.yaml", text)
        self.assertIn("routers[0].servers[0].prot (line 4)", text)


class FileTests(SynchronousTestCase):
    """
    Loading from files.
    """

    def test_missingFile(self) -> None:
        """
        A file that cannot be read is a ConfigError naming the reason.
        """
        with self.assertRaises(ConfigError) as ctx:
            loadLinkerConfig("/nonexistent/linkerpy.yaml", REGISTRY)
        self.assertIn("cannot read configuration file", str(ctx.exception))

    def test_file(self) -> None:
        """
        A file on disk loads.
        """
        fd, path = tempfile.mkstemp(suffix=".yaml")
        self.addCleanup(os.remove, path)
        with os.fdopen(fd, "w") as f:
            f.write("routers:\n- protocol: fake\n  servers: [{port: 9}]\n")
        config = loadLinkerConfig(path, REGISTRY)
        self.assertEqual(config.routers[0].config.servers[0].port, 9)


@attrs.frozen
class Inner:
    values: Tuple[float, ...] = setting((1.0,))
    mode: str = setting("a", check=lambda v: None if v in ("a", "b") else "mode must be a or b")


@attrs.frozen
class Outer:
    inner: Inner = setting(attrs.Factory(Inner))
    names: Tuple[str, ...] = setting(())
    count: Optional[int] = setting(None)

    def validateConfig(self):
        if self.count is not None and self.count > len(self.names):
            yield "count", "count exceeds the number of names"


class StructureTests(SynchronousTestCase):
    """
    The generic structurer.
    """

    def test_nested(self) -> None:
        """
        Nested classes, tuples, optionals and floats structure.
        """
        value = structure(Outer, {"inner": {"values": [1, 2.5]}, "names": ["x"], "count": 1}, REGISTRY)
        self.assertEqual(value, Outer(Inner((1.0, 2.5)), ("x",), 1))

    def test_validate(self) -> None:
        """
        validateConfig problems name their key.
        """
        with self.assertRaises(ConfigError) as ctx:
            structure(Outer, {"count": 2}, REGISTRY, path="x")
        self.assertEqual(ctx.exception.problems[0].path, "x.count")

    def test_check(self) -> None:
        """
        Field checks apply to nested values.
        """
        with self.assertRaises(ConfigError) as ctx:
            structure(Outer, {"inner": {"mode": "c"}}, REGISTRY)
        self.assertEqual(ctx.exception.problems[0].path, "inner.mode")

    def test_listOfWrongType(self) -> None:
        """
        Each bad list item is reported with its index.
        """
        with self.assertRaises(ConfigError) as ctx:
            structure(Outer, {"names": ["a", 3, "c", []]}, REGISTRY)
        self.assertEqual([p.path for p in ctx.exception.problems], ["names[1]", "names[3]"])
