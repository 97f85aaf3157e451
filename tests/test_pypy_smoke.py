"""
A smoke test meant for every interpreter CI runs (CPython and Debian's
PyPy): a real twistd linkerpy process routes through io.l5d.fs to an origin.
"""

from __future__ import annotations

import os
import platform
import tempfile

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from tests.support import TwistdProcess, httpGet, startOrigin


class SmokeTests(TestCase):
    """
    The default-shaped configuration works end to end on this interpreter.
    """

    timeout = 180

    @defer.inlineCallbacks
    def test_routeThroughFsNamer(self):
        """
        A request by Host reaches the origin named in an io.l5d.fs file, and metrics count it.
        """
        origin = startOrigin(self, f"hello from {platform.python_implementation()}")
        disco = tempfile.mkdtemp()
        with open(os.path.join(disco, "hello"), "w") as f:
            f.write(f"127.0.0.1 {origin.portNumber}\n")
        proc = TwistdProcess(
            {
                "admin": {"port": 0},
                "namers": [{"kind": "io.l5d.fs", "rootDir": disco}],
                "routers": [{"protocol": "http", "dtab": "/svc => /#/io.l5d.fs", "servers": [{"port": 0}]}],
                "telemetry": [{"kind": "io.l5d.prometheus"}],
            }
        )
        self.addCleanup(proc.stop)
        yield proc.start(waitFor=("admin", "router http"))
        for _ in range(20):
            response, body = yield httpGet(f"http://127.0.0.1:{proc.routerPort('http')}/", headers={"Host": "hello"})
            self.assertEqual((response.code, body), (200, f"hello from {platform.python_implementation()}".encode()))
        response, body = yield httpGet(proc.url(path="/admin/metrics/prometheus"))
        self.assertIn(b'rt:service:requests{rt="http",service="svc/hello"} 20.0', body)
        response, _ = yield httpGet(proc.url(path="/admin/shutdown"), method="POST")
        self.assertEqual(response.code, 200)
        code = yield proc.ended
        self.assertEqual(code, 0)
