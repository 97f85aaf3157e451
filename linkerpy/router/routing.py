# -*- test-case-name: tests.test_router_routing -*-
"""
The protocol-agnostic routing core: from a logical name to an endpoint.

    identify → L{RoutingCore.routeFor}(path, localDtab) → L{PathRoute}
             (service stack, built per name) → L{Dispatcher} (the bound tree;
             weighted unions split traffic) → L{Client} (client stack, built
             per concrete name) → load balancer → endpoint → protocol pool

Everything above the endpoint is built when a name is first seen (or when its
binding or policy changes), never per request: the per-request work is a dict
lookup, the composed stack calls, a weighted pick and a balancer pick.
Bindings and address sets are observed: when a namer or a dtab changes, the
dispatcher and endpoint sets are rebuilt in place and new requests use them;
requests in flight finish where they started.
"""

from __future__ import annotations

import bisect
import random
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from linkerpy.errors import NoBrokersAvailable, RequestTimeout
from linkerpy.naming.addr import AddrBound, AddrNeg, Bound
from linkerpy.naming.dtab import Dtab
from linkerpy.naming.path import Path
from linkerpy.naming.tree import Fail, Leaf, Neg, Union
from linkerpy.naming.var import Failed, Ok
from linkerpy.policy.entries import CLIENT, SERVICE, FoldedPolicy, fold
from linkerpy.policy.stack import installedModules

log = Logger()


class StackContext:
    """
    What policy modules get when they are built for one name.

    @ivar reactor: the reactor (timers, clock).
    @ivar metrics: the metrics scope of the service or client.
    @ivar name: the service path or client id (a L{Path}).
    @ivar label: the router label.
    @ivar protocol: the router's L{ProtocolAdapter}.
    @ivar registry: the plugin registry.
    @ivar random: a C{random.Random} (injected for determinism).
    """

    __slots__ = ("reactor", "metrics", "name", "label", "protocol", "registry", "random")

    def __init__(self, reactor: Any, metrics: Any, name: Path, label: str, protocol: Any, registry: Any, rng: Any) -> None:
        self.reactor = reactor
        self.metrics = metrics
        self.name = name
        self.label = label
        self.protocol = protocol
        self.registry = registry
        self.random = rng


class ProtocolAdapter:
    """
    What a protocol supplies to the routing core (subclassed by HTTP, h2, TCP).
    """

    name = "?"

    def send(self, endpoint: Any, exchange: Any, client: "Client") -> Deferred:
        """
        One attempt: carry C{exchange} to C{endpoint}.

        @return: a C{Deferred} firing with the protocol response.
        """
        raise NotImplementedError()

    def newPool(self, endpoint: Any, policy: FoldedPolicy, client: "Client") -> Any:
        """
        A connection pool for a new endpoint of C{client}.
        """
        return None

    def wrapServiceStats(self, call: Callable[[Any], Deferred], route: "PathRoute") -> Callable[[Any], Deferred]:
        return call

    def wrapClientStats(self, call: Callable[[Any], Deferred], client: "Client") -> Callable[[Any], Deferred]:
        return call

    def succeeded(self, exchange: Any, response: Any, failure: Any) -> bool:
        """
        Whether an attempt counts as a success for failure accrual.
        """
        return failure is None

    def poolSettingsChanged(self, before: FoldedPolicy, after: FoldedPolicy) -> bool:
        """
        Whether a client policy change needs new pools for the endpoints.
        """
        return False

    def fuseService(self, route: "PathRoute", modules: Sequence[Any]) -> Any:
        """
        A fused service path for C{route} (the statistics and the built-in
        C{modules} run inline, without a C{Deferred} per layer), or C{None}
        to always use the composed stack C{route.call}.  Called whenever
        the route's policy changes; C{modules} are the module instances the
        composed stack also uses (they share budgets and metrics).
        """
        return None

    def fuseClient(self, client: "Client", modules: Sequence[Any]) -> Any:
        """
        The client-side counterpart of L{fuseService}, or C{None}.
        """
        return None


def _metricName(path: Path) -> str:
    return path.show[1:] if len(path) else ""


class Dispatcher:
    """
    A bound name tree turned into a picker: leaves are clients, weighted
    unions pick a branch per request (weights normalised; uniform when they
    sum to zero), Neg/Fail/Empty fail with L{NoBrokersAvailable}.
    """

    __slots__ = ("pick",)

    def __init__(self, pick: Callable[[], Tuple[Optional["Client"], Optional[Path], Optional[str]]]) -> None:
        self.pick = pick

    @classmethod
    def build(cls, tree: Any, clientFor: Callable[[Bound], "Client"], rng: Any) -> "Dispatcher":
        return cls(_picker(tree, clientFor, rng))


