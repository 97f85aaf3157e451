"""
The per-service timeouts scenario of docs/per-service-policy.md, driven by
curl against real processes: conf/per-service-timeouts.yaml (with ephemeral
ports), two demo helloworld services, one twistd linkerpy.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

import yaml
from twisted.internet import defer, protocol, reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from tests.support import REPO, TwistdProcess, childEnv, requireTool, waitUntil


class _Demo(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.port = None
        self.ended = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data
        m = re.search(rb"listening on 127\.0\.0\.1:(\d+)", self.output)
        if m:
            self.port = int(m.group(1))

    errReceived = outReceived

    def processEnded(self, reason) -> None:
        self.ended.callback(None)


class SeedScenarioTests(TestCase):
    """
    hello (600 ms) and world (100 ms) timeouts, changed live by /setLatency.
    """

    timeout = 240

    def startDemo(self, *args: str) -> _Demo:
        demo = _Demo()
        transport = reactor.spawnProcess(
            demo, sys.executable, [sys.executable, "-m", "linkerpy.demo.helloworld", "--port", "0", *args], env=childEnv()
        )

        def stop():
            if demo.ended.called:
                return None
            transport.signalProcess("KILL")
            return demo.ended

        self.addCleanup(stop)
        return demo

    @defer.inlineCallbacks
    def curl(self, port: int, host: str, path: str = "/", method: str = "GET"):
        out, err, code = yield getProcessOutputAndValue(
            self.curlPath, ["-s", "-m", "20", "-X", method, "-H", f"Host: {host}", "-w", "\n%{http_code}", f"http://127.0.0.1:{port}{path}"]
        )
        self.assertEqual(code, 0, err)
        body, _, status = out.rpartition(b"\n")
        return int(status), body

    @defer.inlineCallbacks
    def test_scenario(self):
        """
        Hello calls world through the router; raising each service's latency past its timeout makes it fail alone.
        """
        self.curlPath = requireTool(self, "curl")
        with open(os.path.join(REPO, "conf", "per-service-timeouts.yaml")) as f:
            config = yaml.safe_load(f)
        disco = tempfile.mkdtemp()
        config["admin"]["port"] = 0
        config["namers"][0]["rootDir"] = disco
        config["routers"][0]["servers"][0]["port"] = 0
        proc = TwistdProcess(config)
        self.addCleanup(proc.stop)
        yield proc.start(waitFor=("admin", "router outgoing"))
        port = proc.routerPort("outgoing")
        world = self.startDemo("--text", "world")
        hello = self.startDemo("--text", "Hello", "--target", "world", "--router", f"127.0.0.1:{port}")
        yield waitUntil(lambda: world.port and hello.port, 60, "the demo services to listen")
        for name, demo in (("hello", hello), ("world", world)):
            with open(os.path.join(disco, name), "w") as f:
                f.write(f"127.0.0.1 {demo.port}\n")

        status, body = yield self.curl(port, "hello")
        self.assertEqual((status, body), (200, b"Hello (127.0.0.1) world (127.0.0.1)!!"))

        status, body = yield self.curl(port, "hello", "/setLatency?latency=600ms", "POST")
        self.assertEqual((status, body), (200, b"ok"))
        status, body = yield self.curl(port, "hello")
        self.assertEqual(status, 503)
        self.assertIn(b"exceeded 600.milliseconds total timeout", body)
        self.assertIn(b"/svc/hello", body)
        status, body = yield self.curl(port, "world")
        self.assertEqual((status, body), (200, b"world (127.0.0.1)!!"))

        status, body = yield self.curl(port, "world", "/setLatency?latency=100ms", "POST")
        self.assertEqual((status, body), (200, b"ok"))
        status, body = yield self.curl(port, "world")
        self.assertEqual(status, 503)
        self.assertIn(b"exceeded 100.milliseconds total timeout", body)
        self.assertIn(b"/svc/world", body)

        # Back to normal: both succeed again.
        yield self.curl(port, "hello", "/setLatency?latency=0ms", "POST")
        yield self.curl(port, "world", "/setLatency?latency=0ms", "POST")
        status, body = yield self.curl(port, "hello")
        self.assertEqual((status, body), (200, b"Hello (127.0.0.1) world (127.0.0.1)!!"))
