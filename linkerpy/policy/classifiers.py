# -*- test-case-name: tests.test_classifiers -*-
"""
Response classifiers: did an exchange succeed, and may it be retried?

A classifier answers one of three L{ResponseClass}es: L{SUCCESS},
L{FAILURE} or L{RETRYABLE_FAILURE}.  Each carries C{successClass} (1.0 or
0.0), the value of the C{l5d-success-class} response header, and
C{headerValue}, the same as bytes.

The contract: what C{classify(request, response, failure)} looks at
==================================================================

Classifiers are protocol-agnostic and duck-typed:

  - C{request.method}: the method as C{bytes} (C{b"GET"}); C{str} works too.
  - C{request.bodyReplayable}: C{bool}, whether the request body was kept
    (fully buffered, or empty) so that the request can be sent again.
    Missing means C{True}.
  - C{response}: C{None} when the exchange failed before a response, else
    an object with C{.status} (C{int}) and C{.headers.get(b"name")}
    (C{bytes} or C{None}); for h2 and gRPC also C{.trailers}, of the same
    shape, or C{None} when the stream ended without trailers.  h2 and gRPC
    exchanges are classified when the response stream has ended (gRPC
    decides on the C{grpc-status} trailer).
  - C{failure}: C{None}, or a L{twisted.python.failure.Failure}.  It may be
    given together with a response (an h2 stream that failed after its
    headers); a failure then wins.  Its exception is inspected:

      - C{retryable} (or C{retrySafe}) true: nothing reached the origin (a
        "write exception", e.g. connection refused);
      - C{transient} true, or an instance of a timeout, connection-closed or
        connection-error type (C{TimeoutError}, C{ConnectionError},
        Twisted's C{TimeoutError}, C{ConnectionClosed}, C{ConnectError},
        L{linkerpy.errors.RequestTimeout}, L{linkerpy.errors.UpstreamError}):
        a timeout, write, connection-closed or framing failure;
      - C{errorCode} (or C{error_code}) equal to 7: the stream was reset with
        C{REFUSED_STREAM} (the origin did not process it);
      - otherwise (including cancellation): not retryable.

    Either kind counts as retryable I{for a method the classifier retries};
    the exception's C{cause} (or C{__cause__}) is consulted when the
    exception itself says nothing.

Linkerd's rules (C{ResponseClassifiers.scala}), applied by every kind here
==========================================================================

  1. 5XX responses (500-599) are failures; other responses are successes.
     The C{retryable*} kinds make 5XX responses, and the exceptions above,
     retryable for their methods: C{retryableRead5XX} GET HEAD OPTIONS
     TRACE, C{retryableIdempotent5XX} those plus PUT DELETE,
     C{retryableAll5XX} those plus POST PATCH (CONNECT never).  Any other
     exception is a non-retryable failure.  C{allSuccessful} makes every
     response a success (exceptions stay failures).
  2. A non-retryable failure whose response carries C{l5d-retryable: true}
     (set by a downstream router that could not write the request) becomes
     retryable, whatever the method and the kind.
  3. A request whose body was not kept (C{bodyReplayable} false) is never
     retryable: a retryable failure becomes a plain failure.

gRPC kinds decide on the C{grpc-status} trailer (or header, for a
trailers-only response): a code in C{successStatusCodes} (default [0]) is a
success, a retryable code per kind (C{default}: 14 UNAVAILABLE;
C{compliant}: 14, plus a stream refused with C{REFUSED_STREAM} and HTTP
429/502/503/504 responses without a gRPC status; C{alwaysRetryable}: every
code; C{neverRetryable}: none; C{retryableStatusCodes}: the listed codes) a
retryable failure, anything else a failure.  A response that ends with no
gRPC status is a failure; exceptions are failures (except as just said for
C{compliant}).  Rules 2 and 3 apply to them too.
"""

from __future__ import annotations

import builtins
from typing import Any, FrozenSet, Iterable, Optional

from twisted.internet import defer
from twisted.internet import error as netError
from zope.interface import implementer

from linkerpy import errors as routerErrors
from linkerpy.interfaces import IResponseClassifier

