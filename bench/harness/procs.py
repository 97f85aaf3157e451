# -*- test-case-name: tests.test_bench_harness -*-
"""
Processes: start them pinned to CPUs, wait until they serve, read their CPU
time and memory from C{/proc}, and kill every one of them on the way out
(including on Ctrl-C or SIGTERM).

Every child runs in its own session (process group), so a terminal's Ctrl-C
reaches only the harness, which then stops the children itself: SIGTERM to
the group, then SIGKILL after a grace period.
"""

from __future__ import annotations

import atexit
import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from typing import IO, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import attrs

from bench.harness.parsing import ParseError, parseCpuLines, parseProcStat, parseStatusKiB

#: Clock ticks per second, the unit of C{utime}/C{stime} in C{/proc/<pid>/stat}.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class ProcessFailed(Exception):
    """
    A process exited or never became ready; the message says why.
    """


@attrs.define
class ManagedProcess:
    """
    A long-running child (a proxy, the origin, an iperf3 server).

    @ivar name: a short label used in messages and the log file name.
    @ivar argv: the full command line, pinning prefix included.
    @ivar popen: the running process.
    @ivar logPath: where its stdout and stderr go.
    """

    name: str
    argv: List[str]
    popen: "subprocess.Popen[bytes]"
    logPath: str

    @property
    def pid(self) -> int:
        """
        The process id of the command (C{taskset} execs, so it is the
        command's own).
        """
        return self.popen.pid

    def alive(self) -> bool:
        """
        Whether the process is still running.
        """
        return self.popen.poll() is None

    def logTail(self, lines: int = 15) -> str:
        """
        The last lines of the process's output, for error messages.
        """
        try:
            with open(self.logPath, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 8192))
                data = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(data.splitlines()[-lines:])


@attrs.frozen
class RunResult:
    """
    The outcome of a bounded command (wrk, iperf3).
    """

    argv: List[str]
    returncode: Optional[int]
    stdout: str
    stderr: str
    timedOut: bool


def pinned(argv: Sequence[str], cpus: Optional[str]) -> List[str]:
    """
    Prefix C{argv} with C{taskset -c <cpus>} when C{cpus} is given and
    C{taskset} exists.
    """
    if cpus and shutil.which("taskset"):
        return ["taskset", "-c", cpus, *argv]
    return list(argv)


