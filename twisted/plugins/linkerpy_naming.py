"""
Built-in naming plugins: namers, interpreters, transformers (import-light descriptors).
"""

from __future__ import annotations

from linkerpy.naming.plugins import (  # noqa: F401
    constTransformer,
    defaultInterpreter,
    dnsSrvNamer,
    fsInterpreter,
    fsNamer,
    localhostTransformer,
    portTransformer,
    replaceTransformer,
    rewriteNamer,
    specificHostTransformer,
)