__all__ = [
    "ResponseClass",
    "SUCCESS",
    "FAILURE",
    "RETRYABLE_FAILURE",
    "READ_METHODS",
    "IDEMPOTENT_METHODS",
    "ALL_METHODS",
    "HttpClassifier",
    "GrpcClassifier",
    "isTransient",
    "REFUSED_STREAM",
]


class ResponseClass:
    """
    A classification.  Use the three instances L{SUCCESS}, L{FAILURE} and
    L{RETRYABLE_FAILURE} (also C{ResponseClass.SUCCESS} etc.), compared by
    identity.

    @ivar name: C{'SUCCESS'}, C{'FAILURE'} or C{'RETRYABLE_FAILURE'}.
    @ivar isSuccess: whether the exchange succeeded.
    @ivar isRetryable: whether it failed and may be retried.
    @ivar successClass: 1.0 for a success, 0.0 for a failure.
    @ivar headerValue: C{successClass} as bytes, for C{l5d-success-class}.
    """

    __slots__ = ("name", "isSuccess", "isRetryable", "successClass", "headerValue")

    SUCCESS: "ResponseClass"
    FAILURE: "ResponseClass"
    RETRYABLE_FAILURE: "ResponseClass"

    def __init__(self, name: str, isSuccess: bool, isRetryable: bool) -> None:
        self.name = name
        self.isSuccess = isSuccess
        self.isRetryable = isRetryable
        self.successClass = 1.0 if isSuccess else 0.0
        self.headerValue = b"1.0" if isSuccess else b"0.0"

    def __repr__(self) -> str:
        return f"ResponseClass.{self.name}"


SUCCESS = ResponseClass("SUCCESS", True, False)
FAILURE = ResponseClass("FAILURE", False, False)
RETRYABLE_FAILURE = ResponseClass("RETRYABLE_FAILURE", False, True)
ResponseClass.SUCCESS = SUCCESS
ResponseClass.FAILURE = FAILURE
ResponseClass.RETRYABLE_FAILURE = RETRYABLE_FAILURE


def _methods(names: Iterable[str]) -> FrozenSet[Any]:
    names = list(names)
    return frozenset(names) | frozenset(n.encode("ascii") for n in names)


#: Read-only methods (C{retryableRead5XX}).
READ_METHODS = _methods(["GET", "HEAD", "OPTIONS", "TRACE"])
#: Idempotent methods (C{retryableIdempotent5XX}).
IDEMPOTENT_METHODS = READ_METHODS | _methods(["PUT", "DELETE"])
#: Every method a C{retryable*} kind can retry (C{retryableAll5XX}); never CONNECT.
ALL_METHODS = IDEMPOTENT_METHODS | _methods(["POST", "PATCH"])

#: The HTTP/2 C{REFUSED_STREAM} error code.
REFUSED_STREAM = 7

_TRANSIENT_TYPES = (
    builtins.TimeoutError,
    builtins.ConnectionError,
    defer.TimeoutError,
    netError.TimeoutError,
    netError.ConnectionClosed,
    netError.ConnectError,
    routerErrors.RequestTimeout,
    routerErrors.UpstreamError,
)


def _refused(exc: BaseException) -> bool:
    code = getattr(exc, "errorCode", None)
    if code is None:
        code = getattr(exc, "error_code", None)
    try:
        return code is not None and int(code) == REFUSED_STREAM
    except (TypeError, ValueError):
        return False


def _says(exc: BaseException) -> Optional[bool]:
    flag = getattr(exc, "retryable", None)
    if flag is None:
        flag = getattr(exc, "retrySafe", None)
    if flag is True or getattr(exc, "transient", False) is True:
        return True
    if isinstance(exc, _TRANSIENT_TYPES) or _refused(exc):
        return True
    if isinstance(exc, defer.CancelledError):
        return False
    return None


def isTransient(exc: BaseException) -> bool:
    """
    Whether an exception is a write, timeout, connection-closed or framing
    failure, which the C{retryable*} kinds retry for their methods (see the
    module docstring).
    """
    verdict = _says(exc)
    if verdict is None:
        cause = getattr(exc, "cause", None) or exc.__cause__
        if isinstance(cause, BaseException) and cause is not exc:
            verdict = _says(cause)
    return bool(verdict)


