# -*- test-case-name: tests.test_namerd_storage -*-
"""
C{io.l5d.inMemory}: documents held in this process only (lost on restart).

Versions are 8-byte big-endian counters starting at 1, as in Namerd; the
counter is shared by every namespace, so a version changes on every write.
"""

from __future__ import annotations

import struct
from typing import Any, Dict, List, Optional

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from linkerpy.interfaces import IDtabStore
from linkerpy.namerd.errors import (
    NamespaceExists,
    NoSuchNamespace,
    VersionMismatch,
    checkKind,
    checkNamespace,
)
from linkerpy.namerd.storage.base import StoreVars

__all__ = ["InMemoryStore"]


@implementer(IDtabStore)
class InMemoryStore:
    """
    A store in a dict.

    @param initial: C{{kind: {ns: text}}} loaded at start (the config's
        C{namespaces} are C{dtabs}).
    """

    def __init__(self, initial: Optional[Dict[str, Dict[str, str]]] = None) -> None:
        self.vars = StoreVars()
        self._counter = 0
        for kind, docs in (initial or {}).items():
            for ns, text in docs.items():
                self.vars.set(checkKind(kind), checkNamespace(ns), (text, self._nextVersion()))

    def _nextVersion(self) -> bytes:
        self._counter += 1
        return struct.pack(">Q", self._counter)

    def describe(self) -> str:
        return "in memory"

    def list(self, kind: str) -> "Deferred[List[str]]":
        checkKind(kind)
        return succeed(list(self.vars.names(kind)))

    def get(self, kind: str, ns: str) -> Deferred:
        checkKind(kind)
        checkNamespace(ns)
        return succeed(self.vars.current(kind, ns))

    def create(self, kind: str, ns: str, text: str) -> "Deferred[bytes]":
        checkKind(kind)
        checkNamespace(ns)
        if self.vars.current(kind, ns) is not None:
            return fail(NamespaceExists(kind, ns))
        return succeed(self._put(kind, ns, text))

    def update(self, kind: str, ns: str, text: str, version: Optional[bytes]) -> "Deferred[bytes]":
        checkKind(kind)
        checkNamespace(ns)
        if version is not None:
            current = self.vars.current(kind, ns)
            if current is None:
                return fail(NoSuchNamespace(kind, ns))
            if current[1] != version:
                return fail(VersionMismatch(kind, ns))
        return succeed(self._put(kind, ns, text))

    def _put(self, kind: str, ns: str, text: str) -> bytes:
        version = self._nextVersion()
        self.vars.set(kind, ns, (text, version))
        return version

    def delete(self, kind: str, ns: str) -> Deferred:
        checkKind(kind)
        checkNamespace(ns)
        if self.vars.current(kind, ns) is None:
            return fail(NoSuchNamespace(kind, ns))
        self.vars.set(kind, ns, None)
        return succeed(None)

    def observe(self, kind: str, ns: str) -> Any:
        return self.vars.observe(kind, ns)

    def observeNamespaces(self, kind: str) -> Any:
        return self.vars.observeNamespaces(kind)

    def start(self) -> Deferred:
        return succeed(None)

    def close(self) -> Deferred:
        return succeed(None)
