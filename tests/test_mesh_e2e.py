"""
End-to-end tests of the mesh API: real C{twistd linkerpy-namerd} and
C{twistd linkerpy} processes on 127.0.0.1.

  - a C{grpcio} client (generic channel calls with the committed message
    classes) calls every service and gets the documented answers; the
    streams deliver updates after a dtab PUT, a hand edit of the stored
    dtab file and a change of an C{io.l5d.fs} namer file;
  - a router using the C{io.l5d.mesh} interpreter and policy source moves
    its traffic after a dtab PUT and changes a service's timeout after a
    policy PUT (the delays are reported, not asserted), keeps routing when
    namerd is killed, and reconnects to a restarted namerd;
  - C{conf/mesh.yaml} and C{conf/linkerpy-mesh.yaml} run as written
    (ports and directories rewritten).
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

import yaml
from twisted.internet import defer, reactor, threads
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from linkerpy.namerd.mesh.convert import dtabFromProto, nameTreeToProto, pathToProto, replicasToAddr
from linkerpy.namerd.mesh.protos import codec_pb2, delegator_pb2, interpreter_pb2, policy_pb2, resolver_pb2
from linkerpy.namerd.testing import freePort
from linkerpy.naming import AddrBound, Address, Leaf, Path
from tests.support import REPO, TwistdProcess, httpGet, jsonOf, waitUntil
from tests.test_namerd_e2e import Origin

# gRPC's fork handlers trip over the processes these tests spawn (see test_h2_grpc).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

try:
    import grpc
except ImportError:  # pragma: no cover - grpcio is a CPython test dependency
    grpc = None

TIMEOUT = 60.0
MESH = "interface io.l5d.mesh"
API = "interface io.l5d.httpController"
RETRY = {"baseSeconds": 0.1, "maxSeconds": 0.5}
POLICY_DOC = {"service": {"kind": "io.l5d.static", "configs": [{"prefix": "/svc/hello", "totalTimeoutMs": 600}]}}


def P(text: str) -> Any:
    return pathToProto(Path.read(text))


def requireGrpc(case: TestCase) -> None:
    if grpc is None:
        if os.environ.get("LINKERPY_REQUIRE_TOOLS"):
            raise AssertionError("grpcio is required (pip install '.[test]')")
        case.skipTest("grpcio is not installed")


class GrpcClient:
    """
    grpcio calls made in threads (they block), with the committed message classes.
    """

    def __init__(self, case: TestCase, address: Tuple[str, int]) -> None:
        self.channel = grpc.insecure_channel(f"{address[0]}:{address[1]}")
        case.addCleanup(self.channel.close)
        self.streams: List[Any] = []
        case.addCleanup(self._cancelStreams)

    def _cancelStreams(self) -> None:
        for call in self.streams:
            call.cancel()

    def call(self, method: str, request: Any, responseType: Any) -> defer.Deferred:
        """
        A unary call; fires with the response, or fails with the C{grpc.RpcError}.
        """
        stub = self.channel.unary_unary(
            method, request_serializer=type(request).SerializeToString, response_deserializer=responseType.FromString
        )
        return threads.deferToThread(stub, request, timeout=TIMEOUT)

    def error(self, method: str, request: Any, responseType: Any) -> defer.Deferred:
        """
        A call expected to fail: fires with C{(code, details)}.
        """
        d = self.call(method, request, responseType)

        def unexpected(response: Any) -> Any:
            raise AssertionError(f"{method} answered {response!r}")

        def failed(failure: Any) -> Any:
            failure.trap(grpc.RpcError)
            return failure.value.code(), failure.value.details()

        return d.addCallbacks(unexpected, failed)

    def stream(self, method: str, request: Any, responseType: Any) -> "Stream":
        stub = self.channel.unary_stream(
            method, request_serializer=type(request).SerializeToString, response_deserializer=responseType.FromString
        )
        call = stub(request)
        self.streams.append(call)
        return Stream(call)


class Stream:
    """
    A server stream read by a thread: C{messages} grows as they arrive.
    """

    def __init__(self, call: Any) -> None:
        self.call = call
        self.messages: List[Any] = []
        self.ended: Optional[Any] = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for message in self.call:
                self.messages.append(message)
            self.ended = "OK"
        except grpc.RpcError as e:
            self.ended = e.code()

    def waitFor(self, n: int, what: str) -> defer.Deferred:
        return waitUntil(lambda: len(self.messages) >= n, TIMEOUT, f"{what} (have {len(self.messages)}: {self.messages})")

    def waitUntil(self, addr: Any, what: str) -> defer.Deferred:
        """
        Wait until the last message (of a replicas stream) decodes to C{addr}.
        """
        return waitUntil(
            lambda: bool(self.messages) and replicasToAddr(self.messages[-1]) == addr,
            TIMEOUT,
            f"{what} (have {[replicasToAddr(m) for m in self.messages]})",
        )

    def cancel(self) -> None:
        self.call.cancel()


class MeshCase(TestCase):
    """
    Helpers: processes, HTTP API calls, origins.
    """

    timeout = 300

    @defer.inlineCallbacks
    def namerd(self, config: Dict[str, Any], directory: Optional[str] = None) -> Any:
        proc = TwistdProcess(config, plugin="linkerpy-namerd", directory=directory)
        self.addCleanup(proc.stop)
        yield proc.start(waitFor=("admin", API, MESH))
        return proc

    def api(self, namerd: Any, method: str, path: str, body: Any, contentType: str = "application/dtab") -> defer.Deferred:
        data = body if isinstance(body, bytes) else (json.dumps(body) if not isinstance(body, str) else body).encode()
        return httpGet(namerd.url(API, path), method=method, data=data, headers={"content-type": contentType})

    @defer.inlineCallbacks
    def putDtab(self, namerd: Any, dtab: str) -> Any:
        response, body = yield self.api(namerd, "PUT", "/api/1/dtabs/default", dtab)
        self.assertEqual(response.code, 204, body)

    @defer.inlineCallbacks
    def putPolicy(self, namerd: Any, document: Any) -> Any:
        response, body = yield self.api(namerd, "PUT", "/api/1/policy/default", document, "application/json")
        self.assertEqual(response.code, 204, body)

    def origin(self, name: str) -> Tuple[Origin, int]:
        from twisted.web.server import Site

        resource = Origin(name)
        site = Site(resource)
        site.noisy = False
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return resource, port.getHost().port

    @defer.inlineCallbacks
    def metrics(self, proc: Any) -> Any:
        return jsonOf((yield httpGet(proc.url(path="/admin/metrics.json"))))

    @defer.inlineCallbacks
    def waitForMetric(self, proc: Any, name: str, predicate: Callable[[Any], bool], what: str) -> Any:
        deadline = reactor.seconds() + TIMEOUT
        last = None
        while reactor.seconds() < deadline:
            last = (yield self.metrics(proc)).get(name)
            if predicate(last):
                return last
            yield deferLater(reactor, 0.05, lambda: None)
        raise AssertionError(f"{what}: {name} is {last!r}")


def namerdConfig(storage: Dict[str, Any], namers: Any = (), meshPort: int = 0, **mesh: Any) -> Dict[str, Any]:
    return {
        "admin": {"port": 0},
        "storage": storage,
        "namers": list(namers),
        "interfaces": [
            {"kind": "io.l5d.httpController", "port": 0},
            dict({"kind": "io.l5d.mesh", "port": meshPort}, **mesh),
        ],
    }


class GrpcApiTests(MeshCase):
    """
    A grpcio client against twistd linkerpy-namerd.
    """

    def setUp(self) -> None:
        requireGrpc(self)
        self.disco = tempfile.mkdtemp(prefix="linkerpy-mesh-disco-")
        self.writeDisco("hello", "127.0.0.1 7001\n")
        self.writeDisco("world", "127.0.0.1 7002\n127.0.0.2 7003\n")

    def writeDisco(self, name: str, text: str) -> None:
        path = os.path.join(self.disco, name)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)

    @defer.inlineCallbacks
    def start(self) -> Any:
        self.directory = tempfile.mkdtemp(prefix="linkerpy-mesh-namerd-")
        config = namerdConfig(
            {"kind": "io.l5d.fs", "rootDir": "data", "pollIntervalMs": 100},
            [{"kind": "io.l5d.fs", "rootDir": self.disco}],
            maxMessageKB=1,
        )
        self.proc = yield self.namerd(config, self.directory)
        yield self.putDtab(self.proc, "/svc => /#/io.l5d.fs")
        self.client = GrpcClient(self, self.proc.ports[MESH])

    @defer.inlineCallbacks
    def test_everyService(self) -> Any:
        """
        Every unary method of Interpreter, Resolver, Delegator, Codec and Policy answers as documented.
        """
        yield self.start()
        c = self.client
        rsp = yield c.call("/io.linkerd.mesh.Interpreter/GetBoundTree",
                           interpreter_pb2.BindReq(root=P("/default"), name=P("/svc/hello/path")), interpreter_pb2.BoundTreeRsp)
        self.assertEqual(list(rsp.tree.leaf.id.elems), [b"#", b"io.l5d.fs", b"hello"])
        self.assertEqual(list(rsp.tree.leaf.residual.elems), [b"path"])
        request = interpreter_pb2.BindReq(root=P("/default"), name=P("/svc/hello"))
        request.dtab.CopyFrom(dtabFromProtoText("/svc/hello => /#/io.l5d.fs/world"))
        rsp = yield c.call("/io.linkerd.mesh.Interpreter/GetBoundTree", request, interpreter_pb2.BoundTreeRsp)
        self.assertEqual(list(rsp.tree.leaf.id.elems), [b"#", b"io.l5d.fs", b"world"])

        rsp = yield c.call("/io.linkerd.mesh.Resolver/GetReplicas", resolver_pb2.ReplicasReq(id=P("/#/io.l5d.fs/world")),
                           resolver_pb2.Replicas)
        self.assertEqual(replicasToAddr(rsp), AddrBound([Address("127.0.0.1", 7002), Address("127.0.0.2", 7003)]))
        self.assertEqual(rsp.bound.endpoints[0].address, b"\x7f\x00\x00\x01")
        rsp = yield c.call("/io.linkerd.mesh.Resolver/GetReplicas", resolver_pb2.ReplicasReq(), resolver_pb2.Replicas)
        self.assertEqual(rsp.failed.message, "No ID provided")

        rsp = yield c.call("/io.linkerd.mesh.Delegator/GetDtab", delegator_pb2.DtabReq(root=P("/default")), delegator_pb2.DtabRsp)
        self.assertEqual(dtabFromProto(rsp.dtab.dtab).show, "/svc=>/#/io.l5d.fs")
        self.assertTrue(rsp.dtab.version.id)
        code, details = yield c.error("/io.linkerd.mesh.Delegator/GetDtab", delegator_pb2.DtabReq(root=P("/missing")),
                                      delegator_pb2.DtabRsp)
        self.assertEqual((code, details), (grpc.StatusCode.NOT_FOUND, "Root not found"))
        code, details = yield c.error("/io.linkerd.mesh.Delegator/GetDtab", delegator_pb2.DtabReq(), delegator_pb2.DtabRsp)
        self.assertEqual((code, details), (grpc.StatusCode.INVALID_ARGUMENT, "No namespace specified"))
        delegate = delegator_pb2.DelegateTreeReq(root=P("/default"), tree=nameTreeToProto(Leaf(Path.read("/svc/hello"))))
        rsp = yield c.call("/io.linkerd.mesh.Delegator/GetDelegateTree", delegate, delegator_pb2.DelegateTreeRsp)
        self.assertEqual(rsp.tree.WhichOneof("node"), "delegate")
        self.assertEqual(list(rsp.tree.delegate.leaf.id.elems), [b"#", b"io.l5d.fs", b"hello"])
        self.assertEqual(list(rsp.tree.delegate.dentry.prefix.elems[0].label), list(b"svc"))
        stream = c.stream("/io.linkerd.mesh.Delegator/StreamDelegateTree", delegate, delegator_pb2.DelegateTreeRsp)
        yield waitUntil(lambda: stream.ended is not None, TIMEOUT, "StreamDelegateTree to end")
        self.assertEqual((stream.messages, stream.ended), ([rsp], "OK"))

        rsp = yield c.call("/io.linkerd.mesh.Codec/ReadDtab", codec_pb2.ReadDtabReq(text="/a => /b | /c"), codec_pb2.ReadDtabRsp)
        shown = yield c.call("/io.linkerd.mesh.Codec/ShowDtab", codec_pb2.ShowDtabReq(dtab=rsp.dtab), codec_pb2.ShowDtabRsp)
        self.assertEqual(shown.text, "/a=>/b | /c")
        rsp = yield c.call("/io.linkerd.mesh.Codec/ReadPath", codec_pb2.ReadPathReq(text="/a/b"), codec_pb2.ReadPathRsp)
        self.assertEqual(list(rsp.path.elems), [b"a", b"b"])
        shown = yield c.call("/io.linkerd.mesh.Codec/ShowPath", codec_pb2.ShowPathReq(path=rsp.path), codec_pb2.ShowPathRsp)
        self.assertEqual(shown.text, "/a/b")
        code, _ = yield c.error("/io.linkerd.mesh.Codec/ReadPath", codec_pb2.ReadPathReq(text="a b"), codec_pb2.ReadPathRsp)
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)

        code, _ = yield c.error("/io.linkerd.mesh.Policy/GetPolicy", policy_pb2.PolicyReq(root=P("/default")), policy_pb2.PolicyRsp)
        self.assertEqual(code, grpc.StatusCode.NOT_FOUND)
        yield self.putPolicy(self.proc, POLICY_DOC)
        rsp = yield c.call("/io.linkerd.mesh.Policy/GetPolicy", policy_pb2.PolicyReq(root=P("/default")), policy_pb2.PolicyRsp)
        self.assertEqual(json.loads(rsp.policy.json), POLICY_DOC)

        code, details = yield c.error("/io.linkerd.mesh.Nothing/Here", codec_pb2.ReadPathReq(text="/a"), codec_pb2.ReadPathRsp)
        self.assertEqual(code, grpc.StatusCode.UNIMPLEMENTED)
        code, details = yield c.error("/io.linkerd.mesh.Codec/ReadPath", codec_pb2.ReadPathReq(text="/" + "a" * 2000),
                                      codec_pb2.ReadPathRsp)
        self.assertEqual(code, grpc.StatusCode.RESOURCE_EXHAUSTED)
        metrics = yield self.metrics(self.proc)
        self.assertGreaterEqual(metrics["namerd/io.l5d.mesh/requests"], 15)
        self.assertEqual(metrics["namerd/io.l5d.mesh/status/12"], 1)

    @defer.inlineCallbacks
    def test_streams(self) -> Any:
        """
        StreamBoundTree follows a dtab PUT and a hand edit of the stored dtab file; StreamReplicas follows an
        io.l5d.fs file change; StreamDtab and StreamPolicy follow PUTs; cancelling ends the watches in namerd.
        """
        yield self.start()
        c = self.client
        bind = c.stream("/io.linkerd.mesh.Interpreter/StreamBoundTree",
                        interpreter_pb2.BindReq(root=P("/default"), name=P("/svc/hello")), interpreter_pb2.BoundTreeRsp)
        replicas = c.stream("/io.linkerd.mesh.Resolver/StreamReplicas",
                            resolver_pb2.ReplicasReq(id=P("/#/io.l5d.fs/hello")), resolver_pb2.Replicas)
        dtabs = c.stream("/io.linkerd.mesh.Delegator/StreamDtab", delegator_pb2.DtabReq(root=P("/default")), delegator_pb2.DtabRsp)
        policies = c.stream("/io.linkerd.mesh.Policy/StreamPolicy", policy_pb2.PolicyReq(root=P("/default")), policy_pb2.PolicyRsp)
        yield bind.waitFor(1, "the first bound tree")
        self.assertEqual(list(bind.messages[0].tree.leaf.id.elems), [b"#", b"io.l5d.fs", b"hello"])
        yield replicas.waitUntil(AddrBound([Address("127.0.0.1", 7001)]), "the first replicas")
        yield dtabs.waitFor(1, "the first dtab")
        yield policies.waitFor(1, "the first policy answer")
        self.assertFalse(policies.messages[0].HasField("policy"))
        yield self.waitForMetric(self.proc, "namerd/io.l5d.mesh/streams", lambda v: v == 4, "namerd to count 4 streams")

        # A dtab PUT through the HTTP API.
        putAt = reactor.seconds()
        yield self.putDtab(self.proc, "/svc => /#/io.l5d.fs; /svc/hello => /#/io.l5d.fs/world")
        yield bind.waitFor(2, "the bound tree after a dtab PUT")
        print(f"\nmesh: StreamBoundTree delivered the new tree {reactor.seconds() - putAt:.3f}s after the dtab PUT began "
              "(polled every 50 ms)")
        self.assertEqual(list(bind.messages[1].tree.leaf.id.elems), [b"#", b"io.l5d.fs", b"world"])
        yield dtabs.waitFor(2, "the dtab after the PUT")
        self.assertEqual(dtabFromProto(dtabs.messages[1].dtab.dtab).show, "/svc=>/#/io.l5d.fs;/svc/hello=>/#/io.l5d.fs/world")
        self.assertNotEqual(dtabs.messages[1].dtab.version.id, dtabs.messages[0].dtab.version.id)

        # The stored dtab file edited by hand (io.l5d.fs storage).
        stored = os.path.join(self.proc.directory, "data", "dtabs", "default")
        with open(stored + ".edit", "w") as f:
            f.write("/svc => /#/io.l5d.fs; /svc/hello => 3 * /#/io.l5d.fs/hello & /#/io.l5d.fs/world\n")
        os.replace(stored + ".edit", stored)
        yield bind.waitFor(3, "the bound tree after editing the stored dtab file")
        self.assertEqual([t.weight for t in bind.messages[2].tree.union.trees], [3.0, 1.0])

        # An io.l5d.fs namer file changes.
        self.writeDisco("hello", "127.0.0.1 7001\n127.0.0.1 7011\n")
        seen = len(replicas.messages)
        yield replicas.waitUntil(AddrBound([Address("127.0.0.1", 7001), Address("127.0.0.1", 7011)]),
                                 "the replicas after the fs namer file changed")
        self.assertEqual(len(replicas.messages), seen + 1)

        yield self.putPolicy(self.proc, POLICY_DOC)
        yield policies.waitFor(2, "the policy after a PUT")
        self.assertEqual(json.loads(policies.messages[1].policy.json), POLICY_DOC)

        for stream in (bind, replicas, dtabs, policies):
            stream.cancel()
        yield self.waitForMetric(self.proc, "namerd/io.l5d.mesh/streams", lambda v: v == 0,
                                 "namerd to end the cancelled streams")


def dtabFromProtoText(text: str) -> Any:
    from linkerpy.namerd.mesh.convert import dtabToProto
    from linkerpy.naming import Dtab

    return dtabToProto(Dtab.read(text))


def routerConfig(label: str, meshPort: int, protocol: str = "http") -> Dict[str, Any]:
    dst = f"/$/inet/127.0.0.1/{meshPort}"
    return {
        "admin": {"port": 0},
        "routers": [
            {
                "protocol": protocol,
                "label": label,
                "interpreter": {"kind": "io.l5d.mesh", "dst": dst, "root": "/default", "retry": RETRY},
                "service": {"kind": "io.l5d.mesh", "dst": dst, "retry": RETRY},
                "client": {"kind": "io.l5d.mesh", "dst": f"127.0.0.1:{meshPort}", "retry": RETRY},
                "bindingTimeoutMs": 20000,
                "servers": [{"port": 0}],
            }
        ],
    }


class RouterTests(MeshCase):
    """
    A router driven by the mesh API.
    """

    @defer.inlineCallbacks
    def router(self, label: str, meshPort: int) -> Any:
        proc = TwistdProcess(routerConfig(label, meshPort))
        self.addCleanup(proc.stop)
        yield proc.start(waitFor=("admin", f"router {label}"))
        return proc

    def call(self, router: Any, label: str, path: str = "/") -> defer.Deferred:
        return httpGet(f"http://127.0.0.1:{router.routerPort(label)}{path}", headers={"host": "hello"}, timeout=TIMEOUT)

    @defer.inlineCallbacks
    def waitForStatus(self, router: Any, label: str, path: str, status: int) -> Any:
        deadline = reactor.seconds() + TIMEOUT
        last = None
        while reactor.seconds() < deadline:
            response, body = yield self.call(router, label, path)
            last = (response.code, body)
            if response.code == status:
                return reactor.seconds()
            yield deferLater(reactor, 0.02, lambda: None)
        raise AssertionError(f"router {label} never answered {status} for {path}; last {last!r}")

    @defer.inlineCallbacks
    def test_trafficPolicyAndNamerdLoss(self) -> Any:
        """
        A dtab PUT moves the router's traffic with no failed request, a policy PUT changes a service's timeout,
        and the router keeps routing while namerd is gone and follows it again once restarted.
        """
        _, portA = self.origin("A")
        _, portB = self.origin("B")
        meshPort = freePort()
        directory = tempfile.mkdtemp(prefix="linkerpy-mesh-namerd-")
        config = namerdConfig({"kind": "io.l5d.fs", "rootDir": "data"}, meshPort=meshPort)
        namerd = yield self.namerd(config, directory)
        yield self.putDtab(namerd, f"/svc/hello => /$/inet/127.0.0.1/{portA}")
        router = yield self.router("r1", meshPort)
        response, body = yield self.call(router, "r1")
        self.assertEqual((response.code, body), (200, b"A"))

        # The shift, under load.
        answers: List[Tuple[int, bytes]] = []
        shifted: List[float] = []
        stop: List[bool] = []

        @defer.inlineCallbacks
        def load() -> Any:
            while not stop:
                response, body = yield self.call(router, "r1")
                answers.append((response.code, body))
                if body == b"B" and not shifted:
                    shifted.append(reactor.seconds())

        loads = [load(), load()]
        yield waitUntil(lambda: len(answers) >= 4, TIMEOUT, "traffic before the shift")
        putAt = reactor.seconds()
        yield self.putDtab(namerd, f"/svc/hello => /$/inet/127.0.0.1/{portB}")
        yield waitUntil(lambda: bool(shifted), TIMEOUT, "the router to move to B")
        count = len(answers)
        yield waitUntil(lambda: len(answers) >= count + 4, TIMEOUT, "traffic after the shift")
        stop.append(True)
        yield defer.DeferredList(loads)
        self.assertEqual({code for code, _ in answers}, {200}, answers)
        self.assertEqual(set(answers[-3:]), {(200, b"B")})
        shiftDelay = shifted[0] - putAt

        # Per-service timeout by policy: 300 ms requests pass under 600 ms, fail under 100 ms.
        slow = "/?delay=0.3"
        policy = json.loads(json.dumps(POLICY_DOC))
        yield self.putPolicy(namerd, policy)
        yield self.waitForStatus(router, "r1", slow, 200)
        policy["service"]["configs"][0]["totalTimeoutMs"] = 100
        policyAt = reactor.seconds()
        yield self.putPolicy(namerd, policy)
        failedAt = yield self.waitForStatus(router, "r1", slow, 503)
        response, body = yield self.call(router, "r1", slow)
        self.assertEqual(response.code, 503)
        self.assertIn(b"exceeded 100", body)
        policyDelay = failedAt - policyAt
        print(f"\nmesh: the dtab shift reached the router {shiftDelay:.3f}s after the PUT began; the first 503 "
              f"under the 100 ms timeout came back {policyDelay:.3f}s after the policy PUT began (this includes the "
              "failing request's own 0.1 s, and any 0.3 s request started before the change)")
        state = jsonOf((yield httpGet(router.url(path="/r1/interpreter_state/io.l5d.mesh/default.json"))))
        self.assertTrue(state["connected"])
        self.assertEqual({s["kind"] for s in state["streams"]}, {"bind", "replicas", "policy service", "policy client"})

        # namerd goes away: the router keeps routing with what it last heard.
        namerd.signal(signal.SIGKILL)
        yield namerd.ended
        yield self.waitForMetric(router, "rt/r1/mesh/default/connected", lambda v: v == 0.0, "the router to notice")
        for _ in range(3):
            response, body = yield self.call(router, "r1")
            self.assertEqual((response.code, body), (200, b"B"))
        response, _ = yield self.call(router, "r1", slow)
        self.assertEqual(response.code, 503)

        # namerd is back (same storage and port): the router reconnects and follows new changes.
        again = yield self.namerd(config, directory)
        yield self.waitForMetric(router, "rt/r1/mesh/default/connected", lambda v: v == 1.0, "the router to reconnect")
        yield self.putDtab(again, f"/svc/hello => /$/inet/127.0.0.1/{portA}")
        yield self.putPolicy(again, POLICY_DOC)
        yield self.waitForStatus(router, "r1", slow, 200)
        response, body = yield self.call(router, "r1")
        self.assertEqual((response.code, body), (200, b"A"))
        metrics = yield self.metrics(router)
        self.assertGreater(metrics["rt/r1/mesh/default/reconnects"], 0)


class ExampleConfigTests(MeshCase):
    """
    conf/mesh.yaml and conf/linkerpy-mesh.yaml, as written except for ports and directories.
    """

    @defer.inlineCallbacks
    def test_examples(self) -> Any:
        """
        The example namerd (fs storage, fs namer, both APIs) and router route a request after a dtab PUT.
        """
        _, portA = self.origin("A")
        with open(os.path.join(REPO, "conf", "mesh.yaml")) as f:
            namerdYaml = yaml.safe_load(f)
        with open(os.path.join(REPO, "conf", "linkerpy-mesh.yaml")) as f:
            routerYaml = yaml.safe_load(f)
        disco = tempfile.mkdtemp(prefix="linkerpy-disco-")
        with open(os.path.join(disco, "hello"), "w") as f:
            f.write(f"127.0.0.1 {portA}\n")
        meshPort = freePort()
        namerdYaml["admin"]["port"] = 0
        namerdYaml["interfaces"][0]["port"] = 0
        namerdYaml["interfaces"][1]["port"] = meshPort
        namerdYaml["namers"][0]["rootDir"] = disco
        namerd = yield self.namerd(namerdYaml)
        router = routerYaml["routers"][0]
        router["servers"][0]["port"] = 0
        for part in ("interpreter", "service", "client"):
            router[part]["dst"] = f"/$/inet/127.0.0.1/{meshPort}"
        routerYaml["admin"]["port"] = 0
        proc = TwistdProcess(routerYaml)
        self.addCleanup(proc.stop)
        yield proc.start(waitFor=("admin", "router http"))
        yield self.putDtab(namerd, "/svc => /#/io.l5d.fs")
        deadline = reactor.seconds() + TIMEOUT
        last: Any = None
        while reactor.seconds() < deadline:
            response, body = yield httpGet(f"http://127.0.0.1:{proc.routerPort('http')}/", headers={"host": "hello"},
                                           timeout=TIMEOUT)
            last = (response.code, body)
            if last == (200, b"A"):
                break
            yield deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(last, (200, b"A"))
        self.assertTrue(os.path.exists(os.path.join(namerd.directory, "namerd-data", "dtabs", "default")))
        response, body = yield httpGet(proc.url(path="/delegator.json?path=/svc/hello&namespace=http"))
        tree = json.loads(body)
        self.assertEqual(tree["delegate"]["bound"]["id"], "/#/io.l5d.fs/hello")
        self.assertEqual(tree["delegate"]["bound"]["addr"]["addrs"], [{"ip": "127.0.0.1", "port": portA, "meta": {}}])
