# -*- test-case-name: tests.test_classifiers -*-
"""
Plugin descriptors and configuration for C{responseClassifier:}.
Import-light: the classifiers are built inside L{ResponseClassifierPlugin.newClassifier}.

HTTP/1.1 kinds (C{protocols} C{{'http'}}), no keys:
C{io.l5d.http.nonRetryable5XX} (the default), C{io.l5d.http.retryableRead5XX},
C{io.l5d.http.retryableIdempotent5XX}, C{io.l5d.http.retryableAll5XX},
C{io.l5d.http.allSuccessful}.

HTTP/2 twins (C{protocols} C{{'h2'}}): the same names under C{io.l5d.h2.}.

gRPC kinds (C{{'h2'}}), each with C{successStatusCodes} (default C{[0]}):
C{io.l5d.h2.grpc.default}, C{io.l5d.h2.grpc.compliant},
C{io.l5d.h2.grpc.alwaysRetryable}, C{io.l5d.h2.grpc.neverRetryable}, and
C{io.l5d.h2.grpc.retryableStatusCodes} with the required
C{retryableStatusCodes} list.

See L{linkerpy.policy.classifiers} for what each kind decides.
"""

from __future__ import annotations

from typing import Any, FrozenSet, Optional, Tuple

import attrs
from twisted.plugin import IPlugin
from zope.interface import implementer

from linkerpy.config.structure import setting
from linkerpy.interfaces import IResponseClassifierPlugin

__all__ = [
    "StatusClassifierConfig",
    "GrpcClassifierConfig",
    "GrpcRetryableStatusCodesConfig",
    "ResponseClassifierPlugin",
    "HTTP_KINDS",
    "H2_KINDS",
    "GRPC_KINDS",
    "DEFAULT_HTTP_CLASSIFIER",
    "DEFAULT_H2_CLASSIFIER",
]

#: The kinds used when C{responseClassifier} is not configured.
DEFAULT_HTTP_CLASSIFIER = "io.l5d.http.nonRetryable5XX"
DEFAULT_H2_CLASSIFIER = "io.l5d.h2.nonRetryable5XX"

#: Suffix -> which methods are retryable (C{None}: every response succeeds).
_STATUS_KINDS = {
    "nonRetryable5XX": "NONE",
    "retryableRead5XX": "READ_METHODS",
    "retryableIdempotent5XX": "IDEMPOTENT_METHODS",
    "retryableAll5XX": "ALL_METHODS",
    "allSuccessful": None,
}

HTTP_KINDS = tuple(f"io.l5d.http.{suffix}" for suffix in _STATUS_KINDS)
H2_KINDS = tuple(f"io.l5d.h2.{suffix}" for suffix in _STATUS_KINDS)
GRPC_KINDS = tuple(
    f"io.l5d.h2.grpc.{suffix}"
    for suffix in ("default", "compliant", "alwaysRetryable", "neverRetryable", "retryableStatusCodes")
)


def _statusCodes(values: Tuple[int, ...]) -> Optional[str]:
    for value in values:
        if value < 0:
            return f"expected gRPC status codes (integers >= 0), got {value}"
    return None


@attrs.frozen
class StatusClassifierConfig:
    """
    The HTTP and h2 status-based kinds: no keys.
    """


@attrs.frozen
class GrpcClassifierConfig:
    """
    The gRPC kinds C{default}, C{compliant}, C{alwaysRetryable} and
    C{neverRetryable}.
    """

    successStatusCodes: Tuple[int, ...] = setting(
        (0,), check=_statusCodes, doc="gRPC status codes that count as success (default [0], OK)"
    )


@attrs.frozen
class GrpcRetryableStatusCodesConfig:
    """
    C{io.l5d.h2.grpc.retryableStatusCodes}.
    """

    retryableStatusCodes: Tuple[int, ...] = setting(
        check=_statusCodes, doc="gRPC status codes to retry (required)"
    )
    successStatusCodes: Tuple[int, ...] = setting(
        (0,), check=_statusCodes, doc="gRPC status codes that count as success (default [0], OK)"
    )


@implementer(IPlugin, IResponseClassifierPlugin)
class ResponseClassifierPlugin:
    """
    A C{responseClassifier:} kind.

    @ivar kind: the C{kind} value.
    @ivar protocols: the router protocols it applies to.
    @ivar configType: the config class.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        family, _, suffix = kind.rpartition(".")
        if family == "io.l5d.h2.grpc":
            self.protocols: FrozenSet[str] = frozenset({"h2"})
            self.configType: type = (
                GrpcRetryableStatusCodesConfig if suffix == "retryableStatusCodes" else GrpcClassifierConfig
            )
        elif family in ("io.l5d.http", "io.l5d.h2") and suffix in _STATUS_KINDS:
            self.protocols = frozenset({"http"}) if family == "io.l5d.http" else frozenset({"h2"})
            self.configType = StatusClassifierConfig
        else:
            raise ValueError(f"unknown response classifier kind {kind!r}")
        self._suffix = suffix
        self._grpc = family == "io.l5d.h2.grpc"

    def __repr__(self) -> str:
        return f"<ResponseClassifierPlugin {self.kind}>"

    def newClassifier(self, config: Any) -> Any:
        """
        @return: an L{IResponseClassifier<linkerpy.interfaces.IResponseClassifier>}.
        """
        from linkerpy.policy import classifiers

        suffix = self._suffix
        if not self._grpc:
            methods = _STATUS_KINDS[suffix]
            if methods is None:
                return classifiers.HttpClassifier(self.kind, frozenset(), allSuccessful=True)
            allowed = frozenset() if methods == "NONE" else getattr(classifiers, methods)
            return classifiers.HttpClassifier(self.kind, allowed)
        success = frozenset(config.successStatusCodes)
        retryable: Optional[FrozenSet[int]]
        if suffix == "default" or suffix == "compliant":
            retryable = frozenset({14})
        elif suffix == "alwaysRetryable":
            retryable = None
        elif suffix == "neverRetryable":
            retryable = frozenset()
        else:
            retryable = frozenset(config.retryableStatusCodes)
        return classifiers.GrpcClassifier(self.kind, success, retryable, compliant=suffix == "compliant")
