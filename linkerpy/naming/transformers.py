# -*- test-case-name: tests.test_naming_transformers -*-
"""
Transformers: rewrite bound trees after binding (interpreter- or
namer-level C{transformers:}).

Every transformed bound name gets the id C{/%/<prefix>/<original id>}
(e.g. C{/%/io.l5d.port/4141/#/io.l5d.fs/hello}), so clients of transformed
and untransformed names are never shared.  Per-address transformers
(C{io.l5d.port}, C{io.l5d.localhost}, C{io.l5d.specificHost}) also offer
C{transformBound(bound)}, which delegation uses to show C{transformation}
nodes.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, FrozenSet, Iterable, List, Optional

from zope.interface import implementer

from linkerpy.interfaces import INamer, ITransformer
from linkerpy.naming.addr import Addr, AddrBound, AddrNeg, AddrPending, Bound
from linkerpy.naming.binding import bind
from linkerpy.naming.path import Path
from linkerpy.naming.system import SystemNamer, literalAddress
from linkerpy.naming.tree import Alt, Leaf, NameTree, Union, Weighted
from linkerpy.naming.var import Activity, Var

__all__ = [
    "TRANSFORMER_PREFIX",
    "PortTransformer",
    "FilteringTransformer",
    "ReplaceTransformer",
    "ConstTransformer",
    "localAddresses",
    "stripTransformerPrefix",
]

#: The first element of transformed ids.
TRANSFORMER_PREFIX = Path(b"%")


def stripTransformerPrefix(path: Path) -> Path:
    """
    C{/%/io.l5d.port/4141/#/io.l5d.fs/x} becomes C{/#/io.l5d.fs/x}: drop
    the C{/%} element and everything up to the next C{#} or C{$} element.
    """
    elems = path.elems
    if not elems or elems[0] != b"%":
        return path
    for i, e in enumerate(elems):
        if e in (b"#", b"$"):
            return Path.fromElems(elems[i:])
    return Path.empty


class _BoundMapper:
    """
    Shared by per-address transformers: map every bound leaf.
    """

    prefix: Path

    def _mapAddr(self, addr: Addr) -> Addr:
        raise NotImplementedError()

    def _addrVar(self, bound: Bound) -> "Var[Addr]":
        return bound.addr.map(self._mapAddr)

    def transformBound(self, bound: Bound) -> Bound:
        """
        @return: the transformed bound name (prefixed id, mapped addresses).
        """
        return Bound(TRANSFORMER_PREFIX + self.prefix + bound.id, self._addrVar(bound), bound.residual)

    def transform(self, tree: NameTree) -> Activity[NameTree]:
        return Activity.value(tree.map(self.transformBound))


@implementer(ITransformer)
class PortTransformer(_BoundMapper):
    """
    C{io.l5d.port}: replace the port of every address.
    """

    def __init__(self, port: int, prefix: Optional[Path] = None) -> None:
        self.port = port
        self.prefix = prefix if prefix is not None else Path("io.l5d.port", str(port))

    def _mapAddr(self, addr: Addr) -> Addr:
        if isinstance(addr, AddrBound):
            return AddrBound((a.replace(port=self.port) for a in addr.addresses), addr.meta)
        return addr


def _ipKey(host: str) -> Optional[str]:
    lit = literalAddress(host)
    if lit is None:
        return None
    return str(ipaddress.ip_address(lit))


@implementer(ITransformer)
class FilteringTransformer(_BoundMapper):
    """
    Keep only the addresses whose IP is in C{allowed} (a L{Var} of a
    C{frozenset} of IP strings, or C{None} while unknown); an empty result
    is L{AddrNeg}.  C{io.l5d.localhost} and C{io.l5d.specificHost}.
    """

    def __init__(self, prefix: Path, allowed: "Var[Optional[FrozenSet[str]]]") -> None:
        self.prefix = prefix
        self.allowed = allowed

    def _addrVar(self, bound: Bound) -> "Var[Addr]":
        return Var.collect([bound.addr, self.allowed]).map(lambda pair: self._filter(*pair))

    def _filter(self, addr: Addr, allowed: Optional[FrozenSet[str]]) -> Addr:
        if not isinstance(addr, AddrBound):
            return addr
        if allowed is None:
            return AddrPending
        kept = [a for a in addr.addresses if _ipKey(a.host) in allowed]
        if not kept:
            return AddrNeg
        return AddrBound(kept, addr.meta)

    def _mapAddr(self, addr: Addr) -> Addr:  # pragma: no cover - _addrVar is overridden
        return self._filter(addr, self.allowed.sample())


def localAddresses() -> FrozenSet[str]:
    """
    The IP addresses of this host's interfaces (Linux: C{ioctl} and
    C{/proc/net/if_inet6}), plus the loopback addresses.  No DNS.
    """
    found = {"127.0.0.1", "::1"}
    try:
        import fcntl
        import struct

        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for _, name in socket.if_nameindex():
                try:
                    packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
                    found.add(socket.inet_ntoa(packed[20:24]))
                except OSError:
                    continue
        finally:
            s.close()
    except (ImportError, OSError, AttributeError):
        pass
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                raw = line.split()[0]
                found.add(str(ipaddress.ip_address(bytes.fromhex(raw))))
    except (OSError, ValueError, IndexError):
        pass
    return frozenset(str(ipaddress.ip_address(a)) for a in found)


def resolvedHost(reactor: Any, host: str) -> "Var[Optional[FrozenSet[str]]]":
    """
    @return: a var of the IPs of C{host}: immediate for a literal, else
        resolved once through C{reactor.nameResolver} (C{None} until then).
    """
    lit = _ipKey(host)
    if lit is not None:
        return Var(frozenset([lit]))
    var: Var[Optional[FrozenSet[str]]] = Var(None)
    from twisted.internet.interfaces import IResolutionReceiver
    from zope.interface import implementer as impl

    found: List[str] = []

    @impl(IResolutionReceiver)
    class Receiver:
        def resolutionBegan(self, r: Any) -> None:
            pass

        def addressResolved(self, address: Any) -> None:
            ip = _ipKey(getattr(address, "host", ""))
            if ip:
                found.append(ip)

        def resolutionComplete(self) -> None:
            var.update(frozenset(found))

    reactor.nameResolver.resolveHostName(Receiver(), host)
    return var


def _replaceLeaves(tree: NameTree, replacement: NameTree) -> NameTree:
    if isinstance(tree, Leaf):
        return replacement
    if isinstance(tree, Alt):
        return Alt(*(_replaceLeaves(t, replacement) for t in tree.trees))
    if isinstance(tree, Union):
        return Union(*(Weighted(w.weight, _replaceLeaves(w.tree, replacement)) for w in tree.trees))
    return tree


class _PathBinding:
    def __init__(self, system: SystemNamer, path: Path, prefix: Path) -> None:
        self.path = path
        self.prefix = prefix
        ident = TRANSFORMER_PREFIX + prefix + path
        self.bound = bind(system.lookup, Leaf(path)).map(
            lambda tree: tree.map(lambda b: Bound(ident, b.addr, b.residual))
        )


@implementer(ITransformer)
class ReplaceTransformer(_PathBinding):
    """
    C{io.l5d.replace}: every bound leaf becomes C{path} (bound with the
    system namers); C{Neg}, C{Fail} and C{Empty} stay.
    """

    def __init__(self, system: SystemNamer, path: Path, prefix: Optional[Path] = None) -> None:
        _PathBinding.__init__(self, system, path, prefix if prefix is not None else Path("io.l5d.replace"))

    def transform(self, tree: NameTree) -> Activity[NameTree]:
        return self.bound.map(lambda replacement: _replaceLeaves(tree, replacement))


@implementer(ITransformer)
class ConstTransformer(_PathBinding):
    """
    C{io.l5d.const}: always C{path} (bound with the system namers), even
    when the tree was C{Neg}.
    """

    def __init__(self, system: SystemNamer, path: Path, prefix: Optional[Path] = None) -> None:
        _PathBinding.__init__(self, system, path, prefix if prefix is not None else Path("io.l5d.const"))

    def transform(self, tree: NameTree) -> Activity[NameTree]:
        return self.bound


def transformNamer(namer: Any, transformers: Iterable[Any]) -> Any:
    """
    Wrap a namer so its fully bound answers pass through C{transformers}
    (answers with path leaves are left alone, as in Linkerd).
    """
    wrapped = namer
    for t in transformers:
        wrapped = _TransformedNamer(wrapped, t)
    return wrapped


@implementer(INamer)
class _TransformedNamer:
    def __init__(self, underlying: Any, transformer: Any) -> None:
        self.underlying = underlying
        self.transformer = transformer

    def lookup(self, path: Path) -> Activity[NameTree]:
        def apply(tree: NameTree) -> Activity[NameTree]:
            if all(isinstance(l.value, Bound) for l in tree.leaves()):
                return self.transformer.transform(tree)  # type: ignore[no-any-return]
            return Activity.value(tree)

        return self.underlying.lookup(path).flatMap(apply)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.underlying, name)
