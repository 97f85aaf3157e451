"""
Built-in plugins of the control plane (import-light descriptors): namerd's
storage and interface kinds, and the router-side C{io.l5d.namerd.http}
interpreter and policy source.
"""

from linkerpy.namerd.plugins import (  # noqa: F401
    etcdStorage,
    fsStorage,
    httpController,
    inMemoryStorage,
    namerdHttpInterpreter,
    namerdHttpPolicy,
)
