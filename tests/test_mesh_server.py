"""
Tests for the mesh API server (L{linkerpy.namerd.mesh.server} and
L{linkerpy.namerd.mesh.services}): every method over a real HTTP/2
connection in memory (C{iosim}), against a L{Namerd} with an in-memory
store and a namer the test controls.
"""

from __future__ import annotations

import json
import random
from typing import Any, Dict, List, Optional, Tuple

from h2.errors import ErrorCodes
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, connect
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from linkerpy.interfaces import INamer
from linkerpy.mesh.client import MeshConnection, _Reader
from linkerpy.mesh.config import MeshAddress, MeshInterpreterConfig
from linkerpy.namerd.core import Namerd
from linkerpy.namerd.mesh.convert import dtabToProto, nameTreeToProto, pathToProto, replicasToAddr
from linkerpy.namerd.mesh.framing import GrpcError, Status, encodeMessage
from linkerpy.namerd.mesh.protos import codec_pb2, delegator_pb2, interpreter_pb2, policy_pb2, resolver_pb2
from linkerpy.namerd.mesh.server import GrpcServer
from linkerpy.namerd.mesh.services import MeshServices
from linkerpy.namerd.plugins import RetryConfig
from linkerpy.namerd.storage.memory import InMemoryStore
from linkerpy.naming import Activity, AddrBound, AddrNeg, AddrPending, Address, Bound, Dtab, Leaf, Neg, Path, Var
from linkerpy.protocol.h2.connection import H2Settings
from linkerpy.protocol.h2.pool import H2ClientPool
from linkerpy.protocol.h2.server import H2ServerFactory
from linkerpy.protocol.h2.testing import fetch
from linkerpy.protocol.http.stream import BytesBody
from linkerpy.telemetry.metrics import MetricsTree

INTERPRETER = "/io.linkerd.mesh.Interpreter/"
RESOLVER = "/io.linkerd.mesh.Resolver/"
DELEGATOR = "/io.linkerd.mesh.Delegator/"
CODEC = "/io.linkerd.mesh.Codec/"
POLICY = "/io.linkerd.mesh.Policy/"


def P(text: str) -> Any:
    return pathToProto(Path.read(text))


@implementer(INamer)
class FakeNamer:
    """
    A namer at C{/#/test} whose names and address sets the test controls;
    C{pending} names never answer.
    """

    def __init__(self) -> None:
        self.addrs: Dict[str, Var[Any]] = {}
        self.pending: List[str] = []

    def add(self, name: str, addr: Any = AddrPending) -> Var[Any]:
        var = self.addrs[name] = Var(addr)
        return var

    def lookup(self, path: Path) -> Any:
        if not path.elems:
            return Activity.value(Neg)
        name = path.elems[0].decode()
        if name in self.pending:
            return Activity.pending()
        if name not in self.addrs:
            return Activity.value(Neg)
        return Activity.value(Leaf(Bound(Path("#", "test", name), self.addrs[name], path.drop(1))))


def bound(*ports: int) -> AddrBound:
    return AddrBound([Address("127.0.0.1", p) for p in ports])


