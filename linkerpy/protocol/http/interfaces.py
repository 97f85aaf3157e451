# -*- test-case-name: tests.test_http_server -*-
"""
The contracts of the HTTP/1.1 data plane: body streaming, the request
handler the router implements, the exchange it is handed, and raw tunnels.

Body streaming is the same in both directions:

  - an L{IBodySource} produces a body (a request body read from a
    downstream client, a response body read from an origin, or bytes made
    locally).  It delivers to one L{IBodyConsumer} once C{attach}ed, and
    is an C{IPushProducer}: C{pause}/C{resume} stop and restart reading
    from the underlying connection.

  - an L{IBodySink} writes a body to a connection.  It I{is} a consumer
    (C{dataReceived}/C{bodyEnd}/C{bodyAborted} are C{write}/C{end}/C{abort}),
    so piping is C{sink.streamFrom(source)}: the sink registers the source as
    the producer of its transport, and a slow reader on the far side pauses
    the near side.  No Deferred is created per chunk and nothing buffers a
    whole body.

Typical proxying in a handler::

    def handleRequest(self, exchange):
        d = pool.request(exchange.request, exchange.body)
        def gotResponse(response):
            exchange.respond(response.head).streamFrom(response.body)
        d.addCallbacks(gotResponse, lambda f: exchange.respondError(502, b"..."))
"""

from __future__ import annotations

from zope.interface import Attribute, Interface
from twisted.internet.interfaces import IPushProducer

__all__ = [
    "IBodySource",
    "IBodyConsumer",
    "IBodySink",
    "IHTTPHandler",
    "IServerExchange",
    "ITunnelEnd",
]


class IBodyConsumer(Interface):
    """
    Receives a body, chunk by chunk.
    """

    def dataReceived(data):
        """
        Some body bytes (never empty).
        """

    def bodyEnd(trailers):
        """
        The body ended normally.

        @param trailers: a L{linkerpy.protocol.http.headers.Headers} of
            trailer fields (chunked bodies only), or C{None}.
        """

    def bodyAborted(reason):
        """
        The body ended abnormally; no more calls follow.

        @param reason: a C{Failure}, usually wrapping an
            L{linkerpy.protocol.http.errors.BodyAborted} or an
            L{linkerpy.protocol.http.errors.UpstreamError}.
        """


class IBodySource(IPushProducer):
    """
    Produces a body to one consumer.  The C{IPushProducer} methods
    (C{pauseProducing}, C{resumeProducing}, C{stopProducing}) are the same as
    C{pause}, C{resume} and C{abort}, so a source can be registered directly
    as a transport's producer.
    """

    length = Attribute(
        "C{int} or C{None}: the total body length when known in advance "
        "(Content-Length), else C{None}."
    )
    finished = Attribute(
        "C{bool}: the complete body has already been received and is "
        "buffered; C{attach} will deliver it all and end synchronously."
    )

    def attach(consumer):
        """
        Start delivering to C{consumer} (an L{IBodyConsumer}).  Data already
        buffered is delivered synchronously.  May be called once.
        """

    def pause():
        """
        Stop delivering for now (the consumer is slow).  Reading from the
        underlying connection stops.
        """

    def resume():
        """
        Undo a L{pause}.
        """

    def abort(reason=None):
        """
        The consumer no longer wants the body: stop reading it, and close the
        underlying connection if the body cannot be drained cheaply.  No more
        consumer calls follow.
        """


class IBodySink(IBodyConsumer):
    """
    Writes a body to a connection.  The consumer methods are aliases:
    C{dataReceived} is C{write}, C{bodyEnd} is C{end} and C{bodyAborted}
    is C{abort}.
    """

    def write(data):
        """
        Write some body bytes (framing is applied by the sink).
        """

    def end(trailers=None):
        """
        Finish the body.  Trailers are written only when the body is chunked
        on the wire; otherwise they are dropped.
        """

    def abort(reason=None):
        """
        Give up: the peer sees a truncated message (a chunked body never
        gets its last chunk, a Content-Length body is cut short) and the
        connection is closed.
        """

    def streamFrom(source):
        """
        Pipe an L{IBodySource} into this sink with back-pressure: register
        C{source} as the producer of the transport and attach this sink to
        it.  When the source is already L{finished<IBodySource.finished>} no
        producer is registered.
        """


