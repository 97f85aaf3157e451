# -*- test-case-name: tests.test_policy_stack -*-
"""
The order of policy modules in a request path.

A request to a logical name goes through the I{service stack} (built once
per name), then, once a concrete client is chosen, through that client's
I{client stack} (built once per client).  Top to bottom, closest to the
caller first:

Service stack:
  1. C{stats} (router-owned, always first): counts requests, successes and
     failures as classified, and latency, for the whole logical request.
  2. C{totalTimeout} (C{totalTimeoutMs}): bounds the whole request,
     retries included, so it must sit I{above} C{retries}; an inbound
     C{l5d-ctx-deadline} tightens it.
  3. C{retries} (C{retries}, with C{responseClassifier}): re-issues
     retryable failures under a budget and backoff; it sits above the
     client so each retry may pick another replica.
  4. (the router then binds the name and picks a client.)

Client stack:
  1. C{clientStats} (router-owned): per-client counters for every attempt.
  2. C{attemptTimeout} (C{requestAttemptTimeoutMs}): bounds one attempt, so a
     slow replica's attempt can be retried elsewhere by C{retries} above.
  3. C{requeues} (C{requeueBudget}): immediately re-sends a request that
     failed before any byte was written (connection refused...) to another
     endpoint, under its own budget.
  4. (the load balancer picks an endpoint; its pool carries the request.)

A module plugin declares C{after} (roles it must sit below) and C{before}
(roles it must sit above).  Modules are ordered by those constraints,
ties keeping the built-in order above and then plugin kind order; a cycle or
an unknown role is a start-up error.  A module whose C{newModule} returns
C{None} for a name (nothing configured) is left out of that name's stack
entirely, so unused features cost nothing per request.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Sequence

from linkerpy.interfaces import IPolicyModulePlugin
from linkerpy.policy.entries import CLIENT, SERVICE

#: Built-in roles in their default order (top first), per scope.
BUILTIN_ORDER: Dict[str, Sequence[str]] = {
    SERVICE: ("totalTimeout", "retries"),
    CLIENT: ("attemptTimeout", "requeues"),
}


class StackOrderError(Exception):
    """
    The modules' C{before}/C{after} constraints cannot be satisfied.
    """


def orderModules(plugins: Sequence[Any], scope: str) -> List[Any]:
    """
    Order module plugins of one scope top to bottom.

    @raise StackOrderError: unknown roles or a cycle.
    """
    builtin = list(BUILTIN_ORDER.get(scope, ()))
    roles = {p.kind: p for p in plugins}
    rank = {role: i for i, role in enumerate(builtin)}
    edges: Dict[str, set] = {role: set() for role in roles}  # role -> roles below it
    for p in plugins:
        for other in getattr(p, "after", ()) or ():
            if other not in roles:
                if other in builtin:
                    continue  # a built-in role that is not installed
                raise StackOrderError(f"policy module {p.kind!r} wants to sit below unknown role {other!r}")
            edges[other].add(p.kind)
        for other in getattr(p, "before", ()) or ():
            if other not in roles:
                if other in builtin:
                    continue
                raise StackOrderError(f"policy module {p.kind!r} wants to sit above unknown role {other!r}")
            edges[p.kind].add(other)
    # Built-ins keep their relative order unless a constraint says otherwise.
    present = [r for r in builtin if r in roles]
    for upper, lower in zip(present, present[1:]):
        if upper not in edges[lower]:
            edges[upper].add(lower)
    incoming = {role: 0 for role in roles}
    for role, lowers in edges.items():
        for lower in lowers:
            incoming[lower] += 1
    ordered: List[str] = []
    ready = sorted((r for r, n in incoming.items() if n == 0), key=lambda r: (rank.get(r, len(builtin)), r))
    while ready:
        role = ready.pop(0)
        ordered.append(role)
        for lower in sorted(edges[role]):
            incoming[lower] -= 1
            if incoming[lower] == 0:
                ready.append(lower)
        ready.sort(key=lambda r: (rank.get(r, len(builtin)), r))
    if len(ordered) != len(roles):
        stuck = sorted(set(roles) - set(ordered))
        raise StackOrderError(f"policy modules {stuck} have contradictory before/after constraints (a cycle)")
    return [roles[r] for r in ordered]


def installedModules(registry: Any, scope: str, protocol: str) -> List[Any]:
    """
    The module plugins of C{scope} for C{protocol}, ordered top to bottom.
    """
    from linkerpy.policy.entries import modulePlugins

    return orderModules(modulePlugins(registry, scope, protocol), scope)


Call = Callable[[Any], Any]


def buildStack(modules: Sequence[Any], policy: Any, context: Any, terminal: Call) -> Call:
    """
    Compose the modules (top first) that apply to C{policy} around
    C{terminal}.

    @return: the outermost C{call(exchange) -> Deferred}.
    """
    call = terminal
    for plugin in reversed(list(modules)):
        module = plugin.newModule(policy, context)
        if module is not None:
            call = module.wrap(call)
    return call


__all__ = ["BUILTIN_ORDER", "StackOrderError", "orderModules", "installedModules", "buildStack", "IPolicyModulePlugin"]