def _picker(tree: Any, clientFor: Callable[[Bound], "Client"], rng: Any) -> Callable[[], Tuple[Any, Any, Any]]:
    if isinstance(tree, Leaf):
        bound = tree.value
        client = clientFor(bound)
        residual = bound.residual
        result = (client, residual, None)
        return lambda: result
    if isinstance(tree, Union):
        branches = [(w.weight, _picker(w.tree, clientFor, rng)) for w in tree.trees]
        total = sum(max(w, 0.0) for w, _ in branches)
        pickers = [p for _, p in branches]
        if total <= 0:
            n = len(pickers)
            return lambda: pickers[int(rng.random() * n)]()
        cumulative: List[float] = []
        acc = 0.0
        for w, _ in branches:
            acc += max(w, 0.0) / total
            cumulative.append(acc)
        cumulative[-1] = 1.0
        bisectRight = bisect.bisect_right
        last = len(pickers) - 1
        return lambda: pickers[min(bisectRight(cumulative, rng.random()), last)]()
    why = {id(Neg): "the name is not bound (Neg)", id(Fail): "the name failed to bind (Fail)"}.get(
        id(tree), "the name is bound to an empty set"
    )
    result = (None, None, why)
    return lambda: result


class PathRoute:
    """
    Everything the router keeps for one logical name and local dtab.

    @ivar call: the composed service stack: C{call(exchange) -> Deferred}.
    """

    def __init__(self, core: "RoutingCore", path: Path, localDtab: Dtab) -> None:
        self.core = core
        self.path = path
        self.localDtab = localDtab
        self.name = path.show
        self.metrics = core.metrics.scope("service", _metricName(path))
        self.dispatcher: Optional[Dispatcher] = None
        self.bindingError: Optional[BaseException] = None
        self.policy: Optional[FoldedPolicy] = None
        self.touched = True
        self.idleSince = core.reactor.seconds()
        self.call: Callable[[Any], Deferred] = self._dispatch
        self.fast: Any = None
        self._waiters: List[Deferred] = []
        self._context = StackContext(
            core.reactor, self.metrics, path, core.label, core.protocol, core.registry, core.random
        )
        self._policyObs = core.serviceEntries.observe(self._onPolicy)
        self._binding = core.interpreter.bind(core.baseDtab + localDtab, path)
        self._bindingObs = self._binding.observe(self._onBinding)

    # -- observation -------------------------------------------------------------

    def _onBinding(self, state: Any) -> None:
        if isinstance(state, Ok):
            self.dispatcher = Dispatcher.build(state.value, self.core.clientFor, self.core.random)
            self.bindingError = None
        elif isinstance(state, Failed):
            # Keep the last good dispatcher: a flapping namer must not take a
            # working route down.  Report the failure to new requests only
            # when there has never been a good binding.
            self.bindingError = state.exception
            if self.dispatcher is None:
                log.warn("binding {name} failed: {error}", name=self.name, error=state.exception)
        else:
            return
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if not d.called:
                d.callback(None)

    def _onPolicy(self, entries: Any) -> None:
        self.policy = fold(entries, self.path)
        modules = buildModules(self.core.serviceModules, self.policy, self._context)
        protocol = self.core.protocol
        self.call = protocol.wrapServiceStats(composeModules(modules, self._dispatch), self)
        self.fast = protocol.fuseService(self, modules)

    # -- the terminal of the service stack ---------------------------------------------

    def _dispatch(self, exchange: Any) -> Deferred:
        dispatcher = self.dispatcher
        if dispatcher is None:
            if self.bindingError is not None:
                return fail(self._noBrokers(f"binding failed: {self.bindingError}"))
            return self._waitForBinding().addCallback(lambda _: self._dispatch(exchange))
        client, residual, why = dispatcher.pick()
        if client is None:
            return fail(self._noBrokers(why or ""))
        exchange.residual = residual
        exchange.client = client
        return client.call(exchange)

    def _noBrokers(self, why: str) -> NoBrokersAvailable:
        return NoBrokersAvailable(self.name, self.core.baseDtab.show, self.localDtab.show, why)

    def _waitForBinding(self) -> Deferred:
        d: Deferred = Deferred()
        self._waiters.append(d)
        timeoutMs = self.core.bindingTimeoutMs
        reactor = self.core.reactor

        def timedOut() -> None:
            if not d.called:
                if d in self._waiters:
                    self._waiters.remove(d)
                d.errback(RequestTimeout("binding", timeoutMs, service=self.name))

        call = reactor.callLater(timeoutMs / 1000.0, timedOut)

        def done(result: Any) -> Any:
            if call.active():
                call.cancel()
            return result

        return d.addBoth(done)

    def describePolicy(self) -> Dict[str, Any]:
        return self.policy.describe() if self.policy is not None else {}

    def close(self) -> None:
        self._bindingObs.close()
        self._policyObs.close()
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if not d.called:
                d.errback(self._noBrokers("the route was closed"))


