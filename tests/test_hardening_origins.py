# -*- test-case-name: tests.test_hardening_upstream -*-
"""
Shared pieces of the hardening suite (no tests here): a misbehaving origin
that records every request it parses and misbehaves by path, a raw client,
router configurations, and process helpers (open file descriptors, RSS).

The origin's behaviour is chosen by the first path segment of each request:

  - C{/ok} (and anything unknown): 200 with a small body;
  - C{/reset-before}: read the request, then reset the connection (RST);
  - C{/close-before}: read the request, then close (FIN) without answering;
  - C{/reset-after-headers}: a chunked 200 head and one chunk, then RST;
  - C{/truncate}: C{Content-Length: 1000} and 10 bytes, then FIN;
  - C{/bad-status}: a malformed status line;
  - C{/smuggle}: a complete response followed by a second, unsolicited one;
  - C{/never}: never answer (the connection stays open);
  - C{/stall-body}: a chunked head and one chunk, then silence;
  - C{/close-after[/<ms>]}: answer keep-alive, then close the idle
    connection C{<ms>} (default 50) milliseconds later;
  - C{/500}, C{/500-retryable}: a 500, the second with C{l5d-retryable: true};
  - C{/slow/<ms>}: answer after C{<ms>} milliseconds;
  - C{/drip/<n>}: a chunked answer of C{<n>} 5-byte chunks, 100 ms apart;
  - C{/echo}: 200 with the request body.
"""

from __future__ import annotations

import os
import re
import socket
from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import ClientCreator, Factory, Protocol

#: Generous wait for anything over sockets (the machine is small and shared).
TIMEOUT = 60.0

_CL = re.compile(rb"\r\ncontent-length:[ \t]*([0-9]+)[ \t]*\r\n", re.I)


class OriginRequest:
    """
    A request as the origin parsed it.

    @ivar raw: the exact bytes of the head and body.
    @ivar headers: lower-case name to list of values.
    """

    def __init__(self, method: bytes, target: bytes, headers: Dict[bytes, List[bytes]], body: bytes, raw: bytes) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.raw = raw

    def header(self, name: bytes) -> Optional[bytes]:
        values = self.headers.get(name.lower())
        return values[-1] if values else None


def _decodeChunked(buf: bytes, start: int) -> Optional[Tuple[bytes, int]]:
    """
    Decode a (trusted, router-serialised) chunked body at C{buf[start:]}.

    @return: C{(body, end)} or C{None} if incomplete.
    """
    pos = start
    body = b""
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(buf[pos:eol].split(b";")[0], 16)
        pos = eol + 2
        if size == 0:
            end = buf.find(b"\r\n\r\n", pos - 2)
            if end < 0:
                return None
            return body, end + 4
        if len(buf) < pos + size + 2:
            return None
        body += buf[pos : pos + size]
        pos += size + 2


class FaultOriginProtocol(Protocol):
    """
    One origin connection: parses requests one at a time and runs the
    behaviour their path selects.
    """

    def connectionMade(self) -> None:
        self.buffer = b""
        self.busy = False
        self.timers: List[Any] = []
        self.factory.connections.append(self)

    def dataReceived(self, data: bytes) -> None:
        self.factory.bytesReceived += len(data)
        self.buffer += data
        if not self.busy:
            self._parse()

    def _parse(self) -> None:
        while not self.busy and self.transport is not None and self.connected:
            buf = self.buffer
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = buf[: end + 4]
            lines = head[:-4].split(b"\r\n")
            try:
                method, target, _ = lines[0].split(b" ", 2)
            except ValueError:
                self.factory.garbage.append(buf)
                self.transport.abortConnection()
                return
            headers: Dict[bytes, List[bytes]] = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers.setdefault(name.strip().lower(), []).append(value.strip())
            if b"chunked" in b",".join(headers.get(b"transfer-encoding", [])).lower():
                decoded = _decodeChunked(buf, end + 4)
                if decoded is None:
                    return
                body, stop = decoded
            else:
                m = _CL.search(head)
                length = int(m.group(1)) if m else 0
                if len(buf) < end + 4 + length:
                    return
                body = buf[end + 4 : end + 4 + length]
                stop = end + 4 + length
            self.buffer = buf[stop:]
            request = OriginRequest(method, target, headers, body, buf[:stop])
            self.factory.requests.append(request)
            self.busy = True
            self.factory.behave(self, request)

    def answer(self, status: int = 200, body: bytes = b"ok", headers: Tuple[Tuple[bytes, bytes], ...] = (), close: bool = False) -> None:
        """
        Send a complete response; with C{close}, announce and close.
        """
        extra = b"".join(b"%s: %s\r\n" % (k, v) for k, v in headers)
        if close:
            extra += b"Connection: close\r\n"
        self.transport.write(
            b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n%s\r\n%s" % (status, len(body), extra, body)
        )
        if close:
            self.transport.loseConnection()
            return
        self.done()

    def done(self) -> None:
        """
        The response is complete: parse the next request.
        """
        self.busy = False
        if self.buffer:
            self._parse()

    def later(self, seconds: float, f: Callable[[], None]) -> None:
        def run() -> None:
            if self.connected:
                f()

        self.timers.append(reactor.callLater(seconds, run))

    def connectionLost(self, reason: Any) -> None:
        self.factory.lost += 1
        for timer in self.timers:
            if timer.active():
                timer.cancel()


