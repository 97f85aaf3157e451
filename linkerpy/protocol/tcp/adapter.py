# -*- test-case-name: tests.test_tcp_router -*-
"""
What the TCP protocol plugs into the routing core.

One attempt (L{TcpProtocolAdapter.send}) connects to the endpoint the load
balancer picked (TCP, plus a TLS handshake when the client's policy says
C{tls}) within the connect timeout, then splices the accepted connection to
it.  The attempt's C{Deferred} fires when the spliced connection is over,
so the endpoint's load (C{pending}) is its number of open connections,
which is what C{p2c} balances on, and failure accrual judges the whole
connection: a connect or TLS failure is a failure; a connection that
carried bytes is a success (see L{SpliceResult.succeeded}).

A failed connect is reported as not written (nothing reached the origin),
so C{requeueBudget} re-sends the connection to another endpoint.

Per-endpoint settings (connect timeout, TLS connection creator) are built
once, in L{TcpProtocolAdapter.newPool}, not per connection.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.error import TimeoutError as TwistedTimeoutError
from twisted.internet.interfaces import IHalfCloseableProtocol, IHandshakeListener
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from linkerpy.errors import ConnectionFailed, RequestTimeout, RoutingError, TLSOriginationFailed
from linkerpy.net import setNoDelay
from linkerpy.policy.entries import FoldedPolicy
from linkerpy.protocol.tcp.config import DEFAULT_CONNECT_TIMEOUT_MS
from linkerpy.protocol.tcp.splice import SpliceResult
from linkerpy.router.routing import Client, PathRoute, ProtocolAdapter


class ServiceStats:
    """
    C{rt/<router>/service/<name>/} metrics of a TCP router.
    """

    def __init__(self, scope: Any) -> None:
        self.connects = scope.counter("connects")
        self.connections = scope.gauge("connections")
        self.success = scope.counter("success")
        self.failures = scope.counter("failures")
        self.sentBytes = scope.counter("sent_bytes")
        self.receivedBytes = scope.counter("received_bytes")


class ClientStats:
    """
    C{rt/<router>/client/<id>/} metrics of a TCP router.
    """

    def __init__(self, scope: Any) -> None:
        self.connects = scope.counter("connects")
        self.connectFailures = scope.counter("connect_failures")
        self.connections = scope.gauge("connections")
        self.sentBytes = scope.counter("sent_bytes")
        self.receivedBytes = scope.counter("received_bytes")
        self.connectLatency = scope.stat("connect_latency_ms")


class TcpConnector:
    """
    How to reach one endpoint: its address, connect timeout and TLS
    connection creator (or the reason TLS cannot be set up).
    """

    def __init__(
        self,
        host: str,
        port: int,
        connectTimeoutMs: Optional[int],
        creator: Any = None,
        tlsError: Optional[str] = None,
    ) -> None:
        self.host = host
        self.port = port
        self.connectTimeoutMs = connectTimeoutMs
        self.creator = creator
        self.tlsError = tlsError

    def close(self) -> None:
        """
        The endpoint left the replica set.  Connections already spliced
        keep going until they end.
        """


@implementer(IHalfCloseableProtocol, IHandshakeListener)
class OriginProtocol(Protocol):
    """
    The router's connection to an origin.
    """

    def __init__(self, attempt: "ConnectAttempt") -> None:
        self.attempt = attempt
        self.splice: Any = None
        self.readEnded = False

    def connectionMade(self) -> None:
        setNoDelay(self.transport)
        if self.attempt.creator is None:
            self.attempt.ready(self)

    def handshakeCompleted(self) -> None:
        self.attempt.ready(self)

    def dataReceived(self, data: bytes) -> None:
        splice = self.splice
        if splice is not None:
            splice.originData(data)

    def readConnectionLost(self) -> None:
        if self.readEnded:
            return
        self.readEnded = True
        if self.splice is not None:
            self.splice.originReadClosed()
        else:
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self.splice is not None:
            self.splice.originLost(reason)
        else:
            self.attempt.lost(reason)


class ConnectAttempt(ClientFactory):
    """
    One connection attempt to an endpoint, then the spliced connection.

    @ivar done: fires with the L{SpliceResult} when the spliced connection
        is over, or fails with a L{RoutingError} when the origin could not
        be reached.
    """

    noisy = False

    def __init__(self, adapter: "TcpProtocolAdapter", connector: TcpConnector, call: Any, client: Client) -> None:
        self.adapter = adapter
        self.clock = adapter.reactor
        self.connector = connector
        self.creator = connector.creator
        self.call = call
        self.client = client
        self.stats: ClientStats = call.clientStats or adapter.clientStatsFor(client)
        self.done: Deferred = Deferred(self._cancel)
        self.finished = False
        self.protocol: Optional[OriginProtocol] = None
        self.tcpConnector: Any = None
        self.timer: Any = None
        self.startedAt = 0.0
        ms = connector.connectTimeoutMs or call.connectTimeoutMs or DEFAULT_CONNECT_TIMEOUT_MS
        self.timeoutMs = ms

    def start(self) -> Deferred:
        if self.connector.tlsError is not None:
            self._fail(TLSOriginationFailed(f"TLS to {self.address} cannot be set up: {self.connector.tlsError}"))
            return self.done
        factory: Any = self
        if self.creator is not None:
            from linkerpy.tls.client import wrapClientFactory

            factory = wrapClientFactory(self, self.creator, self.clock)
        seconds = self.timeoutMs / 1000.0
        self.startedAt = self.clock.seconds()
        self.timer = self.clock.callLater(seconds, self._timedOut)
        from linkerpy.net import connectTCP

        # No timeout of Twisted's own: self.timer bounds the connect (and
        # the TLS handshake) and stops the connector.
        self.tcpConnector = connectTCP(self.adapter.reactor, self.connector.host, self.connector.port, factory, timeout=None)
        return self.done

    @property
    def address(self) -> str:
        return f"{self.connector.host}:{self.connector.port}"

    # ClientFactory

    def buildProtocol(self, addr: Any) -> OriginProtocol:
        self.protocol = OriginProtocol(self)
        return self.protocol

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.lost(reason)

    def clientConnectionLost(self, connector: Any, reason: Failure) -> None:
        pass

    # outcomes

    def ready(self, origin: OriginProtocol) -> None:
        """
        Connected (and TLS done): splice, or give up if the client left.
        """
        if self.finished:
            origin.transport.abortConnection()
            return
        self.finished = True
        self._stopTimer()
        stats = self.stats
        stats.connects.value += 1
        stats.connectLatency.add((self.clock.seconds() - self.startedAt) * 1000.0)
        splice = self.call.inbound.attach(origin, self.call, stats, self._ended)
        if splice is None:
            origin.transport.abortConnection()
            self.done.errback(Failure(CancelledError("the client left while connecting")))
            return
        origin.splice = splice
        stats.connections.add(1)

    def _ended(self, splice: Any, result: SpliceResult) -> None:
        self.stats.connections.add(-1)
        self.done.callback(result)

    def lost(self, reason: Failure) -> None:
        """
        The connection failed (or closed) before it was ready.
        """
        if self.finished:
            return
        error: RoutingError
        exc = reason.value
        explanation = None
        if self.creator is not None and self.protocol is not None:
            explainer = getattr(self.creator, "explainFailure", None)
            explanation = explainer(reason) if explainer is not None else None
        if explanation is not None:
            error = TLSOriginationFailed(f"TLS to {self.address} failed: {explanation.reason}")
        elif isinstance(exc, TwistedTimeoutError):
            error = self._timeoutError()
        else:
            cause = "connection refused" if isinstance(exc, ConnectionRefusedError) else (str(exc).strip() or type(exc).__name__)
            error = ConnectionFailed(
                self.address, self.call.serviceName, self.client.name, self.client.addresses(), cause=cause
            )
        self._fail(error)

    def _timeoutError(self) -> RoutingError:
        error = RequestTimeout("connect", self.timeoutMs, service=self.call.serviceName, client=self.client.name)
        error.retryable = True
        return error

    def _timedOut(self) -> None:
        self.timer = None
        if self.finished:
            return
        self._fail(self._timeoutError())
        self._abortConnect()

    def _fail(self, error: RoutingError) -> None:
        if self.finished:
            return
        self.finished = True
        self._stopTimer()
        self.stats.connectFailures.value += 1
        error.requestWritten = False  # type: ignore[attr-defined]
        error.responseStarted = False  # type: ignore[attr-defined]
        self.done.errback(Failure(error))

    def _abortConnect(self) -> None:
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.abortConnection()
        elif self.tcpConnector is not None:
            self.tcpConnector.stopConnecting()

    def _stopTimer(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    def _cancel(self, d: Deferred) -> None:
        """
        The client left (or the router gave up) before the origin was
        connected.
        """
        if self.finished:
            return
        self.finished = True
        self._stopTimer()
        self._abortConnect()


class TcpProtocolAdapter(ProtocolAdapter):
    """
    The TCP side of the routing core.
    """

    name = "tcp"

    def __init__(self, reactor: Any, tlsCreators: Any = None) -> None:
        self.reactor = reactor
        self.tlsCreators = tlsCreators

    def succeeded(self, call: Any, response: Any, failure: Any) -> bool:
        if failure is not None:
            # A client that left while its connection was being set up says
            # nothing bad about the endpoint.
            return failure.check(CancelledError) is not None
        if isinstance(response, SpliceResult):
            return response.succeeded
        return True

    # -- statistics ---------------------------------------------------------------

    def wrapServiceStats(self, call: Callable[[Any], Deferred], route: PathRoute) -> Callable[[Any], Deferred]:
        stats = ServiceStats(route.metrics)

        def counted(c: Any) -> Deferred:
            stats.connects.value += 1
            stats.connections.add(1)
            c.serviceStats = stats

            def done(result: Any) -> Any:
                stats.connections.add(-1)
                if isinstance(result, Failure):
                    if not result.check(CancelledError):
                        stats.failures.value += 1
                elif result.succeeded:
                    stats.success.value += 1
                else:
                    stats.failures.value += 1
                return result

            return call(c).addBoth(done)

        return counted

    def clientStatsFor(self, client: Client) -> ClientStats:
        stats = getattr(client, "tcpStats", None)
        if stats is None:
            stats = client.tcpStats = ClientStats(client.metrics)  # type: ignore[attr-defined]
        return stats

    def wrapClientStats(self, call: Callable[[Any], Deferred], client: Client) -> Callable[[Any], Deferred]:
        stats = self.clientStatsFor(client)

        def counted(c: Any) -> Deferred:
            c.clientStats = stats
            return call(c)

        return counted

    # -- sending ----------------------------------------------------------------------

    def newPool(self, endpoint: Any, policy: FoldedPolicy, client: Client) -> TcpConnector:
        connectMs = policy.get("connectTimeoutMs")
        creator = None
        tlsError = None
        tls = policy.get("tls")
        if tls is not None and tls.enabled and self.tlsCreators is not None:
            from linkerpy.config.errors import ConfigError
            from linkerpy.tls.errors import TLSOriginationError

            try:
                creator = self.tlsCreators.creatorFor(tls, policy.captures, (endpoint.host, endpoint.port))
            except TLSOriginationError as e:
                tlsError = e.reason
            except ConfigError as e:
                tlsError = e.render()
        return TcpConnector(endpoint.host, endpoint.port, connectMs, creator, tlsError)

    def poolSettingsChanged(self, before: FoldedPolicy, after: FoldedPolicy) -> bool:
        keys = ("connectTimeoutMs", "tls")
        return any(before.values.get(k) != after.values.get(k) for k in keys) or before.captures != after.captures

    def send(self, endpoint: Any, call: Any, client: Client) -> Deferred:
        call.attempts += 1
        return ConnectAttempt(self, endpoint.pool, call, client).start()


__all__ = ["TcpProtocolAdapter", "TcpConnector", "ConnectAttempt", "OriginProtocol", "ServiceStats", "ClientStats"]
