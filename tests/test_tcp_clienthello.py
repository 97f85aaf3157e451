"""
Tests for L{linkerpy.protocol.tcp.clienthello}: real ClientHellos made by
OpenSSL, hand-built ones with every field under control, malformed and
oversized input, and hypothesis fuzzing (never an unexpected exception,
never more than the bound buffered).
"""

from __future__ import annotations

import struct
from typing import List, Optional, Sequence, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from OpenSSL import SSL
from twisted.trial.unittest import SynchronousTestCase

from linkerpy.protocol.tcp.clienthello import (
    DEFAULT_MAX_BYTES,
    ClientHelloError,
    ClientHelloParser,
    checkHostName,
    parseClientHelloBody,
)


def opensslHello(serverName: Optional[bytes] = None, alpn: Sequence[bytes] = ()) -> bytes:
    """
    The first flight of an OpenSSL client: its ClientHello records.
    """
    context = SSL.Context(SSL.TLS_METHOD)
    if alpn:
        context.set_alpn_protos(list(alpn))
    connection = SSL.Connection(context, None)
    connection.set_connect_state()
    if serverName is not None:
        connection.set_tlsext_host_name(serverName)
    try:
        connection.do_handshake()
    except SSL.WantReadError:
        pass
    return connection.bio_read(65536)


def extension(kind: int, data: bytes) -> bytes:
    return struct.pack("!HH", kind, len(data)) + data


def sniExtension(*names: Tuple[int, bytes]) -> bytes:
    entries = b"".join(struct.pack("!BH", t, len(n)) + n for t, n in names)
    return extension(0, struct.pack("!H", len(entries)) + entries)


def helloBody(extensions: Optional[Sequence[bytes]] = None, sessionId: bytes = b"", suites: bytes = b"\x13\x01") -> bytes:
    """
    A ClientHello body with chosen extensions (C{None}: no extensions block).
    """
    body = b"\x03\x03" + b"\x11" * 32
    body += struct.pack("!B", len(sessionId)) + sessionId
    body += struct.pack("!H", len(suites)) + suites
    body += b"\x01\x00"
    if extensions is not None:
        block = b"".join(extensions)
        body += struct.pack("!H", len(block)) + block
    return body


def handshake(body: bytes, msgType: int = 1) -> bytes:
    return struct.pack("!B", msgType) + len(body).to_bytes(3, "big") + body


def records(message: bytes, sizes: Sequence[int] = ()) -> bytes:
    """
    Wrap a handshake message in TLS records, fragmented at C{sizes}.
    """
    out = []
    pos = 0
    sizes = list(sizes)
    while pos < len(message):
        size = sizes.pop(0) if sizes else 16384
        size = max(1, min(size, 16384))
        fragment = message[pos : pos + size]
        out.append(b"\x16\x03\x01" + struct.pack("!H", len(fragment)) + fragment)
        pos += size
    return b"".join(out)


def feedAll(data: bytes, chunks: Sequence[int], parser: Optional[ClientHelloParser] = None) -> Tuple[ClientHelloParser, object]:
    parser = parser or ClientHelloParser()
    result = None
    pos = 0
    for size in chunks:
        if pos >= len(data):
            break
        result = parser.feed(data[pos : pos + size])
        pos += size
    if pos < len(data):
        result = parser.feed(data[pos:])
    return parser, result


class OpenSSLHelloTests(SynchronousTestCase):
    """
    ClientHellos as OpenSSL sends them.
    """

    def test_serverName(self) -> None:
        """
        The server name of an OpenSSL ClientHello is read, lower-cased.
        """
        data = opensslHello(b"Api.Example.COM", alpn=[b"h2", b"http/1.1"])
        hello = ClientHelloParser().feed(data)
        self.assertIsNotNone(hello)
        self.assertEqual(hello.serverName, "api.example.com")
        self.assertEqual(hello.length, len(data))

    def test_noServerName(self) -> None:
        """
        A ClientHello without SNI parses, with no server name.
        """
        hello = ClientHelloParser().feed(opensslHello())
        self.assertIsNotNone(hello)
        self.assertIsNone(hello.serverName)

    def test_byteByByte(self) -> None:
        """
        Fed one byte at a time, the parser answers exactly when the last
        byte of the ClientHello arrives, and keeps every byte.
        """
        data = opensslHello(b"one.example")
        parser = ClientHelloParser()
        for i in range(len(data) - 1):
            self.assertIsNone(parser.feed(data[i : i + 1]))
        hello = parser.feed(data[-1:])
        self.assertEqual(hello.serverName, "one.example")
        self.assertEqual(parser.buffered, data)

    def test_bytesAfterTheHello(self) -> None:
        """
        Bytes after the ClientHello (early data) are kept for the origin.
        """
        data = opensslHello(b"one.example")
        parser = ClientHelloParser()
        hello = parser.feed(data + b"\x17\x03\x03\x00\x01x")
        self.assertEqual(hello.serverName, "one.example")
        self.assertEqual(parser.feed(b"more"), hello)
        self.assertEqual(parser.buffered, data + b"\x17\x03\x03\x00\x01xmore")


