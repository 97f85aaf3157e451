# -*- test-case-name: tests.test_net -*-
"""
Small socket helpers shared by the protocols.
"""

from __future__ import annotations

from typing import Any


def setNoDelay(transport: Any, enabled: bool = True) -> bool:
    """
    Set C{TCP_NODELAY} on the TCP transport under C{transport} (which may be
    a TLS wrapper).  Request/response protocols write small messages and must
    not wait for Nagle's algorithm and delayed ACKs (40 ms stalls).

    @return: whether a TCP transport was found.
    """
    seen = 0
    while transport is not None and seen < 4:
        setter = getattr(type(transport), "setTcpNoDelay", None)
        if setter is not None:
            try:
                transport.setTcpNoDelay(enabled)
                return True
            except Exception:
                return False
        transport = getattr(transport, "transport", None)
        seen += 1
    return False
