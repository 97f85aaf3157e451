"""
Built-in plugins of the mesh API (import-light descriptors): namerd's
C{io.l5d.mesh} interface, and the router-side C{io.l5d.mesh} interpreter
and policy source.
"""

from linkerpy.mesh.plugins import meshInterface, meshInterpreter, meshPolicy  # noqa: F401
