"""
Helpers for end-to-end tests: real C{twistd linkerpy} processes, real
origins on 127.0.0.1 with ephemeral ports, and waiting with deadlines.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import tempfile
from typing import Any, Callable, Dict, List, Optional, Tuple

import yaml
from twisted.internet import defer, protocol, reactor
from twisted.internet.task import deferLater

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: How long to wait for a process to come up or go down (the machine is small and shared).
START_TIMEOUT = 60.0

_LISTENING = re.compile(r"(admin|router (\S+)|interface (\S+)) listening on ([0-9a-fA-F.:]+):(\d+)")


def childEnv(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """
    The environment for child processes: this checkout first on the path,
    so its C{twisted/plugins} dropins and code are the ones that run.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    if extra:
        env.update(extra)
    return env


TWISTD = [sys.executable, "-c", "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"]


class _Collector(protocol.ProcessProtocol):
    def __init__(self, owner: "TwistdProcess") -> None:
        self.owner = owner

    def outReceived(self, data: bytes) -> None:
        self.owner._output(data)

    def errReceived(self, data: bytes) -> None:
        self.owner._output(data)

    def processEnded(self, reason: Any) -> None:
        self.owner._ended(reason)


class TwistdProcess:
    """
    A C{twistd -n --pidfile= <plugin> -c <config>} child process.

    @ivar ports: C{'admin'} and C{'router <label>'} (and C{'interface
        <kind>'} for namerd) mapped to C{(host, port)} as logged at start-up.
    """

    def __init__(self, config: Any, plugin: str = "linkerpy", args: Tuple[str, ...] = (), directory: Optional[str] = None) -> None:
        self.directory = directory or tempfile.mkdtemp(prefix="linkerpy-test-")
        self.configPath = os.path.join(self.directory, f"{plugin}.yaml")
        if not isinstance(config, str):
            config = yaml.safe_dump(config, sort_keys=False)
        with open(self.configPath, "w") as f:
            f.write(config)
        self.plugin = plugin
        self.args = args
        self.output = b""
        self.ports: Dict[str, Tuple[str, int]] = {}
        self.routerPorts: Dict[str, List[int]] = {}
        self.exitCode: Optional[int] = None
        self.ended: defer.Deferred = defer.Deferred()
        self.transport: Any = None

    def start(self, waitFor: Tuple[str, ...] = ("admin",)) -> defer.Deferred:
        """
        Start the process; fire with C{self} once every name in C{waitFor}
        has logged its listening address.
        """
        argv = TWISTD + ["-n", "--pidfile=", "--logfile=-", self.plugin, "-c", self.configPath, *self.args]
        self.transport = reactor.spawnProcess(
            _Collector(self), sys.executable, argv, env=childEnv(), path=self.directory
        )
        return waitUntil(lambda: all(name in self.ports for name in waitFor) or self.exitCode is not None,
                         START_TIMEOUT, f"{self.plugin} to listen").addCallback(self._started)

    def _started(self, _: Any) -> "TwistdProcess":
        if self.exitCode is not None:
            raise AssertionError(f"{self.plugin} exited with {self.exitCode}:\n{self.output.decode(errors='replace')}")
        return self

    def _output(self, data: bytes) -> None:
        self.output += data
        for match in _LISTENING.finditer(data.decode("utf-8", "replace")):
            what, router, iface, host, port = match.groups()
            key = "admin" if what == "admin" else what
            self.ports.setdefault(key, (host, int(port)))
            if router:
                self.routerPorts.setdefault(router, []).append(int(port))

    def _ended(self, reason: Any) -> None:
        self.exitCode = getattr(reason.value, "exitCode", None)
        if self.exitCode is None:
            self.exitCode = -1
        self.ended.callback(self.exitCode)

    def url(self, name: str = "admin", path: str = "/") -> str:
        host, port = self.ports[name]
        return f"http://{host}:{port}{path}"

    def routerPort(self, label: str, index: int = 0) -> int:
        return self.routerPorts[label][index]

    def signal(self, sig: int = signal.SIGTERM) -> None:
        if self.exitCode is None and self.transport is not None:
            self.transport.signalProcess(sig)

    def stop(self, timeout: float = 30.0) -> defer.Deferred:
        """
        SIGTERM, then SIGKILL after C{timeout}; fires with the exit code.
        """
        if self.exitCode is not None:
            return defer.succeed(self.exitCode)
        self.signal(signal.SIGTERM)
        call = reactor.callLater(timeout, self.signal, signal.SIGKILL)

        def done(code: Any) -> Any:
            if call.active():
                call.cancel()
            return code

        d: defer.Deferred = defer.Deferred()
        self.ended.addBoth(lambda code: (d.callback(code), code)[1])
        return d.addBoth(done)


def waitUntil(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> defer.Deferred:
    """
    Poll C{predicate} until true; fail with a clear message after C{timeout} seconds.
    """
    deadline = reactor.seconds() + timeout

    @defer.inlineCallbacks
    def loop() -> Any:
        while True:
            if predicate():
                return
            if reactor.seconds() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            yield deferLater(reactor, interval, lambda: None)

    return loop()


@defer.inlineCallbacks
def waitForDeferred(make: Callable[[], defer.Deferred], timeout: float, what: str, interval: float = 0.1) -> Any:
    """
    Retry C{make()} until it succeeds (its Deferred fires without error).
    """
    deadline = reactor.seconds() + timeout
    last: Any = None
    while reactor.seconds() < deadline:
        try:
            result = yield make()
            return result
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
            yield deferLater(reactor, interval, lambda: None)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}: {last!r}")


