# -*- test-case-name: tests.test_namerd_client -*-
"""
The router side's connection to namerd: one L{NamerdConnection} per
(router, namerd address, namespace), shared by the interpreter and the
policy sources, and one L{WatchClient} per streamed question.

A watch client issues C{GET <url>&watch=true}, hands each line of the
chunked answer to its owner, and when the stream ends or cannot be opened,
reconnects after a jittered, growing delay (C{retry.baseSeconds} to
C{retry.maxSeconds}; reset once a stream opens).  Owners keep their last
good value while disconnected, so routing goes on with the last dtab,
bindings, addresses and policy.

Metrics (under the router's scope): C{namerd/<ns>/connected} (1 when every
open stream is connected), C{streams}, C{reconnects}, C{updates},
C{errors}.
"""

from __future__ import annotations

import json
import random
import weakref
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import quote, urlencode

from twisted.logger import Logger

from linkerpy.namerd.client.reconnect import ReconnectingStream
from linkerpy.namerd.streaming import BodyStream, LineDecoder, newHTTPClient

__all__ = ["NamerdConnection", "WatchClient", "connectionFor"]

log = Logger()

#: Lines longer than this end the stream (a document is small).
MAX_LINE_BYTES = 8 * 1024 * 1024

_connections: "weakref.WeakKeyDictionary[Any, Dict[Tuple[str, int, str], NamerdConnection]]" = (
    weakref.WeakKeyDictionary()
)


def connectionFor(context: Any, config: Any) -> "NamerdConnection":
    """
    The connection of a router (identified by its metrics scope) to a
    namerd address and namespace, created on first use.
    """
    table = _connections.setdefault(context.metrics, {})
    key = (config.dst.host, config.dst.port, config.namespace)
    conn = table.get(key)
    if conn is None:
        conn = table[key] = NamerdConnection(context.reactor, config, context.metrics)
    return conn


class NamerdConnection:
    """
    What the streams to one namerd namespace share: the HTTP client, the
    backoff settings, the metrics and the list of open streams.
    """

    def __init__(self, reactor: Any, config: Any, metrics: Any, rng: Optional[random.Random] = None) -> None:
        self.reactor = reactor
        self.dst = config.dst
        self.namespace = config.namespace
        self.retry = config.retry
        self.random = rng or random.Random()
        self.http = newHTTPClient(reactor, persistent=False)
        self.metrics = metrics.scope("namerd", config.namespace)
        self.streams: List[WatchClient] = []
        self.reconnects = self.metrics.counter("reconnects")
        self.updates = self.metrics.counter("updates")
        self.errors = self.metrics.counter("errors")
        self.metrics.gauge("streams", fn=lambda: len(self.streams))
        self.metrics.gauge("connected", fn=lambda: float(self.connected))

    @property
    def connected(self) -> bool:
        return bool(self.streams) and all(s.state == "connected" for s in self.streams)

    def url(self, what: str, **query: str) -> str:
        base = f"{self.dst.url}/api/1/{what}/{quote(self.namespace, safe='')}"
        return base + ("?" + urlencode(query) if query else "")

    def newBackoff(self) -> Any:
        from linkerpy.policy.backoff import decorrelatedJittered

        return decorrelatedJittered(self.retry.baseSeconds, self.retry.maxSeconds, self.random)

    def state(self) -> Dict[str, Any]:
        """
        The admin page: this connection and its streams.
        """
        return {
            "dst": self.dst.__unstructure__(),
            "url": self.dst.url,
            "namespace": self.namespace,
            "connected": self.connected,
            "streams": [s.state_() for s in self.streams],
        }


class WatchClient(ReconnectingStream):
    """
    One streamed question (C{bind}, C{addr} or C{policy}), reconnecting
    until stopped.

    @param onDocument: called with each decoded JSON document.
    @param onError: called with a message when namerd answers an error
        (a non-200 status, or the error line ending a stream).
    """

    def __init__(
        self,
        connection: NamerdConnection,
        kind: str,
        url: str,
        onDocument: Callable[[Any], None],
        onError: Optional[Callable[[str], None]] = None,
        description: str = "",
    ) -> None:
        super().__init__(connection, kind, description)
        self.url = url
        self.onDocument = onDocument
        self.onError = onError
        self.lastDocument: Any = None
        self._stream: Optional[BodyStream] = None
        self._request: Any = None

    def _drop(self) -> None:
        if self._request is not None:
            request, self._request = self._request, None
            request.cancel()
        if self._stream is not None:
            stream, self._stream = self._stream, None
            stream.abort()

    # -- the loop ----------------------------------------------------------------------

    def _open(self) -> None:
        d = self._request = self.connection.http.get(
            self.url, unbuffered=True, reactor=self.reactor, timeout=30.0,
            headers={b"accept": [b"application/json"]},
        )
        d.addCallbacks(self._gotResponse, self._failed)

    def _gotResponse(self, response: Any) -> None:
        self._request = None
        if self._stopped:
            discard = BodyStream(LineDecoder(lambda line: None))
            response.deliverBody(discard)
            discard.abort()
            return
        if response.code != 200:
            collected: List[bytes] = []
            stream = BodyStream(LineDecoder(collected.append, MAX_LINE_BYTES))
            response.deliverBody(stream)

            def refused(_: Any) -> None:
                text = b" ".join(collected + [stream.decoder.leftover()]).decode("utf-8", "replace").strip()
                self._serverError(f"namerd answered {response.code}: {text}")
                self._retry()

            stream.done.addBoth(refused)
            return
        self._opened()
        stream = self._stream = BodyStream(LineDecoder(self._onLine, MAX_LINE_BYTES))
        response.deliverBody(stream)
        stream.done.addCallbacks(lambda _: self._ended(None, stream), lambda f: self._ended(f, stream))

    def _onLine(self, line: bytes) -> None:
        if self._stopped or not line.strip():
            return
        try:
            document = json.loads(line.decode("utf-8"))
        except ValueError:
            # Namerd ends a stream with a plain-text error line.
            self._serverError(line.decode("utf-8", "replace"))
            return
        self.lastDocument = document
        self._deliver(self.onDocument, document)

    def _serverError(self, message: str) -> None:
        self.connection.errors.incr()
        self.lastError = message
        log.warn("namerd {kind} {what}: {message}", kind=self.kind, what=self.description, message=message)
        if self.onError is not None:
            self.onError(message)

    def _ended(self, failure: Any, stream: BodyStream) -> None:
        if stream is not self._stream:
            return
        self._stream = None
        if self._stopped:
            return
        if failure is not None:
            self.lastError = f"stream ended: {failure.getErrorMessage()}"
        self._retry()

    def _failed(self, failure: Any) -> None:
        self._request = None
        if self._stopped:
            return
        self.lastError = f"cannot reach namerd at {self.connection.dst.url}: {failure.getErrorMessage()}"
        self._retry()

    def state_(self) -> Dict[str, Any]:
        return self._describe(value=self.lastDocument)
