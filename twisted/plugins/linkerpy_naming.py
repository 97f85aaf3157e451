"""
Built-in naming plugins: namers, interpreters, transformers (import-light descriptors).
"""

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
