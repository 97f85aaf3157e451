# -*- test-case-name: tests.test_mesh_server -*-
"""
The services of the C{io.l5d.mesh} interface, answered from a
L{Namerd<linkerpy.namerd.core.Namerd>}: Linkerd 1's C{Interpreter},
C{Resolver}, C{Delegator} and C{Codec}, and linkerpy's C{Policy}.

A namespace is named by a C{root} path of exactly one element
(C{/default}).  Streams carry the latest state: a new message on every
change of the underlying value (never the same message twice in a row),
until the client cancels.  Unary calls wait for a known value for at most
C{requestTimeout} seconds.

Statuses (as Linkerd's namerd answers them):

  - no C{root}: C{INVALID_ARGUMENT} "No namespace specified"; a root that is
    not one valid namespace name: C{INVALID_ARGUMENT};
  - no C{name} (bind) or C{tree} (delegate): C{NOT_FOUND} "No name given";
  - C{GetDtab}/C{StreamDtab} of a namespace without a dtab: C{NOT_FOUND}
    "Root not found" (the stream ends with it);
  - a binding or delegation that fails (a dtab loop, a namer error at the
    top): C{UNKNOWN} with the reason;
  - nothing known within the request timeout: C{DEADLINE_EXCEEDED};
  - the store unreachable: C{UNAVAILABLE};
  - text that does not parse (C{Codec}), a malformed dtab in a request:
    C{INVALID_ARGUMENT}.
"""

from __future__ import annotations

from typing import Any, List, Tuple

from twisted.internet.defer import Deferred, gatherResults, succeed

from linkerpy.namerd.errors import InvalidNamespace, StoreUnavailable, checkNamespace
from linkerpy.namerd.httputil import Timeout, waitFor
from linkerpy.namerd.mesh.convert import (
    ConvertError,
    addrToReplicas,
    boundTreeToProto,
    delegateTreeToProto,
    dtabFromProto,
    dtabToProto,
    nameTreeFromProto,
    pathFromProto,
    pathToProto,
)
from linkerpy.namerd.mesh.framing import GrpcError, Status
from linkerpy.namerd.mesh.protos import codec_pb2, delegator_pb2, dtab_pb2, interpreter_pb2, policy_pb2, resolver_pb2
from linkerpy.namerd.mesh.server import SKIP, Method
from linkerpy.naming import AddrPending, Alt, Dtab, Empty, Fail, Failed, Leaf, Neg, Ok, Path, Pending, Union
from linkerpy.naming.delegate import DAlt, DEmpty, DFail, DNeg, DUnion

__all__ = ["MeshServices", "PACKAGE", "namespaceOf"]

PACKAGE = "io.linkerd.mesh"

#: The namespace whose interpreter resolves concrete names (any would do:
#: concrete names do not depend on a dtab).
_RESOLVER_NAMESPACE = "default"


def namespaceOf(message: Any, field: str = "root") -> str:
    """
    The namespace named by a request's C{root} path.

    @raise GrpcError: C{INVALID_ARGUMENT} when missing or not one valid
        namespace name.
    """
    if not message.HasField(field):
        raise GrpcError(Status.INVALID_ARGUMENT, "No namespace specified")
    try:
        root = pathFromProto(getattr(message, field), field)
    except ConvertError as e:
        raise GrpcError(Status.INVALID_ARGUMENT, str(e))
    if len(root) != 1:
        raise GrpcError(Status.INVALID_ARGUMENT, f"Invalid root: `{root.show}` must have exactly one segment")
    try:
        return checkNamespace(root.elems[0].decode("utf-8"))
    except (UnicodeDecodeError, InvalidNamespace) as e:
        raise GrpcError(Status.INVALID_ARGUMENT, f"Invalid root: {e}")


def _dtabOf(message: Any) -> Dtab:
    if not message.HasField("dtab"):
        return Dtab.empty
    try:
        return dtabFromProto(message.dtab)
    except ValueError as e:
        raise GrpcError(Status.INVALID_ARGUMENT, f"Invalid dtab: {e}")


def _failure(state: Any) -> GrpcError:
    exception = state.exception
    return GrpcError(Status.UNKNOWN, str(exception) or type(exception).__name__)


def _storeError(failure: Any) -> Any:
    if failure.check(StoreUnavailable):
        raise GrpcError(Status.UNAVAILABLE, f"the store is unavailable: {failure.getErrorMessage()}")
    return failure


def _timedOut(failure: Any) -> Any:
    failure.trap(Timeout)
    raise GrpcError(Status.DEADLINE_EXCEEDED, "Request timed out.")


