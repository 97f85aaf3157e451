#!/usr/bin/env python3
"""
In-process micro-benchmark of the HTTP router's per-request Python work (not
a test: it never fails because something is slow).

    python -m bench.inproc                       # CPU us per request, best of 5
    python -m bench.inproc --profile             # cProfile of one run, by own time
    python -m bench.inproc --config extra.yaml   # another router config (see CONFIG)
    python -m bench.inproc --without parse,stats # a lower bound (see bench/bounds.py)

A real C{Linker} (router, routing core, policy modules, pools, metrics) runs
on a C{MemoryReactorClock}.  The downstream clients and the origin are
in-memory transports: every request and response goes through the same
parser, handler, stacks and serialisers as on sockets, but no syscall, no
event loop and no other process is involved, so the figure is the router's
own Python cost per request, with no noise from the machine.  Several
downstream connections are kept busy, one request each at a time, like wrk's
keep-alive connections.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
from typing import Any, Deque, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.testing import MemoryReactorClock, StringTransport  # noqa: E402

#: The router configuration measured (the origin address is fixed: nothing
#: listens there, the origin is simulated).
CONFIG = """
admin: {ip: 127.0.0.1, port: 0}
telemetry:
- {kind: io.l5d.prometheus}
routers:
- protocol: http
  dtab: /svc/bench => /$/inet/127.0.0.1/9999;
  servers: [{port: 4140, ip: 127.0.0.1}]
"""

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
BODY = b"x" * 99 + b"\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 27 Nov 2026 04:15:58 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 100\r\nConnection: keep-alive\r\n\r\n" + BODY
)


class Loop:
    """
    A FIFO of deliveries standing in for the event loop.
    """

    def __init__(self) -> None:
        self.queue: Deque[Tuple[Any, bytes]] = collections.deque()
        self.responses = 0

    def run(self, limit: int) -> None:
        queue = self.queue
        while queue and self.responses < limit:
            protocol, data = queue.popleft()
            protocol.dataReceived(data)


class DownTransport(StringTransport):
    """
    A downstream client: counts responses, sends the next request.
    """

    def __init__(self, loop: Loop, peerPort: int) -> None:
        super().__init__(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 4140), peerAddress=IPv4Address("TCP", "127.0.0.1", peerPort)
        )
        self.loop = loop

    def write(self, data: bytes) -> None:
        if data.endswith(BODY):
            self.loop.responses += 1
            self.loop.queue.append((self.protocol, REQUEST))

    def writeSequence(self, seq: Any) -> None:
        self.write(b"".join(seq))

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass


class UpTransport(StringTransport):
    """
    The origin: answers every request head with L{RESPONSE}.
    """

    def __init__(self, loop: Loop) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "127.0.0.1", 9999))
        self.loop = loop

    def write(self, data: bytes) -> None:
        if data.endswith(b"\r\n\r\n"):
            self.loop.queue.append((self.protocol, RESPONSE))

    def writeSequence(self, seq: Any) -> None:
        self.write(b"".join(seq))

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass


def build(configText: str, connections: int) -> Tuple[Loop, Any, Any]:
    from linkerpy.config.model import loadLinkerConfig
    from linkerpy.linker import Linker
    from linkerpy.plugins.registry import defaultRegistry

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(configText)
    try:
        config = loadLinkerConfig(f.name)
    finally:
        os.unlink(f.name)
    reactor = MemoryReactorClock()
    linker = Linker(config, defaultRegistry(), reactor)
    linker.startService()
    loop = Loop()
    factory = [s[1] for s in reactor.tcpServers if s[0] == 4140][0]
    seen = 0

    def connectPending() -> None:
        nonlocal seen
        while seen < len(reactor.tcpClients):
            _, _, clientFactory, _, _ = reactor.tcpClients[seen]
            seen += 1
            proto = clientFactory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 9999))
            transport = UpTransport(loop)
            transport.protocol = proto
            proto.makeConnection(transport)

    for i in range(connections):
        proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000 + i))
        transport = DownTransport(loop, 50000 + i)
        transport.protocol = proto
        proto.makeConnection(transport)
        loop.queue.append((proto, REQUEST))
    # Warm up: open the pool's connections as the first requests ask for them.
    for _ in range(connections * 4):
        loop.run(loop.responses + 1)
        connectPending()
    return loop, linker, connectPending


def measure(loop: Loop, connectPending: Any, requests: int) -> float:
    start = time.process_time()
    done = loop.responses
    while loop.responses < done + requests:
        loop.run(done + requests)
        connectPending()
    return (time.process_time() - start) / requests * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--config", help="a YAML file to use instead of CONFIG")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--gc-freeze", action="store_true", help="gc.freeze() after start-up")
    p.add_argument("--without", default="", help="take out parts of the work (parse, stats): a lower bound, see bench/bounds.py")
    args = p.parse_args()
    if args.without:
        from bench.bounds import apply

        apply(args.without)
    text = CONFIG
    if args.config:
        with open(args.config) as f:
            text = f.read()
    loop, linker, connectPending = build(text, args.connections)
    if args.gc_freeze:
        import gc

        gc.collect()
        gc.freeze()
    measure(loop, connectPending, args.requests)  # warm-up (PyPy's JIT)
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        measure(loop, connectPending, args.requests)
        profiler.disable()
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(40)
        return
    results: List[float] = [measure(loop, connectPending, args.requests) for _ in range(args.repeat)]
    print(f"{sys.implementation.name} {sys.version.split()[0]}: {min(results):.2f} us/request "
          f"(best of {args.repeat}; all: {', '.join(f'{r:.2f}' for r in results)})")


if __name__ == "__main__":
    main()
