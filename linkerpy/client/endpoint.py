# -*- test-case-name: tests.test_client_endpoint -*-
"""
An endpoint: one address of a client's replica set, with the state load
balancers and failure accrual share (load, latency, liveness).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

#: Endpoint states.
LIVE = "live"
DEAD = "dead"
PROBING = "probing"


class Endpoint:
    """
    One concrete address of a client.

    @ivar host: IP address or host name.
    @ivar port: TCP port.
    @ivar weight: the address weight (from C{io.l5d.fs} C{* weight} lines or
        SRV records); balancers send proportionally more load to heavier
        endpoints.
    @ivar pending: requests in flight to this endpoint (the load p2c uses).
    @ivar ewma: the exponentially weighted moving average of latency in ms,
        maintained by the balancer that uses it (0 until measured).
    @ivar state: L{LIVE}, L{DEAD} (until C{deadUntil}) or L{PROBING} (one
        request, the probe, is let through to test it: C{probing} is true
        while it is in flight).
    @ivar accrual: this endpoint's L{linkerpy.interfaces.IFailureAccrualPolicy}.
    @ivar pool: the protocol's connection pool for this address (set by the
        client that owns the endpoint).
    @ivar onStateChange: called with the endpoint when its state changes.
    """

    __slots__ = (
        "host",
        "port",
        "weight",
        "meta",
        "pending",
        "ewma",
        "ewmaStamp",
        "state",
        "deadUntil",
        "accrual",
        "pool",
        "onStateChange",
        "successes",
        "failures",
        "probing",
        "_lastDeadFor",
        "_clock",
        "_reviveCall",
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
        self.state = LIVE
        self.deadUntil = 0.0
        self.accrual = accrual
        self.pool: Any = None
        self.onStateChange: Optional[Callable[[Endpoint], None]] = None
        self.successes = 0
        self.failures = 0
        self.probing = False
        self._lastDeadFor = 5.0
        self._clock = clock
        self._reviveCall: Any = None

    @property
    def key(self) -> tuple:
        return (self.host, self.port)

    def __repr__(self) -> str:
        return f"<Endpoint {self.host}:{self.port} w={self.weight} {self.state} pending={self.pending}>"

    @property
    def available(self) -> bool:
        """
        Whether a balancer should pick this endpoint now: it is live, or it
        is being probed and no probe request is in flight.
        """
        return self.state == LIVE or (self.state == PROBING and not self.probing)

    # -- request accounting (called by the client stack) --------------------------

    def acquire(self) -> None:
        """
        A request is being sent to this endpoint.
        """
        self.pending += 1
        if self.state == PROBING and not self.probing:
            self.probing = True

    def release(self, success: bool) -> None:
        """
        A request sent after L{acquire} finished.

        @param success: the classifier's verdict (or whether the connection
            succeeded, for protocols without responses).
        """
        self.pending -= 1
        wasProbe = self.probing and self.state == PROBING
        if success:
            self.successes += 1
            if self.accrual is not None:
                self.accrual.recordSuccess()
            if wasProbe:
                self.probing = False
                if self.accrual is not None:
                    self.accrual.revived()
                self._setState(LIVE)
            return
        self.failures += 1
        if self.accrual is None:
            return
        deadFor = self.accrual.recordFailure()
        if wasProbe:
            self.probing = False
            self.markDead(deadFor if deadFor is not None else self._lastDeadFor)
        elif deadFor is not None and self.state == LIVE:
            self.markDead(deadFor)

    def markDead(self, seconds: float) -> None:
        """
        Take the endpoint out of rotation for C{seconds}; afterwards one
        probe request is let through (state L{PROBING}).
        """
        if self._reviveCall is not None and self._reviveCall.active():
            self._reviveCall.cancel()
        self._lastDeadFor = seconds
        now = self._clock.seconds() if self._clock is not None else 0.0
        self.deadUntil = now + seconds
        self._setState(DEAD)
        if self._clock is not None:
            self._reviveCall = self._clock.callLater(seconds, self._probe)

    def _probe(self) -> None:
        self._reviveCall = None
        if self.state == DEAD:
            self.probing = False
            self._setState(PROBING)

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

    def _setState(self, state: str) -> None:
        if state != self.state:
            self.state = state
            if self.onStateChange is not None:
                self.onStateChange(self)
