"""
Tests for L{linkerpy.naming.var}: Var, Activity and their derived forms.
"""

from __future__ import annotations

from typing import Any, List

from twisted.trial.unittest import SynchronousTestCase

from linkerpy.naming import (
    Activity,
    ActivityPendingError,
    AddrBound,
    AddrFailed,
    AddrNeg,
    AddrPending,
    Address,
    Bound,
    Failed,
    Ok,
    Path,
    Pending,
    Var,
)


class VarTests(SynchronousTestCase):
    def test_observeAndUpdate(self) -> None:
        """observe delivers the current value then every change; close stops it."""
        v = Var(1)
        seen: List[int] = []
        c = v.observe(seen.append)
        v.update(2)
        v.update(2)
        v.update(3)
        c.close()
        v.update(4)
        self.assertEqual(seen, [1, 2, 3])
        self.assertEqual(v.sample(), 4)
        self.assertEqual(v.observerCount, 0)
        c.close()

    def test_noNotificationWithoutChange(self) -> None:
        """An update with an equal value notifies nobody."""
        v = Var(frozenset({1}))
        seen: List[Any] = []
        v.observe(seen.append)
        v.update(frozenset({1}))
        self.assertEqual(len(seen), 1)

    def test_mapIsLazyAndReleases(self) -> None:
        """A mapped var observes its parent only while observed itself."""
        v = Var(2)
        m = v.map(lambda x: x * 10)
        self.assertEqual(v.observerCount, 0)
        self.assertEqual(m.sample(), 20)
        self.assertEqual(v.observerCount, 0)
        seen: List[int] = []
        c1 = m.observe(seen.append)
        c2 = m.observe(lambda x: None)
        self.assertEqual(v.observerCount, 1)
        v.update(3)
        self.assertEqual(seen, [20, 30])
        c1.close()
        self.assertEqual(v.observerCount, 1)
        c2.close()
        self.assertEqual(v.observerCount, 0)

    def test_flatMapSwitchesAndReleases(self) -> None:
        """flatMap follows the inner var chosen by the outer value and releases both when closed."""
        which = Var("a")
        a, b = Var(1), Var(100)
        f = which.flatMap(lambda k: a if k == "a" else b)
        seen: List[int] = []
        c = f.observe(seen.append)
        a.update(2)
        which.update("b")
        a.update(3)
        b.update(101)
        self.assertEqual(seen, [1, 2, 100, 101])
        self.assertEqual(a.observerCount, 0)
        self.assertEqual(b.observerCount, 1)
        c.close()
        self.assertEqual((which.observerCount, a.observerCount, b.observerCount), (0, 0, 0))

    def test_collect(self) -> None:
        """collect gives the tuple of values and emits once at start."""
        a, b = Var(1), Var(2)
        seen: List[Any] = []
        c = Var.collect([a, b]).observe(seen.append)
        b.update(3)
        self.assertEqual(seen, [(1, 2), (1, 3)])
        c.close()
        self.assertEqual(a.observerCount + b.observerCount, 0)

    def test_reentrantUpdateDeliversLatest(self) -> None:
        """An observer that updates the var during notification does not leave others with a stale value."""
        v = Var(0)
        last: List[int] = []

        def bump(x: int) -> None:
            if x == 1:
                v.update(2)

        v.observe(bump)
        v.observe(last.append)
        v.update(1)
        self.assertEqual(last[-1], 2)

    def test_observerErrorIsContained(self) -> None:
        """An observer raising does not stop other observers."""
        v = Var(0)
        seen: List[int] = []

        def boom(x: int) -> None:
            if x:
                raise RuntimeError("boom")

        v.observe(boom)
        v.observe(seen.append)
        v.update(1)
        self.assertEqual(seen, [0, 1])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_const(self) -> None:
        """A constant var delivers once and cannot be updated."""
        c = Var.const(5)
        seen: List[int] = []
        c.observe(seen.append).close()
        self.assertEqual(seen, [5])
        self.assertRaises(TypeError, c.update, 6)

    def test_changesTo(self) -> None:
        """changesTo fires with the first matching value and stops observing."""
        v = Var(0)
        d = v.changesTo(lambda x: x > 1)
        self.assertNoResult(d)
        v.update(1)
        self.assertNoResult(d)
        v.update(2)
        self.assertEqual(self.successResultOf(d), 2)
        self.assertEqual(v.observerCount, 0)
        self.assertEqual(self.successResultOf(v.changesTo(lambda x: True)), 2)
        d2 = v.changesTo(lambda x: x > 10)
        d2.cancel()
        self.failureResultOf(d2)
        self.assertEqual(v.observerCount, 0)


