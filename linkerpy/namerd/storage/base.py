# -*- test-case-name: tests.test_namerd_storage -*-
"""
What every store shares: the observable per-namespace values and the
sorted namespace lists, kept up to date by the store as writes happen
(its own, or another process's seen through a watch or a poll).

A namespace's value is C{(text, version)} when it exists, C{None} when it
does not, and L{linkerpy.naming.Pending} while a remote store has not told
us yet.
"""

from __future__ import annotations

import weakref
from typing import Any, Dict, Optional, Tuple

from linkerpy.namerd.errors import KINDS, checkKind, checkNamespace
from linkerpy.naming import Pending, Var

__all__ = ["Document", "StoreVars"]

#: C{(text, version bytes)}.
Document = Tuple[str, bytes]


class StoreVars:
    """
    The Vars behind L{linkerpy.interfaces.IDtabStore.observe} and
    C{observeNamespaces}.

    @ivar known: whether the contents are known (C{False} until a remote
        store's first sync: observers then see L{Pending}).
    """

    def __init__(self, known: bool = True) -> None:
        self.known = known
        self._docs: Dict[str, Dict[str, Optional[Document]]] = {kind: {} for kind in KINDS}
        # Weak: a Var lives as long as someone holds it, so asking about
        # many namespaces does not grow this table for ever.
        self._vars: "weakref.WeakValueDictionary[Tuple[str, str], Var[Any]]" = weakref.WeakValueDictionary()
        self._names: Dict[str, Var[Any]] = {
            kind: Var(() if known else Pending) for kind in KINDS
        }

    # -- reading ----------------------------------------------------------------

    def current(self, kind: str, ns: str) -> Any:
        """
        @return: the document, C{None}, or L{Pending} when not known yet.
        """
        if not self.known:
            return Pending
        return self._docs[kind].get(ns)

    def names(self, kind: str) -> Tuple[str, ...]:
        return tuple(sorted(self._docs[kind]))

    def observe(self, kind: str, ns: str) -> "Var[Any]":
        checkKind(kind)
        checkNamespace(ns)
        var = self._vars.get((kind, ns))
        if var is None:
            var = self._vars[(kind, ns)] = Var(self.current(kind, ns))
        return var

    def observeNamespaces(self, kind: str) -> "Var[Any]":
        checkKind(kind)
        return self._names[kind]

    # -- writing ------------------------------------------------------------------

    def set(self, kind: str, ns: str, doc: Optional[Document]) -> None:
        """
        Record a namespace's new value (C{None}: deleted) and notify.
        """
        docs = self._docs[kind]
        if doc is None:
            existed = docs.pop(ns, None) is not None
        else:
            existed = ns in docs
            docs[ns] = doc
        if self.known:
            if existed != (doc is not None):
                self._names[kind].update(self.names(kind))
            var = self._vars.get((kind, ns))
            if var is not None:
                var.update(doc)

    def replaceAll(self, kind: str, docs: Dict[str, Document]) -> None:
        """
        Replace everything of C{kind} (a full resync), notifying only what changed.
        """
        old = self._docs[kind]
        self._docs[kind] = dict(docs)
        wasKnown = self.known
        if not wasKnown:
            return
        self._names[kind].update(self.names(kind))
        for (k, ns), var in list(self._vars.items()):
            if k == kind and old.get(ns) != docs.get(ns):
                var.update(docs.get(ns))

    def markKnown(self) -> None:
        """
        The first full sync is complete: tell observers the real values.
        """
        if self.known:
            return
        self.known = True
        for kind in KINDS:
            self._names[kind].update(self.names(kind))
        for (kind, ns), var in list(self._vars.items()):
            var.update(self._docs[kind].get(ns))
