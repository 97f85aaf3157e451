"""
Tests for policy matching, folding and module ordering (L{linkerpy.policy}).
"""

from __future__ import annotations

from typing import Optional

import attrs
from twisted.plugin import IPlugin
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from linkerpy.config.errors import ConfigError
from linkerpy.config.structure import setting, structurePlugin
from linkerpy.interfaces import IPolicyModulePlugin, IPolicySourcePlugin
from linkerpy.naming import Path
from linkerpy.plugins.context import BuildContext
from linkerpy.plugins.registry import PluginRegistry
from linkerpy.policy.entries import PolicyKeyConflict, entryType, fold
from linkerpy.policy.matching import PathMatcher
from linkerpy.policy.stack import StackOrderError, buildStack, orderModules


class MatcherTests(SynchronousTestCase):
    """
    Prefix patterns: literals, C{*}, C{{var}} captures.
    """

    def test_literalPrefix(self) -> None:
        """
        A literal pattern matches names it prefixes, segment-wise.
        """
        m = PathMatcher("/svc/hello")
        self.assertEqual(m.match(Path.read("/svc/hello")), {})
        self.assertEqual(m.match(Path.read("/svc/hello/v2")), {})
        self.assertIsNone(m.match(Path.read("/svc/hellos")))
        self.assertIsNone(m.match(Path.read("/svc")))

    def test_root(self) -> None:
        """
        C{/} matches everything.
        """
        self.assertEqual(PathMatcher("/").match(Path.read("/")), {})
        self.assertEqual(PathMatcher("/").match(Path.read("/a/b")), {})

    def test_wildcard(self) -> None:
        """
        C{*} matches any one segment.
        """
        m = PathMatcher("/svc/*/v1")
        self.assertEqual(m.match(Path.read("/svc/a/v1")), {})
        self.assertIsNone(m.match(Path.read("/svc/a/v2")))

    def test_captures(self) -> None:
        """
        C{{var}} captures are greedy like Linkerd's and substitute into templates.
        """
        m = PathMatcher("/#/io.l5d.fs/{service}")
        captures = m.match(Path.read("/#/io.l5d.fs/users/x"))
        self.assertEqual(captures, {"service": "users"})
        self.assertEqual(m.substitute("{service}.linkerd.io", captures), "users.linkerd.io")
        self.assertEqual(PathMatcher("/{a}-{b}").match(Path.read("/x-y-z")), {"a": "x-y", "b": "z"})
        self.assertEqual(PathMatcher("/{host}.com").match(Path.read("/example.com")), {"host": "example"})
        self.assertIsNone(PathMatcher("/{host}.com").match(Path.read("/example.org")))

    def test_invalid(self) -> None:
        """
        Malformed patterns are rejected with a message.
        """
        for bad in ("svc", "/svc//x", "/a b", "/{x"):
            with self.assertRaises(ValueError):
                PathMatcher(bad)


@attrs.frozen
class FooKeys:
    fooMs: Optional[int] = setting(None)


@implementer(IPlugin, IPolicyModulePlugin)
class Foo:
    """
    A third-party module placed between the built-in service modules.
    """

    kind = "foo"
    scope = "service"
    protocols = None
    configType = FooKeys
    keys = frozenset({"fooMs"})
    after = ("totalTimeout",)
    before = ("retries",)

    def newModule(self, policy, context):
        ms = policy.get("fooMs")
        if ms is None:
            return None

        class M:
            def wrap(self, call):
                return lambda exchange: ("foo", ms, call(exchange))

        return M()


def registry(*extra):
    return PluginRegistry.fromPlugins().withPlugins(extra)


