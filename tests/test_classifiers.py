"""
Tests for the response classifiers (L{linkerpy.policy.classifiers}) and
their plugins: every kind against every method and status class, Linkerd's
wrapping rules, failures, and gRPC statuses.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from twisted.internet import error as netError
from twisted.internet.defer import CancelledError
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from linkerpy import errors as routerErrors
from linkerpy.config.errors import ConfigError
from linkerpy.config.structure import structurePlugin
from linkerpy.interfaces import IResponseClassifier, IResponseClassifierPlugin
from linkerpy.plugins.registry import PluginRegistry
from linkerpy.policy.classifiers import (
    FAILURE,
    RETRYABLE_FAILURE,
    SUCCESS,
    ResponseClass,
    isTransient,
)

S, F, R = SUCCESS, FAILURE, RETRYABLE_FAILURE

METHODS = ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", "POST", "PATCH", "CONNECT"]
STATUSES = [200, 201, 204, 301, 304, 400, 404, 429, 499, 500, 501, 502, 503, 504, 599]

#: Which methods each status-based kind retries, written out independently
#: of the implementation.
RETRIED = {
    "nonRetryable5XX": set(),
    "retryableRead5XX": {"GET", "HEAD", "OPTIONS", "TRACE"},
    "retryableIdempotent5XX": {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"},
    "retryableAll5XX": {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", "POST", "PATCH"},
    "allSuccessful": set(),
}


class Headers(dict):
    """
    A header map keyed by lower-case bytes names.
    """


class Request:
    def __init__(self, method: Any, bodyReplayable: bool = True) -> None:
        self.method = method
        self.bodyReplayable = bodyReplayable


class Response:
    def __init__(self, status: int, headers: Optional[Dict[bytes, bytes]] = None, trailers: Any = None) -> None:
        self.status = status
        self.headers = Headers(headers or {})
        self.trailers = Headers(trailers) if trailers is not None else None


class WriteFailed(Exception):
    """
    Nothing was written (a write exception).
    """

    retryable = True


class NotSafe(Exception):
    """
    Something was written; says so explicitly.
    """

    retryable = False


class Transient(Exception):
    """
    Declares itself a transient (framing / connection-closed) failure.
    """

    transient = True


class StreamReset(Exception):
    def __init__(self, errorCode: int) -> None:
        super().__init__(f"reset {errorCode}")
        self.errorCode = errorCode


class Wrapper(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__("wrapped")
        self.cause = cause


def fail(exc: BaseException) -> Failure:
    try:
        raise exc
    except BaseException:
        return Failure()


class ClassifierTestMixin:
    """
    Builds classifiers through the installed plugins.
    """

    registry = PluginRegistry.fromPlugins()

    def classifier(self, kind: str, **keys: Any) -> Any:
        configured = structurePlugin(IResponseClassifierPlugin, dict(keys, kind=kind), self.registry, "rc")
        return configured.plugin.newClassifier(configured.config)


class ResponseClassTests(SynchronousTestCase):
    """
    Tests for L{ResponseClass}.
    """

    def test_values(self) -> None:
        """
        The three classes carry their success class and header value.
        """
        self.assertEqual((S.isSuccess, S.isRetryable, S.successClass, S.headerValue), (True, False, 1.0, b"1.0"))
        self.assertEqual((F.isSuccess, F.isRetryable, F.successClass, F.headerValue), (False, False, 0.0, b"0.0"))
        self.assertEqual((R.isSuccess, R.isRetryable, R.successClass, R.headerValue), (False, True, 0.0, b"0.0"))

    def test_classAttributes(self) -> None:
        """
        The instances are reachable from the class.
        """
        self.assertIs(ResponseClass.SUCCESS, S)
        self.assertIs(ResponseClass.FAILURE, F)
        self.assertIs(ResponseClass.RETRYABLE_FAILURE, R)
        self.assertEqual(repr(R), "ResponseClass.RETRYABLE_FAILURE")


class StatusTableTests(ClassifierTestMixin, SynchronousTestCase):
    """
    Every HTTP and h2 status-based kind against every method and status.
    """

    def expected(self, suffix: str, method: str, status: int) -> ResponseClass:
        if suffix == "allSuccessful" or status < 500:
            return S
        return R if method in RETRIED[suffix] else F

    def check(self, family: str) -> None:
        for suffix in RETRIED:
            classifier = self.classifier(f"{family}.{suffix}")
            for method in METHODS:
                for status in STATUSES:
                    got = classifier.classify(Request(method.encode()), Response(status), None)
                    self.assertIs(got, self.expected(suffix, method, status), (suffix, method, status))

    def test_http(self) -> None:
        """
        The C{io.l5d.http.*} kinds follow Linkerd's table.
        """
        self.check("io.l5d.http")

    def test_h2(self) -> None:
        """
        The C{io.l5d.h2.*} twins follow the same table.
        """
        self.check("io.l5d.h2")

    def test_strMethod(self) -> None:
        """
        A C{str} method works as well as bytes.
        """
        classifier = self.classifier("io.l5d.http.retryableRead5XX")
        self.assertIs(classifier.classify(Request("GET"), Response(503), None), R)


class RetryableHeaderTests(ClassifierTestMixin, SynchronousTestCase):
    """
    Rule 2: C{l5d-retryable: true} on a response makes a failure retryable.
    """

    def test_everyMethodEveryKind(self) -> None:
        """
        A 5XX with C{l5d-retryable: true} is retryable for every method under
        every kind but C{allSuccessful}, where it stays a success.
        """
        for family in ("io.l5d.http", "io.l5d.h2"):
            for suffix in RETRIED:
                classifier = self.classifier(f"{family}.{suffix}")
                for method in METHODS:
                    response = Response(502, {b"l5d-retryable": b"true"})
                    got = classifier.classify(Request(method.encode()), response, None)
                    self.assertIs(got, S if suffix == "allSuccessful" else R, (family, suffix, method))

    def test_successUntouched(self) -> None:
        """
        The header does not turn a success into a failure.
        """
        classifier = self.classifier("io.l5d.http.nonRetryable5XX")
        self.assertIs(classifier.classify(Request(b"POST"), Response(200, {b"l5d-retryable": b"true"}), None), S)

    def test_headerValues(self) -> None:
        """
        Only the value C{true} (any case) counts.
        """
        classifier = self.classifier("io.l5d.http.nonRetryable5XX")
        for value, expected in ((b"true", R), (b"TRUE", R), (b" true ", R), (b"false", F), (b"1", F), (b"", F)):
            response = Response(500, {b"l5d-retryable": value})
            self.assertIs(classifier.classify(Request(b"POST"), response, None), expected, value)


class BodyReplayTests(ClassifierTestMixin, SynchronousTestCase):
    """
    Rule 3: a request whose body was not kept is never retryable.
    """

    def test_neverRetryable(self) -> None:
        """
        Responses, C{l5d-retryable} and retryable failures all become plain failures.
        """
        for kind in ("io.l5d.http.retryableAll5XX", "io.l5d.h2.retryableAll5XX", "io.l5d.h2.grpc.alwaysRetryable"):
            classifier = self.classifier(kind)
            for method in METHODS:
                request = Request(method.encode(), bodyReplayable=False)
                self.assertIs(classifier.classify(request, Response(503, {b"grpc-status": b"14"}), None), F)
                self.assertIs(
                    classifier.classify(request, Response(500, {b"l5d-retryable": b"true"}), None), F
                )
                self.assertIs(classifier.classify(request, None, fail(WriteFailed())), F)

    def test_successesStaySuccesses(self) -> None:
        """
        A success is a success whatever the body.
        """
        classifier = self.classifier("io.l5d.http.retryableAll5XX")
        self.assertIs(classifier.classify(Request(b"POST", bodyReplayable=False), Response(200), None), S)

    def test_missingAttributeMeansReplayable(self) -> None:
        """
        A request without C{bodyReplayable} counts as replayable.
        """

        class Bare:
            method = b"GET"

        classifier = self.classifier("io.l5d.http.retryableRead5XX")
        self.assertIs(classifier.classify(Bare(), Response(500), None), R)


class FailureTableTests(ClassifierTestMixin, SynchronousTestCase):
    """
    Exceptions: retryable for the kind's methods when they are write,
    timeout, connection-closed or framing failures, else failures.
    """

    transient = [
        WriteFailed(),
        Transient(),
        TimeoutError(),
        ConnectionResetError(),
        netError.TimeoutError(),
        netError.ConnectionLost(),
        netError.ConnectionDone(),
        netError.ConnectionRefusedError(),
        routerErrors.RequestTimeout("attempt", 1000),
        routerErrors.UpstreamError("reset"),
        routerErrors.ConnectionFailed("127.0.0.1:1"),
        routerErrors.Overloaded("pool full"),
        StreamReset(7),
        Wrapper(netError.ConnectionLost()),
    ]
    permanent = [
        ValueError("bug"),
        NotSafe(),
        CancelledError(),
        StreamReset(8),
        routerErrors.NoBrokersAvailable("/svc/x", "", ""),
        Wrapper(ValueError("bug")),
        Wrapper(CancelledError()),
    ]

    def test_isTransient(self) -> None:
        """
        L{isTransient} recognises each kind of transient failure, and only those.
        """
        for exc in self.transient:
            self.assertTrue(isTransient(exc), exc)
        for exc in self.permanent:
            self.assertFalse(isTransient(exc), exc)

    def test_retrySafeAlias(self) -> None:
        """
        An exception saying C{retrySafe} counts like C{retryable}.
        """

        class Safe(Exception):
            retrySafe = True

        self.assertTrue(isTransient(Safe()))

    def test_table(self) -> None:
        """
        Every kind against every method, for transient and permanent failures.
        """
        for family in ("io.l5d.http", "io.l5d.h2"):
            for suffix, retried in RETRIED.items():
                classifier = self.classifier(f"{family}.{suffix}")
                for method in METHODS:
                    request = Request(method.encode())
                    for exc in self.transient:
                        expected = R if method in retried else F
                        got = classifier.classify(request, None, fail(exc))
                        self.assertIs(got, expected, (family, suffix, method, exc))
                    for exc in self.permanent:
                        got = classifier.classify(request, None, fail(exc))
                        self.assertIs(got, F, (family, suffix, method, exc))

    def test_failureAfterResponse(self) -> None:
        """
        An h2 stream that fails after its headers is classified by the failure.
        """
        retrying = self.classifier("io.l5d.h2.retryableRead5XX")
        plain = self.classifier("io.l5d.h2.nonRetryable5XX")
        failure = fail(netError.ConnectionLost())
        self.assertIs(retrying.classify(Request(b"GET"), Response(200), failure), R)
        self.assertIs(retrying.classify(Request(b"POST"), Response(200), failure), F)
        self.assertIs(plain.classify(Request(b"GET"), Response(200), failure), F)


class GrpcTests(ClassifierTestMixin, SynchronousTestCase):
    """
    Tests for the C{io.l5d.h2.grpc.*} kinds.
    """

    def trailers(self, classifier: Any, code: Any, status: int = 200, **kw: Any) -> ResponseClass:
        return classifier.classify(Request(b"POST", **kw), Response(status, trailers={b"grpc-status": code}), None)

    def test_default(self) -> None:
        """
        C{default}: 0 succeeds, 14 (UNAVAILABLE) is retryable, the rest fail.
        """
        classifier = self.classifier("io.l5d.h2.grpc.default")
        expected = {code: F for code in range(17)}
        expected[0] = S
        expected[14] = R
        for code, cls in expected.items():
            self.assertIs(self.trailers(classifier, str(code).encode()), cls, code)

    def test_trailersOnly(self) -> None:
        """
        A trailers-only response carries its status in the headers.
        """
        classifier = self.classifier("io.l5d.h2.grpc.default")
        self.assertIs(classifier.classify(Request(b"POST"), Response(200, {b"grpc-status": b"14"}), None), R)
        self.assertIs(classifier.classify(Request(b"POST"), Response(200, {b"grpc-status": b"0"}), None), S)

    def test_noStatus(self) -> None:
        """
        A stream that ends without a gRPC status is a failure; so is an
        unparsable status.
        """
        classifier = self.classifier("io.l5d.h2.grpc.default")
        self.assertIs(classifier.classify(Request(b"POST"), Response(200), None), F)
        self.assertIs(classifier.classify(Request(b"POST"), Response(200, trailers={}), None), F)
        self.assertIs(self.trailers(classifier, b"OK"), F)

    def test_httpStatusWithoutGrpcStatus(self) -> None:
        """
        Without a gRPC status, C{default} fails every HTTP error; C{compliant}
        retries 429, 502, 503 and 504 only.
        """
        default = self.classifier("io.l5d.h2.grpc.default")
        compliant = self.classifier("io.l5d.h2.grpc.compliant")
        for status in (400, 404, 429, 500, 502, 503, 504):
            response = Response(status)
            self.assertIs(default.classify(Request(b"POST"), response, None), F, status)
            expected = R if status in (429, 502, 503, 504) else F
            self.assertIs(compliant.classify(Request(b"POST"), response, None), expected, status)

    def test_compliantCodes(self) -> None:
        """
        C{compliant} retries status 14 like C{default}.
        """
        classifier = self.classifier("io.l5d.h2.grpc.compliant")
        self.assertIs(self.trailers(classifier, b"14"), R)
        self.assertIs(self.trailers(classifier, b"4"), F)
        self.assertIs(self.trailers(classifier, b"0"), S)

    def test_refusedStream(self) -> None:
        """
        Only C{compliant} retries a stream refused with REFUSED_STREAM.
        """
        compliant = self.classifier("io.l5d.h2.grpc.compliant")
        default = self.classifier("io.l5d.h2.grpc.default")
        self.assertIs(compliant.classify(Request(b"POST"), None, fail(StreamReset(7))), R)
        self.assertIs(compliant.classify(Request(b"POST"), None, fail(Wrapper(StreamReset(7)))), R)
        self.assertIs(compliant.classify(Request(b"POST"), None, fail(StreamReset(2))), F)
        self.assertIs(default.classify(Request(b"POST"), None, fail(StreamReset(7))), F)

    def test_exceptionsFail(self) -> None:
        """
        Other exceptions are failures under every gRPC kind.
        """
        for suffix in ("default", "compliant", "alwaysRetryable", "neverRetryable"):
            classifier = self.classifier(f"io.l5d.h2.grpc.{suffix}")
            self.assertIs(classifier.classify(Request(b"POST"), None, fail(netError.ConnectionLost())), F)

    def test_alwaysAndNever(self) -> None:
        """
        C{alwaysRetryable} retries every error code, C{neverRetryable} none.
        """
        always = self.classifier("io.l5d.h2.grpc.alwaysRetryable")
        never = self.classifier("io.l5d.h2.grpc.neverRetryable")
        for code in range(1, 17):
            self.assertIs(self.trailers(always, str(code).encode()), R)
            self.assertIs(self.trailers(never, str(code).encode()), F)
        self.assertIs(self.trailers(always, b"0"), S)
        self.assertIs(self.trailers(never, b"0"), S)

    def test_retryableStatusCodes(self) -> None:
        """
        C{retryableStatusCodes} retries exactly the listed codes.
        """
        classifier = self.classifier("io.l5d.h2.grpc.retryableStatusCodes", retryableStatusCodes=[1, 4])
        self.assertEqual(
            [self.trailers(classifier, str(c).encode()) for c in (0, 1, 4, 14)], [S, R, R, F]
        )

    def test_successStatusCodes(self) -> None:
        """
        C{successStatusCodes} replaces the set of successful codes.
        """
        classifier = self.classifier("io.l5d.h2.grpc.default", successStatusCodes=[0, 5])
        self.assertIs(self.trailers(classifier, b"5"), S)
        classifier = self.classifier("io.l5d.h2.grpc.default", successStatusCodes=[5])
        self.assertIs(self.trailers(classifier, b"0"), F)
        self.assertIs(self.trailers(classifier, b"5"), S)

    def test_retryableHeader(self) -> None:
        """
        C{l5d-retryable: true} makes a gRPC failure retryable too.
        """
        classifier = self.classifier("io.l5d.h2.grpc.neverRetryable")
        response = Response(502, {b"l5d-retryable": b"true"})
        self.assertIs(classifier.classify(Request(b"POST"), response, None), R)
        self.assertIs(classifier.classify(Request(b"POST", bodyReplayable=False), response, None), F)


class ClassifierPluginTests(ClassifierTestMixin, SynchronousTestCase):
    """
    Tests for the C{responseClassifier:} plugins.
    """

    def test_discovery(self) -> None:
        """
        Every Linkerd classifier kind is installed.
        """
        kinds = set(self.registry.kinds(IResponseClassifierPlugin))
        expected = {f"io.l5d.{f}.{s}" for f in ("http", "h2") for s in RETRIED} | {
            f"io.l5d.h2.grpc.{s}"
            for s in ("default", "compliant", "alwaysRetryable", "neverRetryable", "retryableStatusCodes")
        }
        self.assertTrue(expected <= kinds, expected - kinds)

    def test_verify(self) -> None:
        """
        Every descriptor provides L{IResponseClassifierPlugin} with the right
        protocols, and builds an L{IResponseClassifier}.
        """
        for plugin in self.registry.plugins(IResponseClassifierPlugin):
            if not plugin.kind.startswith(("io.l5d.http.", "io.l5d.h2.")):
                continue
            self.assertTrue(verifyObject(IResponseClassifierPlugin, plugin))
            expected = frozenset({"http"}) if plugin.kind.startswith("io.l5d.http.") else frozenset({"h2"})
            self.assertEqual(plugin.protocols, expected, plugin.kind)
            keys = {"retryableStatusCodes": [14]} if plugin.kind.endswith("retryableStatusCodes") else {}
            classifier = self.classifier(plugin.kind, **keys)
            self.assertTrue(verifyObject(IResponseClassifier, classifier))

    def test_statusKindsHaveNoKeys(self) -> None:
        """
        The status-based kinds reject any key.
        """
        with self.assertRaises(ConfigError) as caught:
            self.classifier("io.l5d.http.retryableRead5XX", methods=["GET"])
        self.assertEqual([p.path for p in caught.exception.problems], ["rc.methods"])

    def test_grpcKeys(self) -> None:
        """
        gRPC keys are checked: C{retryableStatusCodes} is required, codes are
        non-negative integers in a list.
        """
        cases = [
            ({"kind": "io.l5d.h2.grpc.retryableStatusCodes"}, ["rc.retryableStatusCodes"]),
            ({"kind": "io.l5d.h2.grpc.default", "successStatusCodes": [-1]}, ["rc.successStatusCodes"]),
            ({"kind": "io.l5d.h2.grpc.default", "successStatusCodes": 0}, ["rc.successStatusCodes"]),
            ({"kind": "io.l5d.h2.grpc.default", "retryableStatusCodes": [1]}, ["rc.retryableStatusCodes"]),
        ]
        for raw, paths in cases:
            with self.assertRaises(ConfigError) as caught:
                structurePlugin(IResponseClassifierPlugin, raw, self.registry, "rc")
            self.assertEqual([p.path for p in caught.exception.problems], paths, raw)

    def test_defaultSuccessCodes(self) -> None:
        """
        C{successStatusCodes} defaults to [0].
        """
        configured = structurePlugin(
            IResponseClassifierPlugin, {"kind": "io.l5d.h2.grpc.compliant"}, self.registry, "rc"
        )
        self.assertEqual(configured.config.successStatusCodes, (0,))
