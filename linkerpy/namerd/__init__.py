"""
The linkerpy control plane (C{twistd linkerpy-namerd}): dtab and policy
storage, the HTTP API, and the router-side plugins that stream from it.
"""

from __future__ import annotations
