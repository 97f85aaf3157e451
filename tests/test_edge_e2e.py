"""
End-to-end tests of C{conf/edge.yaml} run as C{twistd -n linkerpy}, with
certificates made for the test, ephemeral ports and test origins
substituted, and real clients: C{curl --cacert} and C{openssl s_client}.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Dict, List, Optional

import yaml
from twisted.internet import defer, reactor, utils
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from tests.support import REPO, TwistdProcess, httpGet, jsonOf, waitUntil
from tests.test_tcp_e2e import _Greeter, _serverTLS, requireTool, sClient
from tests.test_tcp_support import listen, randomBlock, tempdir

TIMEOUT = 600

#: The size of the download that runs across a certificate reload.
DOWNLOAD = 24 * 1024 * 1024


class Text(Resource):
    isLeaf = True

    def __init__(self, text: bytes) -> None:
        super().__init__()
        self.text = text

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"text/plain")
        return self.text


class HeldDownload(Resource):
    """
    Streams C{DOWNLOAD} bytes; stops after half of them until C{release}
    fires.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        block = randomBlock()
        self.body = (block * (DOWNLOAD // len(block) + 1))[:DOWNLOAD]
        self.digest = hashlib.sha256(self.body).hexdigest()
        self.sent = 0
        self.release: defer.Deferred = defer.Deferred()

    def render_GET(self, request: Any) -> Any:
        request.setHeader(b"content-length", b"%d" % DOWNLOAD)
        request.setHeader(b"content-type", b"application/octet-stream")
        producer = _Producer(self, request)
        request.registerProducer(producer, True)
        producer.resumeProducing()
        return NOT_DONE_YET


class _Producer:
    def __init__(self, resource: HeldDownload, request: Any) -> None:
        self.resource = resource
        self.request = request
        self.paused = False
        self.waiting = False

    def resumeProducing(self) -> None:
        self.paused = False
        r = self.resource
        while not self.paused and r.sent < DOWNLOAD:
            if r.sent >= DOWNLOAD // 2 and not r.release.called:
                if not self.waiting:
                    self.waiting = True
                    r.release.addCallback(lambda _: self.resumeProducing())
                return
            chunk = r.body[r.sent : r.sent + 65536]
            r.sent += len(chunk)
            self.request.write(chunk)
        if r.sent >= DOWNLOAD and not self.request.finished:
            self.request.unregisterProducer()
            self.request.finish()

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        self.paused = True


class Certificates:
    """
    The certificates of one test: a server CA (www, api, shop, mail), a CA
    for client certificates and a client certificate from each.
    """

    def __init__(self, directory: str) -> None:
        from linkerpy.tls.testing import newCA, writeCA, writeLeaf

        self.directory = directory
        self.ca = newCA()
        self.caPath = writeCA(self.ca, os.path.join(directory, "server-ca.pem"))
        self.clientCA = newCA()
        self.clientCAPath = writeCA(self.clientCA, os.path.join(directory, "client-ca.pem"))
        self.leaf = {
            name: writeLeaf(directory, name, self.ca, name, commonName=name)
            for name in ("www.example.test", "api.example.test", "shop.example.test", "mail.example.test")
        }
        self.client = writeLeaf(directory, "client", self.clientCA, "client.example.test", commonName="client.example.test")
        stranger = newCA()
        self.stranger = writeLeaf(directory, "stranger", stranger, "stranger.example.test", commonName="stranger.example.test")

    def renew(self, name: str) -> Any:
        """
        Replace a leaf's files with a new certificate and key (same name).
        """
        from linkerpy.tls.testing import writeLeaf

        renewed = writeLeaf(self.directory, name + ".next", self.ca, name, commonName=name)
        old = self.leaf[name]
        with open(renewed.key, "rb") as f:
            key = f.read()
        with open(renewed.cert, "rb") as f:
            cert = f.read()
        from linkerpy.tls.testing import writeBytes

        writeBytes(old.key, key)
        writeBytes(old.cert, cert)
        return renewed.certificate


def edgeConfig(certs: Certificates, www: int, api: int, shop: int, mail: int) -> Dict[str, Any]:
    """
    C{conf/edge.yaml} with the test's certificates, origins and ephemeral
    ports (everything else as written).
    """
    with open(os.path.join(REPO, "conf", "edge.yaml")) as f:
        config = yaml.safe_load(f)
    config["admin"]["port"] = 0
    edge, redirect, passthrough = config["routers"]
    leaf = certs.leaf
    public, partners = edge["servers"]
    public["tls"]["certPath"] = leaf["www.example.test"].cert
    public["tls"]["keyPath"] = leaf["www.example.test"].key
    public["tls"]["sni"][0]["certPath"] = leaf["api.example.test"].cert
    public["tls"]["sni"][0]["keyPath"] = leaf["api.example.test"].key
    public["tls"]["reloadIntervalMs"] = 200
    partners["tls"]["certPath"] = leaf["api.example.test"].cert
    partners["tls"]["keyPath"] = leaf["api.example.test"].key
    partners["tls"]["caCertPath"] = certs.clientCAPath
    for server in edge["servers"] + redirect["servers"] + passthrough["servers"]:
        server["port"] = 0
    edge["dtab"] = edge["dtab"].replace("/$/inet/127.0.0.1/8081", f"/$/inet/127.0.0.1/{www}").replace(
        "/$/inet/127.0.0.1/8082", f"/$/inet/127.0.0.1/{api}"
    )
    passthrough["dtab"] = f"/svc/shop.example.test => /$/inet/127.0.0.1/{shop}; /svc/mail.example.test => /$/inet/127.0.0.1/{mail}"
    return config


class EdgeEndToEndTests(TestCase):
    """
    C{twistd linkerpy -c conf/edge.yaml} (test certificates and ports).
    """

    timeout = TIMEOUT

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.curl = requireTool(self, "curl")
        self.openssl = requireTool(self, "openssl")
        self.dir = tempdir(self)
        self.certs = Certificates(self.dir)
        self.download = HeldDownload()
        www = Resource()
        www.putChild(b"", Text(b"www site\n"))
        www.putChild(b"big", self.download)
        self.www = reactor.listenTCP(0, Site(www), interface="127.0.0.1")
        self.addCleanup(self.www.stopListening)
        self.api = reactor.listenTCP(0, Site(Text(b"api site\n")), interface="127.0.0.1")
        self.addCleanup(self.api.stopListening)
        leaf = self.certs.leaf
        self.shop = listen(self, lambda: _Greeter(b"hello from shop\n"), tls=_serverTLS(leaf["shop.example.test"]))
        self.mail = listen(self, lambda: _Greeter(b"hello from mail\n"), tls=_serverTLS(leaf["mail.example.test"]))
        config = edgeConfig(self.certs, self.www.getHost().port, self.api.getHost().port, self.shop.port, self.mail.port)
        self.proc = TwistdProcess(config)
        self.addCleanup(self.proc.stop)
        yield self.proc.start(waitFor=("admin", "router edge", "router redirect", "router passthrough"))
        yield waitUntil(lambda: len(self.proc.routerPorts.get("edge", [])) >= 2, 60, "both HTTPS servers to listen")
        self.public, self.partners = self.proc.routerPorts["edge"]
        self.redirect = self.proc.routerPorts["redirect"][0]
        self.passthrough = self.proc.routerPorts["passthrough"][0]

    def curlRun(self, args: List[str]) -> defer.Deferred:
        """
        Run curl; fire with C{(exit code, stdout, stderr)}.
        """
        d = utils.getProcessOutputAndValue(self.curl, ["-sS", "--max-time", "120"] + args, env=os.environ)
        return d.addCallback(lambda r: (r[2], r[0], r[1]))

    def https(self, name: str, port: int, path: str = "/", extra: List[str] = ()) -> defer.Deferred:  # type: ignore[assignment]
        return self.curlRun(
            [
                "--cacert",
                self.certs.caPath,
                "--resolve",
                f"{name}:{port}:127.0.0.1",
                "-H",
                f"Host: {name}",
                f"https://{name}:{port}{path}",
            ]
            + list(extra)
        )

    @defer.inlineCallbacks
    def test_certificatePerServerName(self) -> Any:
        """
        One HTTPS port presents www's or api's certificate by SNI (www's to
        clients without SNI), and routes each site by Host.
        """
        for name, body in (("www.example.test", b"www site\n"), ("api.example.test", b"api site\n")):
            out = yield sClient(self.openssl, self.public, name, self.certs.caPath, ignEof=False)
            self.assertIn(b"Verify return code: 0 (ok)", out)
            self.assertIn(f"CN = {name}".encode(), out)
            code, body_, err = yield self.https(name, self.public)
            self.assertEqual(code, 0, err)
            self.assertEqual(body_, body)
        out = yield sClient(self.openssl, self.public, None, self.certs.caPath, ignEof=False)
        self.assertIn(b"CN = www.example.test", out)

    @defer.inlineCallbacks
    def test_clientCertificateRequired(self) -> Any:
        """
        The partner port serves clients with a certificate from the client
        CA, and refuses clients without one or with another CA's.
        """
        client = self.certs.client
        code, body, err = yield self.https("api.example.test", self.partners, extra=["--cert", client.cert, "--key", client.key])
        self.assertEqual(code, 0, err)
        self.assertEqual(body, b"api site\n")
        code, body, err = yield self.https("api.example.test", self.partners)
        self.assertNotEqual(code, 0)
        self.assertEqual(body, b"")
        stranger = self.certs.stranger
        code, body, err = yield self.https("api.example.test", self.partners, extra=["--cert", stranger.cert, "--key", stranger.key])
        self.assertNotEqual(code, 0)
        self.assertEqual(body, b"")
        self.assertIn(b"alert", err.lower())

    @defer.inlineCallbacks
    def test_oldProtocolsRefused(self) -> Any:
        """
        TLS 1.0 and 1.1 handshakes are refused (even by a client willing to
        use them); TLS 1.2 and 1.3 work.
        """
        for flag in ("-tls1", "-tls1_1"):
            out = yield sClient(
                self.openssl, self.public, "www.example.test", self.certs.caPath, extra=[flag, "-cipher", "DEFAULT@SECLEVEL=0"], ignEof=False
            )
            self.assertIn(b"alert protocol version", out, flag)
            self.assertIn(b"no peer certificate available", out, flag)
        for flag, version in (("-tls1_2", b"TLSv1.2"), ("-tls1_3", b"TLSv1.3")):
            out = yield sClient(self.openssl, self.public, "www.example.test", self.certs.caPath, extra=[flag], ignEof=False)
            self.assertIn(b"Verify return code: 0 (ok)", out)
            self.assertIn(b"New, " + version, out)

    @defer.inlineCallbacks
    def test_redirectToHTTPS(self) -> Any:
        """
        Plain HTTP gets a 308 to the same host and target on the HTTPS
        port; a request without a usable Host gets 400.
        """
        code, out, err = yield self.curlRun(
            ["-i", "-H", "Host: www.example.test:8080", f"http://127.0.0.1:{self.redirect}/some/page?x=1"]
        )
        self.assertEqual(code, 0, err)
        self.assertTrue(out.startswith(b"HTTP/1.1 308"), out)
        self.assertIn(b"Location: https://www.example.test:4443/some/page?x=1\r\n", out)
        code, out, err = yield self.curlRun(["-i", "-H", "Host: bad host!", f"http://127.0.0.1:{self.redirect}/"])
        self.assertTrue(out.startswith(b"HTTP/1.1 400"), out)
        metrics = yield httpGet(self.proc.url(path="/admin/metrics.json")).addCallback(jsonOf)
        self.assertEqual(metrics[f"rt/redirect/server/127.0.0.1/{self.redirect}/redirects"], 1)

    @defer.inlineCallbacks
    def test_passthroughBySni(self) -> Any:
        """
        The passthrough port hands each TLS connection to the site named by
        SNI; the client verifies that site's own certificate.
        """
        for name, greeting in (("shop.example.test", b"hello from shop"), ("mail.example.test", b"hello from mail")):
            out = yield sClient(self.openssl, self.passthrough, name, self.certs.caPath)
            self.assertIn(b"Verify return code: 0 (ok)", out)
            self.assertIn(f"CN = {name}".encode(), out)
            self.assertIn(greeting, out)
        self.assertEqual((len(self.shop.connections), len(self.mail.connections)), (1, 1))

    @defer.inlineCallbacks
    def test_reloadDuringDownload(self) -> Any:
        """
        While a download over HTTPS is half done, www's certificate files
        are replaced: new handshakes get the new certificate and the
        download finishes intact on its old connection.
        """
        output = os.path.join(self.dir, "download.bin")
        running = self.https("www.example.test", self.public, "/big", extra=["-o", output])
        yield waitUntil(lambda: self.download.sent >= DOWNLOAD // 2, 120, "half the download to be sent")
        before = yield self.servedSerial()
        renewed = self.certs.renew("www.example.test")
        self.assertNotEqual(before, renewed.serial_number)
        yield waitUntilDeferred(lambda: self.servedSerial().addCallback(lambda s: s == renewed.serial_number), 120, "the new certificate")
        self.assertFalse(running.called, "the download ended before the reload")
        self.download.release.callback(None)
        code, _, err = yield running
        self.assertEqual(code, 0, err)
        with open(output, "rb") as f:
            data = f.read()
        self.assertEqual(len(data), DOWNLOAD)
        self.assertEqual(hashlib.sha256(data).hexdigest(), self.download.digest)
        metrics = yield httpGet(self.proc.url(path="/admin/metrics.json")).addCallback(jsonOf)
        self.assertGreaterEqual(metrics["rt/edge/tls/0/reloads"], 1)

    def servedSerial(self) -> defer.Deferred:
        """
        The serial number of the certificate www.example.test gets now.
        """
        d = sClient(self.openssl, self.public, "www.example.test", self.certs.caPath, ignEof=False)

        def serial(out: bytes) -> Optional[int]:
            import re

            from cryptography import x509

            match = re.search(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", out, re.S)
            if match is None:
                return None
            return x509.load_pem_x509_certificate(match.group(0)).serial_number

        return d.addCallback(serial)


@defer.inlineCallbacks
def waitUntilDeferred(check: Any, timeout: float, what: str) -> Any:
    """
    Poll an asynchronous check until it fires with a true value.
    """
    from twisted.internet.task import deferLater

    deadline = reactor.seconds() + timeout
    while True:
        ok = yield check()
        if ok:
            return
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        yield deferLater(reactor, 0.2, lambda: None)

