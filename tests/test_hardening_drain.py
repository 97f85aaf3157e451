# -*- test-case-name: tests.test_hardening_drain -*-
"""
Graceful drain of real C{twistd linkerpy} processes: C{POST /admin/shutdown}
and SIGTERM stop accepting, let in-flight requests and streamed responses
finish within C{admin.shutdownGraceMs}, close idle keep-alive connections
and exit 0; a rolling restart of two routers behind a retrying client loses
no request.
"""

from __future__ import annotations

import signal
from typing import Any, Dict, List

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import ClientCreator
from twisted.trial.unittest import TestCase

from tests.support import TwistdProcess, httpGet, waitUntil
from tests.test_hardening_origins import (
    TIMEOUT,
    RawClient,
    completeResponses,
    connectRaw,
    freePort,
    routerConfig,
    startFaultOrigin,
    statusOf,
)
from tests.test_hardening_upstream import _sleep, request


@inlineCallbacks
def refused(port: int) -> Any:
    """
    Whether a new connection to C{port} is refused (C{True}) or accepted.
    """
    try:
        client = yield ClientCreator(reactor, RawClient).connectTCP("127.0.0.1", port, timeout=10)
    except ConnectionRefusedError:
        return True
    client.transport.abortConnection()
    return False


@inlineCallbacks
def waitRefused(port: int, timeout: float = TIMEOUT) -> Any:
    """
    Poll until a new connection to C{port} is refused.
    """
    deadline = reactor.seconds() + timeout
    while not (yield refused(port)):
        if reactor.seconds() > deadline:
            raise AssertionError(f"port {port} still accepts connections after {timeout}s")
        yield _sleep(0.05)


@inlineCallbacks
def startRouter(testCase: Any, config: Dict[str, Any]) -> Any:
    proc = TwistdProcess(config)
    testCase.addCleanup(proc.stop)
    yield proc.start(waitFor=("admin", "router http"))
    return proc


class DrainTests(TestCase):
    """
    One router process, stopped while busy.
    """

    timeout = 300

    @inlineCallbacks
    def drainWith(self, stop: Any) -> Any:
        origin = startFaultOrigin(self)
        proc = yield startRouter(self, routerConfig(origin.portNumber, admin={"shutdownGraceMs": 30000}))
        port = proc.routerPort("http")
        idle = yield connectRaw(self, port)
        idle.transport.write(request(b"GET", b"/ok", close=False))
        yield idle.waitFor(completeResponses(1))
        slow = yield connectRaw(self, port)
        slow.transport.write(request(b"POST", b"/slow/3000", b"in-flight", close=False))
        stream = yield connectRaw(self, port)
        stream.transport.write(request(b"GET", b"/drip/20", close=False))
        yield waitUntil(lambda: origin.count(b"/slow/3000") == 1 and origin.count(b"/drip/20") == 1, TIMEOUT, "requests in flight")
        yield stop(proc)
        # idle keep-alive connections are closed at once
        data = yield idle.waitClosed()
        self.assertEqual(data.count(b"HTTP/1.1 "), 1)
        # the port stops accepting
        yield waitRefused(port)
        # the in-flight request and the stream complete, announcing the close
        data = yield slow.waitClosed()
        self.assertEqual(statusOf(data), 200, data)
        self.assertTrue(data.endswith(b"slow"), data)
        self.assertIn(b"Connection: close", data)
        data = yield stream.waitClosed()
        self.assertEqual(statusOf(data), 200, data)
        self.assertTrue(data.endswith(b"0\r\n\r\n"), data[-40:])
        self.assertEqual(data.count(b"drip"), 20)
        code = yield proc.ended
        self.assertEqual(origin.count(b"/slow/3000"), 1)
        self.assertIn(b"Server Shut Down.", proc.output)
        self.assertNotIn(b"Traceback", proc.output)
        return code

    @inlineCallbacks
    def test_adminShutdown(self) -> Any:
        """
        POST /admin/shutdown: idle connections close, new ones are refused,
        a slow request and a streamed response finish, exit code 0.
        """

        @inlineCallbacks
        def stop(proc: TwistdProcess) -> Any:
            response, body = yield httpGet(proc.url(path="/admin/shutdown"), method="POST")
            self.assertEqual((response.code, body), (200, b"ok\n"))

        code = yield self.drainWith(stop)
        self.assertEqual(code, 0)

    @inlineCallbacks
    def test_sigterm(self) -> Any:
        """
        SIGTERM drains the same way, and the process exits 0.
        """

        def stop(proc: TwistdProcess) -> Any:
            proc.signal(signal.SIGTERM)
            return _sleep(0)

        code = yield self.drainWith(stop)
        self.assertEqual(code, 0)

    @inlineCallbacks
    def test_sigtermExitCode(self) -> Any:
        """
        After a SIGTERM drain the exit status is 0.
        """
        origin = startFaultOrigin(self)
        proc = yield startRouter(self, routerConfig(origin.portNumber))
        proc.signal(signal.SIGTERM)
        code = yield proc.ended
        self.assertIn(b"Server Shut Down.", proc.output)
        self.assertEqual(code, 0)

    @inlineCallbacks
    def test_graceExpires(self) -> Any:
        """
        A request still running when shutdownGraceMs expires is cut off and
        the process exits 0 anyway.
        """
        origin = startFaultOrigin(self)
        proc = yield startRouter(self, routerConfig(origin.portNumber, admin={"shutdownGraceMs": 1000}))
        client = yield connectRaw(self, proc.routerPort("http"))
        client.transport.write(request(b"GET", b"/never"))
        yield waitUntil(lambda: origin.count(b"/never") == 1, TIMEOUT, "the request in flight")
        started = reactor.seconds()
        response, _ = yield httpGet(proc.url(path="/admin/shutdown"), method="POST")
        self.assertEqual(response.code, 200)
        data = yield client.waitClosed()
        self.assertEqual(data, b"")
        code = yield proc.ended
        self.assertEqual(code, 0, proc.output.decode(errors="replace")[-2000:])
        self.assertGreaterEqual(reactor.seconds() - started, 0.9)


