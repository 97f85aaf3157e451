"""
Tests for the C{io.l5d.etcd} store against a real etcd v3 server (Debian's
C{etcd-server}) on loopback ports with a temporary data directory: the store
contract, keys and versions, watches shared by two stores, recovery after
etcd restarts, and an unreachable etcd.
"""

from __future__ import annotations

import base64
import json
from typing import Any, List

from twisted.internet import defer, reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from linkerpy.interfaces import IDtabStore
from linkerpy.namerd.errors import NamespaceExists, NoSuchNamespace, StoreUnavailable, VersionMismatch
from linkerpy.namerd.storage.etcd import EtcdStore, prefixEnd
from linkerpy.namerd.testing import EtcdProcess, EtcdServer, freePort, requireEtcd
from linkerpy.naming import Pending
from tests.support import httpGet, waitUntil

TIMEOUT = 30.0


class EtcdStoreTests(TestCase):
    """
    The store contract on a real etcd (one server per class; each test has
    its own key prefixes).
    """

    timeout = 120
    etcd: Any = None
    counter = 0

    @classmethod
    def setUpClass(cls) -> None:
        cls.etcd = EtcdServer(requireEtcd(cls)).start()

    @classmethod
    def tearDownClass(cls) -> None:
        if cls.etcd is not None:
            cls.etcd.cleanup()

    def newStore(self, prefix: str = "") -> EtcdStore:
        if not prefix:
            EtcdStoreTests.counter += 1
            prefix = f"/c{EtcdStoreTests.counter}"
        self.prefix = prefix
        store = EtcdStore(
            self.etcd.host, self.etcd.port, {"dtabs": prefix + "/dtabs", "policy": prefix + "/policy"}, reactor,
            backoff=(0.05, 0.5),
        )
        self.addCleanup(store.close)
        return store

    @defer.inlineCallbacks
    def test_contract(self) -> Any:
        """
        Create, conflicting create, compare-and-swap, stale update, unconditional put, list, delete.
        """
        store = self.newStore()
        self.assertTrue(verifyObject(IDtabStore, store))
        yield store.start()
        v1 = yield store.create("dtabs", "b", "/a=>/b")
        yield store.create("dtabs", "a", "/x=>/y")
        yield self.assertFailure(store.create("dtabs", "b", "/c=>/d"), NamespaceExists)
        self.assertEqual((yield store.get("dtabs", "b")), ("/a=>/b", v1))
        v2 = yield store.update("dtabs", "b", "/a=>/c", v1)
        self.assertGreater(int(v2), int(v1))
        yield self.assertFailure(store.update("dtabs", "b", "/a=>/d", v1), VersionMismatch)
        yield self.assertFailure(store.update("dtabs", "b", "/a=>/d", b"garbage"), VersionMismatch)
        yield self.assertFailure(store.update("dtabs", "zz", "/a=>/d", v1), NoSuchNamespace)
        yield self.assertFailure(store.update("dtabs", "zz", "/a=>/d", b"0"), NoSuchNamespace)
        v3 = yield store.update("dtabs", "b", "/a=>/c", None)
        self.assertNotEqual(v3, v2)
        self.assertEqual((yield store.list("dtabs")), ["a", "b"])
        self.assertEqual((yield store.list("policy")), [])
        yield store.delete("dtabs", "b")
        yield self.assertFailure(store.delete("dtabs", "b"), NoSuchNamespace)
        self.assertIsNone((yield store.get("dtabs", "b")))

    @defer.inlineCallbacks
    def test_keysAndValues(self) -> Any:
        """
        Documents live at <prefix>/<namespace> with the text as value, and versions are mod_revisions.
        """
        store = self.newStore()
        yield store.start()
        version = yield store.create("policy", "ns", '{"service":null}')
        response, body = yield httpGet(
            self.etcd.url + "/v3/kv/range", method="POST",
            data=json.dumps({"key": base64.b64encode(f"{self.prefix}/policy/ns".encode()).decode()}).encode(),
        )
        (kv,) = json.loads(body)["kvs"]
        self.assertEqual(base64.b64decode(kv["value"]), b'{"service":null}')
        self.assertEqual(kv["mod_revision"].encode(), version)

    @defer.inlineCallbacks
    def test_twoStoresSeeEachOther(self) -> Any:
        """
        Two stores on one etcd (two namerd processes) see each other's writes through their watches.
        """
        one = self.newStore()
        two = self.newStore(self.prefix)
        yield one.start()
        yield two.start()
        seen: List[Any] = []
        obs = two.observe("dtabs", "shared").observe(seen.append)
        self.addCleanup(obs.close)
        names = two.observeNamespaces("dtabs")
        v1 = yield one.create("dtabs", "shared", "/a=>/b")
        yield waitUntil(lambda: seen[-1] == ("/a=>/b", v1), TIMEOUT, "the create to reach the other store")
        self.assertEqual(names.sample(), ("shared",))
        v2 = yield one.update("dtabs", "shared", "/a=>/c", v1)
        yield waitUntil(lambda: seen[-1] == ("/a=>/c", v2), TIMEOUT, "the update")
        yield self.assertFailure(two.update("dtabs", "shared", "/x=>/y", v1), VersionMismatch)
        yield one.delete("dtabs", "shared")
        yield waitUntil(lambda: seen[-1] is None, TIMEOUT, "the delete")
        self.assertEqual(seen[0], None)

    @defer.inlineCallbacks
    def test_pendingUntilSynced(self) -> Any:
        """
        Before the first read of etcd, observers see Pending; then the stored documents.
        """
        first = self.newStore()
        yield first.start()
        yield first.create("dtabs", "ns", "/a=>/b")
        second = self.newStore(self.prefix)
        seen: List[Any] = []
        obs = second.observe("dtabs", "ns").observe(seen.append)
        self.addCleanup(obs.close)
        self.assertEqual(seen, [Pending])
        self.assertIs(second.observeNamespaces("dtabs").sample(), Pending)
        yield second.start()
        self.assertEqual(seen[-1][0], "/a=>/b")
        self.assertEqual(second.observeNamespaces("dtabs").sample(), ("ns",))

    @defer.inlineCallbacks
    def test_otherKeysIgnored(self) -> Any:
        """
        Keys under the prefix that are not namespace names are ignored.
        """
        store = self.newStore()
        yield store.start()
        for key in (f"{self.prefix}/dtabs/a/b", f"{self.prefix}/dtabs/..", f"{self.prefix}/dtabsX"):
            yield httpGet(
                self.etcd.url + "/v3/kv/put", method="POST",
                data=json.dumps({"key": base64.b64encode(key.encode()).decode(), "value": "eA=="}).encode(),
            )
        yield store.create("dtabs", "real", "/a=>/b")
        self.assertEqual((yield store.list("dtabs")), ["real"])
        yield waitUntil(lambda: store.observeNamespaces("dtabs").sample() == ("real",), TIMEOUT, "the watch")