class MeshHarness:
    """
    A namerd with the mesh API and a client connection to it, all in
    memory: connections are completed by L{pump}.
    """

    def __init__(
        self,
        dtabs: Optional[Dict[str, str]] = None,
        policy: Optional[Dict[str, str]] = None,
        maxMessageBytes: int = 64 * 1024,
        maxStreams: int = 100,
        clientWindow: int = 65535,
    ) -> None:
        self.clock = MemoryReactorClock()
        self.store = InMemoryStore({"dtabs": dtabs or {}, "policy": policy or {}})
        self.namer = FakeNamer()
        self.namerd = Namerd(self.store, [(Path.read("/#/test"), self.namer)], self.clock)
        self.services = MeshServices(self.namerd, self.clock, requestTimeout=5.0)
        self.serverMetrics = MetricsTree()
        self.server = GrpcServer(
            self.services.methods(), self.clock, maxMessageBytes=maxMessageBytes, maxStreams=maxStreams,
            metrics=self.serverMetrics,
        )
        self.factory = H2ServerFactory(self.server, clock=self.clock)
        self.config = MeshInterpreterConfig(dst=MeshAddress("127.0.0.1", 4321), retry=RetryConfig(1.0, 8.0))
        self.metrics = MetricsTree()
        settings = H2Settings(initialStreamWindowBytes=clientWindow)
        self.pool = H2ClientPool(self.clock, "127.0.0.1", 4321, settings=settings)
        self.connection = MeshConnection(self.clock, self.config, self.metrics, rng=random.Random(7), pool=self.pool)
        self.pumps: List[Any] = []
        self.attempts = 0
        self.refusing = False

    def pump(self) -> None:
        """
        Complete new connection attempts and move every byte until quiet.
        """
        for _ in range(50):
            moved = False
            while self.attempts < len(self.clock.tcpClients):
                host, port, factory, timeout, bindAddress = self.clock.tcpClients[self.attempts]
                self.attempts += 1
                if self.refusing:
                    factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
                    continue
                client = factory.buildProtocol(None)
                server = self.factory.buildProtocol(None)
                pump = connect(
                    server, FakeTransport(server, True), client, FakeTransport(client, False), greet=False, clock=self.clock
                )
                self.pumps.append(pump)
                moved = True
            for pump in list(self.pumps):
                if pump.flush():
                    moved = True
            if not moved:
                return

    def dropConnections(self) -> None:
        """
        The server goes away: every connection is lost.
        """
        for pump in self.pumps:
            pump.serverIO.loseConnection()
        self.pump()
        self.pumps = []

    def unary(self, method: str, request: Any, responseType: Any) -> Deferred:
        d = self.connection.unary(method, request, responseType, timeout=30.0)
        self.pump()
        return d

    def open(self, method: str, request: Any, responseType: Any, headers: Any = ()) -> "RawStream":
        stream = RawStream(self, method, request, responseType, headers)
        self.pump()
        return stream


class RawStream:
    """
    A streaming call read by hand: C{messages}, and C{status} once it ended.
    """

    def __init__(self, h: MeshHarness, method: str, request: Any, responseType: Any, headers: Any = ()) -> None:
        self.h = h
        self.responseType = responseType
        self.messages: List[Any] = []
        self.status: Optional[Tuple[Optional[int], str]] = None
        self.response: Any = None
        head = h.connection.headers(method)
        for name, value in headers:
            head.add(name, value)
        if hasattr(request, "attach"):
            body = request
        else:
            body = BytesBody(request if isinstance(request, bytes) else encodeMessage(request.SerializeToString()))
        d = h.pool.request(head, body)
        d.addCallback(self._response)

    def _response(self, response: Any) -> None:
        self.response = response
        response.body.attach(_Reader(response, self._message, self._end))

    def _message(self, payload: bytes) -> None:
        self.messages.append(self.responseType.FromString(payload))

    def _end(self, code: Optional[int], message: str) -> None:
        self.status = (code, message)

    def cancel(self) -> None:
        self.response.body.abort(None, ErrorCodes.CANCEL)
        self.h.pump()


class HarnessCase(SynchronousTestCase):
    def harness(self, **kw: Any) -> MeshHarness:
        return MeshHarness(**kw)

    def grpcError(self, d: Deferred, code: int) -> GrpcError:
        error = self.failureResultOf(d, GrpcError).value
        self.assertEqual(error.code, code, error)
        return error


