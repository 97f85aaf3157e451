"""
Naming micro-benchmark: parsing, lookup and delegation over a 1,000-entry
dtab, and binding (and observing) 10,000 names.  Prints timings; never a test.

    python bench/naming_bench.py [--names 10000] [--entries 1000]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from typing import Any, Callable, Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet.testing import MemoryReactorClock  # noqa: E402

from linkerpy.naming import Activity, AddrBound, Address, Bound, Dtab, Leaf, Ok, Path, Var  # noqa: E402
from linkerpy.naming.delegate import delegateTree  # noqa: E402
from linkerpy.naming.interpreter import ConfiguredNamersInterpreter  # noqa: E402
from linkerpy.naming.system import SystemNamer  # noqa: E402


class StaticNamer:
    """
    One address var per name, like io.l5d.fs after its first scan.
    """

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.vars: Dict[Path, Var[Any]] = {}

    def lookup(self, path: Path) -> Activity[Any]:
        name = path.take(1)
        var = self.vars.get(name)
        if var is None:
            port = 1000 + len(self.vars) % 60000
            var = self.vars[name] = Var(AddrBound([Address("127.0.0.1", port)]))
        return Activity.value(Leaf(Bound(self.prefix + name, var, path.drop(1))))


def timed(label: str, fn: Callable[[], Any], repeat: int = 1) -> Any:
    gc.collect()
    start = time.perf_counter()
    result = None
    for _ in range(repeat):
        result = fn()
    elapsed = (time.perf_counter() - start) / repeat
    print(f"{label:<58} {elapsed * 1000:10.2f} ms")
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--names", type=int, default=10000)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]} ({sys.implementation.name})")

    lines = ["/svc => /#/fs", "/host => /svc", "/http/1.1/* => /host"]
    for i in range(args.entries - len(lines)):
        if i % 10 == 0:
            lines.append(f"/svc/s{i} => 3 * /#/fs/s{i} & /#/fs/canary{i}")
        else:
            lines.append(f"/svc/s{i} => /#/fs/s{i} | /$/inet/127.0.0.1/{1000 + i}")
    text = ";\n".join(lines)
    dtab = timed(f"parse a {args.entries}-entry dtab", lambda: Dtab.read(text), 5)
    timed("show it", lambda: Dtab(dtab.dentries).show, 5)
    paths = [Path.read(f"/http/1.1/GET/s{i % (args.entries - 3)}") for i in range(args.names)]
    timed(f"lookup {args.names} paths (one step)", lambda: [dtab.lookup(p) for p in paths])

    clock = MemoryReactorClock()
    namer = StaticNamer(Path.read("/#/fs"))
    interp = ConfiguredNamersInterpreter(clock, [(namer.prefix, namer)], system=SystemNamer(clock))
    timed("delegate 100 paths (full delegation tree)",
          lambda: [delegateTree(dtab, paths[i], interp.lookup) for i in range(100)])
    sample = delegateTree(dtab, paths[10], interp.lookup).toJSONText()
    print(f"  (one delegation tree is {len(sample)} bytes of JSON)")

    closables: List[Any] = []
    trees: List[Any] = []

    def bindAll() -> None:
        for p in paths:
            act = interp.bind(dtab, p)
            closables.append(act.observe(trees.append))

    timed(f"bind and observe {args.names} names", bindAll)
    ok = sum(1 for t in trees if isinstance(t, Ok))
    print(f"  ({ok} bound, {len(namer.vars)} distinct namer vars)")
    var = next(iter(namer.vars.values()))
    observers: List[Any] = []
    leaf = next(t for t in trees if isinstance(t, Ok) and any(l.value.addr is var for l in t.value.leaves()))
    bound = next(l.value for l in leaf.value.leaves() if l.value.addr is var)
    addrs: List[Any] = []
    closables.append(bound.stableAddr.observe(addrs.append))
    timed("push one address change to a bound name (no re-binding)",
          lambda: var.update(AddrBound([Address("127.0.0.2", len(addrs))])), 100)
    timed(f"close {len(closables)} observations", lambda: [c.close() for c in closables])
    leaked = sum(v.observerCount for v in namer.vars.values())
    print(f"  (observers left on namer vars after closing: {leaked})")
    del observers


if __name__ == "__main__":
    main()
