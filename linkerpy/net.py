# -*- test-case-name: tests.test_perf_net -*-
"""
Socket helpers shared by the protocols, and the event-loop tuning of the
C{twistd linkerpy} process:

  - L{setNoDelay}: C{TCP_NODELAY} through TLS wrappers;
  - L{listenTCP}, L{connectTCP}: connections that write eagerly, or in
    batches sent once per poll on a reactor tuned by L{tuneReactor}, and
    adoption of listening sockets handed down by a parent process
    (L{inheritListeners}, for L{linkerpy.workers});
  - L{tuneReactor}, L{tuneGarbageCollector}: per-process tuning, applied by
    L{linkerpy.process.prepareProcess} only.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple


def setNoDelay(transport: Any, enabled: bool = True) -> bool:
    """
    Set C{TCP_NODELAY} on the TCP transport under C{transport} (which may be
    a TLS wrapper).  Request/response protocols write small messages and must
    not wait for Nagle's algorithm and delayed ACKs (40 ms stalls).

    @return: whether a TCP transport was found.
    """
    seen = 0
    while transport is not None and seen < 4:
        setter = getattr(type(transport), "setTcpNoDelay", None)
        if setter is not None:
            if getattr(transport, "_linkerpySocketOptions", None) is not None:
                return True  # configured socketOptions decide (linkerpy.socketoptions)
            try:
                transport.setTcpNoDelay(enabled)
                return True
            except Exception:
                return False
        transport = getattr(transport, "transport", None)
        seen += 1
    return False


def holdsOutput(transport: Any) -> bool:
    """
    Whether Twisted holds output for a TCP transport that the kernel has
    not taken (in its write buffer; an open write batch not counted).
    """
    return bool(transport._tempDataBuffer) or transport.offset < len(transport.dataBuffer)


def peerString(transport: Any) -> str:
    """
    C{"host:port"} of a transport's peer, or C{"?"} (for log lines).
    """
    try:
        peer = transport.getPeer()
        return f"{peer.host}:{peer.port}"
    except Exception:
        return "?"


# ---------------------------------------------------------------------------
# Eager and batched writes
#
# Twisted buffers every transport.write() until the next reactor iteration:
# it registers for EPOLLOUT (one epoll_ctl), waits for the loop to call
# doWrite, sends, and unregisters (another epoll_ctl).  A proxy writes one
# message per request each way, so that costs two syscalls and a trip
# through the reactor's dispatch per write.
#
# Eager transports send at once when nothing is already queued, and fall
# back to Twisted's buffering for whatever the kernel does not take (so
# ordering, back-pressure and producers work exactly as before).
#
# Batching transports (on a reactor tuned by L{tuneReactor}) go one step
# further: a write with nothing queued is kept until the reactor has handled
# every event of the current poll, and all such writes are sent just before
# the reactor polls again.  On loopback most of the kernel's cost of a send
# is waking the reader (an inter-processor interrupt when the reader's CPU
# sleeps; an exit to the hypervisor on a VM).  Sending a poll's worth of
# responses back to back wakes a peer once per batch instead of once per
# message.  A write never waits for longer than the rest of the current
# reactor iteration, and a batch is sent at once when it grows past
# L{BATCH_LIMIT} bytes.  A poll that returned a single event has nothing to
# batch with: its writes are sent at once, so that a lone request's response
# leaves before the bookkeeping that follows it in the same turn (measured
# at 1 connection: 20 us less per round trip, no change at 32 connections).
#
# Only plain TCP transports on a real reactor use them; tests with memory
# reactors are unaffected.

import errno as _errno  # noqa: E402
import sys  # noqa: E402

from twisted.internet import main as _main  # noqa: E402
from twisted.internet import tcp as _tcp  # noqa: E402

#: A batch larger than this is sent at once (then Twisted's buffer and
#: producer pausing take over).
BATCH_LIMIT = 65536


def _eagerWrite(self: Any, data: bytes) -> None:
    if (
        self.connected
        and not self._writeDisconnected
        and not self._tempDataBuffer
        and self.offset == len(self.dataBuffer)
        and data.__class__ is bytes
    ):
        try:
            sent = self.socket.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            # Let the normal path find and report the error.
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    _tcp.Connection.write(self, data)


def _eagerWriteSequence(self: Any, iovec: Any) -> None:
    _eagerWrite(self, b"".join(iovec))


def _leanDoRead(self: Any) -> Any:
    """
    C{tcp.Connection.doRead} without the extra method call.
    """
    try:
        data = self.socket.recv(self.bufferSize)
    except OSError as se:
        if se.args[0] == _errno.EWOULDBLOCK:
            return None
        return _main.CONNECTION_LOST
    if not data:
        return _main.CONNECTION_DONE
    self.protocol.dataReceived(data)
    return None


class EagerServer(_tcp.Server):
    """
    An accepted TCP connection that writes eagerly.
    """

    write = _eagerWrite
    writeSequence = _eagerWriteSequence
    doRead = _leanDoRead


class EagerClient(_tcp.Client):
    """
    An outgoing TCP connection that writes eagerly.
    """

    write = _eagerWrite
    writeSequence = _eagerWriteSequence
    doRead = _leanDoRead


class _Batching:
    """
    Mixin for TCP transports whose writes are sent in batches (see above).
    C{_batch} holds the writes not yet sent (C{None}: no batch open).
    """

    _batch: Any = None
    _batchSize = 0

    def write(self, data: bytes) -> None:
        batch = self._batch
        if batch is not None:
            if data:
                batch.append(data)
                self._batchSize += len(data)
                if self._batchSize > BATCH_LIMIT:
                    self._flushBatch()
            return
        if (
            data
            and self.reactor._linkerpyBatching  # type: ignore[attr-defined]
            and data.__class__ is bytes
            and self.connected  # type: ignore[attr-defined]
            and not self._writeDisconnected  # type: ignore[attr-defined]
            and not self._tempDataBuffer  # type: ignore[attr-defined]
            and self.offset == len(self.dataBuffer)  # type: ignore[attr-defined]
            and len(data) <= BATCH_LIMIT
        ):
            self._batch = [data]
            self._batchSize = len(data)
            self.reactor._linkerpyPending.append(self)  # type: ignore[attr-defined]
            return
        _eagerWrite(self, data)

    def writeSequence(self, iovec: Any) -> None:
        self.write(b"".join(iovec))

    def _flushBatch(self) -> None:
        """
        Send what the batch holds (what the kernel does not take goes to
        Twisted's buffer).
        """
        batch = self._batch
        if batch is None:
            return
        self._batch = None
        self._batchSize = 0
        data = batch[0] if len(batch) == 1 else b"".join(batch)
        _eagerWrite(self, data)

    def loseConnection(self) -> None:
        self._flushBatch()
        super().loseConnection()  # type: ignore[misc]

    def loseWriteConnection(self) -> None:
        self._flushBatch()
        super().loseWriteConnection()  # type: ignore[misc]

    def abortConnection(self) -> None:
        self._batch = None
        self._batchSize = 0
        super().abortConnection()  # type: ignore[misc]

    def connectionLost(self, reason: Any) -> None:
        self._batch = None
        self._batchSize = 0
        super().connectionLost(reason)  # type: ignore[misc]


class BatchingServer(_Batching, _tcp.Server):
    """
    An accepted TCP connection whose writes are sent in batches.
    """

    doRead = _leanDoRead


class BatchingClient(_Batching, _tcp.Client):
    """
    An outgoing TCP connection whose writes are sent in batches.
    """

    doRead = _leanDoRead


def _flushPending(pending: List[Any]) -> None:
    """
    Send every open batch (called just before the reactor polls).
    """
    while pending:
        batch = pending[:]
        del pending[:]
        for transport in batch:
            try:
                transport._flushBatch()
            except Exception:
                from twisted.python import log

                log.err(None, "flushing a write batch")


def tuneReactor(reactor: Any) -> bool:
    """
    Make an installed epoll reactor cheaper per event, for the process
    entry point (C{twistd linkerpy}) only: the loop dispatches events
    without Twisted's per-event logging context, and sends the batched
    writes of L{BatchingServer} and L{BatchingClient} transports just
    before it polls.  Connections opened with L{listenTCP} and
    L{connectTCP} afterwards use batching transports.

    @return: whether the reactor was tuned (only the epoll reactor is).
    """
    try:
        from twisted.internet.epollreactor import EPollReactor
    except ImportError:  # pragma: no cover - not Linux
        return False
    if not isinstance(reactor, EPollReactor) or os.environ.get("LINKERPY_LAZY_WRITES"):
        return False
    if getattr(reactor, "_linkerpyPending", None) is not None:
        return True
    pending: List[Any] = []
    reactor._linkerpyPending = pending
    reactor._linkerpyBatching = True
    poll = reactor._poller.poll
    selectables = reactor._selectables
    doReadOrWrite = reactor._doReadOrWrite
    disconnect = reactor._disconnectSelectable
    EPOLLIN = reactor._POLL_IN
    EINTR = _errno.EINTR

    def doPoll(timeout: Optional[float]) -> None:
        if pending:
            _flushPending(pending)
        if timeout is None:
            timeout = -1
        try:
            events = poll(timeout, len(selectables))
        except OSError as err:
            if err.errno == EINTR:
                return
            raise
        reactor._linkerpyBatching = len(events) > 1
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            if event != EPOLLIN:
                doReadOrWrite(selectable, fd, event)
                continue
            try:
                if selectable.fileno() == -1:
                    doReadOrWrite(selectable, fd, event)
                    continue
                why = selectable.doRead()
            except BaseException:
                why = sys.exc_info()[1]
                from twisted.python import log

                log.err()
            if why:
                disconnect(selectable, why, True)

    reactor.doIteration = doPoll
    return True


def tuneGarbageCollector(reactor: Any) -> None:
    """
    Make the cyclic garbage collector cheaper for a long-running router,
    for the process entry point: once the reactor runs (everything built at
    start-up is allocated), CPython moves every object there is to the
    permanent generation (C{gc.freeze()}: collections no longer walk the
    configuration, the plugins and the imported modules), and the C heap's
    free pages go back to the system.  (PyPy has neither; see
    L{linkerpy.process} for its settings.)
    """
    import gc

    if not hasattr(gc, "freeze"):
        return

    def freeze() -> None:
        gc.collect()
        gc.freeze()
        _trimHeap()

    reactor.callWhenRunning(freeze)


def _trimHeap() -> None:
    """
    Give the C heap's free pages back to the system (glibc's
    C{malloc_trim}): start-up (parsing the configuration, loading plugins)
    leaves freed memory scattered in the heap.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _batching(reactor: Any) -> bool:
    return getattr(reactor, "_linkerpyPending", None) is not None


