"""
Tests for plugin discovery and the registry (L{linkerpy.plugins}).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

import attrs
from twisted.plugin import IPlugin, getPlugins
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from linkerpy import interfaces
from linkerpy.config.load import loadText
from linkerpy.config.model import parseLinkerConfig
from linkerpy.plugins.context import BuildContext
from linkerpy.plugins.registry import PLUGIN_ROLES, PluginRegistry, RegistryError
from tests.support import REPO, childEnv

#: Kinds that must be discovered from the built-in dropins, per role.
BUILTIN = {
    interfaces.IProtocolPlugin: {"http"},
    interfaces.IIdentifierPlugin: {"io.l5d.header.token", "io.l5d.methodAndHost", "io.l5d.path", "io.l5d.header", "io.l5d.static"},
    interfaces.IPolicySourcePlugin: {"io.l5d.global", "io.l5d.static"},
    interfaces.IPolicyModulePlugin: {"totalTimeout", "retries", "attemptTimeout", "requeues"},
    interfaces.ITelemeterPlugin: {"io.l5d.prometheus"},
}


class DiscoveryTests(SynchronousTestCase):
    """
    Built-in plugins are found through C{twisted.plugin.getPlugins}.
    """

    def test_builtins(self) -> None:
        """
        Every built-in kind is discovered for its role.
        """
        registry = PluginRegistry.fromPlugins()
        for role, kinds in BUILTIN.items():
            self.assertTrue(kinds <= set(registry.kinds(role)), f"{role.__name__}: {kinds - set(registry.kinds(role))}")

    def test_verifyObject(self) -> None:
        """
        Every discovered plugin provides its role's interface completely and
        has an attrs config class.
        """
        registry = PluginRegistry.fromPlugins()
        checked = 0
        for role in PLUGIN_ROLES:
            for plugin in registry.plugins(role):
                self.assertTrue(verifyObject(role, plugin))
                self.assertTrue(attrs.has(plugin.configType), f"{plugin.kind}: configType is not an attrs class")
                checked += 1
        self.assertGreater(checked, 10)

    def test_rolesInOneModule(self) -> None:
        """
        Every plugin role is an interface of L{linkerpy.interfaces}.
        """
        for role in PLUGIN_ROLES:
            self.assertIs(getattr(interfaces, role.__name__), role)
            self.assertTrue(role.extends(interfaces.IPluginKind))

    def test_duplicateKind(self) -> None:
        """
        Two plugins claiming one kind for one role is an error naming both.
        """

        @implementer(IPlugin, interfaces.ITelemeterPlugin)
        class A:
            kind = "x"
            configType = None

            def newTelemeter(self, config, context):
                pass

        @implementer(IPlugin, interfaces.ITelemeterPlugin)
        class B(A):
            pass

        with self.assertRaises(RegistryError) as ctx:
            PluginRegistry([A(), B()])
        self.assertIn("two ITelemeterPlugin plugins claim kind 'x'", str(ctx.exception))

    def test_sameKindOtherRole(self) -> None:
        """
        One kind may be used by different roles (e.g. io.l5d.static).
        """
        registry = PluginRegistry.fromPlugins()
        self.assertIsNotNone(registry.lookup(interfaces.IIdentifierPlugin, "io.l5d.static"))
        self.assertIsNotNone(registry.lookup(interfaces.IPolicySourcePlugin, "io.l5d.static"))

    def test_dropinsAreLight(self) -> None:
        """
        Scanning the dropins imports no reactor and no data plane.
        """
        code = (
            "import sys\n"
            "from twisted.plugin import getPlugins, IPlugin\n"
            "import twisted.plugins\n"
            "list(getPlugins(IPlugin, twisted.plugins))\n"
            "heavy = [m for m in ('twisted.internet.reactor', 'linkerpy.protocol.http.server',"
            " 'linkerpy.protocol.http.router', 'linkerpy.router.routing', 'linkerpy.linker') if m in sys.modules]\n"
            "print(heavy)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], env=childEnv(), capture_output=True, timeout=120, cwd=REPO)
        self.assertEqual(out.returncode, 0, out.stderr.decode())
        self.assertEqual(out.stdout.decode().strip().splitlines()[-1], "[]")


class ThirdPartyTests(SynchronousTestCase):
    """
    A third-party plugin package (docs/examples/acme-linkerpy-static) is
    discovered from a dropin path and used from YAML.
    """

    def setUp(self) -> None:
        import twisted.plugins

        self.tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.tmp, True)
        shutil.copytree(os.path.join(REPO, "docs", "examples", "acme-linkerpy-static"), os.path.join(self.tmp, "pkg"))
        root = os.path.join(self.tmp, "pkg")
        sys.path.insert(0, root)
        self.addCleanup(sys.path.remove, root)
        dropins = os.path.join(root, "twisted", "plugins")
        twisted.plugins.__path__.append(dropins)
        self.addCleanup(twisted.plugins.__path__.remove, dropins)

        def forget() -> None:
            for name in list(sys.modules):
                if name.startswith("acme_linkerpy") or name == "twisted.plugins.acme_linkerpy_static":
                    del sys.modules[name]

        self.addCleanup(forget)

    def test_discoveredAndUsed(self) -> None:
        """
        The example namer is found by getPlugins, configured from YAML and answers lookups.
        """
        import twisted.plugins

        kinds = [p.kind for p in getPlugins(interfaces.INamerPlugin, twisted.plugins)]
        self.assertIn("com.acme.static", kinds)
        registry = PluginRegistry.fromPlugins()
        plugin = registry.lookup(interfaces.INamerPlugin, "com.acme.static")
        self.assertTrue(verifyObject(interfaces.INamerPlugin, plugin))
        text = (
            "namers:\n- kind: com.acme.static\n  services:\n    users: ['127.0.0.1:8080', '127.0.0.1:8081']\n"
            "routers:\n- protocol: http\n  dtab: /svc => /#/com.acme.static\n  servers: [{port: 0}]\n"
        )
        config = parseLinkerConfig(loadText(text), registry)
        namerConfig = config.namers[0]
        namer = namerConfig.plugin.newNamer(namerConfig.config, BuildContext(reactor=None))
        from linkerpy.naming import Path

        tree = namer.lookup(Path.read("/users/extra")).sample()
        bound = tree.value
        self.assertEqual(bound.id.show, "/#/com.acme.static/users")
        self.assertEqual(bound.residual.show, "/extra")
        self.assertEqual(sorted((a.host, a.port) for a in bound.addr.sample().addresses), [("127.0.0.1", 8080), ("127.0.0.1", 8081)])

    def test_badConfig(self) -> None:
        """
        The third-party config class's checks report key paths like built-ins.
        """
        from linkerpy.config.errors import ConfigError

        registry = PluginRegistry.fromPlugins()
        text = "namers:\n- kind: com.acme.static\n  services:\n    users: ['nope']\nrouters:\n- protocol: http\n  servers: [{port: 0}]\n"
        with self.assertRaises(ConfigError) as ctx:
            parseLinkerConfig(loadText(text), registry)
        [problem] = ctx.exception.problems
        self.assertEqual(problem.path, "namers[0].services")
        self.assertIn("not host:port", problem.message)


class PackagingTests(SynchronousTestCase):
    """
    The dropins ship in the wheel and the sdist.
    """

    def test_wheelAndSdist(self) -> None:
        """
        Building the distributions includes every twisted/plugins/linkerpy_*.py dropin.
        """
        out = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, out, True)
        work = os.path.join(out, "src")
        shutil.copytree(
            REPO, work, ignore=shutil.ignore_patterns(".git", "*.egg-info", "build", "dist", "__pycache__", "bench", "_trial_temp*")
        )
        result = subprocess.run(
            [sys.executable, "-m", "build", "--no-isolation", "--wheel", "--sdist", "--outdir", out, work],
            capture_output=True,
            timeout=600,
        )
        self.assertEqual(result.returncode, 0, result.stdout.decode()[-2000:] + result.stderr.decode()[-2000:])
        dropins = sorted(f for f in os.listdir(os.path.join(REPO, "twisted", "plugins")) if f.startswith("linkerpy_") and f.endswith(".py"))
        self.assertIn("linkerpy_twistd.py", dropins)
        [wheel] = [f for f in os.listdir(out) if f.endswith(".whl")]
        names = zipfile.ZipFile(os.path.join(out, wheel)).namelist()
        for dropin in dropins:
            self.assertIn(f"twisted/plugins/{dropin}", names)
        self.assertNotIn("twisted/plugins/__init__.py", names)
        self.assertNotIn("twisted/__init__.py", names)
        # The io.l5d.mesh .proto files ship too, so a user can generate a
        # client for the mesh API from the installed package.
        protos = sorted(f for f in os.listdir(os.path.join(REPO, "linkerpy", "namerd", "mesh", "protos")) if f.endswith(".proto"))
        self.assertIn("interpreter.proto", protos)
        for proto in protos:
            self.assertIn(f"linkerpy/namerd/mesh/protos/{proto}", names)
        import tarfile

        [sdist] = [f for f in os.listdir(out) if f.endswith(".tar.gz")]
        members = tarfile.open(os.path.join(out, sdist)).getnames()
        for dropin in dropins:
            self.assertTrue(any(m.endswith(f"twisted/plugins/{dropin}") for m in members), dropin)
