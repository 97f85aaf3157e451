# -*- test-case-name: tests.test_namerd_client -*-
"""
C{service:}/C{client:} C{{kind: io.l5d.namerd.http}}: policy entries
streamed from namerd.

The source streams C{/api/1/policy/<ns>?watch=true} from the moment it is
built.  Each document's C{service} (or C{client}) section is structured with
the router's own plugin registry, exactly as if it were in the router's
config file, and its entries replace the current ones; the routing core
rebuilds the stacks of the names it affects, so new requests use the new
policy while requests in flight finish under the old one.  An absent
namespace or section means the defaults.  A section the router cannot use
(for instance a key of a policy module this router lacks) is logged and
counted, and the last good entries stay.
"""

from __future__ import annotations

from typing import Any, Callable, Tuple

from twisted.logger import Logger
from zope.interface import implementer

from linkerpy.config.errors import ConfigError
from linkerpy.interfaces import IPolicySource
from linkerpy.namerd.client.stream import WatchClient, connectionFor
from linkerpy.naming import Var

__all__ = ["DocumentPolicySource", "NamerdPolicySource"]

log = Logger()


class DocumentPolicySource:
    """
    What the control-plane policy sources share (this module's and
    L{linkerpy.mesh.policy}'s): a stream of policy documents, each turned
    into the entries of this source's section; a document this router
    cannot use is logged and counted (C{policy_errors}) and the last good
    entries stay.

    Subclasses set C{stream} (with C{start}/C{stop}) and feed it to
    L{_use}.

    @ivar scope: C{'service'} or C{'client'}.
    @ivar protocol: the router's protocol (selects the keys entries may use).
    """

    stream: Any = None

    def __init__(self, config: Any, scope: str, protocol: str, context: Any, connection: Any) -> None:
        self.config = config
        self.scope = scope
        self.protocol = protocol
        self.context = context
        self.registry = context.registry
        self.connection = connection
        self.errors = self.connection.metrics.counter("policy_errors")
        self.lastError: Any = None
        self._entries: "Var[Tuple[Any, ...]]" = Var(())

    def entries(self) -> "Var[Tuple[Any, ...]]":
        return self._entries

    def stop(self) -> None:
        self.stream.stop()

    def _use(self, document: Callable[[], Any]) -> None:
        """
        Replace the entries with those of C{document()} (which may raise
        C{ValueError} for an undecodable document), or keep them if it
        cannot be used.
        """
        try:
            entries = self.entriesOf(document())
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


@implementer(IPolicySource)
class NamerdPolicySource(DocumentPolicySource):
    """
    A policy source backed by a namerd policy namespace.
    """

    def __init__(self, config: Any, scope: str, protocol: str, context: Any) -> None:
        super().__init__(config, scope, protocol, context, connectionFor(context, config))
        url = self.connection.url("policy", watch="true")
        self.stream = WatchClient(self.connection, f"policy {scope}", url, self._onDocument, None, f"{scope} policy")
        self.stream.start()

    def describe(self) -> str:
        return f"namerd {self.connection.dst.url} ns={self.connection.namespace}"

    def _onDocument(self, document: Any) -> None:
        self._use(lambda: document)
