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
