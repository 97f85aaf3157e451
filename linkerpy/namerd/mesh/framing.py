# -*- test-case-name: tests.test_mesh_framing -*-
"""
gRPC over HTTP/2, the parts both ends of the mesh API share: message
framing, status codes, and the header and trailer fields.

A gRPC message on a stream is a 5-byte prefix (a compressed flag, then the
length as a 4-byte big-endian integer) followed by the message bytes.
Messages may be split across DATA frames and several may share one;
L{MessageDecoder} reassembles them.  The outcome of a call is in the
C{grpc-status} and C{grpc-message} fields of the trailers (or of the
headers, for a response without messages: "trailers-only").
"""

from __future__ import annotations

import struct
from typing import Any, Callable, List, Optional, Tuple
from urllib.parse import unquote

from linkerpy.protocol.h2.headers import H2Headers

__all__ = [
    "Status",
    "GrpcError",
    "encodeMessage",
    "MessageDecoder",
    "CONTENT_TYPE",
    "responseHeaders",
    "statusFields",
    "statusOf",
    "encodeStatusMessage",
    "decodeStatusMessage",
    "isGrpcContentType",
]

_PREFIX = struct.Struct(">BI")
PREFIX_BYTES = _PREFIX.size

CONTENT_TYPE = b"application/grpc"


class Status:
    """
    gRPC status codes (the values of C{grpc-status}).
    """

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16

    @classmethod
    def name(cls, code: int) -> str:
        """
        @return: the code's name (C{'NOT_FOUND'}), or its number.
        """
        for key, value in vars(cls).items():
            if key.isupper() and value == code:
                return key
        return str(code)


class GrpcError(Exception):
    """
    A call that ends with a status other than OK.

    @ivar code: the L{Status} code.
    @ivar message: the human-readable reason (C{grpc-message}).
    """

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(f"{Status.name(code)}: {message}" if message else Status.name(code))
        self.code = int(code)
        self.message = message


def encodeMessage(payload: bytes) -> bytes:
    """
    Frame one (uncompressed) message.
    """
    return _PREFIX.pack(0, len(payload)) + payload


class MessageDecoder:
    """
    Reassembles length-prefixed messages from arbitrary chunks of a stream.

    @param onMessage: called with the bytes of each complete message.
    @param maxBytes: the largest message accepted; a longer length prefix
        raises L{GrpcError} C{RESOURCE_EXHAUSTED} at once (before the
        message is buffered).
    """

    __slots__ = ("onMessage", "maxBytes", "_buffer", "messages")

    def __init__(self, onMessage: Callable[[bytes], None], maxBytes: int = 4 * 1024 * 1024) -> None:
        self.onMessage = onMessage
        self.maxBytes = maxBytes
        self._buffer = bytearray()
        self.messages = 0

    def feed(self, data: bytes) -> None:
        """
        Add received bytes; deliver every message they complete.

        @raise GrpcError: C{RESOURCE_EXHAUSTED} for a message over
            C{maxBytes}, C{INTERNAL} for a compressed or malformed one.
        """
        buf = self._buffer
        buf += data
        offset = 0
        n = len(buf)
        try:
            while n - offset >= PREFIX_BYTES:
                flag, length = _PREFIX.unpack_from(buf, offset)
                if flag != 0:
                    if flag == 1:
                        raise GrpcError(Status.INTERNAL, "compressed messages are not supported (no grpc-encoding agreed)")
                    raise GrpcError(Status.INTERNAL, f"invalid message flag {flag}")
                if length > self.maxBytes:
                    raise GrpcError(
                        Status.RESOURCE_EXHAUSTED,
                        f"message of {length} bytes is larger than the limit of {self.maxBytes} bytes",
                    )
                end = offset + PREFIX_BYTES + length
                if end > n:
                    break
                message = bytes(buf[offset + PREFIX_BYTES : end])
                offset = end
                self.messages += 1
                self.onMessage(message)
        finally:
            if offset:
                del buf[:offset]

    @property
    def pending(self) -> int:
        """
        Bytes of an incomplete message held so far.
        """
        return len(self._buffer)

    def finish(self) -> None:
        """
        The stream ended.

        @raise GrpcError: C{INTERNAL} if it ended inside a message.
        """
        if self._buffer:
            raise GrpcError(Status.INTERNAL, f"the stream ended inside a message ({len(self._buffer)} bytes left)")


# ---------------------------------------------------------------------------
# header and trailer fields


def isGrpcContentType(value: Optional[bytes]) -> bool:
    """
    Whether a C{content-type} is gRPC's (C{application/grpc},
    C{application/grpc+proto}, C{application/grpc; ...}).
    """
    if not value:
        return False
    value = value.lower()
    return value == CONTENT_TYPE or value[len(CONTENT_TYPE) : len(CONTENT_TYPE) + 1] in (b"+", b";")


def encodeStatusMessage(text: str) -> bytes:
    """
    C{grpc-message}'s encoding: UTF-8, with every byte outside printable
    ASCII (and C{%}) percent-encoded.
    """
    out = bytearray()
    for b in text.encode("utf-8"):
        if 0x20 <= b <= 0x7E and b != 0x25:
            out.append(b)
        else:
            out += b"%%%02X" % b
    return bytes(out)


def decodeStatusMessage(value: bytes) -> str:
    """
    The inverse of L{encodeStatusMessage}; undecodable bytes are replaced.
    """
    return unquote(value.decode("ascii", "replace"), errors="replace")


def statusFields(code: int, message: str = "") -> List[Tuple[bytes, bytes]]:
    """
    C{grpc-status} (and C{grpc-message} when there is one).
    """
    fields = [(b"grpc-status", b"%d" % code)]
    if message:
        fields.append((b"grpc-message", encodeStatusMessage(message)))
    return fields


def responseHeaders(code: Optional[int] = None, message: str = "") -> H2Headers:
    """
    The headers of a gRPC response; with C{code}, a trailers-only response
    (the status is in the headers, and the stream ends with them).
    """
    h = H2Headers([(b":status", b"200"), (b"content-type", CONTENT_TYPE)])
    if code is not None:
        for name, value in statusFields(code, message):
            h.add(name, value)
    return h


def statusOf(*fieldLists: Any) -> Optional[Tuple[int, str]]:
    """
    The C{(code, message)} of the first header list (trailers, then
    headers) carrying C{grpc-status}, or C{None}.
    """
    for fields in fieldLists:
        if fields is None:
            continue
        raw = fields.get(b"grpc-status")
        if raw is None:
            continue
        try:
            code = int(raw)
        except ValueError:
            return Status.UNKNOWN, f"invalid grpc-status {raw!r}"
        message = fields.get(b"grpc-message")
        return code, decodeStatusMessage(message) if message else ""
    return None