class EtcdRestartTests(TestCase):
    """
    Recovery when etcd restarts or is unreachable.
    """

    timeout = 180

    @defer.inlineCallbacks
    def test_restart(self) -> Any:
        """
        Data survives an etcd restart, and the store's watch resumes and sees later writes.
        """
        etcd = EtcdProcess(reactor, requireEtcd(self))
        self.addCleanup(etcd.cleanup)
        yield etcd.start()
        store = EtcdStore(etcd.host, etcd.port, {"dtabs": "/d", "policy": "/p"}, reactor, backoff=(0.05, 0.5))
        self.addCleanup(store.close)
        yield store.start()
        seen: List[Any] = []
        obs = store.observe("dtabs", "ns").observe(seen.append)
        self.addCleanup(obs.close)
        yield store.create("dtabs", "ns", "/a=>/b")
        yield etcd.restart()
        self.assertEqual((yield store.get("dtabs", "ns"))[0], "/a=>/b")
        writer = EtcdStore(etcd.host, etcd.port, {"dtabs": "/d", "policy": "/p"}, reactor)
        self.addCleanup(writer.close)
        yield writer.update("dtabs", "ns", "/a=>/after", None)
        yield waitUntil(lambda: seen[-1] is not None and seen[-1][0] == "/a=>/after", TIMEOUT, "the watch to resume")
        self.assertGreaterEqual(store.reconnects.value, 1)

    @defer.inlineCallbacks
    def test_unreachable(self) -> Any:
        """
        Requests to an unreachable etcd fail with StoreUnavailable; the watch keeps retrying.
        """
        store = EtcdStore("127.0.0.1", freePort(), {"dtabs": "/d", "policy": "/p"}, reactor, backoff=(0.05, 0.2), timeout=5)
        self.addCleanup(store.close)
        store.start()
        yield self.assertFailure(store.get("dtabs", "ns"), StoreUnavailable)
        yield self.assertFailure(store.create("dtabs", "ns", "/a=>/b"), StoreUnavailable)
        yield waitUntil(lambda: store.reconnects.value >= 2, TIMEOUT, "retries")
        self.assertEqual(store.metrics.gauge("connected").value, 0.0)
        self.assertIs(store.observe("dtabs", "ns").sample(), Pending)


class UnreachableApiTests(TestCase):
    """
    The HTTP API on an etcd store that cannot be reached.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_serviceUnavailable(self) -> Any:
        """
        Reads and writes answer 503 naming the storage problem.
        """
        from linkerpy.namerd.api import NamerdAPI
        from linkerpy.namerd.core import Namerd
        from linkerpy.namerd.service import ApiSite
        from linkerpy.plugins.registry import defaultRegistry

        store = EtcdStore("127.0.0.1", freePort(), {"dtabs": "/d", "policy": "/p"}, reactor, timeout=5)
        self.addCleanup(store.close)
        site = ApiSite(NamerdAPI(Namerd(store, [], reactor, defaultRegistry()), reactor), 4096, reactor)
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        base = f"http://127.0.0.1:{port.getHost().port}/api/1"
        for method, path in (("GET", "/dtabs"), ("GET", "/dtabs/ns"), ("PUT", "/dtabs/ns"), ("DELETE", "/policy/ns")):
            response, body = yield httpGet(base + path, method=method, data=b"/a=>/b" if method == "PUT" else None,
                                           headers={"content-type": "application/dtab"})
            self.assertEqual(response.code, 503, (method, path, body))
            self.assertIn(b"storage unavailable", body)


class PrefixTests(SynchronousTestCase):
    """
    L{prefixEnd}.
    """

    def test_prefixEnd(self) -> None:
        """
        The range end of a prefix is the prefix with its last byte incremented.
        """
        self.assertEqual(prefixEnd(b"/namerd/dtabs/"), b"/namerd/dtabs0")
        self.assertEqual(prefixEnd(b"a\xff"), b"b")
        self.assertEqual(prefixEnd(b"\xff"), b"\x00")