class InterpreterServiceTests(HarnessCase):
    """
    Interpreter: GetBoundTree and StreamBoundTree.
    """

    def test_getBoundTree(self) -> None:
        """
        A name binds through the namespace's dtab and the request's dtab.
        """
        h = self.harness(dtabs={"default": "/svc=>/#/test"})
        h.namer.add("a", bound(1))
        h.namer.add("b", bound(2))
        rsp = self.successResultOf(
            h.unary(INTERPRETER + "GetBoundTree", interpreter_pb2.BindReq(root=P("/default"), name=P("/svc/a/x")),
                    interpreter_pb2.BoundTreeRsp)
        )
        self.assertEqual(list(rsp.tree.leaf.id.elems), [b"#", b"test", b"a"])
        self.assertEqual(list(rsp.tree.leaf.residual.elems), [b"x"])
        request = interpreter_pb2.BindReq(
            root=P("/default"), name=P("/svc/a"), dtab=dtabToProto(Dtab.read("/svc/a=>/#/test/b"))
        )
        rsp = self.successResultOf(h.unary(INTERPRETER + "GetBoundTree", request, interpreter_pb2.BoundTreeRsp))
        self.assertEqual(list(rsp.tree.leaf.id.elems), [b"#", b"test", b"b"])
        request = interpreter_pb2.BindReq(root=P("/default"), name=P("/nothing"))
        rsp = self.successResultOf(h.unary(INTERPRETER + "GetBoundTree", request, interpreter_pb2.BoundTreeRsp))
        self.assertEqual(rsp.tree.WhichOneof("node"), "neg")

    def test_badRequests(self) -> None:
        """
        A missing or malformed root is INVALID_ARGUMENT, a missing name NOT_FOUND, a bad dtab INVALID_ARGUMENT.
        """
        h = self.harness()
        method = INTERPRETER + "GetBoundTree"
        error = self.grpcError(h.unary(method, interpreter_pb2.BindReq(name=P("/a")), interpreter_pb2.BoundTreeRsp),
                               Status.INVALID_ARGUMENT)
        self.assertEqual(error.message, "No namespace specified")
        for root in ("/a/b", "/", "/.."):
            request = interpreter_pb2.BindReq(root=P(root), name=P("/a"))
            self.grpcError(h.unary(method, request, interpreter_pb2.BoundTreeRsp), Status.INVALID_ARGUMENT)
        error = self.grpcError(h.unary(method, interpreter_pb2.BindReq(root=P("/default")), interpreter_pb2.BoundTreeRsp),
                               Status.NOT_FOUND)
        self.assertEqual(error.message, "No name given")
        request = interpreter_pb2.BindReq(root=P("/default"), name=P("/a"))
        request.dtab.dentries.add()
        self.grpcError(h.unary(method, request, interpreter_pb2.BoundTreeRsp), Status.INVALID_ARGUMENT)

    def test_failedBinding(self) -> None:
        """
        A binding that fails (a dtab loop) is UNKNOWN with the reason.
        """
        h = self.harness(dtabs={"default": "/a=>/b;/b=>/a"})
        error = self.grpcError(
            h.unary(INTERPRETER + "GetBoundTree", interpreter_pb2.BindReq(root=P("/default"), name=P("/a")),
                    interpreter_pb2.BoundTreeRsp),
            Status.UNKNOWN,
        )
        self.assertTrue(error.message)

    def test_timeout(self) -> None:
        """
        A name whose namer never answers gets DEADLINE_EXCEEDED after the request timeout.
        """
        h = self.harness(dtabs={"default": "/svc=>/#/test"})
        h.namer.pending.append("slow")
        d = h.unary(INTERPRETER + "GetBoundTree", interpreter_pb2.BindReq(root=P("/default"), name=P("/svc/slow")),
                    interpreter_pb2.BoundTreeRsp)
        h.clock.advance(4.9)
        h.pump()
        self.assertNoResult(d)
        h.clock.advance(0.2)
        h.pump()
        self.grpcError(d, Status.DEADLINE_EXCEEDED)

    def test_grpcTimeout(self) -> None:
        """
        A grpc-timeout shorter than the request timeout ends the call with DEADLINE_EXCEEDED.
        """
        h = self.harness(dtabs={"default": "/svc=>/#/test"})
        h.namer.pending.append("slow")
        stream = h.open(INTERPRETER + "GetBoundTree", interpreter_pb2.BindReq(root=P("/default"), name=P("/svc/slow")),
                        interpreter_pb2.BoundTreeRsp, headers=[(b"grpc-timeout", b"100m")])
        self.assertIsNone(stream.status)
        h.clock.advance(0.1)
        h.pump()
        self.assertEqual(stream.status[0], Status.DEADLINE_EXCEEDED)
        self.assertEqual(h.server.calls, set())

    def test_streamBoundTree(self) -> None:
        """
        The stream sends the tree, a new message when the dtab changes the binding, and nothing for changes that
        leave it the same (an address change, a dtab rewritten to the same effect).
        """
        h = self.harness(dtabs={"default": "/svc=>/#/test"})
        a = h.namer.add("a", bound(1))
        h.namer.add("b", bound(2))
        stream = h.open(INTERPRETER + "StreamBoundTree",
                        interpreter_pb2.BindReq(root=P("/default"), name=P("/svc/a")), interpreter_pb2.BoundTreeRsp)
        self.assertEqual(len(stream.messages), 1)
        self.assertEqual(list(stream.messages[0].tree.leaf.id.elems), [b"#", b"test", b"a"])
        a.update(bound(1, 3))
        self.successResultOf(h.store.update("dtabs", "default", "/svc => /#/test ;", None))
        h.pump()
        self.assertEqual(len(stream.messages), 1)
        self.successResultOf(h.store.update("dtabs", "default", "/svc=>/#/test;/svc/a=>/#/test/b", None))
        h.pump()
        self.assertEqual(len(stream.messages), 2)
        self.assertEqual(list(stream.messages[1].tree.leaf.id.elems), [b"#", b"test", b"b"])
        self.successResultOf(h.store.update("dtabs", "default", "/svc/a=>/#/test/a & /#/test/b", None))
        h.pump()
        self.assertEqual(stream.messages[2].tree.WhichOneof("node"), "union")
        self.assertIsNone(stream.status)

    def test_streamEndsOnFailure(self) -> None:
        """
        A binding that starts failing ends the stream with UNKNOWN.
        """
        h = self.harness(dtabs={"default": "/svc=>/#/test"})
        h.namer.add("a", bound(1))
        stream = h.open(INTERPRETER + "StreamBoundTree",
                        interpreter_pb2.BindReq(root=P("/default"), name=P("/svc/a")), interpreter_pb2.BoundTreeRsp)
        self.successResultOf(h.store.update("dtabs", "default", "/svc/a=>/x;/x=>/svc/a", None))
        h.pump()
        self.assertEqual(len(stream.messages), 1)
        self.assertEqual(stream.status[0], Status.UNKNOWN)
        self.assertEqual(h.server.calls, set())

    def test_cancelStopsWatch(self) -> None:
        """
        A client's RST_STREAM ends the call and releases everything it observed.
        """
        h = self.harness(dtabs={"default": "/svc=>/#/test"})
        h.namer.add("a", bound(1))
        stored = h.store.observe("dtabs", "default")
        stream = h.open(INTERPRETER + "StreamBoundTree",
                        interpreter_pb2.BindReq(root=P("/default"), name=P("/svc/a")), interpreter_pb2.BoundTreeRsp)
        self.assertEqual(len(h.server.calls), 1)
        self.assertGreater(stored.observerCount, 0)
        self.assertEqual(h.serverMetrics.gauge("streams").value, 1)
        stream.cancel()
        self.assertEqual(h.server.calls, set())
        self.assertEqual(stored.observerCount, 0)
        self.assertEqual(h.serverMetrics.gauge("streams").value, 0)

    def test_connectionLostStopsWatch(self) -> None:
        """
        A lost connection ends the calls and releases what they observed.
        """
        h = self.harness(dtabs={"default": "/svc=>/#/test"})
        a = h.namer.add("a", bound(1))
        stream = h.open(RESOLVER + "StreamReplicas", resolver_pb2.ReplicasReq(id=P("/#/test/a")), resolver_pb2.Replicas)
        self.assertEqual(a.observerCount, 1)
        h.dropConnections()
        self.assertEqual(stream.status[0], None)
        self.assertEqual(h.server.calls, set())
        self.assertEqual(a.observerCount, 0)

    def test_slowClientKeepsLatest(self) -> None:
        """
        While a client's window is closed, the server holds only the latest message, and sends it when it reopens.
        """
        h = self.harness(dtabs={"default": "/svc=>/#/test"}, clientWindow=64)
        a = h.namer.add("a", bound(1))
        stream = h.open(RESOLVER + "StreamReplicas", resolver_pb2.ReplicasReq(id=P("/#/test/a")), resolver_pb2.Replicas)
        self.assertEqual(len(stream.messages), 1)
        stream.response.body.pause()
        for n in range(2, 40):
            a.update(bound(*range(1, n + 1)))
            h.pump()
        (call,) = h.server.calls
        self.assertLessEqual(len(call.held or b""), 2000)
        stream.response.body.resume()
        h.pump()
        addrs = [replicasToAddr(m) for m in stream.messages]
        self.assertEqual(addrs[-1], bound(*range(1, 40)))
        self.assertLess(len(addrs), 5)


