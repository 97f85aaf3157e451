# -*- test-case-name: tests.test_namerd_storage -*-
"""
C{io.l5d.fs}: one file per namespace under a directory, surviving restarts.

Layout under C{rootDir}::

    dtabs/<namespace>     a dtab, in its show form
    policy/<namespace>    a policy document (JSON)
    tmp/                  scratch space for atomic writes

A write goes to a temporary file in C{tmp/}, is flushed to disk and renamed
over the namespace's file, so readers (and a crash) only ever see a whole
old or a whole new document.  A document's version is derived from its
file's identity (modification time, inode, size); a write that would
reproduce the previous version bumps the modification time, so versions
change on every write.  Files written by someone else (an operator's
editor, a deploy tool) are picked up by polling every C{pollIntervalMs}.

File system calls run in the reactor's thread pool (or an injected
C{runner}); writes and polls are serialised, which makes compare-and-swap
atomic within the process.  One process should own a directory: two namerd
processes sharing a store should use C{io.l5d.etcd}.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Callable, Dict, List, Optional

from twisted.internet.defer import Deferred, DeferredLock, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from linkerpy.interfaces import IDtabStore
from linkerpy.namerd.errors import (
    KINDS,
    InvalidNamespace,
    NamespaceExists,
    NoSuchNamespace,
    StoreUnavailable,
    VersionMismatch,
    checkKind,
    checkNamespace,
)
from linkerpy.namerd.storage.base import Document, StoreVars

__all__ = ["FsStore", "threadRunner", "syncRunner", "MAX_DOCUMENT_BYTES"]

log = Logger()

#: Files larger than this are ignored (a document is small; this guards
#: against a stray file filling memory).
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024

Runner = Callable[..., Deferred]


def threadRunner(reactor: Any) -> Runner:
    """
    @return: a runner calling functions in C{reactor}'s thread pool.
    """
    from twisted.internet.threads import deferToThreadPool

    def run(fn: Callable[..., Any], *args: Any) -> Deferred:
        return deferToThreadPool(reactor, reactor.getThreadPool(), fn, *args)

    return run


def _version(st: os.stat_result) -> bytes:
    return b"%d.%d.%d" % (st.st_mtime_ns, st.st_ino, st.st_size)


def _validName(name: str) -> bool:
    try:
        checkNamespace(name)
    except InvalidNamespace:
        return False
    return True


class _Disk:
    """
    The blocking half: every method runs in a worker thread.
    """

    def __init__(self, root: str) -> None:
        self.root = root

    def path(self, kind: str, ns: str) -> str:
        return os.path.join(self.root, kind, ns)

    def prepare(self) -> None:
        for sub in KINDS + ("tmp",):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)

    def read(self, kind: str, ns: str) -> Optional[Document]:
        try:
            with open(self.path(kind, ns), "rb") as f:
                st = os.fstat(f.fileno())
                if st.st_size > MAX_DOCUMENT_BYTES:
                    raise StoreUnavailable(f"{self.path(kind, ns)} is larger than {MAX_DOCUMENT_BYTES} bytes")
                data = f.read(MAX_DOCUMENT_BYTES + 1)
        except FileNotFoundError:
            return None
        try:
            return data.decode("utf-8"), _version(st)
        except UnicodeDecodeError:
            raise StoreUnavailable(f"{self.path(kind, ns)} is not UTF-8 text")

    def versions(self, kind: str) -> Dict[str, bytes]:
        out: Dict[str, bytes] = {}
        directory = os.path.join(self.root, kind)
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return out
        for entry in entries:
            if not _validName(entry.name):
                continue
            try:
                if not entry.is_file():
                    continue
                out[entry.name] = _version(entry.stat())
            except FileNotFoundError:
                continue
        return out

    def scan(self, known: Dict[str, Dict[str, bytes]]) -> Dict[str, Dict[str, Optional[Document]]]:
        """
        @param known: C{{kind: {ns: version}}} as last seen.
        @return: C{{kind: {ns: document or None}}} for what changed.
        """
        changes: Dict[str, Dict[str, Optional[Document]]] = {}
        for kind in KINDS:
            seen = self.versions(kind)
            mine = known.get(kind, {})
            out: Dict[str, Optional[Document]] = {}
            for ns, version in seen.items():
                if mine.get(ns) != version:
                    try:
                        out[ns] = self.read(kind, ns)
                    except StoreUnavailable as e:
                        log.warn("ignoring {kind} file: {error}", kind=kind, error=str(e))
                        continue
            for ns in mine:
                if ns not in seen:
                    out[ns] = None
            if out:
                changes[kind] = out
        return changes

    def write(self, kind: str, ns: str, text: str, expect: Any, previous: Optional[bytes]) -> bytes:
        """
        Compare-and-swap on disk.

        @param expect: C{"absent"} (create), C{None} (unconditional) or the
            expected version.
        @param previous: the version the caller last saw, which the new one
            must differ from.
        """
        current = self.read(kind, ns)
        if expect == "absent":
            if current is not None:
                raise NamespaceExists(kind, ns)
        elif expect is not None:
            if current is None:
                raise NoSuchNamespace(kind, ns)
            if current[1] != expect:
                raise VersionMismatch(kind, ns)
        avoid = {v for v in (previous, current[1] if current else None) if v is not None}
        data = text.encode("utf-8")
        fd, tmp = tempfile.mkstemp(prefix=f"{kind}-{ns}-", dir=os.path.join(self.root, "tmp"))
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            st = os.stat(tmp)
            while _version(st) in avoid:
                stamp = st.st_mtime_ns + 1
                os.utime(tmp, ns=(stamp, stamp))
                st = os.stat(tmp)
            os.replace(tmp, self.path(kind, ns))
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        self._syncDir(kind)
        return _version(st)

    def remove(self, kind: str, ns: str) -> None:
        try:
            os.unlink(self.path(kind, ns))
        except FileNotFoundError:
            raise NoSuchNamespace(kind, ns)
        self._syncDir(kind)

    def _syncDir(self, kind: str) -> None:
        try:
            fd = os.open(os.path.join(self.root, kind), os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)


@implementer(IDtabStore)
class FsStore:
    """
    A store in a directory (see the module docstring).

    @ivar root: the directory.
    @ivar pollInterval: seconds between scans for outside changes.
    """

    def __init__(self, root: str, reactor: Any, pollInterval: float = 1.0, runner: Optional[Runner] = None) -> None:
        self.root = os.path.abspath(root)
        self.reactor = reactor
        self.pollInterval = pollInterval
        self.vars = StoreVars(known=False)
        self._disk = _Disk(self.root)
        self._run = runner if runner is not None else threadRunner(reactor)
        self._lock = DeferredLock()
        self._versions: Dict[str, Dict[str, bytes]] = {kind: {} for kind in KINDS}
        self._poller: Optional[LoopingCall] = None
        self._started: Optional[Deferred] = None

    def describe(self) -> str:
        return f"files under {self.root}"

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> Deferred:
        if self._started is None:
            d = self._run(self._disk.prepare)
            d.addCallback(lambda _: self.poll())
            d.addCallback(self._startPolling)
            self._started = d
        return self._started

    def _startPolling(self, _: Any) -> None:
        self.vars.markKnown()
        if self.pollInterval > 0 and self._poller is None:
            self._poller = LoopingCall(self._pollQuietly)
            self._poller.clock = self.reactor
            self._poller.start(self.pollInterval, now=False)

    def _pollQuietly(self) -> Deferred:
        d = self.poll()
        d.addErrback(lambda f: log.failure("polling {root}", f, root=self.root))
        return d

    def poll(self) -> Deferred:
        """
        Look for outside changes now.

        @return: a Deferred firing when they have been applied.
        """
        return self._lock.run(self._poll)

    def _poll(self) -> Deferred:
        known = {kind: dict(versions) for kind, versions in self._versions.items()}
        return self._run(self._disk.scan, known).addCallback(self._applyScan)

    def _applyScan(self, changes: Dict[str, Dict[str, Optional[Document]]]) -> None:
        for kind, docs in changes.items():
            for ns, doc in docs.items():
                self._record(kind, ns, doc)

    def _record(self, kind: str, ns: str, doc: Optional[Document]) -> None:
        if doc is None:
            self._versions[kind].pop(ns, None)
        else:
            self._versions[kind][ns] = doc[1]
        self.vars.set(kind, ns, doc)

    def close(self) -> Deferred:
        if self._poller is not None and self._poller.running:
            self._poller.stop()
        self._poller = None
        return succeed(None)

    # -- IDtabStore -----------------------------------------------------------------

    def list(self, kind: str) -> "Deferred[List[str]]":
        checkKind(kind)
        return self._run(self._disk.versions, kind).addCallback(lambda versions: sorted(versions))

    def get(self, kind: str, ns: str) -> Deferred:
        checkKind(kind)
        checkNamespace(ns)
        return self._run(self._disk.read, kind, ns)

    def create(self, kind: str, ns: str, text: str) -> "Deferred[bytes]":
        return self._write(kind, ns, text, "absent")

    def update(self, kind: str, ns: str, text: str, version: Optional[bytes]) -> "Deferred[bytes]":
        return self._write(kind, ns, text, version)

    def _write(self, kind: str, ns: str, text: str, expect: Any) -> "Deferred[bytes]":
        checkKind(kind)
        checkNamespace(ns)

        def locked() -> Deferred:
            previous = self._versions[kind].get(ns)
            d = self._run(self._disk.write, kind, ns, text, expect, previous)

            def written(version: bytes) -> bytes:
                self._record(kind, ns, (text, version))
                return version

            return d.addCallback(written)

        return self._lock.run(locked)

    def delete(self, kind: str, ns: str) -> Deferred:
        checkKind(kind)
        checkNamespace(ns)

        def locked() -> Deferred:
            d = self._run(self._disk.remove, kind, ns)
            d.addCallback(lambda _: self._record(kind, ns, None))
            return d

        return self._lock.run(locked)

    def observe(self, kind: str, ns: str) -> Any:
        return self.vars.observe(kind, ns)

    def observeNamespaces(self, kind: str) -> Any:
        return self.vars.observeNamespaces(kind)


def syncRunner(fn: Callable[..., Any], *args: Any) -> Deferred:
    """
    A runner calling C{fn} at once on the calling thread (for tests).
    """
    from twisted.internet.defer import maybeDeferred

    return maybeDeferred(fn, *args)

