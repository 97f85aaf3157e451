"""
Tests for the TCP router's configuration (L{linkerpy.protocol.tcp.config})
and plugin descriptors, and for the example files C{conf/tcp.yaml} and
C{conf/edge.yaml}.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from typing import Any, Dict

import yaml
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from linkerpy.config.errors import ConfigError
from linkerpy.config.model import parseLinkerConfig
from linkerpy.interfaces import IIdentifier, IIdentifierPlugin, IProtocolPlugin, IRouter
from linkerpy.naming.path import Path
from linkerpy.plugins.registry import defaultRegistry
from linkerpy.protocol.tcp.config import DEFAULT_TCP_PORT
from linkerpy.protocol.tcp.plugins import httpsRedirectProtocol, sniIdentifier, tcpProtocol
from tests.support import REPO, TWISTD, childEnv


def parse(router: Dict[str, Any]) -> Any:
    router = dict(router)
    router.setdefault("protocol", "tcp")
    return parseLinkerConfig({"routers": [router]})


def problems(router: Dict[str, Any]) -> str:
    try:
        parse(router)
    except ConfigError as e:
        return e.render()
    raise AssertionError("expected a configuration error")


class ConfigTests(SynchronousTestCase):
    """
    Structuring C{protocol: tcp} routers.
    """

    def test_defaults(self) -> None:
        """
        A server with only dstName gets the documented defaults.
        """
        config = parse({"servers": [{"dstName": "/svc/redis"}]})
        router = config.routers[0]
        server = router.config.servers[0]
        self.assertEqual(router.kind, "tcp")
        self.assertEqual(server.port, DEFAULT_TCP_PORT)
        self.assertEqual(server.ip, "127.0.0.1")
        self.assertEqual(server.dstName, Path.read("/svc/redis"))
        self.assertEqual(server.idleTimeoutMs, 3600000)
        self.assertEqual(server.handshakeTimeoutMs, 10000)
        self.assertIsNone(server.connectTimeoutMs)
        self.assertIsNone(server.tls)
        self.assertEqual(router.config.identifier, ())

    def test_dstNameOrIdentifier(self) -> None:
        """
        A server without dstName needs a router identifier.
        """
        text = problems({"servers": [{"port": 0}]})
        self.assertIn("routers[0].servers[0].dstName", text)
        self.assertIn("io.l5d.tls.sni", text)
        config = parse({"identifier": {"kind": "io.l5d.tls.sni"}, "servers": [{"port": 0}]})
        self.assertEqual(config.routers[0].config.identifier[0].kind, "io.l5d.tls.sni")

    def test_httpIdentifierRefused(self) -> None:
        """
        HTTP identifiers do not apply to TCP routers, and the SNI identifier
        does not apply to HTTP routers.
        """
        text = problems({"identifier": {"kind": "io.l5d.header.token"}, "servers": [{"port": 0}]})
        self.assertIn("does not apply to tcp routers", text)
        try:
            parseLinkerConfig({"routers": [{"protocol": "http", "identifier": {"kind": "io.l5d.tls.sni"}, "servers": [{"port": 0}]}]})
        except ConfigError as e:
            self.assertIn("does not apply to http routers", e.render())
        else:
            self.fail("io.l5d.tls.sni accepted on an http router")

    def test_unknownServerKey(self) -> None:
        """
        HTTP-only server keys are unknown on TCP servers.
        """
        text = problems({"servers": [{"dstName": "/svc/a", "clearContext": True}]})
        self.assertIn("unknown key 'clearContext'", text)

    def test_requestPolicyKeysRefused(self) -> None:
        """
        Request-level policy keys (totalTimeoutMs, retries,
        requestAttemptTimeoutMs) are not accepted by TCP routers; the TCP
        client keys and requeueBudget are.
        """
        text = problems({"servers": [{"dstName": "/svc/a"}], "service": {"kind": "io.l5d.global", "totalTimeoutMs": 100}})
        self.assertIn("unknown key 'totalTimeoutMs'", text)
        text = problems({"servers": [{"dstName": "/svc/a"}], "client": {"kind": "io.l5d.global", "requestAttemptTimeoutMs": 100}})
        self.assertIn("unknown key 'requestAttemptTimeoutMs'", text)
        config = parse(
            {
                "servers": [{"dstName": "/svc/a"}],
                "client": {
                    "kind": "io.l5d.static",
                    "configs": [
                        {
                            "prefix": "/$/inet/*/*",
                            "connectTimeoutMs": 250,
                            "loadBalancer": {"kind": "roundRobin"},
                            "failureAccrual": {"kind": "io.l5d.consecutiveFailures", "failures": 2},
                            "requeueBudget": {"percentCanRetry": 0.5},
                            "tls": {"commonName": "x.example", "disableValidation": False},
                        }
                    ],
                },
            }
        )
        self.assertEqual(config.routers[0].config.client.kind, "io.l5d.static")

    def test_timeoutsChecked(self) -> None:
        """
        Timeouts must be positive (idleTimeoutMs may be 0: never).
        """
        text = problems({"servers": [{"dstName": "/svc/a", "connectTimeoutMs": 0, "handshakeTimeoutMs": -1}]})
        self.assertIn("servers[0].connectTimeoutMs", text)
        self.assertIn("servers[0].handshakeTimeoutMs", text)
        parse({"servers": [{"dstName": "/svc/a", "idleTimeoutMs": 0}]})

    def test_sniDefaultDst(self) -> None:
        """
        io.l5d.tls.sni takes an optional defaultDst path.
        """
        config = parse({"identifier": {"kind": "io.l5d.tls.sni", "defaultDst": "/svc/default"}, "servers": [{"port": 0}]})
        self.assertEqual(config.routers[0].config.identifier[0].config.defaultDst, Path.read("/svc/default"))
        self.assertIn("defaultDst", problems({"identifier": {"kind": "io.l5d.tls.sni", "defaultDst": "no slash"}, "servers": [{"port": 0}]}))

    def test_redirectConfig(self) -> None:
        """
        httpsRedirect routers take servers, httpsPort and a redirect status.
        """
        config = parseLinkerConfig({"routers": [{"protocol": "httpsRedirect", "servers": [{"port": 0}]}]})
        redirect = config.routers[0].config
        self.assertEqual((redirect.httpsPort, redirect.status), (443, 308))
        try:
            parseLinkerConfig({"routers": [{"protocol": "httpsRedirect", "status": 200, "servers": [{"port": 0}]}]})
        except ConfigError as e:
            self.assertIn("expected a redirect status", e.render())
        else:
            self.fail("status 200 accepted")


class PluginTests(SynchronousTestCase):
    """
    The descriptors and what they build.
    """

    def test_verifyObject(self) -> None:
        """
        The tcp and httpsRedirect protocols and the io.l5d.tls.sni
        identifier provide their roles, and are the installed ones.
        """
        registry = defaultRegistry()
        for plugin, role in ((tcpProtocol, IProtocolPlugin), (httpsRedirectProtocol, IProtocolPlugin), (sniIdentifier, IIdentifierPlugin)):
            self.assertTrue(verifyObject(role, plugin))
            self.assertIs(registry.lookup(role, plugin.kind), plugin)
        self.assertEqual(tcpProtocol.defaultPort, 4143)
        self.assertEqual(sniIdentifier.protocols, frozenset({"tcp"}))

    def test_identifier(self) -> None:
        """
        The SNI identifier names C{<prefix>/<name>}, falls back to
        defaultDst, and otherwise says why it cannot name the connection.
        """

        class Conn:
            serverName: Any = None

        identifier = sniIdentifier.newIdentifier(sniIdentifier.configType(), Path.read("/tls"), None, "tcp")
        self.assertTrue(verifyObject(IIdentifier, identifier))
        conn = Conn()
        conn.serverName = "www.example.test"
        self.assertEqual(identifier.identify(conn).path, Path.read("/tls/www.example.test"))
        conn.serverName = None
        self.assertIn("no TLS server name", identifier.identify(conn).reason)
        withDefault = sniIdentifier.newIdentifier(sniIdentifier.configType(Path.read("/svc/d")), Path.read("/tls"), None, "tcp")
        self.assertEqual(withDefault.identify(conn).path, Path.read("/svc/d"))

    def test_routersProvideIRouter(self) -> None:
        """
        Both protocols build IRouters without opening ports.
        """
        from linkerpy.linker import Linker

        config = parseLinkerConfig(
            {
                "admin": {"port": 0},
                "routers": [
                    {"protocol": "tcp", "servers": [{"port": 0, "dstName": "/svc/a"}]},
                    {"protocol": "httpsRedirect", "servers": [{"port": 0}]},
                ],
            }
        )
        reactor = MemoryReactorClock()
        linker = Linker(config, defaultRegistry(), reactor)
        for router in linker.routers:
            self.assertTrue(verifyObject(IRouter, router))
        self.assertEqual([r.label for r in linker.routers], ["tcp", "httpsRedirect"])
        self.assertEqual(reactor.tcpServers, [])


class ExampleTests(SynchronousTestCase):
    """
    C{conf/tcp.yaml} and C{conf/edge.yaml}.
    """

    def check(self, path: str, cwd: str = REPO) -> subprocess.CompletedProcess:
        return subprocess.run(
            TWISTD + ["-n", "--pidfile=", "linkerpy", "--config", path, "--check"],
            env=childEnv(),
            cwd=cwd,
            capture_output=True,
            timeout=180,
        )

    def test_examplesCheck(self) -> None:
        """
        Both examples pass --check from the repository root.
        """
        for name in ("tcp.yaml", "edge.yaml"):
            result = self.check(os.path.join("conf", name))
            self.assertEqual(result.returncode, 0, result.stderr.decode())
            self.assertIn("ok: ", result.stdout.decode())

    def test_missingCertificateFails(self) -> None:
        """
        --check builds the routers, so a missing certificate file (server
        or client side) is reported with its key path.
        """
        with open(os.path.join(REPO, "conf", "tcp.yaml")) as f:
            config = yaml.safe_load(f)
        config["routers"][0]["client"]["configs"][1]["tls"]["trustCertsBundle"] = "/nonexistent/ca.pem"
        directory = tempfile.mkdtemp(prefix="tcp-conf-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "tcp.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(config, f)
        result = self.check(path)
        self.assertNotEqual(result.returncode, 0)
        err = result.stderr.decode()
        self.assertIn("routers[0].client.configs[1].tls.trustCertsBundle", err)
        self.assertIn("/nonexistent/ca.pem: no such file", err)
        with open(os.path.join(REPO, "conf", "edge.yaml")) as f:
            edge = yaml.safe_load(f)
        edge["routers"][0]["servers"][0]["tls"]["sni"][0]["keyPath"] = "/nonexistent/api.key"
        path = os.path.join(directory, "edge.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(edge, f)
        result = self.check(path)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("routers[0].servers[0].tls.sni[0].keyPath", result.stderr.decode())

    def test_exampleCertificatesAreMarked(self) -> None:
        """
        Every example key under conf/certs/ starts with a TEST ONLY warning.
        """
        directory = os.path.join(REPO, "conf", "certs")
        keys = [n for n in os.listdir(directory) if n.endswith(".key")]
        self.assertTrue(keys)
        for name in keys:
            with open(os.path.join(directory, name)) as f:
                self.assertTrue(f.readline().startswith("TEST ONLY"), name)
