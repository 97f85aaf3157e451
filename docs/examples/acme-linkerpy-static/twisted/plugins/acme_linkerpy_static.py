"""
Dropin registering the example namer (import-light: only the descriptor).
"""

from acme_linkerpy.static import StaticNamerPlugin

staticNamer = StaticNamerPlugin()
