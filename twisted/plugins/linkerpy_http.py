"""
Built-in plugins of the HTTP/1.1 router (import-light descriptors).
"""

from linkerpy.protocol.http.plugins import (  # noqa: F401
    headerPath,
    headerToken,
    httpProtocol,
    methodAndHost,
    pathIdentifier,
    staticIdentifier,
)
