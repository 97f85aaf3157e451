# -*- test-case-name: tests.test_tcp_clienthello -*-
"""
An incremental, bounded parser of a TLS ClientHello, to read the server
name (SNI) a client asks for without terminating TLS.

The router feeds it the first bytes of a connection as they arrive; the
parser keeps them (they are forwarded to the origin untouched once the
connection is routed) and answers as soon as the whole ClientHello has
arrived.  It accepts the ClientHello split over several TLS records and
any number of TCP segments, and refuses (with L{ClientHelloError}) bytes
that are not a TLS handshake, malformed messages, and ClientHellos larger
than its bound, so a client cannot make the router buffer more than
C{maxBytes} plus one read.

Only the fields needed to reach the extensions are parsed (RFC 8446
section 4.1.2, RFC 5246 section 7.4.1.2); the C{server_name} extension
(RFC 6066 section 3) yields the first C{host_name}, lower-cased, without a
trailing dot.  SSLv2-compatible ClientHellos carry no extensions and are
refused as not TLS.
"""

from __future__ import annotations

import re
from typing import Optional, Tuple

#: TLS record content type of handshake messages.
HANDSHAKE = 22
#: Handshake message type of a ClientHello.
CLIENT_HELLO = 1
#: Extension number of server_name.
SERVER_NAME = 0
#: The only name type defined for server_name.
HOST_NAME = 0
#: Largest plaintext TLS record fragment (2^14); records carrying a
#: ClientHello are never compressed or encrypted.
MAX_RECORD = 16384
#: Default bound on the bytes buffered while looking for the end of a
#: ClientHello (Envoy's tls_inspector uses the same).
DEFAULT_MAX_BYTES = 65536

