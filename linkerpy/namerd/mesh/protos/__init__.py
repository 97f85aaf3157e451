"""
The C{io.linkerd.mesh} messages: the C{.proto} files (Linkerd 1's mesh
API, plus linkerpy's C{Policy} service) and the modules C{protoc} made of
them, committed so that running needs only C{protobuf}.  Regenerate with
C{python -m linkerpy.namerd.mesh.protos.generate}.
"""

from __future__ import annotations
