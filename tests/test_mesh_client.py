"""
Tests for the router side of the mesh API (L{linkerpy.mesh}): the
C{io.l5d.mesh} interpreter and policy source against an in-memory namerd
(see L{tests.test_mesh_server.MeshHarness}): streams, last good values,
reconnection with backoff, metrics and the admin page.
"""

from __future__ import annotations

import json
from typing import Any, List

from twisted.trial.unittest import SynchronousTestCase

from linkerpy.mesh.config import MeshPolicyConfig
from linkerpy.mesh.interpreter import MeshInterpreter
from linkerpy.mesh.policy import MeshPolicySource
from linkerpy.namerd.mesh.framing import Status
from linkerpy.naming import AddrNeg, Dtab, Failed, Ok, Path, Pending
from linkerpy.plugins.context import BuildContext
from linkerpy.plugins.registry import defaultRegistry
from tests.test_mesh_server import MeshHarness, bound

POLICY = {"service": {"kind": "io.l5d.static", "configs": [{"prefix": "/svc/a", "totalTimeoutMs": 600}]}}


class Observed:
    """
    Records every state of an activity (or value of a var).
    """

    def __init__(self, observable: Any) -> None:
        self.values: List[Any] = []
        self.obs = observable.observe(self.values.append)

    @property
    def last(self) -> Any:
        return self.values[-1]

    def close(self) -> None:
        self.obs.close()


def leafIds(state: Any) -> List[str]:
    return [leaf.value.id.show for leaf in state.value.leaves()]


