# -*- test-case-name: tests.test_naming_fs -*-
"""
File-backed naming: the C{io.l5d.fs} namer and the watched dtab file of the
C{io.l5d.fs} interpreter.

Directories and files are polled (every half second by default) with the
stat calls and reads done in a thread (C{deferToThreadPool} on the injected
reactor's pool), so a large directory never blocks the reactor.  Only
changed files (by mtime, ctime, size and inode) are read again.

File format (one replica per line): C{<host> <port>} or
C{<host> <port> * <weight>}; C{#} starts a comment; blank lines are
ignored.  A malformed line makes the whole set L{AddrFailed}
(C{"malformed address: <line>"}); an empty file is an empty bound set.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Tuple

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from zope.interface import implementer

from linkerpy.interfaces import INamer
from linkerpy.naming.addr import Addr, AddrBound, AddrFailed, AddrNeg, AddrPending, Address, Bound
from linkerpy.naming.dtab import Dtab
from linkerpy.naming.path import Path
from linkerpy.naming.tree import Leaf, Neg
from linkerpy.naming.var import Activity, Ok, Pending, Var

__all__ = ["parseAddresses", "FsNamer", "DtabFile", "threadRunner", "POLL_INTERVAL", "MAX_FILE_BYTES"]

_log = Logger()

#: Seconds between polls of a watched directory or file.
POLL_INTERVAL = 0.5
#: Larger files are reported as failed rather than read.
MAX_FILE_BYTES = 1 << 20

Key = Tuple[bytes, ...]
Stamp = Tuple[int, int, int, int]


def threadRunner(reactor: Any) -> Callable[..., "Deferred[Any]"]:
    """
    @return: C{run(f, *args)} running C{f} in the reactor's thread pool, or
        synchronously when the reactor has none (memory reactors in tests).
    """
    getPool = getattr(reactor, "getThreadPool", None)
    if getPool is None:
        return maybeDeferred
    from twisted.internet.threads import deferToThreadPool

    return lambda f, *a: deferToThreadPool(reactor, getPool(), f, *a)


def parseAddresses(text: str) -> Addr:
    """
    Parse an C{io.l5d.fs} file.

    @return: L{AddrBound} or L{AddrFailed}.
    """
    addresses = []
    for raw in text.split("\n"):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        weight = 1.0
        ok = len(parts) in (2, 4)
        if ok and len(parts) == 4:
            ok = parts[2] == "*"
            if ok:
                try:
                    weight = float(parts[3])
                    ok = weight >= 0 and weight == weight and weight != float("inf")
                except ValueError:
                    ok = False
        if ok:
            port = parts[1]
            ok = port.isdigit() and port.isascii() and 1 <= int(port) <= 65535
        if not ok:
            return AddrFailed(ValueError(f"malformed address: {line}"))
        addresses.append(Address(parts[0], int(parts[1]), weight))
    return AddrBound(addresses)


def _scan(root: str, old: Dict[Key, Stamp]) -> Tuple[Dict[Key, Stamp], Dict[Key, Optional[bytes]], Optional[str]]:
    """
    (In a thread.)  Walk C{root}; read files whose stamp changed.

    @return: C{(stamps, changed contents (None = removed), error)}.
    """
    stamps: Dict[Key, Stamp] = {}
    changed: Dict[Key, Optional[bytes]] = {}
    error: Optional[str] = None
    stack: List[Tuple[str, Key]] = [(root, ())]
    while stack:
        directory, key = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as e:
            if not key:
                error = f"cannot list {root}: {e.strerror or e}"
            continue
        for entry in entries:
            name = os.fsencode(entry.name)
            child = key + (name,)
            try:
                if entry.is_dir():
                    stack.append((entry.path, child))
                    continue
                if not entry.is_file():
                    continue
                st = entry.stat()
            except OSError:
                continue
            stamp = (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)
            stamps[child] = stamp
            if old.get(child) != stamp:
                if st.st_size > MAX_FILE_BYTES:
                    changed[child] = b"\0too large"
                    continue
                try:
                    with open(entry.path, "rb") as f:
                        changed[child] = f.read(MAX_FILE_BYTES + 1)
                except OSError:
                    stamps.pop(child, None)
    for child in old:
        if child not in stamps:
            changed[child] = None
    return stamps, changed, error


class _Refcounted(Var[Any]):
    """
    A var that keeps its namer's directory watch running while observed.
    """

    __slots__ = ("_owner",)

    def __init__(self, owner: "FsNamer", value: Any) -> None:
        Var.__init__(self, value)
        self._owner = owner

    def _start(self) -> None:
        self._owner._acquire()

    def _stop(self) -> None:
        self._owner._release()


_NOT_SCANNED: Any = object()


@implementer(INamer)
class FsNamer:
    """
    The C{io.l5d.fs} namer: C{<prefix>/<file>[/residual]} binds to the
    addresses listed in C{rootDir/<file>} (sub-directories nest:
    C{<prefix>/<dir>/<file>}); a missing file is C{Neg}.

    The directory is watched while some binding (or address var) is observed.
    """

    def __init__(
        self,
        reactor: Any,
        rootDir: str,
        prefix: Path,
        interval: float = POLL_INTERVAL,
        runInThread: Optional[Callable[..., "Deferred[Any]"]] = None,
    ) -> None:
        self.reactor = reactor
        self.rootDir = rootDir
        self.prefix = prefix
        self.interval = interval
        self._run = runInThread if runInThread is not None else threadRunner(reactor)
        self._stamps: Dict[Key, Stamp] = {}
        self._files: Dict[Key, _Refcounted] = {}
        self._names = _Refcounted(self, _NOT_SCANNED)
        self._users = 0
        self._call: Any = None
        self._busy = False
        self._generation = 0
        self.lastError: Optional[str] = None

    # -- INamer -------------------------------------------------------------

    def lookup(self, path: Path) -> Activity[Any]:
        return Activity(self._names.map(lambda names: self._resolve(path, names)))

    def _resolve(self, path: Path, names: Any) -> Any:
        if names is _NOT_SCANNED:
            return Pending
        elems = path.elems
        for i in range(1, len(elems) + 1):
            key = elems[:i]
            if key in names:
                return Ok(Leaf(Bound(self.prefix + Path.fromElems(key), self._addrVar(key), Path.fromElems(elems[i:]))))
        return Ok(Neg)

    def _addrVar(self, key: Key) -> _Refcounted:
        var = self._files.get(key)
        if var is None:
            var = self._files[key] = _Refcounted(self, AddrPending)
        return var

    # -- introspection -------------------------------------------------------

    def names(self) -> "Deferred[FrozenSet[Key]]":
        """
        @return: a Deferred set of file keys, after a scan.
        """
        return self._names.changesTo(lambda n: n is not _NOT_SCANNED)

    def state(self) -> "Deferred[Dict[Path, Addr]]":
        """
        @return: a Deferred C{{id: Addr}} of every file, after a scan (for
            C{/namer_state}).
        """
        return self.names().addCallback(
            lambda names: {self.prefix + Path.fromElems(k): self._addrVar(k).sample() for k in sorted(names)}
        )

    # -- watching -------------------------------------------------------------

    def _acquire(self) -> None:
        self._users += 1
        if self._users == 1:
            self._generation += 1
            self._poll(self._generation)

    def _release(self) -> None:
        self._users -= 1
        if self._users == 0:
            self._generation += 1
            if self._call is not None and self._call.active():
                self._call.cancel()
            self._call = None

    def _poll(self, generation: int) -> None:
        self._call = None
        if generation != self._generation or self._busy:
            return
        self._busy = True
        d = self._run(_scan, self.rootDir, dict(self._stamps))

        def done(result: Any) -> None:
            self._busy = False
            self._apply(*result)

        def failed(f: Any) -> None:
            self._busy = False
            _log.failure("scanning {root}", f, root=self.rootDir)

        def again(_: Any) -> None:
            if generation == self._generation and self._users:
                self._call = self.reactor.callLater(self.interval, self._poll, generation)

        d.addCallbacks(done, failed).addBoth(again)

    def _apply(self, stamps: Dict[Key, Stamp], changed: Dict[Key, Optional[bytes]], error: Optional[str]) -> None:
        if error != self.lastError and error:
            _log.warn("io.l5d.fs: {error}", error=error)
        self.lastError = error
        self._stamps = stamps
        for key, content in changed.items():
            var = self._addrVar(key)
            if content is None:
                var.update(AddrNeg)
            elif content == b"\0too large" or len(content) > MAX_FILE_BYTES:
                var.update(AddrFailed(ValueError(f"file too large (over {MAX_FILE_BYTES} bytes)")))
            else:
                var.update(parseAddresses(content.decode("utf-8", "replace")))
        self._names.update(frozenset(stamps))


class DtabFile:
    """
    A watched dtab file: C{var} holds the last good L{Dtab}.

    The file is read once, synchronously, when built (start-up), then polled
    (stat and read in a thread).  A change that does not parse is logged and
    recorded in C{lastError}; C{var} keeps the previous dtab.
    """

    def __init__(
        self,
        reactor: Any,
        path: str,
        interval: float = POLL_INTERVAL,
        runInThread: Optional[Callable[..., "Deferred[Any]"]] = None,
    ) -> None:
        self.reactor = reactor
        self.path = path
        self.interval = interval
        self._run = runInThread if runInThread is not None else threadRunner(reactor)
        self.lastError: Optional[str] = None
        self._stamp: Any = None
        self._call: Any = None
        self._running = False
        stamp, text, error = _readFile(path, None)
        self.var: Var[Dtab] = Var(Dtab.empty)
        self._stamp = stamp
        self._load(text, error)

    def _load(self, text: Optional[str], error: Optional[str]) -> None:
        if error is not None:
            if error != self.lastError:
                _log.error("io.l5d.fs interpreter: {error}", error=error)
            self.lastError = error
            return
        if text is None:
            return
        try:
            dtab = Dtab.read(text)
        except ValueError as e:
            message = f"invalid dtab in {self.path}: {e}; keeping the previous dtab"
            if message != self.lastError:
                _log.error("{message}", message=message)
            self.lastError = message
            return
        self.lastError = None
        self.var.update(dtab)

    def start(self) -> None:
        """
        Start polling the file.
        """
        if not self._running:
            self._running = True
            self._call = self.reactor.callLater(self.interval, self._poll)

    def stop(self) -> None:
        """
        Stop polling.
        """
        self._running = False
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _poll(self) -> None:
        self._call = None
        d = self._run(_readFile, self.path, self._stamp)

        def done(result: Any) -> None:
            stamp, text, error = result
            self._stamp = stamp
            self._load(text, error)

        d.addCallback(done)
        d.addErrback(lambda f: _log.failure("reading {path}", f, path=self.path))

        def again(_: Any) -> None:
            if self._running:
                self._call = self.reactor.callLater(self.interval, self._poll)

        d.addBoth(again)


def _readFile(path: str, old: Any) -> Tuple[Any, Optional[str], Optional[str]]:
    """
    @return: C{(stamp, text or None when unchanged, error)}.
    """
    try:
        st = os.stat(path)
        stamp = (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)
        if stamp == old:
            return stamp, None, None
        if st.st_size > MAX_FILE_BYTES:
            return stamp, None, f"{path} is larger than {MAX_FILE_BYTES} bytes"
        with open(path, "rb") as f:
            return stamp, f.read().decode("utf-8", "replace"), None
    except OSError as e:
        return None, None, f"cannot read {path}: {e.strerror or e}"
