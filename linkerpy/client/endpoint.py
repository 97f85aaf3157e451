# -*- test-case-name: tests.test_accrual,tests.test_balancers -*-
"""
An endpoint: one address of a client's replica set, with the state load
balancers and failure accrual share (load, latency, liveness).

Life cycle (Finagle's C{FailureAccrualFactory}, per endpoint)::

    LIVE --(accrual policy says "dead for N s")--> DEAD
    DEAD --(N seconds later)--> PROBING (open: one request may go)
    PROBING --(a request is sent: the probe)--> PROBING (closed: busy)
    PROBING/closed --(a request succeeds)--> LIVE      (policy.revived())
    PROBING/closed --(a request fails, policy says dead for M s)--> DEAD
    PROBING/closed --(a request fails, policy says nothing)--> PROBING/open

While C{DEAD}, failures of requests still in flight are ignored (they
belong to the episode that killed the endpoint); successes are recorded.

Balancers need to know when an endpoint's availability changes (to keep
their own indexes current without scanning) and, for some, when its load
changes.  They register callables with L{Endpoint.watchAvailability} and
L{Endpoint.watchLoad}; endpoints hold them through weak references, so a
balancer that is replaced and dropped stops being notified.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Optional, Tuple

#: Endpoint states.
LIVE = "live"
DEAD = "dead"
PROBING = "probing"

_Watcher = Callable[["Endpoint"], None]


def _ref(fn: _Watcher) -> Any:
    if hasattr(fn, "__self__") and hasattr(fn, "__func__"):
        return weakref.WeakMethod(fn)  # type: ignore[arg-type]
    return lambda: fn


class Endpoint:
    """
    One concrete address of a client.

    @ivar host: IP address or host name.
    @ivar port: TCP port.
    @ivar weight: the address weight (from C{io.l5d.fs} C{* weight} lines or
        SRV records); balancers send proportionally more load to heavier
        endpoints.  A balancer reads it in C{update()}: call C{update()}
        again after changing it.
    @ivar pending: requests in flight to this endpoint (the load p2c uses).
    @ivar ewma: the peak-EWMA latency cost in ms, maintained by the C{ewma}
        balancer (0 until measured).
    @ivar ewmaStamp: clock time (seconds) of the last C{ewma} update.
    @ivar available: whether a balancer should pick this endpoint now: it is
        live, or it is being probed and no probe request is in flight.
        Read-only: it follows L{state} and L{probing}.
    @ivar accrual: this endpoint's L{linkerpy.interfaces.IFailureAccrualPolicy},
        or C{None} (never marked dead).
    @ivar pool: the protocol's connection pool for this address (set by the
        client that owns the endpoint).
    @ivar onStateChange: called with the endpoint when its state changes.
    @ivar successes: requests that succeeded (a counter).
    @ivar failures: requests that failed (a counter).
    @ivar removals: times the endpoint was marked dead while live.
    @ivar revivals: times a probe succeeded and the endpoint came back.
    @ivar deadUntil: clock time when the current dead period ends.
    """

    __slots__ = (
        "host",
        "port",
        "weight",
        "meta",
        "pending",
        "ewma",
        "ewmaStamp",
        "available",
        "deadUntil",
        "accrual",
        "pool",
        "onStateChange",
        "successes",
        "failures",
        "removals",
        "revivals",
        "_state",
        "_probing",
        "_lastDeadFor",
        "_clock",
        "_reviveCall",
        "_availabilityWatchers",
        "_loadWatchers",
        "__weakref__",
    )

    def __init__(
        self,
        host: str,
        port: int,
        weight: float = 1.0,
        meta: Optional[dict] = None,
        accrual: Any = None,
        clock: Any = None,
    ) -> None:
        self.host = host
        self.port = port
        self.weight = weight
        self.meta = meta or {}
        self.pending = 0
        self.ewma = 0.0
        self.ewmaStamp = 0.0
        self.available = True
        self.deadUntil = 0.0
        self.accrual = accrual
        self.pool: Any = None
        self.onStateChange: Optional[Callable[[Endpoint], None]] = None
        self.successes = 0
        self.failures = 0
        self.removals = 0
        self.revivals = 0
        self._state = LIVE
        self._probing = False
        self._lastDeadFor = 5.0
        self._clock = clock
        self._reviveCall: Any = None
        self._availabilityWatchers: Tuple[Any, ...] = ()
        self._loadWatchers: Tuple[Any, ...] = ()

    @property
    def key(self) -> tuple:
        return (self.host, self.port)

    def __repr__(self) -> str:
        return f"<Endpoint {self.host}:{self.port} w={self.weight} {self._state} pending={self.pending}>"

    # -- state -----------------------------------------------------------------------

    @property
    def state(self) -> str:
        """
        L{LIVE}, L{DEAD} (until C{deadUntil}) or L{PROBING}.  Assigning it
        moves the endpoint to that state (clearing any probe in flight).
        """
        return self._state

    @state.setter
    def state(self, value: str) -> None:
        if value not in (LIVE, DEAD, PROBING):
            raise ValueError(f"unknown endpoint state {value!r}")
        self._transition(value, False)

    @property
    def probing(self) -> bool:
        """
        Whether the probe request of a L{PROBING} endpoint is in flight.
        """
        return self._probing

    def _transition(self, state: str, probing: bool) -> None:
        oldState = self._state
        wasAvailable = self.available
        self._state = state
        self._probing = probing
        nowAvailable = state == LIVE or (state == PROBING and not probing)
        self.available = nowAvailable
        if nowAvailable != wasAvailable and self._availabilityWatchers:
            self._notify(self._availabilityWatchers, "_availabilityWatchers")
        if state != oldState and self.onStateChange is not None:
            self.onStateChange(self)

    # -- observers (balancers) --------------------------------------------------------

    def watchAvailability(self, fn: _Watcher) -> None:
        """
        Call C{fn(endpoint)} whenever L{available} changes.  Bound methods
        are held weakly.
        """
        self._availabilityWatchers = self._availabilityWatchers + (_ref(fn),)

    def unwatchAvailability(self, fn: _Watcher) -> None:
        """
        Stop calling C{fn} (registered with L{watchAvailability}).
        """
        self._availabilityWatchers = tuple(r for r in self._availabilityWatchers if r() != fn)

    def watchLoad(self, fn: _Watcher) -> None:
        """
        Call C{fn(endpoint)} after every change of L{pending}.  Bound
        methods are held weakly.
        """
        self._loadWatchers = self._loadWatchers + (_ref(fn),)

    def unwatchLoad(self, fn: _Watcher) -> None:
        """
        Stop calling C{fn} (registered with L{watchLoad}).
        """
        self._loadWatchers = tuple(r for r in self._loadWatchers if r() != fn)

    def _notify(self, watchers: Tuple[Any, ...], attribute: str) -> None:
        dead = False
        for ref in watchers:
            fn = ref()
            if fn is None:
                dead = True
            else:
                fn(self)
        if dead:
            setattr(self, attribute, tuple(r for r in getattr(self, attribute) if r() is not None))

    # -- request accounting (called by the client stack) --------------------------

    def acquire(self) -> None:
        """
        A request is being sent to this endpoint.  If the endpoint is
        waiting for a probe, this request is the probe.
        """
        self.pending += 1
        if self._state == PROBING and not self._probing:
            self._transition(PROBING, True)
        if self._loadWatchers:
            self._notify(self._loadWatchers, "_loadWatchers")

    def release(self, success: bool) -> None:
        """
        A request sent after L{acquire} finished.

        @param success: the classifier's verdict (or whether the connection
            succeeded, for protocols without responses).
        """
        self.pending -= 1
        if self._loadWatchers:
            self._notify(self._loadWatchers, "_loadWatchers")
        accrual = self.accrual
        state = self._state
        if success:
            self.successes += 1
            if state == PROBING and self._probing:
                self.revivals += 1
                if accrual is not None:
                    accrual.revived()
                self._transition(LIVE, False)
            if accrual is not None:
                accrual.recordSuccess()
            return
        self.failures += 1
        if accrual is None:
            return
        if state == LIVE:
            deadFor = accrual.recordFailure()
            if deadFor is not None:
                self.markDead(deadFor)
        elif state == PROBING and self._probing:
            deadFor = accrual.recordFailure()
            if deadFor is not None:
                self.markDead(deadFor)
            else:
                # The policy does not say dead: let another probe through.
                self._transition(PROBING, False)
        # DEAD, or PROBING without a probe sent: a straggler from before the
        # endpoint was marked dead; it says nothing new.

    def markDead(self, seconds: float) -> None:
        """
        Take the endpoint out of rotation for C{seconds}; afterwards one
        probe request is let through (state L{PROBING}).
        """
        if self._reviveCall is not None and self._reviveCall.active():
            self._reviveCall.cancel()
        if self._state == LIVE:
            self.removals += 1
        self._lastDeadFor = seconds
        now = self._clock.seconds() if self._clock is not None else 0.0
        self.deadUntil = now + seconds
        self._transition(DEAD, False)
        if self._clock is not None:
            self._reviveCall = self._clock.callLater(seconds, self._probe)

    def _probe(self) -> None:
        self._reviveCall = None
        if self._state == DEAD:
            self._transition(PROBING, False)

    def close(self) -> None:
        """
        The endpoint left the replica set: stop timers, close its pool.
        """
        if self._reviveCall is not None and self._reviveCall.active():
            self._reviveCall.cancel()
        self._reviveCall = None
        if self.pool is not None:
            closer = getattr(self.pool, "close", None)
            if closer is not None:
                closer()
