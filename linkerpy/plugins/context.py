# -*- test-case-name: tests.test_plugins -*-
"""
The context handed to plugin factories.
"""

from __future__ import annotations

from typing import Any

import attrs
from zope.interface import implementer

from linkerpy.interfaces import IBuildContext
from linkerpy.telemetry.metrics import MetricsTree


@implementer(IBuildContext)
@attrs.frozen
class BuildContext:
    """
    What a factory needs to build a runtime object: injected, never global.

    @ivar reactor: the reactor (a C{MemoryReactorClock} in unit tests).
    @ivar metrics: the metrics scope for the object being built.
    @ivar registry: the plugin registry.
    @ivar configPath: the key path of the config being built.
    """

    reactor: Any
    metrics: MetricsTree = attrs.field(factory=MetricsTree)
    registry: Any = None
    configPath: str = ""

    def child(self, configPath: str, *scope: str) -> "BuildContext":
        """
        A context for a nested object: a deeper key path and metrics scope.
        """
        return attrs.evolve(self, metrics=self.metrics.scope(*scope), configPath=configPath)
