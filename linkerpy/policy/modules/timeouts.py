# -*- test-case-name: tests.test_policy_modules -*-
"""
Timeout modules: C{totalTimeout} (service scope, C{totalTimeoutMs}: the
whole request including retries) and C{attemptTimeout} (client scope,
C{requestAttemptTimeoutMs}: one attempt).

Both honour the request's deadline (C{exchange.deadline}, epoch seconds on
the reactor clock, from an inbound C{l5d-ctx-deadline} or an outer
timeout): the effective timeout is the tighter of the two, and the deadline
is lowered so the next hop sees the remaining time.  When the timer fires,
the inner request is cancelled (its upstream exchange is aborted) and the
request fails with L{RequestTimeout}, a 503 saying which timeout fired, how
long it was and for which service or client.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import attrs
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure
from zope.interface import implementer

from linkerpy.config import checks
from linkerpy.config.structure import setting
from linkerpy.errors import RequestTimeout
from linkerpy.interfaces import IPolicyModule


@attrs.frozen
class TotalTimeoutKeys:
    """
    Keys owned by the C{totalTimeout} module.
    """

    totalTimeoutMs: Optional[int] = setting(None, check=checks.positive, doc="bound on the whole request, retries included")


@attrs.frozen
class AttemptTimeoutKeys:
    """
    Keys owned by the C{attemptTimeout} module.
    """

    requestAttemptTimeoutMs: Optional[int] = setting(None, check=checks.positive, doc="bound on one attempt")


def _discard(result: Any) -> None:
    if not isinstance(result, Failure):
        body = getattr(result, "body", None)
        if body is not None:
            body.abort()


@implementer(IPolicyModule)
class TimeoutModule:
    """
    Bound the time until the response (head) arrives.

    @ivar kind: C{'total'} or C{'attempt'}.
    """

    def __init__(self, kind: str, milliseconds: int, reactor: Any, scopeName: str, isClient: bool) -> None:
        self.kind = kind
        self.milliseconds = milliseconds
        self.seconds = milliseconds / 1000.0
        self.reactor = reactor
        self.scopeName = scopeName
        self.isClient = isClient

    def wrap(self, call: Callable[[Any], Deferred]) -> Callable[[Any], Deferred]:
        seconds = self.seconds
        reactor = self.reactor

        def timed(exchange: Any) -> Deferred:
            now = reactor.seconds()
            limit = now + seconds
            kind = self.kind
            outer = exchange.deadline
            if outer is not None and outer < limit:
                limit = outer
                kind = "deadline"
            exchange.deadline = limit
            d = call(exchange)
            if d.called:
                exchange.deadline = outer
                return d
            state = [False]

            def fire() -> None:
                state[0] = True
                d.cancel()

            timer = reactor.callLater(max(limit - now, 0.0), fire)

            def finished(result: Any) -> Any:
                exchange.deadline = outer
                if timer.active():
                    timer.cancel()
                    if reactor.seconds() >= limit:
                        # The answer and the deadline were due in the same
                        # reactor turn and the I/O ran first: it is still late.
                        _discard(result)
                        return Failure(self.error(kind, limit - now, exchange))
                if state[0] and isinstance(result, Failure) and result.check(CancelledError):
                    return Failure(self.error(kind, limit - now, exchange))
                return result

            return d.addBoth(finished)

        return timed

    def error(self, kind: str, seconds: float, exchange: Any) -> RequestTimeout:
        ms = self.milliseconds if kind != "deadline" else round(seconds * 1000.0, 3)
        service = getattr(exchange, "serviceName", "") or ""
        client = self.scopeName if self.isClient else ""
        return RequestTimeout(kind, ms, service=service, client=client)
