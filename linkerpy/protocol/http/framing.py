# -*- test-case-name: tests.test_http_framing -*-
"""
Strict decoding of chunked bodies (both directions), and chunk encoding.

A chunk-size line is 1 to 16 hex digits, optionally followed by chunk
extensions (C{;name} or C{;name=token} or C{;name="quoted"}, with optional
whitespace around C{;} and C{=}), then CRLF.  Anything else is a
L{FramingError}: signs, C{0x} prefixes, whitespace without an extension,
more than 16 digits or a size beyond L{MAX_CHUNK_SIZE}, a size line longer
than L{MAX_CHUNK_LINE}, bare LF, or chunk data not followed by CRLF.  The
trailer section is validated like a header block and size-limited.
"""

from __future__ import annotations

import re
from typing import Callable, Optional

from linkerpy.protocol.http.errors import FramingError
from linkerpy.protocol.http.headers import Headers
from linkerpy.protocol.http.parser import HeadLimits, parseFieldBlock

__all__ = ["ChunkedDecoder", "MAX_CHUNK_SIZE", "MAX_CHUNK_LINE", "chunkHeader", "LAST_CHUNK"]

#: The largest chunk accepted (2 GiB - 1, Linkerd 1's message limit).
MAX_CHUNK_SIZE = 2**31 - 1
#: The longest chunk-size line (size and extensions) accepted.
MAX_CHUNK_LINE = 4096

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_EXT = rb"(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?)*"
_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})" + _EXT + rb"\r\n")

#: The terminating chunk without trailers.
LAST_CHUNK = b"0\r\n\r\n"

# decoder states
_SIZE = 0
_DATA = 1
_DATA_CRLF = 2
_TRAILERS = 3
_DONE = 4


def chunkHeader(size: int) -> bytes:
    """
    The size line for a chunk of C{size} bytes.
    """
    return b"%x\r\n" % size


class ChunkedDecoder:
    """
    Incremental, strict chunked-body decoder.

    Call L{feed} with each piece of input; it calls C{deliver(bytes)} for
    body data and returns C{None} while more input is needed, or the bytes
    following the body once the last chunk and trailer section were read
    (L{trailers} is then set).
    """

    __slots__ = ("_state", "_remaining", "_buf", "_limits", "trailers")

    def __init__(self, limits: HeadLimits) -> None:
        self._state = _SIZE
        self._remaining = 0
        self._buf = b""
        self._limits = limits
        #: the trailer fields (a L{Headers}) once done, or C{None}
        self.trailers: Optional[Headers] = None

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes, deliver: Callable[[bytes], None]) -> Optional[bytes]:
        """
        Decode C{data}.

        @raise FramingError: on a framing violation.
        @return: C{None} if the body is not complete yet; otherwise the
            input left over after the body (possibly C{b""}).
        """
        if self._buf:
            buf = self._buf + data
            self._buf = b""
        else:
            buf = data
        pos = 0
        n = len(buf)
        while True:
            state = self._state
            if state == _DATA:
                avail = n - pos
                if avail == 0:
                    return None
                rem = self._remaining
                if avail < rem:
                    deliver(buf[pos:] if pos else buf)
                    self._remaining = rem - avail
                    return None
                deliver(buf[pos : pos + rem])
                pos += rem
                self._state = _DATA_CRLF
            elif state == _DATA_CRLF:
                if n - pos < 2:
                    if n > pos and buf[pos:pos + 1] != b"\r":
                        raise FramingError("chunk data not followed by CRLF")
                    self._buf = buf[pos:]
                    return None
                if buf[pos : pos + 2] != b"\r\n":
                    raise FramingError("chunk data not followed by CRLF")
                pos += 2
                self._state = _SIZE
            elif state == _SIZE:
                m = _SIZE_LINE.match(buf, pos)
                if m is None:
                    eol = buf.find(b"\n", pos)
                    if eol >= 0 or n - pos > MAX_CHUNK_LINE:
                        raise FramingError("malformed chunk size line")
                    self._buf = buf[pos:]
                    return None
                size = int(m.group(1), 16)
                if size > MAX_CHUNK_SIZE:
                    raise FramingError("chunk too large")
                if m.end() - pos > MAX_CHUNK_LINE:
                    raise FramingError("chunk size line too long")
                pos = m.end()
                if size:
                    self._remaining = size
                    self._state = _DATA
                else:
                    self._state = _TRAILERS
            elif state == _TRAILERS:
                if buf.startswith(b"\r\n", pos):
                    self._state = _DONE
                    return buf[pos + 2 :]
                end = buf.find(b"\r\n\r\n", pos)
                if end < 0:
                    rest = buf[pos:]
                    if len(rest) > self._limits.maxHeaderBytes:
                        raise FramingError("trailer section too large")
                    if b"\n" in rest.replace(b"\r\n", b""):
                        raise FramingError("bare LF in trailer section")
                    self._buf = rest
                    return None
                block = buf[pos : end + 2]
                if len(block) > self._limits.maxHeaderBytes:
                    raise FramingError("trailer section too large")
                try:
                    self.trailers = parseFieldBlock(block, self._limits, request=False)
                except FramingError as e:
                    raise FramingError(f"invalid trailer section: {e.reason}") from None
                self._state = _DONE
                return buf[end + 4 :]
            else:  # _DONE
                return buf[pos:]