class ProcessManager:
    """
    Owns every child process of a benchmark run.

    @ivar workDir: directory for logs.
    """

    def __init__(self, workDir: str, env: Optional[Dict[str, str]] = None) -> None:
        self.workDir = workDir
        self._env = dict(os.environ if env is None else env)
        self._live: List["subprocess.Popen[bytes]"] = []
        self._seq = 0
        atexit.register(self.stopAll)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        cpus: Optional[str] = None,
        env: Optional[Dict[str, str]] = None,
        cwd: Optional[str] = None,
        stdin: Optional[int] = subprocess.DEVNULL,
    ) -> ManagedProcess:
        """
        Start a long-running child, pinned to C{cpus}, output to a log file.

        @raise ProcessFailed: if the command cannot be executed at all.
        """
        self._seq += 1
        logPath = os.path.join(self.workDir, f"{self._seq:02d}-{name}.log")
        full = pinned(argv, cpus)
        childEnv = dict(self._env)
        childEnv.update(env or {})
        with open(logPath, "wb") as log:
            try:
                popen = subprocess.Popen(
                    full, stdout=log, stderr=subprocess.STDOUT, stdin=stdin,
                    env=childEnv, cwd=cwd, start_new_session=True,
                )
            except OSError as e:
                raise ProcessFailed(f"cannot run {full[0]!r}: {e}") from e
        self._live.append(popen)
        return ManagedProcess(name=name, argv=full, popen=popen, logPath=logPath)

    def run(
        self,
        argv: Sequence[str],
        timeout: float,
        cpus: Optional[str] = None,
        cwd: Optional[str] = None,
    ) -> RunResult:
        """
        Run a bounded command to completion (killing it after C{timeout}
        seconds) and capture its output.
        """
        full = pinned(argv, cpus)
        try:
            popen = subprocess.Popen(
                full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                env=self._env, cwd=cwd, start_new_session=True,
            )
        except OSError as e:
            return RunResult(argv=full, returncode=None, stdout="", stderr=str(e), timedOut=False)
        self._live.append(popen)
        timedOut = False
        try:
            out, err = popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timedOut = True
            self._kill(popen, grace=1.0)
            out, err = popen.communicate()
        finally:
            if popen.poll() is None:
                self._kill(popen, grace=1.0)
            self._forget(popen)
        return RunResult(
            argv=full, returncode=popen.returncode, stdout=out.decode("utf-8", "replace"),
            stderr=err.decode("utf-8", "replace"), timedOut=timedOut,
        )

    def stop(self, proc: ManagedProcess, grace: float = 5.0) -> None:
        """
        Stop one child and everything it started.
        """
        self._kill(proc.popen, grace)
        self._forget(proc.popen)

    def stopAll(self) -> None:
        """
        Stop every child still running (idempotent; also run at exit).
        """
        for popen in list(self._live):
            self._kill(popen, grace=3.0)
            self._forget(popen)

    def _forget(self, popen: "subprocess.Popen[bytes]") -> None:
        if popen in self._live:
            self._live.remove(popen)

    def _kill(self, popen: "subprocess.Popen[bytes]", grace: float) -> None:
        if popen.poll() is not None:
            return
        family = descendants(popen.pid)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(popen.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            # Children that left the group (setsid) are signalled by pid.
            for pid in family:
                if pid != popen.pid:
                    try:
                        os.kill(pid, sig)
                    except (ProcessLookupError, PermissionError):
                        pass
            try:
                popen.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue
        try:
            popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass


def installSignalHandlers() -> None:
    """
    Turn SIGINT, SIGTERM and SIGHUP into L{KeyboardInterrupt}, so the
    harness's C{finally} blocks (and atexit) stop the children.  SIGINT is
    set explicitly because a shell starts background jobs with it ignored.
    """

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


class PortAllocator:
    """
    Hands out free loopback TCP ports, never the same one twice in a run.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._given: Set[int] = set()

    def allocate(self) -> int:
        """
        A port the kernel reports free right now.
        """
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((self.host, 0))
                port = s.getsockname()[1]
            if port not in self._given:
                self._given.add(port)
                return port
        raise ProcessFailed("no free port found")


def _readProc(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _allParents() -> Dict[int, int]:
    parents: Dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        text = _readProc(f"/proc/{entry}/stat")
        if text is None:
            continue
        try:
            parents[int(entry)] = parseProcStat(text)[0]
        except ParseError:
            continue
    return parents


def descendants(root: int) -> List[int]:
    """
    C{root} and all its live descendants (nginx's workers, a forking
    proxy's children), found by walking C{/proc}.
    """
    parents = _allParents()
    children: Dict[int, List[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found: List[int] = []
    stack = [root] if root in parents else []
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, ()))
    return found


def cpuTicks(pids: Iterable[int]) -> Dict[int, int]:
    """
    C{utime + stime} (clock ticks, all threads) of each live process.
    """
    result: Dict[int, int] = {}
    for pid in pids:
        text = _readProc(f"/proc/{pid}/stat")
        if text is None:
            continue
        try:
            _, utime, stime = parseProcStat(text)
        except ParseError:
            continue
        result[pid] = utime + stime
    return result


def cpuSeconds(before: Dict[int, int], after: Dict[int, int]) -> float:
    """
    CPU seconds used between two L{cpuTicks} snapshots, over all processes
    seen in either (a process that started in between counts from zero).
    """
    total = 0
    for pid, ticks in after.items():
        total += ticks - before.get(pid, 0)
    return total / CLOCK_TICKS


def coreTimes() -> Dict[str, Tuple[int, int]]:
    """
    Per-CPU C{(busy, total)} ticks from C{/proc/stat}.
    """
    return parseCpuLines(_readProc("/proc/stat") or "")


def cpuList(spec: Optional[str]) -> List[int]:
    """
    Expand a taskset CPU list (C{"0"}, C{"0,2"}, C{"0-3"}) into numbers.

    @raise ValueError: on a malformed list.
    """
    out: List[int] = []
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def busyShare(
    before: Dict[str, Tuple[int, int]], after: Dict[str, Tuple[int, int]], cpus: Iterable[int]
) -> Optional[float]:
    """
    The busy share (0..1) of a set of CPUs between two L{coreTimes}
    snapshots, or L{None} if none of them is known.
    """
    busy = total = 0
    for n in cpus:
        key = f"cpu{n}"
        if key not in before or key not in after:
            continue
        busy += after[key][0] - before[key][0]
        total += after[key][1] - before[key][1]
    if total <= 0:
        return None
    return busy / total


def memoryKiB(pids: Iterable[int]) -> Tuple[int, Optional[int]]:
    """
    The summed RSS and PSS (proportional set size, which does not count
    pages shared between processes twice) of processes, in KiB.

    @return: C{(rss, pss)}; C{pss} is L{None} where C{smaps_rollup} is
        unavailable.
    """
    rss = 0
    pss: Optional[int] = 0
    for pid in pids:
        status = _readProc(f"/proc/{pid}/status")
        if status is not None:
            rss += parseStatusKiB(status, "VmRSS") or 0
        rollup = _readProc(f"/proc/{pid}/smaps_rollup")
        value = parseStatusKiB(rollup, "Pss") if rollup is not None else None
        if value is None or pss is None:
            pss = None
        else:
            pss += value
    return rss, pss


def waitFor(
    condition: Callable[[], bool],
    timeout: float,
    proc: Optional[ManagedProcess] = None,
    what: str = "condition",
    interval: float = 0.1,
) -> None:
    """
    Poll C{condition} until it is true, C{proc} dies, or C{timeout}
    seconds pass.

    @raise ProcessFailed: on death or timeout, with the log tail.
    """
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if proc is not None and not proc.alive():
            raise ProcessFailed(
                f"{proc.name} exited with status {proc.popen.returncode} before {what}:\n{proc.logTail()}"
            )
        if time.monotonic() > deadline:
            tail = f":\n{proc.logTail()}" if proc is not None else ""
            raise ProcessFailed(f"timed out after {timeout:.0f}s waiting for {what}{tail}")
        time.sleep(interval)


def portOpen(port: int, host: str = "127.0.0.1") -> bool:
    """
    Whether something accepts TCP connections on C{host:port}.
    """
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def httpGet(
    port: int, hostHeader: str = "bench", tls: bool = False, timeout: float = 5.0, path: str = "/"
) -> Tuple[int, bytes]:
    """
    One HTTP/1.1 GET to C{127.0.0.1:port} (certificate not verified for
    TLS).

    @return: C{(status, body)}.
    @raise OSError: or L{http.client.HTTPException} on failure.
    """
    conn: http.client.HTTPConnection
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": hostHeader})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def waitForHttp(
    port: int,
    expectBody: Optional[bytes],
    timeout: float,
    proc: Optional[ManagedProcess] = None,
    tls: bool = False,
    hostHeader: str = "bench",
) -> None:
    """
    Wait until a GET through C{port} returns 200 (and C{expectBody}, when
    given).

    @raise ProcessFailed: if that does not happen in time, saying what the
        last attempt returned.
    """
    last: List[str] = ["no attempt"]

    def ok() -> bool:
        try:
            status, body = httpGet(port, hostHeader=hostHeader, tls=tls, timeout=2.0)
        except (OSError, http.client.HTTPException) as e:
            last[0] = f"{type(e).__name__}: {e}"
            return False
        if status != 200 or (expectBody is not None and body != expectBody):
            last[0] = f"status {status}, body {body[:80]!r}"
            return False
        return True

    try:
        waitFor(ok, timeout, proc, what=f"HTTP 200 on port {port}", interval=0.2)
    except ProcessFailed as e:
        raise ProcessFailed(f"{e} (last probe: {last[0]})") from None


def logTo(stream: IO[str]) -> Callable[[str], None]:
    """
    A progress printer that flushes each line.
    """

    def log(message: str) -> None:
        stream.write(message + "\n")
        stream.flush()

    return log
