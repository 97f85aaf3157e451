# -*- test-case-name: tests.test_admin -*-
"""
The admin HTTP server (C{admin.ip}:C{admin.port}, default 127.0.0.1:9990).

Routing is by exact path, plus prefixes for families such as
C{/namer_state/}.  Every request passes the security filter (categories,
white/blacklists), the body-size limit and, for mutating endpoints, the
bearer-token check before reaching its resource.
"""

from __future__ import annotations

import hmac
import re
from typing import Any, Dict, List, Optional, Pattern, Tuple

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from linkerpy.admin.resources import writeJSON, writeText
from linkerpy.config.model import AdminConfig

log = Logger()

#: Endpoint categories, as in Linkerd's admin security filter.
UI, CONTROL, DIAGNOSTICS = "ui", "control", "diagnostics"

_UI_PATHS = re.compile(
    r"^(/|/files/.*|/admin/files/.*|/config\.json|/metrics\.json|/admin/metrics\.json|/admin/metrics|"
    r"/admin/metrics/.*|/delegator|/delegator\.json|/dtab/delegator\.json|/logging|/help|/admin|/admin/index\.txt|"
    r"/admin/ping|/bound-names\.json|/admin/policy\.json)$"
)
_CONTROL_PATHS = re.compile(r"^(/admin/shutdown|/logging\.json)$")


def categoryOf(path: str) -> str:
    if _CONTROL_PATHS.match(path):
        return CONTROL
    if _UI_PATHS.match(path):
        return UI
    return DIAGNOSTICS


class AdminRoot(Resource):
    """
    Dispatches admin requests to registered resources.

    @ivar exact: path to resource.
    @ivar prefixes: C{(prefix, resource)}; the resource sees the rest of the
        path in C{request.postpath}.
    @ivar mutating: paths whose non-GET methods need the bearer token.
    """

    isLeaf = True

    def __init__(self, config: AdminConfig, token: Optional[str] = None):
        super().__init__()
        self.config = config
        self.token = token
        self.exact: Dict[str, Resource] = {}
        self.prefixes: List[Tuple[str, Resource]] = []
        self.whitelist: List[Pattern[str]] = [re.compile(p) for p in config.security.pathWhitelist]
        self.blacklist: List[Pattern[str]] = [re.compile(p) for p in config.security.pathBlacklist]

    def mount(self, path: str, resource: Resource) -> None:
        """
        Serve C{resource} at C{path}; a path ending in C{/} is a prefix.
        """
        if path.endswith("/") and path != "/":
            self.prefixes.append((path, resource))
            self.prefixes.sort(key=lambda item: -len(item[0]))
        else:
            self.exact[path] = resource

    def paths(self) -> List[str]:
        return sorted(list(self.exact) + [p + "..." for p, _ in self.prefixes])

    def allowed(self, path: str) -> bool:
        if any(p.match(path) for p in self.blacklist):
            return False
        if any(p.match(path) for p in self.whitelist):
            return True
        category = categoryOf(path)
        security = self.config.security
        return {
            UI: security.uiEnabled,
            CONTROL: security.controlEnabled,
            DIAGNOSTICS: security.diagnosticsEnabled,
        }[category]

    def render(self, request: Request) -> Any:
        try:
            path = request.path.decode("utf-8")
        except UnicodeDecodeError:
            return writeText(request, "bad path\n", 400)
        if len(path) > 2048:
            return writeText(request, "path too long\n", 414)
        if not self.allowed(path):
            return writeText(request, "not found\n", 404)
        resource, postpath = self._resolve(path)
        if resource is None:
            return writeText(request, "not found\n", 404)
        method = request.method.decode("ascii", "replace")
        if method not in ("GET", "HEAD") and self.token is not None:
            header = request.getHeader(b"authorization") or b""
            expected = b"Bearer " + self.token.encode("utf-8")
            if not hmac.compare_digest(header, expected):
                request.setHeader(b"www-authenticate", b'Bearer realm="linkerpy-admin"')
                return writeText(request, "a valid bearer token is required\n", 401)
        request.postpath = postpath
        request.prepath = []
        # Only methods the resource itself defines count (Resource.render_HEAD
        # is inherited and would call a missing render_GET).
        handler = getattr(resource, "render_" + method, None) if method != "HEAD" else None
        if method == "HEAD":
            handler = getattr(resource, "render_GET", None)
        if handler is None:
            allowed = sorted(m[len("render_"):] for m in dir(resource) if m.startswith("render_") and m != "render_HEAD")
            request.setHeader(b"allow", ", ".join(allowed).encode("ascii"))
            return writeText(request, f"method {method} not allowed; use {', '.join(allowed)}\n", 405)
        try:
            return handler(request)
        except Exception:
            log.failure("admin handler for {path} failed", path=path)
            return writeText(request, "internal error\n", 500)

    def _resolve(self, path: str) -> Tuple[Optional[Resource], List[bytes]]:
        resource = self.exact.get(path)
        if resource is not None:
            return resource, []
        for prefix, candidate in self.prefixes:
            if path.startswith(prefix):
                rest = path[len(prefix):]
                return candidate, [part.encode("utf-8") for part in rest.split("/")]
        return None, []


class LimitedRequest(Request):
    """
    A request whose body may not exceed C{site.maxBodyBytes}: larger bodies
    get 413 before they are read.
    """

    _bodyBytes = 0

    def gotLength(self, length: Optional[int]) -> None:
        limit = self.channel.site.maxBodyBytes  # type: ignore[union-attr]
        if length is not None and length > limit:
            self._refuse(limit)
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        limit = self.channel.site.maxBodyBytes  # type: ignore[union-attr]
        self._bodyBytes += len(data)
        if self._bodyBytes > limit:
            if not self.finished and not self.startedWriting:
                self._refuse(limit)
            return
        super().handleContentChunk(data)

    def _refuse(self, limit: int) -> None:
        self.channel.transport.write(  # type: ignore[union-attr]
            b"HTTP/1.1 413 Payload Too Large\r\ncontent-type: text/plain\r\nconnection: close\r\n"
            b"content-length: %d\r\n\r\nbody larger than %d bytes\n" % (len(b"body larger than %d bytes\n" % limit), limit)
        )
        self.channel.transport.loseConnection()  # type: ignore[union-attr]


class AdminSite(Site):
    """
    The admin C{Site}: no access log noise, bounded bodies.
    """

    requestFactory = LimitedRequest
    displayTracebacks = False

    def __init__(self, root: AdminRoot, maxBodyBytes: int, reactor: Any = None):
        super().__init__(root, reactor=reactor) if reactor is not None else super().__init__(root)
        self.maxBodyBytes = maxBodyBytes
        self.timeOut = 60

    def log(self, request: Request) -> None:
        pass


__all__ = ["AdminRoot", "AdminSite", "NOT_DONE_YET", "writeJSON", "writeText", "categoryOf"]