class ActivityTests(SynchronousTestCase):
    def test_states(self) -> None:
        """sample returns the value, raises the failure, or ActivityPendingError."""
        self.assertEqual(Activity.value(3).sample(), 3)
        self.assertRaises(KeyError, Activity.exception(KeyError("x")).sample)
        self.assertRaises(ActivityPendingError, Activity.pending().sample)

    def test_mapCatchesErrors(self) -> None:
        """map transforms values and turns exceptions into Failed."""
        act, var = Activity.mutable(Ok(1))
        m = act.map(lambda x: 10 // x)
        self.assertEqual(m.sample(), 10)
        var.update(Ok(0))
        self.assertIsInstance(m.states.sample(), Failed)
        var.update(Pending)
        self.assertIs(m.states.sample(), Pending)

    def test_flatMapReleasesUpstream(self) -> None:
        """A flatMapped activity releases the outer and inner vars when its last observer closes."""
        outer, ovar = Activity.mutable(Ok("x"))
        inner, ivar = Activity.mutable(Ok(1))
        fm = outer.flatMap(lambda k: inner.map(lambda n: (k, n)))
        seen: List[Any] = []
        c = fm.observe(seen.append)
        ivar.update(Ok(2))
        ovar.update(Failed(ValueError("bad")))
        self.assertEqual(seen[:2], [Ok(("x", 1)), Ok(("x", 2))])
        self.assertIsInstance(seen[2], Failed)
        self.assertEqual(ivar.observerCount, 0)
        ovar.update(Ok("y"))
        self.assertEqual(seen[-1], Ok(("y", 2)))
        c.close()
        self.assertEqual((ovar.observerCount, ivar.observerCount), (0, 0))

    def test_collect(self) -> None:
        """collect fails on the first failure, else is pending while any is pending."""
        a, av = Activity.mutable(Pending)
        b, bv = Activity.mutable(Ok(2))
        both = Activity.collect([a, b])
        self.assertIs(both.states.sample(), Pending)
        av.update(Ok(1))
        self.assertEqual(both.sample(), (1, 2))
        bv.update(Failed(KeyError("k")))
        self.assertIsInstance(both.states.sample(), Failed)
        self.assertEqual(a.join(Activity.value(5)).sample(), (1, 5))
        self.assertEqual(Activity.collect([]).sample(), ())

    def test_toDeferred(self) -> None:
        """toDeferred fires with the first value or failure."""
        a, av = Activity.mutable()
        d = a.toDeferred()
        self.assertNoResult(d)
        av.update(Ok(7))
        self.assertEqual(self.successResultOf(d), 7)
        self.assertEqual(av.observerCount, 0)
        f = self.failureResultOf(Activity.exception(KeyError("k")).toDeferred())
        f.trap(KeyError)

    def test_stabilize(self) -> None:
        """stabilize keeps the last value through later failures while the original reports them."""
        a, av = Activity.mutable(Pending)
        s = a.stabilize()
        seen: List[Any] = []
        s.observe(seen.append)
        av.update(Failed(ValueError("early")))
        av.update(Ok(1))
        av.update(Failed(ValueError("late")))
        av.update(Pending)
        av.update(Ok(2))
        self.assertEqual(seen[0], Pending)
        self.assertIsInstance(seen[1], Failed)
        self.assertEqual(seen[2:], [Ok(1), Ok(2)])
        self.assertIsInstance(s.states.sample(), Ok)

    def test_failedEquality(self) -> None:
        """Failed states with equal exceptions compare equal, so repeated failures do not re-notify."""
        self.assertEqual(Failed(ValueError("a")), Failed(ValueError("a")))
        self.assertNotEqual(Failed(ValueError("a")), Failed(KeyError("a")))


class BoundTests(SynchronousTestCase):
    def test_equalityByIdAndResidual(self) -> None:
        """Bound equality and hash ignore the address var."""
        a = Bound(Path.read("/#/x/a"), Var(AddrPending), Path.read("/r"))
        b = Bound(Path.read("/#/x/a"), Var(AddrNeg), Path.read("/r"))
        c = Bound(Path.read("/#/x/a"), Var(AddrNeg))
        self.assertEqual(a, b)
        self.assertEqual(hash(a), hash(b))
        self.assertNotEqual(a, c)
        self.assertEqual(a.show, "/#/x/a/r")

    def test_stableAddrKeepsLastGoodSet(self) -> None:
        """stableAddr keeps the last bound set when the namer reports a failure, and follows Neg and new sets."""
        raw = Var(AddrPending)
        bound = Bound(Path.read("/#/io.l5d.fs/web"), raw)
        seen: List[Any] = []
        c = bound.stableAddr.observe(seen.append)
        good = AddrBound({Address("127.0.0.1", 8080)})
        raw.update(good)
        raw.update(AddrFailed("malformed address: nope"))
        self.assertEqual(bound.stableAddr.sample(), good)
        self.assertIsInstance(raw.sample(), AddrFailed)
        newer = AddrBound({Address("127.0.0.1", 8081, 2.0)})
        raw.update(newer)
        raw.update(AddrNeg)
        self.assertEqual(seen, [AddrPending, good, newer, AddrNeg])
        c.close()
        self.assertEqual(raw.observerCount, 0)

    def test_addressEquality(self) -> None:
        """Addresses compare by host, port, weight and metadata."""
        self.assertEqual(Address("h", 1), Address("h", 1, 1.0, {}))
        self.assertNotEqual(Address("h", 1), Address("h", 1, 2.0))
        self.assertEqual(len({Address("h", 1), Address("h", 1)}), 1)
        self.assertEqual(AddrBound([Address("h", 1)]), AddrBound({Address("h", 1)}))
