# -*- test-case-name: tests.test_policy_entries -*-
"""
Plugin descriptors for the built-in policy sources (C{io.l5d.global},
C{io.l5d.static}) and policy modules.  Import-light: the runtime modules
load inside the factories.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs
from twisted.plugin import IPlugin
from zope.interface import implementer

from linkerpy.interfaces import IPolicySourcePlugin
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