def _headerTrue(message: Any, name: bytes) -> bool:
    headers = getattr(message, "headers", None)
    if headers is None:
        return False
    value = headers.get(name)
    if value is None:
        return False
    if isinstance(value, str):
        value = value.encode("latin-1")
    return value.strip().lower() == b"true"


def _wrapped(cls: ResponseClass, request: Any, response: Any) -> ResponseClass:
    """
    Linkerd's wrapping rules 2 and 3 (see the module docstring).
    """
    if cls is FAILURE and response is not None and _headerTrue(response, b"l5d-retryable"):
        cls = RETRYABLE_FAILURE
    if cls is RETRYABLE_FAILURE and not getattr(request, "bodyReplayable", True):
        cls = FAILURE
    return cls


@implementer(IResponseClassifier)
class HttpClassifier:
    """
    The status-based kinds (C{io.l5d.http.*} and their C{io.l5d.h2.*} twins).

    @ivar name: the kind, for display.
    @ivar retryableMethods: the methods whose 5XX responses and transient
        exceptions are retryable.
    @ivar allSuccessful: every response is a success.
    """

    def __init__(self, name: str, retryableMethods: FrozenSet[Any] = frozenset(), allSuccessful: bool = False) -> None:
        self.name = name
        self.retryableMethods = retryableMethods
        self.allSuccessful = allSuccessful

    def __repr__(self) -> str:
        return f"<HttpClassifier {self.name}>"

    def classify(self, request: Any, response: Any, failure: Any) -> ResponseClass:
        if failure is not None:
            if not self.allSuccessful and request.method in self.retryableMethods and isTransient(failure.value):
                cls = RETRYABLE_FAILURE
            else:
                cls = FAILURE
        elif 500 <= response.status <= 599 and not self.allSuccessful:
            cls = RETRYABLE_FAILURE if request.method in self.retryableMethods else FAILURE
        else:
            cls = SUCCESS
        if cls is SUCCESS:
            return cls
        return _wrapped(cls, request, response)


def _grpcStatus(response: Any) -> Optional[int]:
    value = None
    headers = getattr(response, "headers", None)
    if headers is not None:
        value = headers.get(b"grpc-status")
    if value is None:
        trailers = getattr(response, "trailers", None)
        if trailers is not None:
            value = trailers.get(b"grpc-status")
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return 2  # UNKNOWN


#: HTTP statuses the C{compliant} kind retries (gRPC maps them to UNAVAILABLE).
COMPLIANT_HTTP_RETRYABLE = frozenset({429, 502, 503, 504})


@implementer(IResponseClassifier)
class GrpcClassifier:
    """
    The C{io.l5d.h2.grpc.*} kinds.

    @ivar name: the kind, for display.
    @ivar successStatusCodes: gRPC codes that count as success.
    @ivar retryableStatusCodes: gRPC codes that are retryable, or C{None}
        for every code that is not a success.
    @ivar compliant: also retry refused streams and HTTP 429/502/503/504.
    """

    def __init__(
        self,
        name: str,
        successStatusCodes: FrozenSet[int] = frozenset({0}),
        retryableStatusCodes: Optional[FrozenSet[int]] = frozenset(),
        compliant: bool = False,
    ) -> None:
        self.name = name
        self.successStatusCodes = successStatusCodes
        self.retryableStatusCodes = retryableStatusCodes
        self.compliant = compliant

    def __repr__(self) -> str:
        return f"<GrpcClassifier {self.name}>"

    def classify(self, request: Any, response: Any, failure: Any) -> ResponseClass:
        if failure is not None:
            exc = failure.value
            if self.compliant and (_refused(exc) or _refused(getattr(exc, "cause", None) or exc)):
                cls = RETRYABLE_FAILURE
            else:
                cls = FAILURE
        else:
            code = _grpcStatus(response)
            if code is not None:
                if code in self.successStatusCodes:
                    return SUCCESS
                retryable = self.retryableStatusCodes
                cls = RETRYABLE_FAILURE if retryable is None or code in retryable else FAILURE
            elif self.compliant and response.status in COMPLIANT_HTTP_RETRYABLE:
                cls = RETRYABLE_FAILURE
            else:
                cls = FAILURE
        return _wrapped(cls, request, response)