class InterpreterTests(SynchronousTestCase):
    """
    L{MeshInterpreter}.
    """

    def setUp(self) -> None:
        self.h = MeshHarness(dtabs={"default": "/svc=>/#/test"})
        self.context = BuildContext(reactor=self.h.clock, metrics=self.h.metrics, registry=defaultRegistry())
        self.interp = MeshInterpreter(self.h.config, self.context, connection=self.h.connection)

    def bind(self, path: str, dtab: str = "") -> Observed:
        observed = Observed(self.interp.bind(Dtab.read(dtab), Path.read(path)))
        self.h.pump()
        self.addCleanup(observed.close)
        return observed

    def metric(self, name: str) -> float:
        return self.h.metrics.flatten()[f"mesh/default/{name}"]

    def test_bindWaitsForReplicas(self) -> None:
        """
        A bound tree is handed over only once its leaves' replicas are known; addresses then follow the stream.
        """
        a = self.h.namer.add("a")
        bind = self.bind("/svc/a")
        self.assertEqual(bind.values, [Pending])
        a.update(bound(1))
        self.h.pump()
        self.assertIsInstance(bind.last, Ok)
        self.assertEqual(leafIds(bind.last), ["/#/test/a"])
        (leaf,) = bind.last.value.leaves()
        addrs = Observed(leaf.value.addr)
        self.assertEqual(addrs.last, bound(1))
        a.update(bound(1, 2))
        self.h.pump()
        self.assertEqual(addrs.last, bound(1, 2))
        addrs.close()

    def test_requestDtab(self) -> None:
        """
        The router's dtab travels with the bind request and applies after the namespace's.
        """
        self.h.namer.add("a", bound(1))
        self.h.namer.add("b", bound(2))
        bind = self.bind("/svc/a", "/svc/a=>/#/test/b")
        self.assertEqual(leafIds(bind.last), ["/#/test/b"])

    def test_dtabChangeMovesBinding(self) -> None:
        """
        A dtab change reaches the router; the previous tree stays until the new leaf's replicas are known.
        """
        self.h.namer.add("a", bound(1))
        b = self.h.namer.add("b")
        bind = self.bind("/svc/a")
        self.assertEqual(leafIds(bind.last), ["/#/test/a"])
        self.successResultOf(self.h.store.update("dtabs", "default", "/svc=>/#/test;/svc/a=>/#/test/b", None))
        self.h.pump()
        # Held back (Pending) while b's replicas are unknown; the router keeps the old tree.
        self.assertIs(bind.last, Pending)
        b.update(bound(2))
        self.h.pump()
        self.assertEqual(leafIds(bind.last), ["/#/test/b"])
        self.assertGreaterEqual(self.metric("updates"), 4)

    def test_sharedReplicaStreams(self) -> None:
        """
        Two names bound to one id share one replicas stream; streams stop when nothing observes them.
        """
        self.h.namer.add("a", bound(1))
        one = self.bind("/svc/a")
        two = self.bind("/svc/a", "/x=>/y")
        self.assertEqual(sorted(s.kind for s in self.h.connection.streams), ["bind", "bind", "replicas"])
        self.assertEqual(self.metric("streams"), 3)
        self.assertEqual(self.metric("connected"), 1.0)
        one.close()
        two.close()
        self.h.pump()
        self.assertEqual(self.h.connection.streams, [])
        self.assertEqual(self.h.server.calls, set())

    def test_keepsLastGoodAndReconnects(self) -> None:
        """
        When namerd goes away the binding and addresses stay; the streams are called again with backoff and,
        once namerd is back, follow its changes again.
        """
        a = self.h.namer.add("a", bound(1))
        self.h.namer.add("b", bound(2))
        bind = self.bind("/svc/a")
        (leaf,) = bind.last.value.leaves()
        addrs = Observed(leaf.value.stableAddr)
        self.addCleanup(addrs.close)
        before = len(bind.values)
        self.h.refusing = True
        self.h.dropConnections()
        self.assertEqual(len(bind.values), before)
        self.assertEqual(addrs.last, bound(1))
        self.assertEqual(self.metric("connected"), 0.0)
        self.assertTrue(all(s.state == "backoff" for s in self.h.connection.streams))
        # Several failed attempts, each after a growing delay.
        for _ in range(4):
            self.h.clock.advance(8.0)
            self.h.pump()
        self.assertGreaterEqual(self.metric("reconnects"), 6)
        self.assertIn("cannot reach namerd", self.h.connection.streams[0].lastError)
        self.assertEqual(addrs.last, bound(1))
        self.assertIsInstance(bind.last, Ok)
        # namerd is back with changes.
        self.h.refusing = False
        a.update(bound(1, 3))
        self.successResultOf(self.h.store.update("dtabs", "default", "/svc=>/#/test;/svc/a=>/#/test/a & /#/test/b", None))
        self.h.clock.advance(8.0)
        self.h.pump()
        self.assertEqual(self.metric("connected"), 1.0)
        self.assertEqual(sorted(leafIds(bind.last)), ["/#/test/a", "/#/test/b"])
        self.assertEqual(addrs.last, bound(1, 3))

    def test_bindFailure(self) -> None:
        """
        A binding that fails before any good answer is Failed; after a good one, the good one stays.
        """
        self.successResultOf(self.h.store.update("dtabs", "default", "/svc/a=>/x;/x=>/svc/a", None))
        bind = self.bind("/svc/a")
        self.assertIsInstance(bind.last, Failed)
        self.assertGreaterEqual(self.metric("errors"), 1)
        self.h.namer.add("a", bound(1))
        self.successResultOf(self.h.store.update("dtabs", "default", "/svc=>/#/test", None))
        self.h.clock.advance(1.0)
        self.h.pump()
        self.assertIsInstance(bind.last, Ok)
        self.successResultOf(self.h.store.update("dtabs", "default", "/svc/a=>/x;/x=>/svc/a", None))
        self.h.pump()
        self.assertIsInstance(bind.last, Ok)
        self.assertEqual(self.h.connection.streams[0].state, "backoff")

    def test_negReplicas(self) -> None:
        """
        Replicas reported Neg reach the router (the name went away).
        """
        a = self.h.namer.add("a", bound(1))
        bind = self.bind("/svc/a")
        (leaf,) = bind.last.value.leaves()
        addrs = Observed(leaf.value.addr)
        a.update(AddrNeg)
        self.h.pump()
        self.assertIs(addrs.last, AddrNeg)
        addrs.close()

    def test_delegate(self) -> None:
        """
        delegate() returns the delegation tree with each leaf's addresses.
        """
        self.h.namer.add("a", bound(1))
        d = self.interp.delegate(Dtab.read("/extra=>/svc/a"), Path.read("/extra"))
        self.h.pump()
        tree = self.successResultOf(d)
        self.assertEqual(
            tree.toJSON(),
            {
                "type": "delegate", "path": "/extra",
                "delegate": {
                    "type": "delegate", "path": "/svc/a", "dentry": {"prefix": "/extra", "dst": "/svc/a"},
                    "delegate": {
                        "type": "leaf", "path": "/#/test/a", "dentry": {"prefix": "/svc", "dst": "/#/test"},
                        "bound": {"addr": {"type": "bound", "addrs": [{"ip": "127.0.0.1", "port": 1, "meta": {}}], "meta": {}},
                                  "id": "/#/test/a", "path": "/"},
                    },
                },
            },
        )

    def test_adminState(self) -> None:
        """
        The admin page lists the connection and every stream with its state and last value.
        """
        self.h.namer.add("a", bound(1))
        self.bind("/svc/a")
        (path,) = self.interp.adminResources()
        self.assertEqual(path, "/interpreter_state/io.l5d.mesh/default.json")
        state = json.loads(json.dumps(self.interp.state()))
        self.assertEqual(state["dst"], "/$/inet/127.0.0.1/4321")
        self.assertEqual(state["root"], "/default")
        self.assertTrue(state["connected"])
        byKind = {s["kind"]: s for s in state["streams"]}
        self.assertEqual(byKind["bind"]["value"], "/#/test/a")
        self.assertEqual(byKind["bind"]["method"], "/io.linkerd.mesh.Interpreter/StreamBoundTree")
        self.assertEqual(byKind["replicas"]["value"]["addrs"], [{"ip": "127.0.0.1", "port": 1, "meta": {}}])

    def test_close(self) -> None:
        """
        Closing the interpreter (the router stops) ends its streams on the server.
        """
        self.h.namer.add("a", bound(1))
        self.bind("/svc/a")
        self.assertEqual(len(self.h.server.calls), 2)
        self.interp.close()
        self.h.pump()
        self.assertEqual(self.h.server.calls, set())


