"""
End-to-end tests of the TCP router as C{twistd -n linkerpy -c conf/tcp.yaml}
(ports and addresses substituted): an echo, 100 MB each way with SHA-256
checked at both ends and the router's memory watched, and SNI passthrough
to two TLS origins checked with C{openssl s_client}.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from typing import Any, Dict, List, Optional, Sequence

import yaml
from twisted.internet import defer, protocol, reactor, utils
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from tests.support import REPO, TwistdProcess, httpGet, jsonOf, waitUntil
from tests.test_tcp_support import Client, EchoOrigin, HashingEcho, connect, listen, randomBlock, tempdir

TIMEOUT = 600

#: Bytes sent through the router in the large transfer.
TRANSFER = 100 * 1024 * 1024


def requireTool(case: TestCase, name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("LINKERPY_REQUIRE_TOOLS"):
            raise AssertionError(f"{name} is required")
        case.skipTest(f"{name} is not installed")
    return path


def tcpConfig(echoPort: int, tlsPorts: Dict[str, int], caPath: str) -> Dict[str, Any]:
    """
    C{conf/tcp.yaml} with ephemeral listening ports and the dtab pointed at
    the test's origins.
    """
    with open(os.path.join(REPO, "conf", "tcp.yaml")) as f:
        config = yaml.safe_load(f)
    config["admin"]["port"] = 0
    router = config["routers"][0]
    for server in router["servers"]:
        server["port"] = 0
    router["dtab"] = (
        f"/svc/echo => /$/inet/127.0.0.1/{echoPort};"
        f"/svc/secure-echo => /$/inet/127.0.0.1/{tlsPorts['secure']};"
        f"/svc/www.example.test => /$/inet/127.0.0.1/{tlsPorts['www.example.test']};"
        f"/svc/api.example.test => /$/inet/127.0.0.1/{tlsPorts['api.example.test']};"
        "/svc/default => /svc/www.example.test;"
    )
    tlsEntry = router["client"]["configs"][1]
    tlsEntry["prefix"] = f"/$/inet/127.0.0.1/{tlsPorts['secure']}"
    tlsEntry["tls"]["trustCertsBundle"] = caPath
    return config


class Router(TwistdProcess):
    def rssKB(self) -> int:
        with open(f"/proc/{self.transport.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise KeyError("VmRSS")

    def metrics(self) -> defer.Deferred:
        return httpGet(self.url(path="/admin/metrics.json")).addCallback(jsonOf)


@implementer(IPushProducer, IHalfCloseableProtocol)
class Uploader(protocol.Protocol):
    """
    Sends C{total} pseudo-random bytes as fast as flow control allows, then
    half-closes; hashes what it sends and what comes back.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.block = randomBlock()
        self.sent = 0
        self.received = 0
        self.sentDigest = hashlib.sha256()
        self.receivedDigest = hashlib.sha256()
        self.paused = False
        self.lost: Optional[Failure] = None
        self.done: defer.Deferred = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and self.sent < self.total:
            counter = b"%016d" % self.sent
            data = (counter + self.block)[: self.total - self.sent]
            self.sentDigest.update(data)
            self.sent += len(data)
            self.transport.write(data)
        if self.sent >= self.total and self.transport.producer is not None:
            self.transport.unregisterProducer()
            self.transport.loseWriteConnection()

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        self.paused = True

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        self.receivedDigest.update(data)

    def readConnectionLost(self) -> None:
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        self.lost = reason
        self.done.callback(self)


