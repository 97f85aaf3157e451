"""
Tests for binding (L{linkerpy.naming.binding}) and the default interpreter.
"""

from __future__ import annotations

from typing import Any, Dict, List

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from linkerpy.interfaces import IInterpreter, INamer
from linkerpy.naming import (
    Activity,
    AddrBound,
    Address,
    Bound,
    Dtab,
    Failed,
    Leaf,
    Neg,
    Ok,
    Path,
    Pending,
    Var,
)
from linkerpy.naming.binding import MAX_DEPTH, BindingTooLarge, NamerExceededMaxDepth, UnknownNamer, bindOnce
from linkerpy.naming.delegate import DelegationDepthExceeded
from linkerpy.naming.interpreter import ConfiguredNamersInterpreter
from tests.naming_support import ErrorNamer, vectors


@implementer(INamer)
class FakeNamer:
    """
    A namer whose answers are mutable activities, keyed by the path shown.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = Path.read(prefix)
        self.vars: Dict[str, Var[Any]] = {}
        self.lookups: List[str] = []

    def var(self, name: str) -> Var[Any]:
        if name not in self.vars:
            self.vars[name] = Var(Ok(Neg))
        return self.vars[name]

    def answer(self, name: str, tree: Any) -> None:
        self.var(name).update(Ok(tree))

    def bound(self, name: str, port: int) -> Leaf:
        addr = Var(AddrBound([Address("127.0.0.1", port)]))
        return Leaf(Bound(self.prefix + Path.read(name), addr))

    def lookup(self, path: Path) -> Activity[Any]:
        self.lookups.append(path.show)
        return Activity(self.var(path.show))


def _interp(*namers: Any) -> ConfiguredNamersInterpreter:
    return ConfiguredNamersInterpreter(MemoryReactorClock(), [(n.prefix, n) for n in namers])


def _show(state: Any) -> str:
    assert isinstance(state, Ok), state
    return state.value.show  # type: ignore[no-any-return]


class DelegateVectorTests(SynchronousTestCase):
    def test_vectors(self) -> None:
        """Every delegate vector binds to its result and bound leaves, or fails with its error kind."""
        cases = vectors("delegate")
        self.assertTrue(cases)
        for case in cases:
            dtab = Dtab.read(case["dtab"])
            if case.get("local_dtab"):
                dtab = dtab + Dtab.read(case["local_dtab"])
            state = _interp().bind(dtab, Path.read(case["path"])).states.sample()
            if case.get("error"):
                self.assertIsInstance(state, Failed, case)
                if case["error_kind"] == "max_depth":
                    self.assertIsInstance(state.exception, NamerExceededMaxDepth)
                    self.assertEqual(str(state.exception), case["message"])
                else:
                    self.assertIsInstance(state.exception, UnknownNamer)
                    self.assertEqual(str(state.exception), "Unknown namer: inet for path: /$/inet")
                continue
            self.assertEqual(_show(state), case["result"], case)
            if "bound" in case:
                leaves = [
                    {"id": l.value.id.show, "residual": l.value.residual.show} for l in state.value.leaves()
                ]
                self.assertEqual(leaves, case["bound"])


class BindSemanticsTests(SynchronousTestCase):
    def bind(self, dtab: str, path: str, *namers: Any) -> Any:
        return _interp(*namers).bind(Dtab.read(dtab), Path.read(path)).states.sample()

    def test_depthLimit(self) -> None:
        """99 rewrites plus /$/inet (100 lookups) bind; 100 rewrites plus /$/inet (101) fail cleanly."""
        def chain(n: int) -> str:
            entries = [f"/p{i}=>/p{i + 1}" for i in range(n)]
            entries.append(f"/p{n}=>/$/inet/127.0.0.1/1")
            return ";".join(entries)

        self.assertEqual(_show(self.bind(chain(98), "/p0")), "/$/inet/127.0.0.1/1")
        state = self.bind(chain(99), "/p0")
        self.assertIsInstance(state, Failed)
        self.assertIsInstance(state.exception, NamerExceededMaxDepth)
        self.assertEqual(MAX_DEPTH, 100)

    def test_slashLoops(self) -> None:
        """'/ => X' loops for any path X and fails with the depth error, not a RecursionError."""
        state = self.bind("/=>/a/b", "/x")
        self.assertIsInstance(state.exception, NamerExceededMaxDepth)
        state = self.bind("/=>/a & /b | /c", "/x")
        self.assertIsInstance(state, Failed)

    def test_explosiveDtabIsBounded(self) -> None:
        """A dtab whose expansion is exponential ('/ => /a & /b') fails cleanly after a bounded number of lookups."""
        state = self.bind("/=>/a & /b", "/x")
        self.assertIsInstance(state.exception, BindingTooLarge)
        result: List[Any] = []
        _interp().delegate(Dtab.read("/=>/a | /b"), Path.read("/x")).addBoth(result.append)
        result[0].trap(BindingTooLarge)

    def test_altIsLazy(self) -> None:
        """A looping alternative after a good one is never looked at; before it, it fails the bind."""
        self.assertEqual(_show(self.bind("/loop=>/loop/x;/s=>/$/inet/127.0.0.1/1 | /loop", "/s")),
                         "/$/inet/127.0.0.1/1")
        self.assertIsInstance(self.bind("/loop=>/loop/x;/s=>/loop | /$/inet/127.0.0.1/1", "/s"), Failed)

    def test_unionDropsFailedBranches(self) -> None:
        """A union branch that fails to bind is dropped when another branch binds."""
        self.assertEqual(_show(self.bind("/s=>/$/nosuchnamer & /$/inet/127.0.0.1/1", "/s")), "/$/inet/127.0.0.1/1")
        self.assertEqual(
            _show(self.bind("/s=> 3 * /$/inet/127.0.0.1/1 & 2 * /$/inet/127.0.0.1/2 & /nope", "/s")),
            "3.00*/$/inet/127.0.0.1/1 & 2.00*/$/inet/127.0.0.1/2",
        )
        state = self.bind("/s=>/$/nosuchnamer & /$/other", "/s")
        self.assertIsInstance(state.exception, UnknownNamer)
        self.assertEqual(_show(self.bind("/s=>/$/nil & /$/inet/127.0.0.1/1", "/s")), "$ & /$/inet/127.0.0.1/1")

    def test_altExceptionStops(self) -> None:
        """An exception in an alternative fails the whole bind (no fall-through on errors)."""
        state = self.bind("/s=>/$/bogus | /$/inet/127.0.0.1/1", "/s")
        self.assertIsInstance(state.exception, UnknownNamer)

    def test_negFallsThroughToEarlierDentries(self) -> None:
        """A local override ending in ~ falls back to the base entries; ! and $ do not."""
        base = "/svc=>/$/inet/127.0.0.1/1;"
        self.assertEqual(_show(self.bind(base + "/svc=>/nowhere", "/svc")), "/$/inet/127.0.0.1/1")
        self.assertEqual(_show(self.bind(base + "/svc=>!", "/svc")), "!")
        self.assertEqual(_show(self.bind(base + "/svc=>$", "/svc")), "$")

    def test_loneNegDentryConsultsNamers(self) -> None:
        """A single matching ~ dentry is like no match (namers asked); two ~ matches are not."""
        fs = FakeNamer("/#/fs")
        fs.answer("/", fs.bound("/", 1))
        self.assertEqual(_show(self.bind("/#/fs=>~", "/#/fs", fs)), "/#/fs")
        self.assertEqual(_show(self.bind("/#/fs=>~;/#/fs=>~", "/#/fs", fs)), "~")

    def test_dtabWinsOverSystemNamers(self) -> None:
        """A dentry for a /$/ path redirects it."""
        self.assertEqual(
            _show(self.bind("/$/inet/127.0.0.1/1=>/$/inet/127.0.0.1/2", "/$/inet/127.0.0.1/1")),
            "/$/inet/127.0.0.1/2",
        )

    def test_residualKept(self) -> None:
        """The residual path stays on the bound name."""
        state = self.bind("/s=>/$/inet/localhost", "/s/80/x/y")
        leaf = next(state.value.leaves())
        self.assertEqual((leaf.value.id.show, leaf.value.residual.show), ("/$/inet/localhost/80", "/x/y"))

    def test_namersLastDeclaredFirstWithNegFallthrough(self) -> None:
        """Namers sharing a prefix are asked last-declared first; a Neg falls to the next, then /$/."""
        first, second = FakeNamer("/#/disco"), FakeNamer("/#/disco")
        first.answer("/web", first.bound("/web", 1))
        interp = _interp(first, second)
        act = interp.bind(Dtab.read("/svc=>/#/disco"), Path.read("/svc/web"))
        seen: List[Any] = []
        c = act.observe(seen.append)
        self.assertEqual(_show(seen[-1]), "/#/disco/web")
        self.assertEqual((first.lookups, second.lookups), (["/web"], ["/web"]))
        second.answer("/web", second.bound("/web-v2", 2))
        self.assertEqual(_show(seen[-1]), "/#/disco/web-v2")
        self.assertEqual(next(seen[-1].value.leaves()).value.addr.sample(), AddrBound([Address("127.0.0.1", 2)]))
        c.close()
        self.assertEqual(first.vars["/web"].observerCount + second.vars["/web"].observerCount, 0)

    def test_unconfiguredNamerIsNeg(self) -> None:
        """/#/ paths with no namer configured end as Neg."""
        self.assertEqual(_show(self.bind("/svc=>/#/io.l5d.fs", "/svc/x")), "~")

    def test_namerErrorFails(self) -> None:
        """A namer that throws fails the binding with its error."""
        state = self.bind("/svc=>/#/error", "/svc/x", ErrorNamer(Path.read("/#/error")))
        self.assertEqual(str(state.exception), "error naming /#/error/x")

    def test_liveUpdatesWithoutRebinding(self) -> None:
        """The bound tree follows a namer's changing answer and the union of two namers, then releases them."""
        disco = FakeNamer("/#/d")
        interp = _interp(disco)
        act = interp.bind(Dtab.read("/svc=>/#/d/a & /#/d/b"), Path.read("/svc"))
        seen: List[Any] = []
        c = act.observe(seen.append)
        self.assertEqual(_show(seen[-1]), "~")
        disco.answer("/a", disco.bound("/a", 1))
        self.assertEqual(_show(seen[-1]), "/#/d/a")
        disco.var("/b").update(Pending)
        self.assertEqual(_show(seen[-1]), "/#/d/a")
        disco.answer("/b", disco.bound("/b", 2))
        self.assertEqual(_show(seen[-1]), "/#/d/a & /#/d/b")
        disco.var("/a").update(Failed(RuntimeError("zk down")))
        self.assertEqual(_show(seen[-1]), "/#/d/b")
        count = len(seen)
        disco.answer("/b", disco.bound("/b", 3))
        self.assertEqual(len(seen), count, "an equal tree (same ids) must not re-notify")
        c.close()
        self.assertEqual([v.observerCount for v in disco.vars.values()], [0, 0])
        self.assertEqual(len(disco.lookups), 2)

    def test_pendingNamer(self) -> None:
        """A pending namer makes the binding pending until it answers; toDeferred waits for it."""
        disco = FakeNamer("/#/d")
        disco.var("/a").update(Pending)
        act = _interp(disco).bind(Dtab.read("/svc=>/#/d"), Path.read("/svc/a"))
        d = act.toDeferred()
        self.assertNoResult(d)
        disco.answer("/a", disco.bound("/a", 1))
        self.assertEqual(self.successResultOf(d).show, "/#/d/a")
        self.assertEqual(disco.vars["/a"].observerCount, 0)

    def test_bindOnce(self) -> None:
        """bindOnce evaluates without observing."""
        state = bindOnce(lambda p: Dtab.read("/a=>/$/nil").lookup(p), Leaf(Path.read("/a")))
        self.assertEqual(state, Ok(Leaf(Path.empty)).__class__(state.value))

    def test_verifyInterpreter(self) -> None:
        """The default interpreter provides IInterpreter."""
        self.assertTrue(verifyObject(IInterpreter, _interp()))


