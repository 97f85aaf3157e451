# -*- test-case-name: tests.test_h2_connection -*-
"""
The C{h2} library as the connections use it: the settings each side
advertises, a connection class that survives a received GOAWAY, GOAWAY
frames written directly, and a cheaper repr of DATA payloads.
"""

from __future__ import annotations

import binascii
from typing import Any, List, Optional

import attrs
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated
from hyperframe.frame import GoAwayFrame

__all__ = ["H2Settings", "goAwayFrame", "contentLength", "DEFAULT_WINDOW", "MAX_STREAM_ID"]

#: The HTTP/2 default initial window (RFC 9113 section 6.9.2).
DEFAULT_WINDOW = 65535
#: The largest stream id (a GOAWAY with it refuses nothing).
MAX_STREAM_ID = 2**31 - 1


@attrs.frozen
class H2Settings:
    """
    The HTTP/2 settings one side of a connection advertises and enforces.

    @ivar initialStreamWindowBytes: C{SETTINGS_INITIAL_WINDOW_SIZE}: how many
        bytes of one stream the peer may send before this side reads them.
    @ivar connectionWindowBytes: the connection-level receive window (all
        streams together); the HTTP/2 default is 65535.
    @ivar maxFrameBytes: C{SETTINGS_MAX_FRAME_SIZE}.
    @ivar maxHeaderListBytes: C{SETTINGS_MAX_HEADER_LIST_SIZE}; a larger
        header block ends the connection (ENHANCE_YOUR_CALM).
    @ivar headerTableBytes: C{SETTINGS_HEADER_TABLE_SIZE}, or C{None} for the
        default (4096).
    @ivar maxConcurrentStreams: C{SETTINGS_MAX_CONCURRENT_STREAMS} (streams
        the peer may open; servers).
    @ivar noDelay: set C{TCP_NODELAY} (small frames are not held back by
        Nagle's algorithm).
    """

    initialStreamWindowBytes: int = DEFAULT_WINDOW
    connectionWindowBytes: int = 1048576
    maxFrameBytes: int = 16384
    maxHeaderListBytes: int = 65536
    headerTableBytes: Optional[int] = None
    maxConcurrentStreams: int = 250
    noDelay: bool = True


class _Connection(H2Connection):
    """
    C{h2}'s connection, except that a received GOAWAY neither closes the
    connection state nor drops frames waiting to be sent: streams the peer
    accepted may still complete (RFC 9113 section 6.8).
    """

    def _receive_goaway_frame(self, frame: Any) -> Any:
        event = ConnectionTerminated()
        try:
            event.error_code = ErrorCodes(frame.error_code)
        except ValueError:
            event.error_code = frame.error_code
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]


def _shortRawDataRepr(data: Any) -> str:
    if not data:
        return "None"
    r = binascii.hexlify(bytes(data[:10])).decode("ascii")
    if len(data) > 10:
        r += "..."
    return "<hex:" + r + ">"


def _patchFrameRepr() -> None:
    """
    C{h2} formats every received frame with C{repr()} for a trace log that
    is never written, and C{hyperframe} hex-encodes a whole DATA payload
    there to keep 20 characters of it (about 10 us per 16 KB frame, an
    eighth of the cost of relaying data).  Replace that helper with one
    giving the same text from the first bytes only, if it is the one we
    know.
    """
    from hyperframe import frame as hyperframeFrame

    original = getattr(hyperframeFrame, "_raw_data_repr", None)
    if original is None or getattr(original, "__name__", "") != "_raw_data_repr":
        return
    sample = bytes(range(40))
    if all(original(s) == _shortRawDataRepr(s) for s in (sample, sample[:10], sample[:3], b"", None)):
        hyperframeFrame._raw_data_repr = _shortRawDataRepr


_patchFrameRepr()


def goAwayFrame(lastStreamId: int, errorCode: int = ErrorCodes.NO_ERROR, debug: bytes = b"") -> bytes:
    """
    A serialised GOAWAY frame.
    """
    f = GoAwayFrame(0)
    f.last_stream_id = lastStreamId
    f.error_code = int(errorCode)
    f.additional_data = debug
    return f.serialize()  # type: ignore[no-any-return]


def contentLength(headers: List[Any]) -> Optional[int]:
    """
    The C{content-length} of a decoded header list, if valid.
    """
    for name, value in headers:
        if name == b"content-length":
            try:
                n = int(value)
            except ValueError:
                return None
            return n if n >= 0 else None
    return None
