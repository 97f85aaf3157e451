"""
Tests for the system namers, io.l5d.rewrite, transformers and the naming plugin descriptors.
"""

from __future__ import annotations

from typing import Any, List

from twisted.internet import reactor as globalReactor
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from linkerpy.config.errors import ConfigError
from linkerpy.config.structure import structurePlugin
from linkerpy.interfaces import IInterpreter, IInterpreterPlugin, INamer, INamerPlugin, ITransformer, ITransformerPlugin
from linkerpy.naming import (
    AddrBound,
    AddrFailed,
    AddrNeg,
    AddrPending,
    Address,
    Bound,
    Dtab,
    Empty,
    Fail,
    Leaf,
    Neg,
    Ok,
    Path,
    Var,
)
from linkerpy.naming import plugins as P
from linkerpy.naming.binding import UnknownNamer
from linkerpy.naming.interpreter import ConfiguredNamersInterpreter
from linkerpy.naming.rewrite import PathMatcher, RewritingNamer
from linkerpy.naming.system import InetResolver, SystemNamer, literalAddress
from linkerpy.naming.transformers import (
    ConstTransformer,
    FilteringTransformer,
    PortTransformer,
    ReplaceTransformer,
    localAddresses,
    stripTransformerPrefix,
)
from linkerpy.plugins.context import BuildContext
from linkerpy.plugins.registry import PluginRegistry
from tests.naming_support import vectors


def _p(s: str) -> Path:
    return Path.read(s)


class SystemNamerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.namer = SystemNamer(self.clock)

    def test_inetForms(self) -> None:
        """Host/port and port-only inet paths bind with the right id and residual; bad ports are unknown namers."""
        leaf = self.namer.lookup(_p("/$/inet/127.0.0.1/8080/x"))
        self.assertEqual((leaf.value.id, leaf.value.residual), (_p("/$/inet/127.0.0.1/8080"), _p("/x")))
        self.assertEqual(leaf.value.addr.sample(), AddrBound([Address("127.0.0.1", 8080)]))
        leaf = self.namer.lookup(_p("/$/inet/1234/foobar"))
        self.assertEqual((leaf.value.id, leaf.value.residual), (_p("/$/inet/1234"), _p("/foobar")))
        leaf = self.namer.lookup(_p("/$/fixedinet/::1/80"))
        self.assertEqual(leaf.value.addr.sample(), AddrBound([Address("::1", 80)]))
        self.assertRaises(UnknownNamer, self.namer.lookup, _p("/$/inet"))
        self.assertRaises(UnknownNamer, self.namer.lookup, _p("/$/inet/localhost/x"))
        self.assertIsInstance(self.namer.lookup(_p("/$/inet/h/99999")).value.addr.sample(), AddrFailed)

    def test_shortIPv4AndLiterals(self) -> None:
        """127.1 is an IPv4 literal (127.0.0.1) resolved without DNS; bracketed IPv6 works."""
        self.assertEqual(literalAddress("127.1"), "127.0.0.1")
        self.assertEqual(literalAddress("[::1]"), "::1")
        self.assertIsNone(literalAddress("localhost"))
        self.assertEqual(self.namer.lookup(_p("/$/inet/127.1/8080")).value.addr.sample(),
                         AddrBound([Address("127.0.0.1", 8080)]))

    def test_failNilNeg(self) -> None:
        """/$/fail is Fail, /$/nil is Empty, other paths are Neg, unknown /$/x raise UnknownNamer."""
        self.assertIs(self.namer.lookup(_p("/$/fail/x")), Fail)
        self.assertIs(self.namer.lookup(_p("/$/nil/x")), Empty)
        self.assertIs(self.namer.lookup(_p("/svc/x")), Neg)
        self.assertIs(self.namer.lookup(_p("/$")), Neg)
        e = self.assertRaises(UnknownNamer, self.namer.lookup, _p("/$/com.example.Nope/a"))
        self.assertEqual(str(e), "Unknown namer: com.example.Nope for path: /$/com.example.Nope/a")

    def test_rewriters(self) -> None:
        """The io.buoyant rewriters produce paths to delegate again."""
        cases = {
            "/$/io.buoyant.hostportPfx/pfx/host:8080/rest": "/pfx/host/8080/rest",
            "/$/io.buoyant.porthostPfx/pfx/host:8080/rest": "/pfx/8080/host/rest",
            "/$/io.buoyant.http.domainToPathPfx/pfx/foo.buoyant.io": "/pfx/io/buoyant/foo",
            "/$/io.buoyant.http.domainToPath/foo.buoyant.io/x": "/io/buoyant/foo/x",
            "/$/io.buoyant.http.subdomainOfPfx/a.b/foo/bar.a.b:9090/bah": "/foo/bar/bah",
            "/$/io.buoyant.http.subdomainOf/a.b/foo.a.b/bar/bah": "/foo/bar/bah",
            "/$/io.buoyant.http.anyMethod/GET/foo/bar": "/foo/bar",
            "/$/io.buoyant.http.anyMethodPfx/foo/GET/bar": "/foo/bar",
            "/$/io.buoyant.http.anyHost/a.b/foo": "/foo",
            "/$/io.buoyant.http.anyHostPfx/foo/a.b/bar": "/foo/bar",
        }
        for path, expected in cases.items():
            self.assertEqual(self.namer.lookup(_p(path)), Leaf(_p(expected)), path)
        for neg in ["/$/io.buoyant.hostportPfx/pfx/nohostport", "/$/io.buoyant.http.anyMethod/A.B/foo",
                    "/$/io.buoyant.http.subdomainOfPfx/a.b/foo/bar.c.d"]:
            self.assertIs(self.namer.lookup(_p(neg)), Neg, neg)

    def test_rinet(self) -> None:
        """/$/io.buoyant.rinet/<port>/<host> binds like inet with the arguments swapped."""
        leaf = self.namer.lookup(_p("/$/io.buoyant.rinet/8080/127.0.0.1/x"))
        self.assertEqual(leaf.value.id, _p("/$/io.buoyant.rinet/8080/127.0.0.1"))
        self.assertEqual(leaf.value.residual, _p("/x"))
        self.assertEqual(leaf.value.addr.sample(), AddrBound([Address("127.0.0.1", 8080)]))


