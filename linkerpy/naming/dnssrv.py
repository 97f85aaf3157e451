# -*- test-case-name: tests.test_naming_dnssrv -*-
"""
The C{io.l5d.dnssrv} namer: C{<prefix>/<srv name>[/residual]} binds to the
targets of the DNS SRV record C{<srv name>}, refreshed periodically.

Lookups go through C{twisted.names.client.Resolver} (the configured
C{dnsHosts}, or the system's resolv.conf).  Only the records of the lowest
priority are used; each address's weight is its SRV weight (a weight of 0
counts as 0.01 next to non-zero weights, and as 1 when all are 0).  Targets
are resolved from the additional section when present, else with an
address lookup.  Before the first success a failure or an empty answer is
C{Neg}; after one, a failure is reported as L{AddrFailed} on the bound
name's address var (routers keep the last good set via C{stableAddr}).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger
from twisted.names import dns
from zope.interface import implementer

from linkerpy.interfaces import INamer
from linkerpy.naming.addr import Addr, AddrBound, AddrFailed, AddrPending, Address, Bound
from linkerpy.naming.path import Path
from linkerpy.naming.tree import Leaf, Neg
from linkerpy.naming.var import Activity, Ok, Pending, Var

__all__ = ["DnsSrvNamer", "DNSLookupError"]

_log = Logger()


class DNSLookupError(Exception):
    """
    An SRV lookup failed or returned nothing usable.
    """


class _SrvVar(Var[Addr]):
    """
    The address set of one SRV name, looked up while observed.
    """

    __slots__ = ("_namer", "_name", "_call", "_generation", "_ever")

    def __init__(self, namer: "DnsSrvNamer", name: str) -> None:
        Var.__init__(self, AddrPending)
        self._namer = namer
        self._name = name
        self._call: Any = None
        self._generation = 0
        self._ever = False

    def _start(self) -> None:
        self._generation += 1
        self._lookup(self._generation)

    def _stop(self) -> None:
        self._generation += 1
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _lookup(self, generation: int) -> None:
        self._call = None
        d = self._namer._query(self._name)

        def ok(addresses: List[Address]) -> None:
            if generation != self._generation:
                return
            if addresses:
                self._ever = True
                self._set(AddrBound(addresses))
            else:
                self._fail(DNSLookupError(f"empty response for {self._name}"))

        def failed(f: Any) -> None:
            if generation == self._generation:
                self._fail(DNSLookupError(f"SRV lookup of {self._name} failed: {f.getErrorMessage()}"))

        def again(_: Any) -> None:
            if generation == self._generation:
                self._call = self._namer.reactor.callLater(self._namer.refresh, self._lookup, generation)

        d.addCallbacks(ok, failed).addBoth(again)

    def _fail(self, e: Exception) -> None:
        self._set(AddrFailed(e))


def _weights(records: Sequence[Any]) -> List[float]:
    raw = [r.weight for r in records]
    if not any(raw):
        return [1.0] * len(raw)
    return [float(w) if w else 0.01 for w in raw]


@implementer(INamer)
class DnsSrvNamer:
    """
    @ivar resolver: a C{twisted.names} resolver (C{lookupService},
        C{lookupAddress}).
    @ivar refresh: seconds between lookups of an observed name.
    """

    def __init__(self, reactor: Any, prefix: Path, resolver: Any, refresh: float = 5.0) -> None:
        self.reactor = reactor
        self.prefix = prefix
        self.resolver = resolver
        self.refresh = refresh
        self._vars: Dict[str, _SrvVar] = {}

    def _var(self, name: str) -> _SrvVar:
        var = self._vars.get(name)
        if var is None:
            var = self._vars[name] = _SrvVar(self, name)
        return var

    def lookup(self, path: Path) -> Activity[Any]:
        if not path.elems:
            return Activity.value(Neg)
        try:
            name = path.elems[0].decode("utf-8")
        except UnicodeDecodeError:
            return Activity.value(Neg)
        var = self._var(name)
        bound = Bound(self.prefix + path.take(1), var, path.drop(1))

        def state(addr: Addr) -> Any:
            if addr is AddrPending:
                return Pending
            if isinstance(addr, AddrBound) or var._ever:
                return Ok(Leaf(bound))
            return Ok(Neg)

        return Activity(var.map(state))

    def _query(self, name: str) -> "Deferred[List[Address]]":
        d = self.resolver.lookupService(name)
        return d.addCallback(self._targets)

    def _targets(self, result: Tuple[List[Any], List[Any], List[Any]]) -> Any:
        answers, _authority, additional = result
        srvs = [rr.payload for rr in answers if rr.type == dns.SRV]
        if not srvs:
            return []
        best = min(s.priority for s in srvs)
        srvs = [s for s in srvs if s.priority == best]
        known: Dict[str, List[str]] = {}
        for rr in additional:
            if rr.type in (dns.A, dns.AAAA):
                known.setdefault(str(rr.name).lower(), []).append(rr.payload.dottedQuad() if rr.type == dns.A
                                                                  else _ipv6(rr.payload.address))
        weights = _weights(srvs)

        def forRecord(srv: Any, weight: float) -> Any:
            target = str(srv.target).lower()
            if target in known:
                return [Address(ip, srv.port, weight) for ip in known[target]]
            d = self.resolver.lookupAddress(target)

            def fromAnswers(res: Any) -> List[Address]:
                ips = [rr.payload.dottedQuad() for rr in res[0] if rr.type == dns.A]
                if not ips:
                    _log.warn("srv lookup returned unknown host {target}", target=target)
                return [Address(ip, srv.port, weight) for ip in ips]

            def unknown(f: Any) -> List[Address]:
                _log.warn("srv lookup returned unknown host {target}", target=target)
                return []

            return d.addCallbacks(fromAnswers, unknown)

        parts = [forRecord(s, w) for s, w in zip(srvs, weights)]
        deferreds = [p if isinstance(p, Deferred) else _succeed(p) for p in parts]
        return gatherResults(deferreds).addCallback(lambda lists: [a for l in lists for a in l])

    def state(self) -> Dict[Path, Addr]:
        """
        @return: C{{id: Addr}} of the names looked up so far (for C{/namer_state}).
        """
        return {self.prefix + Path(name): var.sample() for name, var in sorted(self._vars.items())}


def _succeed(value: Any) -> "Deferred[Any]":
    d: Deferred[Any] = Deferred()
    d.callback(value)
    return d


def _ipv6(packed: bytes) -> str:
    import socket

    return socket.inet_ntop(socket.AF_INET6, packed)


def newResolver(reactor: Any, servers: Optional[Sequence[Tuple[str, int]]]) -> Any:
    """
    @return: a C{twisted.names.client.Resolver} for C{servers} (C{None}: resolv.conf).
    """
    from twisted.names.client import Resolver

    if servers:
        return Resolver(servers=list(servers), reactor=reactor)
    return Resolver(resolv="/etc/resolv.conf", reactor=reactor)
