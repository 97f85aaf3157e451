"""
Built-in plugins of the HTTP/2 router (import-light descriptors).
"""

from linkerpy.protocol.h2.plugins import h2Protocol, headerPathIdentifier  # noqa: F401
