"""
Tests for the router side of the control plane: the C{io.l5d.namerd.http}
interpreter and policy source against a real namerd API on a loopback
socket (bind and address streams, last good values while namerd is away,
reconnection, metrics, admin state), and the stream helpers.
"""

from __future__ import annotations

import json
from typing import Any, List, Optional

import attrs
from twisted.internet import defer, reactor
from twisted.plugin import IPlugin
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from linkerpy.config.structure import setting, structurePlugin
from linkerpy.interfaces import (
    IInterpreter,
    IInterpreterPlugin,
    IPolicyModulePlugin,
    IPolicySource,
    IPolicySourcePlugin,
    ITransformer,
    ITransformerPlugin,
)
from linkerpy.namerd.api import NamerdAPI
from linkerpy.namerd.client.interpreter import interpreterStateResources
from linkerpy.namerd.core import Namerd
from linkerpy.namerd.service import ApiSite
from linkerpy.namerd.storage.memory import InMemoryStore
from linkerpy.namerd.streaming import JSONObjectDecoder, LineDecoder, StreamTooLarge
from linkerpy.naming import (
    Activity,
    AddrBound,
    AddrPending,
    Address,
    Bound,
    Dtab,
    Failed,
    Ok,
    Path,
    Pending,
)
from linkerpy.plugins.context import BuildContext
from linkerpy.plugins.registry import defaultRegistry
from linkerpy.policy.matching import PathMatcher
from linkerpy.telemetry.metrics import MetricsTree
from tests.support import waitUntil
from tests.test_namerd_api import FakeNamer

TIMEOUT = 30.0
RETRY = {"baseSeconds": 0.05, "maxSeconds": 0.2}


@implementer(ITransformer)
class TagTransformer:
    """
    Prefixes bound ids with C{/%/tag} (like a real transformer's C{/%/<prefix>}).
    """

    prefix = Path("tag")

    def transform(self, tree: Any) -> Any:
        return Activity.value(tree.map(lambda b: Bound(Path("%", "tag") + b.id, b.addr, b.residual)))


@attrs.frozen
class TagConfig:
    pass


@implementer(IPlugin, ITransformerPlugin)
class TagTransformerPlugin:
    kind = "test.tag"
    configType = TagConfig

    def newTransformer(self, config: Any, context: Any) -> Any:
        return TagTransformer()


@attrs.frozen
class FancyKeys:
    fancyKey: Optional[int] = setting(None)


@implementer(IPlugin, IPolicyModulePlugin)
class FancyModulePlugin:
    """
    A policy module only namerd has installed (its key is unknown to routers).
    """

    kind = "fancy"
    scope = "service"
    protocols = None
    after = ()
    before = ()
    configType = FancyKeys
    keys = frozenset({"fancyKey"})

    def newModule(self, policy: Any, context: Any) -> Any:
        return None


class ServerMixin:
    """
    A namerd API (in-memory store, a fake namer at /#/test) on a loopback port.
    """

    def startServer(self, registry: Any = None) -> None:
        self.store = InMemoryStore({"dtabs": {"default": "/svc => /#/test"}})
        self.namer = FakeNamer()
        self.namerd = Namerd(self.store, [(Path.read("/#/test"), self.namer)], reactor, registry or defaultRegistry())
        self.api = NamerdAPI(self.namerd, reactor, requestTimeout=2.0)
        self.site = ApiSite(self.api, 65536, reactor)
        self.port = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.portNumber = self.port.getHost().port
        self.addCleanup(self.stopServer)

    @defer.inlineCallbacks
    def stopServer(self) -> Any:
        if self.port is not None:
            port, self.port = self.port, None
            yield port.stopListening()
        self.site.closeAll()
        yield waitUntil(lambda: not self.site.openProtocols, TIMEOUT, "server connections to close")

    def restartServer(self) -> None:
        self.port = reactor.listenTCP(self.portNumber, self.site, interface="127.0.0.1")

    def context(self, registry: Any = None) -> BuildContext:
        return BuildContext(reactor=reactor, metrics=MetricsTree(), registry=registry or defaultRegistry(),
                            configPath="routers[0].interpreter")

    def interpreter(self, context: Optional[BuildContext] = None, **extra: Any) -> Any:
        context = context or self.context()
        raw = {"kind": "io.l5d.namerd.http", "dst": f"/$/inet/127.0.0.1/{self.portNumber}", "retry": RETRY}
        raw.update(extra)
        configured = structurePlugin(IInterpreterPlugin, raw, context.registry, path="interpreter")
        return configured.plugin.newInterpreter(configured.config, context, [])

    def observe(self, activity: Any) -> List[Any]:
        states: List[Any] = []
        closable = activity.states.observe(states.append)
        self.addCleanup(closable.close)
        return states


