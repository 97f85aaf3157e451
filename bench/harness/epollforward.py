# -*- test-case-name: tests.test_bench_harness -*-
"""
A TCP forwarder in plain Python on C{select.epoll}, with no framework: the
"python-epoll" reference row of the TCP benchmark.

It does what C{twisted.protocols.portforward} does (the C{twisted-pf} rows)
and nothing more: accept, connect to the target without blocking, pump bytes
both ways with back-pressure (a direction whose destination does not take
everything stops reading until the rest is sent), and close both sides when
either ends.  No naming, no policy, no metrics, no half-close, no timeouts,
no logging; 64 KiB reads, as Twisted does.  It shows what the interpreter and
the kernel cost per connection with no event-loop framework at all, which
bounds what any Python router can reach on this machine.  Run as::

    python -m bench.harness.epollforward --route 8080:9000 --route 8081:5201

Each C{--route LISTEN:TARGET} forwards C{127.0.0.1:LISTEN} to
C{127.0.0.1:TARGET}.
"""

from __future__ import annotations

import argparse
import errno
import select
import socket
import sys
import threading
from typing import Dict, List, Optional, Tuple

from bench.harness.portforward import parseRoute

READ_SIZE = 65536

_IN = select.EPOLLIN
_OUT = select.EPOLLOUT


class _End:
    """
    One socket of a forwarded pair.

    @ivar pending: bytes read from the peer that this socket has not taken
        yet (the peer is not read while there are any).
    @ivar peerDone: the peer ended; close the pair once C{pending} is sent.
    """

    __slots__ = ("sock", "fd", "peer", "pending", "connecting", "peerDone")

    def __init__(self, sock: socket.socket, connecting: bool = False) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.peer: Optional[_End] = None
        self.pending = b""
        self.connecting = connecting
        self.peerDone = False


class Forwarder:
    """
    The event loop: listening sockets and forwarded pairs on one epoll.
    """

    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.listeners: Dict[int, Tuple[socket.socket, Tuple[str, int]]] = {}
        self.ends: Dict[int, _End] = {}
        # Sockets are closed after the current batch of events, so that no
        # descriptor is reused while stale events for it may still follow.
        self.dead: List[socket.socket] = []

    def listen(self, port: int, target: Tuple[str, int]) -> int:
        """
        Forward C{127.0.0.1:port} (0: any free port) to C{target}.

        @return: the port listened on.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(4096)
        sock.setblocking(False)
        self.listeners[sock.fileno()] = (sock, target)
        self.epoll.register(sock.fileno(), _IN)
        return sock.getsockname()[1]

    def run(self, stop: Optional[threading.Event] = None) -> None:
        """
        Forward until killed, or until C{stop} is set (then every socket is
        closed).
        """
        poll = self.epoll.poll
        timeout = -1.0 if stop is None else 0.05
        listeners = self.listeners
        ends = self.ends
        while stop is None or not stop.is_set():
            for fd, events in poll(timeout):
                listener = listeners.get(fd)
                if listener is not None:
                    self._accept(*listener)
                    continue
                end = ends.get(fd)
                if end is None:
                    continue
                if end.connecting:
                    self._connected(end)
                elif events & _OUT:
                    self._flush(end)
                else:
                    self._read(end)
            if self.dead:
                for sock in self.dead:
                    sock.close()
                del self.dead[:]
        for end in list(ends.values()):
            self._close(end)
        for sock in self.dead + [listener for listener, _ in listeners.values()]:
            sock.close()
        self.epoll.close()

    def _accept(self, listener: socket.socket, target: Tuple[str, int]) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. EMFILE: try again on the next event
                return
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            upstream.setblocking(False)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            code = upstream.connect_ex(target)
            a = _End(client)
            b = _End(upstream, connecting=True)
            a.peer, b.peer = b, a
            self.ends[a.fd] = a
            self.ends[b.fd] = b
            if code not in (0, errno.EINPROGRESS):
                self._close(a)
                continue
            # The client is not read until the target has answered.
            self.epoll.register(b.fd, _OUT)

    def _connected(self, end: _End) -> None:
        if end.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self._close(end)
            return
        end.connecting = False
        self.epoll.modify(end.fd, _IN)
        self.epoll.register(end.peer.fd, _IN)  # type: ignore[union-attr]

    def _read(self, end: _End) -> None:
        peer = end.peer
        assert peer is not None
        if peer.pending:  # paused (an error or hang-up is reported anyway): keep the order
            return
        try:
            data = end.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(end)
            return
        if not data:
            if peer.pending:
                peer.peerDone = True
                self.epoll.modify(end.fd, 0)
            else:
                self._close(end)
            return
        try:
            sent = peer.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(end)
            return
        if sent < len(data):
            peer.pending = data[sent:]
            self.epoll.modify(peer.fd, _IN | _OUT)
            self.epoll.modify(end.fd, 0)

    def _flush(self, end: _End) -> None:
        try:
            sent = end.sock.send(end.pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(end)
            return
        end.pending = end.pending[sent:]
        if end.pending:
            return
        if end.peerDone:
            self._close(end)
            return
        self.epoll.modify(end.fd, _IN)
        self.epoll.modify(end.peer.fd, _IN)  # type: ignore[union-attr]

    def _close(self, end: _End) -> None:
        for e in (end, end.peer):
            if e is None or self.ends.pop(e.fd, None) is None:
                continue
            try:
                self.epoll.unregister(e.fd)
            except (OSError, ValueError):  # never registered
                pass
            self.dead.append(e.sock)


def main(argv: Optional[List[str]] = None) -> int:
    """
    Listen on every route's port and forward until killed.
    """
    parser = argparse.ArgumentParser(prog="python -m bench.harness.epollforward")
    parser.add_argument("--route", type=parseRoute, action="append", required=True, metavar="LISTEN:TARGET")
    args = parser.parse_args(argv)
    forwarder = Forwarder()
    for port, target in args.route:
        forwarder.listen(port, ("127.0.0.1", target))
        sys.stdout.write(f"epollforward listening on 127.0.0.1:{port} -> 127.0.0.1:{target}\n")
    sys.stdout.flush()
    try:
        forwarder.run()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
