# -*- test-case-name: tests.test_namerd_etcd -*-
"""
Test helpers for the control plane: a throw-away etcd server on loopback
ports with a temporary data directory.

Tests skip when the C{etcd} binary is missing, unless the environment
variable C{LINKERPY_REQUIRE_TOOLS} is set (as in CI), where a missing tool
is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from typing import Any, List, Optional

from twisted.internet import protocol
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater

__all__ = ["EtcdProcess", "EtcdServer", "etcdBinary", "freePort", "requireEtcd"]


def etcdBinary() -> Optional[str]:
    """
    @return: the path of the C{etcd} server binary, or C{None}.
    """
    found = shutil.which("etcd")
    if found is None and os.path.exists("/usr/bin/etcd"):
        found = "/usr/bin/etcd"
    return found


def requireEtcd(testCase: Any) -> str:
    """
    The etcd binary, or skip C{testCase} (fail when C{LINKERPY_REQUIRE_TOOLS} is set).
    """
    from twisted.trial.unittest import SkipTest

    binary = etcdBinary()
    if binary is None:
        if os.environ.get("LINKERPY_REQUIRE_TOOLS"):
            raise AssertionError("the etcd binary is required (LINKERPY_REQUIRE_TOOLS is set): install etcd-server")
        raise SkipTest("the etcd binary is not installed (Debian package etcd-server)")
    return binary


def freePort() -> int:
    """
    A TCP port on 127.0.0.1 that was free a moment ago.
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
    finally:
        s.close()


class _Output(protocol.ProcessProtocol):
    def __init__(self, owner: "EtcdProcess") -> None:
        self.owner = owner

    def outReceived(self, data: bytes) -> None:
        self.owner.output.append(data)

    def errReceived(self, data: bytes) -> None:
        self.owner.output.append(data)

    def processEnded(self, reason: Any) -> None:
        self.owner.running = False
        ended, self.owner.ended = self.owner.ended, None
        if ended is not None:
            ended.callback(None)


class EtcdProcess:
    """
    One etcd member listening on 127.0.0.1 (C{host}, C{port}).

    C{start()} and C{stop()} return Deferreds; C{restart()} keeps the data
    directory, so data written before survives.
    """

    def __init__(self, reactor: Any, binary: str, dataDir: Optional[str] = None) -> None:
        self.reactor = reactor
        self.binary = binary
        self.directory = dataDir or tempfile.mkdtemp(prefix="linkerpy-etcd-")
        self.host = "127.0.0.1"
        self.port = 0
        self.peerPort = 0
        self.output: List[bytes] = []
        self.running = False
        self.transport: Any = None
        self.ended: Optional[Deferred] = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def argv(self) -> List[str]:
        client = f"http://{self.host}:{self.port}"
        peer = f"http://{self.host}:{self.peerPort}"
        return [
            self.binary,
            "--name", "linkerpy-test",
            "--data-dir", os.path.join(self.directory, "data"),
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"linkerpy-test={peer}",
            "--log-level", "error",
        ]

    @inlineCallbacks
    def start(self, timeout: float = 60.0) -> Any:
        """
        Start etcd (on new ports unless it ran before) and wait until it
        answers; a few attempts in case a chosen port was taken meanwhile.
        """
        last = ""
        for _ in range(5):
            if not self.port:
                self.port, self.peerPort = freePort(), freePort()
            self.output = []
            self.running = True
            self.ended = Deferred()
            self.transport = self.reactor.spawnProcess(
                _Output(self), self.binary, self.argv(), env=dict(os.environ), path=self.directory
            )
            healthy = yield self._waitHealthy(timeout)
            if healthy:
                return self
            last = b"".join(self.output).decode("utf-8", "replace")
            yield self.stop()
            self.port = 0
        raise AssertionError(f"etcd did not start: {last[-2000:]}")

    @inlineCallbacks
    def _waitHealthy(self, timeout: float) -> Any:
        from linkerpy.namerd.streaming import newHTTPClient

        client = newHTTPClient(self.reactor, persistent=False, connectTimeout=2.0)
        deadline = self.reactor.seconds() + timeout
        while self.reactor.seconds() < deadline:
            if not self.running:
                return False
            try:
                response = yield client.post(
                    self.url + "/v3/kv/range", data=b'{"key":"AA=="}', reactor=self.reactor, timeout=2.0
                )
                yield response.content()
                if response.code == 200:
                    return True
            except Exception:
                pass
            yield deferLater(self.reactor, 0.1, lambda: None)
        return False

    def stop(self, timeout: float = 30.0) -> Deferred:
        """
        Terminate etcd (SIGTERM, then SIGKILL after C{timeout}).
        """
        if not self.running or self.ended is None:
            from twisted.internet.defer import succeed

            return succeed(None)
        ended = self.ended
        try:
            self.transport.signalProcess("TERM")
        except Exception:
            pass

        def kill() -> None:
            if self.running:
                try:
                    self.transport.signalProcess("KILL")
                except Exception:
                    pass

        call = self.reactor.callLater(timeout, kill)

        def done(result: Any) -> Any:
            if call.active():
                call.cancel()
            return result

        return ended.addBoth(done)

    def restart(self) -> Deferred:
        """
        Stop, then start again on the same ports with the same data.
        """
        return self.stop().addCallback(lambda _: self.start())

    def cleanup(self) -> Deferred:
        """
        Stop and remove the data directory.
        """

        def remove(_: Any) -> None:
            shutil.rmtree(self.directory, ignore_errors=True)

        return self.stop().addBoth(remove)


class EtcdServer:
    """
    A blocking variant of L{EtcdProcess} for C{setUpClass}/C{tearDownClass}
    (before and after the reactor runs a test): C{subprocess} and
    C{urllib}, polling with a deadline.
    """

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.directory = tempfile.mkdtemp(prefix="linkerpy-etcd-")
        self.host = "127.0.0.1"
        self.port = 0
        self.peerPort = 0
        self.process: Any = None
        self.logPath = os.path.join(self.directory, "etcd.log")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 60.0) -> "EtcdServer":
        import subprocess
        import time
        import urllib.request

        last = ""
        for _ in range(5):
            self.port, self.peerPort = freePort(), freePort()
            argv = EtcdProcess.argv(self)  # type: ignore[arg-type]
            log = open(self.logPath, "ab")
            self.process = subprocess.Popen(argv, stdout=log, stderr=log, cwd=self.directory)
            log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    request = urllib.request.Request(self.url + "/v3/kv/range", data=b'{"key":"AA=="}', method="POST")
                    with urllib.request.urlopen(request, timeout=2) as response:
                        if response.status == 200:
                            return self
                except OSError:
                    pass
                time.sleep(0.1)
            with open(self.logPath, "rb") as f:
                last = f.read().decode("utf-8", "replace")
            self.stop()
        raise AssertionError(f"etcd did not start: {last[-2000:]}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=30)
        except Exception:
            process.kill()
            process.wait(timeout=30)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
