# -*- test-case-name: tests.test_tap -*-
"""
C{twistd linkerpy}: command-line options and the service maker.

    twistd -n linkerpy -c conf/linkerpy.yaml
    twistd -n linkerpy --config conf/linkerpy.yaml --check

The configuration is loaded and validated while options are parsed, before
any port is opened; a bad configuration prints every problem and exits 1.
"""

from __future__ import annotations

import sys
from typing import Any, Optional

from twisted.python import usage

from linkerpy.config.errors import ConfigError


class Options(usage.Options):
    """
    Options of C{twistd linkerpy}.
    """

    synopsis = "[options]"
    longdesc = "Run the linkerpy router with the given YAML or JSON configuration file."
    optParameters = [
        ["config", "c", None, "Path to the configuration file (YAML or JSON)."],
        ["workers", None, None, "Number of reactor processes sharing the listening ports (overrides 'workers:')."],
    ]
    optFlags = [
        ["check", None, "Validate the configuration, print a summary and exit."],
    ]

    config: Any = None

    def postOptions(self) -> None:
        path = self["config"]
        if not path:
            raise usage.UsageError("a configuration file is required: --config PATH (or -c PATH)")
        if self["workers"] is not None:
            try:
                workers = int(self["workers"])
                if workers < 1:
                    raise ValueError()
            except ValueError:
                raise usage.UsageError("--workers must be a positive integer")
            self["workers"] = workers
        self.linkerConfig = loadOrExit(path, check=self["check"])


def loadOrExit(path: str, check: bool = False, out: Any = None, err: Any = None) -> Any:
    """
    Load a configuration; on error print every problem and exit 1; with
    C{check}, print a one-line summary and exit 0.
    """
    from linkerpy.config.model import loadLinkerConfig

    from linkerpy.plugins.registry import RegistryError

    out = out or sys.stdout
    err = err or sys.stderr
    try:
        config = loadLinkerConfig(path)
    except ConfigError as e:
        err.write(e.render() + "\n")
        err.flush()
        raise SystemExit(1)
    except RegistryError as e:
        err.write(f"installed plugins conflict: {e}\n")
        err.flush()
        raise SystemExit(1)
    if check:
        # Build everything (without starting it) so files the config points
        # at (TLS certificates, dtab files...) are checked too.
        buildOrExit(config, path, err)
        out.write(f"{path}: ok: {config.summary()}\n")
        out.flush()
        raise SystemExit(0)
    return config


def buildOrExit(config: Any, path: Optional[str] = None, err: Any = None) -> Any:
    """
    Build the L{linkerpy.linker.Linker} (opening no port); on a
    configuration problem found while building, print it and exit 1.
    """
    from twisted.internet import reactor

    from linkerpy.linker import Linker
    from linkerpy.plugins.registry import defaultRegistry

    err = err or sys.stderr
    try:
        return Linker(config, defaultRegistry(), reactor, configPath=path)
    except ConfigError as e:
        if e.source is None:
            e.source = path
        err.write(e.render() + "\n")
        err.flush()
        raise SystemExit(1)


def makeService(options: Options) -> Any:
    """
    Build the L{linkerpy.linker.Linker} for a parsed configuration (or, with
    more than one worker, the L{linkerpy.workers.WorkerPool} running one
    per worker process).
    """
    from linkerpy.process import prepareProcess, restartWithPyPySettings, stopGracefullyOnSIGTERM

    restartWithPyPySettings()
    config = options.linkerConfig
    reactor = prepareProcess(config)
    workers: Optional[int] = options["workers"] or config.workers
    if workers and workers > 1:
        from linkerpy.workers import WorkerPool

        pool = WorkerPool(options["config"], workers, config, reactor)
        stopGracefullyOnSIGTERM(reactor, reactor.stop)  # stopService drains the workers
        return pool
    linker = buildOrExit(config, options["config"])
    stopGracefullyOnSIGTERM(reactor, linker.shutdown)
    return linker
