"""
Tests for the io.l5d.fs namer and interpreter (real temporary directories).
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, List

from twisted.internet import reactor as globalReactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from linkerpy.naming import AddrBound, AddrFailed, AddrNeg, Address, Dtab, Failed, Neg, Ok, Path, Pending
from linkerpy.naming.fs import DtabFile, FsNamer, parseAddresses
from linkerpy.naming.interpreter import ConfiguredNamersInterpreter
from linkerpy.naming.system import SystemNamer

PREFIX = Path.read("/#/io.l5d.fs")


def _write(path: str, text: str) -> None:
    tmp = path + ".tmp~"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class ParseTests(SynchronousTestCase):
    def test_format(self) -> None:
        """Lines are host port [* weight]; comments and blank lines are ignored."""
        addr = parseAddresses("# web\n192.0.2.220 8080\n\n 192.0.2.210 8080 * 2.0  # heavy\n::1 1\n")
        self.assertEqual(
            addr,
            AddrBound([Address("192.0.2.220", 8080), Address("192.0.2.210", 8080, 2.0), Address("::1", 1)]),
        )
        self.assertEqual(parseAddresses(""), AddrBound([]))

    def test_malformed(self) -> None:
        """Any malformed line fails the whole set with its text."""
        for bad in ["host", "host 0", "host 65536", "host x", "h 80 * ", "h 80 + 2", "h 80 * abc", "h 80 * -1"]:
            addr = parseAddresses("127.0.0.1 80\n" + bad + "\n")
            self.assertIsInstance(addr, AddrFailed, bad)
            self.assertEqual(addr.message, f"malformed address: {bad.strip()}")


class MemoryFsTests(SynchronousTestCase):
    """
    The namer on a memory clock, with scans run synchronously.
    """

    def setUp(self) -> None:
        self.root = self.mktemp()
        os.makedirs(os.path.join(self.root, "sub"))
        self.clock = MemoryReactorClock()
        self.namer = FsNamer(self.clock, self.root, PREFIX, interval=0.5)

    def test_lifecycle(self) -> None:
        """A binding sees a file appear, change, turn malformed and disappear; polling stops when released."""
        interp = ConfiguredNamersInterpreter(self.clock, [(PREFIX, self.namer)], system=SystemNamer(self.clock))
        act = interp.bind(Dtab.read("/svc=>/#/io.l5d.fs"), Path.read("/svc/web/extra"))
        trees: List[Any] = []
        c = act.observe(trees.append)
        self.assertEqual(trees[-1].value.show, "~")
        _write(os.path.join(self.root, "web"), "127.0.0.1 8080\n")
        self.clock.advance(0.5)
        bound = trees[-1].value.value
        self.assertEqual((bound.id.show, bound.residual.show), ("/#/io.l5d.fs/web", "/extra"))
        addrs: List[Any] = []
        stable: List[Any] = []
        c2 = bound.addr.observe(addrs.append)
        c3 = bound.stableAddr.observe(stable.append)
        good = AddrBound([Address("127.0.0.1", 8080)])
        self.assertEqual(addrs[-1], good)
        _write(os.path.join(self.root, "web"), "127.0.0.1 8080\n127.0.0.1 8081 * 3\n")
        self.clock.advance(0.5)
        better = AddrBound([Address("127.0.0.1", 8080), Address("127.0.0.1", 8081, 3.0)])
        self.assertEqual(addrs[-1], better)
        _write(os.path.join(self.root, "web"), "127.0.0.1 8080\nnonsense\n")
        self.clock.advance(0.5)
        self.assertIsInstance(addrs[-1], AddrFailed)
        self.assertEqual(stable[-1], better, "the router's view keeps the last good set")
        os.unlink(os.path.join(self.root, "web"))
        self.clock.advance(0.5)
        self.assertEqual(trees[-1].value.show, "~")
        self.assertIs(addrs[-1], AddrNeg)
        self.assertIs(stable[-1], AddrNeg)
        for closable in (c, c2, c3):
            closable.close()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_subdirectories(self) -> None:
        """Files in sub-directories are names with several elements."""
        _write(os.path.join(self.root, "sub", "svc"), "127.0.0.1 1\n")
        act = self.namer.lookup(Path.read("/sub/svc/rest"))
        states: List[Any] = []
        c = act.observe(states.append)
        self.assertIsInstance(states[-1], Ok)
        self.assertEqual(states[-1].value.value.id, Path.read("/#/io.l5d.fs/sub/svc"))
        self.assertEqual(self.namer.lookup(Path.read("/sub")).sample(), Neg)
        c.close()

    def test_pendingBeforeFirstScan(self) -> None:
        """Lookups are pending until the first scan completes."""
        scans: List[Deferred] = []

        def later(f: Callable[..., Any], *a: Any) -> Deferred:
            d: Deferred = Deferred()
            scans.append(d)
            d.addCallback(lambda _: f(*a))
            return d

        namer = FsNamer(self.clock, self.root, PREFIX, runInThread=later)
        states: List[Any] = []
        c = namer.lookup(Path.read("/x")).observe(states.append)
        self.assertIs(states[-1], Pending)
        scans[0].callback(None)
        self.assertEqual(states[-1], Ok(Neg))
        c.close()

    def test_missingRootDir(self) -> None:
        """A missing root directory gives Neg lookups and records the error."""
        namer = FsNamer(self.clock, os.path.join(self.root, "nope"), PREFIX)
        self.assertEqual(namer.lookup(Path.read("/x")).sample(), Neg)
        self.assertIn("cannot list", namer.lastError)

    def test_state(self) -> None:
        """state() lists every file's current address set."""
        _write(os.path.join(self.root, "a"), "127.0.0.1 1\n")
        state = self.successResultOf(self.namer.state())
        self.assertEqual(state, {Path.read("/#/io.l5d.fs/a"): AddrBound([Address("127.0.0.1", 1)])})


