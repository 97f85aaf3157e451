# -*- test-case-name: tests.test_http_adversarial -*-
"""
A demonstration handler that forwards every request to one fixed origin
through a connection pool, with no naming or policy.  Used by the tests and
the benchmark of the data-plane layer; the router replaces it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError
from twisted.python.failure import Failure
from zope.interface import implementer

from linkerpy.protocol.http.errors import UpstreamError
from linkerpy.protocol.http.interfaces import IHTTPHandler

__all__ = ["PassthroughHandler"]


@implementer(IHTTPHandler)
class PassthroughHandler:
    """
    Proxy each request to C{pool}'s endpoint.

    Failures before a response answer C{502} (with the error in C{l5d-err});
    a response body cut short upstream is cut short downstream.  A C{101}
    answer turns both connections into a tunnel.
    """

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def handleRequest(self, exchange: Any) -> None:
        d = self.pool.request(exchange.request, exchange.body)
        if not d.called:
            exchange.abortHandler = lambda reason: d.cancel()
        d.addCallbacks(self._gotResponse, self._failed, callbackArgs=(exchange,), errbackArgs=(exchange,))

    def _gotResponse(self, response: Any, exchange: Any) -> None:
        exchange.abortHandler = None
        if response.tunnel is not None:
            exchange.upgrade(response.head, response.tunnel)
            return
        exchange.respond(response.head).streamFrom(response.body)

    def _failed(self, failure: Failure, exchange: Any) -> None:
        exchange.abortHandler = None
        if failure.check(CancelledError):
            return
        if failure.check(UpstreamError):
            message = failure.value.describe()
        else:
            message = failure.getErrorMessage() or failure.type.__name__
        text = message.encode("latin-1", "replace")
        exchange.respondError(502, text + b"\n", [(b"l5d-err", text.replace(b"\r", b" ").replace(b"\n", b" "))])