class EntryTests(SynchronousTestCase):
    """
    Service/client entries: their keys, and folding.
    """

    def test_keysFromModules(self) -> None:
        """
        An http service entry accepts the core keys and every module's keys.
        """
        cls = entryType(registry(), "service", "http", withPrefix=True)
        keys = set(cls.keyOwners)
        self.assertTrue({"prefix", "totalTimeoutMs", "retries", "responseClassifier"} <= keys)
        self.assertNotIn("fooMs", keys)
        withFoo = entryType(registry(Foo()), "service", "http", withPrefix=True)
        self.assertIn("fooMs", withFoo.keyOwners)

    def test_clientKeys(self) -> None:
        """
        An http client entry accepts pool, balancer, accrual, TLS and module keys.
        """
        cls = entryType(registry(), "client", "http", withPrefix=False)
        self.assertTrue(
            {"loadBalancer", "failureAccrual", "hostConnectionPool", "tls", "requestAttemptTimeoutMs", "requeueBudget"}
            <= set(cls.keyOwners)
        )

    def test_conflict(self) -> None:
        """
        Two modules claiming a key is an error naming both.
        """

        @implementer(IPlugin, IPolicyModulePlugin)
        class Clash(Foo):
            kind = "clash"

            @property
            def configType(self):
                from linkerpy.policy.modules.timeouts import TotalTimeoutKeys

                return TotalTimeoutKeys

        with self.assertRaises(PolicyKeyConflict) as ctx:
            entryType(registry(Clash()), "service", "http", withPrefix=False)
        self.assertIn("totalTimeoutMs", str(ctx.exception))

    def structure(self, raw, scope="service", reg=None):
        reg = reg or registry()
        return structurePlugin(IPolicySourcePlugin, raw, reg, path="routers[0].service", pluginArgs={"scope": scope, "protocol": "http"})

    def entries(self, raw, scope="service"):
        configured = self.structure(raw, scope)
        source = configured.plugin.newPolicySource(configured.config, scope, BuildContext(reactor=None, configPath="routers[0].service"))
        return source.entries().sample()

    def test_static(self) -> None:
        """
        Every matching static entry applies in order; later keys win.
        """
        entries = self.entries(
            {
                "kind": "io.l5d.static",
                "configs": [
                    {"prefix": "/svc", "totalTimeoutMs": 1000, "retries": {"budget": {"percentCanRetry": 0.5}}},
                    {"prefix": "/svc/hello", "totalTimeoutMs": 600},
                    {"prefix": "/svc/world", "totalTimeoutMs": 100},
                ],
            }
        )
        hello = fold(entries, Path.read("/svc/hello"))
        self.assertEqual(hello.get("totalTimeoutMs"), 600)
        self.assertEqual(hello.get("retries").budget.percentCanRetry, 0.5)
        self.assertEqual([e.matcher.pattern for e in hello.matched], ["/svc", "/svc/hello"])
        self.assertEqual(hello.matched[1].origin, "routers[0].service.configs[1]")
        other = fold(entries, Path.read("/svc/other"))
        self.assertEqual(other.get("totalTimeoutMs"), 1000)
        unmatched = fold(entries, Path.read("/elsewhere"))
        self.assertIsNone(unmatched.get("totalTimeoutMs"))
        self.assertEqual(unmatched.get("totalTimeoutMs", 5), 5)

    def test_global(self) -> None:
        """
        io.l5d.global applies to every name.
        """
        entries = self.entries({"kind": "io.l5d.global", "totalTimeoutMs": 250})
        self.assertEqual(fold(entries, Path.read("/anything/at/all")).get("totalTimeoutMs"), 250)

    def test_captures(self) -> None:
        """
        Client prefixes capture variables for templates.
        """
        entries = self.entries(
            {"kind": "io.l5d.static", "configs": [{"prefix": "/#/io.l5d.fs/{service}", "tls": {"commonName": "{service}.example.com"}}]},
            scope="client",
        )
        folded = fold(entries, Path.read("/#/io.l5d.fs/users"))
        self.assertEqual(folded.captures, {"service": "users"})
        self.assertEqual(folded.get("tls").commonName, "{service}.example.com")

    def test_badKeyNamesPath(self) -> None:
        """
        A misspelt key in an entry names its full path.
        """
        with self.assertRaises(ConfigError) as ctx:
            self.structure({"kind": "io.l5d.static", "configs": [{"prefix": "/svc", "totalTimeoutMS": 5}]})
        [p] = ctx.exception.problems
        self.assertEqual(p.path, "routers[0].service.configs[0].totalTimeoutMS")
        self.assertIn("did you mean 'totalTimeoutMs'", p.message)

    def test_badPrefix(self) -> None:
        """
        A bad prefix pattern is reported at its key.
        """
        with self.assertRaises(ConfigError) as ctx:
            self.structure({"kind": "io.l5d.static", "configs": [{"prefix": "svc"}]})
        self.assertEqual(ctx.exception.problems[0].path, "routers[0].service.configs[0].prefix")

    def test_missingPrefix(self) -> None:
        """
        Static entries need a prefix.
        """
        with self.assertRaises(ConfigError) as ctx:
            self.structure({"kind": "io.l5d.static", "configs": [{"totalTimeoutMs": 5}]})
        self.assertIn("missing required key 'prefix'", str(ctx.exception))

    def test_clientKeyInService(self) -> None:
        """
        A client-only key in a service entry is an unknown key.
        """
        with self.assertRaises(ConfigError) as ctx:
            self.structure({"kind": "io.l5d.global", "requestAttemptTimeoutMs": 5})
        self.assertIn("unknown key 'requestAttemptTimeoutMs'", str(ctx.exception))


