# -*- test-case-name: tests.test_mesh_convert -*-
"""
Between linkerpy's naming values and the C{io.linkerd.mesh} messages, both
ways: paths, dtabs, name trees, bound trees, address sets (C{Replicas})
and delegation trees.

Decoding never trusts its input: a malformed message raises
L{ConvertError} (a C{ValueError}) saying what is wrong, and trees nested
deeper than L{MAX_DEPTH} are refused.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable, Dict, List, Optional

from linkerpy.namerd.mesh.protos import delegator_pb2, dtab_pb2, interpreter_pb2, resolver_pb2
from linkerpy.naming import (
    ANY,
    WEIGHT_KEY,
    Addr,
    AddrBound,
    AddrFailed,
    AddrNeg,
    AddrPending,
    Address,
    Alt,
    Bound,
    Dentry,
    Dtab,
    Empty,
    Fail,
    Leaf,
    NameTree,
    Neg,
    Path,
    Prefix,
    Union,
    Var,
    Weighted,
)
from linkerpy.naming.delegate import (
    DAlt,
    DDelegate,
    DEmpty,
    DException,
    DFail,
    DLeaf,
    DNeg,
    DTransformation,
    DUnion,
    DelegateTree,
)

__all__ = [
    "ConvertError",
    "MAX_DEPTH",
    "NODE_NAME",
    "pathToProto",
    "pathFromProto",
    "dtabToProto",
    "dtabFromProto",
    "dentryToProto",
    "dentryFromProto",
    "nameTreeToProto",
    "nameTreeFromProto",
    "boundTreeToProto",
    "boundTreeFromProto",
    "addrToReplicas",
    "replicasToAddr",
    "delegateTreeToProto",
    "delegateTreeFromProto",
]

#: How deep a decoded tree may nest.
MAX_DEPTH = 100

#: The address metadata key carrying C{Endpoint.meta.nodeName}.
NODE_NAME = "nodeName"


class ConvertError(ValueError):
    """
    A message does not describe a valid value.
    """


# ---------------------------------------------------------------------------
# paths and dtabs


def pathToProto(path: Path) -> Any:
    return dtab_pb2.Path(elems=path.elems)


def pathFromProto(message: Any, what: str = "path") -> Path:
    elems = tuple(bytes(e) for e in message.elems)
    if any(not e for e in elems):
        raise ConvertError(f"{what}: path elements must not be empty")
    return Path.fromElems(elems)


def _prefixToProto(prefix: Prefix) -> Any:
    out = dtab_pb2.Dtab.Dentry.Prefix()
    for e in prefix.elems:
        elem = out.elems.add()
        if e is ANY:
            elem.wildcard.SetInParent()
        else:
            elem.label = e
    return out


def _prefixFromProto(message: Any) -> Prefix:
    elems: List[Any] = []
    for i, elem in enumerate(message.elems):
        which = elem.WhichOneof("value")
        if which == "wildcard":
            elems.append(ANY)
        elif which == "label" and elem.label:
            elems.append(bytes(elem.label))
        else:
            raise ConvertError(f"dentry prefix element {i}: expected a non-empty label or a wildcard")
    return Prefix.fromElems(tuple(elems))


def dentryToProto(dentry: Dentry) -> Any:
    out = dtab_pb2.Dtab.Dentry(prefix=_prefixToProto(dentry.prefix))
    _fillNameTree(out.dst, dentry.dst)
    return out


def dentryFromProto(message: Any) -> Dentry:
    if not message.HasField("prefix") or not message.HasField("dst"):
        raise ConvertError("a dentry needs a prefix and a dst")
    return Dentry(_prefixFromProto(message.prefix), nameTreeFromProto(message.dst))


def dtabToProto(dtab: Dtab) -> Any:
    return dtab_pb2.Dtab(dentries=[dentryToProto(d) for d in dtab])


def dtabFromProto(message: Any) -> Dtab:
    dentries = []
    for i, d in enumerate(message.dentries):
        try:
            dentries.append(dentryFromProto(d))
        except ConvertError as e:
            raise ConvertError(f"dentry {i}: {e}")
    return Dtab(dentries)


# ---------------------------------------------------------------------------
# name trees of paths


def nameTreeToProto(tree: NameTree) -> Any:
    out = dtab_pb2.PathNameTree()
    _fillNameTree(out, tree)
    return out


def _fillTree(out: Any, tree: NameTree, fillLeaf: Callable[[Any, Any], None], what: str) -> None:
    """
    Fill a C{NameTree} or C{BoundNameTree} message (same shape but for
    the leaves, which C{fillLeaf(out.leaf, value)} fills).
    """
    # Filled in place: appending a built sub-message would copy it (and
    # its whole subtree) at every level.
    if isinstance(tree, Leaf):
        fillLeaf(out.leaf, tree.value)
    elif isinstance(tree, Alt):
        out.alt.SetInParent()
        for t in tree.trees:
            _fillTree(out.alt.trees.add(), t, fillLeaf, what)
    elif isinstance(tree, Union):
        out.union.SetInParent()
        for w in tree.trees:
            _fillTree(out.union.trees.add(weight=w.weight).tree, w.tree, fillLeaf, what)
    elif tree is Neg:
        out.neg.SetInParent()
    elif tree is Fail:
        out.fail.SetInParent()
    elif tree is Empty:
        out.empty.SetInParent()
    else:
        raise TypeError(f"not a {what}: {tree!r}")


def _treeFromProto(message: Any, leafFrom: Callable[[Any], Any], what: str, depth: int) -> NameTree:
    """
    Decode a C{NameTree} or C{BoundNameTree} message; C{leafFrom(leaf)}
    decodes a leaf's value.
    """
    if depth > MAX_DEPTH:
        raise ConvertError(f"{what} nested too deeply")
    which = message.WhichOneof("node")
    if which == "leaf":
        return Leaf(leafFrom(message.leaf))
    if which == "alt":
        return Alt(*(_treeFromProto(t, leafFrom, what, depth + 1) for t in message.alt.trees))
    if which == "union":
        branches = []
        for w in message.union.trees:
            if not w.HasField("tree"):
                raise ConvertError("a union branch needs a tree")
            branches.append(Weighted(w.weight, _treeFromProto(w.tree, leafFrom, what, depth + 1)))
        return Union(*branches)
    if which == "neg":
        return Neg
    if which == "fail":
        return Fail
    if which == "empty":
        return Empty
    raise ConvertError(f"a {what} node has no value")


def _fillNameLeaf(leaf: Any, path: Path) -> None:
    leaf.id.SetInParent()
    leaf.id.elems.extend(path.elems)


def _fillNameTree(out: Any, tree: NameTree) -> None:
    _fillTree(out, tree, _fillNameLeaf, "name tree")


def _nameLeafFromProto(leaf: Any) -> Path:
    if not leaf.HasField("id"):
        raise ConvertError("a leaf needs an id")
    return pathFromProto(leaf.id, "leaf id")


def nameTreeFromProto(message: Any, depth: int = 0) -> NameTree:
    return _treeFromProto(message, _nameLeafFromProto, "name tree", depth)


# ---------------------------------------------------------------------------
# bound trees


def boundTreeToProto(tree: NameTree) -> Any:
    """
    A bound tree (leaves are L{Bound}) as a C{BoundNameTree}.
    """
    out = interpreter_pb2.BoundNameTree()
    _fillBoundTree(out, tree)
    return out


def _fillBoundLeaf(leaf: Any, bound: Bound) -> None:
    leaf.id.SetInParent()
    leaf.id.elems.extend(bound.id.elems)
    leaf.residual.SetInParent()
    leaf.residual.elems.extend(bound.residual.elems)


def _fillBoundTree(out: Any, tree: NameTree) -> None:
    _fillTree(out, tree, _fillBoundLeaf, "bound tree")


def boundTreeFromProto(message: Any, boundFor: Callable[[Path, Path], Bound], depth: int = 0) -> NameTree:
    """
    Decode a C{BoundNameTree}.

    @param boundFor: C{boundFor(id, residual)} makes each leaf's L{Bound}
        (the router shares one address var per id).
    """

    def leafFrom(leaf: Any) -> Bound:
        if not leaf.HasField("id"):
            raise ConvertError("a bound leaf needs an id")
        ident = pathFromProto(leaf.id, "bound id")
        if ident.isEmpty:
            raise ConvertError("a bound leaf needs a non-empty id")
        return boundFor(ident, pathFromProto(leaf.residual, "residual"))

    return _treeFromProto(message, leafFrom, "bound tree", depth)


# ---------------------------------------------------------------------------
# address sets


def _endpoint(address: Address) -> Optional[Any]:
    try:
        ip = ipaddress.ip_address(address.host)
    except ValueError:
        return None  # not resolved to an IP address: not an endpoint
    metadata: Dict[str, str] = {}
    nodeName = ""
    for key, value in address.meta.items():
        if key == NODE_NAME and isinstance(value, str):
            nodeName = value
        metadata[str(key)] = value if isinstance(value, str) else str(value)
    if address.weight != 1.0:
        metadata[WEIGHT_KEY] = repr(address.weight)
    family = resolver_pb2.Endpoint.INET6 if ip.version == 6 else resolver_pb2.Endpoint.INET4
    return resolver_pb2.Endpoint(
        inet_af=family,
        address=ip.packed,
        port=address.port,
        meta=resolver_pb2.Endpoint.Meta(nodeName=nodeName),
        metadata=metadata,
    )


def addrToReplicas(addr: Addr) -> Any:
    """
    An address set as a C{Replicas} message (addresses that are not IP
    addresses are left out; endpoints are sorted).
    """
    out = resolver_pb2.Replicas()
    if isinstance(addr, AddrBound):
        out.bound.SetInParent()
        for address in sorted(addr.addresses):
            endpoint = _endpoint(address)
            if endpoint is not None:
                out.bound.endpoints.append(endpoint)
        for key, value in addr.meta.items():
            out.bound.metadata[str(key)] = value if isinstance(value, str) else str(value)
    elif addr is AddrNeg:
        out.neg.SetInParent()
    elif isinstance(addr, AddrFailed):
        out.failed.message = addr.message
    else:
        out.pending.SetInParent()
    return out


def _addressFromEndpoint(endpoint: Any, i: int) -> Address:
    raw = bytes(endpoint.address)
    try:
        if endpoint.inet_af == resolver_pb2.Endpoint.INET6 or len(raw) == 16:
            host = str(ipaddress.IPv6Address(raw))
        else:
            host = str(ipaddress.IPv4Address(raw))
    except ValueError:
        raise ConvertError(f"endpoint {i}: an address of {len(raw)} bytes is not an IP address")
    if not 0 < endpoint.port < 65536:
        raise ConvertError(f"endpoint {i}: invalid port {endpoint.port}")
    meta: Dict[str, Any] = dict(endpoint.metadata)
    weight = 1.0
    rawWeight = meta.pop(WEIGHT_KEY, None)
    if rawWeight is not None:
        try:
            weight = float(rawWeight)
        except ValueError:
            raise ConvertError(f"endpoint {i}: invalid {WEIGHT_KEY} {rawWeight!r}")
    if endpoint.HasField("meta") and endpoint.meta.nodeName:
        meta[NODE_NAME] = endpoint.meta.nodeName
    return Address(host, endpoint.port, weight, meta)


def replicasToAddr(message: Any) -> Addr:
    """
    Decode a C{Replicas} message (no result at all means C{Neg}, as for
    Linkerd).
    """
    which = message.WhichOneof("result")
    if which == "bound":
        bound = message.bound
        addresses = [_addressFromEndpoint(e, i) for i, e in enumerate(bound.endpoints)]
        return AddrBound(addresses, dict(bound.metadata))
    if which == "pending":
        return AddrPending
    if which == "failed":
        return AddrFailed(Exception(message.failed.message or "unknown"))
    return AddrNeg


# ---------------------------------------------------------------------------
# delegation trees


def delegateTreeToProto(tree: DelegateTree) -> Any:
    """
    A delegation tree as a C{BoundDelegateTree}.  Every node but a
    transformation carries a dentry (the root's is C{/$/nop => ~}, as in
    Linkerd, whose client requires one).
    """
    out = delegator_pb2.BoundDelegateTree()
    _fillDelegate(out, tree, 0)
    return out


def _fillDelegate(out: Any, tree: DelegateTree, depth: int) -> None:
    if depth > 4 * MAX_DEPTH:
        raise ConvertError("delegation tree nested too deeply")
    out.path.CopyFrom(pathToProto(tree.path))
    if isinstance(tree, DTransformation):
        out.transformation.name = tree.name
        out.transformation.leaf.id.CopyFrom(pathToProto(tree.bound.id))
        out.transformation.leaf.residual.CopyFrom(pathToProto(tree.bound.residual))
        _fillDelegate(out.transformation.tree, tree.tree, depth + 1)
        return
    out.dentry.CopyFrom(dentryToProto(tree.dentry if tree.dentry is not None else Dentry.nop))
    if isinstance(tree, DNeg):
        out.neg.SetInParent()
    elif isinstance(tree, DFail):
        out.fail.SetInParent()
    elif isinstance(tree, DEmpty):
        out.empty.SetInParent()
    elif isinstance(tree, DException):
        out.exception = str(tree.exception) or type(tree.exception).__name__
    elif isinstance(tree, DDelegate):
        _fillDelegate(out.delegate, tree.tree, depth + 1)
    elif isinstance(tree, DLeaf):
        value = tree.value
        if isinstance(value, Bound):
            out.leaf.id.CopyFrom(pathToProto(value.id))
            out.leaf.residual.CopyFrom(pathToProto(value.residual))
        else:  # a path that is not bound yet
            out.leaf.id.CopyFrom(pathToProto(value))
            out.leaf.residual.SetInParent()
    elif isinstance(tree, DAlt):
        out.alt.SetInParent()
        for child in tree.trees:
            _fillDelegate(out.alt.trees.add(), child, depth + 1)
    elif isinstance(tree, DUnion):
        out.union.SetInParent()
        for weight, child in tree.trees:
            branch = out.union.trees.add(weight=weight)
            _fillDelegate(branch.tree, child, depth + 1)
    else:
        raise TypeError(f"not a delegation tree: {tree!r}")


def delegateTreeFromProto(message: Any, boundFor: Optional[Callable[[Path, Path], Bound]] = None, depth: int = 0) -> DelegateTree:
    """
    Decode a C{BoundDelegateTree} (the root dentry C{/$/nop => ~} becomes
    C{None}, as the router's own trees have it).

    @param boundFor: makes each leaf's L{Bound}; by default its address is
        unknown (pending).
    """
    if depth > 4 * MAX_DEPTH:
        raise ConvertError("delegation tree nested too deeply")
    if boundFor is None:
        boundFor = _unresolved
    path = pathFromProto(message.path, "node path")
    which = message.WhichOneof("node")
    if which == "transformation":
        t = message.transformation
        bound = boundFor(pathFromProto(t.leaf.id, "transformation id"), pathFromProto(t.leaf.residual, "residual"))
        return DTransformation(path, t.name, bound, delegateTreeFromProto(t.tree, boundFor, depth + 1))
    dentry: Optional[Dentry] = None
    if message.HasField("dentry"):
        dentry = dentryFromProto(message.dentry)
        if dentry == Dentry.nop:
            dentry = None
    if which == "neg":
        return DNeg(path, dentry)
    if which == "fail":
        return DFail(path, dentry)
    if which == "empty":
        return DEmpty(path, dentry)
    if which == "exception":
        return DException(path, dentry, Exception(message.exception))
    if which == "delegate":
        return DDelegate(path, dentry, delegateTreeFromProto(message.delegate, boundFor, depth + 1))
    if which == "leaf":
        ident = pathFromProto(message.leaf.id, "leaf id")
        return DLeaf(path, dentry, boundFor(ident, pathFromProto(message.leaf.residual, "residual")))
    if which == "alt":
        return DAlt(path, dentry, [delegateTreeFromProto(t, boundFor, depth + 1) for t in message.alt.trees])
    if which == "union":
        branches = []
        for w in message.union.trees:
            if not w.HasField("tree"):
                raise ConvertError("a union branch needs a tree")
            branches.append((w.weight, delegateTreeFromProto(w.tree, boundFor, depth + 1)))
        return DUnion(path, dentry, branches)
    raise ConvertError("a delegation node has no value")


def _unresolved(ident: Path, residual: Path) -> Bound:
    return Bound(ident, Var.const(AddrPending), residual)