_names = st.sampled_from(["/a", "/b", "/c", "/a/b", "/", "/$/nil", "/$/fail", "/$/inet/127.0.0.1/1", "/$/x"])
_dsts = st.lists(_names, min_size=1, max_size=3).map(lambda ps: " | ".join(ps))
_dentries = st.tuples(st.sampled_from(["/a", "/b", "/c", "/", "/a/*", "/$"]), _dsts)
_dtabs = st.lists(_dentries, max_size=6).map(lambda es: ";".join(f"{p}=>{d}" for p, d in es))


class PropertyTests(SynchronousTestCase):
    @given(_dtabs, st.sampled_from(["/a", "/b/x", "/c", "/$/nil", "/a/b/c"]))
    @settings(max_examples=60, deadline=None)
    def test_bindTerminates(self, dtab: str, path: str) -> None:
        """Binding any generated dtab ends in a value or a clean failure (never a RecursionError)."""
        state = _interp().bind(Dtab.read(dtab), Path.read(path)).states.sample()
        self.assertIsInstance(state, (Ok, Failed))
        if isinstance(state, Failed):
            self.assertIsInstance(state.exception, (NamerExceededMaxDepth, UnknownNamer, BindingTooLarge))

    @given(_dtabs, st.sampled_from(["/a", "/b/x", "/c", "/a/b/c"]))
    @settings(max_examples=40, deadline=None)
    def test_delegateTerminates(self, dtab: str, path: str) -> None:
        """Delegating any generated dtab ends in a tree or a clean failure."""
        d = _interp().delegate(Dtab.read(dtab), Path.read(path))
        result: List[Any] = []
        d.addBoth(result.append)
        self.assertEqual(len(result), 1)
        if not hasattr(result[0], "toJSON"):
            result[0].trap(DelegationDepthExceeded, BindingTooLarge)
        else:
            result[0].toJSONText()