def _behave(proto: FaultOriginProtocol, request: OriginRequest) -> None:
    path = request.target.split(b"?", 1)[0]
    parts = path.split(b"/")
    kind = parts[1] if len(parts) > 1 else b""
    t = proto.transport
    if kind == b"reset-before":
        t.abortConnection()
    elif kind == b"close-before":
        t.loseConnection()
    elif kind == b"reset-after-headers":
        t.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        proto.later(0.05, t.abortConnection)
    elif kind == b"truncate":
        t.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"a" * 10)
        t.loseConnection()
    elif kind == b"bad-status":
        t.write(b"HTTP/1.1 2x0 Weird\r\nContent-Length: 2\r\n\r\nok")
    elif kind == b"smuggle":
        t.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled")
        proto.done()
    elif kind == b"never":
        pass
    elif kind == b"stall-body":
        t.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    elif kind == b"close-after":
        ms = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 50
        proto.answer(200, b"closing-soon")
        proto.later(ms / 1000.0, t.loseConnection)
    elif kind == b"500":
        proto.answer(500, b"fail")
    elif kind == b"500-retryable":
        proto.answer(500, b"fail", ((b"l5d-retryable", b"true"),))
    elif kind == b"slow":
        ms = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 1000
        proto.later(ms / 1000.0, lambda: proto.answer(200, b"slow"))
    elif kind == b"drip":
        # a chunked response of <n> chunks, 100 ms apart
        n = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 10
        t.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")

        def drip(left: int) -> None:
            if left == 0:
                t.write(b"0\r\n\r\n")
                proto.done()
                return
            t.write(b"5\r\ndrip%d\r\n" % (left % 10))
            proto.later(0.1, lambda: drip(left - 1))

        drip(n)
    elif kind == b"echo":
        proto.answer(200, request.body)
    else:
        proto.answer(200, b"ok")


class FaultOrigin(Factory):
    """
    The misbehaving origin, listening on 127.0.0.1.

    @ivar requests: every L{OriginRequest} parsed, in order.
    @ivar connections: every accepted connection's protocol.
    @ivar lost: connections closed so far.
    """

    protocol = FaultOriginProtocol
    noisy = False

    def __init__(self, behave: Callable[[FaultOriginProtocol, OriginRequest], None] = _behave) -> None:
        self.behave = behave
        self.requests: List[OriginRequest] = []
        self.connections: List[FaultOriginProtocol] = []
        self.garbage: List[bytes] = []
        self.lost = 0
        self.bytesReceived = 0
        self.port: Any = None

    def listen(self) -> "FaultOrigin":
        self.port = reactor.listenTCP(0, self, backlog=1024, interface="127.0.0.1")
        return self

    @property
    def portNumber(self) -> int:
        return self.port.getHost().port  # type: ignore[no-any-return]

    @property
    def open(self) -> int:
        return len(self.connections) - self.lost

    def count(self, path: bytes, method: Optional[bytes] = None) -> int:
        """
        How many requests for C{path} (and C{method}) arrived.
        """
        return sum(1 for r in self.requests if r.target == path and (method is None or r.method == method))

    def stop(self) -> Any:
        for proto in list(self.connections):
            if proto.transport is not None and proto.connected:
                proto.transport.abortConnection()
        return self.port.stopListening()


