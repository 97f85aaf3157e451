# -*- test-case-name: tests.test_admin -*-
"""
Small admin resources shared by linkerpy and linkerpy-namerd.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, Optional

from twisted.web.resource import Resource
from twisted.web.server import Request


def writeJSON(request: Request, value: Any, status: int = 200, pretty: bool = False) -> bytes:
    """
    Set a JSON response and return its body.
    """
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    text = json.dumps(value, indent=2 if pretty else None, sort_keys=pretty)
    return (text + "\n").encode("utf-8")


def writeText(request: Request, text: str, status: int = 200) -> bytes:
    """
    Set a plain-text response and return its body.
    """
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return text.encode("utf-8")


def queryArg(request: Request, name: str) -> Optional[str]:
    """
    The first value of a query argument, decoded, or C{None}.
    """
    values = (request.args or {}).get(name.encode("ascii"))
    if not values:
        return None
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        return None


def truthy(value: Optional[str]) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes", "on")


class TextResource(Resource):
    """
    A fixed text answer to GET (e.g. C{/admin/ping} answering C{pong}).
    """

    isLeaf = True

    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def render_GET(self, request: Request) -> bytes:
        return writeText(request, self.text)


class JSONResource(Resource):
    """
    A JSON answer to GET, computed on each request.
    """

    isLeaf = True

    def __init__(self, compute: Callable[[], Any]):
        super().__init__()
        self.compute = compute

    def render_GET(self, request: Request) -> bytes:
        return writeJSON(request, self.compute(), pretty=truthy(queryArg(request, "pretty")))


class MetricsJSONResource(Resource):
    """
    C{/admin/metrics.json}: Linkerd's flat metrics, or nested with
    C{tree=true}, or a subtree with C{q=a/b/c}.
    """

    isLeaf = True

    def __init__(self, metrics: Callable[[], Any]):
        super().__init__()
        self.metrics = metrics

    def render_GET(self, request: Request) -> bytes:
        tree = self.metrics()
        pretty = truthy(queryArg(request, "pretty"))
        q = queryArg(request, "q")
        if q:
            sub = tree.query(q)
            if sub is None:
                return writeJSON(request, {"error": f"No such subtree: {q}"}, status=404)
            tree = sub
        if truthy(queryArg(request, "tree")):
            return writeJSON(request, tree.toTree(), pretty=pretty)
        return writeJSON(request, tree.flatten(), pretty=pretty)


class ShutdownResource(Resource):
    """
    C{POST /admin/shutdown}: graceful shutdown.  Other methods get 405.
    """

    isLeaf = True

    def __init__(self, shutdown: Callable[[], None], clock: Any):
        super().__init__()
        self.shutdown = shutdown
        self.clock = clock

    def render_POST(self, request: Request) -> bytes:
        # Answer first, then start draining once the reply is on its way.
        self.clock.callLater(0, self.shutdown)
        return writeText(request, "ok\n")


def endpointIndex(paths: Dict[str, Any]) -> str:
    """
    The text of C{/admin}: one endpoint per line.
    """
    return "".join(f"{p}\n" for p in sorted(paths))


class PolicyResource(Resource):
    """
    C{GET /admin/policy.json?path=/svc/hello[&router=<label>]}: the effective
    service policy for a name (which entries matched, the folded result and
    where it came from); C{client=/#/io.l5d.fs/hello} does the same for a
    client name.
    """

    isLeaf = True

    def __init__(self, lookup: Callable[[Optional[str]], Any]):
        super().__init__()
        self.lookup = lookup

    def render_GET(self, request: Any) -> bytes:
        from linkerpy.naming import Path

        label = queryArg(request, "router")
        router = self.lookup(label)
        if router is None:
            return writeJSON(request, {"error": f"no router {label!r}"}, status=404)
        service = queryArg(request, "path")
        client = queryArg(request, "client")
        if (service is None) == (client is None):
            return writeJSON(request, {"error": "give exactly one of path=/svc/... or client=/..."}, status=400)
        text = service if service is not None else client
        if len(text or "") > 4096:
            return writeJSON(request, {"error": "path too long"}, status=400)
        try:
            path = Path.read(text or "")
        except ValueError as e:
            return writeJSON(request, {"error": f"Invalid path: {e}"}, status=400)
        scope = "service" if service is not None else "client"
        return writeJSON(request, router.policyFor(path, scope), pretty=truthy(queryArg(request, "pretty")))