class ResolverServiceTests(HarnessCase):
    """
    Resolver: GetReplicas and StreamReplicas.
    """

    def test_getReplicas(self) -> None:
        """
        A concrete name's replicas; an inet name; a missing id is a failed result; an unknown one Neg.
        """
        h = self.harness()
        h.namer.add("a", bound(1, 2))
        rsp = self.successResultOf(h.unary(RESOLVER + "GetReplicas", resolver_pb2.ReplicasReq(id=P("/#/test/a")),
                                           resolver_pb2.Replicas))
        self.assertEqual(replicasToAddr(rsp), bound(1, 2))
        rsp = self.successResultOf(h.unary(RESOLVER + "GetReplicas",
                                           resolver_pb2.ReplicasReq(id=P("/%/io.l5d.port/9/$/inet/127.0.0.1/8080")),
                                           resolver_pb2.Replicas))
        self.assertEqual(replicasToAddr(rsp), bound(8080))
        rsp = self.successResultOf(h.unary(RESOLVER + "GetReplicas", resolver_pb2.ReplicasReq(), resolver_pb2.Replicas))
        self.assertEqual(rsp.failed.message, "No ID provided")
        rsp = self.successResultOf(h.unary(RESOLVER + "GetReplicas", resolver_pb2.ReplicasReq(id=P("/#/test/zz")),
                                           resolver_pb2.Replicas))
        self.assertEqual(rsp.WhichOneof("result"), "neg")

    def test_getPendingReplicas(self) -> None:
        """
        Replicas still unknown after the request timeout are answered as pending.
        """
        h = self.harness()
        h.namer.add("a")
        d = h.unary(RESOLVER + "GetReplicas", resolver_pb2.ReplicasReq(id=P("/#/test/a")), resolver_pb2.Replicas)
        self.assertNoResult(d)
        h.clock.advance(5.0)
        h.pump()
        self.assertEqual(self.successResultOf(d).WhichOneof("result"), "pending")

    def test_streamReplicas(self) -> None:
        """
        The stream sends every distinct address set, pending included, and nothing for repeats.
        """
        h = self.harness()
        a = h.namer.add("a")
        stream = h.open(RESOLVER + "StreamReplicas", resolver_pb2.ReplicasReq(id=P("/#/test/a")), resolver_pb2.Replicas)
        a.update(bound(1))
        h.pump()
        # Different values, the same message: not sent again.
        a.update(AddrBound([Address("127.0.0.1", 1), Address("not-an-ip", 2)]))
        h.pump()
        a.update(AddrBound([Address("127.0.0.1", 1, meta={"zone": 1})]))
        h.pump()
        a.update(AddrBound([Address("127.0.0.1", 1, meta={"zone": "1"})]))
        h.pump()
        a.update(AddrNeg)
        h.pump()
        self.assertEqual(
            [replicasToAddr(m) for m in stream.messages],
            [AddrPending, bound(1), AddrBound([Address("127.0.0.1", 1, meta={"zone": "1"})]), AddrNeg],
        )

    def test_streamWithoutId(self) -> None:
        """
        StreamReplicas without an id answers one failed result and ends.
        """
        h = self.harness()
        stream = h.open(RESOLVER + "StreamReplicas", resolver_pb2.ReplicasReq(), resolver_pb2.Replicas)
        self.assertEqual([m.failed.message for m in stream.messages], ["No ID provided"])
        self.assertEqual(stream.status, (Status.OK, ""))


