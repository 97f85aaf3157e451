"""
End-to-end tests of the h2 router as C{twistd -n linkerpy}: the example
configuration C{conf/h2.yaml}, C{nghttp} and C{h2load} as clients (h2c and
TLS with ALPN), and a 50 MB gRPC stream each way with the router's memory
watched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any, Dict, List, Optional

import yaml
from twisted.internet import defer, reactor, threads, utils
from twisted.internet.task import LoopingCall
from twisted.trial.unittest import TestCase

from linkerpy.protocol.h2.headers import H2Headers
from tests.support import REPO, TwistdProcess, httpGet, jsonOf, waitUntil
from tests.test_h2_grpc import Origin, grpc, requireGrpc
from tests.test_h2_router import RouterHarness

TIMEOUT = 300


def requireTool(case: TestCase, name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("LINKERPY_REQUIRE_TOOLS"):
            raise AssertionError(f"{name} is required (apt-get install nghttp2-client)")
        case.skipTest(f"{name} is not installed")
    return path


class Router(TwistdProcess):
    """
    A C{twistd linkerpy} process, with a look at its memory and metrics.
    """

    @property
    def pid(self) -> int:
        return int(self.transport.pid)

    def rssKB(self) -> int:
        return _status(self.pid, "VmRSS")

    def metrics(self) -> defer.Deferred:
        return httpGet(self.url(path="/admin/metrics.json")).addCallback(jsonOf)


def _status(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def exampleConfig(dtab: str, tls: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """
    C{conf/h2.yaml} with ephemeral ports and the given dtab.
    """
    with open(os.path.join(REPO, "conf", "h2.yaml")) as f:
        config = yaml.safe_load(f)
    config["admin"]["port"] = 0
    router = config["routers"][0]
    router["dtab"] = dtab
    router["servers"] = [{"ip": "127.0.0.1", "port": 0}]
    if tls is not None:
        router["servers"].append({"ip": "127.0.0.1", "port": 0, "tls": tls})
    return config


class TwistdH2Tests(TestCase):
    """
    C{twistd linkerpy -c <h2 config>} with real clients.
    """

    timeout = TIMEOUT

    @defer.inlineCallbacks
    def startRouter(self, config: Dict[str, Any], servers: int = 1) -> Any:
        proc = Router(config)
        self.addCleanup(proc.stop)
        yield proc.start(waitFor=("admin", "router grpc"))
        yield waitUntil(lambda: len(proc.routerPorts.get("grpc", [])) >= servers, 60, "all servers to listen")
        return proc

    @defer.inlineCallbacks
    def test_exampleGrpc(self) -> Any:
        """
        The example configuration routes gRPC by service and retries
        UNAVAILABLE.
        """
        requireGrpc(self)
        origin = Origin(self, "helloworld.Greeter")
        proc = yield self.startRouter(exampleConfig(f"/svc/helloworld.Greeter => /$/inet/127.0.0.1/{origin.port}"))
        channel = grpc.insecure_channel(f"127.0.0.1:{proc.routerPort('grpc')}")
        self.addCleanup(channel.close)
        stub = channel.unary_unary("/helloworld.Greeter/Unary")
        reply = yield threads.deferToThread(stub, b"unavailable-once", timeout=60)
        self.assertEqual(reply, b"helloworld.Greeter:unavailable-once")
        self.assertEqual(origin.calls["unavailable-once"], 2)
        metrics = yield proc.metrics()
        self.assertEqual(metrics["rt/grpc/service/svc/helloworld.Greeter/retries/total"], 1)

    def nghttpOrigin(self) -> Any:
        harness = RouterHarness(self)
        return harness.origin(
            lambda e: e.respondBytes(
                H2Headers([(b":status", b"200"), (b"content-type", b"text/plain")]),
                b"hello from " + e.request.path + b"\n",
            )
        )

    @defer.inlineCallbacks
    def test_nghttpCleartextAndTLS(self) -> Any:
        """
        C{nghttp} reaches an h2 origin through the router over h2c (prior
        knowledge) and over TLS (ALPN h2).
        """
        nghttp = requireTool(self, "nghttp")
        from linkerpy.tls.testing import newCA, writeLeaf

        directory = tempfile.mkdtemp(prefix="h2-e2e-")
        cert = writeLeaf(directory, "router", newCA(), "localhost", "127.0.0.1")
        origin = self.nghttpOrigin()
        config = exampleConfig(
            f"/svc => /$/inet/127.0.0.1/{origin.port}", tls={"certPath": cert.cert, "keyPath": cert.key}
        )
        config["routers"][0]["identifier"] = {"kind": "io.l5d.header.token"}
        config["routers"][0]["service"] = {"kind": "io.l5d.global"}
        proc = yield self.startRouter(config, servers=2)
        plain, secure = proc.routerPorts["grpc"][:2]
        for url in (f"http://127.0.0.1:{plain}/one", f"https://127.0.0.1:{secure}/two"):
            out, err, code = yield utils.getProcessOutputAndValue(
                nghttp, ["-v", "-H", ":authority: dog", url], env=os.environ
            )
            self.assertEqual(code, 0, err)
            self.assertIn(b":status: 200", out)
            self.assertIn(b"hello from /" + url.rsplit("/", 1)[1].encode(), out)
        self.assertIn(b"The negotiated protocol: h2", out)

    @defer.inlineCallbacks
    def test_h2load(self) -> Any:
        """
        C{h2load} completes every request through the router with many
        streams per connection, over h2c and over TLS (ALPN h2).
        """
        h2load = requireTool(self, "h2load")
        from linkerpy.tls.testing import newCA, writeLeaf

        directory = tempfile.mkdtemp(prefix="h2-e2e-")
        cert = writeLeaf(directory, "router", newCA(), "localhost", "127.0.0.1")
        origin = self.nghttpOrigin()
        config = exampleConfig(f"/svc => /$/inet/127.0.0.1/{origin.port}", tls={"certPath": cert.cert, "keyPath": cert.key})
        config["routers"][0]["identifier"] = {"kind": "io.l5d.header.token"}
        config["routers"][0]["service"] = {"kind": "io.l5d.global"}
        proc = yield self.startRouter(config, servers=2)
        plain, secure = proc.routerPorts["grpc"][:2]
        for url in (f"http://127.0.0.1:{plain}/", f"https://127.0.0.1:{secure}/"):
            out, err, code = yield utils.getProcessOutputAndValue(
                h2load, ["-n", "2000", "-c", "4", "-m", "20", "-H", ":authority: dog", url], env=os.environ
            )
            self.assertEqual(code, 0, err)
            self.assertIn(b"2000 succeeded, 0 failed, 0 errored", out)
            self.assertIn(b"status codes: 2000 2xx", out)
        self.assertIn(b"Application protocol: h2", out)

    @defer.inlineCallbacks
    def test_fiftyMegabytesBoundedMemory(self) -> Any:
        """
        50 MB uploaded and 50 MB downloaded (read slowly) in gRPC streams
        pass through the router while its resident memory stays far below
        the stream size: flow control holds the data back, nothing is
        buffered whole.
        """
        requireGrpc(self)
        origin = Origin(self)
        proc = yield self.startRouter(exampleConfig(f"/svc/pkg.Echo => /$/inet/127.0.0.1/{origin.port}"))
        channel = grpc.insecure_channel(f"127.0.0.1:{proc.routerPort('grpc')}")
        self.addCleanup(channel.close)
        warm = channel.unary_unary("/pkg.Echo/Unary")
        yield threads.deferToThread(warm, b"warm-up", timeout=60)
        baseline = proc.rssKB()
        samples: List[int] = []
        sampler = LoopingCall(lambda: samples.append(proc.rssKB()))
        sampler.clock = reactor
        sampler.start(0.05)
        self.addCleanup(lambda: sampler.running and sampler.stop())
        chunk = b"z" * 65536
        count = 800  # 50 MiB
        upload = channel.stream_unary("/pkg.Echo/Upload")
        total = yield threads.deferToThread(upload, iter([chunk] * count), timeout=240)
        self.assertEqual(total, b"%d" % (len(chunk) * count))
        origin.downloadChunk = chunk
        origin.downloadCount = count
        download = channel.unary_stream("/pkg.Echo/Download")

        def readSlowly() -> int:
            received = 0
            for i, message in enumerate(download(b"", timeout=240)):
                received += len(message)
                if i % 8 == 0:
                    time.sleep(0.01)  # a slow reader (not synchronisation)
            return received

        received = yield threads.deferToThread(readSlowly)
        self.assertEqual(received, len(chunk) * count)
        sampler.stop()
        peak = max(samples + [proc.rssKB()])
        growthMB = (peak - baseline) / 1024.0
        print(f"router RSS: baseline {baseline} kB, peak {peak} kB, growth {growthMB:.1f} MB")
        self.assertLess(growthMB, 16.0, f"router RSS grew by {growthMB:.1f} MB (baseline {baseline} kB, peak {peak} kB)")
