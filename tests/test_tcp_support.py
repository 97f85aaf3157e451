"""
Helpers (no tests) for the TCP router tests: building a router from a raw config
entry, origins (echo, TLS, scripted), and clients on the real reactor.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Dict, List, Optional, Sequence

from twisted.internet import defer, protocol, reactor
from twisted.internet.interfaces import IHalfCloseableProtocol, IHandshakeListener, IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer


def buildTcpRouter(raw: Dict[str, Any], clock: Any, namers: Sequence[Any] = ()) -> Any:
    """
    Structure one C{routers[]} entry (C{protocol: tcp} by default) and build
    the router (not started).  C{router.rootMetrics} is its metrics tree.
    """
    from linkerpy.config.structure import structurePlugin
    from linkerpy.interfaces import IProtocolPlugin
    from linkerpy.plugins.context import BuildContext
    from linkerpy.plugins.registry import defaultRegistry
    from linkerpy.telemetry.metrics import MetricsTree

    raw = dict(raw)
    raw.setdefault("protocol", "tcp")
    registry = defaultRegistry()
    configured = structurePlugin(IProtocolPlugin, raw, registry, path="routers[0]", kindKey="protocol")
    label = configured.config.label or configured.kind
    metrics = MetricsTree()
    context = BuildContext(reactor=clock, metrics=metrics, registry=registry).child("routers[0]", "rt", label)
    router = configured.plugin.newRouter(configured.config, context, list(namers))
    router.rootMetrics = metrics
    return router


def startTcpRouter(case: Any, raw: Dict[str, Any], namers: Sequence[Any] = ()) -> Any:
    """
    Build and start a TCP router on the real reactor for test C{case}
    (stopped at cleanup); C{router.ports} are its servers' ports.
    """
    router = buildTcpRouter(raw, reactor, namers)
    service = router.service()
    service.startService()
    case.addCleanup(service.stopService)
    router.ports = [p.getHost().port for p in service.ports]
    return router


def metric(router: Any, name: str) -> Any:
    return router.rootMetrics.flatten().get(name)


def metricsMatching(router: Any, *parts: str) -> Dict[str, Any]:
    return {k: v for k, v in router.rootMetrics.flatten().items() if all(p in k for p in parts)}


# -- origins -------------------------------------------------------------------------


class Tracker(protocol.Factory):
    """
    A server factory that remembers its connections (for cleanup and
    inspection).
    """

    noisy = False

    def __init__(self, make: Callable[[], protocol.Protocol]) -> None:
        self.make = make
        self.connections: List[Any] = []

    def buildProtocol(self, addr: Any) -> protocol.Protocol:
        p = self.make()
        p.factory = self
        self.connections.append(p)
        return p


class EchoOrigin(protocol.Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


@implementer(IHalfCloseableProtocol)
class HashingEcho(protocol.Protocol):
    """
    Echoes, hashing what it receives; ends its write side after the
    client's, so the client sees every byte then a clean end.
    """

    def connectionMade(self) -> None:
        self.digest = hashlib.sha256()
        self.count = 0
        self.eof = False
        self.lost: Optional[Failure] = None

    def dataReceived(self, data: bytes) -> None:
        self.digest.update(data)
        self.count += len(data)
        self.transport.write(data)

    def readConnectionLost(self) -> None:
        self.eof = True
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        self.lost = reason


@implementer(IHalfCloseableProtocol)
class AnswerAtEOF(protocol.Protocol):
    """
    Reads until the client half-closes, then answers what it read, reversed,
    and closes.
    """

    def connectionMade(self) -> None:
        self.received = b""
        self.eofSeen = False

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def readConnectionLost(self) -> None:
        self.eofSeen = True
        self.transport.write(self.received[::-1])
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass


@implementer(IHalfCloseableProtocol)
class GreetAndHalfClose(protocol.Protocol):
    """
    Sends a greeting, half-closes its write side at once, then keeps
    reading until the client ends.
    """

    def connectionMade(self) -> None:
        self.received = b""
        self.eofSeen = False
        self.transport.write(b"greeting")
        self.transport.loseWriteConnection()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def readConnectionLost(self) -> None:
        self.eofSeen = True
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass


@implementer(IPushProducer)
class Firehose(protocol.Protocol):
    """
    Writes C{total} bytes as fast as flow control allows (a push producer
    on its own transport), then closes.
    """

    total = 64 * 1024 * 1024
    chunk = b"\xab" * 65536

    def connectionMade(self) -> None:
        self.sent = 0
        self.paused = False
        self.pauses = 0
        self.transport.registerProducer(self, True)
        self._write()

    def _write(self) -> None:
        while not self.paused and self.sent < self.total:
            data = self.chunk[: self.total - self.sent]
            self.sent += len(data)
            self.transport.write(data)
        if self.sent >= self.total and not self.paused:
            self.transport.unregisterProducer()
            self.transport.loseConnection()

    def pauseProducing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resumeProducing(self) -> None:
        if self.paused:
            self.paused = False
            reactor.callLater(0, self._write)

    def stopProducing(self) -> None:
        self.paused = True


def listen(case: Any, make: Callable[[], protocol.Protocol], tls: Any = None) -> Tracker:
    """
    Listen on 127.0.0.1 (an ephemeral port) with C{make}; with C{tls} (a
    L{linkerpy.tls.server.ServerTLS}) speak TLS.  C{factory.port} is the port.
    """
    factory = Tracker(make)
    wrapped: Any = factory
    if tls is not None:
        from linkerpy.tls.server import wrapServerFactory

        wrapped = wrapServerFactory(factory, tls)
    port = reactor.listenTCP(0, wrapped, interface="127.0.0.1")
    case.addCleanup(port.stopListening)
    case.addCleanup(lambda: [c.transport.abortConnection() for c in factory.connections if _open(c.transport)])
    factory.port = port.getHost().port  # type: ignore[attr-defined]
    return factory


def _open(transport: Any) -> bool:
    return transport is not None and bool(getattr(transport, "connected", False))


def closedPort() -> int:
    """
    A port nothing listens on (bound then released).
    """
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# -- clients -------------------------------------------------------------------------


@implementer(IHalfCloseableProtocol, IHandshakeListener)
class Client(protocol.Protocol):
    """
    A client that records what it receives and how the connection ended.

    @ivar done: fires with itself when the connection is lost.
    """

    def __init__(self, send: bytes = b"", halfClose: bool = False) -> None:
        self.send = send
        self.halfClose = halfClose
        self.received = b""
        self.readEnded = False
        self.lost: Optional[Failure] = None
        self.handshakeDone = False
        self.done: defer.Deferred = defer.Deferred()

    def connectionMade(self) -> None:
        if self.send:
            self.transport.write(self.send)
        if self.halfClose:
            self.transport.loseWriteConnection()

    def handshakeCompleted(self) -> None:
        self.handshakeDone = True

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def readConnectionLost(self) -> None:
        self.readEnded = True
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        self.lost = reason
        self.done.callback(self)


class SlowReader(Client):
    """
    A client that reads nothing until its transport is resumed, then counts
    what it receives.
    """

    def connectionMade(self) -> None:
        self.count = 0
        self.transport.pauseProducing()

    def dataReceived(self, data: bytes) -> None:
        self.count += len(data)


class _OneClient(protocol.ClientFactory):
    noisy = False

    def __init__(self, client: protocol.Protocol, connected: defer.Deferred) -> None:
        self.client = client
        self.connected = connected

    def buildProtocol(self, addr: Any) -> protocol.Protocol:
        self.client.factory = self
        return _Notify(self.client, self.connected)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        if not self.connected.called:
            self.connected.errback(reason)


def _Notify(client: Any, connected: defer.Deferred) -> Any:
    original = client.connectionMade

    def connectionMade() -> None:
        original()
        if not connected.called:
            connected.callback(client)

    client.connectionMade = connectionMade
    return client


def connect(case: Any, port: int, client: protocol.Protocol, tls: Any = None) -> defer.Deferred:
    """
    Connect C{client} to 127.0.0.1:C{port} (over TLS with the client
    connection creator C{tls}); fires with the client once connected.

    (Not with C{twisted.internet.endpoints}: its wrapping protocol provides
    only the last of C{IHalfCloseableProtocol} and C{IHandshakeListener}
    when the wrapped protocol provides both, which would hide half-closes.)
    """
    connected: defer.Deferred = defer.Deferred()
    factory: Any = _OneClient(client, connected)
    if tls is not None:
        from twisted.protocols.tls import TLSMemoryBIOFactory

        factory = TLSMemoryBIOFactory(tls, True, factory)
    reactor.connectTCP("127.0.0.1", port, factory, timeout=30)

    def done(p: Any) -> Any:
        case.addCleanup(lambda: p.transport.abortConnection() if p.lost is None and _open(p.transport) else None)
        return p

    return connected.addCallback(done)


def tempdir(case: Any) -> str:
    import shutil
    import tempfile

    directory = tempfile.mkdtemp(prefix="linkerpy-tcp-")
    case.addCleanup(shutil.rmtree, directory, True)
    return directory


def randomBlock(size: int = 1 << 20, seed: int = 7) -> bytes:
    """
    A deterministic block of pseudo-random bytes.
    """
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(b"%d:%d" % (seed, counter)).digest()
        counter += 1
    return bytes(out[:size])


