"""
Built-in policy sources and policy modules (import-light descriptors).
"""

from linkerpy.policy.plugins import (  # noqa: F401
    attemptTimeoutModule,
    globalPolicy,
    retriesModule,
    requeuesModule,
    staticPolicy,
    totalTimeoutModule,
)
