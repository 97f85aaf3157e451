# -*- test-case-name: tests.test_mesh_client -*-
"""
C{interpreter: {kind: io.l5d.mesh}}: names bound by namerd's gRPC mesh
API.

C{bind(dtab, path)} calls C{Interpreter/StreamBoundTree} (with the
router's base and local dtab) and turns each message into a name tree of
L{Bound}; each bound id's replicas come from C{Resolver/StreamReplicas},
one stream per id however many trees mention it, open only while
something observes it.  A new tree reaches the router only once the
replicas of its leaves are known, so a dtab change never routes to a leaf
whose addresses are still unknown.

While namerd is unreachable every value keeps its last good state, so
requests go on being routed with the last bindings and addresses; the
streams are called again with backoff.  C{delegate()} asks
C{Delegator/GetDelegateTree}, then each leaf's replicas.
"""

from __future__ import annotations

import weakref
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet.defer import Deferred, gatherResults
from zope.interface import implementer

from linkerpy.interfaces import IInterpreter
from linkerpy.mesh.client import MeshStream, connectionFor
from linkerpy.namerd.mesh.convert import (
    boundTreeFromProto,
    delegateTreeFromProto,
    dtabToProto,
    nameTreeToProto,
    pathToProto,
    replicasToAddr,
)
from linkerpy.namerd.mesh.protos import delegator_pb2, interpreter_pb2, resolver_pb2
from linkerpy.naming import Activity, AddrPending, Bound, Dtab, Failed, Leaf, Ok, Path, Pending, Var
from linkerpy.naming.delegate import addrToJSON, mapLeaves

__all__ = ["MeshInterpreter", "INTERPRETER", "RESOLVER", "DELEGATOR"]

INTERPRETER = "/io.linkerd.mesh.Interpreter/"
RESOLVER = "/io.linkerd.mesh.Resolver/"
DELEGATOR = "/io.linkerd.mesh.Delegator/"

#: How long C{delegate()} waits for namerd.
DELEGATE_TIMEOUT = 10.0


class _StreamedVar(Var[Any]):
    """
    A Var fed by a mesh stream that runs while the Var is observed.
    """

    __slots__ = ("_interp", "_kind", "_method", "_request", "_responseType", "_label", "_render", "_stream")

    def __init__(
        self,
        interp: "MeshInterpreter",
        kind: str,
        method: str,
        request: Any,
        responseType: Any,
        initial: Any,
        label: str,
        render: Any,
    ) -> None:
        Var.__init__(self, initial)
        self._interp = interp
        self._kind = kind
        self._method = method
        self._request = request
        self._responseType = responseType
        self._label = label
        self._render = render
        self._stream: Optional[MeshStream] = None

    def _start(self) -> None:
        self._stream = MeshStream(
            self._interp.connection,
            self._kind,
            self._method,
            self._request,
            self._responseType,
            self._onMessage,
            self._onError,
            self._label,
            self._render,
        )
        self._stream.start()

    def _stop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()

    def _onMessage(self, message: Any) -> None:
        raise NotImplementedError()

    def _onError(self, code: int, message: str) -> None:
        pass


class _BindVar(_StreamedVar):
    __slots__ = ()

    def _onMessage(self, message: Any) -> None:
        if message.HasField("tree"):
            self._set(Ok(boundTreeFromProto(message.tree, self._interp.boundFor)))

    def _onError(self, code: int, message: str) -> None:
        # Keep a good binding through later errors; report errors only when
        # there never was one.
        if not isinstance(self._value, Ok):
            self._set(Failed(Exception(message)))


class _ReplicasVar(_StreamedVar):
    __slots__ = ()

    def _onMessage(self, message: Any) -> None:
        addr = replicasToAddr(message)
        if addr is not AddrPending:
            self._set(addr)


def _showTree(message: Any) -> Any:
    from linkerpy.namerd.mesh.convert import boundTreeFromProto as decode

    if not message.HasField("tree"):
        return None
    return decode(message.tree, lambda ident, residual: Bound(ident, Var.const(AddrPending), residual)).show


def _showReplicas(message: Any) -> Any:
    return addrToJSON(replicasToAddr(message))


def _whenAddressed(state: Any) -> "Var[Any]":
    """
    Hold a new bound tree back (as L{Pending}) until every leaf's address
    set is known: the router keeps using the previous tree meanwhile.
    """
    if not isinstance(state, Ok):
        return Var.const(state)
    bounds = [leaf.value for leaf in state.value.leaves()]
    if not bounds:
        return Var.const(state)
    return Var.collect([b.addr for b in bounds]).map(lambda addrs: Pending if AddrPending in addrs else state)


