# -*- test-case-name: tests.test_telemetry -*-
"""
Built-in telemeter plugins.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import attrs
from twisted.plugin import IPlugin
from zope.interface import implementer

from linkerpy.config.structure import setting
from linkerpy.interfaces import ITelemeter, ITelemeterPlugin


@attrs.frozen
class PrometheusConfig:
    path: str = setting("/admin/metrics/prometheus", check=lambda v: None if v.startswith("/") else "must start with /", doc="admin path")
    prefix: str = setting("", doc="prepended to every metric name")


@implementer(ITelemeter)
class PrometheusTelemeter:
    """
    Serves the metrics tree in Prometheus text format on the admin server.
    """

    def __init__(self, config: PrometheusConfig, root: Any) -> None:
        self.config = config
        self.root = root

    def adminResources(self) -> Dict[str, Any]:
        from linkerpy.telemetry.resources import PrometheusResource

        return {self.config.path: PrometheusResource(lambda: self.root, self.config.prefix)}

    def service(self) -> Optional[Any]:
        return None


@implementer(IPlugin, ITelemeterPlugin)
class PrometheusTelemeterPlugin:
    kind = "io.l5d.prometheus"
    configType = PrometheusConfig

    def newTelemeter(self, config: PrometheusConfig, context: Any) -> Any:
        return PrometheusTelemeter(config, context.metrics)


prometheus = PrometheusTelemeterPlugin()
