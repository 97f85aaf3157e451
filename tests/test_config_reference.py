"""
The committed configuration reference matches the code.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from linkerpy.config.reference import generate
from tests.support import REPO


class ReferenceTests(SynchronousTestCase):
    """
    docs/configuration.md is generated; it must be regenerated when keys change.
    """

    def test_current(self) -> None:
        """
        docs/configuration.md equals `python -m linkerpy.config.reference` output.
        """
        with open(os.path.join(REPO, "docs", "configuration.md"), encoding="utf-8") as f:
            committed = f.read()
        self.assertEqual(
            committed,
            generate(),
            "docs/configuration.md is stale: run `python -m linkerpy.config.reference > docs/configuration.md`",
        )

    def test_everyBuiltinKindListed(self) -> None:
        """
        Every discovered kind appears in the reference.
        """
        from linkerpy.plugins.registry import PLUGIN_ROLES, PluginRegistry

        text = generate()
        registry = PluginRegistry.fromPlugins()
        for role in PLUGIN_ROLES:
            for plugin in registry.plugins(role):
                self.assertIn(f"`{plugin.kind}`", text, f"{role.__name__} {plugin.kind}")
