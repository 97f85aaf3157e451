# -*- test-case-name: tests.test_workers -*-
"""
Process set-up of C{twistd linkerpy} (and of its worker processes): which
reactor, which imports, which interpreter settings.

L{prepareProcess}:
  - imports the reactor without pyOpenSSL and Twisted's HTTP/2 support when
    the configuration uses no TLS (they are loaded on demand if a TLS
    setting appears later, e.g. from a control plane): about 12 MiB of
    resident memory that an idle router without TLS does not need;
  - tunes the event loop (L{linkerpy.net.tuneReactor}: lean dispatch,
    batched writes) and the garbage collector
    (L{linkerpy.net.tuneGarbageCollector}).

L{restartWithPyPySettings} gives PyPy a sensible young-generation size.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Iterator, Sequence

class _Hidden:
    """
    A meta-path finder that makes some top-level packages unimportable for
    a while.
    """

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name.partition(".")[0] in self.names:
            raise ImportError(f"{name} is left out at start-up (loaded on demand)")
        return None


def _hiddenWhile(names: Sequence[str], importer: Any) -> None:
    finder = _Hidden(names)
    sys.meta_path.insert(0, finder)
    try:
        importer()
    finally:
        sys.meta_path.remove(finder)


def usesTLS(config: Any) -> bool:
    """
    Whether a configuration sets up TLS anywhere (a C{tls} key with a
    value, at any depth), or an HTTP/2 router.
    """
    from linkerpy.config.structure import unstructure

    def walk(value: Any) -> Iterator[bool]:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "tls" and item:
                    yield True
                yield from walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                yield from walk(item)

    if any(router.kind == "h2" for router in config.routers):
        return True
    return any(walk(unstructure(config)))


#: PyPy's young-generation size for linkerpy processes (see
#: L{restartWithPyPySettings}).
PYPY_NURSERY = "32MB"


def restartWithPyPySettings() -> None:
    """
    On PyPy, when C{PYPY_GC_NURSERY} is not set, run this process again
    (same command line, C{exec}) with C{PYPY_GC_NURSERY=32MB}.

    PyPy sizes its nursery from the CPU's cache sizes, read when the
    process starts; on virtual machines that report a huge last-level
    cache (480 MiB here) the nursery becomes 240 MiB, all of it resident
    once warm: an idle router took 336 MiB.  32 MB keeps the CPU cost per
    request lower than the default on the reference machine (and lower
    than smaller nurseries) at a fraction of the memory.  Setting
    C{PYPY_GC_NURSERY} yourself (any value) disables this.
    """
    if sys.implementation.name != "pypy" or "PYPY_GC_NURSERY" in os.environ:
        return
    try:
        with open("/proc/self/cmdline", "rb") as f:
            argv = [a.decode("utf-8", "surrogateescape") for a in f.read().split(b"\0")[:-1]]
    except OSError:
        return
    if not argv:
        return
    env = dict(os.environ, PYPY_GC_NURSERY=PYPY_NURSERY)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)


def prepareProcess(config: Any) -> Any:
    """
    Import, install and tune the reactor for a process running C{config};
    return the reactor.

    Twisted's TCP and SSL modules import pyOpenSSL (and with it the
    C{cryptography} bindings, about 12 MiB of resident memory) as soon as
    the reactor is imported, and C{twisted.web} imports its HTTP/2 support;
    when nothing in the configuration needs TLS they are imported with
    those packages hidden, so neither is loaded.  linkerpy's own TLS code
    wraps connections with C{TLSMemoryBIOFactory}, which imports them when
    first used.
    """
    if "twisted.internet.reactor" not in sys.modules and not usesTLS(config):

        def importBase() -> None:
            from twisted.internet import reactor  # noqa: F401
            import twisted.web.server  # noqa: F401

        _hiddenWhile(("OpenSSL", "h2"), importBase)
    from twisted.internet import reactor

    from linkerpy.net import tuneGarbageCollector, tuneReactor

    tuneReactor(reactor)
    tuneGarbageCollector(reactor)
    return reactor


def stopGracefullyOnSIGTERM(reactor: Any, stop: Any) -> None:
    """
    Handle SIGTERM ourselves: C{stop()} drains and stops the reactor, and the
    process exits 0.  (With Twisted's own handler, twistd re-raises the
    signal after a clean shutdown, so the exit status would be 143 although
    nothing went wrong.)

    The handler is installed at once (a SIGTERM before the reactor runs is
    acted on when it starts) and again in the I{during startup} phase, just
    after the reactor installs its own handlers (its trigger was registered
    when the reactor was made, so it runs first) and before any I{after
    startup} trigger, such as one opening a port, can run: a SIGTERM sent as
    soon as a port is seen listening is always ours.
    """
    import signal

    def onSignal(signum: int, frame: Any) -> None:
        reactor.callFromThread(stop)

    def install() -> None:
        signal.signal(signal.SIGTERM, onSignal)

    install()
    reactor.addSystemEventTrigger("during", "startup", install)
