# -*- test-case-name: tests.test_naming_values -*-
"""
Naming: from a logical name (C{/svc/hello}) to live, weighted address sets.

The values (paths, dtabs, name trees, vars and activities, addresses) are
re-exported here; binding, delegation, namers, interpreters and transformers
live in submodules (see C{docs/naming.md}).
"""

from __future__ import annotations

from linkerpy.naming.addr import (
    WEIGHT_KEY,
    Addr,
    AddrBound,
    AddrFailed,
    AddrNeg,
    AddrPending,
    Address,
    Bound,
)
from linkerpy.naming.dtab import Dentry, Dtab
from linkerpy.naming.parser import ParseError
from linkerpy.naming.path import ANY, Path, Prefix
from linkerpy.naming.tree import Alt, Empty, Fail, Leaf, NameTree, Neg, Union, Weighted, formatWeight
from linkerpy.naming.var import Activity, ActivityPendingError, Closable, Failed, Ok, Pending, Var

__all__ = [
    "Path",
    "Prefix",
    "ANY",
    "Dentry",
    "Dtab",
    "ParseError",
    "NameTree",
    "Leaf",
    "Alt",
    "Union",
    "Weighted",
    "Neg",
    "Fail",
    "Empty",
    "formatWeight",
    "Var",
    "Closable",
    "Activity",
    "ActivityPendingError",
    "Pending",
    "Ok",
    "Failed",
    "Address",
    "Addr",
    "AddrBound",
    "AddrNeg",
    "AddrPending",
    "AddrFailed",
    "Bound",
    "WEIGHT_KEY",
]
