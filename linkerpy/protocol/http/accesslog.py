# -*- test-case-name: tests.test_http_accesslog -*-
"""
The HTTP access log (C{httpAccessLog}): one line per request, written by a
background thread so the reactor never waits on the disk.

The default format is the common log format::

    127.0.0.1 - - [27/Nov/2026:10:00:00 +0000] "GET /hello HTTP/1.1" 200 12

C{httpAccessLogFormat} takes a Python format string with the fields
C{{remote}}, C{{time}} (common-log timestamp), C{{method}}, C{{uri}},
C{{version}}, C{{status}}, C{{bytes}} (the response Content-Length or C{-}),
C{{host}}, C{{service}} (the logical name), C{{client}} (the concrete
client), C{{endpoint}} (ip:port), C{{durationMs}} and C{{userAgent}}.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Optional

COMMON_LOG_FORMAT = '{remote} - - [{time}] "{method} {uri} {version}" {status} {bytes}'

FIELDS = (
    "remote",
    "time",
    "method",
    "uri",
    "version",
    "status",
    "bytes",
    "host",
    "service",
    "client",
    "endpoint",
    "durationMs",
    "userAgent",
)


def checkFormat(fmt: str) -> Optional[str]:
    """
    @return: an error message if C{fmt} uses unknown fields, else C{None}.
    """
    try:
        fmt.format(**{f: "" for f in FIELDS})
    except (KeyError, IndexError, ValueError) as e:
        return f"invalid access log format {fmt!r}: {e!r}; fields: {', '.join(FIELDS)}"
    return None


class AccessLog:
    """
    An append-only log file fed from the reactor thread through a queue.
    """

    def __init__(self, path: str, fmt: Optional[str] = None, append: bool = True, clock: Any = None) -> None:
        self.path = path
        self.format = fmt or COMMON_LOG_FORMAT
        self._queue: "queue.Queue[Optional[str]]" = queue.Queue(maxsize=100000)
        self._file = open(path, "a" if append else "w", encoding="utf-8", buffering=1)
        self._thread = threading.Thread(target=self._run, name=f"access-log {path}", daemon=True)
        self._thread.start()
        self.dropped = 0

    def log(self, exchange: Any, call: Any, status: int, length: Optional[int]) -> None:
        head = call.request
        peer = exchange.peer
        now = time.time()
        line = self.format.format(
            remote=getattr(peer, "host", "-"),
            time=time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            method=head.method.decode("latin-1"),
            uri=head.target.decode("latin-1"),
            version=head.version.decode("latin-1"),
            status=status,
            bytes="-" if length is None else length,
            host=(head.headers.get(b"host") or b"-").decode("latin-1"),
            service=call.serviceName or "-",
            client=getattr(call.client, "name", "-") if call.client is not None else "-",
            endpoint=f"{call.endpoint.host}:{call.endpoint.port}" if call.endpoint is not None else "-",
            durationMs=int((now - exchange.startedAt) * 1000) if exchange.startedAt else 0,
            userAgent=(head.headers.get(b"user-agent") or b"-").decode("latin-1"),
        )
        try:
            self._queue.put_nowait(line)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while True:
            line = self._queue.get()
            if line is None:
                break
            lines = [line]
            try:
                while len(lines) < 1000:
                    more = self._queue.get_nowait()
                    if more is None:
                        self._file.write("\n".join(lines) + "\n")
                        self._file.flush()
                        return
                    lines.append(more)
            except queue.Empty:
                pass
            self._file.write("\n".join(lines) + "\n")
        self._file.flush()

    def close(self) -> None:
        """
        Flush what is queued and stop the writer thread.
        """
        self._queue.put(None)
        self._thread.join(timeout=5)
        self._file.close()
