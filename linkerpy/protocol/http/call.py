# -*- test-case-name: tests.test_http_router -*-
"""
L{HttpCall}: one routed HTTP request as it travels through the service and
client stacks (the object policy modules and classifiers see).
"""

from __future__ import annotations

from typing import Any, Optional

from linkerpy.protocol.http.stream import ReplayBuffer


class HttpCall:
    """
    One request being routed.

    @ivar request: the L{RequestHead} (mutated per attempt: C{l5d-dst-*}).
    @ivar body: the original request body source.
    @ivar method: the request method (for classifiers).
    @ivar path: the logical name.
    @ivar serviceName: C{path.show}.
    @ivar localDtab: the request-local dtab.
    @ivar deadline: epoch seconds by which a response is needed, or C{None}.
    @ivar residual: the residual path of the chosen bound name.
    @ivar client: the L{linkerpy.router.routing.Client} of the current attempt.
    @ivar endpoint: the endpoint of the current attempt.
    @ivar classifier: the service's response classifier.
    @ivar responseClass: the final classification.
    @ivar attempts: attempts sent so far.
    @ivar replay: a L{ReplayBuffer} when the body may be re-sent, else C{None}.
    @ivar whenDone: on the fused path (L{linkerpy.protocol.http.fastpath}),
        called with the outcome (a response or a C{Failure}).
    @ivar service: on the fused path, the C{FusedService} routing the call.
    @ivar backoff: the retry backoff schedule, once a retry was considered.
    """

    __slots__ = (
        "request",
        "body",
        "method",
        "path",
        "serviceName",
        "serviceBytes",
        "localDtab",
        "deadline",
        "residual",
        "client",
        "endpoint",
        "classifier",
        "responseClass",
        "attempts",
        "replay",
        "exchange",
        "server",
        "retries",
        "lastResult",
        "lastClass",
        "hasL5d",
        "whenDone",
        "service",
        "serviceStart",
        "clientStart",
        "attemptStart",
        "clientCounters",
        "requeues",
        "backoff",
        "pending",
        "aborted",
        "_bodyTaken",
    )

    def __init__(self, request: Any, body: Any, exchange: Any = None, server: Any = None) -> None:
        self.request = request
        self.body = body
        self.method = request.method
        self.exchange = exchange
        self.server = server
        self.path: Any = None
        self.serviceName = ""
        self.serviceBytes = b""
        self.localDtab: Any = None
        self.deadline: Optional[float] = None
        self.residual: Any = None
        self.client: Any = None
        self.endpoint: Any = None
        self.classifier: Any = None
        self.responseClass: Any = None
        self.attempts = 0
        self.retries = 0
        self.lastResult: Any = None
        self.lastClass: Any = None
        self.hasL5d = True
        self.replay: Optional[ReplayBuffer] = None
        self.backoff: Any = None
        self.pending: Any = None
        self.aborted = False
        self._bodyTaken = False

    @property
    def hasBody(self) -> bool:
        return bool(self.request.hasBody)

    @property
    def bodyReplayable(self) -> bool:
        """
        Whether the request could be sent again in full (no body, or a body
        still held by the replay buffer).
        """
        if not self.request.hasBody:
            return True
        replay = self.replay
        return replay is not None and replay.retryable

    def keepBody(self, maxBytes: int) -> None:
        """
        Start keeping the body for retries when it is small enough: a
        Content-Length body up to C{maxBytes}.  Chunked bodies are never
        kept (a request with a chunked body is never retried, as in Linkerd).
        """
        head = self.request
        if self.replay is None and not head.chunked and head.contentLength and head.contentLength <= maxBytes:
            self.replay = ReplayBuffer(self.body, maxBytes)

    def nextBody(self) -> Any:
        """
        The body source for the next attempt.

        @raise ValueError: the body was already sent and is not kept.
        """
        if self.replay is not None:
            return self.replay.newSource()
        if self._bodyTaken and self.request.hasBody:
            raise ValueError("the request body was already sent and was not kept for a retry")
        self._bodyTaken = True
        return self.body

    def abort(self, reason: Any = None) -> None:
        """
        The client went away: give up on the attempt in flight (its upstream
        exchange is aborted), or on the retry waiting for its backoff.  The
        outcome then arrives as a cancellation, which nothing retries.
        """
        if self.aborted:
            return
        self.aborted = True
        pending, self.pending = self.pending, None
        if pending is None or pending is False:
            return
        if hasattr(pending, "active"):
            # a retry waiting for its backoff: nothing else will finish the call
            if pending.active():
                pending.cancel()
                from twisted.internet.defer import CancelledError
                from twisted.python.failure import Failure

                self.whenDone(Failure(CancelledError()), self)
            return
        pending.cancel()
