# -*- test-case-name: tests.test_naming_var -*-
"""
Observable values: L{Var} and L{Activity}.

A L{Var} holds a value and tells its observers when it changes.  Derived
vars (L{Var.map}, L{Var.flatMap}, L{Var.collect}) are lazy: they observe
their upstream only while they themselves are observed, and release it when
their last observer closes, so dropping a binding frees everything it held.

An L{Activity} is a Var of L{Pending}, L{Ok} or L{Failed}: a value that may
still be loading or may have failed (namer lookups, bindings).

Everything runs on the reactor thread; nothing here blocks or schedules.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, Iterable, List, Optional, Sequence, Tuple, TypeVar

from twisted.internet.defer import Deferred
from twisted.logger import Logger

__all__ = [
    "Var",
    "Closable",
    "Activity",
    "Pending",
    "Ok",
    "Failed",
    "ActivityPendingError",
]

T = TypeVar("T")
U = TypeVar("U")

_log = Logger()
_UNSET: Any = object()


class Closable:
    """
    A handle returned by C{observe}: C{close()} stops the notifications.
    """

    __slots__ = ("_var", "_fn", "closed")

    def __init__(self, var: "Optional[Var[Any]]", fn: Callable[[Any], None]) -> None:
        self._var = var
        self._fn = fn
        self.closed = False

    def close(self) -> None:
        """
        Stop observing (idempotent).
        """
        if not self.closed:
            self.closed = True
            var, self._var = self._var, None
            if var is not None:
                var._removeObserver(self)

    def _deliver(self, value: Any) -> None:
        if self.closed:
            return
        try:
            self._fn(value)
        except Exception:
            _log.failure("observer of a Var raised")


class Var(Generic[T]):
    """
    An observable value.

    C{update(v)} changes it (observers are told only when C{v} differs from
    the current value); C{observe(fn)} calls C{fn} now with the current value
    and then on every change, until the returned L{Closable} is closed.
    """

    __slots__ = ("_value", "_observers", "_version", "__weakref__")

    def __init__(self, value: T) -> None:
        self._value: T = value
        self._observers: List[Closable] = []
        self._version = 0

    # -- public -------------------------------------------------------------

    def sample(self) -> T:
        """
        @return: the current value.
        """
        return self._value

    def update(self, value: T) -> None:
        """
        Set the value, notifying observers if it changed.
        """
        self._set(value)

    def observe(self, fn: Callable[[T], None]) -> Closable:
        """
        Call C{fn(value)} now and on every change.

        @return: a L{Closable} ending the observation.
        """
        obs = Closable(self, fn)
        if not self._observers:
            self._start()
        self._observers.append(obs)
        obs._deliver(self._value)
        return obs

    @property
    def observerCount(self) -> int:
        """
        How many observations are open (for tests and leak checks).
        """
        return len(self._observers)

    def map(self, fn: Callable[[T], U]) -> "Var[U]":
        """
        A lazy derived var holding C{fn(value)}.
        """
        return _MapVar(self, fn)

    def flatMap(self, fn: "Callable[[T], Var[U]]") -> "Var[U]":
        """
        A lazy derived var following the var C{fn(value)}, switching when this
        var changes.
        """
        return _FlatMapVar(self, fn)

    @staticmethod
    def collect(vars: "Sequence[Var[Any]]") -> "Var[Tuple[Any, ...]]":
        """
        A lazy derived var of the tuple of the values of C{vars}.
        """
        return _CollectVar(tuple(vars))

    @staticmethod
    def const(value: T) -> "Var[T]":
        """
        A var that never changes (observing it costs nothing).
        """
        return _ConstVar(value)

    def changesTo(self, predicate: Callable[[T], bool]) -> "Deferred[T]":
        """
        @return: a Deferred firing with the first value (the current one
            included) for which C{predicate} is true; cancelling it stops
            observing.
        """
        done: List[Any] = []
        holder: List[Closable] = []

        def cancel(d: "Deferred[T]") -> None:
            if holder:
                holder[0].close()

        d: "Deferred[T]" = Deferred(cancel)

        def check(value: T) -> None:
            if done or not predicate(value):
                return
            done.append(value)
            if holder:
                holder[0].close()
            d.callback(value)

        obs = self.observe(check)
        if done:
            obs.close()
        else:
            holder.append(obs)
        return d

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._value!r}>"

    # -- internals ----------------------------------------------------------

    def _set(self, value: T) -> None:
        old = self._value
        if value is old:
            return
        try:
            if value == old:
                return
        except Exception:
            pass
        self._value = value
        self._version += 1
        version = self._version
        for obs in tuple(self._observers):
            if self._version != version:
                return
            obs._deliver(value)

    def _removeObserver(self, obs: Closable) -> None:
        try:
            self._observers.remove(obs)
        except ValueError:
            return
        if not self._observers:
            self._stop()

    def _start(self) -> None:
        """
        Called when the first observer arrives (derived vars subscribe upstream).
        """

    def _stop(self) -> None:
        """
        Called when the last observer leaves (derived vars unsubscribe).
        """


class _ConstVar(Var[T]):
    __slots__ = ()

    def update(self, value: T) -> None:
        raise TypeError("a constant Var cannot be updated")

    def observe(self, fn: Callable[[T], None]) -> Closable:
        obs = Closable(None, fn)
        obs._deliver(self._value)
        return obs


class _DerivedVar(Var[T]):
    __slots__ = ()

    def __init__(self) -> None:
        Var.__init__(self, _UNSET)

    def update(self, value: T) -> None:
        raise TypeError("a derived Var cannot be updated")

    def sample(self) -> T:
        if self._observers:
            return self._value
        obs = self.observe(lambda v: None)
        value = self._value
        obs.close()
        return value

    def _stop(self) -> None:
        self._release()
        self._value = _UNSET

    def _release(self) -> None:
        raise NotImplementedError()


class _MapVar(_DerivedVar[U]):
    __slots__ = ("_parent", "_fn", "_sub")

    def __init__(self, parent: Var[T], fn: Callable[[T], U]) -> None:
        _DerivedVar.__init__(self)
        self._parent = parent
        self._fn = fn
        self._sub: Optional[Closable] = None

    def _start(self) -> None:
        fn = self._fn
        self._sub = self._parent.observe(lambda v: self._set(fn(v)))

    def _release(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            sub.close()


class _FlatMapVar(_DerivedVar[U]):
    __slots__ = ("_parent", "_fn", "_outer", "_inner", "_generation")

    def __init__(self, parent: Var[T], fn: Callable[[T], Var[U]]) -> None:
        _DerivedVar.__init__(self)
        self._parent = parent
        self._fn = fn
        self._outer: Optional[Closable] = None
        self._inner: Optional[Closable] = None
        self._generation = 0

    def _start(self) -> None:
        self._outer = self._parent.observe(self._onOuter)

    def _onOuter(self, value: T) -> None:
        inner = self._fn(value)
        self._generation += 1
        generation = self._generation

        def onInner(v: U) -> None:
            if self._generation == generation:
                self._set(v)

        old = self._inner
        self._inner = inner.observe(onInner)
        if old is not None:
            old.close()

    def _release(self) -> None:
        self._generation += 1
        outer, self._outer = self._outer, None
        inner, self._inner = self._inner, None
        if outer is not None:
            outer.close()
        if inner is not None:
            inner.close()


class _CollectVar(_DerivedVar[Tuple[Any, ...]]):
    __slots__ = ("_vars", "_subs", "_values", "_starting")

    def __init__(self, vars: Tuple[Var[Any], ...]) -> None:
        _DerivedVar.__init__(self)
        self._vars = vars
        self._subs: List[Closable] = []
        self._values: List[Any] = []
        self._starting = False

    def _start(self) -> None:
        self._values = [_UNSET] * len(self._vars)
        self._starting = True
        try:
            for i, v in enumerate(self._vars):
                self._subs.append(v.observe(self._setter(i)))
        finally:
            self._starting = False
        self._set(tuple(self._values))

    def _setter(self, i: int) -> Callable[[Any], None]:
        def setter(value: Any) -> None:
            self._values[i] = value
            if not self._starting:
                self._set(tuple(self._values))

        return setter

    def _release(self) -> None:
        subs, self._subs = self._subs, []
        for s in subs:
            s.close()


# ---------------------------------------------------------------------------
# Activity


class _PendingState:
    __slots__ = ()

    def __repr__(self) -> str:
        return "Pending"

    def __reduce__(self) -> str:
        return "Pending"


#: The state of an Activity that has no value yet.
Pending: Any = _PendingState()


class Ok(Generic[T]):
    """
    The state of an Activity holding a value.
    """

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ok) and (self.value is other.value or self.value == other.value)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(("Ok", self.value))

    def __repr__(self) -> str:
        return f"Ok({self.value!r})"


class Failed:
    """
    The state of an Activity that failed.

    @ivar exception: the cause (an C{Exception}).
    """

    __slots__ = ("exception",)

    def __init__(self, exception: BaseException) -> None:
        self.exception = exception

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Failed):
            return False
        a, b = self.exception, other.exception
        return a is b or (type(a) is type(b) and a.args == b.args)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(("Failed", type(self.exception)))

    def __repr__(self) -> str:
        return f"Failed({self.exception!r})"


class ActivityPendingError(Exception):
    """
    Raised by L{Activity.sample} while the activity is pending.
    """


class Activity(Generic[T]):
    """
    A L{Var} of L{Pending} | L{Ok} | L{Failed}.

    @ivar states: the underlying var of states.
    """

    __slots__ = ("states",)

    def __init__(self, states: "Var[Any]") -> None:
        self.states = states

    @classmethod
    def value(cls, value: T) -> "Activity[T]":
        """
        A constant, successful activity.
        """
        return cls(_ConstVar(Ok(value)))

    @classmethod
    def exception(cls, exception: BaseException) -> "Activity[Any]":
        """
        A constant, failed activity.
        """
        return cls(_ConstVar(Failed(exception)))

    @classmethod
    def pending(cls) -> "Activity[Any]":
        """
        An activity that never leaves the pending state.
        """
        return cls(_PENDING_VAR)

    @classmethod
    def mutable(cls, state: Any = Pending) -> "Tuple[Activity[Any], Var[Any]]":
        """
        @return: C{(activity, var)}: update C{var} with L{Ok}/L{Failed}/L{Pending}
            to drive the activity.
        """
        var: Var[Any] = Var(state)
        return cls(var), var

    def sample(self) -> T:
        """
        @return: the current value.
        @raise Exception: the failure, when failed.
        @raise ActivityPendingError: when pending.
        """
        state = self.states.sample()
        if isinstance(state, Ok):
            return state.value  # type: ignore[no-any-return]
        if isinstance(state, Failed):
            raise state.exception
        raise ActivityPendingError("activity is pending")

    def observe(self, fn: Callable[[Any], None]) -> Closable:
        """
        Observe the states (see L{Var.observe}).
        """
        return self.states.observe(fn)

    def map(self, fn: Callable[[T], U]) -> "Activity[U]":
        """
        Apply C{fn} to the value; an exception from C{fn} fails the activity.
        """

        def mapState(state: Any) -> Any:
            if isinstance(state, Ok):
                try:
                    return Ok(fn(state.value))
                except Exception as e:
                    return Failed(e)
            return state

        return Activity(self.states.map(mapState))

    def flatMap(self, fn: "Callable[[T], Activity[U]]") -> "Activity[U]":
        """
        Follow the activity C{fn(value)}; pending and failed states pass through.
        """

        def flatState(state: Any) -> Var[Any]:
            if isinstance(state, Ok):
                try:
                    return fn(state.value).states
                except Exception as e:
                    return _ConstVar(Failed(e))
            return _ConstVar(state)

        return Activity(self.states.flatMap(flatState))

    @staticmethod
    def collect(activities: "Iterable[Activity[Any]]") -> "Activity[Tuple[Any, ...]]":
        """
        The tuple of the values: failed if any failed (the first failure),
        else pending if any is pending.
        """
        acts = tuple(activities)
        if not acts:
            return Activity.value(())

        def combine(states: Tuple[Any, ...]) -> Any:
            pending = False
            for s in states:
                if isinstance(s, Failed):
                    return s
                if not isinstance(s, Ok):
                    pending = True
            if pending:
                return Pending
            return Ok(tuple(s.value for s in states))

        return Activity(Var.collect([a.states for a in acts]).map(combine))

    def join(self, other: "Activity[Any]") -> "Activity[Tuple[Any, Any]]":
        """
        Both values as a pair (see L{collect}).
        """
        return Activity.collect((self, other))

    def stabilize(self) -> "Activity[T]":
        """
        Once a value has been seen, keep the last one through later
        failures and pending states (they are reported on the original).
        """
        last: List[Any] = []

        def keep(state: Any) -> Any:
            if isinstance(state, Ok):
                last[:] = [state]
                return state
            if last:
                return last[0]
            return state

        return Activity(self.states.map(keep))

    def toDeferred(self) -> "Deferred[T]":
        """
        @return: a Deferred firing with the first value, or failing with the
            first failure; cancelling it stops observing.
        """
        d = self.states.changesTo(lambda s: s is not Pending and isinstance(s, (Ok, Failed)))

        def unwrap(state: Any) -> Any:
            if isinstance(state, Ok):
                return state.value
            raise state.exception

        return d.addCallback(unwrap)

    def __repr__(self) -> str:
        return f"<Activity {self.states!r}>"


_PENDING_VAR: Var[Any] = _ConstVar(Pending)