class BuiltHelloTests(SynchronousTestCase):
    """
    ClientHellos built field by field.
    """

    def test_fragmentedOverRecords(self) -> None:
        """
        A ClientHello split over several TLS records is reassembled.
        """
        message = handshake(helloBody([extension(10, b"\x00\x02\x00\x1d"), sniExtension((0, b"split.example"))]))
        data = records(message, [3, 1, 20, 7])
        hello = ClientHelloParser().feed(data)
        self.assertEqual(hello.serverName, "split.example")
        self.assertEqual(hello.length, len(data))

    def test_noExtensions(self) -> None:
        """
        A ClientHello without any extension block has no server name.
        """
        hello = ClientHelloParser().feed(records(handshake(helloBody(None))))
        self.assertIsNone(hello.serverName)

    def test_trailingDot(self) -> None:
        """
        A trailing dot is dropped from the server name.
        """
        hello = ClientHelloParser().feed(records(handshake(helloBody([sniExtension((0, b"dot.example."))]))))
        self.assertEqual(hello.serverName, "dot.example")

    def test_unknownNameTypeSkipped(self) -> None:
        """
        Entries of unknown name types are skipped; the host_name is used.
        """
        hello = ClientHelloParser().feed(
            records(handshake(helloBody([sniExtension((7, b"\x01\x02"), (0, b"real.example"))])))
        )
        self.assertEqual(hello.serverName, "real.example")

    def test_notTLS(self) -> None:
        """
        A plaintext protocol is refused at its first byte, as not TLS.
        """
        parser = ClientHelloParser()
        with self.assertRaises(ClientHelloError) as raised:
            parser.feed(b"GET / HTTP/1.1\r\n")
        self.assertTrue(raised.exception.notTLS)

    def test_sslv2Hello(self) -> None:
        """
        An SSLv2-format ClientHello (no extensions possible) is not TLS.
        """
        with self.assertRaises(ClientHelloError) as raised:
            ClientHelloParser().feed(b"\x80\x2e\x01\x00\x02")
        self.assertTrue(raised.exception.notTLS)

    def test_otherHandshakeMessage(self) -> None:
        """
        A handshake message other than ClientHello is refused.
        """
        with self.assertRaises(ClientHelloError):
            ClientHelloParser().feed(records(handshake(helloBody([]), msgType=2)))

    def test_nonHandshakeRecordLater(self) -> None:
        """
        An alert record before the ClientHello is complete is refused.
        """
        message = handshake(helloBody([sniExtension((0, b"x.example"))]))
        data = records(message[:10]) + b"\x15\x03\x03\x00\x02\x02\x28"
        with self.assertRaises(ClientHelloError) as raised:
            ClientHelloParser().feed(data)
        self.assertFalse(raised.exception.notTLS)

    def test_emptyRecord(self) -> None:
        """
        A zero-length handshake record is refused.
        """
        with self.assertRaises(ClientHelloError):
            ClientHelloParser().feed(b"\x16\x03\x01\x00\x00")

    def test_oversizedRecord(self) -> None:
        """
        A record longer than 2^14 bytes is refused from its header.
        """
        with self.assertRaises(ClientHelloError):
            ClientHelloParser().feed(b"\x16\x03\x01\x40\x01")

    def test_tooLarge(self) -> None:
        """
        A ClientHello that does not end within the bound is refused before
        more than the bound is buffered.
        """
        parser = ClientHelloParser(maxBytes=1000)
        message = handshake(helloBody([extension(21, b"\x00" * 5000)]))
        data = records(message, [500] * 20)
        with self.assertRaises(ClientHelloError) as raised:
            for i in range(0, len(data), 100):
                parser.feed(data[i : i + 100])
        self.assertIn("larger than 1000", raised.exception.reason)
        self.assertLessEqual(len(parser.buffered), 1000 + 100)

    def test_declaredTooLarge(self) -> None:
        """
        A handshake header declaring more than the bound is refused at once.
        """
        data = b"\x16\x03\x01\x00\x04" + b"\x01\xff\xff\xff"
        with self.assertRaises(ClientHelloError):
            ClientHelloParser().feed(data)

    def test_twoServerNameExtensions(self) -> None:
        """
        Two server_name extensions are refused.
        """
        body = helloBody([sniExtension((0, b"a.example")), sniExtension((0, b"b.example"))])
        with self.assertRaises(ClientHelloError):
            ClientHelloParser().feed(records(handshake(body)))

    def test_malformedServerNames(self) -> None:
        """
        Server names that are not host names are refused.
        """
        for name in [b"", b"a..b", b"-a.example", b"a_b c", b"\xff.example", b"127.0.0.1", b"a" * 64 + b".example", b"x" * 254]:
            body = helloBody([sniExtension((0, name))])
            with self.assertRaises(ClientHelloError, msg=repr(name)):
                ClientHelloParser().feed(records(handshake(body)))

    def test_truncatedBody(self) -> None:
        """
        Every truncation of a ClientHello body is refused by the body parser.
        """
        body = helloBody([sniExtension((0, b"t.example")), extension(16, b"\x00\x03\x02h2")], sessionId=b"s" * 32)
        for end in range(len(body)):
            try:
                parseClientHelloBody(body[:end])
            except ClientHelloError:
                continue
            # Cutting exactly before the extensions block is a valid hello without extensions.
            self.assertEqual(end, len(helloBody(None, sessionId=b"s" * 32)))

    def test_checkHostName(self) -> None:
        """
        Host names are lower-cased and lose a trailing dot.
        """
        self.assertEqual(checkHostName(b"WWW.Example.Test."), "www.example.test")
        self.assertEqual(checkHostName(b"_srv.x-1.example"), "_srv.x-1.example")