class DelegatorServiceTests(HarnessCase):
    """
    Delegator: dtabs and delegation trees.
    """

    def test_getDtab(self) -> None:
        """
        The stored dtab and its version; a missing namespace is NOT_FOUND.
        """
        h = self.harness(dtabs={"default": "/svc=>/#/test"})
        rsp = self.successResultOf(h.unary(DELEGATOR + "GetDtab", delegator_pb2.DtabReq(root=P("/default")),
                                           delegator_pb2.DtabRsp))
        self.assertEqual(rsp.dtab.version.id, b"\x00" * 7 + b"\x01")
        self.assertEqual(len(rsp.dtab.dtab.dentries), 1)
        error = self.grpcError(h.unary(DELEGATOR + "GetDtab", delegator_pb2.DtabReq(root=P("/other")),
                                       delegator_pb2.DtabRsp), Status.NOT_FOUND)
        self.assertEqual(error.message, "Root not found")
        self.grpcError(h.unary(DELEGATOR + "GetDtab", delegator_pb2.DtabReq(), delegator_pb2.DtabRsp),
                       Status.INVALID_ARGUMENT)

    def test_streamDtab(self) -> None:
        """
        The stream sends each new version, and ends with NOT_FOUND when the namespace is deleted.
        """
        h = self.harness(dtabs={"default": "/a=>/b"})
        stream = h.open(DELEGATOR + "StreamDtab", delegator_pb2.DtabReq(root=P("/default")), delegator_pb2.DtabRsp)
        self.successResultOf(h.store.update("dtabs", "default", "/a=>/c", None))
        h.pump()
        self.assertEqual(len(stream.messages), 2)
        self.assertEqual(stream.messages[1].dtab.version.id, b"\x00" * 7 + b"\x02")
        self.successResultOf(h.store.delete("dtabs", "default"))
        h.pump()
        self.assertEqual(stream.status, (Status.NOT_FOUND, "Root not found"))

    def test_getDelegateTree(self) -> None:
        """
        The delegation of a name, and the same as the one value of StreamDelegateTree.
        """
        h = self.harness(dtabs={"default": "/svc=>/#/test"})
        h.namer.add("a", bound(1))
        request = delegator_pb2.DelegateTreeReq(root=P("/default"), tree=nameTreeToProto(Leaf(Path.read("/svc/a"))))
        rsp = self.successResultOf(h.unary(DELEGATOR + "GetDelegateTree", request, delegator_pb2.DelegateTreeRsp))
        tree = rsp.tree
        self.assertEqual(list(tree.path.elems), [b"svc", b"a"])
        self.assertEqual(tree.WhichOneof("node"), "delegate")
        self.assertEqual(list(tree.delegate.leaf.id.elems), [b"#", b"test", b"a"])
        stream = h.open(DELEGATOR + "StreamDelegateTree", request, delegator_pb2.DelegateTreeRsp)
        self.assertEqual(stream.messages, [rsp])
        self.assertEqual(stream.status, (Status.OK, ""))
        error = self.grpcError(h.unary(DELEGATOR + "GetDelegateTree", delegator_pb2.DelegateTreeReq(root=P("/default")),
                                       delegator_pb2.DelegateTreeRsp), Status.NOT_FOUND)
        self.assertEqual(error.message, "No name given")

    def test_delegateAlt(self) -> None:
        """
        A tree of several paths is delegated leaf by leaf under an alt node.
        """
        h = self.harness(dtabs={"default": "/svc=>/#/test"})
        h.namer.add("a", bound(1))
        from linkerpy.naming import NameTree

        request = delegator_pb2.DelegateTreeReq(root=P("/default"), tree=nameTreeToProto(NameTree.read("/svc/a | /nope")))
        rsp = self.successResultOf(h.unary(DELEGATOR + "GetDelegateTree", request, delegator_pb2.DelegateTreeRsp))
        self.assertEqual([t.WhichOneof("node") for t in rsp.tree.alt.trees], ["delegate", "neg"])


