# -*- test-case-name: tests.test_tls_sockets -*-
"""
Real-socket tests of the TLS layer on 127.0.0.1 with real clients and
servers: C{openssl s_client} and C{curl} against L{ServerTLS}, and
L{ClientTLSCreators} against C{openssl s_server}.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from cryptography import x509
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase

from linkerpy.tls import errors
from linkerpy.tls.client import ClientTLSCreators
from linkerpy.tls.config import ClientAuthConfig, ClientTlsConfig, ServerTlsConfig, SniCertificate
from linkerpy.tls.server import ServerTLS, wrapServerFactory
from linkerpy.tls.testing import (
    CertFiles,
    Echo,
    ProbeClient,
    Recorder,
    altNamesOf,
    newCA,
    writeBytes,
    writeCA,
    writeLeaf,
)

#: Generous: the machine is small and shared.
WAIT = 60.0

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def _need(program: str) -> None:
    if shutil.which(program) is None:
        raise SkipTest(f"{program} is not installed")


class _Process(ProcessProtocol):
    """
    Collects a child's output; optionally writes to its stdin and closes it
    once the output satisfies a condition.
    """

    def __init__(self, stdin: bytes, closeWhen: Optional[Callable[[bytes], bool]]) -> None:
        self.stdin = stdin
        self.closeWhen = closeWhen
        self.out = b""
        self.err = b""
        self.ended: defer.Deferred = defer.Deferred()
        self.stdinClosed = False

    def connectionMade(self) -> None:
        if self.stdin:
            self.transport.write(self.stdin)
        if self.closeWhen is None:
            self._closeStdin()

    def _closeStdin(self) -> None:
        if not self.stdinClosed:
            self.stdinClosed = True
            self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        self.out += data
        if self.closeWhen is not None and self.closeWhen(self.out):
            self._closeStdin()

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        code = 0 if reason.check(ProcessDone) else getattr(reason.value, "exitCode", None)
        if code is None and reason.check(ProcessTerminated):
            code = -1
        self.ended.callback(code)


def runProcess(
    argv: Sequence[str], stdin: bytes = b"", closeWhen: Optional[Callable[[bytes], bool]] = None
) -> defer.Deferred:
    """
    Run a program; fire with C{(exitCode, stdout, stderr)}.  It is killed
    after L{WAIT} seconds (the Deferred then fails).
    """
    proto = _Process(stdin, closeWhen)
    transport = reactor.spawnProcess(proto, argv[0], list(argv), env=dict(os.environ))
    timedOut: List[bool] = []

    def kill() -> None:
        timedOut.append(True)
        try:
            transport.signalProcess("KILL")
        except Exception:
            pass

    timer = reactor.callLater(WAIT, kill)

    def done(code: Any) -> Any:
        if timer.active():
            timer.cancel()
        if timedOut:
            raise AssertionError(f"{argv[0]} did not finish in {WAIT}s; output: {proto.out!r} {proto.err!r}")
        return code, proto.out, proto.err

    return proto.ended.addCallback(done)


def firstCertificate(output: bytes) -> x509.Certificate:
    match = _PEM.search(output)
    if match is None:
        raise AssertionError(f"no certificate in output: {output[-2000:]!r}")
    return x509.load_pem_x509_certificate(match.group(0))


class _TinyHTTP(Recorder):
    """
    Answers any request with a fixed HTTP/1.1 response and closes.
    """

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        if b"\r\n\r\n" in self.received:
            body = b"hello from linkerpy tls\n"
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                + b"Content-Length: %d\r\n\r\n" % len(body)
                + body
            )
            self.transport.loseConnection()


class _Tracking(Factory):
    """
    Builds protocols of a class and remembers them (to close at the end).
    """

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.built: List[Protocol] = []

    def buildProtocol(self, addr: Any) -> Protocol:
        proto = self.cls()
        proto.factory = self
        self.built.append(proto)
        return proto


class _Base(TestCase):
    timeout = 240

    def setUp(self) -> None:
        _need("openssl")
        self.dir = tempfile.mkdtemp(prefix="linkerpy-tls-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.ca = newCA()
        self.caPath = writeCA(self.ca, os.path.join(self.dir, "ca.pem"))
        self.default = self.leaf("default", "default.example.com")
        self.clientCert = self.leaf("client", "client.example.com")

    def leaf(self, stem: str, *names: str, ca: Any = None, **kw: Any) -> CertFiles:
        return writeLeaf(self.dir, stem, ca or self.ca, *names, **kw)

    def listen(self, config: ServerTlsConfig, protocol: type = Echo, alpn: Any = None) -> Tuple[int, ServerTLS, Any]:
        tls = ServerTLS(config, reactor, "servers[0].tls", alpn=alpn)
        tls.startService()
        self.addCleanup(tls.stopService)
        factory = _Tracking(protocol)
        port = reactor.listenTCP(0, wrapServerFactory(factory, tls), interface="127.0.0.1")
        self.addCleanup(self._closeAll, port, factory)
        return port.getHost().port, tls, factory

    @defer.inlineCallbacks
    def _closeAll(self, port: Any, factory: _Tracking) -> Any:
        yield port.stopListening()
        for proto in factory.built:
            if proto.transport is not None and not getattr(proto, "lostReason", None):
                proto.transport.abortConnection()
        yield waitFor(lambda: all(getattr(p, "lostReason", None) is not None for p in factory.built), "server side closed")

    def sClient(self, port: int, *args: str, stdin: bytes = b"", closeWhen: Any = None) -> defer.Deferred:
        return runProcess(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-showcerts", *args],
            stdin=stdin,
            closeWhen=closeWhen,
        )


@defer.inlineCallbacks
def waitFor(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> Any:
    """
    Poll C{condition} every 20 ms until it holds, failing after C{timeout}.
    """
    deadline = reactor.seconds() + timeout
    while not condition():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        yield deferLater(reactor, 0.02, lambda: None)


class OpenSSLClientTests(_Base):
    """
    C{openssl s_client} against L{ServerTLS}.
    """

    @defer.inlineCallbacks
    def test_sni(self) -> None:
        """
        Each server name gets its certificate, wildcards match one label, and
        other names or no name get the default.
        """
        a = self.leaf("a", "a.example.com")
        wild = self.leaf("wild", "*.wild.example.com")
        port, _, _ = self.listen(
            ServerTlsConfig(
                certPath=self.default.cert,
                keyPath=self.default.key,
                sni=(
                    SniCertificate(("a.example.com",), a.cert, a.key),
                    SniCertificate(("*.wild.example.com",), wild.cert, wild.key),
                ),
            )
        )
        cases = [
            (["-servername", "a.example.com"], ["a.example.com"]),
            (["-servername", "x.wild.example.com"], ["*.wild.example.com"]),
            (["-servername", "x.y.wild.example.com"], ["default.example.com"]),
            (["-servername", "unknown.example.org"], ["default.example.com"]),
            (["-noservername"], ["default.example.com"]),
        ]
        for args, expected in cases:
            code, out, err = yield self.sClient(port, *args)
            self.assertEqual(code, 0, (args, err))
            self.assertEqual(altNamesOf(firstCertificate(out)), expected, args)

    @defer.inlineCallbacks
    def test_legacyProtocolsRefused(self) -> None:
        """
        TLS 1.0 and 1.1 clients are refused by default; TLS 1.2 and 1.3 are
        served.
        """
        port, _, _ = self.listen(ServerTlsConfig(certPath=self.default.cert, keyPath=self.default.key))
        for flag in ("-tls1", "-tls1_1"):
            code, out, err = yield self.sClient(port, flag, "-cipher", "DEFAULT@SECLEVEL=0")
            self.assertNotEqual(code, 0, flag)
            self.assertIsNone(_PEM.search(out), flag)
            self.assertIn(b"protocol version", out + err, flag)
        for flag, name in (("-tls1_2", b"TLSv1.2"), ("-tls1_3", b"TLSv1.3")):
            code, out, err = yield self.sClient(port, flag)
            self.assertEqual(code, 0, (flag, err))
            self.assertIn(b"New, " + name + b", Cipher is", out)

    @defer.inlineCallbacks
    def test_clientCertificateRequired(self) -> None:
        """
        With C{requireClientAuth}, a client without a certificate or with one
        from another CA is refused; a certificate from C{caCertPath} gets
        through to the application.
        """
        port, _, factory = self.listen(
            ServerTlsConfig(
                certPath=self.default.cert, keyPath=self.default.key, caCertPath=self.caPath, requireClientAuth=True
            )
        )
        code, out, err = yield self.sClient(port, "-tls1_3", stdin=b"ping-linkerpy\n", closeWhen=lambda o: False)
        self.assertNotEqual(code, 0)
        self.assertIn(b"certificate required", out + err)
        code, out, err = yield self.sClient(port, "-tls1_2")
        self.assertNotEqual(code, 0)
        self.assertIn(b"handshake failure", out + err)
        stranger = self.leaf("stranger", "client.example.com", ca=newCA())
        code, out, err = yield self.sClient(
            port, "-cert", stranger.cert, "-key", stranger.key, stdin=b"ping-linkerpy\n", closeWhen=lambda o: False
        )
        self.assertNotEqual(code, 0)
        self.assertIn(b"unknown ca", out + err)
        self.assertEqual([p.received for p in factory.built], [b"", b"", b""])
        code, out, err = yield self.sClient(
            port,
            "-cert",
            self.clientCert.cert,
            "-key",
            self.clientCert.key,
            stdin=b"ping-linkerpy\n",
            closeWhen=lambda o: b"ping-linkerpy" in o,
        )
        self.assertEqual(code, 0, err)
        self.assertIn(b"ping-linkerpy", out)
        self.assertEqual(factory.built[-1].received, b"ping-linkerpy\n")


class CurlTests(_Base):
    """
    C{curl} against L{ServerTLS}.
    """

    def setUp(self) -> None:
        _need("curl")
        super().setUp()

    @defer.inlineCallbacks
    def test_https(self) -> None:
        """
        curl verifies the certificate with C{--cacert} and gets the response.
        """
        web = self.leaf("web", "web.example.com")
        port, _, _ = self.listen(ServerTlsConfig(certPath=web.cert, keyPath=web.key), _TinyHTTP, alpn=[b"http/1.1"])
        code, out, err = yield runProcess(
            [
                "curl",
                "-sS",
                "--max-time",
                "30",
                "--cacert",
                self.caPath,
                "--resolve",
                f"web.example.com:{port}:127.0.0.1",
                f"https://web.example.com:{port}/",
            ]
        )
        self.assertEqual(code, 0, err)
        self.assertEqual(out, b"hello from linkerpy tls\n")

    @defer.inlineCallbacks
    def test_oldProtocolRefused(self) -> None:
        """
        curl limited to TLS 1.1 cannot connect.
        """
        port, _, factory = self.listen(
            ServerTlsConfig(certPath=self.default.cert, keyPath=self.default.key), _TinyHTTP
        )
        code, out, err = yield runProcess(
            [
                "curl",
                "-sS",
                "--max-time",
                "30",
                "--insecure",
                "--tlsv1.1",
                "--tls-max",
                "1.1",
                "--ciphers",
                "DEFAULT@SECLEVEL=0",
                f"https://127.0.0.1:{port}/",
            ]
        )
        self.assertEqual(code, 35, err)
        self.assertEqual(out, b"")


class ReloadTests(_Base):
    """
    Certificates swapped on disk while connections are open.
    """

    @defer.inlineCallbacks
    def test_reloadKeepsLongLivedConnection(self) -> None:
        """
        A connection opened before the certificate files are swapped keeps
        echoing; new connections (Twisted and openssl) get the new
        certificate.
        """
        served = self.leaf("served", "old.example.com")
        port, tls, factory = self.listen(
            ServerTlsConfig(certPath=served.cert, keyPath=served.key, reloadIntervalMs=100)
        )
        old = yield self.connect(port)
        self.addCleanup(self.disconnect, old)
        old.transport.write(b"one")
        yield waitFor(lambda: old.received == b"one", "echo before the swap")

        new = self.leaf("new", "new.example.com")
        for src, dst in ((new.key, served.key), (new.cert, served.cert)):
            with open(src, "rb") as f:
                writeBytes(dst, f.read())

        seen: List[List[str]] = []

        @defer.inlineCallbacks
        def newConnectionSeesNew() -> Any:
            probe = yield self.connect(port)
            names = altNamesOf(probe.transport.getPeerCertificate())
            yield self.disconnect(probe)
            seen.append(names)
            return names == ["new.example.com"]

        deadline = reactor.seconds() + WAIT
        while not (yield newConnectionSeesNew()):
            self.assertLess(reactor.seconds(), deadline, f"no new certificate after {WAIT}s: {seen}")
            yield deferLater(reactor, 0.05, lambda: None)

        code, out, err = yield self.sClient(port, "-servername", "anything.example.com")
        self.assertEqual(code, 0, err)
        self.assertEqual(altNamesOf(firstCertificate(out)), ["new.example.com"])

        old.transport.write(b"two")
        yield waitFor(lambda: old.received == b"onetwo", "echo after the swap")
        self.assertIsNone(old.lostReason)
        self.assertEqual(altNamesOf(old.transport.getPeerCertificate()), ["old.example.com"])

    def connect(self, port: int) -> defer.Deferred:
        endpoint = wrapClientTLS(ProbeClient("old.example.com"), TCP4ClientEndpoint(reactor, "127.0.0.1", port))
        proto = _Handshaking()
        d = endpoint.connect(_Tracking(lambda: proto))
        return d.addCallback(lambda _: proto.handshake)

    def disconnect(self, proto: "_Handshaking") -> defer.Deferred:
        if proto.lostReason is None:
            proto.transport.loseConnection()
        return waitFor(lambda: proto.lostReason is not None, "client connection closed")


class _Handshaking(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.handshake: defer.Deferred = defer.Deferred()

    def handshakeCompleted(self) -> None:
        super().handshakeCompleted()
        self.handshake.callback(self)

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        if not self.handshake.called:
            self.handshake.errback(reason)


class OriginationTests(_Base):
    """
    L{ClientTLSCreators} against C{openssl s_server}.
    """

    @defer.inlineCallbacks
    def sServer(self, *args: str) -> Any:
        """
        Start C{openssl s_server} on an ephemeral port; return its port.
        """
        proto = _Process(b"", lambda o: False)
        transport = reactor.spawnProcess(
            proto,
            "openssl",
            ["openssl", "s_server", "-accept", "127.0.0.1:0", "-naccept", "1", *args],
            env=dict(os.environ),
        )

        def stop() -> Any:
            if not proto.ended.called:
                transport.signalProcess("KILL")
            return proto.ended

        self.addCleanup(stop)
        yield waitFor(lambda: re.search(rb"ACCEPT 127\.0\.0\.1:(\d+)", proto.out) is not None, "s_server to listen")
        return int(re.search(rb"ACCEPT 127\.0\.0\.1:(\d+)", proto.out).group(1))

    @defer.inlineCallbacks
    def originate(self, port: int, config: ClientTlsConfig, captures: Optional[Dict[str, str]] = None) -> Any:
        creator = ClientTLSCreators(reactor).creatorFor(config, captures)
        proto = _Handshaking()
        endpoint = wrapClientTLS(creator, TCP4ClientEndpoint(reactor, "127.0.0.1", port))
        yield endpoint.connect(_Tracking(lambda: proto))
        try:
            yield proto.handshake
        except Exception:
            pass
        return creator, proto

    @defer.inlineCallbacks
    def test_verified(self) -> None:
        """
        A certificate for the substituted commonName, from a trusted CA, is
        accepted and data flows.
        """
        origin = self.leaf("origin", "users.svc.example.com")
        port = yield self.sServer("-cert", origin.cert, "-key", origin.key)
        config = ClientTlsConfig(commonName="{service}.svc.example.com", trustCerts=(self.caPath,))
        creator, proto = yield self.originate(port, config, {"service": "users"})
        self.assertTrue(proto.handshakeDone, proto.lostReason)
        proto.transport.loseConnection()
        yield waitFor(lambda: proto.lostReason is not None, "close")

    @defer.inlineCallbacks
    def test_nameMismatch(self) -> None:
        """
        A certificate for another name is refused with an explanation.
        """
        origin = self.leaf("origin", "other.example.com")
        port = yield self.sServer("-cert", origin.cert, "-key", origin.key)
        config = ClientTlsConfig(commonName="users.svc.example.com", trustCerts=(self.caPath,))
        creator, proto = yield self.originate(port, config)
        self.assertFalse(proto.handshakeDone)
        explained = creator.explainFailure(proto.lostReason)
        self.assertEqual(explained.kind, errors.NAME_MISMATCH)
        self.assertIn("the certificate is for other.example.com", explained.reason)

    @defer.inlineCallbacks
    def test_clientCertificate(self) -> None:
        """
        An origin that requires a client certificate accepts the configured
        one, and refuses a client without one with an explanation.
        """
        origin = self.leaf("origin", "users.svc.example.com")
        mtls = ("-cert", origin.cert, "-key", origin.key, "-Verify", "1", "-CAfile", self.caPath, "-verify_return_error")
        port = yield self.sServer(*mtls)
        config = ClientTlsConfig(
            commonName="users.svc.example.com",
            trustCerts=(self.caPath,),
            clientAuth=ClientAuthConfig(self.clientCert.cert, self.clientCert.key),
        )
        creator, proto = yield self.originate(port, config)
        self.assertTrue(proto.handshakeDone, proto.lostReason)
        proto.transport.loseConnection()
        yield waitFor(lambda: proto.lostReason is not None, "close")

        port = yield self.sServer(*mtls)
        config = ClientTlsConfig(commonName="users.svc.example.com", trustCerts=(self.caPath,), protocols=("TLSv1.3",))
        creator, proto = yield self.originate(port, config)
        yield waitFor(lambda: proto.lostReason is not None, "the origin to refuse")
        explained = creator.explainFailure(proto.lostReason)
        self.assertEqual(explained.kind, errors.CLIENT_CERT_REJECTED, explained.reason)
