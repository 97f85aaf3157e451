# -*- test-case-name: tests.test_bench_harness -*-
"""
A plain Twisted reverse proxy (C{twisted.web.proxy.ReverseProxyResource})
used as the "naive Twisted" row of the benchmark.

ReverseProxyResource opens a new HTTP/1.0 connection to the origin for every
request (no upstream pooling); the client side is ordinary C{twisted.web}
keep-alive.  Run as::

    python -m bench.harness.rproxy --port 8080 --origin-port 9000
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    """
    Listen on C{127.0.0.1:--port} and proxy everything to
    C{127.0.0.1:--origin-port} until killed.
    """
    parser = argparse.ArgumentParser(prog="python -m bench.harness.rproxy")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--origin-port", type=int, required=True)
    args = parser.parse_args(argv)

    # A command-line entry point: the one place that may use the global reactor.
    from twisted.internet import reactor
    from twisted.web.proxy import ReverseProxyResource
    from twisted.web.server import Site

    site = Site(ReverseProxyResource("127.0.0.1", args.origin_port, b""))
    site.displayTracebacks = False
    site.log = lambda request: None  # no per-request access log
    reactor.listenTCP(args.port, site, backlog=4096, interface="127.0.0.1")  # type: ignore[attr-defined]
    sys.stdout.write(f"rproxy listening on 127.0.0.1:{args.port} -> 127.0.0.1:{args.origin_port}\n")
    sys.stdout.flush()
    reactor.run()  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main())
