"""
The router side of the control plane: the C{io.l5d.namerd.http}
interpreter and policy source, and their shared connection to namerd.
"""

from __future__ import annotations