# -- fuzzing -----------------------------------------------------------------------------

_HELLOS: List[bytes] = []


def _realHellos() -> List[bytes]:
    if not _HELLOS:
        _HELLOS.extend([opensslHello(b"fuzz.example"), opensslHello(), opensslHello(b"x.y.z", alpn=[b"h2"])])
    return _HELLOS


_chunks = st.lists(st.integers(min_value=1, max_value=2000), min_size=1, max_size=40)


class FuzzTests(SynchronousTestCase):
    """
    Hypothesis: no input crashes the parser or makes it buffer beyond its
    bound; every fragmentation of a valid ClientHello gives the same name.
    """

    @settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.binary(max_size=3000), chunks=_chunks, limit=st.integers(min_value=5, max_value=4000))
    def test_randomBytes(self, data: bytes, chunks: List[int], limit: int) -> None:
        """
        Random bytes in random pieces: only ClientHelloError, never more
        than the bound plus one piece buffered.
        """
        parser = ClientHelloParser(maxBytes=limit)
        pos = 0
        for size in chunks + [len(data)]:
            piece = data[pos : pos + size]
            pos += size
            try:
                parser.feed(piece)
            except ClientHelloError:
                self.assertLessEqual(len(parser.buffered), limit + len(piece))
                return
            if parser.result is None:
                self.assertLess(len(parser.buffered), limit)

    @settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(index=st.integers(min_value=0, max_value=2), flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), max_size=6), chunks=_chunks)
    def test_mutatedHellos(self, index: int, flips: List[Tuple[int, int]], chunks: List[int]) -> None:
        """
        Real ClientHellos with bytes overwritten: parsed or refused, never a crash.
        """
        data = bytearray(_realHellos()[index])
        for where, value in flips:
            data[where % len(data)] = value
        try:
            _, result = feedAll(bytes(data), chunks)
        except ClientHelloError:
            return
        if result is not None:
            name = result.serverName  # type: ignore[attr-defined]
            self.assertTrue(name is None or (name == name.lower() and len(name) <= 253))

    @settings(max_examples=200, deadline=None, derandomize=True)
    @given(index=st.integers(min_value=0, max_value=2), chunks=_chunks, recordSizes=st.lists(st.integers(min_value=1, max_value=600), max_size=10))
    def test_fragmentation(self, index: int, chunks: List[int], recordSizes: List[int]) -> None:
        """
        However a real ClientHello is split into records and reads, the
        parser finds the same server name and keeps every byte.
        """
        original = _realHellos()[index]
        expected = ClientHelloParser().feed(original)
        message = original[5:]  # one record from OpenSSL: re-fragment its payload
        data = records(message, recordSizes)
        parser, result = feedAll(data, chunks)
        self.assertIsNotNone(result)
        self.assertEqual(result.serverName, expected.serverName)  # type: ignore[attr-defined]
        self.assertEqual(parser.buffered, data)

    @settings(max_examples=200, deadline=None, derandomize=True)
    @given(name=st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,20}[a-z]))+", fullmatch=True))
    def test_namesRoundTrip(self, name: str) -> None:
        """
        Any valid host name put in the extension comes back.
        """
        hello = ClientHelloParser().feed(records(handshake(helloBody([sniExtension((0, name.encode()))]))))
        self.assertEqual(hello.serverName, name)

    def test_defaultBound(self) -> None:
        """
        The default bound is 64 KiB.
        """
        self.assertEqual(ClientHelloParser().maxBytes, DEFAULT_MAX_BYTES)
        self.assertEqual(DEFAULT_MAX_BYTES, 65536)
