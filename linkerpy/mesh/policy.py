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
from typing import Any

from zope.interface import implementer

from linkerpy.interfaces import IPolicySource
from linkerpy.mesh.client import MeshStream, connectionFor
from linkerpy.namerd.client.policy import DocumentPolicySource
from linkerpy.namerd.mesh.convert import pathToProto
from linkerpy.namerd.mesh.protos import policy_pb2

__all__ = ["MeshPolicySource", "POLICY"]


POLICY = "/io.linkerd.mesh.Policy/"


def _document(message: Any) -> Any:
    """
    The JSON document a C{PolicyRsp} carries, or C{None} (no document).
    """
    if not message.HasField("policy"):
        return None
    return json.loads(message.policy.json)


@implementer(IPolicySource)
class MeshPolicySource(DocumentPolicySource):
    """
    A policy source backed by namerd's mesh API.
    """

    def __init__(self, config: Any, scope: str, protocol: str, context: Any, connection: Any = None) -> None:
        super().__init__(config, scope, protocol, context, connection if connection is not None else connectionFor(context, config))
        request = policy_pb2.PolicyReq(root=pathToProto(config.root))
        self.stream = MeshStream(
            self.connection, f"policy {scope}", POLICY + "StreamPolicy", request, policy_pb2.PolicyRsp,
            self._onMessage, None, f"{scope} policy", _document,
        )
        self.stream.start()

    def describe(self) -> str:
        return f"namerd mesh {self.connection.dst.__unstructure__()} root={self.connection.root.show}"

    def _onMessage(self, message: Any) -> None:
        self._use(lambda: _document(message))