class InetRefreshTests(SynchronousTestCase):
    def test_refreshAndRelease(self) -> None:
        """An observed hostname is resolved, refreshed every interval, and no longer refreshed once released."""
        clock = MemoryReactorClock()
        answers: List[List[str]] = [["10.0.0.1"], ["10.0.0.2"], []]
        calls: List[str] = []

        class Resolver:
            def resolveHostName(self, receiver: Any, host: str, port: int = 0, *a: Any, **k: Any) -> Any:
                calls.append(host)
                receiver.resolutionBegan(None)
                for ip in answers.pop(0) if answers else []:
                    receiver.addressResolved(type("A", (), {"host": ip})())
                receiver.resolutionComplete()

        clock.nameResolver = Resolver()
        var = InetResolver(clock, refresh=5).addr("svc.example", 80)
        seen: List[Any] = []
        c = var.observe(seen.append)
        self.assertEqual(seen[-1], AddrBound([Address("10.0.0.1", 80)]))
        clock.advance(5)
        self.assertEqual(seen[-1], AddrBound([Address("10.0.0.2", 80)]))
        clock.advance(5)
        self.assertIsInstance(seen[-1], AddrFailed)
        c.close()
        clock.advance(50)
        self.assertEqual(len(calls), 3)
        self.assertEqual(clock.getDelayedCalls(), [])


class InetRealDNSTests(TestCase):
    timeout = 60

    def test_localhost(self) -> None:
        """/$/inet/localhost/<port> resolves through the reactor's resolver (IPv4 and/or IPv6 loopback)."""
        inet = InetResolver(globalReactor, refresh=3600)
        var = inet.addr("localhost", 4140)
        closable = var.observe(lambda v: None)
        self.addCleanup(closable.close)
        d = var.changesTo(lambda a: a is not AddrPending)

        def check(addr: Any) -> None:
            self.assertIsInstance(addr, AddrBound)
            hosts = {a.host for a in addr.addresses}
            self.assertTrue(hosts & {"127.0.0.1", "::1"}, hosts)
            self.assertEqual({a.port for a in addr.addresses}, {4140})

        return d.addCallback(check)


class RewriteTests(SynchronousTestCase):
    def test_vectors(self) -> None:
        """Every rewrite_namer vector rewrites as recorded (None for Neg)."""
        cases = vectors("rewrite_namer")
        self.assertTrue(cases)
        for case in cases:
            tree = RewritingNamer(case["pattern"], case["name"]).lookup(_p(case["path"])).sample()
            got = None if tree is Neg else tree.value.show
            self.assertEqual(got, case["result"], case)

    def test_greedyCaptures(self) -> None:
        """Captures are greedy: {foo}-{bar} on a-b-c gives foo=a-b, bar=c."""
        self.assertEqual(PathMatcher("/{foo}-{bar}").extract(_p("/a-b-c")), {"foo": "a-b", "bar": "c"})

    def test_throughInterpreter(self) -> None:
        """A rewrite namer's path is delegated again through the dtab."""
        namer = RewritingNamer("/{svc}", "/srv/{svc}")
        interp = ConfiguredNamersInterpreter(MemoryReactorClock(), [(_p("/#/rw"), namer)])
        state = interp.bind(Dtab.read("/svc=>/#/rw;/srv=>/$/inet/127.0.0.1"), _p("/svc/8080/dropped")).states.sample()
        self.assertEqual(state.value.show, "/$/inet/127.0.0.1/8080")

    def test_badSubstitution(self) -> None:
        """A name that does not parse after substitution fails the lookup."""
        self.assertRaises(ValueError, RewritingNamer("/{a}", "/x/{b}").lookup(_p("/q")).sample)