@implementer(IInterpreter)
class MeshInterpreter:
    """
    An interpreter asking namerd's mesh API.

    @ivar connection: the shared L{MeshConnection<linkerpy.mesh.client.MeshConnection>}.
    """

    kind = "io.l5d.mesh"

    def __init__(self, config: Any, context: Any, transformers: Any = (), connection: Any = None) -> None:
        self.config = config
        self.reactor = context.reactor
        self.root = config.root
        self.connection = connection if connection is not None else connectionFor(context, config)
        self.transformers = list(transformers)
        self._binds: "weakref.WeakValueDictionary[Tuple[Dtab, Path], Var[Any]]" = weakref.WeakValueDictionary()
        self._replicas: "weakref.WeakValueDictionary[Path, Var[Any]]" = weakref.WeakValueDictionary()

    # -- binding ---------------------------------------------------------------------------

    def boundFor(self, ident: Path, residual: Path) -> Bound:
        """
        The L{Bound} of a leaf: its address var is shared by id.
        """
        return Bound(ident, self.replicasVar(ident), residual)

    def replicasVar(self, ident: Path) -> "Var[Any]":
        var = self._replicas.get(ident)
        if var is None:
            request = resolver_pb2.ReplicasReq(id=pathToProto(ident))
            var = _ReplicasVar(
                self, "replicas", RESOLVER + "StreamReplicas", request, resolver_pb2.Replicas,
                AddrPending, ident.show, _showReplicas,
            )
            self._replicas[ident] = var
        return var

    def bind(self, dtab: Dtab, path: Path) -> "Activity[Any]":
        key = (dtab, path)
        var = self._binds.get(key)
        if var is None:
            request = interpreter_pb2.BindReq(root=pathToProto(self.root), name=pathToProto(path), dtab=dtabToProto(dtab))
            label = path.show if dtab.isEmpty else f"{path.show} with {dtab.show}"
            var = _BindVar(
                self, "bind", INTERPRETER + "StreamBoundTree", request, interpreter_pb2.BoundTreeRsp,
                Pending, label, _showTree,
            )
            self._binds[key] = var
        act: Activity[Any] = Activity(var.flatMap(_whenAddressed))
        for transformer in self.transformers:
            act = act.flatMap(transformer.transform)
        return act

    # -- delegation ------------------------------------------------------------------------------

    def delegate(self, dtab: Dtab, path: Path) -> Deferred:
        request = delegator_pb2.DelegateTreeReq(
            root=pathToProto(self.root), tree=nameTreeToProto(Leaf(path)), dtab=dtabToProto(dtab)
        )
        d = self.connection.unary(
            DELEGATOR + "GetDelegateTree", request, delegator_pb2.DelegateTreeRsp, timeout=DELEGATE_TIMEOUT
        )
        return d.addCallback(self._withReplicas)

    def _withReplicas(self, rsp: Any) -> Deferred:
        """
        Decode a delegation tree, then ask for the replicas of each of its
        bound ids so that the tree shows their addresses.
        """
        tree = delegateTreeFromProto(rsp.tree)
        ids: List[Path] = []
        for bound in tree.bounds():
            if bound.id not in ids:
                ids.append(bound.id)
        calls = [
            self.connection.unary(
                RESOLVER + "GetReplicas", resolver_pb2.ReplicasReq(id=pathToProto(i)), resolver_pb2.Replicas,
                timeout=DELEGATE_TIMEOUT,
            ).addCallback(replicasToAddr)
            for i in ids
        ]

        def rebuild(addrs: List[Any]) -> Any:
            known: Dict[Path, Any] = dict(zip(ids, addrs))

            def withAddr(leaf: Any) -> Any:
                value = leaf.value
                if isinstance(value, Bound) and value.id in known:
                    return type(leaf)(leaf.path, leaf.dentry, Bound(value.id, Var.const(known[value.id]), value.residual))
                return leaf

            return mapLeaves(tree, withAddr)

        return gatherResults(calls, consumeErrors=True).addCallback(rebuild)

    # -- admin ----------------------------------------------------------------------------------

    def state(self) -> Dict[str, Any]:
        return self.connection.state()

    def adminResources(self) -> Dict[str, Any]:
        """
        C{/interpreter_state/io.l5d.mesh/<root>.json}: the connection and
        its streams.
        """
        from linkerpy.admin.resources import JSONResource

        return {f"/interpreter_state/{self.kind}{self.root.show}.json": JSONResource(self.connection.state)}

    def close(self) -> Deferred:
        """
        The router stops: stop the streams and close the connection.
        """
        return self.connection.close()