_LABEL = re.compile(rb"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


class ClientHelloError(Exception):
    """
    The bytes are not a usable TLS ClientHello.

    @ivar reason: a short explanation (for logs and tests).
    @ivar notTLS: C{True} when the first bytes are not a TLS handshake at
        all (e.g. a plaintext protocol), as opposed to a malformed or
        oversized ClientHello.
    """

    def __init__(self, reason: str, notTLS: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.notTLS = notTLS


class ClientHello:
    """
    What the parser learned from a complete ClientHello.

    @ivar serverName: the requested host name (lower case, no trailing
        dot), or C{None} when the client sent no server_name extension.
    @ivar length: the number of bytes (records included) the ClientHello
        took on the wire.
    """

    __slots__ = ("serverName", "length")

    def __init__(self, serverName: Optional[str], length: int) -> None:
        self.serverName = serverName
        self.length = length

    def __repr__(self) -> str:
        return f"<ClientHello serverName={self.serverName!r} length={self.length}>"


class ClientHelloParser:
    """
    Accumulates the first bytes of a connection until a ClientHello is
    complete.

    @ivar buffered: every byte fed so far (to be forwarded upstream).
    @ivar result: the L{ClientHello} once complete, else C{None}.
    """

    def __init__(self, maxBytes: int = DEFAULT_MAX_BYTES) -> None:
        self.maxBytes = maxBytes
        self._buf = bytearray()
        self._pos = 0  # start of the next unread record in _buf
        self._handshake = bytearray()  # handshake bytes of the records read so far
        self.result: Optional[ClientHello] = None

    @property
    def buffered(self) -> bytes:
        return bytes(self._buf)

    def feed(self, data: bytes) -> Optional[ClientHello]:
        """
        Add bytes received from the client.

        @return: the L{ClientHello} once it is complete (and on every call
            after that), else C{None} (more bytes are needed).
        @raise ClientHelloError: the bytes cannot be a ClientHello, or the
            ClientHello does not end within C{maxBytes}.
        """
        if self.result is not None:
            self._buf += data
            return self.result
        if not self._buf and data and data[0] != HANDSHAKE:
            raise ClientHelloError("the connection does not start with a TLS handshake record", notTLS=True)
        self._buf += data
        buf = self._buf
        while True:
            if len(buf) - self._pos < 5:
                break
            pos = self._pos
            contentType = buf[pos]
            major, minor = buf[pos + 1], buf[pos + 2]
            length = (buf[pos + 3] << 8) | buf[pos + 4]
            if contentType != HANDSHAKE:
                raise ClientHelloError(
                    f"expected a handshake record, got content type {contentType}", notTLS=pos == 0
                )
            if major != 3 or minor > 4:
                raise ClientHelloError(f"unknown record version {major}.{minor}", notTLS=pos == 0)
            if length == 0 or length > MAX_RECORD:
                raise ClientHelloError(f"handshake record of {length} bytes")
            end = pos + 5 + length
            if end > self.maxBytes:
                raise ClientHelloError(f"the ClientHello is larger than {self.maxBytes} bytes")
            if len(buf) < end:
                break
            self._handshake += buf[pos + 5 : end]
            self._pos = end
            done, name = self._complete()
            if done:
                self.result = ClientHello(name, end)
                return self.result
        if len(buf) >= self.maxBytes:
            raise ClientHelloError(f"the ClientHello is larger than {self.maxBytes} bytes")
        return None

    def _complete(self) -> Tuple[bool, Optional[str]]:
        """
        @return: C{(False, None)} while the handshake message is
            incomplete, then C{(True, server name or None)}.
        """
        hs = self._handshake
        if len(hs) < 4:
            return False, None
        if hs[0] != CLIENT_HELLO:
            raise ClientHelloError(f"expected a ClientHello, got handshake message type {hs[0]}")
        length = (hs[1] << 16) | (hs[2] << 8) | hs[3]
        if length + 4 > self.maxBytes:
            raise ClientHelloError(f"the ClientHello is larger than {self.maxBytes} bytes")
        if len(hs) < 4 + length:
            return False, None
        return True, parseClientHelloBody(bytes(hs[4 : 4 + length]))


def parseClientHelloBody(body: bytes) -> Optional[str]:
    """
    Read the server name from the body of a ClientHello handshake message.

    @return: the host name, or C{None} when there is no server_name
        extension.
    @raise ClientHelloError: malformed.
    """
    reader = _Reader(body)
    reader.skip(2)  # legacy_version
    reader.skip(32)  # random
    sessionId = reader.vector(1)
    if len(sessionId) > 32:
        raise ClientHelloError("session id longer than 32 bytes")
    suites = reader.vector(2)
    if not suites or len(suites) % 2:
        raise ClientHelloError("malformed cipher suite list")
    if not reader.vector(1):
        raise ClientHelloError("empty compression method list")
    if reader.remaining == 0:
        return None  # no extensions at all
    extensions = _Reader(reader.vector(2))
    if reader.remaining:
        raise ClientHelloError("bytes after the extensions")
    name: Optional[str] = None
    seen = False
    while extensions.remaining:
        kind = extensions.uint(2)
        data = extensions.vector(2)
        if kind != SERVER_NAME:
            continue
        if seen:
            raise ClientHelloError("two server_name extensions")
        seen = True
        name = _serverName(data)
    return name


def _serverName(data: bytes) -> Optional[str]:
    outer = _Reader(data)
    names = _Reader(outer.vector(2))
    if outer.remaining:
        raise ClientHelloError("bytes after the server name list")
    found: Optional[str] = None
    while names.remaining:
        nameType = names.uint(1)
        value = names.vector(2)
        if nameType == HOST_NAME and found is None:
            found = checkHostName(value)
    if found is None:
        raise ClientHelloError("server_name extension without a host_name")
    return found


def checkHostName(raw: bytes) -> str:
    """
    Validate a server name as a DNS host name.

    @return: the name, lower case, without a trailing dot.
    @raise ClientHelloError: not a host name (empty, too long, bad
        characters or labels, or an IP address literal, which SNI forbids).
    """
    name = raw.lower()
    if name.endswith(b"."):
        name = name[:-1]
    if not name or len(name) > 253:
        raise ClientHelloError("server name is empty or longer than 253 bytes")
    labels = name.split(b".")
    for label in labels:
        if not _LABEL.match(label):
            raise ClientHelloError("server name is not a host name")
    if labels[-1].isdigit():
        raise ClientHelloError("server name is an IP address")
    return name.decode("ascii")


class _Reader:
    """
    Bounds-checked reads from a byte string.
    """

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def skip(self, n: int) -> None:
        if self.remaining < n:
            raise ClientHelloError("truncated ClientHello")
        self.pos += n

    def uint(self, n: int) -> int:
        if self.remaining < n:
            raise ClientHelloError("truncated ClientHello")
        value = int.from_bytes(self.data[self.pos : self.pos + n], "big")
        self.pos += n
        return value

    def vector(self, lengthBytes: int) -> bytes:
        length = self.uint(lengthBytes)
        if self.remaining < length:
            raise ClientHelloError("truncated ClientHello")
        value = self.data[self.pos : self.pos + length]
        self.pos += length
        return value
