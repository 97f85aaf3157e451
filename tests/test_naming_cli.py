"""
Tests for the C{linkerpy} command line (dtab delegate, dtab check).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from typing import List, Tuple

from twisted.trial.unittest import SynchronousTestCase

from linkerpy import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args: str) -> Tuple[int, str, str]:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "linkerpy.cli", *args], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env
    )
    return proc.returncode, proc.stdout, proc.stderr


class CheckTests(SynchronousTestCase):
    def _main(self, argv: List[str]) -> Tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        return cli.main(argv), out.getvalue(), err.getvalue()

    def test_checkValid(self) -> None:
        """A valid dtab file exits 0 and reports its size."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("# routes\n/svc => /#/io.l5d.fs;\n/svc/a => /$/inet/127.0.0.1/1;\n")
        code, out, _ = self._main(["dtab", "check", path])
        self.assertEqual((code, out), (0, f"{path}: ok (2 dentries)\n"))

    def test_checkInvalid(self) -> None:
        """An invalid dtab file exits 1 with the line and the parse error."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("/a => /b;\n/c -> /d\n")
        code, _, err = self._main(["dtab", "check", path])
        self.assertEqual(code, 1)
        self.assertTrue(err.startswith(f"{path}:2: '=' expected but '-' found"), err)
        code, _, err = self._main(["dtab", "check", path + ".missing"])
        self.assertEqual(code, 1)

    def test_parserIsExtensible(self) -> None:
        """Other parts can register subcommands."""
        seen: List[str] = []
        cli.registerCommand("hello", "say hi", lambda p: p.add_argument("name"), lambda a: seen.append(a.name) or 7)
        self.addCleanup(cli._COMMANDS.pop, "hello")
        self.assertEqual(cli.main(["hello", "world"]), 7)
        self.assertEqual(seen, ["world"])


class DelegateTests(SynchronousTestCase):
    def test_delegateWithNamers(self) -> None:
        """dtab delegate prints a readable tree resolving configured fs namers and /$/inet."""
        root = self.mktemp()
        os.makedirs(root)
        with open(os.path.join(root, "hello"), "w") as f:
            f.write("127.0.0.1 8080\n127.0.0.1 8081 * 2\n")
        namers = os.path.join(root, "..", "namers.yaml")
        with open(namers, "w") as f:
            f.write(f"namers:\n- kind: io.l5d.fs\n  rootDir: {root}\n")
        code, out, err = _run("dtab", "delegate", "--dtab", "/svc=>/#/io.l5d.fs", "--namers-config", namers,
                              "/svc/hello")
        self.assertEqual(code, 0, err)
        self.assertEqual(
            out,
            "/svc/hello\n  /#/io.l5d.fs/hello  (via /svc=>/#/io.l5d.fs)  => bound /#/io.l5d.fs/hello: "
            "127.0.0.1:8080, 127.0.0.1:8081*2.0\n",
        )

    def test_delegateJSONFromConfig(self) -> None:
        """With --config the router's dtab and the namers come from linkerpy.yaml; --json prints the document."""
        config = self.mktemp()
        with open(config, "w") as f:
            f.write("routers:\n- protocol: http\n  dtab: /svc => /$/inet/127.0.0.1/9\n  servers: []\nnamers: []\n")
        code, out, err = _run("dtab", "delegate", "--config", config, "--json", "/svc/x")
        self.assertEqual(code, 0, err)
        doc = json.loads(out)
        self.assertEqual(doc["delegate"]["bound"]["id"], "/$/inet/127.0.0.1/9")

    def test_badInput(self) -> None:
        """A bad dtab or path exits 1 with the parser's message."""
        code, _, err = _run("dtab", "delegate", "--dtab", "/a=>", "/a")
        self.assertEqual(code, 1)
        self.assertIn("Invalid dtab: simple expected", err)
        code, _, err = _run("dtab", "delegate", "nopath")
        self.assertEqual(code, 1)
        self.assertIn("Invalid path", err)
