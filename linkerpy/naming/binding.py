# -*- test-case-name: tests.test_naming_binding -*-
"""
Binding: from a name tree of paths to a live name tree of L{Bound} names.

L{bind} follows Finagle's C{Namer.bind}: each C{Leaf(path)} is looked up
(the dtab first, then namers, then the C{/$/} system namers) and the result
bound again, at most L{MAX_DEPTH} lookups deep; C{Alt} is lazy and leaves no
C{Alt} in the result; a failing C{Union} branch is dropped when another
branch binds.

The result is an L{Activity} that stays up to date by itself: while it is
observed it watches every namer activity the last evaluation consulted, and
re-evaluates (synchronously, from memoised lookups) when one changes.
Address changes travel through each L{Bound}'s C{addr} var and need no
re-evaluation at all.  Evaluation uses an explicit stack (generators driven
by L{trampoline}), so deep chains never hit Python's recursion limit.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Generator, List, Optional

from linkerpy.naming.path import Path
from linkerpy.naming.tree import Alt, Empty, Fail, Leaf, NameTree, Neg, Union, Weighted
from linkerpy.naming.var import Activity, Closable, Failed, Ok, Pending, _DerivedVar

__all__ = [
    "MAX_DEPTH",
    "NamerExceededMaxDepth",
    "BindingTooLarge",
    "MAX_LOOKUPS",
    "UnknownNamer",
    "bind",
    "trampoline",
]

#: The most lookups allowed along one chain (Finagle's C{namerMaxDepth}).
MAX_DEPTH = 100

#: The most lookups one evaluation may make in total.  Finagle has no such
#: bound; without it a dtab such as C{/ => /a & /b} (a request-local dtab can
#: say that) costs 2**100 lookups and would stall the reactor.
MAX_LOOKUPS = 10_000

#: What a lookup returns: a tree now, or an activity of one.
LookupResult = Any
LookupFn = Callable[[Path], LookupResult]


class NamerExceededMaxDepth(Exception):
    """
    Binding needed more than L{MAX_DEPTH} lookups (a dtab loop, usually).
    """

    def __init__(self, depth: int = MAX_DEPTH) -> None:
        super().__init__(f"Max recursion level: {depth} reached in Namer lookup")


class UnknownNamer(Exception):
    """
    A C{/$/<name>} path names no system namer.
    """

    def __init__(self, name: str, path: Path) -> None:
        super().__init__(f"Unknown namer: {name} for path: {path.show}")
        self.name = name
        self.path = path


class BindingTooLarge(Exception):
    """
    An evaluation needed more than L{MAX_LOOKUPS} lookups in total.
    """

    def __init__(self) -> None:
        super().__init__(f"Binding exceeded {MAX_LOOKUPS} lookups (a looping dtab?)")


class _Abort(BaseException):
    """
    Carries an error that must stop the whole evaluation (not one branch).
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class _PendingSignal(BaseException):
    """
    Raised inside an evaluation when a lookup is still pending.
    """


_PENDING = _PendingSignal()


def trampoline(gen: Generator[Any, Any, Any]) -> Any:
    """
    Run a generator-based recursive computation without Python recursion.

    A generator "calls" a sub-computation by yielding another generator and
    receives its return value (or its exception, thrown in) at the yield.

    @return: the outermost generator's return value.
    """
    stack: List[Generator[Any, Any, Any]] = [gen]
    value: Any = None
    error: Optional[BaseException] = None
    while True:
        top = stack[-1]
        try:
            if error is not None:
                e, error = error, None
                sub = top.throw(e)
            else:
                sub = top.send(value)
        except StopIteration as stop:
            stack.pop()
            value = stop.value
            if not stack:
                return value
            continue
        except BaseException as e:
            stack.pop()
            if not stack:
                raise
            error = e
            continue
        stack.append(sub)
        value = None