class RollingRestartTests(TestCase):
    """
    Two routers on fixed ports, restarted one at a time under load.
    """

    timeout = 600

    @inlineCallbacks
    def test_rollingRestartLosesNothing(self) -> Any:
        """
        A client alternating between two routers, retrying on the other one
        when a connection is refused (or closed before any byte of answer),
        sees every request answered 200 while each router is shut down and
        restarted in turn; no request the origin saw went unanswered.
        """
        origin = startFaultOrigin(self)
        ports = [freePort(), freePort()]
        configs = [routerConfig(origin.portNumber, server={"port": p}, admin={"shutdownGraceMs": 20000}) for p in ports]
        procs = []
        for c in configs:
            procs.append((yield startRouter(self, c)))
        stats = {"sent": 0, "ok": 0, "refused": 0, "emptyClose": 0}
        failures: List[str] = []
        emptyIds: List[bytes] = []
        running = [True]

        @inlineCallbacks
        def worker(n: int) -> Any:
            i = 0
            while running[0]:
                i += 1
                rid = b"%d-%d" % (n, i)
                path = (b"/slow/150?id=" if i % 3 == 0 else b"/ok?id=") + rid
                stats["sent"] += 1
                for attempt in range(20):
                    port = ports[(i + attempt) % 2]
                    try:
                        client = yield ClientCreator(reactor, RawClient).connectTCP("127.0.0.1", port, timeout=10)
                    except ConnectionRefusedError:
                        stats["refused"] += 1
                        yield _sleep(0.01)
                        continue
                    client.transport.write(request(b"GET", path))
                    data = yield client.waitClosed()
                    if data == b"":
                        stats["emptyClose"] += 1
                        emptyIds.append(path)
                        continue
                    if statusOf(data) == 200 and completeResponses(1)(data):
                        stats["ok"] += 1
                    else:
                        failures.append(f"{path!r}: {data[:80]!r}")
                    break
                else:
                    failures.append(f"{path!r}: no router answered")

        workers = [worker(n) for n in range(4)]
        yield waitUntil(lambda: stats["ok"] >= 50, TIMEOUT, "traffic to flow")
        for index in (0, 1):
            response, _ = yield httpGet(procs[index].url(path="/admin/shutdown"), method="POST")
            self.assertEqual(response.code, 200)
            code = yield procs[index].ended
            self.assertEqual(code, 0)
            okBefore = stats["ok"]
            procs[index] = yield startRouter(self, configs[index])
            yield waitUntil(lambda: stats["ok"] >= okBefore + 50, TIMEOUT, "traffic through the restarted router")
        running[0] = False
        for w in workers:
            yield w
        self.assertEqual(failures, [])
        self.assertEqual(stats["ok"], stats["sent"])
        self.assertGreater(stats["refused"], 0)
        # A connection closed without an answer must not have reached the origin.
        seen = {r.target for r in origin.requests}
        self.assertEqual([p for p in emptyIds if p in seen], [])
        print(f"rolling restart: {stats}")
