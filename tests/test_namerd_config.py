"""
Tests for namerd's configuration and the control plane's plugins: config
classes and their errors (with key paths), the router-side config of
C{io.l5d.namerd.http}, plugin discovery and C{verifyObject}, and the
example files C{conf/namerd.yaml} and C{conf/linkerpy-namerd.yaml}.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from linkerpy.config.errors import ConfigError
from linkerpy.config.load import loadFile
from linkerpy.config.model import parseLinkerConfig
from linkerpy.config.structure import structurePlugin, unstructure
from linkerpy.interfaces import (
    IDtabStore,
    IInterpreterPlugin,
    INamerdInterfacePlugin,
    IPolicySourcePlugin,
    IStoragePlugin,
)
from linkerpy.namerd import plugins
from linkerpy.namerd.config import NamerdConfig, parseNamerdConfig
from linkerpy.namerd.plugins import NamerdAddress
from linkerpy.plugins.context import BuildContext
from linkerpy.plugins.registry import PluginRegistry, defaultRegistry
from linkerpy.telemetry.metrics import MetricsTree
from tests.support import REPO

MINIMAL = {"storage": {"kind": "io.l5d.inMemory"}, "interfaces": [{"kind": "io.l5d.httpController"}]}


def problems(raw: Any) -> str:
    try:
        parseNamerdConfig(raw)
    except ConfigError as e:
        return str(e)
    raise AssertionError("expected a ConfigError")


class PluginTests(SynchronousTestCase):
    """
    The control plane's plugin descriptors.
    """

    def test_discovered(self) -> None:
        """
        Discovery finds every storage, interface, interpreter and policy source kind of the control plane.
        """
        registry = PluginRegistry.fromPlugins()
        self.assertEqual(
            [k for k in registry.kinds(IStoragePlugin) if k in ("io.l5d.inMemory", "io.l5d.fs", "io.l5d.etcd")],
            ["io.l5d.etcd", "io.l5d.fs", "io.l5d.inMemory"],
        )
        self.assertIn("io.l5d.httpController", registry.kinds(INamerdInterfacePlugin))
        self.assertIn("io.l5d.namerd.http", registry.kinds(IInterpreterPlugin))
        self.assertIn("io.l5d.namerd.http", registry.kinds(IPolicySourcePlugin))

    def test_verifyObject(self) -> None:
        """
        Every descriptor provides its interface.
        """
        for plugin, iface in [
            (plugins.inMemoryStorage, IStoragePlugin),
            (plugins.fsStorage, IStoragePlugin),
            (plugins.etcdStorage, IStoragePlugin),
            (plugins.httpController, INamerdInterfacePlugin),
            (plugins.namerdHttpInterpreter, IInterpreterPlugin),
            (plugins.namerdHttpPolicy, IPolicySourcePlugin),
        ]:
            self.assertTrue(verifyObject(iface, plugin), plugin)

    def test_storesProvideInterface(self) -> None:
        """
        Each storage kind builds an IDtabStore.
        """
        context = BuildContext(reactor=MemoryReactorClock(), metrics=MetricsTree(), registry=defaultRegistry())
        for raw in (
            {"kind": "io.l5d.inMemory", "namespaces": {"default": "/svc => /a"}},
            {"kind": "io.l5d.fs", "rootDir": tempfile.mkdtemp(prefix="linkerpy-fs-")},
            {"kind": "io.l5d.etcd", "port": 1},
        ):
            configured = structurePlugin(IStoragePlugin, raw, defaultRegistry(), path="storage")
            store = configured.plugin.newStorage(configured.config, context)
            self.assertTrue(verifyObject(IDtabStore, store))
            self.assertIsInstance(store.describe(), str)


class NamerdConfigTests(SynchronousTestCase):
    """
    L{NamerdConfig} structuring.
    """

    def test_defaults(self) -> None:
        """
        A minimal config gets the httpController on 127.0.0.1:4180, admin on 9990 and no namers.
        """
        config = parseNamerdConfig(MINIMAL)
        self.assertIsInstance(config, NamerdConfig)
        iface = config.interfaces[0].config
        self.assertEqual((iface.ip, iface.port, iface.auth, iface.maxRequestBodyKB), ("127.0.0.1", 4180, None, 256))
        self.assertEqual((iface.maxWatches, iface.requestTimeoutMs), (10000, 10000))
        self.assertEqual(config.admin.port, 9990)
        self.assertEqual(config.namers, ())
        self.assertIn("io.l5d.httpController on 127.0.0.1:4180", config.summary())
        self.assertEqual(unstructure(config)["storage"], {"kind": "io.l5d.inMemory", "namespaces": {}})

    def test_storageDefaults(self) -> None:
        """
        Storage kinds have Namerd's defaults (etcd localhost:2379 /namerd/dtabs; fs polls every second).
        """
        etcd = parseNamerdConfig(dict(MINIMAL, storage={"kind": "io.l5d.etcd"})).storage.config
        self.assertEqual(
            (etcd.host, etcd.port, etcd.pathPrefix, etcd.policyPrefix, etcd.timeoutMs, etcd.retryBaseMs, etcd.retryMaxMs),
            ("localhost", 2379, "/namerd/dtabs", "/namerd/policy", 10000, 500, 30000),
        )
        fs = parseNamerdConfig(dict(MINIMAL, storage={"kind": "io.l5d.fs", "rootDir": "d"})).storage.config
        self.assertEqual((fs.rootDir, fs.pollIntervalMs), ("d", 1000))
        memory = parseNamerdConfig(
            dict(MINIMAL, storage={"kind": "io.l5d.inMemory", "namespaces": {"default": "/svc => /#/io.l5d.fs"}})
        ).storage.config
        self.assertEqual(memory.namespaces["default"].show, "/svc=>/#/io.l5d.fs")

    def test_errors(self) -> None:
        """
        Problems are reported with their key paths.
        """
        self.assertIn("storage: missing required key 'storage'", problems({"interfaces": MINIMAL["interfaces"]}))
        self.assertIn("interfaces", problems(dict(MINIMAL, interfaces=[])))
        self.assertIn("storage.kind", problems(dict(MINIMAL, storage={"kind": "io.l5d.zk"})))
        self.assertIn("storage.rootDir", problems(dict(MINIMAL, storage={"kind": "io.l5d.fs"})))
        self.assertIn(
            "storage.namespaces",
            problems(dict(MINIMAL, storage={"kind": "io.l5d.inMemory", "namespaces": {"../x": "/a=>/b"}})),
        )
        self.assertIn(
            "storage.namespaces.default",
            problems(dict(MINIMAL, storage={"kind": "io.l5d.inMemory", "namespaces": {"default": "/a=>"}})),
        )
        self.assertIn("storage.pathPrefix", problems(dict(MINIMAL, storage={"kind": "io.l5d.etcd", "pathPrefix": "x"})))
        self.assertIn(
            "storage.policyPrefix",
            problems(dict(MINIMAL, storage={"kind": "io.l5d.etcd", "pathPrefix": "/a", "policyPrefix": "/a/"})),
        )
        self.assertIn(
            "storage.retryMaxMs",
            problems(dict(MINIMAL, storage={"kind": "io.l5d.etcd", "retryBaseMs": 10, "retryMaxMs": 5})),
        )
        self.assertIn("interfaces[0].port", problems(dict(MINIMAL, interfaces=[{"kind": "io.l5d.httpController", "port": 70000}])))
        conflict = problems(dict(MINIMAL, admin={"port": 4180}))
        self.assertIn("interfaces[0].port", conflict)
        self.assertIn("conflicts with admin.port", conflict)
        self.assertIn(
            "interfaces[0].auth",
            problems(dict(MINIMAL, interfaces=[{"kind": "io.l5d.httpController", "auth": {"token": "short"}}])),
        )
        self.assertIn("top level", problems([1]))


class RouterConfigTests(SynchronousTestCase):
    """
    The router-side configs of C{io.l5d.namerd.http}.
    """

    def test_addresses(self) -> None:
        """
        dst accepts /$/inet/<host>/<port>, host:port, [v6]:port and http://host:port.
        """
        for text, expected in [
            ("/$/inet/127.0.0.1/4180", ("127.0.0.1", 4180)),
            ("namerd.local:4180", ("namerd.local", 4180)),
            ("[::1]:4180", ("::1", 4180)),
            ("http://127.0.0.1:4181/", ("127.0.0.1", 4181)),
        ]:
            address = NamerdAddress.__structure__(text)
            self.assertEqual((address.host, address.port), expected)
        self.assertEqual(NamerdAddress("::1", 1).url, "http://[::1]:1")
        self.assertEqual(NamerdAddress("h", 1).__unstructure__(), "/$/inet/h/1")
        for bad in ("4180", "/$/inet/127.0.0.1", "host:0", "host:99999", "/#/io.l5d.fs/namerd", 4180):
            self.assertRaises(ValueError, NamerdAddress.__structure__, bad)

    def test_interpreterConfig(self) -> None:
        """
        Defaults are namespace 'default' and retry 5s..600s; problems name their keys.
        """
        registry = defaultRegistry()
        config = structurePlugin(IInterpreterPlugin, {"kind": "io.l5d.namerd.http", "dst": "127.0.0.1:4180"}, registry).config
        self.assertEqual((config.namespace, config.retry.baseSeconds, config.retry.maxSeconds), ("default", 5.0, 600.0))
        self.assertEqual(config.transformers, ())
        for raw, key in [
            ({"kind": "io.l5d.namerd.http"}, "interpreter.dst"),
            ({"kind": "io.l5d.namerd.http", "dst": "nope"}, "interpreter.dst"),
            ({"kind": "io.l5d.namerd.http", "dst": "h:1", "namespace": "a/b"}, "interpreter.namespace"),
            ({"kind": "io.l5d.namerd.http", "dst": "h:1", "retry": {"baseSeconds": 5, "maxSeconds": 1}}, "interpreter.retry.maxSeconds"),
            ({"kind": "io.l5d.namerd.http", "dst": "h:1", "transformers": [{"kind": "nope"}]}, "interpreter.transformers[0].kind"),
        ]:
            with self.assertRaises(ConfigError) as caught:
                structurePlugin(IInterpreterPlugin, raw, registry, path="interpreter")
            self.assertIn(key, str(caught.exception))

    def test_policyConfigCarriesProtocol(self) -> None:
        """
        The policy source's config class records the router's scope and protocol.
        """
        registry = defaultRegistry()
        raw = {"kind": "io.l5d.namerd.http", "dst": "127.0.0.1:4180", "namespace": "ns"}
        service = structurePlugin(IPolicySourcePlugin, raw, registry, path="service", pluginArgs={"scope": "service", "protocol": "h2"})
        self.assertEqual((type(service.config).scope, type(service.config).protocol), ("service", "h2"))
        self.assertEqual(service.config.namespace, "ns")
        self.assertTrue(plugins.namerdHttpPolicy.controlPlane)

    def test_routerConfig(self) -> None:
        """
        A router config using io.l5d.namerd.http for interpreter, service and client structures.
        """
        config = parseLinkerConfig(
            {
                "routers": [
                    {
                        "protocol": "http",
                        "interpreter": {"kind": "io.l5d.namerd.http", "dst": "/$/inet/127.0.0.1/4180"},
                        "service": {"kind": "io.l5d.namerd.http", "dst": "127.0.0.1:4180"},
                        "client": {"kind": "io.l5d.namerd.http", "dst": "127.0.0.1:4180", "namespace": "clients"},
                        "servers": [{"port": 0}],
                    }
                ]
            }
        )
        router = config.routers[0].config
        self.assertEqual(router.interpreter.kind, "io.l5d.namerd.http")
        self.assertEqual(router.client.config.namespace, "clients")
        self.assertEqual(unstructure(config)["routers"][0]["interpreter"]["dst"], "/$/inet/127.0.0.1/4180")


class ExampleConfigTests(SynchronousTestCase):
    """
    C{conf/namerd.yaml} and C{conf/linkerpy-namerd.yaml} (also run end to end
    in C{tests/test_namerd_e2e.py}).
    """

    def test_namerdYaml(self) -> None:
        """
        conf/namerd.yaml: fs storage under a relative directory, the fs namer, httpController on 4180, admin on 9991.
        """
        config = parseNamerdConfig(loadFile(os.path.join(REPO, "conf", "namerd.yaml")))
        self.assertEqual(config.storage.kind, "io.l5d.fs")
        self.assertEqual((config.storage.config.rootDir, config.storage.config.pollIntervalMs), ("namerd-data", 1000))
        self.assertFalse(os.path.isabs(config.storage.config.rootDir))
        iface = config.interfaces[0]
        self.assertEqual((iface.kind, iface.config.ip, iface.config.port), ("io.l5d.httpController", "127.0.0.1", 4180))
        self.assertEqual((config.admin.ip, config.admin.port), ("127.0.0.1", 9991))
        (namer,) = config.namers
        self.assertEqual((namer.kind, namer.config.rootDir), ("io.l5d.fs", "conf/disco"))

    def test_linkerpyNamerdYaml(self) -> None:
        """
        conf/linkerpy-namerd.yaml: one HTTP router whose interpreter, service and client all use namerd.
        """
        config = parseLinkerConfig(loadFile(os.path.join(REPO, "conf", "linkerpy-namerd.yaml")))
        router = config.routers[0].config
        self.assertEqual((router.label, router.servers[0].ip, router.servers[0].port), ("http", "127.0.0.1", 4140))
        for part in (router.interpreter, router.service, router.client):
            self.assertEqual(part.kind, "io.l5d.namerd.http")
            self.assertEqual((part.config.dst.host, part.config.dst.port, part.config.namespace), ("127.0.0.1", 4180, "default"))
        self.assertEqual((router.interpreter.config.retry.baseSeconds, router.interpreter.config.retry.maxSeconds), (1.0, 10.0))
        self.assertEqual((config.admin.ip, config.admin.port), ("127.0.0.1", 9990))