class _Binder:
    """
    One evaluation of a tree against a lookup function, with the states of
    the activities it consulted supplied by C{stateOf}.
    """

    __slots__ = ("lookup", "stateOf", "budget")

    def __init__(self, lookup: LookupFn, stateOf: Callable[[Path, Activity[Any]], Any]) -> None:
        self.lookup = lookup
        self.stateOf = stateOf
        self.budget = MAX_LOOKUPS

    def run(self, tree: NameTree) -> Any:
        """
        @return: an L{Ok}, L{Failed} or L{Pending} state.
        """
        self.budget = MAX_LOOKUPS
        try:
            return Ok(trampoline(self.bind(tree, 0)))
        except _PendingSignal:
            return Pending
        except _Abort as a:
            return Failed(a.error)
        except Exception as e:
            return Failed(e)

    def bind(self, tree: NameTree, depth: int) -> Generator[Any, Any, NameTree]:
        if depth > MAX_DEPTH:
            raise NamerExceededMaxDepth()
        if isinstance(tree, Leaf):
            value = tree.value
            if isinstance(value, Path):
                self.budget -= 1
                if self.budget < 0:
                    raise _Abort(BindingTooLarge())
                looked = self.lookup(value)
                if isinstance(looked, Activity):
                    state = self.stateOf(value, looked)
                    if isinstance(state, Ok):
                        looked = state.value
                    elif isinstance(state, Failed):
                        raise state.exception
                    else:
                        raise _PENDING
                result = yield self.bind(looked, depth + 1)
                return result  # type: ignore[no-any-return]
            return tree
        if isinstance(tree, Alt):
            trees = tree.trees
            if not trees:
                return Neg
            if len(trees) == 1:
                return (yield self.bind(trees[0], depth))  # type: ignore[no-any-return]
            for child in trees:
                r = yield self.bind(child, depth)
                if r is Fail:
                    return Fail
                if r is Neg:
                    continue
                return r  # type: ignore[no-any-return]
            return Neg
        if isinstance(tree, Union):
            branches = tree.trees
            if not branches:
                return Neg
            if len(branches) == 1:
                return (yield self.bind(branches[0].tree, depth))  # type: ignore[no-any-return]
            oks: List[Weighted] = []
            firstFailure: Optional[Exception] = None
            for w in branches:
                try:
                    r = yield self.bind(w.tree, depth)
                except _PendingSignal:
                    continue
                except Exception as e:
                    if firstFailure is None:
                        firstFailure = e
                    continue
                oks.append(Weighted(w.weight, r))
            if not oks:
                if firstFailure is not None:
                    raise firstFailure
                raise _PENDING
            return Union(*oks).simplify()
        if tree is Neg or tree is Fail or tree is Empty:
            return tree
        raise TypeError(f"not a name tree: {tree!r}")


class _Dependency:
    __slots__ = ("activity", "state", "closable", "used")

    def __init__(self, activity: Activity[Any]) -> None:
        self.activity = activity
        self.state: Any = Pending
        self.closable: Optional[Closable] = None
        self.used = True


class _BindVar(_DerivedVar[Any]):
    """
    The states of a live binding (see the module docstring).
    """

    __slots__ = ("_tree", "_lookup", "_deps", "_starting", "_computing", "_dirty")

    def __init__(self, lookup: LookupFn, tree: NameTree) -> None:
        _DerivedVar.__init__(self)
        self._tree = tree
        self._lookup = lookup
        self._deps: Dict[Path, _Dependency] = {}
        self._starting = False
        self._computing = False
        self._dirty = False

    def _start(self) -> None:
        self._recompute()

    def _release(self) -> None:
        deps, self._deps = self._deps, {}
        for dep in deps.values():
            if dep.closable is not None:
                dep.closable.close()

    def _stateOf(self, path: Path, activity: Activity[Any]) -> Any:
        dep = self._deps.get(path)
        if dep is None or dep.activity is not activity:
            if dep is not None and dep.closable is not None:
                dep.closable.close()
            dep = self._deps[path] = _Dependency(activity)

            def changed(state: Any, dep: _Dependency = dep) -> None:
                dep.state = state
                if dep.closable is not None and self._deps.get(path) is dep:
                    self._changed()

            dep.closable = activity.states.observe(changed)
        dep.used = True
        return dep.state

    def _memoLookup(self, path: Path) -> LookupResult:
        dep = self._deps.get(path)
        if dep is not None:
            return dep.activity
        return self._lookup(path)

    def _changed(self) -> None:
        if self._computing:
            self._dirty = True
            return
        if self._observers:
            self._recompute()

    def _recompute(self) -> None:
        binder = _Binder(self._memoLookup, self._stateOf)
        for _ in range(100):
            self._computing = True
            self._dirty = False
            for dep in self._deps.values():
                dep.used = False
            try:
                state = binder.run(self._tree)
            finally:
                self._computing = False
            for path in [p for p, d in self._deps.items() if not d.used]:
                dep = self._deps.pop(path)
                if dep.closable is not None:
                    dep.closable.close()
            if not self._dirty:
                break
        self._set(state)


def bind(lookup: LookupFn, tree: NameTree) -> Activity[NameTree]:
    """
    Bind C{tree} with C{lookup}.

    @param lookup: C{lookup(path)} returns the next tree for C{path} (a
        L{NameTree} of L{Path}/L{Bound} leaves, or an L{Activity} of one);
        it may raise, which fails the branch.
    @return: a live L{Activity} of a L{NameTree} of L{Bound} with no C{Alt}.
    """
    return Activity(_BindVar(lookup, tree))


def bindOnce(lookup: LookupFn, tree: NameTree) -> Any:
    """
    Evaluate once, sampling activities without observing them (for tests
    and tools): an L{Ok}, L{Failed} or L{Pending} state.
    """
    return _Binder(lookup, lambda path, act: act.states.sample()).run(tree)
