"""
Built-in telemeters (import-light descriptors).
"""

from linkerpy.telemetry.plugins import prometheus  # noqa: F401
