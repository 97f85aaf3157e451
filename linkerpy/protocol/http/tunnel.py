# -*- test-case-name: tests.test_http_server -*-
"""
Raw byte tunnels: what a connection becomes after C{101 Switching
Protocols} (or a C{2xx} answer to C{CONNECT}).

Each connection contributes one L{TunnelEnd}; L{splice} joins two ends so
that bytes read on one are written to the other, each transport is the
producer of the other (a slow reader pauses the far side), a half-close is
propagated as a half-close, and a full close of either side closes both.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.python.failure import Failure
from zope.interface import implementer

from linkerpy.protocol.http.interfaces import ITunnelEnd

__all__ = ["TunnelEnd", "ServerTunnelEnd", "ClientTunnelEnd", "splice"]


@implementer(ITunnelEnd)
class TunnelEnd:
    """
    The tunnel side of one connection protocol.

    The owning protocol forwards its events: L{_dataReceived},
    L{_readConnectionLost}, L{_writeConnectionLost}, L{_connectionLost}.

    @ivar bytesIn: bytes read from this end's connection.
    @ivar bytesOut: bytes written to it.
    """

    def __init__(self, protocol: Any, pending: bytes = b"") -> None:
        self._protocol = protocol
        self._pending = pending
        self._peer: Optional[TunnelEnd] = None
        self._readClosed = False
        self._writeClosed = False
        self._lost = False
        self._registered = False
        self.bytesIn = len(pending)
        self.bytesOut = 0

    @property
    def transport(self) -> Any:
        return self._protocol.transport

    # -- ITunnelEnd -----------------------------------------------------------

    def setPeer(self, peer: "TunnelEnd") -> None:
        self._peer = peer
        if self._lost:
            peer.loseConnection()
            return
        pending = self._pending
        if pending:
            self._pending = b""
            peer.write(pending)
        if self._readClosed:
            peer.loseWriteConnection()

    def write(self, data: bytes) -> None:
        if not self._lost and not self._writeClosed:
            self.bytesOut += len(data)
            self.transport.write(data)

    def loseWriteConnection(self) -> None:
        if self._writeClosed or self._lost:
            return
        self._writeClosed = True
        transport = self.transport
        if self._readClosed:
            transport.loseConnection()
            return
        try:
            transport.loseWriteConnection()
        except (AttributeError, NotImplementedError):
            transport.loseConnection()

    def loseConnection(self) -> None:
        if not self._lost:
            self._writeClosed = True
            self.transport.loseConnection()

    def pauseProducing(self) -> None:
        if not self._lost:
            self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        if not self._lost:
            self.transport.resumeProducing()

    def stopProducing(self) -> None:
        self.loseConnection()

    # -- events from the owning protocol ---------------------------------------

    def _dataReceived(self, data: bytes) -> None:
        self.bytesIn += len(data)
        peer = self._peer
        if peer is not None:
            peer.write(data)
        else:
            self._pending += data
            if len(self._pending) > 65536:
                self.transport.pauseProducing()

    def _readConnectionLost(self) -> None:
        if self._readClosed:
            return
        self._readClosed = True
        if self._writeClosed:
            self.transport.loseConnection()
        peer = self._peer
        if peer is not None:
            peer.loseWriteConnection()

    def _writeConnectionLost(self) -> None:
        self._writeClosed = True
        if self._readClosed:
            self.transport.loseConnection()

    def _connectionLost(self, reason: Failure) -> None:
        if self._lost:
            return
        self._lost = True
        peer = self._peer
        if peer is not None:
            if self._registered:
                self._registered = False
            peer.loseConnection()


class ServerTunnelEnd(TunnelEnd):
    """
    The downstream (client-facing) end.
    """


class ClientTunnelEnd(TunnelEnd):
    """
    The upstream (origin-facing) end.
    """


def splice(a: TunnelEnd, b: TunnelEnd) -> None:
    """
    Join two tunnel ends both ways with back-pressure: each end's transport
    becomes the producer feeding the other's.
    """
    a.transport.registerProducer(b, True)
    a._registered = True
    b.transport.registerProducer(a, True)
    b._registered = True
    a.setPeer(b)
    b.setPeer(a)
