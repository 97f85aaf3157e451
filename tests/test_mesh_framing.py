"""
Tests for L{linkerpy.namerd.mesh.framing}: gRPC message framing, status
fields and their encoding.
"""

from __future__ import annotations

import struct
from typing import List

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from linkerpy.namerd.mesh.framing import (
    GrpcError,
    MessageDecoder,
    Status,
    decodeStatusMessage,
    encodeMessage,
    encodeStatusMessage,
    isGrpcContentType,
    responseHeaders,
    statusFields,
    statusOf,
)
from linkerpy.namerd.mesh.server import parseTimeout
from linkerpy.protocol.h2.headers import H2Headers


class DecoderTests(SynchronousTestCase):
    """
    L{MessageDecoder} reassembles length-prefixed messages.
    """

    def setUp(self) -> None:
        self.messages: List[bytes] = []
        self.decoder = MessageDecoder(self.messages.append, maxBytes=100)

    def test_encode(self) -> None:
        """
        A message is a zero flag, a 4-byte big-endian length and the bytes.
        """
        self.assertEqual(encodeMessage(b"abc"), b"\x00\x00\x00\x00\x03abc")
        self.assertEqual(encodeMessage(b""), b"\x00\x00\x00\x00\x00")

    def test_partialFrames(self) -> None:
        """
        A message split at every byte boundary is delivered once, when complete.
        """
        data = encodeMessage(b"hello")
        for i, byte in enumerate(data):
            self.decoder.feed(bytes([byte]))
            if i < len(data) - 1:
                self.assertEqual(self.messages, [])
        self.assertEqual(self.messages, [b"hello"])
        self.assertEqual(self.decoder.pending, 0)

    def test_prefixSplit(self) -> None:
        """
        A length prefix split across chunks is read correctly.
        """
        data = encodeMessage(b"x" * 40)
        self.decoder.feed(data[:3])
        self.assertEqual(self.decoder.pending, 3)
        self.decoder.feed(data[3:20])
        self.decoder.feed(data[20:])
        self.assertEqual(self.messages, [b"x" * 40])

    def test_severalPerChunk(self) -> None:
        """
        Several messages in one chunk (one DATA frame) are all delivered, in order, with the start of the next kept.
        """
        data = encodeMessage(b"one") + encodeMessage(b"") + encodeMessage(b"three") + encodeMessage(b"four")[:4]
        self.decoder.feed(data)
        self.assertEqual(self.messages, [b"one", b"", b"three"])
        self.assertEqual(self.decoder.pending, 4)
        self.decoder.feed(encodeMessage(b"four")[4:])
        self.assertEqual(self.messages, [b"one", b"", b"three", b"four"])
        self.assertEqual(self.decoder.messages, 4)

    def test_oversized(self) -> None:
        """
        A length prefix over the limit is refused with RESOURCE_EXHAUSTED before its bytes arrive.
        """
        self.decoder.feed(encodeMessage(b"x" * 100))
        error = self.assertRaises(GrpcError, self.decoder.feed, struct.pack(">BI", 0, 101))
        self.assertEqual(error.code, Status.RESOURCE_EXHAUSTED)
        self.assertIn("101 bytes", error.message)
        self.assertEqual(self.messages, [b"x" * 100])

    def test_compressed(self) -> None:
        """
        A compressed message (flag 1, no encoding agreed) or an unknown flag is INTERNAL.
        """
        error = self.assertRaises(GrpcError, self.decoder.feed, b"\x01\x00\x00\x00\x01a")
        self.assertEqual(error.code, Status.INTERNAL)
        decoder = MessageDecoder(self.messages.append)
        error = self.assertRaises(GrpcError, decoder.feed, b"\x07\x00\x00\x00\x01a")
        self.assertEqual(error.code, Status.INTERNAL)

    def test_truncated(self) -> None:
        """
        A stream ending inside a message is INTERNAL; ending between messages is fine.
        """
        self.decoder.feed(encodeMessage(b"abc"))
        self.decoder.finish()
        self.decoder.feed(encodeMessage(b"abc")[:6])
        error = self.assertRaises(GrpcError, self.decoder.finish)
        self.assertEqual(error.code, Status.INTERNAL)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.binary(max_size=60), max_size=8), st.lists(st.integers(min_value=0, max_value=400), max_size=10))
    def test_anySplit(self, messages: List[bytes], cuts: List[int]) -> None:
        """
        However the stream is cut into chunks, the same messages come out.
        """
        out: List[bytes] = []
        decoder = MessageDecoder(out.append, maxBytes=100)
        data = b"".join(encodeMessage(m) for m in messages)
        points = sorted({min(c, len(data)) for c in cuts})
        start = 0
        for point in points + [len(data)]:
            decoder.feed(data[start:point])
            start = point
        decoder.finish()
        self.assertEqual(out, messages)


