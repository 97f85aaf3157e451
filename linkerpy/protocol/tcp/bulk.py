# -*- test-case-name: tests.test_tcp_bulk -*-
"""
The bulk relay: one direction of a spliced plain-TCP connection that
carries bulk data, relayed without Twisted's per-chunk machinery.

Twisted's ordinary path costs, for every chunk, a new C{bytes} object from
C{recv}, a C{dataReceived} call, a C{write} that may leave a remainder in
the transport's buffer, and the producer pausing and resuming (two
C{epoll_ctl} calls) whenever the destination's socket buffer is full.  A
direction that has relayed more than L{BULK_AFTER} bytes switches to this
relay instead: it reads up to L{READ_SIZE} bytes with C{recv_into} into one
buffer shared by every connection of the process, sends them straight from
that buffer, and only when the destination does not take them all copies
the remainder aside and stops reading the source until it is sent.  Short
connections never switch.

Measured with C{bench} (iperf3 through the router, one stream): 9.6 to
16 Gbit/s on CPython, from 820 to about 350 ms of router CPU per GB.  The
read size matters most (64 KiB reads were no better than Twisted's path;
256 KiB and 512 KiB were best).  C{splice(2)} through a pipe was also tried:
it used less router CPU (about 270 ms per GB) but moved less data (about
13 Gbit/s), because the endpoints then did more work per byte on this
loopback set-up, so it was dropped.

It applies only where it cannot change behaviour: both sides are plain TCP
socket transports of the real reactor (not TLS, not memory transports, not
transports watched by C{socketOptions} read or write timeouts).

How it fits Twisted: the relay replaces the source transport's C{doRead}
and the destination transport's C{doWrite} (instance attributes, which the
reactor calls), and otherwise leaves both transports to Twisted:

  - bytes Twisted still holds for the destination (in its write buffer or
    open write batch) go first: while there are any, a read is relayed the
    ordinary way, behind them;
  - while the relay holds a remainder the destination did not take, the
    source is not read (the destination is watched for writability, and
    reading resumes once the remainder is sent), so at most L{READ_SIZE}
    bytes per direction wait in the router;
  - closing and half-closing the destination happen after the remainder
    is sent, through Twisted's own C{doWrite}; end of stream and errors on
    the source are reported to the reactor exactly as Twisted's C{doRead}
    reports them (C{CONNECTION_DONE}, C{CONNECTION_LOST}).
"""

from __future__ import annotations

import errno
import mmap
from typing import Any, Callable

from twisted.internet import main, tcp

from linkerpy.net import holdsOutput

#: A direction switches to the bulk relay once it has relayed this many
#: bytes the ordinary way.
BULK_AFTER = 65536

#: The most one read takes (and the most a direction holds back).
READ_SIZE = 524288

_EAGAIN = (errno.EAGAIN, errno.EWOULDBLOCK)

#: Whether spliced connections switch to the bulk relay (tests turn it off
#: to exercise Twisted's path with large transfers).
ENABLED = True

# The read buffer shared by every relay (made by the first one).
_buffer: Any = None
_view: Any = None


def eligible(transport: Any) -> bool:
    """
    Whether C{transport} is a plain TCP socket transport whose reads and
    writes a L{BulkRelay} may take over.
    """
    if not isinstance(transport, tcp.Connection) or getattr(transport, "TLS", False):
        return False
    if getattr(transport, "_readTimeout", None) or getattr(transport, "_writeTimeout", None):
        return False
    return bool(transport.connected) and not transport.disconnecting and not transport._writeDisconnected


def _holdsOutput(transport: Any) -> bool:
    """
    Whether Twisted still holds bytes for C{transport} (sending an open
    write batch first, when the transport batches).
    """
    if getattr(transport, "_batch", None) is not None:
        transport._flushBatch()
    return holdsOutput(transport)


class BulkRelay:
    """
    Relays C{source} to C{destination} (see the module docstring).

    @ivar remainder: bytes read from the source that the destination has
        not taken yet (empty when none).
    @ivar blocked: whether reading the source is stopped until the
        remainder is sent.
    """

    def __init__(self, source: Any, destination: Any, onBytes: Callable[[int], None]) -> None:
        """
        @param source: the transport read from.
        @param destination: the transport written to.
        @param onBytes: called with the number of bytes of each read
            (metrics, idle tracking).
        """
        global _buffer, _view
        if _buffer is None:
            # Memory that never moves: PyPy then reads into it and sends from
            # it directly (with a bytearray it copies through a temporary
            # buffer each way); the same on CPython.
            _buffer = mmap.mmap(-1, READ_SIZE)
            _view = memoryview(_buffer)
        self.source = source
        self.destination = destination
        self.onBytes = onBytes
        self.readAsTwisted = type(source).doRead.__get__(source)
        self.writeAsTwisted = type(destination).doWrite.__get__(destination)
        self.sourceSocket = source.socket
        self.destinationSocket = destination.socket
        self.remainder: Any = b""
        self.blocked = False
        self.readEnded = False
        self.closed = False
        source.doRead = self.doRead
        destination.doWrite = self.doWrite

    def doRead(self) -> Any:
        """
        The source is readable.
        """
        if self.remainder:
            try:
                sent = self._sendRemainder()
            except OSError:
                sent = False  # the destination's doWrite reports it
            if not sent:
                self._block()
                return None
        if _holdsOutput(self.destination):
            return self.readAsTwisted()
        try:
            n = self.sourceSocket.recv_into(_buffer, READ_SIZE)
        except OSError as e:
            if e.errno in _EAGAIN:
                return None
            return main.CONNECTION_LOST
        if not n:
            self.readEnded = True
            return main.CONNECTION_DONE
        self.onBytes(n)
        try:
            sent = self.destinationSocket.send(_view[:n])
        except OSError:
            # Full, or broken: the destination's doWrite finds out which
            # and reports an error the way Twisted does.
            sent = 0
        if sent < n:
            self.remainder = memoryview(_buffer[sent:n])
            self._block()
        return None

    def _sendRemainder(self) -> bool:
        """
        Send what is left of the remainder.

        @return: whether all of it is sent.
        @raise OSError: the destination failed.
        """
        sent = self.destinationSocket.send(self.remainder)
        self.remainder = self.remainder[sent:] if sent < len(self.remainder) else b""
        return not self.remainder

    def _block(self) -> None:
        # Every time, not only the first: something may have resumed
        # reading meanwhile (both calls cost nothing when already so).
        self.blocked = True
        self.source.stopReading()
        self.destination.startWriting()

    def doWrite(self) -> Any:
        """
        The destination is writable.
        """
        if self.remainder:
            try:
                if not self._sendRemainder():
                    return None
            except OSError as e:
                if e.errno in _EAGAIN:
                    return None
                return main.CONNECTION_LOST
        if self.blocked:
            self.blocked = False
            source = self.source
            if source.connected and not source.disconnecting and not self.readEnded:
                source.startReading()
        return self.writeAsTwisted()

    def close(self) -> None:
        """
        Let go of both transports (the splice is over).
        """
        if self.closed:
            return
        self.closed = True
        self.remainder = b""
        self.source.__dict__.pop("doRead", None)
        self.destination.__dict__.pop("doWrite", None)