def startFaultOrigin(testCase: Any, behave: Any = None) -> FaultOrigin:
    origin = FaultOrigin(behave) if behave is not None else FaultOrigin()
    origin.listen()
    testCase.addCleanup(origin.stop)
    return origin


def routerConfig(originPort: int, server: Optional[Dict[str, Any]] = None, admin: Optional[Dict[str, Any]] = None, **router: Any) -> Dict[str, Any]:
    """
    One HTTP router sending every Host to the origin (C{/svc=>/$/inet/...}).
    """
    srv: Dict[str, Any] = {"port": 0}
    srv.update(server or {})
    adm: Dict[str, Any] = {"port": 0}
    adm.update(admin or {})
    r: Dict[str, Any] = {"protocol": "http", "dtab": f"/svc=>/$/inet/127.0.0.1/{originPort}", "servers": [srv]}
    r.update(router)
    return {"admin": adm, "routers": [r]}


class RawClient(Protocol):
    """
    Sends raw bytes, collects what comes back, notes how the connection ended.
    """

    def __init__(self) -> None:
        self.data = b""
        self.closed: Deferred[bytes] = Deferred()
        self.waiters: List[Tuple[Callable[[bytes], bool], Deferred[bytes]]] = []
        self.reason: Any = None

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        for predicate, d in list(self.waiters):
            if not d.called and predicate(self.data):
                self.waiters.remove((predicate, d))
                d.callback(self.data)

    def connectionLost(self, reason: Any) -> None:
        self.reason = reason
        self.closed.callback(self.data)
        for _, d in self.waiters:
            if not d.called:
                d.callback(self.data)

    def waitFor(self, predicate: Callable[[bytes], bool], timeout: float = TIMEOUT) -> "Deferred[bytes]":
        d: Deferred[bytes] = Deferred()
        if predicate(self.data):
            d.callback(self.data)
            return d
        self.waiters.append((predicate, d))
        return d.addTimeout(timeout, reactor)

    def waitClosed(self, timeout: float = TIMEOUT) -> "Deferred[bytes]":
        return self.closed.addTimeout(timeout, reactor)


@inlineCallbacks
def connectRaw(testCase: Any, port: int) -> Any:
    client = yield ClientCreator(reactor, RawClient).connectTCP("127.0.0.1", port, timeout=30)
    testCase.addCleanup(lambda: client.transport.abortConnection() if client.transport.connected else None)
    return client


@inlineCallbacks
def sendRaw(testCase: Any, port: int, raw: bytes, timeout: float = TIMEOUT) -> Any:
    """
    Send C{raw} on a fresh connection; return everything read until the
    server closes.
    """
    client = yield connectRaw(testCase, port)
    client.transport.write(raw)
    data = yield client.waitClosed(timeout)
    return data


def completeResponses(n: int) -> Callable[[bytes], bool]:
    """
    A predicate: C{n} complete Content-Length (or bodiless) responses.
    """

    def check(data: bytes) -> bool:
        count = 0
        pos = 0
        while count < n:
            end = data.find(b"\r\n\r\n", pos)
            if end < 0:
                return False
            m = _CL.search(data[pos : end + 4])
            length = int(m.group(1)) if m else 0
            if len(data) < end + 4 + length:
                return False
            count += 1
            pos = end + 4 + length
        return True

    return check


def statusOf(data: bytes) -> Optional[int]:
    """
    The status code of the first response in C{data}, or C{None}.
    """
    m = re.match(rb"HTTP/1\.[01] ([0-9]{3})", data)
    return int(m.group(1)) if m else None


# -- processes -----------------------------------------------------------------------


def openFds(pid: int) -> int:
    """
    How many file descriptors process C{pid} has open.
    """
    return len(os.listdir(f"/proc/{pid}/fd"))


def rssKB(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def freePort() -> int:
    """
    A port that was free a moment ago (for a process that must be restarted
    on the same port).
    """
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port  # type: ignore[no-any-return]


def blackholePort(testCase: Any) -> int:
    """
    A port on 127.0.0.1 whose SYNs go unanswered: a listening socket with a
    full accept queue that never accepts (Linux drops further SYNs), so a
    connect there times out instead of being refused.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except (BlockingIOError, OSError):
            pass
        fillers.append(s)

    def cleanup() -> None:
        for s in fillers:
            s.close()
        listener.close()

    testCase.addCleanup(cleanup)
    return port  # type: ignore[no-any-return]
