"""
gRPC through the h2 router: C{grpcio} servers and clients (raw-bytes
serializers, no generated code) around an in-process router on
127.0.0.1.
"""

from __future__ import annotations

import os
import threading
from concurrent import futures
from typing import Any, Dict, List

from twisted.internet import defer, threads
from twisted.trial.unittest import TestCase

from tests.test_h2_router import RouterHarness, metric

# gRPC's fork handlers restart its threads in forked children; the tests
# spawn processes (twistd, nghttp) while gRPC is loaded, and Twisted closes
# the child's descriptors before exec, which those threads trip over.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

try:
    import grpc
except ImportError:  # pragma: no cover - grpcio is a CPython test dependency
    grpc = None

TIMEOUT = 120
SERVICE = "pkg.Echo"


def requireGrpc(case: TestCase) -> None:
    if grpc is None:
        if os.environ.get("LINKERPY_REQUIRE_TOOLS"):
            raise AssertionError("grpcio is required (pip install '.[test]')")
        case.skipTest("grpcio is not installed")


class Origin:
    """
    A grpcio server with scripted methods; counts the calls it receives.
    """

    def __init__(self, case: TestCase, name: str = SERVICE, workers: int = 16) -> None:
        self.name = name
        self.calls: Dict[str, int] = {}
        self.lock = threading.Lock()
        self.barrier: Any = None
        self.downloadChunk = b""
        self.downloadCount = 0
        handler = grpc.method_handlers_generic_handler(
            name,
            {
                "Unary": grpc.unary_unary_rpc_method_handler(self.unary),
                "Bidi": grpc.stream_stream_rpc_method_handler(self.bidi),
                "Fetch": grpc.unary_stream_rpc_method_handler(self.fetch),
                "Upload": grpc.stream_unary_rpc_method_handler(self.upload),
                "Download": grpc.unary_stream_rpc_method_handler(self.download),
            },
        )
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        case.addCleanup(self.server.stop, None)

    def count(self, key: str) -> int:
        with self.lock:
            n = self.calls[key] = self.calls.get(key, 0) + 1
            return n

    def unary(self, request: bytes, context: Any) -> bytes:
        n = self.count(request.decode())
        if request == b"unavailable-once" and n == 1:
            context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        if request == b"invalid":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad argument")
        if request.startswith(b"wait") and self.barrier is not None:
            self.barrier.wait(timeout=60)
        return self.name.encode() + b":" + request

    def bidi(self, requests: Any, context: Any) -> Any:
        for message in requests:
            yield message.upper()

    def fetch(self, request: bytes, context: Any) -> Any:
        n = self.count("fetch:" + request.decode())
        if request == b"flaky" and n == 1:
            yield b"partial from the first attempt"
            context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        for i in range(3):
            yield b"part %d" % i

    def download(self, request: bytes, context: Any) -> Any:
        for _ in range(self.downloadCount):
            yield self.downloadChunk

    def upload(self, requests: Any, context: Any) -> bytes:
        total = 0
        for message in requests:
            total += len(message)
        return b"%d" % total