class CodecServiceTests(HarnessCase):
    """
    Codec: text to messages and back.
    """

    def test_codec(self) -> None:
        """
        Dtabs and paths are read and shown; text that does not parse is INVALID_ARGUMENT.
        """
        h = self.harness()
        rsp = self.successResultOf(h.unary(CODEC + "ReadDtab", codec_pb2.ReadDtabReq(text="/a => /b | ~;/c=>/d"),
                                           codec_pb2.ReadDtabRsp))
        shown = self.successResultOf(h.unary(CODEC + "ShowDtab", codec_pb2.ShowDtabReq(dtab=rsp.dtab),
                                             codec_pb2.ShowDtabRsp))
        self.assertEqual(shown.text, "/a=>/b | ~;/c=>/d")
        rsp = self.successResultOf(h.unary(CODEC + "ReadPath", codec_pb2.ReadPathReq(text="/svc/h\\x2fi"),
                                           codec_pb2.ReadPathRsp))
        self.assertEqual(list(rsp.path.elems), [b"svc", b"h/i"])
        shown = self.successResultOf(h.unary(CODEC + "ShowPath", codec_pb2.ShowPathReq(path=rsp.path),
                                             codec_pb2.ShowPathRsp))
        self.assertEqual(shown.text, "/svc/\\x68\\x2f\\x69")
        self.grpcError(h.unary(CODEC + "ReadDtab", codec_pb2.ReadDtabReq(text="/a =>"), codec_pb2.ReadDtabRsp),
                       Status.INVALID_ARGUMENT)
        self.grpcError(h.unary(CODEC + "ReadPath", codec_pb2.ReadPathReq(text="no slash"), codec_pb2.ReadPathRsp),
                       Status.INVALID_ARGUMENT)


