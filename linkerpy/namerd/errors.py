# -*- test-case-name: tests.test_namerd_storage -*-
"""
Errors of the control plane's stores, and namespace name validation.
"""

from __future__ import annotations

import re

__all__ = [
    "StoreError",
    "NamespaceExists",
    "NoSuchNamespace",
    "VersionMismatch",
    "StoreUnavailable",
    "InvalidNamespace",
    "KINDS",
    "checkKind",
    "checkNamespace",
]

#: The kinds of documents a store holds.
KINDS = ("dtabs", "policy")

_NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{1,200}\Z")


class StoreError(Exception):
    """
    Base class of store errors.
    """


class NamespaceExists(StoreError):
    """
    A create found the namespace already there.
    """

    def __init__(self, kind: str, ns: str) -> None:
        super().__init__(f"{kind} namespace {ns!r} already exists")
        self.kind = kind
        self.ns = ns


class NoSuchNamespace(StoreError):
    """
    An update or delete found no such namespace.
    """

    def __init__(self, kind: str, ns: str) -> None:
        super().__init__(f"{kind} namespace {ns!r} does not exist")
        self.kind = kind
        self.ns = ns


class VersionMismatch(StoreError):
    """
    A compare-and-swap found another version than the one expected.
    """

    def __init__(self, kind: str, ns: str) -> None:
        super().__init__(f"{kind} namespace {ns!r} has changed (version mismatch)")
        self.kind = kind
        self.ns = ns


class StoreUnavailable(StoreError):
    """
    The backing store could not be reached or answered nonsense.
    """


class InvalidNamespace(ValueError):
    """
    A namespace name that is not C{[A-Za-z0-9_.-]+} (or is C{.}/C{..}).
    """


def checkNamespace(ns: str) -> str:
    """
    @return: C{ns} when it is a valid namespace name.
    @raise InvalidNamespace: otherwise (so no name can escape an fs store's
        directory or a key prefix).
    """
    if not isinstance(ns, str) or not _NAMESPACE.match(ns) or ns in (".", ".."):
        raise InvalidNamespace(
            f"invalid namespace {ns!r}: use 1-200 characters from A-Z a-z 0-9 _ . - (not '.' or '..')"
        )
    return ns


def checkKind(kind: str) -> str:
    """
    @raise ValueError: C{kind} is not one of L{KINDS}.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown document kind {kind!r}; expected one of {', '.join(KINDS)}")
    return kind