class MeshServices:
    """
    The methods of the mesh API over one L{Namerd<linkerpy.namerd.core.Namerd>}.

    @ivar requestTimeout: how long unary calls wait for a known value.
    """

    def __init__(self, namerd: Any, clock: Any, requestTimeout: float = 10.0) -> None:
        self.namerd = namerd
        self.store = namerd.store
        self.clock = clock
        self.requestTimeout = requestTimeout

    def methods(self) -> List[Method]:
        """
        Every method served, for L{GrpcServer<linkerpy.namerd.mesh.server.GrpcServer>}.
        """

        def m(service: str, name: str, request: Any, streaming: bool, handler: Any) -> Method:
            return Method(f"/{PACKAGE}.{service}/{name}", request, streaming, handler)

        return [
            m("Interpreter", "GetBoundTree", interpreter_pb2.BindReq, False, self.getBoundTree),
            m("Interpreter", "StreamBoundTree", interpreter_pb2.BindReq, True, self.streamBoundTree),
            m("Resolver", "GetReplicas", resolver_pb2.ReplicasReq, False, self.getReplicas),
            m("Resolver", "StreamReplicas", resolver_pb2.ReplicasReq, True, self.streamReplicas),
            m("Delegator", "GetDtab", delegator_pb2.DtabReq, False, self.getDtab),
            m("Delegator", "StreamDtab", delegator_pb2.DtabReq, True, self.streamDtab),
            m("Delegator", "GetDelegateTree", delegator_pb2.DelegateTreeReq, False, self.getDelegateTree),
            m("Delegator", "StreamDelegateTree", delegator_pb2.DelegateTreeReq, True, self.getDelegateTree),
            m("Codec", "ReadDtab", codec_pb2.ReadDtabReq, False, self.readDtab),
            m("Codec", "ShowDtab", codec_pb2.ShowDtabReq, False, self.showDtab),
            m("Codec", "ReadPath", codec_pb2.ReadPathReq, False, self.readPath),
            m("Codec", "ShowPath", codec_pb2.ShowPathReq, False, self.showPath),
            m("Policy", "GetPolicy", policy_pb2.PolicyReq, False, self.getPolicy),
            m("Policy", "StreamPolicy", policy_pb2.PolicyReq, True, self.streamPolicy),
        ]

    # -- Interpreter ---------------------------------------------------------------------

    def _bindStates(self, request: Any) -> Any:
        ns = namespaceOf(request)
        if not request.HasField("name") or not request.name.elems:
            raise GrpcError(Status.NOT_FOUND, "No name given")
        try:
            name = pathFromProto(request.name, "name")
        except ConvertError as e:
            raise GrpcError(Status.INVALID_ARGUMENT, str(e))
        return self.namerd.bindStates(ns, _dtabOf(request), name)

    @staticmethod
    def _boundTreeRsp(state: Any) -> Any:
        if isinstance(state, Ok):
            return interpreter_pb2.BoundTreeRsp(tree=boundTreeToProto(state.value))
        if isinstance(state, Failed):
            raise _failure(state)
        return SKIP

    def getBoundTree(self, request: Any) -> Deferred:
        states = self._bindStates(request)
        d = waitFor(states, lambda s: s is not Pending, self.clock, self.requestTimeout)
        return d.addErrback(_timedOut).addCallback(self._boundTreeRsp)

    def streamBoundTree(self, request: Any) -> Tuple[Any, Any]:
        return self._bindStates(request), self._boundTreeRsp

    # -- Resolver ---------------------------------------------------------------------------

    def _addrVar(self, request: Any) -> Any:
        if not request.HasField("id") or not request.id.elems:
            return None
        try:
            ident = pathFromProto(request.id, "id")
        except ConvertError as e:
            raise GrpcError(Status.INVALID_ARGUMENT, str(e))
        return self.namerd.addrVar(_RESOLVER_NAMESPACE, ident)

    @staticmethod
    def _noId() -> Any:
        return resolver_pb2.Replicas(failed=resolver_pb2.Replicas.Failed(message="No ID provided"))

    def getReplicas(self, request: Any) -> Any:
        var = self._addrVar(request)
        if var is None:
            return self._noId()
        d = waitFor(var, lambda a: a is not AddrPending, self.clock, self.requestTimeout)

        def late(failure: Any) -> Any:
            failure.trap(Timeout)
            return AddrPending

        return d.addErrback(late).addCallback(addrToReplicas)

    def streamReplicas(self, request: Any) -> Any:
        var = self._addrVar(request)
        if var is None:
            return succeed(self._noId())
        return var, addrToReplicas

    # -- Delegator --------------------------------------------------------------------------

    @staticmethod
    def _dtabRsp(doc: Any) -> Any:
        if doc is Pending:
            return SKIP
        if doc is None:
            raise GrpcError(Status.NOT_FOUND, "Root not found")
        text, version = doc
        try:
            dtab = Dtab.read(text)
        except ValueError:
            # Edited by hand into something that does not parse: namerd
            # keeps binding with the last good dtab, and so does this stream.
            return SKIP
        return delegator_pb2.DtabRsp(
            dtab=dtab_pb2.VersionedDtab(version=dtab_pb2.VersionedDtab.Version(id=version), dtab=dtabToProto(dtab))
        )

    def getDtab(self, request: Any) -> Deferred:
        ns = namespaceOf(request)

        def answer(doc: Any) -> Any:
            rsp = self._dtabRsp(doc)
            if rsp is SKIP:
                raise GrpcError(Status.INTERNAL, f"the stored dtab of {ns!r} does not parse")
            return rsp

        return self.store.get("dtabs", ns).addErrback(_storeError).addCallback(answer)

    def streamDtab(self, request: Any) -> Tuple[Any, Any]:
        ns = namespaceOf(request)
        return self.store.observe("dtabs", ns), self._dtabRsp

    def getDelegateTree(self, request: Any) -> Deferred:
        ns = namespaceOf(request)
        if not request.HasField("tree"):
            raise GrpcError(Status.NOT_FOUND, "No name given")
        try:
            tree = nameTreeFromProto(request.tree)
        except ConvertError as e:
            raise GrpcError(Status.INVALID_ARGUMENT, f"Invalid tree: {e}")
        interp = self.namerd.interpreter(ns)
        d = _delegate(interp, _dtabOf(request), tree)
        call = self.clock.callLater(self.requestTimeout, d.cancel)

        def done(result: Any) -> Any:
            if call.active():
                call.cancel()
            return result

        def failed(failure: Any) -> Any:
            from twisted.internet.defer import CancelledError

            if failure.check(GrpcError):
                return failure
            if failure.check(CancelledError):
                raise GrpcError(Status.DEADLINE_EXCEEDED, "Request timed out.")
            raise GrpcError(Status.UNKNOWN, f"delegation failed: {failure.getErrorMessage()}")

        d.addBoth(done)
        d.addCallbacks(lambda t: delegator_pb2.DelegateTreeRsp(tree=delegateTreeToProto(t)), failed)
        return d

    # -- Codec -------------------------------------------------------------------------------

    def readDtab(self, request: Any) -> Any:
        try:
            dtab = Dtab.read(request.text)
        except ValueError as e:
            raise GrpcError(Status.INVALID_ARGUMENT, f"Invalid dtab: {e}")
        return codec_pb2.ReadDtabRsp(dtab=dtabToProto(dtab))

    def showDtab(self, request: Any) -> Any:
        return codec_pb2.ShowDtabRsp(text=_dtabOf(request).show)

    def readPath(self, request: Any) -> Any:
        try:
            path = Path.read(request.text)
        except ValueError as e:
            raise GrpcError(Status.INVALID_ARGUMENT, f"Invalid path: {e}")
        return codec_pb2.ReadPathRsp(path=pathToProto(path))

    def showPath(self, request: Any) -> Any:
        try:
            path = pathFromProto(request.path)
        except ConvertError as e:
            raise GrpcError(Status.INVALID_ARGUMENT, f"Invalid path: {e}")
        return codec_pb2.ShowPathRsp(text=path.show)

    # -- Policy (linkerpy's extension) ----------------------------------------------------------

    @staticmethod
    def _policyRsp(doc: Any) -> Any:
        if doc is Pending:
            return SKIP
        if doc is None:
            return policy_pb2.PolicyRsp()
        text, version = doc
        return policy_pb2.PolicyRsp(policy=policy_pb2.VersionedPolicy(version=version, json=text))

    def getPolicy(self, request: Any) -> Deferred:
        ns = namespaceOf(request)

        def answer(doc: Any) -> Any:
            if doc is None:
                raise GrpcError(Status.NOT_FOUND, f"no policy document in namespace {ns!r}")
            return self._policyRsp(doc)

        return self.store.get("policy", ns).addErrback(_storeError).addCallback(answer)

    def streamPolicy(self, request: Any) -> Tuple[Any, Any]:
        ns = namespaceOf(request)
        return self.store.observe("policy", ns), self._policyRsp


def _delegate(interp: Any, dtab: Dtab, tree: Any) -> Deferred:
    """
    Delegate a tree of paths: each leaf through the namespace's
    interpreter, the rest as nodes at the empty path (as Finagle does).
    """
    if isinstance(tree, Leaf):
        return interp.delegate(dtab, tree.value)
    if isinstance(tree, Alt):
        return gatherResults([_delegate(interp, dtab, t) for t in tree.trees], consumeErrors=True).addCallback(
            lambda trees: DAlt(Path.empty, None, trees)
        )
    if isinstance(tree, Union):
        weights = [w.weight for w in tree.trees]
        return gatherResults([_delegate(interp, dtab, w.tree) for w in tree.trees], consumeErrors=True).addCallback(
            lambda trees: DUnion(Path.empty, None, list(zip(weights, trees)))
        )
    if tree is Neg:
        return succeed(DNeg(Path.empty, None))
    if tree is Fail:
        return succeed(DFail(Path.empty, None))
    if tree is Empty:
        return succeed(DEmpty(Path.empty, None))
    raise GrpcError(Status.INVALID_ARGUMENT, f"cannot delegate {tree!r}")
