"""
Tests for the io.l5d.dnssrv namer against a real loopback DNS server (UDP and TCP).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List

from twisted.internet import reactor as globalReactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.names import dns
from twisted.names.client import Resolver
from twisted.names.authority import FileAuthority
from twisted.names.server import DNSServerFactory
from twisted.trial.unittest import TestCase

from linkerpy.naming import AddrBound, AddrFailed, Address, Dtab, Neg, Ok, Path
from linkerpy.naming.dnssrv import DnsSrvNamer
from linkerpy.naming.interpreter import ConfiguredNamersInterpreter

PREFIX = Path.read("/#/io.l5d.dnssrv")


class MemoryAuthority(FileAuthority):
    """
    An in-memory authority for C{svc.test}: C{records[name]} lists records.
    """

    def __init__(self) -> None:
        FileAuthority.__init__(self, "")
        self.soa = (b"svc.test", dns.Record_SOA(mname=b"ns.svc.test", rname=b"root.svc.test", serial=1,
                                                refresh=1, retry=1, expire=1, minimum=0, ttl=0))
        self.records: Dict[bytes, List[Any]] = {b"svc.test": [self.soa[1]]}

    def loadFile(self, filename: Any) -> None:
        pass


def _poll(condition: Callable[[], bool], timeout: float = 30.0) -> Deferred:
    deadline = time.monotonic() + timeout

    def check() -> Any:
        if condition():
            return None
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        return deferLater(globalReactor, 0.05, check)

    return deferLater(globalReactor, 0, check)


class DnsSrvTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.authority = MemoryAuthority()
        factory = DNSServerFactory(authorities=[self.authority])
        protocol = dns.DNSDatagramProtocol(factory)
        self.udp = globalReactor.listenUDP(0, protocol, interface="127.0.0.1")
        self.addCleanup(self.udp.stopListening)
        port = self.udp.getHost().port
        try:
            self.tcp = globalReactor.listenTCP(port, factory, interface="127.0.0.1")
        except Exception:
            self.tcp = None
        else:
            self.addCleanup(self.tcp.stopListening)
        self.port = port

    def resolver(self) -> Resolver:
        return Resolver(servers=[("127.0.0.1", self.port)], reactor=globalReactor)

    def srv(self, name: str, *targets: Any) -> None:
        self.authority.records[name.encode()] = [
            dns.Record_SRV(priority=prio, weight=weight, port=port, target=target.encode(), ttl=0)
            for prio, weight, port, target in targets
        ]

    def a(self, name: str, *ips: str) -> None:
        self.authority.records[name.encode()] = [dns.Record_A(ip, ttl=0) for ip in ips]

    async def test_bindsAndRefreshes(self) -> None:
        """An SRV name binds to its targets with SRV weights (lowest priority only) and follows changes."""
        self.srv("_http._tcp.svc.test", (10, 5, 8080, "a.svc.test"), (10, 1, 8081, "b.svc.test"),
                 (20, 9, 9999, "backup.svc.test"))
        self.a("a.svc.test", "127.0.0.11")
        self.a("b.svc.test", "127.0.0.12")
        self.a("backup.svc.test", "127.0.0.13")
        namer = DnsSrvNamer(globalReactor, PREFIX, self.resolver(), refresh=0.2)
        interp = ConfiguredNamersInterpreter(globalReactor, [(PREFIX, namer)])
        trees: List[Any] = []
        c = interp.bind(Dtab.read("/svc=>/#/io.l5d.dnssrv"), Path.read("/svc/_http._tcp.svc.test/x")).observe(
            trees.append
        )
        self.addCleanup(c.close)
        await _poll(lambda: bool(trees) and isinstance(trees[-1], Ok))
        bound = trees[-1].value.value
        self.assertEqual((bound.id.show, bound.residual.show), ("/#/io.l5d.dnssrv/_http._tcp.svc.test", "/x"))
        addrs: List[Any] = []
        c2 = bound.addr.observe(addrs.append)
        self.addCleanup(c2.close)
        stable: List[Any] = []
        c3 = bound.stableAddr.observe(stable.append)
        self.addCleanup(c3.close)
        expected = AddrBound([Address("127.0.0.11", 8080, 5.0), Address("127.0.0.12", 8081, 1.0)])
        await _poll(lambda: addrs[-1] == expected)
        self.srv("_http._tcp.svc.test", (10, 0, 8080, "a.svc.test"))
        await _poll(lambda: addrs[-1] == AddrBound([Address("127.0.0.11", 8080, 1.0)]))
        del self.authority.records[b"_http._tcp.svc.test"]
        await _poll(lambda: isinstance(addrs[-1], AddrFailed))
        self.assertEqual(stable[-1], AddrBound([Address("127.0.0.11", 8080, 1.0)]))
        self.assertIsInstance(trees[-1], Ok)
        for closable in (c, c2, c3):
            closable.close()

    async def test_unknownNameIsNeg(self) -> None:
        """An SRV name that does not exist binds to Neg."""
        namer = DnsSrvNamer(globalReactor, PREFIX, self.resolver(), refresh=60)
        act = namer.lookup(Path.read("/_none._tcp.svc.test"))
        tree = await act.toDeferred()
        self.assertIs(tree, Neg)

    async def test_tcpServer(self) -> None:
        """The test server also answers over TCP (as used for truncated answers)."""
        if self.tcp is None:
            self.skipTest("TCP port taken")
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
        from twisted.names.dns import DNSProtocol

        self.srv("_x._tcp.svc.test", (1, 1, 1, "a.svc.test"))
        class Controller:
            def connectionMade(self, protocol: Any) -> None:
                pass

            def connectionLost(self, protocol: Any) -> None:
                pass

            def messageReceived(self, *a: Any) -> None:
                pass

        proto = DNSProtocol(Controller())
        await connectProtocol(TCP4ClientEndpoint(globalReactor, "127.0.0.1", self.port), proto)
        self.addCleanup(proto.transport.loseConnection)
        message = await proto.query([dns.Query(b"_x._tcp.svc.test", dns.SRV)])
        self.assertEqual([a.payload.port for a in message.answers], [1])
