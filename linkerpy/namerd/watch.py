# -*- test-case-name: tests.test_namerd_api -*-
"""
Streaming a live value to an HTTP client: C{?watch=true} answers.

The response is chunked; each change of the value is rendered to one
document and written on its own line, unless it renders exactly as the
previous one (so clients see deduplicated changes).  A slow client never
makes the server buffer more than one document: while the connection is
paused, only the latest rendering is kept and it is written on resume.
When the client goes away the observation is closed, which releases
everything the value held.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

__all__ = ["WatchStream", "EndOfStream", "SKIP"]

log = Logger()

#: Returned by a render function for values that produce no line (e.g. pending).
SKIP: Any = object()


class EndOfStream(Exception):
    """
    Raised by a render function: write the message as the last line and
    close the stream (e.g. a binding that failed).
    """


@implementer(IPushProducer)
class WatchStream:
    """
    One watch response.

    @param render: C{render(value) -> str | SKIP}; may raise L{EndOfStream}.
    @param onClose: called once when the stream ends, for bookkeeping.
    """

    def __init__(
        self,
        request: Any,
        var: Any,
        render: Callable[[Any], Any],
        contentType: bytes = b"application/json",
        onClose: Optional[Callable[[], None]] = None,
    ) -> None:
        self.request = request
        self.var = var
        self.render = render
        self.contentType = contentType
        self.onClose = onClose
        self.last: Optional[str] = None
        self.pending: Optional[str] = None
        self.paused = False
        self.closed = False
        self.written = 0
        self._obs: Any = None

    def start(self) -> None:
        request = self.request
        request.setResponseCode(200)
        request.setHeader(b"content-type", self.contentType)
        request.setHeader(b"cache-control", b"no-cache")
        request.registerProducer(self, True)
        request.notifyFinish().addBoth(lambda _: self._close())
        request.write(b"")  # send the head now: the client knows it is connected
        if self.closed:
            return
        obs = self.var.observe(self._onValue)
        if self.closed:
            obs.close()
        else:
            self._obs = obs

    def _onValue(self, value: Any) -> None:
        if self.closed:
            return
        try:
            text = self.render(value)
        except EndOfStream as e:
            self._write(str(e))
            self._end()
            return
        except Exception:
            log.failure("rendering a watched value")
            self._write("internal error")
            self._end()
            return
        if text is SKIP or text == self.last:
            return
        self.last = text
        if self.paused:
            self.pending = text
            return
        self._write(text)

    def _write(self, text: str) -> None:
        self.written += 1
        self.request.write(text.encode("utf-8") + b"\n")

    def _end(self) -> None:
        if self.closed:
            return
        request = self.request
        self._close()
        if not request.finished and not getattr(request, "_disconnected", False):
            request.unregisterProducer()
            request.finish()

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        obs, self._obs = self._obs, None
        if obs is not None:
            obs.close()
        if self.onClose is not None:
            self.onClose()

    # IPushProducer

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        pending, self.pending = self.pending, None
        if pending is not None and not self.closed:
            self._write(pending)

    def stopProducing(self) -> None:
        self._close()
