# -*- test-case-name: tests.test_namerd_service -*-
"""
C{twistd linkerpy-namerd}: command-line options and the service maker.

    twistd -n linkerpy-namerd -c conf/namerd.yaml
    twistd -n linkerpy-namerd --config conf/namerd.yaml --check

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
    Options of C{twistd linkerpy-namerd}.
    """

    synopsis = "[options]"
    longdesc = "Run the linkerpy control plane (namerd) with the given YAML or JSON configuration file."
    optParameters = [
        ["config", "c", None, "Path to the configuration file (YAML or JSON)."],
    ]
    optFlags = [
        ["check", None, "Validate the configuration, print a summary and exit."],
    ]

    def postOptions(self) -> None:
        path = self["config"]
        if not path:
            raise usage.UsageError("a configuration file is required: --config PATH (or -c PATH)")
        self.namerdConfig = loadOrExit(path, check=self["check"])


def loadOrExit(path: str, check: bool = False, out: Any = None, err: Any = None) -> Any:
    """
    Load a configuration; on error print every problem and exit 1; with
    C{check}, build it (opening nothing), print a summary and exit 0.
    """
    from linkerpy.namerd.config import loadNamerdConfig

    out = out or sys.stdout
    err = err or sys.stderr
    try:
        config = loadNamerdConfig(path)
    except ConfigError as e:
        err.write(e.render() + "\n")
        err.flush()
        raise SystemExit(1)
    if check:
        buildOrExit(config, path, err)
        out.write(f"{path}: ok: {config.summary()}\n")
        out.flush()
        raise SystemExit(0)
    return config


def buildOrExit(config: Any, path: Optional[str] = None, err: Any = None) -> Any:
    """
    Build the L{linkerpy.namerd.service.NamerdService} (opening no port);
    on a problem found while building, print it and exit 1.
    """
    from twisted.internet import reactor

    from linkerpy.namerd.service import NamerdService
    from linkerpy.plugins.registry import defaultRegistry

    err = err or sys.stderr
    try:
        return NamerdService(config, defaultRegistry(), reactor, configPath=path)
    except ConfigError as e:
        if e.source is None:
            e.source = path
        err.write(e.render() + "\n")
        err.flush()
        raise SystemExit(1)
    except OSError as e:
        err.write(f"cannot start namerd with {path}: {e}\n")
        err.flush()
        raise SystemExit(1)


def makeService(options: Options) -> Any:
    """
    Build the namerd service for a parsed configuration.  SIGTERM stops it
    like C{POST /admin/shutdown}, and the process exits 0.
    """
    from twisted.internet import reactor

    from linkerpy.process import stopGracefullyOnSIGTERM

    service = buildOrExit(options.namerdConfig, options["config"])
    stopGracefullyOnSIGTERM(reactor, reactor.stop)
    return service
