# -*- test-case-name: tests.test_namerd_client,tests.test_mesh_client -*-
"""
What the router side's control-plane streams share, whichever API they
speak (namerd's HTTP watch streams, L{linkerpy.namerd.client.stream}; the
io.l5d.mesh gRPC streams, L{linkerpy.mesh.client}): a question kept open
until stopped; after any loss the owner keeps its last value and the
stream is opened again after a jittered, growing delay (reset once a
stream opens); counts and state for the metrics and the admin pages.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from twisted.logger import Logger

__all__ = ["ReconnectingStream"]

log = Logger()


class ReconnectingStream:
    """
    The life cycle of one streamed question.

    A subclass opens one attempt in L{_open} and drops whatever attempt or
    stream is in progress in L{_drop}; it calls L{_opened} when a stream
    is up, L{_deliver} with each value, and L{_retry} (after setting
    C{lastError}) when an attempt fails or a stream ends.

    The C{connection} provides C{reactor}, C{streams} (the open streams),
    C{newBackoff()} (an iterator of delays) and the counters C{updates},
    C{errors} and C{reconnects}.

    @cvar logName: how log lines name the control plane.
    """

    logName = "namerd"

    def __init__(self, connection: Any, kind: str, description: str) -> None:
        self.connection = connection
        self.reactor = connection.reactor
        self.kind = kind
        self.description = description
        self.state = "idle"
        self.updates = 0
        self.reconnects = 0
        self.lastError: Optional[str] = None
        self.lastUpdate: Optional[float] = None
        self._call: Any = None
        self._delays = connection.newBackoff()
        self._stopped = True

    def start(self) -> None:
        if not self._stopped:
            return
        self._stopped = False
        self.connection.streams.append(self)
        self._connect()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.state = "stopped"
        if self in self.connection.streams:
            self.connection.streams.remove(self)
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._drop()

    # -- for subclasses ---------------------------------------------------------------

    def _open(self) -> None:
        raise NotImplementedError()

    def _drop(self) -> None:
        raise NotImplementedError()

    def _connect(self) -> None:
        self._call = None
        if self._stopped:
            return
        self.state = "connecting"
        self._open()

    def _opened(self) -> None:
        """
        A stream is up: say so if it was lost before, and reset the backoff.
        """
        if self.reconnects and self.lastError is not None:
            log.info(self.logName + " {kind} stream {what}: reconnected", kind=self.kind, what=self.description)
        self.state = "connected"
        self._delays = self.connection.newBackoff()

    def _deliver(self, use: Callable[[Any], None], value: Any) -> None:
        """
        Count an update and hand C{value} to C{use}; an exception there is
        counted and logged, and the stream goes on.
        """
        self.updates += 1
        self.connection.updates.incr()
        self.lastUpdate = self.reactor.seconds()
        try:
            use(value)
        except Exception as e:
            self.connection.errors.incr()
            self.lastError = f"cannot use namerd's answer: {e}"
            log.failure(self.logName + " {kind} stream {what}: cannot use the answer", kind=self.kind, what=self.description)

    def _retry(self) -> None:
        """
        Open the stream again after the next backoff delay.
        """
        if self._stopped:
            return
        if self.state == "connected":
            # Log the transition, not every attempt.
            log.warn(
                self.logName + " {kind} stream {what} lost ({error}); keeping the last answer and reconnecting",
                kind=self.kind,
                what=self.description,
                error=self.lastError,
            )
        self.state = "backoff"
        self.reconnects += 1
        self.connection.reconnects.incr()
        delay = next(self._delays)
        self._call = self.reactor.callLater(delay, self._connect)

    def _describe(self, **extra: Any) -> Dict[str, Any]:
        """
        This stream on the admin pages (C{extra} keys added).
        """
        out: Dict[str, Any] = {"kind": self.kind, "name": self.description}
        out.update(extra)
        out.update(
            {
                "state": self.state,
                "updates": self.updates,
                "reconnects": self.reconnects,
                "lastUpdateAt": self.lastUpdate,
                "lastError": self.lastError,
            }
        )
        return out
