# -*- test-case-name: tests.test_naming_system -*-
"""
The built-in C{/$/...} namers (Finagle's C{Namer.global} plus Linkerd's
C{io.buoyant.*} rewriters) and the DNS-backed address vars behind
C{/$/inet}.

  - C{/$/inet/<host>/<port>[/rest]}, C{/$/inet/<port>[/rest]} (localhost),
    C{/$/fixedinet/...} (resolved once): a bound leaf whatever DNS says;
  - C{/$/fail/...} gives C{Fail}, C{/$/nil/...} gives C{Empty};
  - C{/$/io.buoyant.rinet/<port>/<host>[/rest]};
  - rewriters returning a path to delegate again: C{io.buoyant.hostportPfx},
    C{io.buoyant.porthostPfx}, C{io.buoyant.http.domainToPathPfx},
    C{io.buoyant.http.subdomainOfPfx} and the rest of the
    C{io.buoyant.http.*} family;
  - any other C{/$/<name>} fails with L{UnknownNamer}.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.internet.interfaces import IResolutionReceiver
from twisted.logger import Logger
from zope.interface import implementer

from linkerpy.naming.addr import Addr, AddrBound, AddrFailed, AddrNeg, AddrPending, Address, Bound
from linkerpy.naming.binding import UnknownNamer
from linkerpy.naming.path import Path
from linkerpy.naming.tree import Empty, Fail, Leaf, NameTree, Neg
from linkerpy.naming.var import Var

__all__ = ["SystemNamer", "InetResolver", "DEFAULT_REFRESH"]

_log = Logger()

#: Seconds between DNS refreshes of an observed C{/$/inet} name.
DEFAULT_REFRESH = 5.0

_DOLLAR = b"$"
_INT_RE = re.compile(r"[+-]?[0-9]+\Z")
_DNS_LABEL = re.compile(r"[a-z0-9][-a-z0-9]*[a-z0-9]?\Z")
_HOST_RE = re.compile(r"[A-Za-z0-9.:_-]+\Z")
_METHOD_RE = re.compile(r"[A-Z]+\Z")
_IPV4ISH = re.compile(r"[0-9xXa-fA-F.]+\Z")


def _javaInt(text: str) -> Optional[int]:
    """
    C{Integer.parseInt}: optional sign, ASCII digits, 32-bit range.
    """
    if not _INT_RE.match(text):
        return None
    n = int(text)
    if not -(2**31) <= n < 2**31:
        return None
    return n


def _utf8(elem: bytes) -> Optional[str]:
    try:
        return elem.decode("utf-8")
    except UnicodeDecodeError:
        return None


def literalAddress(host: str) -> Optional[str]:
    """
    @return: the canonical IP text when C{host} is an IP literal (including
        the short IPv4 forms C{inet_aton} accepts, such as C{127.1}), else C{None}.
    """
    h = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return str(ipaddress.ip_address(h))
    except ValueError:
        pass
    if _IPV4ISH.match(h):
        try:
            return socket.inet_ntoa(socket.inet_aton(h))
        except OSError:
            return None
    return None


@implementer(IResolutionReceiver)
class _Receiver:
    def __init__(self, done: Callable[[List[str]], None]) -> None:
        self._done = done
        self._hosts: List[str] = []

    def resolutionBegan(self, resolutionInProgress: Any) -> None:
        pass

    def addressResolved(self, address: Any) -> None:
        host = getattr(address, "host", None)
        if host and host not in self._hosts:
            self._hosts.append(host)

    def resolutionComplete(self) -> None:
        self._done(self._hosts)


class _InetVar(Var[Addr]):
    """
    The address set of C{host:port}, resolved while observed and refreshed
    every C{refresh} seconds (never for fixed names).
    """

    __slots__ = ("_resolver", "_host", "_port", "_fixed", "_call", "_generation", "_resolved")

    def __init__(self, resolver: "InetResolver", host: str, port: int, fixed: bool) -> None:
        Var.__init__(self, AddrPending)
        self._resolver = resolver
        self._host = host
        self._port = port
        self._fixed = fixed
        self._call: Any = None
        self._generation = 0
        self._resolved = False

    def _start(self) -> None:
        self._generation += 1
        if not (self._fixed and self._resolved):
            self._lookup(self._generation)

    def _stop(self) -> None:
        self._generation += 1
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _lookup(self, generation: int) -> None:
        self._call = None

        def done(hosts: List[str]) -> None:
            if generation != self._generation:
                return
            self._resolved = True
            if hosts:
                self._set(AddrBound(Address(h, self._port) for h in hosts))
            elif isinstance(self._value, AddrBound) and self._value.addresses:
                self._set(AddrFailed(Exception(f"DNS lookup of {self._host} returned no addresses")))
            else:
                self._set(AddrNeg)
            if not self._fixed and generation == self._generation:
                self._call = self._resolver.reactor.callLater(self._resolver.refresh, self._lookup, generation)

        try:
            self._resolver.reactor.nameResolver.resolveHostName(_Receiver(done), self._host, self._port)
        except Exception as e:
            _log.failure("resolving {host}", host=self._host)
            self._set(AddrFailed(e))


class InetResolver:
    """
    Shares one address var per C{(host, port, fixed)}.

    @ivar reactor: provides C{callLater} and C{nameResolver}.
    @ivar refresh: seconds between refreshes of an observed name.
    """

    def __init__(self, reactor: Any, refresh: float = DEFAULT_REFRESH) -> None:
        self.reactor = reactor
        self.refresh = refresh
        self._vars: Dict[Tuple[str, int, bool], Var[Addr]] = {}

    def addr(self, host: str, port: int, fixed: bool = False) -> Var[Addr]:
        """
        @return: the (lazily resolved) address var of C{host:port}.
        """
        key = (host, port, fixed)
        var = self._vars.get(key)
        if var is None:
            if not 0 <= port <= 65535:
                var = Var.const(AddrFailed(ValueError(f"port out of range:{port}")))
            else:
                literal = literalAddress(host)
                if literal is not None:
                    var = Var.const(AddrBound([Address(literal, port)]))
                else:
                    var = _InetVar(self, host, port, fixed)
            self._vars[key] = var
        return var


def _rewrite(elems: List[str], rest: Tuple[bytes, ...]) -> NameTree:
    if any(not e for e in elems):
        return Neg
    return Leaf(Path(*elems) + Path.fromElems(rest))


def _subdomain(domain: str, hostname: str) -> Optional[str]:
    idx = hostname.find(":")
    host = hostname[:idx] if idx > 0 else hostname
    sfx = "." + domain
    if host.endswith(sfx):
        sub = host[: -len(sfx)]
        return sub or None
    return None


def _hostColonPort(s: str) -> Optional[Tuple[str, str]]:
    parts = s.split(":")
    if len(parts) == 2 and _DNS_LABEL.match(parts[1]) and len(parts[1]) <= 63:
        return parts[0], parts[1]
    return None


def _reversedLabels(host: str) -> List[str]:
    labels = host.split(".")
    while labels and labels[-1] == "":
        labels.pop()
    return list(reversed(labels))


class SystemNamer:
    """
    The C{/$/...} namers.  C{lookup(path)} takes the whole path (C{/$/inet/...}).
    """

    def __init__(self, reactor: Any, inet: Optional[InetResolver] = None) -> None:
        self.inet = inet if inet is not None else InetResolver(reactor)

    def lookup(self, path: Path) -> NameTree:
        """
        @return: the tree for C{path} (C{Neg} if it does not start with C{/$}).
        @raise UnknownNamer: for C{/$/<unknown>}.
        """
        elems = path.elems
        if len(elems) < 2 or elems[0] != _DOLLAR:
            return Neg
        kind = _utf8(elems[1])
        rest = elems[2:]
        if kind in ("inet", "fixedinet"):
            bound = self._inet(kind, rest)
            if bound is None:
                raise UnknownNamer(kind, path)
            return Leaf(bound)
        if kind == "fail":
            return Fail
        if kind == "nil":
            return Empty
        handler = _REWRITERS.get(kind or "")
        if handler is None:
            raise UnknownNamer(kind or repr(elems[1]), path)
        if handler == "rinet":
            return self._rinet(rest)
        return handler(rest)  # type: ignore[operator,no-any-return]

    def _inet(self, kind: str, rest: Tuple[bytes, ...]) -> Optional[Bound]:
        fixed = kind == "fixedinet"
        texts = [_utf8(e) for e in rest[:2]]
        if len(rest) >= 2 and texts[0] is not None and texts[1] is not None:
            port = _javaInt(texts[1])
            if port is not None:
                addr = self.inet.addr(texts[0], port, fixed)
                return Bound(Path.fromElems((_DOLLAR, kind.encode()) + rest[:2]), addr, Path.fromElems(rest[2:]))
        if len(rest) >= 1 and texts[0] is not None:
            port = _javaInt(texts[0])
            if port is not None:
                addr = self.inet.addr("127.0.0.1", port, fixed)
                return Bound(Path.fromElems((_DOLLAR, kind.encode()) + rest[:1]), addr, Path.fromElems(rest[1:]))
        return None

    def _rinet(self, rest: Tuple[bytes, ...]) -> NameTree:
        if len(rest) < 2:
            return Neg
        port, host = _utf8(rest[0]), _utf8(rest[1])
        if port is None or host is None:
            return Neg
        p = _javaInt(port)
        if p is None:
            raise UnknownNamer("inet", Path("$", "inet", host, port))
        return Leaf(Bound(Path(b"$", b"io.buoyant.rinet") + Path.fromElems(rest[:2]), self.inet.addr(host, p),
                          Path.fromElems(rest[2:])))


def _strs(rest: Tuple[bytes, ...], n: int) -> Optional[List[str]]:
    if len(rest) < n:
        return None
    out = [_utf8(e) for e in rest[:n]]
    if any(s is None for s in out):
        return None
    return out  # type: ignore[return-value]


def _hostportPfx(rest: Tuple[bytes, ...]) -> NameTree:
    s = _strs(rest, 2)
    hp = _hostColonPort(s[1]) if s else None
    if s is None or hp is None:
        return Neg
    return _rewrite([s[0], hp[0], hp[1]], rest[2:])


def _porthostPfx(rest: Tuple[bytes, ...]) -> NameTree:
    s = _strs(rest, 2)
    hp = _hostColonPort(s[1]) if s else None
    if s is None or hp is None:
        return Neg
    return _rewrite([s[0], hp[1], hp[0]], rest[2:])


def _anyMethod(rest: Tuple[bytes, ...]) -> NameTree:
    s = _strs(rest, 1)
    if s is None or not _METHOD_RE.match(s[0]):
        return Neg
    return Leaf(Path.fromElems(rest[1:]))


def _anyMethodPfx(rest: Tuple[bytes, ...]) -> NameTree:
    s = _strs(rest, 2)
    if s is None or not _METHOD_RE.match(s[1]):
        return Neg
    return Leaf(Path.fromElems(rest[:1] + rest[2:]))


def _anyHost(rest: Tuple[bytes, ...]) -> NameTree:
    s = _strs(rest, 1)
    if s is None or not _HOST_RE.match(s[0]):
        return Neg
    return Leaf(Path.fromElems(rest[1:]))


def _anyHostPfx(rest: Tuple[bytes, ...]) -> NameTree:
    s = _strs(rest, 2)
    if s is None or not _HOST_RE.match(s[1]):
        return Neg
    return Leaf(Path.fromElems(rest[:1] + rest[2:]))


def _subdomainOf(rest: Tuple[bytes, ...]) -> NameTree:
    s = _strs(rest, 2)
    if s is None or not (_HOST_RE.match(s[0]) and _HOST_RE.match(s[1])):
        return Neg
    sub = _subdomain(s[0], s[1])
    return Neg if sub is None else _rewrite([sub], rest[2:])


def _subdomainOfPfx(rest: Tuple[bytes, ...]) -> NameTree:
    s = _strs(rest, 3)
    if s is None or not (_HOST_RE.match(s[0]) and _HOST_RE.match(s[2])):
        return Neg
    sub = _subdomain(s[0], s[2])
    return Neg if sub is None else _rewrite([s[1], sub], rest[3:])


def _domainToPath(rest: Tuple[bytes, ...]) -> NameTree:
    s = _strs(rest, 1)
    if s is None or not _HOST_RE.match(s[0]):
        return Neg
    return _rewrite(_reversedLabels(s[0]), rest[1:])


def _domainToPathPfx(rest: Tuple[bytes, ...]) -> NameTree:
    s = _strs(rest, 2)
    if s is None or not _HOST_RE.match(s[1]):
        return Neg
    return _rewrite([s[0]] + _reversedLabels(s[1]), rest[2:])


_REWRITERS: Dict[str, Any] = {
    "io.buoyant.rinet": "rinet",
    "io.buoyant.hostportPfx": _hostportPfx,
    "io.buoyant.porthostPfx": _porthostPfx,
    "io.buoyant.http.anyMethod": _anyMethod,
    "io.buoyant.http.anyMethodPfx": _anyMethodPfx,
    "io.buoyant.http.anyHost": _anyHost,
    "io.buoyant.http.anyHostPfx": _anyHostPfx,
    "io.buoyant.http.subdomainOf": _subdomainOf,
    "io.buoyant.http.subdomainOfPfx": _subdomainOfPfx,
    "io.buoyant.http.domainToPath": _domainToPath,
    "io.buoyant.http.domainToPathPfx": _domainToPathPfx,
}
