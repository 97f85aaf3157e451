"""
The router side of namerd's gRPC mesh API (C{io.l5d.mesh}): an
interpreter binding names through it and a policy source following its
policy documents.  The API itself (protos, framing, server) lives in
L{linkerpy.namerd.mesh}.
"""

from __future__ import annotations
