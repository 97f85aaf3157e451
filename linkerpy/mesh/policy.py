# -*- test-case-name: tests.test_mesh_client -*-
"""
C{service:}/C{client:} C{{kind: io.l5d.mesh}}: policy entries streamed
from namerd's mesh API (C{io.linkerd.mesh.Policy/StreamPolicy}, linkerpy's
extension).

The source streams the root namespace's policy document from the moment
it is built.  Each document's C{service} (or C{client}) section is
structured with the router's own plugin registry, exactly as if it were in
the router's config file, and its entries replace the current ones; the
routing core rebuilds the stacks of the names it affects, so new requests
use the new policy while requests in flight finish under the old one.  A
namespace without a document, or a document without the section, means
the defaults.  A section this router cannot use is logged and counted
(C{mesh/<root>/policy_errors}), and the last good entries stay; so do
they while namerd is unreachable.
"""

from __future__ import annotations

import json
from typing import Any, Tuple

from twisted.logger import Logger
from zope.interface import implementer

from linkerpy.config.errors import ConfigError
from linkerpy.interfaces import IPolicySource
from linkerpy.mesh.client import MeshStream, connectionFor
from linkerpy.namerd.mesh.convert import pathToProto
from linkerpy.namerd.mesh.protos import policy_pb2
from linkerpy.naming import Var

__all__ = ["MeshPolicySource", "POLICY"]

log = Logger()

POLICY = "/io.linkerd.mesh.Policy/"


def _document(message: Any) -> Any:
    """
    The JSON document a C{PolicyRsp} carries, or C{None} (no document).
    """
    if not message.HasField("policy"):
        return None
    return json.loads(message.policy.json)


@implementer(IPolicySource)
class MeshPolicySource:
    """
    A policy source backed by namerd's mesh API.

    @ivar scope: C{'service'} or C{'client'}.
    @ivar protocol: the router's protocol (selects the keys entries may use).
    """

    def __init__(self, config: Any, scope: str, protocol: str, context: Any, connection: Any = None) -> None:
        self.config = config
        self.scope = scope
        self.protocol = protocol
        self.context = context
        self.registry = context.registry
        self.connection = connection if connection is not None else connectionFor(context, config)
        self.errors = self.connection.metrics.counter("policy_errors")
        self.lastError: Any = None
        self._entries: "Var[Tuple[Any, ...]]" = Var(())
        request = policy_pb2.PolicyReq(root=pathToProto(config.root))
        self.stream = MeshStream(
            self.connection, f"policy {scope}", POLICY + "StreamPolicy", request, policy_pb2.PolicyRsp,
            self._onMessage, None, f"{scope} policy", _document,
        )
        self.stream.start()

    def entries(self) -> "Var[Tuple[Any, ...]]":
        return self._entries

    def describe(self) -> str:
        return f"namerd mesh {self.connection.dst.__unstructure__()} root={self.connection.root.show}"

    def stop(self) -> None:
        self.stream.stop()

    def _onMessage(self, message: Any) -> None:
        try:
            entries = self.entriesOf(_document(message))
        except (ConfigError, ValueError, TypeError) as e:
            self.errors.incr()
            self.lastError = str(e)
            log.warn(
                "namerd policy {ns}/{scope} cannot be used by this router (keeping the last good one): {error}",
                ns=self.connection.namespace,
                scope=self.scope,
                error=str(e),
            )
            return
        self.lastError = None
        self._entries.update(entries)

    def entriesOf(self, document: Any) -> Tuple[Any, ...]:
        """
        The entries of this source's section of a policy document.

        @raise ConfigError: the section does not structure for this router.
        @raise ValueError: the document is malformed, or names a
            control-plane kind.
        """
        from linkerpy.config.structure import structurePlugin
        from linkerpy.interfaces import IPolicySourcePlugin
        from linkerpy.namerd.documents import policySections

        if document is None:
            return ()
        _, sections = policySections(document)
        raw = sections.get(self.scope)
        if raw is None:
            return ()
        configured = structurePlugin(
            IPolicySourcePlugin,
            raw,
            self.registry,
            path=self.scope,
            pluginArgs={"scope": self.scope, "protocol": self.protocol},
        )
        if getattr(configured.plugin, "controlPlane", False):
            raise ValueError(f"{self.scope}.kind: {configured.kind!r} cannot be used inside a policy document")
        origin = f"namerd:{self.connection.namespace}/{self.scope}"
        source = configured.plugin.newPolicySource(configured.config, self.scope, self.context.child(origin))
        return tuple(source.entries().sample())