class DtabFileTests(SynchronousTestCase):
    def test_badEditKeepsLastGood(self) -> None:
        """The fs interpreter's dtab follows the file; a bad edit keeps the previous dtab and records the error."""
        path = self.mktemp()
        _write(path, "/svc => /$/inet/127.0.0.1/1;")
        clock = MemoryReactorClock()
        dtabFile = DtabFile(clock, path)
        dtabFile.start()
        interp = ConfiguredNamersInterpreter(clock, system=SystemNamer(clock), dtabVar=dtabFile.var)
        trees: List[Any] = []
        c = interp.bind(Dtab.empty, Path.read("/svc")).observe(trees.append)
        self.assertEqual(trees[-1].value.show, "/$/inet/127.0.0.1/1")
        _write(path, "/svc => /$/inet/127.0.0.1/2 ;\n# comment\n")
        clock.advance(0.5)
        self.assertEqual(trees[-1].value.show, "/$/inet/127.0.0.1/2")
        _write(path, "/svc => ")
        clock.advance(0.5)
        self.assertEqual(trees[-1].value.show, "/$/inet/127.0.0.1/2")
        self.assertIn("invalid dtab", dtabFile.lastError)
        self.assertEqual(len(self.flushLoggedErrors()), 0)
        state = interp.bind(Dtab.read("/svc=>/$/inet/127.0.0.1/3"), Path.read("/svc")).states.sample()
        self.assertEqual(state.value.show, "/$/inet/127.0.0.1/3", "the request dtab comes after the file's")
        _write(path, "/svc => /$/inet/127.0.0.1/4")
        clock.advance(0.5)
        self.assertEqual(trees[-1].value.show, "/$/inet/127.0.0.1/4")
        self.assertIsNone(dtabFile.lastError)
        c.close()
        dtabFile.stop()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_missingFile(self) -> None:
        """A missing dtab file starts as the empty dtab with the error recorded."""
        dtabFile = DtabFile(MemoryReactorClock(), self.mktemp())
        self.assertEqual(dtabFile.var.sample(), Dtab.empty)
        self.assertIn("cannot read", dtabFile.lastError)


def _poll(condition: Callable[[], bool], timeout: float = 30.0) -> Deferred:
    deadline = time.monotonic() + timeout

    def check() -> Any:
        if condition():
            return None
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        return deferLater(globalReactor, 0.05, check)

    return deferLater(globalReactor, 0, check)


class RealReactorFsTests(TestCase):
    """
    The namer on the real reactor, scanning in the thread pool.
    """

    timeout = 120

    async def test_watchesDirectory(self) -> None:
        """Files created, changed and deleted while a binding is observed show up within the deadline."""
        root = self.mktemp()
        os.makedirs(root)
        for i in range(300):
            _write(os.path.join(root, f"filler{i}"), f"127.0.0.1 {1000 + i}\n")
        namer = FsNamer(globalReactor, root, PREFIX)
        interp = ConfiguredNamersInterpreter(globalReactor, [(PREFIX, namer)])
        trees: List[Any] = []
        c = interp.bind(Dtab.read("/svc=>/#/io.l5d.fs"), Path.read("/svc/web")).observe(trees.append)
        self.addCleanup(c.close)
        await _poll(lambda: bool(trees) and isinstance(trees[-1], Ok))
        self.assertEqual(trees[-1].value.show, "~")
        _write(os.path.join(root, "web"), "127.0.0.1 8080\n")
        await _poll(lambda: trees[-1].value.show == "/#/io.l5d.fs/web")
        addr = trees[-1].value.value.addr
        addrs: List[Any] = []
        c2 = addr.observe(addrs.append)
        self.addCleanup(c2.close)
        await _poll(lambda: addrs[-1] == AddrBound([Address("127.0.0.1", 8080)]))
        _write(os.path.join(root, "web"), "127.0.0.1 9090\n")
        await _poll(lambda: addrs[-1] == AddrBound([Address("127.0.0.1", 9090)]))
        os.unlink(os.path.join(root, "web"))
        await _poll(lambda: trees[-1].value.show == "~" and addrs[-1] is AddrNeg)
        c.close()
        c2.close()
        await _poll(lambda: not namer._busy)
        self.assertEqual(namer._users, 0)
