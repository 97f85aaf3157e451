# -*- test-case-name: tests.test_bench_harness -*-
"""
A plain Twisted TCP forwarder (C{twisted.protocols.portforward}, the code
behind C{twistd portforward}) used as the "minimal Twisted" row of the TCP
benchmark: no naming, no policy, no metrics, only Twisted's transports and
a byte pump, so it shows what Twisted itself costs per connection and per
byte.  It does not log per connection (C{twistd portforward} does, two lines
each).  Run as::

    python -m bench.harness.portforward --route 8080:9000 --route 8081:5201

Each C{--route LISTEN:TARGET} forwards C{127.0.0.1:LISTEN} to
C{127.0.0.1:TARGET}.

With C{--tuned} the same protocols run on linkerpy's event-loop tuning
(L{linkerpy.net}: lean dispatch, eager and batched writes, C{TCP_NODELAY},
the garbage collector settings): the cheapest a forwarder built on Twisted's
transports gets here, which bounds what any router on them can reach.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional, Tuple


def parseRoute(text: str) -> Tuple[int, int]:
    """
    C{"LISTEN:TARGET"} -> C{(listenPort, targetPort)}.

    @raise argparse.ArgumentTypeError: not two ports.
    """
    listen, sep, target = text.partition(":")
    try:
        ports = (int(listen), int(target))
    except ValueError:
        ports = (0, 0)
    if not sep or not all(0 < p < 65536 for p in ports):
        raise argparse.ArgumentTypeError(f"expected LISTEN:TARGET ports, got {text!r}")
    return ports


def main(argv: Optional[List[str]] = None) -> int:
    """
    Listen on every route's port and forward until killed.
    """
    parser = argparse.ArgumentParser(prog="python -m bench.harness.portforward")
    parser.add_argument("--route", type=parseRoute, action="append", required=True, metavar="LISTEN:TARGET")
    parser.add_argument("--tuned", action="store_true", help="run on linkerpy's event-loop tuning")
    args = parser.parse_args(argv)

    # A command-line entry point: the one place that may use the global reactor.
    if args.tuned:
        from twisted.internet import epollreactor

        epollreactor.install()
    from twisted.internet import reactor
    from twisted.protocols.portforward import ProxyClientFactory, ProxyFactory

    # Quiet, like the other targets: the client factories of twisted.protocols.portforward
    # otherwise log two lines per connection ("Starting factory", "Stopping factory").
    ProxyClientFactory.noisy = False
    listen = reactor.listenTCP  # type: ignore[attr-defined]
    factoryClass = ProxyFactory
    if args.tuned:
        from linkerpy import net

        net.tuneReactor(reactor)
        net.tuneGarbageCollector(reactor)
        factoryClass = _tunedFactory(net, reactor)

        def listen(port: int, factory: object, backlog: int, interface: str) -> object:
            return net.listenTCP(reactor, port, factory, backlog=backlog, interface=interface)

    for port, target in args.route:
        factory = factoryClass("127.0.0.1", target)
        factory.noisy = False
        listen(port, factory, backlog=4096, interface="127.0.0.1")
        sys.stdout.write(f"portforward listening on 127.0.0.1:{port} -> 127.0.0.1:{target}\n")
    sys.stdout.flush()
    reactor.run()  # type: ignore[attr-defined]
    return 0


def _tunedFactory(net: object, reactor: object) -> type:
    """
    C{ProxyFactory} whose connections set C{TCP_NODELAY} and connect out
    through L{linkerpy.net.connectTCP} (eager, batched writes).
    """
    from twisted.protocols.portforward import ProxyFactory, ProxyServer

    class TunedServer(ProxyServer):
        def connectionMade(self) -> None:
            self.transport.setTcpNoDelay(True)
            self.transport.pauseProducing()
            client = self.clientProtocolFactory()
            client.setServer(self)
            net.connectTCP(reactor, self.factory.host, self.factory.port, client)  # type: ignore[attr-defined]

    class TunedFactory(ProxyFactory):
        protocol = TunedServer

    return TunedFactory


if __name__ == "__main__":
    sys.exit(main())
