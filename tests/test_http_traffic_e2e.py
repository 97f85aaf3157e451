"""
End-to-end traffic through the HTTP router: live io.l5d.fs changes,
weighted splits, failure accrual, WebSocket passthrough, curl as a client,
and a 50 MB stream to a slow reader with the router's memory bounded.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import struct
import tempfile

from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from tests.support import TwistdProcess, httpGet, routerPort, startLinker, startOrigin, waitUntil, requireTool


def fsConfig(rootDir: str, **router):
    r = {"protocol": "http", "dtab": "/svc=>/#/io.l5d.fs", "servers": [{"port": 0}]}
    r.update(router)
    return {"admin": {"port": 0}, "namers": [{"kind": "io.l5d.fs", "rootDir": rootDir}], "routers": [r]}


class FsNamerTrafficTests(TestCase):
    """
    Routing through io.l5d.fs files that change while traffic flows.
    """

    timeout = 120

    @defer.inlineCallbacks
    def test_fileChangeMovesTraffic(self):
        """
        Rewriting a service file moves traffic within about a second, with no failed request.
        """
        a = startOrigin(self, "a")
        b = startOrigin(self, "b")
        root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, root, True)
        path = os.path.join(root, "web")
        with open(path, "w") as f:
            f.write(f"127.0.0.1 {a.portNumber}\n")
        linker = startLinker(self, fsConfig(root))
        port = routerPort(linker)
        response, body = yield httpGet(f"http://127.0.0.1:{port}/", headers={"Host": "web"})
        self.assertEqual((response.code, body), (200, b"a"))
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"127.0.0.1 {b.portNumber}\n")
        os.rename(tmp, path)
        changedAt = reactor.seconds()
        bodies = []
        while reactor.seconds() - changedAt < 5:
            response, body = yield httpGet(f"http://127.0.0.1:{port}/", headers={"Host": "web"})
            self.assertEqual(response.code, 200)
            bodies.append((reactor.seconds() - changedAt, body))
            if body == b"b":
                break
        self.assertEqual(bodies[-1][1], b"b")
        self.assertLess(bodies[-1][0], 2.0)

    @defer.inlineCallbacks
    def test_fileWeights(self):
        """
        '* weight' lines in an fs file split traffic by weight (within 5% over 2,000 requests).
        """
        a = startOrigin(self, "a")
        b = startOrigin(self, "b")
        root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, root, True)
        with open(os.path.join(root, "web"), "w") as f:
            f.write(f"127.0.0.1 {a.portNumber} * 3\n127.0.0.1 {b.portNumber} * 1\n")
        linker = startLinker(self, fsConfig(root, client={"kind": "io.l5d.global", "loadBalancer": {"kind": "roundRobin"}}))
        yield self.sendMany(routerPort(linker), 2000)
        share = len(a.requests) / 2000.0
        self.assertLessEqual(abs(share - 0.75), 0.05 * 0.75, share)

    @defer.inlineCallbacks
    def sendMany(self, port: int, n: int, host: str = "web"):
        """
        n keep-alive requests over one raw connection, answered in order.
        """
        request = b"GET / HTTP/1.1\r\nHost: " + host.encode() + b"\r\n\r\n"
        done = defer.Deferred()
        counts = {"responses": 0}

        class Client(Protocol):
            def connectionMade(self):
                self.buf = b""
                self.sent = 0
                self.send()

            def send(self):
                batch = min(50, n - self.sent)
                self.transport.write(request * batch)
                self.sent += batch

            def dataReceived(self, data):
                self.buf += data
                while True:
                    head, sep, rest = self.buf.partition(b"\r\n\r\n")
                    if not sep:
                        return
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    if len(rest) < length:
                        return
                    assert head.startswith(b"HTTP/1.1 200"), head
                    self.buf = rest[length:]
                    counts["responses"] += 1
                    if counts["responses"] == n:
                        self.transport.loseConnection()
                        done.callback(None)
                        return
                    if counts["responses"] == self.sent:
                        self.send()

        factory = Factory.forProtocol(Client)
        from twisted.internet.endpoints import TCP4ClientEndpoint

        yield TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory)
        yield done

    @defer.inlineCallbacks
    def test_dtabWeightedSplit(self):
        """
        A weighted union in the dtab splits traffic by weight (within 5% over 2,000 requests).
        """
        a = startOrigin(self, "a")
        b = startOrigin(self, "b")
        dtab = f"/svc/web => 0.8 * /$/inet/127.0.0.1/{a.portNumber} & 0.2 * /$/inet/127.0.0.1/{b.portNumber}"
        linker = startLinker(self, {"admin": {"port": 0}, "routers": [{"protocol": "http", "dtab": dtab, "servers": [{"port": 0}]}]})
        yield self.sendMany(routerPort(linker), 2000)
        share = len(a.requests) / 2000.0
        self.assertLessEqual(abs(share - 0.8), 0.05 * 0.8, share)
        self.assertEqual(len(a.requests) + len(b.requests), 2000)

    @defer.inlineCallbacks
    def test_failureAccrualEjects(self):
        """
        An origin that keeps failing is marked dead and gets no more traffic while another is healthy.
        """
        good = startOrigin(self, "good")
        bad = startOrigin(self, "bad")
        bad.script = [(500, b"bad", {})] * 1000
        root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, root, True)
        with open(os.path.join(root, "web"), "w") as f:
            f.write(f"127.0.0.1 {good.portNumber}\n127.0.0.1 {bad.portNumber}\n")
        client = {"kind": "io.l5d.global", "failureAccrual": {"kind": "io.l5d.consecutiveFailures", "failures": 3, "backoff": {"kind": "constant", "ms": 60000}}}
        linker = startLinker(self, fsConfig(root, client=client))
        port = routerPort(linker)
        for _ in range(40):
            yield httpGet(f"http://127.0.0.1:{port}/", headers={"Host": "web"})
        self.assertEqual(len(bad.requests), 3)
        self.assertEqual(len(good.requests), 37)


class WebSocketTests(TestCase):
    """
    Upgrade/WebSocket passthrough (Linkerd 1 never had it).
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_echo(self):
        """
        A WebSocket handshake gets 101 through the router and frames are echoed both ways.
        """
        origin = reactor.listenTCP(0, Factory.forProtocol(_WebSocketEcho), interface="127.0.0.1")
        self.addCleanup(origin.stopListening)
        linker = startLinker(self, {"admin": {"port": 0}, "routers": [{"protocol": "http", "dtab": f"/svc=>/$/inet/127.0.0.1/{origin.getHost().port}", "servers": [{"port": 0}]}]})
        port = routerPort(linker)
        key = base64.b64encode(os.urandom(16))

        def talk():
            s = socket.create_connection(("127.0.0.1", port), timeout=20)
            s.sendall(
                b"GET /chat HTTP/1.1\r\nHost: ws\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(1)
            replies = []
            for text in (b"hello", b"through linkerpy" * 100):
                s.sendall(_frame(text, mask=True))
                replies.append(_readFrame(s))
            s.close()
            return head, replies

        from twisted.internet.threads import deferToThread

        head, replies = yield deferToThread(talk)
        self.assertTrue(head.startswith(b"HTTP/1.1 101"), head)
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        self.assertIn(b"Sec-WebSocket-Accept: " + accept, head)
        self.assertEqual(replies, [b"hello", b"through linkerpy" * 100])


def _frame(payload: bytes, mask: bool) -> bytes:
    head = bytes([0x81])
    n = len(payload)
    maskBit = 0x80 if mask else 0
    if n < 126:
        head += bytes([maskBit | n])
    else:
        head += bytes([maskBit | 126]) + struct.pack(">H", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def _readFrame(s: socket.socket) -> bytes:
    def exactly(n):
        data = b""
        while len(data) < n:
            chunk = s.recv(n - len(data))
            if not chunk:
                raise EOFError()
            data += chunk
        return data

    b0, b1 = exactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", exactly(2))[0]
    key = exactly(4) if b1 & 0x80 else None
    payload = exactly(n)
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return payload


class _WebSocketEcho(Protocol):
    """
    A minimal WebSocket server: handshake, then echo text frames.
    """

    def connectionMade(self):
        self.buf = b""
        self.upgraded = False

    def dataReceived(self, data):
        self.buf += data
        if not self.upgraded:
            head, sep, rest = self.buf.partition(b"\r\n\r\n")
            if not sep:
                return
            key = [l.split(b":", 1)[1].strip() for l in head.split(b"\r\n") if l.lower().startswith(b"sec-websocket-key:")][0]
            accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            self.upgraded = True
            self.buf = rest
        while len(self.buf) >= 2:
            n = self.buf[1] & 0x7F
            offset = 2
            if n == 126:
                if len(self.buf) < 4:
                    return
                n = struct.unpack(">H", self.buf[2:4])[0]
                offset = 4
            if len(self.buf) < offset + 4 + n:
                return
            key = self.buf[offset : offset + 4]
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(self.buf[offset + 4 : offset + 4 + n]))
            self.buf = self.buf[offset + 4 + n :]
            self.transport.write(_frame(payload, mask=False))


class RealClientTests(TestCase):
    """
    curl and a slow reader against a real twistd process.
    """

    timeout = 240

    @defer.inlineCallbacks
    def test_curl(self):
        """
        curl gets a routed response and the router's headers.
        """
        curl = requireTool(self, "curl")
        origin = startOrigin(self, "hello from origin")
        proc = TwistdProcess({"admin": {"port": 0}, "routers": [{"protocol": "http", "dtab": f"/svc=>/$/inet/127.0.0.1/{origin.portNumber}", "servers": [{"port": 0}]}]})
        self.addCleanup(proc.stop)
        yield proc.start(waitFor=("admin", "router http"))
        port = proc.routerPort("http")
        out, err, code = yield getProcessOutputAndValue(curl, ["-s", "-i", "-H", "Host: hello", f"http://127.0.0.1:{port}/"])
        self.assertEqual(code, 0, err)
        self.assertIn(b"HTTP/1.1 200", out)
        self.assertIn(b"Via: 1.1 linkerpy", out)
        self.assertIn(b"hello from origin", out)

    @defer.inlineCallbacks
    def test_slowReaderBoundedMemory(self):
        """
        A 50 MB response streamed to a slow reader arrives intact while the router's RSS stays bounded.
        """
        origin = reactor.listenTCP(0, _BigOriginFactory(50 * 1024 * 1024), interface="127.0.0.1")
        self.addCleanup(origin.stopListening)
        proc = TwistdProcess({"admin": {"port": 0}, "routers": [{"protocol": "http", "dtab": f"/svc=>/$/inet/127.0.0.1/{origin.getHost().port}", "servers": [{"port": 0}]}]})
        self.addCleanup(proc.stop)
        yield proc.start(waitFor=("admin", "router http"))
        pid = proc.transport.pid
        port = proc.routerPort("http")
        before = _rss(pid)

        def slowRead():
            s = socket.create_connection(("127.0.0.1", port), timeout=60)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            s.sendall(b"GET /big HTTP/1.1\r\nHost: big\r\nConnection: close\r\n\r\n")
            digest = hashlib.sha256()
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(1)
            total = 0
            peak = 0
            i = 0
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                digest.update(chunk)
                total += len(chunk)
                i += 1
                if i % 20 == 0:
                    peak = max(peak, _rss(pid))
                    import time

                    time.sleep(0.01)  # a slow reader, not synchronisation
            s.close()
            return head, total, digest.hexdigest(), peak

        from twisted.internet.threads import deferToThread

        head, total, digest, peak = yield deferToThread(slowRead)
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        self.assertEqual(total, 50 * 1024 * 1024)
        self.assertEqual(digest, _BigOriginFactory.expectedDigest(50 * 1024 * 1024))
        self.assertLess(peak - before, 20 * 1024 * 1024, f"RSS grew from {before} to {peak}")


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


_BLOCK = bytes(range(256)) * 256


class _BigOrigin(Protocol):
    """
    Answers one request with a large Content-Length body, written as fast as
    the connection takes it (a push producer paused by back-pressure).
    """

    def connectionMade(self):
        self.buf = b""
        self.remaining = None
        self.paused = False

    def dataReceived(self, data):
        self.buf += data
        if self.remaining is None and b"\r\n\r\n" in self.buf:
            self.remaining = self.factory.size
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % self.remaining)
            self.transport.registerProducer(self, True)
            self.resumeProducing()

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False
        while not self.paused and self.remaining:
            chunk = _BLOCK[: min(len(_BLOCK), self.remaining)]
            self.remaining -= len(chunk)
            self.transport.write(chunk)
        if self.remaining == 0:
            self.transport.unregisterProducer()
            self.remaining = -1

    def stopProducing(self):
        self.remaining = 0


class _BigOriginFactory(Factory):
    protocol = _BigOrigin

    def __init__(self, size: int) -> None:
        self.size = size

    @staticmethod
    def expectedDigest(size: int) -> str:
        digest = hashlib.sha256()
        while size:
            chunk = _BLOCK[: min(len(_BLOCK), size)]
            digest.update(chunk)
            size -= len(chunk)
        return digest.hexdigest()
