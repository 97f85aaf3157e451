"""
Namerd's gRPC mesh API (the C{io.l5d.mesh} interface): the
C{io.linkerd.mesh} messages (L{linkerpy.namerd.mesh.protos}), gRPC framing
(L{linkerpy.namerd.mesh.framing}), conversions to and from linkerpy's
naming values (L{linkerpy.namerd.mesh.convert}), a small gRPC server on the
HTTP/2 layer (L{linkerpy.namerd.mesh.server}) and the services
(L{linkerpy.namerd.mesh.services}).
"""

from __future__ import annotations