class PolicyServiceTests(HarnessCase):
    """
    Policy (linkerpy's extension).
    """

    DOCUMENT = {"service": {"kind": "io.l5d.static", "configs": [{"prefix": "/svc/a", "totalTimeoutMs": 600}]}}

    def test_getPolicy(self) -> None:
        """
        The stored document and its version; a missing one is NOT_FOUND.
        """
        text = json.dumps(self.DOCUMENT)
        h = self.harness(policy={"default": text})
        rsp = self.successResultOf(h.unary(POLICY + "GetPolicy", policy_pb2.PolicyReq(root=P("/default")),
                                           policy_pb2.PolicyRsp))
        self.assertEqual(json.loads(rsp.policy.json), self.DOCUMENT)
        self.assertEqual(len(rsp.policy.version), 8)
        self.grpcError(h.unary(POLICY + "GetPolicy", policy_pb2.PolicyReq(root=P("/x")), policy_pb2.PolicyRsp),
                       Status.NOT_FOUND)

    def test_streamPolicy(self) -> None:
        """
        The stream starts with "no document", then sends each version, and "no document" again after a delete.
        """
        h = self.harness()
        stream = h.open(POLICY + "StreamPolicy", policy_pb2.PolicyReq(root=P("/default")), policy_pb2.PolicyRsp)
        self.successResultOf(h.store.update("policy", "default", json.dumps(self.DOCUMENT), None))
        h.pump()
        self.successResultOf(h.store.delete("policy", "default"))
        h.pump()
        self.assertEqual([m.HasField("policy") for m in stream.messages], [False, True, False])
        self.assertEqual(json.loads(stream.messages[1].policy.json), self.DOCUMENT)
        self.assertIsNone(stream.status)


