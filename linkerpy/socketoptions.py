# -*- test-case-name: tests.test_socket_options -*-
"""
Linkerd's C{socketOptions} (on the admin server, router servers, HTTP and
HTTP/2 clients, and the control plane's interfaces), applied to real
sockets:

  - on a listening socket: C{reuseAddr}, C{reusePort} (before C{bind}) and
    C{backlog};
  - on every connection accepted or made: C{noDelay}, C{keepAlive}, and the
    C{readTimeoutMs} / C{writeTimeoutMs} watchdogs: a connection on which
    nothing has been read for C{readTimeoutMs}, or whose unsent output has
    not moved for C{writeTimeoutMs}, is aborted.

The watchdogs cost nothing unless configured: connections get a transport
class that records when it last read or wrote only when a timeout is set,
and one sweep per reactor checks them (every quarter of the shortest
timeout, at most once every 50 ms and at least once a second).

L{linkerpy.net.listenTCP} and L{linkerpy.net.connectTCP} take an
C{options} argument and do all of this; a protocol's own C{setNoDelay}
call then leaves the configured value alone.
"""

from __future__ import annotations

import socket
import weakref
from typing import Any, Dict, Optional, Tuple

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from linkerpy.net import holdsOutput, peerString

log = Logger()

#: Sweep period bounds (seconds).
MIN_SWEEP = 0.05
MAX_SWEEP = 1.0


def backlogOf(options: Any, default: int) -> int:
    """
    The listen backlog: C{options.backlog} when set, else C{default}.
    """
    if options is not None and getattr(options, "backlog", None):
        return int(options.backlog)
    return default


def applyToListening(skt: socket.socket, options: Any) -> None:
    """
    Set C{SO_REUSEADDR} and C{SO_REUSEPORT} on a socket about to be bound.
    """
    if options is None:
        return
    skt.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1 if options.reuseAddr else 0)
    if options.reusePort:
        skt.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)


def timeoutsOf(options: Any) -> Tuple[Optional[float], Optional[float]]:
    """
    C{(readTimeout, writeTimeout)} in seconds (C{None}: unbounded).
    """
    if options is None:
        return None, None
    read = getattr(options, "readTimeoutMs", None)
    write = getattr(options, "writeTimeoutMs", None)
    return (read / 1000.0 if read else None, write / 1000.0 if write else None)


_timedClasses: Dict[type, type] = {}


def transportClass(base: type, options: Any) -> type:
    """
    C{base}, or (when C{options} sets a read or write timeout) a subclass
    that records the time of its last read and of its last write progress.
    """
    if timeoutsOf(options) == (None, None):
        return base
    cls = _timedClasses.get(base)
    if cls is None:
        cls = type("Timed" + base.__name__, (_Timed, base), {})
        _timedClasses[base] = cls
    return cls


class _Timed:
    """
    Mixin for TCP transports watched by a L{_Sweep}.
    """

    _lastRead = 0.0
    _stalledSince: Optional[float] = None
    _readTimeout: Optional[float] = None
    _writeTimeout: Optional[float] = None

    def doRead(self) -> Any:
        self._lastRead = self.reactor.seconds()  # type: ignore[attr-defined]
        return super().doRead()  # type: ignore[misc]

    def doWrite(self) -> Any:
        if self._stalledSince is not None:
            self._stalledSince = self.reactor.seconds()  # type: ignore[attr-defined]
        return super().doWrite()  # type: ignore[misc]


def applyToConnection(transport: Any, options: Any) -> None:
    """
    Apply C{noDelay} and C{keepAlive} to a new TCP transport and, when its
    class is the one L{transportClass} chose, start watching it.
    """
    if options is None:
        return
    transport._linkerpySocketOptions = options
    skt = getattr(transport, "socket", None)
    if skt is None:
        return
    try:
        skt.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if options.noDelay else 0)
        skt.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1 if options.keepAlive else 0)
    except OSError:
        return  # the socket is already gone
    if isinstance(transport, _Timed):
        read, write = timeoutsOf(options)
        transport._readTimeout = read
        transport._writeTimeout = write
        transport._lastRead = transport.reactor.seconds()
        _sweepFor(transport.reactor).watch(transport)


class _Sweep:
    """
    The watchdog of one reactor: aborts watched connections whose read or
    write timeout has passed.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.watched: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self.call: Optional[LoopingCall] = None
        self.period = MAX_SWEEP

    def watch(self, transport: Any) -> None:
        self.watched.add(transport)
        shortest = min(t for t in (transport._readTimeout, transport._writeTimeout) if t is not None)
        period = max(MIN_SWEEP, min(MAX_SWEEP, shortest / 4.0))
        if self.call is not None and period < self.period:
            self.call.stop()
            self.call = None
        if self.call is None:
            self.period = min(self.period, period)
            self.call = LoopingCall(self.sweep)
            self.call.clock = self.reactor
            self.call.start(self.period, now=False).addErrback(lambda f: log.failure("socket option sweep", f))

    def sweep(self) -> None:
        now = self.reactor.seconds()
        expired = []
        for t in list(self.watched):
            if t.disconnected:
                self.watched.discard(t)
                continue
            if not t.connected:
                t._lastRead = now  # an outgoing connection still connecting: its timeouts start once it is up
                continue
            if t._readTimeout is not None and now - t._lastRead >= t._readTimeout:
                expired.append((t, "read"))
                continue
            if t._writeTimeout is not None:
                if holdsOutput(t):
                    if t._stalledSince is None:
                        t._stalledSince = now
                    elif now - t._stalledSince >= t._writeTimeout:
                        expired.append((t, "write"))
                else:
                    t._stalledSince = None
        for t, which in expired:
            self.watched.discard(t)
            log.info(
                "socketOptions.{which}TimeoutMs expired: aborting the connection with {peer}", which=which, peer=peerString(t)
            )
            t.abortConnection()
        if not self.watched and self.call is not None:
            self.call.stop()
            self.call = None
            self.period = MAX_SWEEP


_sweeps: "weakref.WeakKeyDictionary[Any, _Sweep]" = weakref.WeakKeyDictionary()


def _sweepFor(reactor: Any) -> _Sweep:
    sweep = _sweeps.get(reactor)
    if sweep is None:
        sweep = _sweeps[reactor] = _Sweep(reactor)
    return sweep

