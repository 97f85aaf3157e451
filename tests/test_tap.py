"""
End-to-end tests of C{twistd linkerpy}: start, admin, shutdown, C{--check}.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import tempfile

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.support import REPO, TWISTD, TwistdProcess, childEnv, httpGet, jsonOf

MINIMAL = {
    "admin": {"port": 0},
    "routers": [
        {
            "protocol": "http",
            "dtab": "/svc => /$/inet/127.0.0.1/1",
            "servers": [{"port": 0}],
        }
    ],
}


class TwistdTests(TestCase):
    """
    A real C{twistd -n --pidfile= linkerpy -c FILE} process.
    """

    timeout = 120

    @defer.inlineCallbacks
    def test_startAdminShutdown(self) -> defer.Deferred:
        """
        The process answers /admin/ping and /config.json, and exits 0 after
        POST /admin/shutdown.
        """
        proc = TwistdProcess(MINIMAL)
        self.addCleanup(proc.stop)
        yield proc.start(waitFor=("admin", "router http"))
        response, body = yield httpGet(proc.url(path="/admin/ping"))
        self.assertEqual((response.code, body), (200, b"pong"))
        config = jsonOf((yield httpGet(proc.url(path="/config.json"))))
        self.assertEqual(config["routers"][0]["kind"], "http")
        self.assertEqual(config["routers"][0]["dtab"], "/svc=>/$/inet/127.0.0.1/1")
        self.assertEqual(config["admin"]["port"], 0)
        response, body = yield httpGet(proc.url(path="/admin/shutdown"))
        self.assertEqual(response.code, 405)
        response, body = yield httpGet(proc.url(path="/admin/shutdown"), method="POST")
        self.assertEqual(response.code, 200)
        code = yield proc.ended
        self.assertEqual(code, 0, proc.output.decode(errors="replace"))

    @defer.inlineCallbacks
    def test_badConfigOpensNoPort(self) -> defer.Deferred:
        """
        A bad configuration exits non-zero naming the key path, before listening.
        """
        proc = TwistdProcess({"admin": {"port": 0}, "routers": [{"protocol": "http", "servers": [{"port": "x"}]}]})
        proc.start(waitFor=())
        code = yield proc.ended
        self.assertNotEqual(code, 0)
        self.assertIn(b"routers[0].servers[0].port", proc.output)
        self.assertNotIn(b"listening on", proc.output)


class CheckTests(SynchronousTestCase):
    """
    C{twistd linkerpy --check}.
    """

    def check(self, path: str, plugin: str = "linkerpy") -> subprocess.CompletedProcess:
        return subprocess.run(
            TWISTD + ["-n", "--pidfile=", plugin, "--config", path, "--check"],
            env=childEnv(),
            cwd=REPO,
            capture_output=True,
            timeout=120,
        )

    def test_examples(self) -> None:
        """
        Every file in conf/ passes --check (twistd linkerpy, or linkerpy-namerd for control-plane configs) with a one-line summary.
        """
        files = sorted(glob.glob(os.path.join(REPO, "conf", "*.yaml")))
        self.assertTrue(files)
        import yaml

        for path in files:
            with open(path) as f:
                top = yaml.safe_load(f) or {}
            plugin = "linkerpy-namerd" if "storage" in top or "interfaces" in top else "linkerpy"
            result = self.check(path, plugin)
            self.assertEqual(result.returncode, 0, f"{path}: {result.stderr.decode()}")
            lines = result.stdout.decode().strip().splitlines()
            self.assertEqual(len(lines), 1, result.stdout)
            self.assertIn("ok", lines[0])

    def test_broken(self) -> None:
        """
        A broken file fails --check, printing every problem with its key path.
        """
        fd, path = tempfile.mkstemp(suffix=".yaml")
        self.addCleanup(os.remove, path)
        with os.fdopen(fd, "w") as f:
            f.write("routers:\n- protocol: http\n  servers:\n  - port: 80000\n  - ipp: 1\n")
        result = self.check(path)
        self.assertNotEqual(result.returncode, 0)
        err = result.stderr.decode()
        self.assertIn("routers[0].servers[0].port (line 4)", err)
        self.assertIn("routers[0].servers[1].ipp (line 5)", err)

    def test_missingConfigOption(self) -> None:
        """
        Without --config, twistd linkerpy says what is missing.
        """
        result = subprocess.run(TWISTD + ["-n", "linkerpy"], env=childEnv(), capture_output=True, timeout=120)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(b"--config", result.stdout + result.stderr)


__all__ = ["TwistdTests", "CheckTests", "sys"]