class ITunnelEnd(IPushProducer):
    """
    One side of a raw byte tunnel (after C{101 Switching Protocols} or a
    C{CONNECT}).  Created by the server connection (downstream end) and by
    the client connection (upstream end); L{linkerpy.protocol.http.tunnel.splice}
    joins two of them.
    """

    def setPeer(peer):
        """
        Deliver what this end reads to C{peer} (another L{ITunnelEnd}) and
        start reading.  Bytes already read are delivered at once.
        """

    def write(data):
        """
        Send bytes out of this end.
        """

    def loseWriteConnection():
        """
        The peer finished sending: half-close this end's write side.
        """

    def loseConnection():
        """
        Close this end completely.
        """


class IServerExchange(Interface):
    """
    One request received by the server, and the way to answer it.

    Callbacks set by the handler (plain attributes, so setting them costs
    nothing):

      - C{abortHandler}: C{callable(failure)} called if the downstream
        connection is lost (or the exchange is aborted) before the response
        completed;
      - C{completionHandler}: C{callable(exchange, ok)} called once when the
        exchange is over: C{ok} is C{True} if the complete response was
        handed to the transport.
    """

    request = Attribute("The L{linkerpy.protocol.http.message.RequestHead}.")
    body = Attribute("The request body, an L{IBodySource} (empty if none).")
    peer = Attribute("The client's C{IAddress}.")
    host = Attribute("The local C{IAddress} the request arrived on.")
    isSecure = Attribute("C{bool}: the connection is TLS.")
    startedAt = Attribute("C{float}: the clock time when the head was parsed.")
    connectionData = Attribute(
        "C{dict} living as long as the downstream connection, shared by its "
        "requests, for per-connection values the handler computes once."
    )
    responseStarted = Attribute("C{bool}: a response head was committed.")
    abortHandler = Attribute("See above.")
    completionHandler = Attribute("See above.")

    def peerCertificate():
        """
        @return: the client's C{OpenSSL.crypto.X509} certificate on a TLS
            connection with client authentication, else C{None}.
        """

    def respond(head):
        """
        Start the response.

        @param head: a L{linkerpy.protocol.http.message.ResponseHead}.  Its
            C{contentLength}/C{chunked} say how the body will be framed; the
            sink adapts to the client (chunked for HTTP/1.1 when the length
            is unknown, close-delimited for HTTP/1.0, nothing for HEAD, 204,
            304).  Hop-by-hop fields in C{head.headers} are removed.
        @return: an L{IBodySink} for the response body.
        """

    def respondBytes(head, body):
        """
        Send a complete response whose body is C{body} (C{bytes});
        C{Content-Length} is set from it.
        """

    def respondError(status, message, headers=None):
        """
        Send a locally generated error quickly: a C{text/plain} body
        C{message} (C{bytes}), optional extra C{headers} (a C{Headers} or
        C{(name, value)} pairs).  If a response has already started, the
        exchange is aborted instead (the client sees a truncated response).
        """

    def upgrade(head, tunnel):
        """
        Answer with C{head} (C{101 Switching Protocols}, or 2xx to a
        C{CONNECT}) and turn the connection into a raw byte tunnel to
        C{tunnel} (the upstream L{ITunnelEnd}), both ways, with back-pressure
        and half-close propagation.
        """

    def abort():
        """
        Abandon the exchange: if a response started it is truncated, and the
        connection is closed.
        """


class IHTTPHandler(Interface):
    """
    What the server hands requests to (the router; or the passthrough demo).
    """

    def handleRequest(exchange):
        """
        Called synchronously, once per request, when its head has been parsed
        and validated.  Must not block; answers by calling one of the
        exchange's C{respond*} methods now or later.  Exceptions raised here
        are answered with a 500 (or an abort if the response already
        started).

        @param exchange: an L{IServerExchange}.
        """
