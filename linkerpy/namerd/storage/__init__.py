"""
Dtab and policy stores for namerd: C{io.l5d.inMemory}, C{io.l5d.fs} and
C{io.l5d.etcd}.
"""

from __future__ import annotations