class TcpEndToEndTests(TestCase):
    """
    C{twistd linkerpy -c conf/tcp.yaml} between real clients and origins.
    """

    timeout = TIMEOUT

    def setUp(self) -> None:
        from linkerpy.tls.testing import newCA, writeCA, writeLeaf

        self.dir = tempdir(self)
        self.ca = newCA()
        self.caPath = writeCA(self.ca, os.path.join(self.dir, "ca.pem"))
        self.certs = {
            name: writeLeaf(self.dir, name, self.ca, name, commonName=name)
            for name in ("www.example.test", "api.example.test")
        }

    def tlsOrigin(self, name: str) -> Any:
        from linkerpy.tls.config import ServerTlsConfig
        from linkerpy.tls.server import ServerTLS

        files = self.certs[name]
        tls = ServerTLS(ServerTlsConfig(certPath=files.cert, keyPath=files.key, reloadIntervalMs=0), reactor)
        return listen(self, lambda: _Greeter(f"hello from {name}\n".encode()), tls=tls)

    @defer.inlineCallbacks
    def startRouter(self, echo: Any = None) -> Any:
        echo = echo or listen(self, EchoOrigin)
        self.www = self.tlsOrigin("www.example.test")
        self.api = self.tlsOrigin("api.example.test")
        secure = listen(self, EchoOrigin, tls=_serverTLS(self.certs["www.example.test"]))
        ports = {"www.example.test": self.www.port, "api.example.test": self.api.port, "secure": secure.port}
        proc = Router(tcpConfig(echo.port, ports, self.caPath))
        self.addCleanup(proc.stop)
        yield proc.start(waitFor=("admin", "router tcp"))
        yield waitUntil(lambda: len(proc.routerPorts.get("tcp", [])) >= 3, 60, "three servers to listen")
        return proc

    @defer.inlineCallbacks
    def test_echoAndTLSOrigination(self) -> Any:
        """
        The fixed-name server relays both ways; the TLS-originating server
        reaches a TLS origin that verifies as www.example.test.
        """
        proc = yield self.startRouter()
        plain, _, secure = proc.routerPorts["tcp"]
        for port in (plain, secure):
            client = yield connect(self, port, Client(b"hello through the router"))
            yield waitUntil(lambda: client.received == b"hello through the router", 60, "the echo")
            client.transport.loseConnection()
            yield client.done
        # A connection is counted when both of its sides are closed, which
        # may happen just after the client sees its end.
        yield waitForMetrics(
            proc,
            lambda m: m.get("rt/tcp/service/svc/echo/success") == 1 and m.get("rt/tcp/service/svc/secure-echo/success") == 1,
            "both connections to be counted as successes",
        )

    @defer.inlineCallbacks
    def test_hundredMegabytes(self) -> Any:
        """
        100 MB go to an echoing origin and come back through the router: the
        SHA-256 of what the client sent, what the origin received and what
        the client got back are the same, and the router's resident memory
        stays far below the transfer size.
        """
        echo = listen(self, HashingEcho)
        proc = yield self.startRouter(echo)
        baseline = proc.rssKB()
        samples: List[int] = []
        sampler = LoopingCall(lambda: samples.append(proc.rssKB()))
        sampler.clock = reactor
        sampler.start(0.1)
        self.addCleanup(lambda: sampler.running and sampler.stop())
        started = time.monotonic()
        uploader = Uploader(TRANSFER)
        yield connect(self, proc.routerPorts["tcp"][0], uploader)
        yield uploader.done
        elapsed = time.monotonic() - started
        sampler.stop()
        origin = echo.connections[0]
        self.assertEqual(uploader.sent, TRANSFER)
        self.assertEqual(origin.count, TRANSFER)
        self.assertEqual(uploader.received, TRANSFER)
        self.assertEqual(origin.digest.hexdigest(), uploader.sentDigest.hexdigest())
        self.assertEqual(uploader.receivedDigest.hexdigest(), uploader.sentDigest.hexdigest())
        self.assertTrue(origin.eof, "the client's FIN did not reach the origin")
        peak = max(samples + [proc.rssKB()])
        growthMB = (peak - baseline) / 1024.0
        print(
            f"100 MB each way through the TCP router in {elapsed:.1f}s "
            f"({2 * TRANSFER / elapsed / 1e6:.0f} MB/s relayed); router RSS baseline {baseline} kB, "
            f"peak {peak} kB, growth {growthMB:.1f} MB"
        )
        self.assertLess(growthMB, 32.0, f"router RSS grew by {growthMB:.1f} MB")
        client = f"rt/tcp/client/$/inet/127.0.0.1/{echo.port}"
        yield waitForMetrics(
            proc,
            lambda m: m.get(f"{client}/sent_bytes") == TRANSFER and m.get(f"{client}/received_bytes") == TRANSFER,
            "the byte counts",
        )

    @defer.inlineCallbacks
    def test_sniPassthroughWithOpenSSL(self) -> Any:
        """
        openssl s_client reaches each TLS origin by its server name through
        the passthrough server and verifies that origin's own certificate;
        a ClientHello without a name goes to the default; the router has no
        key for these names at all.
        """
        openssl = requireTool(self, "openssl")
        proc = yield self.startRouter()
        port = proc.routerPorts["tcp"][1]
        for name in ("www.example.test", "api.example.test"):
            out = yield sClient(openssl, port, name, self.caPath)
            self.assertIn(b"Verify return code: 0 (ok)", out)
            self.assertIn(f"CN = {name}".encode(), out)
            self.assertIn(f"hello from {name}".encode(), out)
        out = yield sClient(openssl, port, None, self.caPath)
        self.assertIn(b"hello from www.example.test", out)
        self.assertEqual((len(self.www.connections), len(self.api.connections)), (2, 1))
        server = f"rt/tcp/server/127.0.0.1/{port}"
        metrics = yield waitForMetrics(proc, lambda m: m.get(f"{server}/connections") == 0, "the connections to close")
        self.assertEqual(metrics["rt/tcp/service/svc/api.example.test/connects"], 1)
        self.assertEqual(metrics["rt/tcp/service/svc/default/connects"], 1)
        self.assertGreater(metrics[f"{server}/received_bytes"], 0)
        self.assertEqual(metrics[f"{server}/unidentified"], 0)


