# -*- test-case-name: tests.test_namerd_service -*-
"""
Namerd's admin resources: C{/dtab/delegator.json} (Namerd's name for the
delegator), reusing the admin server of C{twistd linkerpy}.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from twisted.internet.defer import CancelledError
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from linkerpy.namerd.errors import InvalidNamespace, checkNamespace
from linkerpy.namerd.httputil import respond
from linkerpy.naming import Dtab, Path

__all__ = ["DelegatorResource"]


class DelegatorResource(Resource):
    """
    C{GET /dtab/delegator.json?namespace=&path=&dtab=} and C{POST} with a
    JSON body C{{"namespace", "path", "dtab"}}: the delegation of C{path}
    through the namespace's stored dtab followed by C{dtab}.
    """

    isLeaf = True

    def __init__(self, namerd: Any, clock: Any, timeout: float = 2.0) -> None:
        super().__init__()
        self.namerd = namerd
        self.clock = clock
        self.timeout = timeout

    def render_GET(self, request: Any) -> Any:
        def get(name: str) -> Optional[str]:
            values = (request.args or {}).get(name.encode("ascii"))
            return values[0].decode("utf-8", "replace") if values else None

        return self._delegate(request, get("namespace"), get("path"), get("dtab"))

    def render_POST(self, request: Any) -> Any:
        contentType = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
        if contentType != b"application/json":
            respond(request, 415, "expected Content-Type: application/json")
            return NOT_DONE_YET
        try:
            body = json.loads(request.content.read().decode("utf-8"))
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
        except ValueError as e:
            respond(request, 400, f"invalid JSON body: {e}")
            return NOT_DONE_YET
        return self._delegate(request, body.get("namespace"), body.get("path"), body.get("dtab"))

    def _delegate(self, request: Any, ns: Any, pathText: Any, dtabText: Any) -> Any:
        ns = ns or "default"
        try:
            checkNamespace(ns)
        except InvalidNamespace as e:
            respond(request, 400, str(e))
            return NOT_DONE_YET
        if not isinstance(pathText, str) or not pathText:
            respond(request, 400, "Invalid path: the 'path' parameter is required")
            return NOT_DONE_YET
        try:
            path = Path.read(pathText)
        except ValueError as e:
            respond(request, 400, f"Invalid path: {e}")
            return NOT_DONE_YET
        try:
            dtab = Dtab.read(dtabText) if isinstance(dtabText, str) and dtabText else Dtab.empty
        except ValueError as e:
            respond(request, 400, f"Invalid dtab: {e}")
            return NOT_DONE_YET
        d = self.namerd.interpreter(ns).delegate(dtab, path)
        call = self.clock.callLater(self.timeout, d.cancel)

        def done(tree: Any) -> None:
            if call.active():
                call.cancel()
            respond(request, 200, tree.toJSONText(), b"application/json")

        def failed(failure: Any) -> None:
            if call.active():
                call.cancel()
            if failure.check(CancelledError):
                respond(request, 503, "Request timed out.")
            else:
                respond(request, 500, f"delegation failed: {failure.getErrorMessage()}")

        d.addCallbacks(done, failed)
        return NOT_DONE_YET
