# -*- test-case-name: tests.test_mesh_config -*-
"""
Plugin descriptors of the mesh API (import-light: runtime modules load
inside the factories).

  - namerd interface C{io.l5d.mesh}: the gRPC mesh API;
  - router interpreter C{io.l5d.mesh}: names bound through it;
  - router C{service:}/C{client:} kind C{io.l5d.mesh}: policy streamed
    from it.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import attrs
from twisted.plugin import IPlugin
from zope.interface import implementer

from linkerpy.interfaces import IInterpreterPlugin, INamerdInterfacePlugin, IPolicySourcePlugin

__all__ = ["meshInterface", "meshInterpreter", "meshPolicy"]


@implementer(IPlugin, INamerdInterfacePlugin)
class MeshInterfacePlugin:
    kind = "io.l5d.mesh"
    defaultPort = 4321

    @property
    def configType(self) -> type:
        from linkerpy.mesh.config import MeshInterfaceConfig

        return MeshInterfaceConfig

    def newInterface(self, config: Any, context: Any, namerd: Any) -> Any:
        from linkerpy.namerd.mesh.interface import MeshInterfaceService

        return MeshInterfaceService(config, context, namerd)


@implementer(IPlugin, IInterpreterPlugin)
class MeshInterpreterPlugin:
    kind = "io.l5d.mesh"

    @property
    def configType(self) -> type:
        from linkerpy.mesh.config import MeshInterpreterConfig

        return MeshInterpreterConfig

    def newInterpreter(self, config: Any, context: Any, namers: Any) -> Any:
        from linkerpy.mesh.interpreter import MeshInterpreter

        transformers = [
            t.plugin.newTransformer(t.config, context.child(f"{context.configPath}.transformers[{i}]"))
            for i, t in enumerate(config.transformers)
        ]
        return MeshInterpreter(config, context, transformers)


_policyTypes: Dict[Tuple[str, Optional[str]], type] = {}


@implementer(IPlugin, IPolicySourcePlugin)
class MeshPolicyPlugin:
    """
    Policy streamed from namerd's mesh API (keys C{dst}, C{root},
    C{retry}, C{tls}); the document's C{service} or C{client} section
    gives the entries.  A control-plane kind: it cannot appear inside a
    policy document itself.
    """

    kind = "io.l5d.mesh"
    scopes = frozenset({"service", "client"})
    controlPlane = True

    @property
    def configType(self) -> type:
        from linkerpy.mesh.config import MeshPolicyConfig

        return MeshPolicyConfig

    def configTypeFor(self, registry: Any, scope: str, protocol: Optional[str] = None) -> type:
        # The router's protocol travels with the config, so pushed
        # documents are structured for the right protocol.
        key = (scope, protocol)
        cls = _policyTypes.get(key)
        if cls is None:
            from linkerpy.mesh.config import MeshPolicyConfig

            cls = type(f"MeshPolicyConfig_{scope}_{protocol}", (MeshPolicyConfig,), {})
            cls = attrs.frozen(cls)
            cls.scope = scope  # type: ignore[attr-defined]
            cls.protocol = protocol or "http"  # type: ignore[attr-defined]
            cls.__module__ = MeshPolicyConfig.__module__
            _policyTypes[key] = cls
        return cls

    def newPolicySource(self, config: Any, scope: str, context: Any) -> Any:
        from linkerpy.mesh.policy import MeshPolicySource

        protocol = getattr(type(config), "protocol", "http")
        return MeshPolicySource(config, scope, protocol, context)


meshInterface = MeshInterfacePlugin()
meshInterpreter = MeshInterpreterPlugin()
meshPolicy = MeshPolicyPlugin()