def _ids(tree: Any) -> List[str]:
    return [leaf.value.id.show for leaf in tree.leaves()]


class InterpreterTests(ServerMixin, TestCase):
    """
    C{io.l5d.namerd.http} as an interpreter.
    """

    timeout = 120

    def setUp(self) -> None:
        self.startServer()

    @defer.inlineCallbacks
    def test_bindAndAddresses(self) -> Any:
        """
        A binding arrives once its leaf's addresses are known, and address changes reach the Bound's var.
        """
        addr = self.namer.add("hello", AddrPending)
        interp = self.interpreter()
        self.assertTrue(verifyObject(IInterpreter, interp))
        states = self.observe(interp.bind(Dtab.empty, Path.read("/svc/hello")))
        self.assertEqual(states, [Pending])
        addr.update(AddrBound([Address("127.0.0.1", 8080)]))
        yield waitUntil(lambda: isinstance(states[-1], Ok), TIMEOUT, "a binding")
        tree = states[-1].value
        self.assertEqual(_ids(tree), ["/#/test/hello"])
        bound = tree.value
        self.assertEqual(bound.addr.sample(), AddrBound([Address("127.0.0.1", 8080)]))
        addr.update(AddrBound([Address("127.0.0.1", 8081, 3.0)]))
        yield waitUntil(lambda: bound.addr.sample() == AddrBound([Address("127.0.0.1", 8081, 3.0)]), TIMEOUT, "new addresses")
        metrics = interp.connection.metrics
        self.assertEqual(metrics.gauge("connected").value, 1.0)
        self.assertEqual(metrics.gauge("streams").value, 2)
        self.assertGreaterEqual(metrics.counter("updates").value, 3)

    @defer.inlineCallbacks
    def test_dtabChangeMovesBinding(self) -> Any:
        """
        A dtab change in namerd gives a new tree; it is held back (Pending) until its addresses are known.
        """
        self.namer.add("a", AddrBound([Address("127.0.0.1", 1)]))
        b = self.namer.add("b", AddrPending)
        interp = self.interpreter()
        states = self.observe(interp.bind(Dtab.empty, Path.read("/svc/x")))
        self.store.update("dtabs", "default", "/svc/x => /#/test/a", None)
        yield waitUntil(lambda: isinstance(states[-1], Ok) and _ids(states[-1].value) == ["/#/test/a"], TIMEOUT, "a")
        self.store.update("dtabs", "default", "/svc/x => /#/test/b", None)
        yield waitUntil(lambda: states[-1] is Pending, TIMEOUT, "the new tree to wait for addresses")
        b.update(AddrBound([Address("127.0.0.1", 2)]))
        yield waitUntil(lambda: isinstance(states[-1], Ok) and _ids(states[-1].value) == ["/#/test/b"], TIMEOUT, "b")

    @defer.inlineCallbacks
    def test_localDtabSentAlong(self) -> Any:
        """
        A non-empty dtab given to bind is sent to namerd and applies after the stored one.
        """
        self.namer.add("a", AddrBound([Address("127.0.0.1", 1)]))
        interp = self.interpreter()
        states = self.observe(interp.bind(Dtab.read("/svc/y => /$/inet/127.0.0.1/9"), Path.read("/svc/y")))
        yield waitUntil(lambda: isinstance(states[-1], Ok), TIMEOUT, "a binding")
        self.assertEqual(_ids(states[-1].value), ["/$/inet/127.0.0.1/9"])

    @defer.inlineCallbacks
    def test_addressStreamsShared(self) -> Any:
        """
        Two names bound to one id share one address stream, and streams stop when nothing observes them.
        """
        self.namer.add("a", AddrBound([Address("127.0.0.1", 1)]))
        self.store.update("dtabs", "default", "/svc/x => /#/test/a; /svc/y => /#/test/a", None)
        interp = self.interpreter()
        one = interp.bind(Dtab.empty, Path.read("/svc/x")).states.observe(lambda s: None)
        two = interp.bind(Dtab.empty, Path.read("/svc/y")).states.observe(lambda s: None)
        conn = interp.connection
        yield waitUntil(lambda: conn.updates.value >= 3, TIMEOUT, "both bindings and the address")
        self.assertEqual(sorted(s.kind for s in conn.streams), ["addr", "bind", "bind"])
        one.close()
        two.close()
        self.assertEqual(conn.streams, [])
        yield waitUntil(lambda: self.api.watches == 0, TIMEOUT, "namerd to see the streams close")

    @defer.inlineCallbacks
    def test_lastGoodWhileNamerdAway(self) -> Any:
        """
        When namerd goes away the binding and addresses stay; the router reconnects and follows changes again.
        """
        self.namer.add("a", AddrBound([Address("127.0.0.1", 1)]))
        interp = self.interpreter()
        states = self.observe(interp.bind(Dtab.empty, Path.read("/svc/a")))
        yield waitUntil(lambda: isinstance(states[-1], Ok), TIMEOUT, "a binding")
        bound = states[-1].value.value
        metrics = interp.connection.metrics
        yield self.stopServer()
        yield waitUntil(lambda: metrics.counter("reconnects").value >= 2, TIMEOUT, "reconnection attempts")
        self.assertEqual(metrics.gauge("connected").value, 0.0)
        self.assertIsInstance(states[-1], Ok)
        self.assertEqual(bound.addr.sample(), AddrBound([Address("127.0.0.1", 1)]))
        self.restartServer()
        yield waitUntil(lambda: metrics.gauge("connected").value == 1.0, TIMEOUT, "reconnection")
        self.namer.addrs["a"].update(AddrBound([Address("127.0.0.1", 2)]))
        yield waitUntil(lambda: bound.addr.sample() == AddrBound([Address("127.0.0.1", 2)]), TIMEOUT, "new addresses")

    @defer.inlineCallbacks
    def test_pendingWhileNeverConnected(self) -> Any:
        """
        Before namerd has ever answered, a binding is Pending (the router's binding timeout applies).
        """
        yield self.stopServer()
        interp = self.interpreter()
        states = self.observe(interp.bind(Dtab.empty, Path.read("/svc/a")))
        metrics = interp.connection.metrics
        yield waitUntil(lambda: metrics.counter("reconnects").value >= 2, TIMEOUT, "reconnection attempts")
        self.assertEqual(states, [Pending])

    @defer.inlineCallbacks
    def test_bindingErrorReported(self) -> Any:
        """
        A binding namerd cannot do (a dtab loop) fails the activity with namerd's message.
        """
        self.store.update("dtabs", "default", "/svc => /svc", None)
        interp = self.interpreter()
        states = self.observe(interp.bind(Dtab.empty, Path.read("/svc/a")))
        yield waitUntil(lambda: isinstance(states[-1], Failed), TIMEOUT, "a failure")
        self.assertIn("Max recursion level", str(states[-1].exception))
        self.assertGreaterEqual(interp.connection.metrics.counter("errors").value, 1)

    @defer.inlineCallbacks
    def test_delegate(self) -> Any:
        """
        delegate() answers the same tree as namerd's delegate endpoint.
        """
        self.store.update("dtabs", "default", "/svc => /host; /host => /$/inet/127.0.0.1", None)
        interp = self.interpreter()
        tree = yield interp.delegate(Dtab.read("/host/9 => /$/nil"), Path.read("/svc/9"))
        local = yield self.namerd.interpreter("default").delegate(Dtab.read("/host/9 => /$/nil"), Path.read("/svc/9"))
        self.assertEqual(tree.toJSON(), local.toJSON())

    @defer.inlineCallbacks
    def test_transformers(self) -> Any:
        """
        Configured transformers apply to the bound trees namerd sends.
        """
        registry = defaultRegistry().withPlugins([TagTransformerPlugin()])
        self.namer.add("a", AddrBound([Address("127.0.0.1", 1)]))
        interp = self.interpreter(self.context(registry), transformers=[{"kind": "test.tag"}])
        states = self.observe(interp.bind(Dtab.empty, Path.read("/svc/a")))
        yield waitUntil(lambda: isinstance(states[-1], Ok), TIMEOUT, "a binding")
        self.assertEqual(_ids(states[-1].value), ["/%/tag/#/test/a"])

    @defer.inlineCallbacks
    def test_adminState(self) -> Any:
        """
        The interpreter state page shows the connection and its streams, with and without the router label.
        """
        self.namer.add("a", AddrBound([Address("127.0.0.1", 1)]))
        interp = self.interpreter()
        states = self.observe(interp.bind(Dtab.empty, Path.read("/svc/a")))
        yield waitUntil(lambda: isinstance(states[-1], Ok), TIMEOUT, "a binding")

        class Router:
            label = "out"

            def interpreter(self) -> Any:
                return interp

        resources = interpreterStateResources([Router()])
        path = "/interpreter_state/io.l5d.namerd.http/default.json"
        self.assertEqual(sorted(resources), sorted([path, "/out" + path]))
        request = DummyRequest([b""])
        body = resources[path].render_GET(request)
        state = json.loads(body)
        self.assertEqual(state["namespace"], "default")
        self.assertTrue(state["connected"])
        self.assertEqual(sorted(s["kind"] for s in state["streams"]), ["addr", "bind"])
        self.assertEqual({s["state"] for s in state["streams"]}, {"connected"})


