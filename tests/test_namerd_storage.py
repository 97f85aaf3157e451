"""
Tests for namerd's C{io.l5d.inMemory} and C{io.l5d.fs} stores: the store
contract (create, compare-and-swap, delete, list, observe), versions, and
the fs store's files (atomic writes, restarts, outside edits, names that
could escape the directory).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, List

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from linkerpy.interfaces import IDtabStore
from linkerpy.namerd.errors import (
    InvalidNamespace,
    NamespaceExists,
    NoSuchNamespace,
    VersionMismatch,
    checkNamespace,
)
from linkerpy.namerd.storage.fs import FsStore, syncRunner
from linkerpy.namerd.storage.memory import InMemoryStore
from linkerpy.naming import Pending


class StoreContractMixin:
    """
    The behaviour every store shares (run synchronously).
    """

    def makeStore(self) -> Any:
        raise NotImplementedError()

    def setUp(self) -> None:
        self.store = self.makeStore()
        self.successResultOf(self.store.start())

    def test_provides(self) -> None:
        """
        The store provides IDtabStore.
        """
        self.assertTrue(verifyObject(IDtabStore, self.store))

    def test_createGetList(self) -> None:
        """
        A created namespace can be read back with its version and is listed (sorted).
        """
        v1 = self.successResultOf(self.store.create("dtabs", "b", "/a=>/b"))
        self.successResultOf(self.store.create("dtabs", "a", "/x=>/y"))
        self.assertEqual(self.successResultOf(self.store.get("dtabs", "b")), ("/a=>/b", v1))
        self.assertEqual(self.successResultOf(self.store.list("dtabs")), ["a", "b"])
        self.assertEqual(self.successResultOf(self.store.list("policy")), [])

    def test_createExisting(self) -> None:
        """
        Creating an existing namespace fails with NamespaceExists and changes nothing.
        """
        v1 = self.successResultOf(self.store.create("dtabs", "ns", "/a=>/b"))
        self.failureResultOf(self.store.create("dtabs", "ns", "/c=>/d"), NamespaceExists)
        self.assertEqual(self.successResultOf(self.store.get("dtabs", "ns")), ("/a=>/b", v1))

    def test_getMissing(self) -> None:
        """
        Reading a missing namespace gives None.
        """
        self.assertIsNone(self.successResultOf(self.store.get("dtabs", "nope")))

    def test_compareAndSwap(self) -> None:
        """
        An update with the current version succeeds and changes the version; a stale version fails.
        """
        v1 = self.successResultOf(self.store.create("dtabs", "ns", "/a=>/b"))
        v2 = self.successResultOf(self.store.update("dtabs", "ns", "/a=>/c", v1))
        self.assertNotEqual(v1, v2)
        self.failureResultOf(self.store.update("dtabs", "ns", "/a=>/d", v1), VersionMismatch)
        self.assertEqual(self.successResultOf(self.store.get("dtabs", "ns")), ("/a=>/c", v2))

    def test_versionChangesOnIdenticalWrite(self) -> None:
        """
        Writing the same text again still gives a new version.
        """
        v1 = self.successResultOf(self.store.create("dtabs", "ns", "/a=>/b"))
        v2 = self.successResultOf(self.store.update("dtabs", "ns", "/a=>/b", None))
        v3 = self.successResultOf(self.store.update("dtabs", "ns", "/a=>/b", v2))
        self.assertEqual(len({v1, v2, v3}), 3)

    def test_conditionalUpdateMissing(self) -> None:
        """
        A conditional update of a missing namespace fails with NoSuchNamespace.
        """
        self.failureResultOf(self.store.update("dtabs", "nope", "/a=>/b", b"\x00\x01"), NoSuchNamespace)

    def test_unconditionalUpdateCreates(self) -> None:
        """
        An update without a version creates a missing namespace.
        """
        version = self.successResultOf(self.store.update("policy", "ns", "{}", None))
        self.assertEqual(self.successResultOf(self.store.get("policy", "ns")), ("{}", version))

    def test_delete(self) -> None:
        """
        Deleting removes the namespace; deleting it again fails with NoSuchNamespace.
        """
        self.successResultOf(self.store.create("dtabs", "ns", "/a=>/b"))
        self.successResultOf(self.store.delete("dtabs", "ns"))
        self.assertIsNone(self.successResultOf(self.store.get("dtabs", "ns")))
        self.failureResultOf(self.store.delete("dtabs", "ns"), NoSuchNamespace)

    def test_kindsAreSeparate(self) -> None:
        """
        A dtab namespace and a policy namespace of the same name are different documents.
        """
        self.successResultOf(self.store.create("dtabs", "ns", "/a=>/b"))
        self.assertIsNone(self.successResultOf(self.store.get("policy", "ns")))
        self.successResultOf(self.store.create("policy", "ns", "{}"))
        self.assertEqual(self.successResultOf(self.store.get("dtabs", "ns"))[0], "/a=>/b")

    def test_observe(self) -> None:
        """
        An observer sees the current value and then every write and the delete.
        """
        seen: List[Any] = []
        var = self.store.observe("dtabs", "ns")
        obs = var.observe(seen.append)
        self.addCleanup(obs.close)
        v1 = self.successResultOf(self.store.create("dtabs", "ns", "/a=>/b"))
        v2 = self.successResultOf(self.store.update("dtabs", "ns", "/a=>/c", v1))
        self.successResultOf(self.store.delete("dtabs", "ns"))
        self.assertEqual(seen, [None, ("/a=>/b", v1), ("/a=>/c", v2), None])

    def test_observeNamespaces(self) -> None:
        """
        The namespace list var changes when namespaces are created or deleted, not on updates.
        """
        seen: List[Any] = []
        obs = self.store.observeNamespaces("policy").observe(seen.append)
        self.addCleanup(obs.close)
        v = self.successResultOf(self.store.create("policy", "b", "{}"))
        self.successResultOf(self.store.update("policy", "b", "{ }", v))
        self.successResultOf(self.store.create("policy", "a", "{}"))
        self.successResultOf(self.store.delete("policy", "b"))
        self.assertEqual(seen, [(), ("b",), ("a", "b"), ("a",)])

    def test_invalidNames(self) -> None:
        """
        Namespace names outside [A-Za-z0-9_.-] (or '.', '..') and unknown kinds are refused at once.
        """
        for bad in ("", ".", "..", "../etc", "a/b", "a b", "é", "x" * 201):
            self.assertRaises(InvalidNamespace, self.store.create, "dtabs", bad, "/a=>/b")
            self.assertRaises(InvalidNamespace, self.store.observe, "dtabs", bad)
        self.assertRaises(ValueError, self.store.get, "secrets", "ns")


class InMemoryStoreTests(StoreContractMixin, SynchronousTestCase):
    """
    C{io.l5d.inMemory}.
    """

    def makeStore(self) -> Any:
        return InMemoryStore()

    def test_initialNamespaces(self) -> None:
        """
        Initial dtabs are loaded with versions that are 8-byte counters starting at 1.
        """
        store = InMemoryStore({"dtabs": {"default": "/svc=>/a"}})
        self.assertEqual(self.successResultOf(store.get("dtabs", "default")), ("/svc=>/a", b"\x00" * 7 + b"\x01"))


class FsStoreTests(StoreContractMixin, SynchronousTestCase):
    """
    C{io.l5d.fs} with file operations run synchronously.
    """

    def makeStore(self) -> Any:
        self.root = tempfile.mkdtemp(prefix="linkerpy-fs-store-")
        self.clock = MemoryReactorClock()
        return FsStore(self.root, self.clock, pollInterval=1.0, runner=syncRunner)

    def test_layout(self) -> None:
        """
        Documents are plain files under dtabs/ and policy/, and nothing is left in tmp/.
        """
        self.successResultOf(self.store.create("dtabs", "default", "/svc=>/#/io.l5d.fs"))
        self.successResultOf(self.store.create("policy", "default", '{"service":null}'))
        with open(os.path.join(self.root, "dtabs", "default")) as f:
            self.assertEqual(f.read(), "/svc=>/#/io.l5d.fs")
        with open(os.path.join(self.root, "policy", "default")) as f:
            self.assertEqual(f.read(), '{"service":null}')
        self.assertEqual(os.listdir(os.path.join(self.root, "tmp")), [])

    def test_survivesRestart(self) -> None:
        """
        A new store on the same directory sees the documents and versions written before.
        """
        version = self.successResultOf(self.store.create("dtabs", "ns", "/a=>/b"))
        self.successResultOf(self.store.close())
        again = FsStore(self.root, self.clock, runner=syncRunner)
        self.successResultOf(again.start())
        self.assertEqual(self.successResultOf(again.get("dtabs", "ns")), ("/a=>/b", version))
        self.assertEqual(again.observe("dtabs", "ns").sample(), ("/a=>/b", version))
        self.successResultOf(again.update("dtabs", "ns", "/a=>/c", version))

    def test_outsideEditsArePolled(self) -> None:
        """
        Files created, changed and removed by someone else reach observers at the next poll.
        """
        seen: List[Any] = []
        obs = self.store.observe("dtabs", "ext").observe(seen.append)
        self.addCleanup(obs.close)
        path = os.path.join(self.root, "dtabs", "ext")
        with open(path, "w") as f:
            f.write("/x=>/y")
        self.clock.advance(1.0)
        self.assertEqual(seen[-1][0], "/x=>/y")
        with open(path, "w") as f:
            f.write("/x=>/zz")
        os.utime(path, ns=(1, 1))
        self.clock.advance(1.0)
        self.assertEqual(seen[-1][0], "/x=>/zz")
        os.unlink(path)
        self.clock.advance(1.0)
        self.assertIsNone(seen[-1])

    def test_strayFilesIgnored(self) -> None:
        """
        Files whose names are not namespace names, directories and non-UTF-8 files are ignored.
        """
        os.mkdir(os.path.join(self.root, "dtabs", "subdir"))
        with open(os.path.join(self.root, "dtabs", "bad name"), "w") as f:
            f.write("/a=>/b")
        with open(os.path.join(self.root, "dtabs", "binary"), "wb") as f:
            f.write(b"\xff\xfe")
        self.successResultOf(self.store.poll())
        self.assertEqual(self.successResultOf(self.store.list("dtabs")), ["binary"])
        self.assertEqual(self.store.observeNamespaces("dtabs").sample(), ())

    def test_pendingBeforeStart(self) -> None:
        """
        Before its first scan the store's vars are Pending, then they hold the files' contents.
        """
        root = tempfile.mkdtemp(prefix="linkerpy-fs-store-")
        os.makedirs(os.path.join(root, "dtabs"))
        with open(os.path.join(root, "dtabs", "ns"), "w") as f:
            f.write("/a=>/b")
        store = FsStore(root, self.clock, runner=syncRunner)
        var = store.observe("dtabs", "ns")
        seen: List[Any] = []
        obs = var.observe(seen.append)
        self.addCleanup(obs.close)
        self.assertEqual(seen, [Pending])
        self.successResultOf(store.start())
        self.assertEqual(seen[-1][0], "/a=>/b")
        self.assertEqual(store.observeNamespaces("dtabs").sample(), ("ns",))


class FsStoreThreadTests(TestCase):
    """
    C{io.l5d.fs} with file operations in the reactor's thread pool.
    """

    def test_threaded(self) -> Any:
        """
        Writes and reads through worker threads give the same results.
        """
        from twisted.internet import reactor

        root = tempfile.mkdtemp(prefix="linkerpy-fs-store-")
        store = FsStore(root, reactor, pollInterval=0.05)
        self.addCleanup(store.close)

        d = store.start()
        d.addCallback(lambda _: store.create("dtabs", "ns", "/a=>/b"))
        d.addCallback(lambda version: store.update("dtabs", "ns", "/a=>/c", version))
        d.addCallback(lambda _: store.get("dtabs", "ns"))
        d.addCallback(lambda doc: self.assertEqual(doc[0], "/a=>/c"))
        return d


class NamespaceNameTests(SynchronousTestCase):
    """
    L{checkNamespace}.
    """

    def test_valid(self) -> None:
        """
        Letters, digits, '_', '.', '-' are accepted (leading dots included, but not '.' or '..').
        """
        for ok in ("default", "a.b", "A_b-9", ".hidden", "..x", "x" * 200):
            self.assertEqual(checkNamespace(ok), ok)
