"""
Built-in plugins of the TCP router (import-light descriptors).
"""

from linkerpy.protocol.tcp.plugins import httpsRedirectProtocol, sniIdentifier, tcpProtocol  # noqa: F401