class _OptionsPort:
    """
    Mixin for listening ports with C{socketOptions} (see
    L{linkerpy.socketoptions}): applied to the listening socket before it
    is bound, and to every accepted connection before its protocol starts.
    """

    socketOptions: Any = None

    def createInternetSocket(self) -> Any:
        skt = super().createInternetSocket()  # type: ignore[misc]
        if self.socketOptions is not None:
            from linkerpy.socketoptions import applyToListening

            applyToListening(skt, self.socketOptions)
        return skt

    def _useOptions(self, options: Any) -> None:
        from linkerpy.socketoptions import applyToConnection, transportClass

        self.socketOptions = options
        cls = transportClass(type(self).transport, options)

        def transport(skt: Any, protocol: Any, addr: Any, server: Any, sessionno: int, reactor: Any) -> Any:
            t = cls(skt, protocol, addr, server, sessionno, reactor)
            applyToConnection(t, options)
            return t

        self.transport = transport


class EagerPort(_OptionsPort, _tcp.Port):
    transport = EagerServer


class BatchingPort(_OptionsPort, _tcp.Port):
    transport = BatchingServer


class EagerConnector(_tcp.Connector):
    socketOptions: Any = None

    def _makeTransport(self) -> Any:
        base = BatchingClient if _batching(self.reactor) else EagerClient
        options = self.socketOptions
        if options is None:
            return base(self.host, self.port, self.bindAddress, self, self.reactor)
        from linkerpy.socketoptions import applyToConnection, transportClass

        t = transportClass(base, options)(self.host, self.port, self.bindAddress, self, self.reactor)
        applyToConnection(t, options)
        return t