class PolicySourceTests(SynchronousTestCase):
    """
    L{MeshPolicySource}.
    """

    def setUp(self) -> None:
        self.h = MeshHarness()
        self.context = BuildContext(reactor=self.h.clock, metrics=self.h.metrics, registry=defaultRegistry())
        self.config = MeshPolicyConfig(dst=self.h.config.dst, retry=self.h.config.retry)

    def source(self, scope: str = "service") -> MeshPolicySource:
        source = MeshPolicySource(self.config, scope, "http", self.context, connection=self.h.connection)
        self.addCleanup(source.stop)
        self.h.pump()
        return source

    def put(self, document: Any) -> None:
        self.successResultOf(self.h.store.update("policy", "default", json.dumps(document), None))
        self.h.pump()

    def test_entries(self) -> None:
        """
        The section's entries follow the document; no document means no entries.
        """
        source = self.source()
        self.assertEqual(source.entries().sample(), ())
        self.put(POLICY)
        (entry,) = source.entries().sample()
        self.assertEqual(entry.values, {"totalTimeoutMs": 600})
        self.assertEqual(entry.origin, "namerd:default/service.configs[0]")
        changed = json.loads(json.dumps(POLICY))
        changed["service"]["configs"][0]["totalTimeoutMs"] = 100
        seen = Observed(source.entries())
        self.put(changed)
        self.assertEqual(seen.last[0].values, {"totalTimeoutMs": 100})
        seen.close()
        self.assertIn("root=/default", source.describe())

    def test_otherScope(self) -> None:
        """
        A client source ignores the service section.
        """
        source = self.source("client")
        self.put(POLICY)
        self.assertEqual(source.entries().sample(), ())

    def test_unusableSection(self) -> None:
        """
        A section this router cannot use is counted and the last good entries stay.
        """
        source = self.source()
        self.put(POLICY)
        good = source.entries().sample()
        self.put({"service": {"kind": "io.l5d.static", "configs": [{"prefix": "/svc/a", "totalTimeoutMs": "soon"}]}})
        self.assertEqual(source.entries().sample(), good)
        self.assertEqual(self.h.metrics.flatten()["mesh/default/policy_errors"], 1)
        self.assertIn("totalTimeoutMs", source.lastError)
        self.put({"service": {"kind": "io.l5d.mesh", "dst": "127.0.0.1:4321"}})
        self.assertEqual(source.entries().sample(), good)
        self.assertEqual(self.h.metrics.flatten()["mesh/default/policy_errors"], 2)

    def test_keepsPolicyWhileAway(self) -> None:
        """
        While namerd is away the entries stay; they follow changes again once it is back.
        """
        source = self.source()
        self.put(POLICY)
        self.h.refusing = True
        self.h.dropConnections()
        self.h.clock.advance(8.0)
        self.h.pump()
        self.assertEqual(len(source.entries().sample()), 1)
        self.h.refusing = False
        self.successResultOf(self.h.store.delete("policy", "default"))
        self.h.clock.advance(8.0)
        self.h.pump()
        self.assertEqual(source.entries().sample(), ())

    def test_unimplemented(self) -> None:
        """
        A namerd without the Policy service (UNIMPLEMENTED) is retried with backoff, and the error is shown.
        """
        del self.h.server.methods[b"/io.linkerd.mesh.Policy/StreamPolicy"]
        source = self.source()
        self.assertEqual(source.stream.state, "backoff")
        self.assertIn("UNIMPLEMENTED", source.stream.lastError)
        self.h.clock.advance(1.0)
        self.h.pump()
        self.assertEqual(source.stream.reconnects, 2)
        self.assertEqual(self.h.serverMetrics.counter("status", str(Status.UNIMPLEMENTED)).value, 2)