def httpGet(url: str, headers: Optional[Dict[str, Any]] = None, timeout: float = 30.0, method: str = "GET", data: Any = None) -> defer.Deferred:
    """
    One request with treq on a fresh connection; fires with C{(response, body bytes)}.
    """
    import treq
    from twisted.web.client import HTTPConnectionPool

    pool = HTTPConnectionPool(reactor, persistent=False)
    d = treq.request(method, url, headers=headers, data=data, timeout=timeout, pool=pool)

    def body(response: Any) -> Any:
        return treq.content(response).addCallback(lambda content: (response, content))

    return d.addCallback(body)


def jsonOf(pair: Tuple[Any, bytes]) -> Any:
    return json.loads(pair[1].decode("utf-8"))


# ---------------------------------------------------------------------------
# In-process routers and origins (real sockets, the test's reactor)


def startLinker(testCase: Any, config: Any) -> Any:
    """
    Build and start a L{linkerpy.linker.Linker} in this process from YAML
    text or a dict; it is stopped at the end of the test.

    @return: the linker; C{routerPort(linker, label)} gives a server's port.
    """
    from linkerpy.config.load import loadText
    from linkerpy.config.model import parseLinkerConfig
    from linkerpy.linker import Linker
    from linkerpy.plugins.registry import defaultRegistry

    if not isinstance(config, str):
        config = yaml.safe_dump(config, sort_keys=False)
    parsed = parseLinkerConfig(loadText(config), defaultRegistry())
    linker = Linker(parsed, defaultRegistry(), reactor)
    linker.startService()
    testCase.addCleanup(linker.stopService)
    return linker


def routerPort(linker: Any, label: str = "http", index: int = 0) -> int:
    for router in linker.routers:
        if router.label == label:
            return router.service().ports[index].getHost().port
    raise KeyError(label)


def adminPort(linker: Any) -> int:
    return linker.adminService.port.getHost().port


class RecordedRequest:
    def __init__(self, method: bytes, uri: bytes, headers: Dict[bytes, List[bytes]], body: bytes, version: bytes) -> None:
        self.method = method
        self.uri = uri
        self.headers = headers
        self.body = body
        self.version = version

    def header(self, name: str) -> Optional[bytes]:
        values = self.headers.get(name.lower().encode("ascii"))
        return values[-1] if values else None


class Origin:
    """
    A real HTTP origin on 127.0.0.1: records requests and answers from a
    script of C{(status, body, headers)} (default 200 with its name).

    @ivar requests: L{RecordedRequest}s in arrival order.
    @ivar connections: how many TCP connections were accepted.
    """

    def __init__(self, name: str = "origin") -> None:
        from twisted.web.resource import Resource
        from twisted.web.server import Site

        self.name = name
        self.requests: List[RecordedRequest] = []
        self.script: List[Tuple[int, bytes, Dict[str, str]]] = []
        self.connections = 0
        self.delay = 0.0
        self.pending: List[Any] = []
        origin = self

        class Handler(Resource):
            isLeaf = True

            def render(self, request: Any) -> Any:
                body = request.content.read() if request.content is not None else b""
                headers = {k.lower(): v for k, v in request.requestHeaders.getAllRawHeaders()}
                origin.requests.append(RecordedRequest(request.method, request.uri, headers, body, request.clientproto))
                status, payload, extra = origin.script.pop(0) if origin.script else (200, origin.name.encode(), {})
                request.setResponseCode(status)
                for k, v in extra.items():
                    request.setHeader(k, v)
                if origin.delay:
                    from twisted.web.server import NOT_DONE_YET

                    def later() -> None:
                        if not request._disconnected:
                            request.write(payload)
                            request.finish()

                    origin.pending.append(reactor.callLater(origin.delay, later))
                    return NOT_DONE_YET
                return payload

        class CountingSite(Site):
            def buildProtocol(self, addr: Any) -> Any:
                origin.connections += 1
                return Site.buildProtocol(self, addr)

        site = CountingSite(Handler())
        site.log = lambda request: None  # type: ignore[method-assign]
        self.port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.portNumber = self.port.getHost().port

    def stop(self) -> Any:
        for call in self.pending:
            if call.active():
                call.cancel()
        return self.port.stopListening()


def startOrigin(testCase: Any, name: str = "origin") -> Origin:
    origin = Origin(name)
    testCase.addCleanup(origin.stop)
    return origin


def rawRequest(port: int, data: bytes, timeout: float = 20.0, host: str = "127.0.0.1") -> defer.Deferred:
    """
    Send raw bytes on a fresh connection; fire with everything read until
    the server closes (or C{timeout}).
    """
    from twisted.internet.protocol import ClientFactory, Protocol

    done: defer.Deferred = defer.Deferred()

    class Raw(Protocol):
        def connectionMade(self) -> None:
            self.buf = b""
            self.transport.write(data)
            self.timer = reactor.callLater(timeout, self.transport.loseConnection)

        def dataReceived(self, chunk: bytes) -> None:
            self.buf += chunk

        def connectionLost(self, reason: Any) -> None:
            if self.timer.active():
                self.timer.cancel()
            done.callback(self.buf)

    factory = ClientFactory()
    factory.protocol = Raw
    reactor.connectTCP(host, port, factory, timeout=timeout)
    return done


def requireTool(testCase: Any, name: str) -> str:
    """
    The path of an external tool (curl, openssl, etcd...).  When it is
    missing the test is skipped with the reason, unless
    C{LINKERPY_REQUIRE_TOOLS} is set (CI), where that is a failure.
    """
    import shutil

    from twisted.trial.unittest import SkipTest

    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (.ci/run installs it)"
        if os.environ.get("LINKERPY_REQUIRE_TOOLS"):
            testCase.fail(message)
        raise SkipTest(message)
    return path
