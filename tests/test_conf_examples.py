"""
The default configuration, conf/linkerpy.yaml, run as shipped (ports and the
disco directory moved aside): every key in it is exercised.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import yaml
from twisted.internet import defer
from twisted.trial.unittest import TestCase

from tests.support import REPO, TwistdProcess, httpGet, startOrigin


class DefaultConfigTests(TestCase):
    """
    conf/linkerpy.yaml: admin on loopback, io.l5d.fs namer over conf/disco, an HTTP router by Host, Prometheus.
    """

    timeout = 120

    @defer.inlineCallbacks
    def test_defaultConfig(self):
        """
        Requests for hello and world are routed by the disco files; admin and Prometheus answer.
        """
        with open(os.path.join(REPO, "conf", "linkerpy.yaml")) as f:
            config = yaml.safe_load(f)
        self.assertEqual(config["admin"]["ip"], "127.0.0.1")
        self.assertEqual(config["routers"][0]["servers"][0], {"ip": "127.0.0.1", "port": 4140})
        disco = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, disco, True)
        origins = {}
        for name in sorted(os.listdir(os.path.join(REPO, "conf", "disco"))):
            origins[name] = startOrigin(self, f"this is {name}")
            with open(os.path.join(disco, name), "w") as f:
                f.write(f"# moved for the test\n127.0.0.1 {origins[name].portNumber}\n")
        self.assertEqual(sorted(origins), ["hello", "world"])
        config["admin"]["port"] = 0
        config["routers"][0]["servers"][0]["port"] = 0
        config["namers"][0]["rootDir"] = disco
        proc = TwistdProcess(config)
        self.addCleanup(proc.stop)
        yield proc.start(waitFor=("admin", "router http"))
        self.assertEqual(proc.ports["admin"][0], "127.0.0.1")
        port = proc.routerPort("http")
        for name in origins:
            response, body = yield httpGet(f"http://127.0.0.1:{port}/", headers={"Host": name})
            self.assertEqual((response.code, body), (200, f"this is {name}".encode()))
        response, body = yield httpGet(proc.url(path="/admin/metrics/prometheus"))
        self.assertIn(b'rt:service:requests{rt="http",service="svc/hello"} 1.0', body)
        self.assertIn(b'rt:client:requests{client="#/io.l5d.fs/world",rt="http"} 1.0', body)
