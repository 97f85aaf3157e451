# -*- test-case-name: tests.test_h2_client -*-
"""
HTTP/2 errors: stream resets and connection-level failures seen by the
client side, as subclasses of the HTTP data plane's
L{UpstreamError<linkerpy.protocol.http.errors.UpstreamError>} (so the
router translates them the same way), plus the error codes used here.
"""

from __future__ import annotations

from typing import Any, Optional

from h2.errors import ErrorCodes

from linkerpy.protocol.http.errors import ConnectionReset, UpstreamError

__all__ = [
    "ErrorCodes",
    "StreamReset",
    "StreamRefused",
    "GoAwayReceived",
    "ProtocolViolation",
    "codeName",
]


def codeName(code: int) -> str:
    """
    The name of an HTTP/2 error code (C{CANCEL}), or its number.
    """
    try:
        return ErrorCodes(code).name
    except ValueError:
        return f"0x{code:x}"


class StreamReset(UpstreamError):
    """
    The peer reset the stream (RST_STREAM) with C{errorCode}.

    A C{REFUSED_STREAM} reset means the peer did not process the request
    (RFC 9113 section 8.7): C{requestWritten} is then C{False}, so that the
    router may safely send it again.

    @ivar errorCode: the HTTP/2 error code (an C{int}).
    """

    summary = "stream reset by"

    def __init__(self, errorCode: int, address: Any = None, requestWritten: bool = True, responseStarted: bool = False) -> None:
        self.errorCode = int(errorCode)
        super().__init__(
            address,
            requestWritten=requestWritten,
            responseStarted=responseStarted,
            detail=codeName(self.errorCode),
        )


class StreamRefused(StreamReset):
    """
    The stream was not processed by the peer: reset with C{REFUSED_STREAM},
    or above the last stream id of a GOAWAY.
    """

    summary = "stream refused by"

    def __init__(self, address: Any = None, detail: Optional[str] = None) -> None:
        super().__init__(ErrorCodes.REFUSED_STREAM, address, requestWritten=False)
        if detail:
            self.detail = detail
            self.args = (self.describe(),)


class GoAwayReceived(ConnectionReset):
    """
    The peer sent GOAWAY with an error while the stream was in flight.
    """

    summary = "connection closed (GOAWAY) by"


class ProtocolViolation(ConnectionReset):
    """
    The peer broke the HTTP/2 protocol; the connection was closed.
    """

    summary = "HTTP/2 protocol error from"