def _realReactor(reactor: Any) -> bool:
    from twisted.internet.posixbase import PosixReactorBase

    return isinstance(reactor, PosixReactorBase) and not os.environ.get("LINKERPY_LAZY_WRITES")


#: Listening sockets handed down by a parent process (worker processes,
#: see L{linkerpy.workers}): C{(interface, port) -> (fd, family)}.
_inherited: Dict[Tuple[str, int], Tuple[int, int]] = {}


def inheritListeners(table: Dict[Tuple[str, int], Tuple[int, int]], reactor: Any = None) -> None:
    """
    Make L{listenTCP} (and, when C{reactor} is given, that reactor's own
    C{listenTCP}) adopt these already listening sockets instead of binding
    new ones, for a worker process whose parent opened them.

    @param table: C{(interface, port) -> (file descriptor, address family)}.
    """
    _inherited.update(table)
    if reactor is not None and not getattr(reactor, "_linkerpyAdopting", False):
        plain = reactor.listenTCP

        def listenTCPAdopting(port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
            found = _inherited.get((interface, port))
            if found is None:
                return plain(port, factory, backlog=backlog, interface=interface)
            return _adopt(reactor, _tcp.Port, found, factory)

        reactor.listenTCP = listenTCPAdopting
        reactor._linkerpyAdopting = True


def _adopt(reactor: Any, cls: Any, found: Tuple[int, int], factory: Any, options: Any = None) -> Any:
    fd, family = found
    p = cls._fromListeningDescriptor(reactor, fd, family, factory)
    if options is not None and isinstance(p, _OptionsPort):
        p._useOptions(options)
    p.startListening()
    return p


def listenTCP(
    reactor: Any, port: int, factory: Any, backlog: int = 50, interface: str = "", options: Any = None
) -> Any:
    """
    C{reactor.listenTCP}, with eagerly writing (or, on a reactor tuned by
    L{tuneReactor}, batching) connections on real reactors; a socket handed
    down by a parent process (L{inheritListeners}) is adopted instead.

    @param options: a C{socketOptions} config object (or C{None}); its
        C{backlog} overrides C{backlog}, and on real reactors the rest is
        applied to the socket and to every accepted connection.
    """
    from linkerpy.socketoptions import backlogOf

    backlog = backlogOf(options, backlog)
    if not _realReactor(reactor):
        return reactor.listenTCP(port, factory, backlog=backlog, interface=interface)
    cls = BatchingPort if _batching(reactor) else EagerPort
    found = _inherited.get((interface, port))
    if found is not None:
        return _adopt(reactor, cls, found, factory, options)
    p = cls(port, factory, backlog, interface, reactor)
    if options is not None:
        p._useOptions(options)
    p.startListening()
    return p


def connectTCP(
    reactor: Any, host: str, port: int, factory: Any, timeout: float = 30, bindAddress: Any = None, options: Any = None
) -> Any:
    """
    C{reactor.connectTCP}, with an eagerly writing (or batching) connection
    on real reactors.

    @param options: a C{socketOptions} config object (or C{None}), applied
        to the connection on real reactors.
    """
    if not _realReactor(reactor):
        return reactor.connectTCP(host, port, factory, timeout=timeout, bindAddress=bindAddress)
    c = EagerConnector(host, port, factory, timeout, bindAddress, reactor)
    c.socketOptions = options
    c.connect()
    return c
