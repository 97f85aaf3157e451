# -*- test-case-name: tests.test_policy_entries -*-
"""
Plugin descriptors for the built-in policy sources (C{io.l5d.global},
C{io.l5d.static}) and policy modules.  Import-light: the runtime modules
load inside the factories.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import attrs
from twisted.plugin import IPlugin
from zope.interface import implementer

from linkerpy.interfaces import IPolicyModulePlugin, IPolicySourcePlugin
from linkerpy.policy.entries import CLIENT, SERVICE


@attrs.frozen
class _AnyEntry:
    """
    Placeholder config type (the real one depends on the installed modules).
    """


@implementer(IPlugin, IPolicySourcePlugin)
class GlobalPolicySourcePlugin:
    """
    C{kind: io.l5d.global}: one set of keys applied to every name.
    """

    kind = "io.l5d.global"
    scopes = frozenset({SERVICE, CLIENT})
    configType = _AnyEntry

    def configTypeFor(self, registry: Any, scope: str, protocol: Optional[str] = None) -> type:
        from linkerpy.policy.entries import entryType

        return entryType(registry, scope, protocol, withPrefix=False)

    def newPolicySource(self, config: Any, scope: str, context: Any) -> Any:
        from linkerpy.policy.sources import FixedPolicySource, globalEntries

        return FixedPolicySource(globalEntries(config, context.configPath))


@implementer(IPlugin, IPolicySourcePlugin)
class StaticPolicySourcePlugin:
    """
    C{kind: io.l5d.static}: C{configs: [{prefix, ...keys}]}, every matching
    entry applying in order.
    """

    kind = "io.l5d.static"
    scopes = frozenset({SERVICE, CLIENT})
    configType = _AnyEntry

    def configTypeFor(self, registry: Any, scope: str, protocol: Optional[str] = None) -> type:
        from linkerpy.policy.sources import staticConfigType

        return staticConfigType(registry, scope, protocol)

    def newPolicySource(self, config: Any, scope: str, context: Any) -> Any:
        from linkerpy.policy.sources import FixedPolicySource, staticEntries

        return FixedPolicySource(staticEntries(config, context.configPath))


globalPolicy = GlobalPolicySourcePlugin()
staticPolicy = StaticPolicySourcePlugin()


# ---------------------------------------------------------------------------
# Built-in policy modules (see linkerpy.policy.stack for their order)


@implementer(IPlugin, IPolicyModulePlugin)
class TotalTimeoutModulePlugin:
    """
    C{totalTimeoutMs}: bound the whole request, retries included.
    """

    kind = "totalTimeout"
    scope = SERVICE
    protocols = frozenset({"http", "h2"})  # request/response protocols (not tcp byte streams)
    after: Tuple[str, ...] = ()
    before = ("retries",)

    @property
    def configType(self) -> type:
        from linkerpy.policy.modules.timeouts import TotalTimeoutKeys

        return TotalTimeoutKeys

    @property
    def keys(self) -> frozenset:
        return frozenset({"totalTimeoutMs"})

    def newModule(self, policy: Any, context: Any) -> Any:
        ms = policy.get("totalTimeoutMs")
        if ms is None:
            return None
        from linkerpy.policy.modules.timeouts import TimeoutModule

        return TimeoutModule("total", ms, context.reactor, context.name.show, isClient=False)


@implementer(IPlugin, IPolicyModulePlugin)
class RetriesModulePlugin:
    """
    C{retries}: classified retries under a budget, with backoff.
    """

    kind = "retries"
    scope = SERVICE
    protocols = frozenset({"http", "h2"})  # request/response protocols (not tcp byte streams)
    after = ("totalTimeout",)
    before: Tuple[str, ...] = ()

    @property
    def configType(self) -> type:
        from linkerpy.policy.modules.retries import RetriesKeys

        return RetriesKeys

    @property
    def keys(self) -> frozenset:
        return frozenset({"retries"})

    def newModule(self, policy: Any, context: Any) -> Any:
        from linkerpy.policy.modules.retries import RetriesConfig, RetriesModule

        return RetriesModule(policy.get("retries") or RetriesConfig(), context)


@implementer(IPlugin, IPolicyModulePlugin)
class AttemptTimeoutModulePlugin:
    """
    C{requestAttemptTimeoutMs}: bound each attempt.
    """

    kind = "attemptTimeout"
    scope = CLIENT
    protocols = frozenset({"http", "h2"})  # request/response protocols (not tcp byte streams)
    after: Tuple[str, ...] = ()
    before = ("requeues",)

    @property
    def configType(self) -> type:
        from linkerpy.policy.modules.timeouts import AttemptTimeoutKeys

        return AttemptTimeoutKeys

    @property
    def keys(self) -> frozenset:
        return frozenset({"requestAttemptTimeoutMs"})

    def newModule(self, policy: Any, context: Any) -> Any:
        ms = policy.get("requestAttemptTimeoutMs")
        if ms is None:
            return None
        from linkerpy.policy.modules.timeouts import TimeoutModule

        return TimeoutModule("attempt", ms, context.reactor, context.name.show, isClient=True)


@implementer(IPlugin, IPolicyModulePlugin)
class RequeuesModulePlugin:
    """
    C{requeueBudget}: re-send requests that never reached an endpoint.
    """

    kind = "requeues"
    scope = CLIENT
    protocols = None
    after = ("attemptTimeout",)
    before: Tuple[str, ...] = ()

    @property
    def configType(self) -> type:
        from linkerpy.policy.modules.retries import RequeuesKeys

        return RequeuesKeys

    @property
    def keys(self) -> frozenset:
        return frozenset({"requeueBudget"})

    def newModule(self, policy: Any, context: Any) -> Any:
        from linkerpy.policy.budget import RetryBudgetConfig
        from linkerpy.policy.modules.retries import RequeuesModule

        return RequeuesModule(policy.get("requeueBudget") or RetryBudgetConfig(), context)


totalTimeoutModule = TotalTimeoutModulePlugin()
retriesModule = RetriesModulePlugin()
attemptTimeoutModule = AttemptTimeoutModulePlugin()
requeuesModule = RequeuesModulePlugin()
