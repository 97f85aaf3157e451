"""
Tests for C{twistd linkerpy-namerd}: C{--check}, start-up, the admin server
(ping, config.json, metrics, /dtab/delegator.json, shutdown) and the API in
a real process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.support import REPO, TWISTD, TwistdProcess, childEnv, httpGet, jsonOf

API = "interface io.l5d.httpController"

CONFIG = {
    "admin": {"port": 0},
    "storage": {"kind": "io.l5d.inMemory", "namespaces": {"default": "/svc => /$/inet/127.0.0.1"}},
    "interfaces": [{"kind": "io.l5d.httpController", "port": 0}],
    "telemetry": [{"kind": "io.l5d.prometheus"}],
}


class CheckTests(SynchronousTestCase):
    """
    C{twistd linkerpy-namerd --check}.
    """

    def check(self, path: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            TWISTD + ["-n", "--pidfile=", "linkerpy-namerd", "--config", path, "--check"],
            env=childEnv(), cwd=REPO, capture_output=True, timeout=120,
        )

    def test_exampleConfig(self) -> None:
        """
        conf/namerd.yaml passes --check (which creates no storage directory).
        """
        result = self.check(os.path.join(REPO, "conf", "namerd.yaml"))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(b"ok: storage io.l5d.fs", result.stdout)

    def test_badConfig(self) -> None:
        """
        A bad configuration exits 1 listing the problems with their key paths.
        """
        fd, path = tempfile.mkstemp(prefix="linkerpy-namerd-", suffix=".yaml")
        self.addCleanup(os.unlink, path)
        with os.fdopen(fd, "w") as f:
            f.write("storage: {kind: io.l5d.fs}\ninterfaces:\n- kind: io.l5d.httpController\n  port: nope\n")
        result = self.check(path)
        self.assertEqual(result.returncode, 1)
        self.assertIn(b"storage.rootDir", result.stderr)
        self.assertIn(b"interfaces[0].port (line 4)", result.stderr)

    def test_missingConfig(self) -> None:
        """
        Without -c the command fails with a usage message.
        """
        result = subprocess.run(TWISTD + ["-n", "--pidfile=", "linkerpy-namerd"], env=childEnv(),
                                capture_output=True, timeout=120)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(b"--config", result.stdout + result.stderr)


class ProcessTests(TestCase):
    """
    A real C{twistd -n linkerpy-namerd} process.
    """

    timeout = 180

    @defer.inlineCallbacks
    def test_adminAndApi(self) -> Any:
        """
        The admin server answers ping, config.json, metrics (JSON and Prometheus) and the delegator; the API serves dtabs.
        """
        proc = TwistdProcess(CONFIG, plugin="linkerpy-namerd")
        self.addCleanup(proc.stop)
        yield proc.start(waitFor=("admin", API))
        response, body = yield httpGet(proc.url(path="/admin/ping"))
        self.assertEqual((response.code, body), (200, b"pong"))
        config = jsonOf((yield httpGet(proc.url(path="/config.json"))))
        self.assertEqual(config["storage"], {"kind": "io.l5d.inMemory", "namespaces": {"default": "/svc=>/$/inet/127.0.0.1"}})
        self.assertEqual(config["interfaces"][0]["kind"], "io.l5d.httpController")
        response, body = yield httpGet(proc.url(API, "/api/1/dtabs"))
        self.assertEqual(json.loads(body), ["default"])
        response, _ = yield httpGet(proc.url(API, "/api/1/bind/default?path=/svc/1"))
        metrics = jsonOf((yield httpGet(proc.url(path="/admin/metrics.json"))))
        self.assertGreaterEqual(metrics["namerd/io.l5d.httpController/requests"], 2)
        self.assertEqual(metrics["namerd/io.l5d.httpController/watches"], 0)
        tree = jsonOf((yield httpGet(proc.url(path="/dtab/delegator.json?namespace=default&path=/svc/8080"))))
        self.assertEqual(tree["delegate"]["dentry"], {"prefix": "/svc", "dst": "/$/inet/127.0.0.1"})
        response, body = yield httpGet(
            proc.url(path="/dtab/delegator.json"), method="POST",
            headers={"content-type": "application/json"},
            data=json.dumps({"namespace": "default", "path": "/svc/9", "dtab": "/svc/9=>/$/nil"}).encode(),
        )
        self.assertEqual(json.loads(body)["type"], "alt")
        response, body = yield httpGet(proc.url(path="/dtab/delegator.json"), method="POST", data=b"{}")
        self.assertEqual(response.code, 415)
        response, body = yield httpGet(proc.url(path="/dtab/delegator.json?path=nope"))
        self.assertEqual(response.code, 400)
        self.assertIn(b"Invalid path", body)
        response, body = yield httpGet(proc.url(path="/dtab/delegator.json?path=/a&dtab=/a=>"))
        self.assertEqual(response.code, 400)
        self.assertIn(b"Invalid dtab", body)
        response, body = yield httpGet(proc.url(path="/admin"))
        self.assertIn(b"/dtab/delegator.json", body)
        response, body = yield httpGet(proc.url(path="/admin/metrics/prometheus"))
        self.assertEqual(response.code, 200)
        self.assertIn(b"namerd", body)
        response, _ = yield httpGet(proc.url(path="/admin/shutdown"), method="POST")
        self.assertEqual(response.code, 200)
        code = yield proc.ended
        self.assertEqual(code, 0, proc.output.decode(errors="replace"))

    @defer.inlineCallbacks
    def test_sigterm(self) -> Any:
        """
        SIGTERM, even right after the ports open, stops namerd and it exits 0.
        """
        proc = TwistdProcess(CONFIG, plugin="linkerpy-namerd")
        self.addCleanup(proc.stop)
        yield proc.start(waitFor=("admin", API))
        proc.signal(signal.SIGTERM)
        code = yield proc.ended
        self.assertEqual(code, 0, proc.output.decode(errors="replace"))
        self.assertIn(b"Server Shut Down.", proc.output)

    @defer.inlineCallbacks
    def test_fsStorageCreatedRelativeToWorkingDirectory(self) -> Any:
        """
        A relative fs rootDir is created under the process's working directory on start.
        """
        config = dict(CONFIG, storage={"kind": "io.l5d.fs", "rootDir": "namerd-data"})
        proc = TwistdProcess(config, plugin="linkerpy-namerd")
        self.addCleanup(proc.stop)
        yield proc.start(waitFor=("admin", API))
        response, _ = yield httpGet(proc.url(API, "/api/1/dtabs/default"), method="PUT",
                                    headers={"content-type": "application/dtab"}, data=b"/a=>/b")
        self.assertEqual(response.code, 204)
        with open(os.path.join(proc.directory, "namerd-data", "dtabs", "default")) as f:
            self.assertEqual(f.read(), "/a=>/b")