class ProtocolTests(HarnessCase):
    """
    gRPC over HTTP/2: methods, framing and limits.
    """

    def test_unknownMethod(self) -> None:
        """
        An unknown method is UNIMPLEMENTED (trailers-only).
        """
        h = self.harness()
        stream = h.open("/io.linkerd.mesh.Nope/Nothing", codec_pb2.ReadPathReq(text="/a"), codec_pb2.ReadPathRsp)
        self.assertEqual(stream.status, (Status.UNIMPLEMENTED, "unknown method /io.linkerd.mesh.Nope/Nothing"))
        self.assertEqual(stream.response.head.headers.get(b"grpc-status"), b"12")
        self.assertEqual(h.serverMetrics.counter("status", "12").value, 1)

    def test_notGrpc(self) -> None:
        """
        A GET gets 405 and a POST that is not application/grpc gets 415.
        """
        h = self.harness()
        head = h.connection.headers(CODEC + "ReadPath")
        head.set(b":method", b"GET")
        d = fetch(h.pool, head)
        h.pump()
        self.assertEqual(self.successResultOf(d).status, 405)
        head = h.connection.headers(CODEC + "ReadPath")
        head.set(b"content-type", b"application/json")
        d = fetch(h.pool, head, b"{}")
        h.pump()
        self.assertEqual(self.successResultOf(d).status, 415)

    def test_oversized(self) -> None:
        """
        A request message over the limit is RESOURCE_EXHAUSTED, refused from its length prefix.
        """
        h = self.harness(maxMessageBytes=1024)
        d = h.unary(CODEC + "ReadPath", codec_pb2.ReadPathReq(text="/" + "a" * 2000), codec_pb2.ReadPathRsp)
        error = self.grpcError(d, Status.RESOURCE_EXHAUSTED)
        self.assertIn("1024", error.message)
        rsp = self.successResultOf(h.unary(CODEC + "ReadPath", codec_pb2.ReadPathReq(text="/" + "a" * 900),
                                           codec_pb2.ReadPathRsp))
        self.assertEqual(len(rsp.path.elems[0]), 900)

    def test_requestInManyFrames(self) -> None:
        """
        A request message split over many DATA frames is reassembled.
        """
        h = self.harness()
        payload = encodeMessage(codec_pb2.ReadPathReq(text="/svc/" + "x" * 200).SerializeToString())
        stream = h.open(CODEC + "ReadPath", _Chunked(payload, 7), codec_pb2.ReadPathRsp)
        self.assertEqual(stream.status, (Status.OK, ""))
        self.assertEqual(list(stream.messages[0].path.elems), [b"svc", b"x" * 200])

    def test_twoRequestMessages(self) -> None:
        """
        Two request messages in one DATA frame, for a method taking one, is INTERNAL.
        """
        h = self.harness()
        one = encodeMessage(codec_pb2.ReadPathReq(text="/a").SerializeToString())
        stream = h.open(CODEC + "ReadPath", one + one, codec_pb2.ReadPathRsp)
        self.assertEqual(stream.status[0], Status.INTERNAL)
        self.assertEqual(stream.messages, [])

    def test_noRequestMessage(self) -> None:
        """
        A request without a message, or with a truncated one, is INTERNAL.
        """
        h = self.harness()
        for payload in (b"", encodeMessage(b"abc")[:5]):
            stream = h.open(CODEC + "ReadPath", payload, codec_pb2.ReadPathRsp)
            self.assertEqual(stream.status[0], Status.INTERNAL, payload)

    def test_garbageMessage(self) -> None:
        """
        A request message that is not a valid protobuf is INTERNAL.
        """
        h = self.harness()
        stream = h.open(CODEC + "ReadPath", encodeMessage(b"\xff\xff\xff"), codec_pb2.ReadPathRsp)
        self.assertEqual(stream.status[0], Status.INTERNAL)

    def test_slowRequest(self) -> None:
        """
        A request that never ends is DEADLINE_EXCEEDED after the read timeout, and the call is forgotten.
        """
        h = self.harness()
        stream = h.open(CODEC + "ReadPath", _Chunked(encodeMessage(b"")[:3], 3, end=False), codec_pb2.ReadPathRsp)
        self.assertEqual(len(h.server.calls), 1)
        h.clock.advance(9.9)
        h.pump()
        self.assertIsNone(stream.status)
        h.clock.advance(0.2)
        h.pump()
        self.assertEqual(stream.status[0], Status.DEADLINE_EXCEEDED)
        self.assertEqual(h.server.calls, set())

    def test_maxStreams(self) -> None:
        """
        Streaming calls beyond maxStreams are RESOURCE_EXHAUSTED; unary calls still work.
        """
        h = self.harness(maxStreams=2)
        streams = [
            h.open(POLICY + "StreamPolicy", policy_pb2.PolicyReq(root=P(f"/ns{i}")), policy_pb2.PolicyRsp)
            for i in range(3)
        ]
        self.assertEqual([s.status for s in streams[:2]], [None, None])
        self.assertEqual(streams[2].status[0], Status.RESOURCE_EXHAUSTED)
        self.successResultOf(h.unary(CODEC + "ReadPath", codec_pb2.ReadPathReq(text="/a"), codec_pb2.ReadPathRsp))

    def test_shutdown(self) -> None:
        """
        Shutting the server down ends open streams with UNAVAILABLE.
        """
        h = self.harness()
        stream = h.open(POLICY + "StreamPolicy", policy_pb2.PolicyReq(root=P("/default")), policy_pb2.PolicyRsp)
        h.server.shutdown()
        h.pump()
        self.assertEqual(stream.status[0], Status.UNAVAILABLE)

    def test_handlerError(self) -> None:
        """
        An unexpected error in a handler is INTERNAL and the connection survives.
        """
        h = self.harness()

        def broken(request: Any) -> Any:
            raise RuntimeError("boom")

        h.server.methods[b"/io.linkerd.mesh.Codec/ReadPath"].handler = broken
        self.grpcError(h.unary(CODEC + "ReadPath", codec_pb2.ReadPathReq(text="/a"), codec_pb2.ReadPathRsp),
                       Status.INTERNAL)
        self.flushLoggedErrors(RuntimeError)
        self.successResultOf(h.unary(CODEC + "ShowPath", codec_pb2.ShowPathReq(path=P("/a")), codec_pb2.ShowPathRsp))


class _Chunked:
    """
    A request body delivered in small writes (one DATA frame each).
    """

    length = None
    finished = False

    def __init__(self, data: bytes, size: int, end: bool = True) -> None:
        self.data = data
        self.size = size
        self.end = end

    def attach(self, consumer: Any) -> None:
        for i in range(0, len(self.data), self.size):
            consumer.dataReceived(self.data[i : i + self.size])
        if self.end:
            consumer.bodyEnd(None)

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def abort(self, reason: Any = None) -> None:
        pass
