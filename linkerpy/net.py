# -*- test-case-name: tests.test_net -*-
"""
Small socket helpers shared by the protocols.
"""

from __future__ import annotations

from typing import Any


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
            try:
                transport.setTcpNoDelay(enabled)
                return True
            except Exception:
                return False
        transport = getattr(transport, "transport", None)
        seen += 1
    return False


# ---------------------------------------------------------------------------
# Eager writes
#
# Twisted buffers every transport.write() until the next reactor iteration:
# it registers for EPOLLOUT (one epoll_ctl), waits for the loop to call
# doWrite, sends, and unregisters (another epoll_ctl).  A proxy writes one
# message per request each way, so that costs two syscalls and a trip
# through the reactor's dispatch per write.  The transports below send at
# once when nothing is already queued, and fall back to Twisted's buffering
# for whatever the kernel does not take (so ordering, back-pressure and
# producers work exactly as before).  Only plain TCP transports on a real
# reactor use them; tests with memory reactors are unaffected.

from twisted.internet import tcp as _tcp  # noqa: E402


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


class EagerServer(_tcp.Server):
    """
    An accepted TCP connection that writes eagerly.
    """

    write = _eagerWrite
    writeSequence = _eagerWriteSequence


class EagerClient(_tcp.Client):
    """
    An outgoing TCP connection that writes eagerly.
    """

    write = _eagerWrite
    writeSequence = _eagerWriteSequence


class EagerPort(_tcp.Port):
    transport = EagerServer


class EagerConnector(_tcp.Connector):
    def _makeTransport(self) -> Any:
        return EagerClient(self.host, self.port, self.bindAddress, self, self.reactor)


def _realReactor(reactor: Any) -> bool:
    import os

    from twisted.internet.posixbase import PosixReactorBase

    return isinstance(reactor, PosixReactorBase) and not os.environ.get("LINKERPY_LAZY_WRITES")


def listenTCP(reactor: Any, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
    """
    C{reactor.listenTCP}, with eagerly writing connections on real reactors.
    """
    if not _realReactor(reactor):
        return reactor.listenTCP(port, factory, backlog=backlog, interface=interface)
    p = EagerPort(port, factory, backlog, interface, reactor)
    p.startListening()
    return p


def connectTCP(reactor: Any, host: str, port: int, factory: Any, timeout: float = 30, bindAddress: Any = None) -> Any:
    """
    C{reactor.connectTCP}, with an eagerly writing connection on real reactors.
    """
    if not _realReactor(reactor):
        return reactor.connectTCP(host, port, factory, timeout=timeout, bindAddress=bindAddress)
    c = EagerConnector(host, port, factory, timeout, bindAddress, reactor)
    c.connect()
    return c
