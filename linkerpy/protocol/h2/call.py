# -*- test-case-name: tests.test_h2_router -*-
"""
L{H2Call}: one routed HTTP/2 request as it travels through the service and
client stacks (the object policy modules and classifiers see).
"""

from __future__ import annotations

from typing import Any, Optional

from linkerpy.protocol.http.stream import ReplayBuffer


class H2Call:
    """
    One request being routed.

    @ivar request: the L{H2Request<linkerpy.protocol.h2.server.H2Request>}
        (its headers are what each attempt sends, plus C{l5d-dst-*}).
    @ivar body: the request body source.
    @ivar method: C{:method} (for classifiers).
    @ivar path: the logical name.
    @ivar serviceName: C{path.show}.
    @ivar localDtab: the request-local dtab.
    @ivar deadline: epoch seconds by which a response is needed, or C{None}.
    @ivar residual: the residual path of the chosen bound name.
    @ivar client: the client of the current attempt.
    @ivar endpoint: the endpoint of the current attempt.
    @ivar classifier: the service's response classifier.
    @ivar responseClass: the final classification (set when the response
        stream ends).
    @ivar attempts: attempts sent so far.
    @ivar retries: retries made (set by the retries module).
    @ivar replay: the L{ReplayBuffer} keeping the request data for retries.
    @ivar holdMs: how long an attempt's response is held for its stream to
        end (C{classificationTimeoutMs}).
    @ivar holdBytes: how much response data may be held meanwhile.
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
        "retries",
        "replay",
        "exchange",
        "holdMs",
        "holdBytes",
        "_bodyTaken",
    )

    def __init__(self, exchange: Any) -> None:
        request = exchange.request
        self.exchange = exchange
        self.request = request
        self.body = exchange.body
        self.method = request.method
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
        self.replay: Optional[ReplayBuffer] = None
        self.holdMs = 100
        self.holdBytes = 16383
        self._bodyTaken = False

    @property
    def hasBody(self) -> bool:
        return bool(self.request.hasBody)

    @property
    def bodyReplayable(self) -> bool:
        """
        Whether the request could be sent again in full: it has no data, or
        all of it is still held by the replay buffer.
        """
        if not self.request.hasBody:
            return True
        replay = self.replay
        return replay is not None and replay.retryable

    def keepBody(self, maxBytes: int) -> None:
        """
        Keep up to C{maxBytes} of the request data for retries (a request
        whose data outgrows it is no longer retried).
        """
        if self.replay is None and self.request.hasBody and maxBytes > 0:
            self.replay = ReplayBuffer(self.body, maxBytes)

    def nextBody(self) -> Any:
        """
        The body source for the next attempt, or C{None} for no data.

        @raise ValueError: the data was already sent and was not kept.
        """
        if not self.request.hasBody:
            return None
        if self.replay is not None:
            return self.replay.newSource()
        if self._bodyTaken:
            raise ValueError("the request data was already sent and was not kept for a retry")
        self._bodyTaken = True
        return self.body