class OrderTests(SynchronousTestCase):
    """
    Module ordering by role constraints.
    """

    def test_builtinOrder(self) -> None:
        """
        Built-in modules keep their documented order.
        """
        reg = registry()
        service = [p.kind for p in orderModules([p for p in reg.plugins(IPolicyModulePlugin) if p.scope == "service"], "service")]
        client = [p.kind for p in orderModules([p for p in reg.plugins(IPolicyModulePlugin) if p.scope == "client"], "client")]
        self.assertEqual(service, ["totalTimeout", "retries"])
        self.assertEqual(client, ["attemptTimeout", "requeues"])

    def test_thirdPartyPlaced(self) -> None:
        """
        A third-party module sits where its before/after constraints say.
        """
        reg = registry(Foo())
        plugins = [p for p in reg.plugins(IPolicyModulePlugin) if p.scope == "service"]
        self.assertEqual([p.kind for p in orderModules(plugins, "service")], ["totalTimeout", "foo", "retries"])

    def test_cycle(self) -> None:
        """
        Contradictory constraints are a start-up error.
        """

        @implementer(IPlugin, IPolicyModulePlugin)
        class Bad(Foo):
            kind = "bad"
            after = ("retries",)
            before = ("totalTimeout",)

        reg = registry(Bad())
        plugins = [p for p in reg.plugins(IPolicyModulePlugin) if p.scope == "service"]
        with self.assertRaises(StackOrderError):
            orderModules(plugins, "service")

    def test_unknownRole(self) -> None:
        """
        A constraint naming an unknown role is an error.
        """

        @implementer(IPlugin, IPolicyModulePlugin)
        class Lost(Foo):
            kind = "lost"
            after = ("nosuchrole",)

        with self.assertRaises(StackOrderError):
            orderModules([Lost()], "service")

    def test_unusedModulesLeftOut(self) -> None:
        """
        A module with nothing configured is not in the stack at all.
        """
        from linkerpy.policy.entries import FoldedPolicy

        terminal = lambda exchange: "terminal"  # noqa: E731
        empty = FoldedPolicy(Path.read("/svc/a"), {}, {}, ())
        self.assertIs(buildStack([Foo()], empty, None, terminal), terminal)
        configured = FoldedPolicy(Path.read("/svc/a"), {"fooMs": 3}, {}, ())
        self.assertEqual(buildStack([Foo()], configured, None, terminal)(None), ("foo", 3, "terminal"))


class DefaultKindTests(SynchronousTestCase):
    """
    As in Linkerd, service: and client: default to io.l5d.global without a kind.
    """

    def test_noKind(self) -> None:
        """
        A service: mapping with no kind is an io.l5d.global one.
        """
        from linkerpy.config.load import loadText
        from linkerpy.config.model import parseLinkerConfig

        config = parseLinkerConfig(
            loadText("routers:\n- protocol: http\n  servers: [{port: 0}]\n  service:\n    totalTimeoutMs: 250\n  client:\n    requestAttemptTimeoutMs: 50\n"),
            registry(),
        )
        router = config.routers[0].config
        self.assertEqual((router.service.kind, router.client.kind), ("io.l5d.global", "io.l5d.global"))
        self.assertEqual(router.service.config.totalTimeoutMs, 250)
        self.assertEqual(router.client.config.requestAttemptTimeoutMs, 50)
