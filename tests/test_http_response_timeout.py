"""
The default bound on a silent origin (client.responseIdleTimeoutMs): 504
before the response head, a cut-short response after it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.support import routerPort, startLinker, waitUntil
from tests.test_hardening_origins import TIMEOUT, routerConfig, sendRaw, startFaultOrigin, statusOf
from tests.test_hardening_upstream import request


class ResponseIdleTimeoutTests(TestCase):
    """
    An origin that accepts a request and then says nothing.
    """

    timeout = 120

    def config(self, origin: Any, ms: Any = 1000) -> Any:
        client = {"kind": "io.l5d.global"}
        if ms is not None:
            client["responseIdleTimeoutMs"] = ms
        return routerConfig(origin.portNumber, client=client)

    @inlineCallbacks
    def test_neverAnswers(self) -> Any:
        """
        No response head within responseIdleTimeoutMs: 504 naming the origin, and the upstream connection is closed.
        """
        origin = startFaultOrigin(self)
        linker = startLinker(self, self.config(origin))
        data = yield sendRaw(self, routerPort(linker), request(b"GET", b"/never"))
        self.assertEqual(statusOf(data), 504, data)
        self.assertIn(b"exceeded 1000.milliseconds with no response from the origin", data)
        self.assertIn(b"origin 127.0.0.1:%d" % origin.portNumber, data)
        yield waitUntil(lambda: origin.open == 0, TIMEOUT, "the upstream connection to close")
        metrics = linker.metrics.flatten()
        self.assertEqual(metrics[f"rt/http/client/$/inet/127.0.0.1/{origin.portNumber}/response_timeouts"], 1)

    @inlineCallbacks
    def test_stallsInBody(self) -> Any:
        """
        A response whose body stops: the client gets a cut-short chunked response (no final chunk).
        """
        origin = startFaultOrigin(self)
        linker = startLinker(self, self.config(origin))
        data = yield sendRaw(self, routerPort(linker), request(b"GET", b"/stall-body"))
        self.assertEqual(statusOf(data), 200, data)
        self.assertIn(b"hello", data)
        self.assertFalse(data.endswith(b"0\r\n\r\n"), data)

    @inlineCallbacks
    def test_slowButTalking(self) -> Any:
        """
        An origin that keeps sending (a chunk every 100 ms) is never cut off, however long it takes.
        """
        origin = startFaultOrigin(self)
        linker = startLinker(self, self.config(origin, 1000))
        data = yield sendRaw(self, routerPort(linker), request(b"GET", b"/drip/25"))
        self.assertEqual(statusOf(data), 200, data)
        self.assertTrue(data.endswith(b"0\r\n\r\n"), data)

    @inlineCallbacks
    def test_disabled(self) -> Any:
        """
        responseIdleTimeoutMs: 0 waits for ever (bounded here by a total timeout instead: 503).
        """
        origin = startFaultOrigin(self)
        config = self.config(origin, 0)
        config["routers"][0]["service"] = {"kind": "io.l5d.global", "totalTimeoutMs": 2500}
        linker = startLinker(self, config)
        data = yield sendRaw(self, routerPort(linker), request(b"GET", b"/never"))
        self.assertEqual(statusOf(data), 503, data)
