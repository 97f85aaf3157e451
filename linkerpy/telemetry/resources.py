# -*- test-case-name: tests.test_telemetry -*-
"""
Admin resources of the telemeters.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.web.resource import Resource


class PrometheusResource(Resource):
    """
    C{GET /admin/metrics/prometheus}: the text exposition format.
    """

    isLeaf = True

    def __init__(self, tree: Callable[[], Any], prefix: str = "") -> None:
        super().__init__()
        self.tree = tree
        self.prefix = prefix

    def render_GET(self, request: Any) -> bytes:
        from prometheus_client import CONTENT_TYPE_LATEST

        from linkerpy.telemetry.prometheus import render

        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        return render(self.tree(), self.prefix)