class PolicySourceTests(ServerMixin, TestCase):
    """
    C{io.l5d.namerd.http} as a C{service:}/C{client:} policy source.
    """

    timeout = 120

    def source(self, scope: str, context: Optional[BuildContext] = None) -> Any:
        context = context or self.context()
        raw = {"kind": "io.l5d.namerd.http", "dst": f"127.0.0.1:{self.portNumber}", "retry": RETRY}
        configured = structurePlugin(
            IPolicySourcePlugin, raw, context.registry, path=scope, pluginArgs={"scope": scope, "protocol": "http"}
        )
        source = configured.plugin.newPolicySource(configured.config, scope, context)
        self.addCleanup(source.stop)
        return source

    @defer.inlineCallbacks
    def test_entriesFollowDocuments(self) -> Any:
        """
        Entries follow the namespace's document: the scope's section, structured as in a config file.
        """
        self.startServer()
        context = self.context()
        service = self.source("service", context)
        client = self.source("client", context)
        self.assertTrue(verifyObject(IPolicySource, service))
        self.assertIn(f"127.0.0.1:{self.portNumber}", service.describe())
        seen: List[Any] = []
        obs = service.entries().observe(seen.append)
        self.addCleanup(obs.close)
        document = {
            "service": {"kind": "io.l5d.static", "configs": [{"prefix": "/svc/hello", "totalTimeoutMs": 600}]},
            "client": {"kind": "io.l5d.global", "requestAttemptTimeoutMs": 50},
        }
        yield self.store.update("policy", "default", json.dumps(document), None)
        yield waitUntil(lambda: len(seen) >= 2, TIMEOUT, "service entries")
        (entry,) = seen[-1]
        self.assertEqual(entry.matcher, PathMatcher("/svc/hello"))
        self.assertEqual(entry.values, {"totalTimeoutMs": 600})
        self.assertEqual(entry.origin, "namerd:default/service.configs[0]")
        document["service"]["configs"][0]["totalTimeoutMs"] = 100
        yield self.store.update("policy", "default", json.dumps(document), None)
        yield waitUntil(lambda: len(seen) >= 3, TIMEOUT, "entries differing only in a value")
        self.assertEqual(seen[-1][0].values, {"totalTimeoutMs": 100})
        yield waitUntil(lambda: len(client.entries().sample()) == 1, TIMEOUT, "client entries")
        self.assertEqual(client.entries().sample()[0].values, {"requestAttemptTimeoutMs": 50})
        yield self.store.update("policy", "default", json.dumps({"client": document["client"]}), None)
        yield waitUntil(lambda: seen[-1] == (), TIMEOUT, "service entries to go back to defaults")
        yield self.store.delete("policy", "default")
        yield waitUntil(lambda: client.entries().sample() == (), TIMEOUT, "client entries to go back to defaults")

    @defer.inlineCallbacks
    def test_unusableDocumentKeepsLastGood(self) -> Any:
        """
        A document this router cannot structure is counted and logged; the last good entries stay.
        """
        self.startServer(defaultRegistry().withPlugins([FancyModulePlugin()]))
        service = self.source("service")
        good = {"service": {"kind": "io.l5d.global", "totalTimeoutMs": 100}}
        yield self.store.update("policy", "default", json.dumps(good), None)
        yield waitUntil(lambda: len(service.entries().sample()) == 1, TIMEOUT, "entries")
        bad = {"service": {"kind": "io.l5d.global", "fancyKey": 3}}
        yield self.store.update("policy", "default", json.dumps(bad), None)
        errors = service.connection.metrics.counter("policy_errors")
        yield waitUntil(lambda: errors.value == 1, TIMEOUT, "the error to be counted")
        self.assertEqual(service.entries().sample()[0].values, {"totalTimeoutMs": 100})
        self.assertIn("fancyKey", service.lastError)
        self.flushLoggedErrors()

    @defer.inlineCallbacks
    def test_sharedConnection(self) -> Any:
        """
        The interpreter and policy sources of one router share one connection (and its metrics).
        """
        self.startServer()
        context = self.context()
        service = self.source("service", context)
        interp = self.interpreter(context)
        self.assertIs(service.connection, interp.connection)
        yield waitUntil(lambda: service.connection.connected, TIMEOUT, "the policy stream")
        self.assertEqual(context.metrics.query("namerd/default/connected").metric.value, 1.0)


class DecoderTests(SynchronousTestCase):
    """
    The stream decoders.
    """

    def test_lines(self) -> None:
        """
        Lines are split across chunks, CRLF is tolerated, and an over-long line is refused.
        """
        lines: List[bytes] = []
        decoder = LineDecoder(lines.append, maxLineBytes=8)
        decoder.feed(b"ab")
        decoder.feed(b"c\r\nd\nef")
        self.assertEqual(lines, [b"abc", b"d"])
        self.assertEqual(decoder.leftover(), b"ef")
        self.assertRaises(StreamTooLarge, decoder.feed, b"0123456789")

    def test_jsonObjects(self) -> None:
        """
        Concatenated JSON objects are decoded across chunk and UTF-8 character boundaries.
        """
        values: List[Any] = []
        decoder = JSONObjectDecoder(values.append)
        data = '{"a": "é"}{"b": [1, 2]}\n{"c": {}}'.encode("utf-8")
        for i in range(len(data)):
            decoder.feed(data[i:i + 1])
        self.assertEqual(values, [{"a": "é"}, {"b": [1, 2]}, {"c": {}}])


