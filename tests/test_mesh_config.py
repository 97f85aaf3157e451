"""
Configuration of the C{io.l5d.mesh} kinds (namerd interface, router
interpreter and policy source), the example configurations, and the
interface served over TLS on a real socket.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from linkerpy.config.errors import ConfigError
from linkerpy.config.load import loadFile
from linkerpy.config.model import parseLinkerConfig
from linkerpy.config.structure import structurePlugin, unstructure
from linkerpy.interfaces import IInterpreterPlugin, INamerdInterfacePlugin, IPolicySourcePlugin
from linkerpy.mesh import plugins
from linkerpy.mesh.config import MeshAddress
from linkerpy.namerd.config import parseNamerdConfig
from linkerpy.naming import Dtab, Ok, Path
from linkerpy.plugins.context import BuildContext
from linkerpy.plugins.registry import PluginRegistry, defaultRegistry
from linkerpy.telemetry.metrics import MetricsTree
from tests.support import REPO, waitUntil

MINIMAL = {"storage": {"kind": "io.l5d.inMemory"}}


def namerdProblems(raw: Any) -> str:
    try:
        parseNamerdConfig(raw)
    except ConfigError as e:
        return str(e)
    raise AssertionError("expected a ConfigError")


class PluginTests(SynchronousTestCase):
    """
    The descriptors.
    """

    def test_discoveredAndVerified(self) -> None:
        """
        Discovery finds the three io.l5d.mesh kinds, and each provides its interface.
        """
        registry = PluginRegistry.fromPlugins()
        for plugin, iface in [
            (plugins.meshInterface, INamerdInterfacePlugin),
            (plugins.meshInterpreter, IInterpreterPlugin),
            (plugins.meshPolicy, IPolicySourcePlugin),
        ]:
            self.assertTrue(verifyObject(iface, plugin), plugin)
            self.assertIs(registry.lookup(iface, "io.l5d.mesh"), plugin)
        self.assertEqual(plugins.meshInterface.defaultPort, 4321)
        self.assertTrue(plugins.meshPolicy.controlPlane)


class InterfaceConfigTests(SynchronousTestCase):
    """
    namerd's C{interfaces: [{kind: io.l5d.mesh}]}.
    """

    def test_defaults(self) -> None:
        """
        The interface listens on 127.0.0.1:4321 by default.
        """
        config = parseNamerdConfig(dict(MINIMAL, interfaces=[{"kind": "io.l5d.mesh"}]))
        iface = config.interfaces[0].config
        self.assertEqual((iface.ip, iface.port, iface.tls, iface.requestTimeoutMs), ("127.0.0.1", 4321, None, 10000))
        self.assertEqual((iface.maxMessageKB, iface.maxStreams), (4096, 10000))
        self.assertIn("io.l5d.mesh on 127.0.0.1:4321", config.summary())

    def test_errors(self) -> None:
        """
        Bad values name their keys; two interfaces cannot share a port.
        """
        text = namerdProblems(dict(MINIMAL, interfaces=[{"kind": "io.l5d.mesh", "port": 70000, "maxStreams": 0, "nope": 1}]))
        for key in ("interfaces[0].port", "interfaces[0].maxStreams", "interfaces[0].nope"):
            self.assertIn(key, text)
        text = namerdProblems(
            dict(MINIMAL, interfaces=[{"kind": "io.l5d.httpController", "port": 4321}, {"kind": "io.l5d.mesh"}])
        )
        self.assertIn("interfaces[1].port", text)
        text = namerdProblems(dict(MINIMAL, interfaces=[{"kind": "io.l5d.mesh", "tls": {"certPath": "x.pem"}}]))
        self.assertIn("interfaces[0].tls.keyPath", text)


class RouterConfigTests(SynchronousTestCase):
    """
    The router-side kinds.
    """

    def test_address(self) -> None:
        """
        dst accepts /$/inet/<host>/<port> and host:port, and says what is expected otherwise.
        """
        self.assertEqual(MeshAddress.__structure__("/$/inet/127.0.0.1/4321").authority, b"127.0.0.1:4321")
        self.assertEqual(MeshAddress.__structure__("[::1]:4321").authority, b"[::1]:4321")
        error = self.assertRaises(ValueError, MeshAddress.__structure__, "4321")
        self.assertIn("4321", str(error))
        self.assertIn("/$/inet/127.0.0.1/4321", str(error))

    def test_interpreter(self) -> None:
        """
        Defaults are root /default and retry 5s..600s; the root must be one valid namespace.
        """
        registry = defaultRegistry()
        config = structurePlugin(IInterpreterPlugin, {"kind": "io.l5d.mesh", "dst": "127.0.0.1:4321"}, registry).config
        self.assertEqual(config.root, Path.read("/default"))
        self.assertEqual((config.retry.baseSeconds, config.retry.maxSeconds), (5.0, 600.0))
        self.assertEqual((config.tls, config.transformers, config.initialStreamWindowSizeKB), (None, (), 1024))
        for raw, key in [
            ({"kind": "io.l5d.mesh"}, "interpreter.dst"),
            ({"kind": "io.l5d.mesh", "dst": "h:1", "root": "/a/b"}, "interpreter.root"),
            ({"kind": "io.l5d.mesh", "dst": "h:1", "root": "/.."}, "interpreter.root"),
            ({"kind": "io.l5d.mesh", "dst": "h:1", "root": "nope"}, "interpreter.root"),
            ({"kind": "io.l5d.mesh", "dst": "h:1", "tls": {}}, "interpreter.tls.commonName"),
            ({"kind": "io.l5d.mesh", "dst": "h:1", "retry": {"baseSeconds": 2, "maxSeconds": 1}}, "interpreter.retry.maxSeconds"),
        ]:
            with self.assertRaises(ConfigError) as caught:
                structurePlugin(IInterpreterPlugin, raw, registry, path="interpreter")
            self.assertIn(key, str(caught.exception))

    def test_policyCarriesProtocol(self) -> None:
        """
        The policy source's config class records the router's scope and protocol.
        """
        raw = {"kind": "io.l5d.mesh", "dst": "127.0.0.1:4321", "root": "/policies"}
        service = structurePlugin(
            IPolicySourcePlugin, raw, defaultRegistry(), path="service", pluginArgs={"scope": "service", "protocol": "h2"}
        )
        self.assertEqual((type(service.config).scope, type(service.config).protocol), ("service", "h2"))
        self.assertEqual(service.config.root, Path.read("/policies"))

    def test_routerConfig(self) -> None:
        """
        A router using io.l5d.mesh for interpreter, service and client structures and unstructures.
        """
        config = parseLinkerConfig(
            {
                "routers": [
                    {
                        "protocol": "h2",
                        "interpreter": {"kind": "io.l5d.mesh", "dst": "/$/inet/127.0.0.1/4321", "root": "/default"},
                        "service": {"kind": "io.l5d.mesh", "dst": "127.0.0.1:4321"},
                        "client": {"kind": "io.l5d.mesh", "dst": "127.0.0.1:4321", "root": "/clients"},
                        "servers": [{"port": 0}],
                    }
                ]
            }
        )
        router = config.routers[0].config
        self.assertEqual(router.client.config.root, Path.read("/clients"))
        raw = unstructure(config)["routers"][0]
        self.assertEqual((raw["interpreter"]["dst"], raw["interpreter"]["root"]), ("/$/inet/127.0.0.1/4321", "/default"))


class ExampleConfigTests(SynchronousTestCase):
    """
    C{conf/mesh.yaml} and C{conf/linkerpy-mesh.yaml} (run end to end in
    C{tests/test_mesh_e2e.py}).
    """

    def test_meshYaml(self) -> None:
        """
        conf/mesh.yaml: fs storage, the fs namer, the HTTP API on 4180 and the mesh API on 4321.
        """
        config = parseNamerdConfig(loadFile(os.path.join(REPO, "conf", "mesh.yaml")))
        self.assertEqual(config.storage.kind, "io.l5d.fs")
        self.assertEqual(
            [(i.kind, i.config.ip, i.config.port) for i in config.interfaces],
            [("io.l5d.httpController", "127.0.0.1", 4180), ("io.l5d.mesh", "127.0.0.1", 4321)],
        )
        self.assertEqual([n.kind for n in config.namers], ["io.l5d.fs"])

    def test_linkerpyMeshYaml(self) -> None:
        """
        conf/linkerpy-mesh.yaml: an HTTP router whose interpreter, service and client use the mesh API.
        """
        config = parseLinkerConfig(loadFile(os.path.join(REPO, "conf", "linkerpy-mesh.yaml")))
        router = config.routers[0].config
        for part in (router.interpreter, router.service, router.client):
            self.assertEqual(part.kind, "io.l5d.mesh")
            self.assertEqual((part.config.dst.host, part.config.dst.port, part.config.root), ("127.0.0.1", 4321, Path.read("/default")))


class TlsTests(TestCase):
    """
    The interface over TLS (ALPN h2) on a real socket, with the router-side
    interpreter verifying namerd's certificate.
    """

    timeout = 120

    @defer.inlineCallbacks
    def test_tls(self) -> Any:
        """
        An interpreter with tls binds a name through a namerd serving TLS; one with the wrong name cannot.
        """
        from linkerpy.namerd.core import Namerd
        from linkerpy.namerd.storage.memory import InMemoryStore
        from linkerpy.tls.testing import newCA, writeCA, writeLeaf

        directory = tempfile.mkdtemp(prefix="linkerpy-mesh-tls-")
        ca = newCA()
        leaf = writeLeaf(directory, "namerd", ca, "namerd.test")
        caPath = writeCA(ca, os.path.join(directory, "ca.pem"))
        namerd = Namerd(InMemoryStore({"dtabs": {"default": "/svc/a => /$/inet/127.0.0.1/9"}}), [], reactor)
        ifaceConfig = parseNamerdConfig(
            dict(MINIMAL, interfaces=[{"kind": "io.l5d.mesh", "port": 0, "tls": {"certPath": leaf.cert, "keyPath": leaf.key}}])
        ).interfaces[0]
        context = BuildContext(reactor=reactor, metrics=MetricsTree(), registry=defaultRegistry(), configPath="interfaces[0]")
        service = ifaceConfig.plugin.newInterface(ifaceConfig.config, context, namerd)
        service.startService()
        self.addCleanup(service.stopService)
        port = service.port.getHost().port

        def interpreter(commonName: str) -> Any:
            raw = {"kind": "io.l5d.mesh", "dst": f"127.0.0.1:{port}", "retry": {"baseSeconds": 0.2, "maxSeconds": 0.5},
                   "tls": {"commonName": commonName, "trustCerts": [caPath]}}
            configured = structurePlugin(IInterpreterPlugin, raw, defaultRegistry(), path="interpreter")
            ctx = BuildContext(reactor=reactor, metrics=MetricsTree(), registry=defaultRegistry(), configPath="interpreter")
            interp = configured.plugin.newInterpreter(configured.config, ctx, [])
            self.addCleanup(interp.close)
            return interp

        good = interpreter("namerd.test")
        states: list = []
        obs = good.bind(Dtab.empty, Path.read("/svc/a")).observe(states.append)
        self.addCleanup(obs.close)
        yield waitUntil(lambda: states and isinstance(states[-1], Ok), 60, "a binding over TLS")
        (bound,) = [leaf.value for leaf in states[-1].value.leaves()]
        self.assertEqual(bound.id, Path.read("/$/inet/127.0.0.1/9"))
        self.assertTrue(good.state()["tls"])

        bad = interpreter("other.test")
        badStates: list = []
        badObs = bad.bind(Dtab.empty, Path.read("/svc/a")).observe(badStates.append)
        self.addCleanup(badObs.close)
        yield waitUntil(lambda: bad.connection.streams and bad.connection.streams[0].reconnects >= 2, 60, "TLS failures")
        self.assertNotIsInstance(badStates[-1], Ok)
        self.assertIn("cannot reach namerd", bad.connection.streams[0].lastError)
