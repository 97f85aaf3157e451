# -*- test-case-name: tests.test_namerd_jsoncodec -*-
"""
Namerd's JSON shapes, both ways: the server renders dtabs, bound trees and
address sets; the router-side plugins parse them back into linkerpy values
(L{Dtab}, name trees of L{Bound}, L{Addr}, L{DelegateTree}).

Shapes (Namerd's, linkerd1.md §12.2):

  - dtab: C{[{"prefix": "/svc", "dst": "/#/io.l5d.fs"}]};
  - address set: C{{"type": "bound", "addrs": [{"ip", "port", "meta"}], "meta"}},
    C{{"type": "neg"}}, C{{"type": "pending"}}, C{{"type": "failed", "cause"}};
  - bound tree (bind): C{{"type": "leaf", "bound": {"addr", "id", "path"}}},
    C{{"type": "union", "union": [{"weight", "tree"}]}}, C{{"type": "neg"}},
    C{{"type": "fail"}}, C{{"type": "empty"}};
  - delegation tree: L{linkerpy.naming.delegate.DelegateTree.toJSON}.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List

from linkerpy.naming import (
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
    addrToJSON,
)
from linkerpy.naming.path import Prefix

__all__ = [
    "dtabToJSON",
    "dtabFromJSON",
    "addrToJSON",
    "addrFromJSON",
    "boundTreeToJSON",
    "boundTreeFromJSON",
    "delegateTreeFromJSON",
    "CodecError",
]


class CodecError(ValueError):
    """
    A JSON document does not have the expected shape.
    """


def _expect(value: Any, tp: type, what: str) -> Any:
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise CodecError(f"{what}: expected {tp.__name__}, got {type(value).__name__}")
    return value


# ---------------------------------------------------------------------------
# dtabs


def dtabToJSON(dtab: Dtab) -> List[Dict[str, str]]:
    """
    @return: C{[{"prefix": ..., "dst": ...}]}.
    """
    return [{"prefix": d.prefix.show, "dst": d.dst.show} for d in dtab]


def dtabFromJSON(value: Any) -> Dtab:
    """
    Parse the JSON form of a dtab.

    @raise CodecError: wrong shape.
    @raise linkerpy.naming.ParseError: a bad prefix or destination (its
        message says which entry).
    """
    _expect(value, list, "dtab")
    dentries = []
    for i, item in enumerate(value):
        _expect(item, dict, f"dtab[{i}]")
        unknown = set(item) - {"prefix", "dst"}
        if unknown:
            raise CodecError(f"dtab[{i}]: unknown key(s) {', '.join(sorted(unknown))}; expected 'prefix' and 'dst'")
        prefix = _expect(item.get("prefix"), str, f"dtab[{i}].prefix")
        dst = _expect(item.get("dst"), str, f"dtab[{i}].dst")
        try:
            dentries.append(Dentry(Prefix.read(prefix), NameTree.read(dst)))
        except ValueError as e:
            raise CodecError(f"dtab[{i}]: {e}")
    return Dtab(dentries)


# ---------------------------------------------------------------------------
# address sets


def addrFromJSON(value: Any) -> Addr:
    """
    Parse an address set.

    @raise CodecError: wrong shape.
    """
    _expect(value, dict, "addr")
    kind = value.get("type")
    if kind == "bound":
        addresses = []
        for i, a in enumerate(_expect(value.get("addrs", []), list, "addr.addrs")):
            _expect(a, dict, f"addr.addrs[{i}]")
            ip = _expect(a.get("ip"), str, f"addr.addrs[{i}].ip")
            port = _expect(a.get("port"), int, f"addr.addrs[{i}].port")
            meta = dict(_expect(a.get("meta", {}), dict, f"addr.addrs[{i}].meta"))
            weight = meta.pop(WEIGHT_KEY, 1.0)
            if not isinstance(weight, (int, float)) or isinstance(weight, bool):
                raise CodecError(f"addr.addrs[{i}].meta.{WEIGHT_KEY}: expected a number")
            addresses.append(Address(ip, port, float(weight), meta))
        meta = _expect(value.get("meta", {}), dict, "addr.meta")
        return AddrBound(addresses, meta)
    if kind == "neg":
        return AddrNeg
    if kind == "pending":
        return AddrPending
    if kind == "failed":
        return AddrFailed(Exception(str(value.get("cause", "failed"))))
    raise CodecError(f"addr.type: expected bound, neg, pending or failed, got {kind!r}")


# ---------------------------------------------------------------------------
# bound trees


def boundTreeToJSON(tree: NameTree) -> Dict[str, Any]:
    """
    Namerd's bind answer for a bound tree (no C{path} fields; each leaf
    shows its address set as it is now).
    """
    if isinstance(tree, Leaf):
        bound = tree.value
        return {
            "type": "leaf",
            "bound": {"addr": addrToJSON(bound.addr.sample()), "id": bound.id.show, "path": bound.residual.show},
        }
    if isinstance(tree, Union):
        return {"type": "union", "union": [{"weight": w.weight, "tree": boundTreeToJSON(w.tree)} for w in tree.trees]}
    if isinstance(tree, Alt):
        return {"type": "alt", "alt": [boundTreeToJSON(t) for t in tree.trees]}
    if tree is Neg:
        return {"type": "neg"}
    if tree is Fail:
        return {"type": "fail"}
    if tree is Empty:
        return {"type": "empty"}
    raise TypeError(f"not a bound tree: {tree!r}")


def boundTreeFromJSON(value: Any, boundFor: Callable[[Path, Path], Bound], depth: int = 0) -> NameTree:
    """
    Parse a bind answer.

    @param boundFor: C{boundFor(id, residual)} makes the L{Bound} of a leaf
        (the router side shares one address var per id).
    @raise CodecError: wrong shape.
    """
    if depth > 100:
        raise CodecError("bound tree nested too deeply")
    _expect(value, dict, "tree")
    kind = value.get("type")
    if kind == "leaf":
        bound = _expect(value.get("bound"), dict, "tree.bound")
        try:
            ident = Path.read(_expect(bound.get("id"), str, "tree.bound.id"))
            residual = Path.read(bound.get("path") or "/")
        except ValueError as e:
            raise CodecError(f"tree.bound: {e}")
        return Leaf(boundFor(ident, residual))
    if kind == "union":
        branches = []
        for i, w in enumerate(_expect(value.get("union"), list, "tree.union")):
            _expect(w, dict, f"tree.union[{i}]")
            weight = w.get("weight", 1.0)
            if not isinstance(weight, (int, float)) or isinstance(weight, bool):
                raise CodecError(f"tree.union[{i}].weight: expected a number")
            branches.append(Weighted(float(weight), boundTreeFromJSON(w.get("tree"), boundFor, depth + 1)))
        return Union(*branches)
    if kind == "alt":
        return Alt(*(boundTreeFromJSON(t, boundFor, depth + 1) for t in _expect(value.get("alt"), list, "tree.alt")))
    if kind == "neg":
        return Neg
    if kind == "fail":
        return Fail
    if kind == "empty":
        return Empty
    raise CodecError(f"tree.type: expected leaf, union, alt, neg, fail or empty, got {kind!r}")


# ---------------------------------------------------------------------------
# delegation trees


def _path(text: Any, what: str) -> Path:
    if text in ("~", "!"):
        return Path.empty
    try:
        return Path.read(_expect(text, str, what))
    except ValueError as e:
        raise CodecError(f"{what}: {e}")


def _dentry(value: Any) -> Any:
    if value is None:
        return None
    _expect(value, dict, "dentry")
    try:
        return Dentry(Prefix.read(_expect(value.get("prefix"), str, "dentry.prefix")),
                      NameTree.read(_expect(value.get("dst"), str, "dentry.dst")))
    except ValueError as e:
        raise CodecError(f"dentry: {e}")


def _bound(value: Any) -> Bound:
    _expect(value, dict, "bound")
    addr = addrFromJSON(value.get("addr", {"type": "pending"}))
    return Bound(_path(value.get("id"), "bound.id"), Var.const(addr), _path(value.get("path", "/"), "bound.path"))


def delegateTreeFromJSON(value: Any, depth: int = 0) -> DelegateTree:
    """
    Parse a delegation tree (the inverse of C{DelegateTree.toJSON}): the
    router-side interpreter answers C{delegate()} with it.

    @raise CodecError: wrong shape.
    """
    if depth > 200:
        raise CodecError("delegation tree nested too deeply")
    _expect(value, dict, "node")
    kind = value.get("type")
    if kind == "transformation":
        return DTransformation(
            _path(value.get("path", "/"), "node.path"),
            str(value.get("name", "")),
            _bound(value.get("bound")),
            delegateTreeFromJSON(value.get("tree"), depth + 1),
        )
    path = _path(value.get("path", "/"), "node.path")
    dentry = _dentry(value.get("dentry"))
    if kind == "neg":
        return DNeg(path, dentry)
    if kind == "fail":
        return DFail(path, dentry)
    if kind == "empty":
        return DEmpty(path, dentry)
    if kind == "exception":
        return DException(path, dentry, Exception(str(value.get("message", ""))))
    if kind == "delegate":
        return DDelegate(path, dentry, delegateTreeFromJSON(value.get("delegate"), depth + 1))
    if kind == "leaf":
        return DLeaf(path, dentry, _bound(value.get("bound")))
    if kind == "alt":
        return DAlt(path, dentry, [delegateTreeFromJSON(t, depth + 1) for t in _expect(value.get("alt"), list, "node.alt")])
    if kind == "union":
        branches = []
        for i, w in enumerate(_expect(value.get("union"), list, "node.union")):
            _expect(w, dict, f"node.union[{i}]")
            branches.append((float(w.get("weight", 1.0)), delegateTreeFromJSON(w.get("tree"), depth + 1)))
        return DUnion(path, dentry, branches)
    raise CodecError(f"node.type: unknown type {kind!r}")
