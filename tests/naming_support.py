"""
Shared helpers for the naming tests: the reference vectors and small fakes.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List

from zope.interface import implementer

from linkerpy.interfaces import INamer
from linkerpy.naming import Activity, Path

_CANDIDATES = [
    os.environ.get("LINKERPY_REFERENCE", ""),
    os.path.join(os.path.dirname(__file__), "..", "..", "shared", "reference"),
    "/work/shared/reference",
]


def referenceDir() -> str:
    for c in _CANDIDATES:
        if c and os.path.exists(os.path.join(c, "dtab-examples.json")):
            return c
    return ""


def vectors(section: str) -> List[Dict[str, Any]]:
    """
    The entries of one section of C{dtab-examples.json}.
    """
    d = referenceDir()
    if not d:
        raise RuntimeError("dtab-examples.json not found: set LINKERPY_REFERENCE to shared/reference")
    with open(os.path.join(d, "dtab-examples.json")) as f:
        return json.load(f)[section]  # type: ignore[no-any-return]


class NamingError(Exception):
    pass


@implementer(INamer)
class ErrorNamer:
    """
    A namer whose lookups always fail with C{'error naming ' + full path}.
    """

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix

    def lookup(self, path: Path) -> Activity[Any]:
        return Activity.exception(NamingError("error naming " + (self.prefix + path).show))
