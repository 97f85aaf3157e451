# -*- test-case-name: tests.test_bench_harness -*-
"""
A helper process that opens many idle keep-alive client connections.

It connects C{--count} times to C{127.0.0.1:--port}, sends one
C{GET /} (Host C{--host}) on each connection, reads the complete response,
then keeps every connection open and idle.  When all are done it prints one
line, C{READY {"open": N, "failed": M}}, and holds them until it is
killed (or C{--hold} seconds pass), then exits, closing them all.

Run as::

    python -m bench.harness.idleconns --port 4140 --count 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
from typing import List, Optional, Tuple

#: The line prefix the parent waits for.
READY_MARKER = "READY "


def raiseFileLimit(needed: int) -> int:
    """
    Raise the soft C{RLIMIT_NOFILE} so C{needed} descriptors fit: up to the
    hard limit, or beyond it when the process may raise the hard limit too
    (root).

    @return: the resulting soft limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed or soft == resource.RLIM_INFINITY:
        return soft
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return needed
        except (ValueError, OSError):
            pass
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


async def _openOne(
    port: int, request: bytes, timeout: float
) -> Optional[Tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if length:
            await asyncio.wait_for(reader.readexactly(length), timeout)
        if not head.startswith(b"HTTP/1.1 200"):
            writer.close()
            return None
        return reader, writer
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        return None


async def _run(port: int, count: int, host: str, hold: float, parallel: int) -> int:
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode("ascii")
    gate = asyncio.Semaphore(parallel)

    async def guarded() -> Optional[Tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
        async with gate:
            return await _openOne(port, request, timeout=30.0)

    results = await asyncio.gather(*(guarded() for _ in range(count)))
    opened: List[Tuple[asyncio.StreamReader, asyncio.StreamWriter]] = [r for r in results if r is not None]
    sys.stdout.write(READY_MARKER + json.dumps({"open": len(opened), "failed": count - len(opened)}) + "\n")
    sys.stdout.flush()

    await asyncio.sleep(hold)
    for _, writer in opened:
        writer.close()
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """
    Open the connections, report, hold them, exit.
    """
    parser = argparse.ArgumentParser(prog="python -m bench.harness.idleconns")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--host", default="bench")
    parser.add_argument("--hold", type=float, default=120.0, help="maximum seconds to hold the connections")
    parser.add_argument("--parallel", type=int, default=64, help="connections being set up at once")
    args = parser.parse_args(argv)
    raiseFileLimit(args.count + 64)
    return asyncio.run(_run(args.port, args.count, args.host, args.hold, args.parallel))


if __name__ == "__main__":
    sys.exit(main())