@defer.inlineCallbacks
def waitForMetrics(proc: Router, check: Any, what: str, timeout: float = 60.0) -> Any:
    """
    Poll the router's metrics until C{check(metrics)} is true; fire with them.
    """
    from twisted.internet.task import deferLater

    deadline = reactor.seconds() + timeout
    while True:
        metrics = yield proc.metrics()
        if check(metrics):
            return metrics
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}: {metrics}")
        yield deferLater(reactor, 0.1, lambda: None)


def _serverTLS(files: Any) -> Any:
    from linkerpy.tls.config import ServerTlsConfig
    from linkerpy.tls.server import ServerTLS

    return ServerTLS(ServerTlsConfig(certPath=files.cert, keyPath=files.key, reloadIntervalMs=0), reactor)


class _Greeter(protocol.Protocol):
    """
    Says who it is once the TLS handshake is done, then closes.
    """

    def __init__(self, greeting: bytes) -> None:
        self.greeting = greeting

    def connectionMade(self) -> None:
        self.transport.write(self.greeting)
        self.transport.loseConnection()


def sClient(
    openssl: str, port: int, serverName: Optional[str], caPath: str, extra: Sequence[str] = (), ignEof: bool = True
) -> defer.Deferred:
    """
    Run C{openssl s_client} against 127.0.0.1:C{port} (stdin empty); fire
    with its output.

    @param ignEof: wait for the server to close (otherwise s_client closes
        right after the handshake).
    """
    args = ["s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", caPath]
    if ignEof:
        args.append("-ign_eof")
    if serverName is not None:
        args += ["-servername", serverName, "-verify_hostname", serverName, "-verify_return_error"]
    else:
        args += ["-noservername"]
    args += list(extra)
    d = utils.getProcessOutputAndValue(openssl, args, env=os.environ)
    return d.addCallback(lambda result: result[0] + result[1])
