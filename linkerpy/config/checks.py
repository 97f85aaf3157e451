# -*- test-case-name: tests.test_config -*-
"""
Reusable field checks for C{setting(check=...)}: each returns an error
message or C{None}.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable, Optional


def port(value: int) -> Optional[str]:
    if not 0 <= value <= 65535:
        return f"expected a port number between 0 and 65535, got {value}"
    return None


def positive(value: float) -> Optional[str]:
    if value <= 0:
        return f"expected a positive number, got {value}"
    return None


def nonNegative(value: float) -> Optional[str]:
    if value < 0:
        return f"expected a number >= 0, got {value}"
    return None


def between(low: float, high: float) -> Callable[[Any], Optional[str]]:
    def check(value: float) -> Optional[str]:
        if not low <= value <= high:
            return f"expected a number between {low} and {high}, got {value}"
        return None

    return check


def ipAddress(value: str) -> Optional[str]:
    if value in ("localhost",):
        return None
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"expected an IP address such as 127.0.0.1 or 0.0.0.0, got {value!r}"
    return None


def nonEmpty(value: Any) -> Optional[str]:
    if not value:
        return "must not be empty"
    return None
