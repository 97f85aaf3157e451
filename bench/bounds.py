# (a measuring tool, not tested: it never fails because something is slow)
"""
Lower bounds for the HTTP router's per-request cost: take one part of the
work out and measure what is left.  This answers questions like "how fast
would linkerpy be with a free HTTP/1 parser?", and is never a product
feature: a process with a part taken out is not a correct router.

    python -m bench.inproc --without parse,stats
    python -m bench.ab A=. B=.@BENCH_WITHOUT=parse,stats
    python -m bench --only http --linkerpy-cmd \
        "env PYTHONPATH=$PWD {python} -m bench.bounds parse,stats -n --pidfile= linkerpy -c {config}"

The last form runs C{twistd} with the parts taken out (C{python -m
bench.bounds PARTS TWISTD-ARGUMENTS...}), so the harness measures the bound
side by side with nginx.

Parts:

- C{parse}: the request and response head parsers are memoized on the
  exact head bytes, so a repeated head costs a dictionary lookup and a
  L{copy<linkerpy.protocol.http.message.RequestHead.copy>} of the cached
  head (the router changes the headers it is given).  wrk repeats the same
  request head, and the origin's response head changes once a second (its
  C{Date}), so nearly every head hits the cache.
- C{stats}: latency statistics (C{Stat.add}: the C{prometheus_client}
  histograms with their minimum and maximum) record nothing.
"""

from __future__ import annotations

import sys
from typing import Any, Dict, List, Tuple

PARTS = ("parse", "stats")

#: The most heads kept per parser (the cache is emptied when it is full).
CACHE_SIZE = 1024


def apply(spec: str) -> None:
    """
    Take out the parts named in C{spec} (comma-separated, see L{PARTS}).

    @raise ValueError: for an unknown part.
    """
    parts = [part for part in spec.split(",") if part]
    for part in parts:
        if part not in PARTS:
            raise ValueError(f"unknown part {part!r} (known: {', '.join(PARTS)})")
    if "parse" in parts:
        _memoizeParsers()
    if "stats" in parts:
        from linkerpy.telemetry import metrics

        metrics.Stat.add = lambda self, value: None  # type: ignore[method-assign]


def _memoizeParsers() -> None:
    from linkerpy.protocol.http import client, serverconn

    parseRequest = serverconn.parseRequestHead
    parseResponse = client.parseResponseHead
    requests: Dict[bytes, Any] = {}
    responses: Dict[Tuple[bytes, bytes], Any] = {}

    def parseRequestHead(buf: bytes, end: int, *args: Any) -> Any:
        key = buf[: end + 4]
        head = requests.get(key)
        if head is None:
            if len(requests) >= CACHE_SIZE:
                requests.clear()
            head = requests[key] = parseRequest(key, end, *args)
        return head.copy()

    def parseResponseHead(buf: bytes, end: int, method: bytes, *args: Any) -> Any:
        key = (buf[: end + 4], method)
        result = responses.get(key)
        if result is None:
            if len(responses) >= CACHE_SIZE:
                responses.clear()
            result = responses[key] = parseResponse(key[0], end, method, *args)
        return result[0].copy(), result[1]

    serverconn.parseRequestHead = parseRequestHead  # type: ignore[assignment]
    client.parseResponseHead = parseResponseHead  # type: ignore[assignment]


def main(argv: List[str]) -> None:
    """
    C{python -m bench.bounds PARTS TWISTD-ARGUMENTS...}: take out C{PARTS},
    then run C{twistd}.
    """
    if not argv:
        raise SystemExit(f"usage: python -m bench.bounds PARTS [twistd arguments...] (parts: {', '.join(PARTS)})")
    apply(argv[0])
    from twisted.scripts.twistd import run

    sys.argv = ["twistd", *argv[1:]]
    run()


if __name__ == "__main__":
    main(sys.argv[1:])