class StatusTests(SynchronousTestCase):
    """
    C{grpc-status}, C{grpc-message} and the response head.
    """

    def test_messageEncoding(self) -> None:
        """
        grpc-message percent-encodes bytes outside printable ASCII and '%', and decodes back.
        """
        text = "bad path: /a b%c\n\u00e9"
        encoded = encodeStatusMessage(text)
        self.assertEqual(encoded, b"bad path: /a b%25c%0A%C3%A9")
        self.assertEqual(decodeStatusMessage(encoded), text)

    def test_statusOf(self) -> None:
        """
        The status comes from the trailers, else the headers (trailers-only), else nothing.
        """
        trailers = H2Headers(statusFields(Status.NOT_FOUND, "Root not found"))
        self.assertEqual(statusOf(trailers, responseHeaders()), (5, "Root not found"))
        self.assertEqual(statusOf(None, responseHeaders(Status.UNIMPLEMENTED, "no")), (12, "no"))
        self.assertIsNone(statusOf(None, responseHeaders()))
        self.assertEqual(statusOf(H2Headers([(b"grpc-status", b"x")]))[0], Status.UNKNOWN)
        self.assertEqual(statusOf(H2Headers(statusFields(Status.OK))), (0, ""))

    def test_responseHeaders(self) -> None:
        """
        A response is :status 200 with content-type application/grpc; trailers-only adds the status.
        """
        self.assertEqual(responseHeaders().items, [(b":status", b"200"), (b"content-type", b"application/grpc")])
        self.assertEqual(
            responseHeaders(Status.RESOURCE_EXHAUSTED, "too big").items[2:],
            [(b"grpc-status", b"8"), (b"grpc-message", b"too big")],
        )

    def test_contentType(self) -> None:
        """
        application/grpc and its +proto and parameter forms are gRPC; others are not.
        """
        for value in (b"application/grpc", b"application/grpc+proto", b"Application/GRPC; charset=x"):
            self.assertTrue(isGrpcContentType(value), value)
        for value in (None, b"", b"application/json", b"application/grpcx", b"text/plain"):
            self.assertFalse(isGrpcContentType(value), value)

    def test_statusNames(self) -> None:
        """
        Codes have their gRPC names; errors show them.
        """
        self.assertEqual(Status.name(12), "UNIMPLEMENTED")
        self.assertEqual(Status.name(99), "99")
        self.assertEqual(str(GrpcError(Status.NOT_FOUND, "nope")), "NOT_FOUND: nope")

    def test_timeout(self) -> None:
        """
        grpc-timeout values parse to seconds; malformed ones are ignored.
        """
        self.assertEqual(parseTimeout(b"100m"), 0.1)
        self.assertEqual(parseTimeout(b"2S"), 2.0)
        self.assertEqual(parseTimeout(b"1H"), 3600.0)
        self.assertAlmostEqual(parseTimeout(b"5000u"), 0.005)
        for value in (None, b"", b"10", b"1x", b"123456789S", b"-1S"):
            self.assertIsNone(parseTimeout(value), value)
