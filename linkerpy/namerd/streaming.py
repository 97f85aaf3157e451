# -*- test-case-name: tests.test_namerd_client -*-
"""
HTTP client helpers shared by the etcd store and the router-side plugins:
a treq client bound to an injected reactor, and a body receiver that hands
over a long-lived streaming response piece by piece (newline-delimited
documents, or concatenated JSON objects as etcd's gateway writes them).
"""

from __future__ import annotations

import json
from typing import Any, Callable, List, Optional

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone, _HTTP11ClientFactory
from twisted.web.http import PotentialDataLoss

__all__ = ["newHTTPClient", "BodyStream", "LineDecoder", "JSONObjectDecoder", "StreamTooLarge"]


class _QuietFactory(_HTTP11ClientFactory):
    """
    No "Starting factory" log line for every connection.
    """

    noisy = False


def newHTTPClient(reactor: Any, persistent: bool = True, connectTimeout: float = 10.0) -> Any:
    """
    @return: a C{treq.client.HTTPClient} whose connections use C{reactor}.
    """
    from treq.client import HTTPClient

    pool = HTTPConnectionPool(reactor, persistent=persistent)
    pool._factory = _QuietFactory
    pool.maxPersistentPerHost = 4
    pool.retryAutomatically = False
    return HTTPClient(Agent(reactor, pool=pool, connectTimeout=connectTimeout))


class StreamTooLarge(Exception):
    """
    One streamed document exceeded the size limit.
    """


class LineDecoder:
    """
    Splits a byte stream into lines (without their C{\\n}), bounded in size.
    """

    def __init__(self, onLine: Callable[[bytes], None], maxLineBytes: int = 4 * 1024 * 1024) -> None:
        self.onLine = onLine
        self.maxLineBytes = maxLineBytes
        self._buffer = b""

    def feed(self, data: bytes) -> None:
        buffer = self._buffer + data
        while True:
            i = buffer.find(b"\n")
            if i < 0:
                break
            line, buffer = buffer[:i], buffer[i + 1:]
            if line.endswith(b"\r"):
                line = line[:-1]
            self.onLine(line)
        if len(buffer) > self.maxLineBytes:
            raise StreamTooLarge(f"a streamed line exceeded {self.maxLineBytes} bytes")
        self._buffer = buffer

    def leftover(self) -> bytes:
        return self._buffer


class JSONObjectDecoder:
    """
    Splits a byte stream of concatenated JSON values (with or without
    whitespace between them) into decoded values.
    """

    def __init__(self, onValue: Callable[[Any], None], maxBytes: int = 16 * 1024 * 1024) -> None:
        self.onValue = onValue
        self.maxBytes = maxBytes
        self._buffer = ""
        self._decoder = json.JSONDecoder()
        self._pending = b""

    def feed(self, data: bytes) -> None:
        data = self._pending + data
        try:
            text = data.decode("utf-8")
            self._pending = b""
        except UnicodeDecodeError as e:
            # A multi-byte character split across chunks: keep its start.
            if e.start < len(data) - 4:
                raise
            text = data[: e.start].decode("utf-8")
            self._pending = data[e.start:]
        buffer = self._buffer + text
        pos = 0
        n = len(buffer)
        while True:
            while pos < n and buffer[pos] in " \t\r\n":
                pos += 1
            if pos >= n:
                break
            try:
                value, end = self._decoder.raw_decode(buffer, pos)
            except ValueError:
                break
            pos = end
            self.onValue(value)
        self._buffer = buffer[pos:]
        if len(self._buffer) > self.maxBytes:
            raise StreamTooLarge(f"a streamed document exceeded {self.maxBytes} bytes")


class BodyStream(Protocol):
    """
    Receives a response body: each chunk goes to C{decoder.feed}; C{done}
    fires (with C{None}) when the body ends cleanly and fails otherwise.
    C{abort()} drops the connection (the stream then ends with a failure
    that the owner knows it caused).
    """

    def __init__(self, decoder: Any) -> None:
        self.decoder = decoder
        self.done: Deferred = Deferred()
        self.aborted = False
        self._finished = False

    def dataReceived(self, data: bytes) -> None:
        if self._finished:
            return
        try:
            self.decoder.feed(data)
        except Exception:
            self._finish(Failure())
            self.abort()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if reason is not None and reason.check(ResponseDone, PotentialDataLoss):
            self._finish(None)
        else:
            self._finish(reason)

    def _finish(self, result: Optional[Failure]) -> None:
        if self._finished:
            return
        self._finished = True
        if result is None:
            self.done.callback(None)
        else:
            self.done.errback(result)

    def abort(self) -> None:
        """
        Stop receiving and close the connection.
        """
        self.aborted = True
        transport = self.transport
        if transport is not None:
            try:
                transport.stopProducing()
            except Exception:
                pass


def collectLines(data: bytes) -> List[bytes]:
    """
    Split a whole body into non-empty lines (for tests and short answers).
    """
    return [line for line in data.split(b"\n") if line.strip()]
