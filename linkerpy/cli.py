# -*- test-case-name: tests.test_naming_cli -*-
"""
The C{linkerpy} command line.

  - C{linkerpy dtab delegate --dtab '/svc=>/#/io.l5d.fs' [--config linkerpy.yaml]
    [--namers-config namers.yaml] [--json] /svc/hello}: explain a delegation;
  - C{linkerpy dtab check FILE}: validate a dtab file (exit 1 with the parse error).

Other parts add subcommands with L{registerCommand}.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO, Tuple

__all__ = ["main", "registerCommand", "buildParser", "renderDelegateTree"]

#: name -> (help, configure(parser), run(args) -> exit code)
_COMMANDS: Dict[str, Tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def registerCommand(
    name: str,
    help: str,
    configure: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
) -> None:
    """
    Add a top-level subcommand: C{configure} adds its arguments, C{run}
    returns the exit status.
    """
    _COMMANDS[name] = (help, configure, run)


# ---------------------------------------------------------------------------
# dtab


def _configureDtab(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="dtabCommand", metavar="{delegate,check}")
    sub.required = True
    delegate = sub.add_parser("delegate", help="explain how a path is delegated and bound")
    delegate.add_argument("path", help="the logical path, e.g. /svc/hello")
    delegate.add_argument("--dtab", default=None, help="the dtab to use (default: the router's, with --config)")
    delegate.add_argument("--config", default=None, help="a linkerpy.yaml: its namers (and router dtab)")
    delegate.add_argument("--router", default=None, help="router label whose dtab to use (with --config)")
    delegate.add_argument("--namers-config", dest="namersConfig", default=None,
                          help="a YAML file with a 'namers:' list")
    delegate.add_argument("--json", action="store_true", help="print the /delegator.json document")
    delegate.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for namers and DNS")
    check = sub.add_parser("check", help="validate a dtab file")
    check.add_argument("file", help="the dtab file ('-' for stdin)")


def _runDtab(args: argparse.Namespace) -> int:
    if args.dtabCommand == "check":
        return _check(args.file, sys.stdout, sys.stderr)
    return _delegate(args, sys.stdout, sys.stderr)


def _check(name: str, out: TextIO, err: TextIO) -> int:
    from linkerpy.naming import Dtab, ParseError

    try:
        if name == "-":
            text = sys.stdin.read()
        else:
            with open(name, encoding="utf-8") as f:
                text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        err.write(f"{name}: cannot read: {e}\n")
        return 1
    try:
        dtab = Dtab.read(text)
    except ParseError as e:
        line = text.count("\n", 0, e.column) + 1
        err.write(f"{name}:{line}: {e}\n")
        return 1
    out.write(f"{name}: ok ({len(dtab)} dentries)\n")
    return 0


def _namersFrom(raws: Sequence[Any], source: str, reactor: Any) -> List[Tuple[Any, Any]]:
    from linkerpy.config.structure import structurePlugin
    from linkerpy.interfaces import INamerPlugin
    from linkerpy.naming.plugins import buildNamers
    from linkerpy.plugins.context import BuildContext
    from linkerpy.plugins.registry import defaultRegistry

    registry = defaultRegistry()
    configured = [structurePlugin(INamerPlugin, raw, registry, f"{source}namers[{i}]") for i, raw in enumerate(raws)]
    return buildNamers(configured, BuildContext(reactor=reactor, registry=registry))


def _load(path: str) -> Any:
    from linkerpy.config.load import loadFile

    return loadFile(path)


def _delegate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from linkerpy.config.errors import ConfigError
    from linkerpy.naming import Dtab, ParseError, Path

    try:
        path = Path.read(args.path)
    except ParseError as e:
        err.write(f"Invalid path: {e}\n")
        return 1
    rawNamers: List[Any] = []
    dtabText = args.dtab
    try:
        if args.config:
            raw = _load(args.config) or {}
            rawNamers.extend(raw.get("namers") or [])
            if dtabText is None:
                for router in raw.get("routers") or []:
                    if args.router is None or router.get("label", router.get("protocol")) == args.router:
                        dtabText = router.get("dtab") or ""
                        break
        if args.namersConfig:
            raw = _load(args.namersConfig)
            rawNamers.extend((raw.get("namers") if isinstance(raw, dict) else raw) or [])
    except (OSError, ValueError) as e:
        err.write(f"cannot load configuration: {e}\n")
        return 1
    try:
        dtab = Dtab.read(dtabText or "")
    except ParseError as e:
        err.write(f"Invalid dtab: {e}\n")
        return 1

    from twisted.internet import reactor
    from twisted.internet.task import react

    try:
        namers = _namersFrom(rawNamers, "", reactor)
    except ConfigError as e:
        err.write(f"{e}\n")
        return 1
    status: List[int] = [0]

    def run(r: Any) -> Any:
        from linkerpy.naming.interpreter import ConfiguredNamersInterpreter
        from linkerpy.naming.plugins import systemNamerFor

        interp = ConfiguredNamersInterpreter(r, namers, system=systemNamerFor(r))
        d = interp.delegate(dtab, path)
        d.addTimeout(args.timeout, r)

        def show(tree: Any) -> None:
            out.write(tree.toJSONText() + "\n" if args.json else renderDelegateTree(tree))

        def failed(f: Any) -> None:
            err.write(f"delegation failed: {f.getErrorMessage()}\n")
            status[0] = 1

        return d.addCallbacks(show, failed)

    try:
        react(run, [])
    except SystemExit as e:
        if e.code not in (0, None):
            return int(e.code) if isinstance(e.code, int) else 1
    return status[0]


def _addrText(addr: Dict[str, Any]) -> str:
    kind = addr["type"]
    if kind == "bound":
        parts = []
        for a in addr["addrs"]:
            ip = f"[{a['ip']}]" if ":" in a["ip"] else a["ip"]
            weight = a["meta"].get("endpoint_addr_weight")
            parts.append(f"{ip}:{a['port']}" + (f"*{weight}" if weight is not None else ""))
        return ", ".join(parts) if parts else "(no addresses)"
    if kind == "failed":
        return f"failed: {addr['cause']}"
    return kind


def renderDelegateTree(tree: Any) -> str:
    """
    A readable, indented rendering of a L{linkerpy.naming.delegate.DelegateTree}.
    """
    lines: List[str] = []

    def go(node: Dict[str, Any], depth: int, label: str = "") -> None:
        pad = "  " * depth
        dentry = node.get("dentry")
        via = f"  (via {dentry['prefix']}=>{dentry['dst']})" if dentry else ""
        kind = node["type"]
        path = node.get("path", "")
        if kind == "delegate":
            lines.append(f"{pad}{label}{path}{via}")
            go(node["delegate"], depth + 1)
        elif kind == "alt":
            lines.append(f"{pad}{label}{path}{via}  alternatives, first usable wins:")
            for i, child in enumerate(node["alt"]):
                go(child, depth + 1, f"{i + 1}. ")
        elif kind == "union":
            lines.append(f"{pad}{label}{path}{via}  weighted union:")
            for branch in node["union"]:
                go(branch["tree"], depth + 1, f"{branch['weight']:g}: ")
        elif kind == "leaf":
            bound = node["bound"]
            residual = "" if bound["path"] == "/" else f" residual {bound['path']}"
            lines.append(f"{pad}{label}{path}{via}  => bound {bound['id']}{residual}: {_addrText(bound['addr'])}")
        elif kind == "transformation":
            lines.append(f"{pad}{label}{path}  transformed by {node['name']} (was {node['bound']['id']}):")
            go(node["tree"], depth + 1)
        elif kind == "neg":
            lines.append(f"{pad}{label}{path}{via}  ~ (no match)")
        elif kind == "fail":
            lines.append(f"{pad}{label}{path}{via}  ! (fail)")
        elif kind == "empty":
            lines.append(f"{pad}{label}{path}{via}  $ (empty)")
        else:
            lines.append(f"{pad}{label}{path}{via}  error: {node.get('message', '')}")

    go(json.loads(tree.toJSONText()), 0)
    return "\n".join(lines) + "\n"


registerCommand("dtab", "work with dtabs (delegate, check)", _configureDtab, _runDtab)


# ---------------------------------------------------------------------------


def buildParser() -> argparse.ArgumentParser:
    """
    The top-level parser with every registered subcommand.
    """
    parser = argparse.ArgumentParser(prog="linkerpy", description="linkerpy command-line tools")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(sorted(_COMMANDS)) + "}")
    sub.required = True
    for name in sorted(_COMMANDS):
        help, configure, _ = _COMMANDS[name]
        configure(sub.add_parser(name, help=help))
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """
    Run the command line; return the exit status.
    """
    parser = buildParser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    _, _, run = _COMMANDS[args.command]
    return run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