class Client:
    """
    Everything the router keeps for one concrete name (bound id): its
    endpoints, balancer, pools and client stack.

    @ivar call: the composed client stack: C{call(exchange) -> Deferred}.
    @ivar endpoints: C{(host, port) -> Endpoint}.
    """

    def __init__(self, core: "RoutingCore", bound: Bound) -> None:
        self.core = core
        self.id = bound.id
        self.name = bound.id.show
        self.nameBytes = self.name.encode("ascii")
        self.metrics = core.metrics.scope("client", _metricName(bound.id))
        self.endpoints: Dict[Tuple[str, int], Any] = {}
        self.policy: Optional[FoldedPolicy] = None
        self.balancer: Any = None
        self.accrual: Any = None
        self._recordLatency = False
        self.touched = True
        self.idleSince = core.reactor.seconds()
        self.call: Callable[[Any], Deferred] = self._send
        self.fast: Any = None
        self._context = StackContext(
            core.reactor, self.metrics, bound.id, core.label, core.protocol, core.registry, core.random
        )
        self._addrs: Sequence[Any] = ()
        #: True until the namer gave a first address set (or said Neg).
        self.addressing = True
        self._addrWaiters: List[Deferred] = []
        self.metrics.gauge("endpoints", fn=lambda: len(self.endpoints))
        self._policyObs = core.clientEntries.observe(self._onPolicy)
        self._addrObs = bound.stableAddr.observe(self._onAddr)

    def _onPolicy(self, entries: Any) -> None:
        previous = self.policy
        self.policy = fold(entries, self.id)
        balancerConf = self.policy.get("loadBalancer") or self.core.defaultBalancer
        accrualConf = self.policy.get("failureAccrual") or self.core.defaultAccrual
        rebuildEndpoints = previous is not None and (
            previous.values.get("failureAccrual") != self.policy.values.get("failureAccrual")
            or self.core.protocol.poolSettingsChanged(previous, self.policy)
        )
        self.accrual = accrualConf
        if self.balancer is not None:
            self.balancer.close()
        self.balancer = balancerConf.plugin.newBalancer(balancerConf.config, self._context)
        # Only latency-aware balancers (ewma) get per-attempt latencies: the
        # others save two clock reads per request.
        self._recordLatency = type(self.balancer).record is not _baseRecord()
        if rebuildEndpoints:
            for endpoint in self.endpoints.values():
                endpoint.close()
            self.endpoints = {}
        self._rebalance()
        modules = buildModules(self.core.clientModules, self.policy, self._context)
        protocol = self.core.protocol
        self.call = protocol.wrapClientStats(composeModules(modules, self._send), self)
        self.fast = protocol.fuseClient(self, modules)

    def _onAddr(self, addr: Any) -> None:
        if isinstance(addr, AddrBound):
            self._addrs = sorted(addr.addresses)
        elif addr is AddrNeg:
            self._addrs = ()
        else:
            return
        self._rebalance()
        if self.addressing:
            self.addressing = False
            waiters, self._addrWaiters = self._addrWaiters, []
            for d in waiters:
                if not d.called:
                    d.callback(None)

    def whenAddressed(self) -> Deferred:
        """
        Wait (up to the router's C{bindingTimeoutMs}) for the first address
        set of a client whose namer is still resolving (e.g. DNS for
        C{/$/inet/localhost/8080}): a first request must not fail with "no
        endpoints" just because it came first.
        """
        d: Deferred = Deferred()
        if not self.addressing:
            d.callback(None)
            return d
        self._addrWaiters.append(d)
        timeoutMs = self.core.bindingTimeoutMs
        timer = self.core.reactor.callLater(timeoutMs / 1000.0, self._addressTimedOut, d, timeoutMs)

        def done(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        return d.addBoth(done)

    def _addressTimedOut(self, d: Deferred, timeoutMs: int) -> None:
        if not d.called:
            if d in self._addrWaiters:
                self._addrWaiters.remove(d)
            d.errback(RequestTimeout("binding", timeoutMs, client=self.name))

    def _rebalance(self) -> None:
        if self.policy is None:
            return
        from linkerpy.client.endpoint import Endpoint

        current: Dict[Tuple[str, int], Any] = {}
        for address in self._addrs:
            key = (address.host, address.port)
            endpoint = self.endpoints.get(key)
            if endpoint is None:
                accrual = self.accrual.plugin.newPolicy(self.accrual.config, self.core.reactor)
                endpoint = Endpoint(address.host, address.port, address.weight, address.meta, accrual, self.core.reactor)
                endpoint.pool = self.core.protocol.newPool(endpoint, self.policy, self)
            else:
                endpoint.weight = address.weight
            current[key] = endpoint
        for key, endpoint in self.endpoints.items():
            if key not in current:
                endpoint.close()
        self.endpoints = current
        self.balancer.update(list(current.values()))

    def addresses(self) -> List[str]:
        return [f"{h}:{p}" for h, p in self.endpoints]

    def _send(self, exchange: Any) -> Deferred:
        endpoint = self.balancer.pick()
        if endpoint is None:
            if self.addressing:
                return self.whenAddressed().addCallback(lambda _: self._send(exchange))
            return fail(
                NoBrokersAvailable(
                    exchange.serviceName, self.core.baseDtab.show, "", f"client {self.name} has no endpoints"
                )
            )
        self.touched = True
        exchange.endpoint = endpoint
        endpoint.acquire()
        protocol = self.core.protocol
        balancer = self.balancer
        seconds = self.core.reactor.seconds
        start = seconds() if self._recordLatency else 0.0
        d = protocol.send(endpoint, exchange, self)

        def released(result: Any) -> Any:
            if isinstance(result, Failure):
                endpoint.release(protocol.succeeded(exchange, None, result))
            else:
                endpoint.release(protocol.succeeded(exchange, result, None))
            if start:
                balancer.record(endpoint, (seconds() - start) * 1000.0)
            return result

        return d.addBoth(released)

    def close(self) -> None:
        self._policyObs.close()
        self._addrObs.close()
        waiters, self._addrWaiters = self._addrWaiters, []
        for d in waiters:
            if not d.called:
                d.errback(NoBrokersAvailable("", self.core.baseDtab.show, "", f"client {self.name} was closed"))
        if self.balancer is not None:
            self.balancer.close()
        for endpoint in self.endpoints.values():
            endpoint.close()
        self.endpoints = {}


class RoutingCore:
    """
    The caches and shared parts of one router.
    """

    def __init__(
        self,
        label: str,
        config: Any,
        context: Any,
        namers: Sequence[Tuple[Path, Any]],
        protocol: ProtocolAdapter,
        rng: Optional[random.Random] = None,
    ) -> None:
        self.label = label
        self.config = config
        self.reactor = context.reactor
        self.registry = context.registry
        self.metrics = context.metrics
        self.protocol = protocol
        self.random = rng or random.Random()
        self.baseDtab: Dtab = config.dtab
        self.bindingTimeoutMs = config.bindingTimeoutMs
        interpreter = config.interpreter
        self.interpreter = interpreter.plugin.newInterpreter(
            interpreter.config, context.child(f"{context.configPath}.interpreter"), namers
        )
        service, client = config.service, config.client
        self.serviceSource = service.plugin.newPolicySource(
            service.config, SERVICE, context.child(f"{context.configPath}.service")
        )
        self.clientSource = client.plugin.newPolicySource(
            client.config, CLIENT, context.child(f"{context.configPath}.client")
        )
        self.serviceEntries = self.serviceSource.entries()
        self.clientEntries = self.clientSource.entries()
        self.serviceModules = installedModules(self.registry, SERVICE, protocol.name)
        self.clientModules = installedModules(self.registry, CLIENT, protocol.name)
        self.defaultBalancer = _defaultPlugin(self.registry, "loadBalancer", {"kind": "p2c"})
        self.defaultAccrual = _defaultPlugin(
            self.registry, "failureAccrual", {"kind": "io.l5d.consecutiveFailures", "failures": 5}
        )
        cache = config.bindingCache
        self.maxRoutes = cache.paths
        self.maxClients = cache.clients
        self.idleTtl = cache.idleTtlSecs
        self.routes: "OrderedDict[Tuple[Path, Dtab], PathRoute]" = OrderedDict()
        self.clients: "OrderedDict[Path, Client]" = OrderedDict()

    def routeFor(self, path: Path, localDtab: Dtab) -> PathRoute:
        """
        The (cached) route for a logical name and local dtab.
        """
        key = (path, localDtab)
        route = self.routes.get(key)
        if route is None:
            route = self.routes[key] = PathRoute(self, path, localDtab)
            if len(self.routes) > self.maxRoutes:
                _, evicted = self.routes.popitem(last=False)
                evicted.close()
        else:
            self.routes.move_to_end(key)
        route.touched = True
        return route

    def clientFor(self, bound: Bound) -> Client:
        """
        The (cached) client for a bound name, keyed by its id.
        """
        client = self.clients.get(bound.id)
        if client is None:
            client = self.clients[bound.id] = Client(self, bound)
            if len(self.clients) > self.maxClients:
                _, evicted = self.clients.popitem(last=False)
                evicted.close()
        else:
            self.clients.move_to_end(bound.id)
        return client

    def describePolicy(self, path: Path, scope: str = SERVICE) -> Dict[str, Any]:
        """
        The effective policy of a service or client name: matched entries,
        folded keys, captures and the policy source.
        """
        entries = self.serviceEntries if scope == SERVICE else self.clientEntries
        source = self.serviceSource if scope == SERVICE else self.clientSource
        out = fold(entries.sample(), path).describe()
        out["router"] = self.label
        out["scope"] = scope
        out["source"] = source.describe()
        return out

    def expireIdle(self) -> None:
        """
        Close routes and clients unused for C{bindingCache.idleTtlSecs}.
        Called periodically; a request marks what it uses as C{touched}
        (a flag, so the hot path does not read the clock).
        """
        now = self.reactor.seconds()
        for cache, isBusy in ((self.routes, lambda r: False), (self.clients, _busy)):
            expired = []
            for key, item in cache.items():
                if item.touched or isBusy(item):
                    item.touched = False
                    item.idleSince = now
                elif now - item.idleSince >= self.idleTtl:
                    expired.append(key)
            for key in expired:
                item = cache.pop(key)
                item.close()
                if isinstance(item, Client):
                    self.metrics.remove("client", _metricName(key))
                else:
                    self.metrics.remove("service", _metricName(key[0]))

    def close(self) -> None:
        for route in self.routes.values():
            route.close()
        for client in self.clients.values():
            client.close()
        self.routes.clear()
        self.clients.clear()
        # Interpreters that watch something (a dtab file, a control plane)
        # stop watching when the router stops.
        for watcher in (self.interpreter, getattr(self.interpreter, "dtabFile", None), self.serviceSource, self.clientSource):
            if watcher is None:
                continue
            closer = getattr(watcher, "close", None) or getattr(watcher, "stop", None)
            if closer is not None:
                closer()


def buildModules(plugins: Sequence[Any], policy: Any, context: StackContext) -> List[Any]:
    """
    The module instances (top first) that apply to C{policy}: what
    L{linkerpy.policy.stack.buildStack} composes, kept so that a fused path
    can share them.
    """
    modules = []
    for plugin in plugins:
        module = plugin.newModule(policy, context)
        if module is not None:
            modules.append(module)
    return modules


def composeModules(modules: Sequence[Any], terminal: Callable[[Any], Deferred]) -> Callable[[Any], Deferred]:
    """
    Wrap C{terminal} in C{modules} (top first): C{call(exchange) -> Deferred}.
    """
    call = terminal
    for module in reversed(modules):
        call = module.wrap(call)
    return call


def _baseRecord() -> Any:
    from linkerpy.client.balancers.base import BalancerBase

    return BalancerBase.record


def _busy(client: Client) -> bool:
    return any(e.pending for e in client.endpoints.values())


def _defaultPlugin(registry: Any, what: str, raw: Dict[str, Any]) -> Any:
    from linkerpy.config.structure import structurePlugin
    from linkerpy.interfaces import IFailureAccrualPlugin, ILoadBalancerPlugin

    interface = ILoadBalancerPlugin if what == "loadBalancer" else IFailureAccrualPlugin
    return structurePlugin(interface, raw, registry, path=f"(default {what})")