def _bound(id: str, *ports: int) -> Bound:
    return Bound(_p(id), Var(AddrBound([Address("127.0.0.1", p) for p in ports])))


class TransformerTests(SynchronousTestCase):
    def test_port(self) -> None:
        """io.l5d.port rewrites every port and prefixes the id with /%/io.l5d.port/<port>."""
        t = PortTransformer(4141)
        tree = t.transform(Leaf(_bound("/#/io.l5d.fs/hello", 1, 2))).sample()
        b = tree.value
        self.assertEqual(b.id, _p("/%/io.l5d.port/4141/#/io.l5d.fs/hello"))
        self.assertEqual(b.addr.sample(), AddrBound([Address("127.0.0.1", 4141)]))
        self.assertEqual(stripTransformerPrefix(b.id), _p("/#/io.l5d.fs/hello"))

    def test_filtering(self) -> None:
        """Filtering keeps only allowed IPs, is Neg when nothing is left and pending until the set is known."""
        allowed: Var[Any] = Var(None)
        t = FilteringTransformer(_p("/io.l5d.specificHost"), allowed)
        b = Bound(_p("/#/d/x"), Var(AddrBound([Address("127.0.0.1", 1), Address("10.1.1.1", 2)])))
        out = t.transformBound(b)
        seen: List[Any] = []
        c = out.addr.observe(seen.append)
        allowed.update(frozenset({"10.1.1.1"}))
        allowed.update(frozenset({"10.9.9.9"}))
        self.assertEqual(seen, [AddrPending, AddrBound([Address("10.1.1.1", 2)]), AddrNeg])
        self.assertEqual(out.id, _p("/%/io.l5d.specificHost/#/d/x"))
        c.close()
        self.assertEqual(allowed.observerCount, 0)

    def test_localAddresses(self) -> None:
        """The local address set includes loopback."""
        self.assertIn("127.0.0.1", localAddresses())

    def test_replaceAndConst(self) -> None:
        """replace swaps bound leaves for the bound path (Neg stays); const always gives it."""
        system = SystemNamer(MemoryReactorClock())
        rep = ReplaceTransformer(system, _p("/$/inet/127.0.0.1/9"))
        tree = rep.transform(Leaf(_bound("/#/a", 1))).sample()
        self.assertEqual(tree.value.id, _p("/%/io.l5d.replace/$/inet/127.0.0.1/9"))
        self.assertEqual(tree.value.addr.sample(), AddrBound([Address("127.0.0.1", 9)]))
        self.assertIs(rep.transform(Neg).sample(), Neg)
        const = ConstTransformer(system, _p("/$/inet/127.0.0.1/9"))
        self.assertEqual(const.transform(Neg).sample().value.id, _p("/%/io.l5d.const/$/inet/127.0.0.1/9"))

    def test_interpreterTransformersAndDelegation(self) -> None:
        """Interpreter transformers apply to bound trees and appear as transformation nodes in delegation."""
        interp = ConfiguredNamersInterpreter(MemoryReactorClock(), transformers=[PortTransformer(4141)])
        dtab = Dtab.read("/svc=>/$/inet/127.0.0.1/80")
        state = interp.bind(dtab, _p("/svc")).states.sample()
        self.assertEqual(state.value.show, "/%/io.l5d.port/4141/$/inet/127.0.0.1/80")
        result: List[Any] = []
        interp.delegate(dtab, _p("/svc")).addCallback(result.append)
        self.assertEqual(
            result[0].toJSONText(),
            '{"type":"delegate","path":"/svc","delegate":{"type":"transformation","path":"/$/inet/127.0.0.1/80",'
            '"name":"PortTransformer","bound":{"addr":{"type":"bound","addrs":[{"ip":"127.0.0.1","port":80,'
            '"meta":{}}],"meta":{}},"id":"/$/inet/127.0.0.1/80","path":"/"},"tree":{"type":"leaf",'
            '"path":"/%/io.l5d.port/4141/$/inet/127.0.0.1/80","dentry":{"prefix":"/svc","dst":"/$/inet/127.0.0.1/80"},'
            '"bound":{"addr":{"type":"bound","addrs":[{"ip":"127.0.0.1","port":4141,"meta":{}}],"meta":{}},'
            '"id":"/%/io.l5d.port/4141/$/inet/127.0.0.1/80","path":"/"}}}}',
        )

    def test_verifyObjects(self) -> None:
        """Every transformer provides ITransformer."""
        system = SystemNamer(MemoryReactorClock())
        for t in [PortTransformer(1), FilteringTransformer(_p("/x"), Var(None)),
                  ReplaceTransformer(system, _p("/$/nil")), ConstTransformer(system, _p("/$/nil"))]:
            self.assertTrue(verifyObject(ITransformer, t))


class PluginTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.registry = PluginRegistry(P.PLUGINS)
        self.context = BuildContext(reactor=MemoryReactorClock(), registry=self.registry)

    def test_verifyDescriptors(self) -> None:
        """Every naming plugin descriptor provides its plugin interface."""
        for plugin in P.PLUGINS:
            for iface in (INamerPlugin, IInterpreterPlugin, ITransformerPlugin):
                if iface.providedBy(plugin):
                    self.assertTrue(verifyObject(iface, plugin))

    def test_discovery(self) -> None:
        """PluginRegistry.fromPlugins finds every naming kind."""
        registry = PluginRegistry.fromPlugins()
        self.assertTrue({"io.l5d.fs", "io.l5d.rewrite", "io.l5d.dnssrv"} <= set(registry.kinds(INamerPlugin)))
        self.assertTrue({"default", "io.l5d.fs"} <= set(registry.kinds(IInterpreterPlugin)))
        self.assertTrue({"io.l5d.port", "io.l5d.localhost", "io.l5d.specificHost", "io.l5d.replace",
                         "io.l5d.const"} <= set(registry.kinds(ITransformerPlugin)))

    def test_buildNamers(self) -> None:
        """Configured namers build with /#/<prefix> prefixes (default the kind) and their transformers."""
        raw = [
            {"kind": "io.l5d.fs", "rootDir": "/nonexistent"},
            {"kind": "io.l5d.fs", "rootDir": "/x", "prefix": "/disco", "experimental": True},
            {"kind": "io.l5d.rewrite", "prefix": "rw", "pattern": "/{a}", "name": "/b/{a}",
             "transformers": [{"kind": "io.l5d.port", "port": 80}]},
            {"kind": "io.l5d.dnssrv", "dnsHosts": ["127.0.0.1:5353", {"host": "127.0.0.2"}]},
        ]
        configured = [structurePlugin(INamerPlugin, r, self.registry, f"namers[{i}]") for i, r in enumerate(raw)]
        built = P.buildNamers(configured, self.context)
        self.assertEqual([p.show for p, _ in built], ["/#/io.l5d.fs", "/#/disco", "/#/rw", "/#/io.l5d.dnssrv"])
        for _, namer in built:
            self.assertTrue(verifyObject(INamer, namer))
        self.assertEqual(configured[3].config.servers(), [("127.0.0.1", 5353), ("127.0.0.2", 53)])

    def test_badConfigs(self) -> None:
        """Bad namer and transformer configs are ConfigErrors naming the key."""
        bad = [
            ({"kind": "io.l5d.rewrite", "pattern": "/a", "name": "/b"}, "prefix"),
            ({"kind": "io.l5d.dnssrv", "dnsHosts": ["nohost"]}, "dnsHosts[0]"),
            ({"kind": "io.l5d.fs"}, "rootDir"),
            ({"kind": "io.l5d.fs", "rootDir": "/x", "transformers": [{"kind": "io.l5d.port", "port": 0}]},
             "transformers[0].port"),
        ]
        for raw, key in bad:
            e = self.assertRaises(ConfigError, structurePlugin, INamerPlugin, raw, self.registry, "namers[0]")
            self.assertIn(key, str(e))

    def test_interpreters(self) -> None:
        """Both interpreter plugins build IInterpreters that take configured namers."""
        default = structurePlugin(IInterpreterPlugin, {"kind": "default", "transformers": [
            {"kind": "io.l5d.port", "port": 4141}]}, self.registry)
        interp = default.plugin.newInterpreter(default.config, self.context, [])
        self.assertTrue(verifyObject(IInterpreter, interp))
        state = interp.bind(Dtab.read("/s=>/$/inet/127.0.0.1/1"), _p("/s")).states.sample()
        self.assertEqual(state, Ok(state.value))
        self.assertEqual(state.value.show, "/%/io.l5d.port/4141/$/inet/127.0.0.1/1")
