# -*- test-case-name: tests.test_naming_values -*-
"""
Concrete addresses and bound names.

An L{Address} is one replica (host, port, weight, metadata).  An address
set's state is one of L{AddrBound}, L{AddrNeg}, L{AddrPending} or
L{AddrFailed}, held in a L{linkerpy.naming.var.Var} that namers update.  A
L{Bound} is a leaf of a bound name tree: a concrete id, its address Var and
the residual path.

Failure policy: a namer that cannot read its source (a malformed fs file, a
DNS error after a success) reports L{AddrFailed} on C{Bound.addr}, visible to
the admin endpoints.  Consumers that route traffic use L{Bound.stableAddr},
which keeps the last L{AddrBound} through later failures and pending states
(but follows L{AddrNeg} and new address sets at once).
"""

from __future__ import annotations

from typing import Any, Dict, FrozenSet, Iterable, Mapping, Optional

from linkerpy.naming.path import Path
from linkerpy.naming.var import Var

__all__ = [
    "Address",
    "Addr",
    "AddrBound",
    "AddrNeg",
    "AddrPending",
    "AddrFailed",
    "Bound",
    "WEIGHT_KEY",
]

#: The metadata key Finagle uses for an address's weight (shown in JSON).
WEIGHT_KEY = "endpoint_addr_weight"


class Address:
    """
    One replica: C{host} (an IP address string once resolved), C{port},
    C{weight} (load-balancer weight, default 1.0) and C{meta} (free-form).
    """

    __slots__ = ("host", "port", "weight", "meta", "_hash")

    def __init__(self, host: str, port: int, weight: float = 1.0, meta: Optional[Mapping[str, Any]] = None) -> None:
        self.host = host
        self.port = int(port)
        self.weight = float(weight)
        self.meta: Dict[str, Any] = dict(meta) if meta else {}
        self._hash = hash((host, self.port, self.weight))

    def replace(self, **changes: Any) -> "Address":
        """
        @return: a copy with some fields changed.
        """
        kw = {"host": self.host, "port": self.port, "weight": self.weight, "meta": self.meta}
        kw.update(changes)
        return Address(**kw)

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Address):
            return NotImplemented
        return (
            self.host == other.host
            and self.port == other.port
            and self.weight == other.weight
            and self.meta == other.meta
        )

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        return self._hash

    def __lt__(self, other: "Address") -> bool:
        return (self.host, self.port, self.weight) < (other.host, other.port, other.weight)

    def __repr__(self) -> str:
        extra = "" if self.weight == 1.0 else f" * {self.weight}"
        meta = f" {self.meta!r}" if self.meta else ""
        return f"Address({self.host}:{self.port}{extra}{meta})"


class Addr:
    """
    Base of the address-set states.
    """

    __slots__ = ()


class AddrBound(Addr):
    """
    A known (possibly empty) set of addresses.

    @ivar addresses: a C{frozenset} of L{Address}.
    @ivar meta: metadata about the set.
    """

    __slots__ = ("addresses", "meta")

    def __init__(self, addresses: Iterable[Address] = (), meta: Optional[Mapping[str, Any]] = None) -> None:
        self.addresses: FrozenSet[Address] = frozenset(addresses)
        self.meta: Dict[str, Any] = dict(meta) if meta else {}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AddrBound) and self.addresses == other.addresses and self.meta == other.meta

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(("AddrBound", self.addresses))

    def __repr__(self) -> str:
        return f"AddrBound({sorted(self.addresses)!r})"


class AddrFailed(Addr):
    """
    The address set could not be determined.

    @ivar cause: an exception.
    """

    __slots__ = ("cause",)

    def __init__(self, cause: Any) -> None:
        if not isinstance(cause, BaseException):
            cause = Exception(str(cause))
        self.cause: BaseException = cause

    @property
    def message(self) -> str:
        return str(self.cause)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, AddrFailed)
            and type(self.cause) is type(other.cause)
            and self.cause.args == other.cause.args
        )

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(("AddrFailed", str(self.cause)))

    def __repr__(self) -> str:
        return f"AddrFailed({self.cause!r})"


class _AddrSingleton(Addr):
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __reduce__(self) -> str:
        return self._name


#: The name does not exist (e.g. the fs file was deleted, or DNS said NXDOMAIN).
AddrNeg: Addr = _AddrSingleton("AddrNeg")
#: Not known yet (e.g. DNS in flight).
AddrPending: Addr = _AddrSingleton("AddrPending")


def _keepLastBound() -> Any:
    last: list = []

    def keep(addr: Addr) -> Addr:
        if isinstance(addr, AddrBound) or addr is AddrNeg:
            last[:] = [addr]
            return addr
        if last and isinstance(last[0], AddrBound):
            return last[0]  # type: ignore[no-any-return]
        return addr

    return keep


class Bound:
    """
    A concrete (bound) name: the leaf of a bound tree.

    Equality and hash use C{id} and C{residual} only.

    @ivar id: the concrete name, a L{Path} (C{/#/io.l5d.fs/hello},
        C{/$/inet/127.0.0.1/8080}, C{/%/io.l5d.port/4141/#/...}).
    @ivar addr: a L{Var} of L{Addr}: the live address set, as reported.
    @ivar residual: the rest of the logical path, a L{Path}.
    """

    __slots__ = ("id", "addr", "residual", "_hash", "_stable")

    def __init__(self, id: Path, addr: "Var[Addr]", residual: Path = Path.empty) -> None:
        self.id = id
        self.addr = addr
        self.residual = residual
        self._hash = hash(("Bound", id, residual))
        self._stable: "Optional[Var[Addr]]" = None

    @property
    def stableAddr(self) -> "Var[Addr]":
        """
        A derived var of C{addr} that keeps the last L{AddrBound} when the
        namer later reports L{AddrFailed} or L{AddrPending}.  Routers should
        balance over this one.
        """
        stable = self._stable
        if stable is None:
            stable = self._stable = self.addr.map(_keepLastBound())
        return stable

    @property
    def show(self) -> str:
        """
        C{(id + residual).show}: how bound leaves print in a name tree.
        """
        return (self.id + self.residual).show

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Bound):
            return NotImplemented
        return self.id == other.id and self.residual == other.residual

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"Bound({self.id.show}, residual={self.residual.show})"