class GrpcTests(TestCase):
    """
    grpcio clients and servers through the h2 router.
    """

    timeout = TIMEOUT

    def setUp(self) -> None:
        requireGrpc(self)
        self.h = RouterHarness(self)

    def router(self, origins: List[Origin], classifier: str = "io.l5d.h2.grpc.default") -> Any:
        dtab = "; ".join(f"/svc/{o.name} => /$/inet/127.0.0.1/{o.port}" for o in origins)
        router = self.h.router(
            {
                "label": "grpc",
                "identifier": {"kind": "io.l5d.header.path", "segments": 1},
                "dtab": dtab,
                "service": {"kind": "io.l5d.global", "responseClassifier": {"kind": classifier}},
            }
        )
        self.channel = grpc.insecure_channel(f"127.0.0.1:{router.port}")
        self.addCleanup(self.channel.close)
        return router

    def call(self, method: str, request: Any, service: str = SERVICE, kind: str = "unary_unary") -> defer.Deferred:
        stub = getattr(self.channel, kind)(f"/{service}/{method}")

        def run() -> Any:
            try:
                result = stub(request, timeout=60)
                if kind in ("unary_stream", "stream_stream"):
                    return list(result)
                return result
            except grpc.RpcError as e:
                return (e.code(), e.details())

        return threads.deferToThread(run)

    @defer.inlineCallbacks
    def test_unaryRoutedByService(self) -> Any:
        """
        Unary calls reach the origin serving their gRPC service (named by
        C{io.l5d.header.path} with one segment).
        """
        echo = Origin(self)
        other = Origin(self, "pkg.Other")
        self.router([echo, other])
        self.assertEqual((yield self.call("Unary", b"hi")), b"pkg.Echo:hi")
        self.assertEqual((yield self.call("Unary", b"hi", service="pkg.Other")), b"pkg.Other:hi")

    @defer.inlineCallbacks
    def test_streaming(self) -> Any:
        """
        Bidirectional, server-streaming and client-streaming calls work.
        """
        self.router([Origin(self)])
        replies = yield self.call("Bidi", iter([b"a", b"b", b"c"]), kind="stream_stream")
        self.assertEqual(replies, [b"A", b"B", b"C"])
        parts = yield self.call("Fetch", b"x", kind="unary_stream")
        self.assertEqual(parts, [b"part 0", b"part 1", b"part 2"])
        total = yield self.call("Upload", iter([b"x" * 100000] * 20), kind="stream_unary")
        self.assertEqual(total, b"2000000")

    @defer.inlineCallbacks
    def test_unavailableRetried(self) -> Any:
        """
        Under C{io.l5d.h2.grpc.default}, status 14 (UNAVAILABLE) is retried:
        the client sees the second attempt's success.
        """
        origin = Origin(self)
        router = self.router([origin])
        self.assertEqual((yield self.call("Unary", b"unavailable-once")), b"pkg.Echo:unavailable-once")
        self.assertEqual(origin.calls["unavailable-once"], 2)
        self.assertEqual(metric(router, f"rt/grpc/service/svc/{SERVICE}/retries/total"), 1)
        self.assertEqual(metric(router, f"rt/grpc/service/svc/{SERVICE}/success"), 1)

    @defer.inlineCallbacks
    def test_invalidArgumentNotRetried(self) -> Any:
        """
        Status 3 (INVALID_ARGUMENT) is a failure that is not retried.
        """
        origin = Origin(self)
        router = self.router([origin])
        code, details = yield self.call("Unary", b"invalid")
        self.assertEqual((code, details), (grpc.StatusCode.INVALID_ARGUMENT, "bad argument"))
        self.assertEqual(origin.calls["invalid"], 1)
        self.assertEqual(metric(router, f"rt/grpc/service/svc/{SERVICE}/retries/total"), 0)
        self.assertEqual(metric(router, f"rt/grpc/service/svc/{SERVICE}/failures"), 1)

    @defer.inlineCallbacks
    def test_unavailableInTrailersRetried(self) -> Any:
        """
        A streamed response whose trailers say UNAVAILABLE, ending within
        the classification window, is retried: the client only sees the
        second attempt's messages.
        """
        origin = Origin(self)
        self.router([origin])
        parts = yield self.call("Fetch", b"flaky", kind="unary_stream")
        self.assertEqual(parts, [b"part 0", b"part 1", b"part 2"])
        self.assertEqual(origin.calls["fetch:flaky"], 2)

    @defer.inlineCallbacks
    def test_neverRetryable(self) -> Any:
        """
        Under C{io.l5d.h2.grpc.neverRetryable}, UNAVAILABLE is returned.
        """
        origin = Origin(self)
        self.router([origin], classifier="io.l5d.h2.grpc.neverRetryable")
        code, _ = yield self.call("Unary", b"unavailable-once")
        self.assertEqual(code, grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(origin.calls["unavailable-once"], 1)

    @defer.inlineCallbacks
    def test_hundredConcurrentStreamsOneConnection(self) -> Any:
        """
        100 concurrent calls from one channel are multiplexed as streams of
        one downstream connection and one upstream connection: the origin
        holds all of them at once before answering.
        """
        origin = Origin(self, workers=110)
        origin.barrier = threading.Barrier(100)
        router = self.router([origin])
        stub = self.channel.unary_unary(f"/{SERVICE}/Unary")

        def run() -> List[bytes]:
            calls = [stub.future(b"wait %d" % i, timeout=90) for i in range(100)]
            return [c.result() for c in calls]

        replies = yield threads.deferToThread(run)
        self.assertEqual(replies, [b"pkg.Echo:wait %d" % i for i in range(100)])
        self.assertFalse(origin.barrier.broken)
        self.assertEqual(metric(router, f"rt/grpc/server/127.0.0.1/{router.port}/connects"), 1)
        self.assertEqual(metric(router, f"rt/grpc/client/$/inet/127.0.0.1/{origin.port}/connects"), 1)
        self.assertEqual(metric(router, f"rt/grpc/server/127.0.0.1/{router.port}/success"), 100)
