# -*- test-case-name: tests.test_tls_files -*-
"""
Tests for L{linkerpy.tls.server} and L{linkerpy.tls.pem} about files:
validation at start-up (errors naming the key and the file) and reloading
when they change.
"""

from __future__ import annotations

import os
from typing import Any, List

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher

from linkerpy.config.errors import ConfigError
from linkerpy.telemetry.metrics import MetricsTree
from linkerpy.tls.config import ServerTlsConfig, SniCertificate
from linkerpy.tls.server import ServerTLS
from linkerpy.tls.testing import CertFiles, ProbeClient, altNamesOf, loopbackTLS, newCA, writeBytes, writeCA, writeLeaf
from tests.test_tls_server import _Base


class BadFileTests(_Base):
    """
    Start-up validation of files.
    """

    def assertProblem(self, key: str, fragment: str, **kw: Any) -> ConfigError:
        e = self.assertRaises(ConfigError, self.server, **kw)
        paths = [p.path for p in e.problems]
        self.assertIn(f"servers[0].tls.{key}", paths)
        self.assertIn(fragment, str(e))
        return e

    def test_missingCertificate(self) -> None:
        """
        A missing certificate file is reported at C{certPath} with the file.
        """
        path = os.path.join(self.dir, "nope.crt")
        e = self.assertProblem("certPath", "no such file", certPath=path)
        self.assertIn(path, str(e))

    def test_missingKey(self) -> None:
        """
        A missing key file is reported at C{keyPath}.
        """
        self.assertProblem("keyPath", "nope.key", keyPath=os.path.join(self.dir, "nope.key"))

    def test_directory(self) -> None:
        """
        A directory where a file is expected is reported.
        """
        self.assertProblem("certPath", "is a directory", certPath=self.dir)

    def test_unreadable(self) -> None:
        """
        A file this process cannot read is reported as such.
        """
        path = os.path.join(self.dir, "secret.key")
        writeBytes(path, b"-----BEGIN PRIVATE KEY-----\n")
        os.chmod(path, 0)
        try:
            with open(path, "rb"):
                readable = True
        except PermissionError:
            readable = False
        if readable:
            os.chmod(path, 0o600)
            self.skipTest("running as a user who can read any file (root)")
        self.assertProblem("keyPath", "permission denied", keyPath=path)

    def test_parentNotDirectory(self) -> None:
        """
        A path that cannot be opened for another reason is reported with the
        system's explanation.
        """
        self.assertProblem("certPath", "Not a directory", certPath=os.path.join(self.default.cert, "x"))

    def test_notPem(self) -> None:
        """
        A file without PEM blocks is reported as not PEM.
        """
        path = os.path.join(self.dir, "junk.crt")
        writeBytes(path, b"hello world\n")
        self.assertProblem("certPath", "not a PEM file", certPath=path)

    def test_der(self) -> None:
        """
        A DER certificate is recognised and the conversion suggested.
        """
        from cryptography.hazmat.primitives.serialization import Encoding

        path = os.path.join(self.dir, "cert.der")
        writeBytes(path, self.default.certificate.public_bytes(Encoding.DER))
        self.assertProblem("certPath", "looks like DER", certPath=path)

    def test_empty(self) -> None:
        """
        An empty file is reported as empty.
        """
        path = os.path.join(self.dir, "empty.key")
        writeBytes(path, b"")
        self.assertProblem("keyPath", "is empty", keyPath=path)

    def test_truncatedCertificate(self) -> None:
        """
        A half-written certificate is reported as malformed.
        """
        path = os.path.join(self.dir, "half.crt")
        with open(self.default.cert, "rb") as f:
            data = f.read()
        writeBytes(path, data[: len(data) // 2])
        self.assertProblem("certPath", "malformed certificate", certPath=path)

    def test_swappedFiles(self) -> None:
        """
        A key where the certificate belongs (and the reverse) is explained.
        """
        e = self.assertRaises(
            ConfigError, self.server, certPath=self.default.key, keyPath=self.default.cert
        )
        self.assertIn("contains a private key, expected a certificate", str(e))
        self.assertIn("contains a certificate, expected a private key", str(e))
        self.assertEqual(len(e.problems), 2)

    def test_keyMismatch(self) -> None:
        """
        A key that does not belong to the certificate is reported at
        C{keyPath}, naming both files.
        """
        other = self.leaf("other", "other.example.com")
        e = self.assertProblem("keyPath", "does not match the certificate", keyPath=other.key)
        self.assertIn(other.key, str(e))
        self.assertIn(self.default.cert, str(e))

    def test_encryptedKey(self) -> None:
        """
        An encrypted key is refused with an explanation.
        """
        from cryptography.hazmat.primitives import serialization

        with open(self.default.key, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), None)
        path = os.path.join(self.dir, "enc.key")
        writeBytes(
            path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret"),
            ),
        )
        self.assertProblem("keyPath", "encrypted", keyPath=path)

    def test_sniPaths(self) -> None:
        """
        Problems in an SNI entry name the entry's key.
        """
        self.assertProblem(
            "sni[0].keyPath",
            "missing.key",
            sni=(SniCertificate(("a.example.com",), self.default.cert, os.path.join(self.dir, "missing.key")),),
        )

    def test_caPath(self) -> None:
        """
        A missing CA file is reported at C{caCertPath}.
        """
        self.assertProblem("caCertPath", "no such file", caCertPath=os.path.join(self.dir, "nope-ca.pem"))

    def test_allProblems(self) -> None:
        """
        Every bad file is reported, not only the first.
        """
        e = self.assertRaises(
            ConfigError,
            self.server,
            certPath=os.path.join(self.dir, "a"),
            caCertPath=os.path.join(self.dir, "b"),
            intermediateCertsPath=os.path.join(self.dir, "c"),
        )
        self.assertEqual(
            sorted(p.path for p in e.problems),
            ["servers[0].tls.caCertPath", "servers[0].tls.certPath", "servers[0].tls.intermediateCertsPath"],
        )


class ReloadTests(_Base):
    """
    Certificates re-read from disk.
    """

    def setUp(self) -> None:
        super().setUp()
        self.events: List[Any] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.metrics = MetricsTree()
        self.tls = ServerTLS(
            ServerTlsConfig(
                certPath=self.default.cert, keyPath=self.default.key, caCertPath=self.caPath, reloadIntervalMs=500
            ),
            self.clock,
            metrics=self.metrics,
        )
        self.tls.startService()
        self.addCleanup(self._stop)

    def _stop(self) -> None:
        if self.tls.running:
            self.tls.stopService()

    def replaceWith(self, files: CertFiles) -> None:
        for src, dst in ((files.cert, self.default.cert), (files.key, self.default.key)):
            with open(src, "rb") as f:
                writeBytes(dst, f.read())

    def errors(self) -> List[Any]:
        return [e for e in self.events if e.get("log_level") is not None and e["log_level"].name == "error"]

    def test_newHandshakesSeeNewCertificate(self) -> None:
        """
        After the files change and the interval passes, new handshakes get
        the new certificate; before that they get the old one.
        """
        new = self.leaf("new", "new.example.com")
        self.replaceWith(new)
        self.assertEqual(self.seenNames(self.tls), ["default.example.com"])
        self.clock.advance(0.5)
        self.assertEqual(self.seenNames(self.tls), ["new.example.com"])
        self.assertEqual(self.metrics.counter("reloads").value, 1)

    def test_openConnectionsKept(self) -> None:
        """
        A connection opened before a reload keeps working after it.
        """
        lb = loopbackTLS(self.tls, ProbeClient(None))
        self.replaceWith(self.leaf("new", "new.example.com"))
        self.clock.advance(0.5)
        lb.clientApp.transport.write(b"still here")
        lb.flush()
        self.assertEqual(lb.clientApp.received, b"still here")
        self.assertIsNone(lb.clientApp.lostReason)
        self.assertEqual(altNamesOf(lb.peerCertificate()), ["default.example.com"])

    def test_halfWrittenKeepsOld(self) -> None:
        """
        A half-written certificate keeps the old one, logs once, counts a
        failure, and the complete file is picked up later.
        """
        new = self.leaf("new", "new.example.com")
        with open(new.cert, "rb") as f:
            data = f.read()
        writeBytes(self.default.cert, data[: len(data) // 2])
        self.clock.advance(0.5)
        self.clock.advance(0.5)
        self.assertEqual(self.seenNames(self.tls), ["default.example.com"])
        self.assertEqual(len(self.errors()), 1)
        self.assertIn("malformed certificate", str(self.errors()[0]["error"]))
        self.assertEqual(self.metrics.counter("reload_failures").value, 1)
        self.replaceWith(new)
        self.clock.advance(0.5)
        self.assertEqual(self.seenNames(self.tls), ["new.example.com"])

    def test_mismatchedPairKeepsOld(self) -> None:
        """
        A new certificate whose key has not been written yet keeps the old
        pair until the key arrives.
        """
        new = self.leaf("new", "new.example.com")
        with open(new.cert, "rb") as f:
            writeBytes(self.default.cert, f.read())
        self.clock.advance(0.5)
        self.assertEqual(self.seenNames(self.tls), ["default.example.com"])
        self.assertIn("does not match", str(self.errors()[0]["error"]))
        with open(new.key, "rb") as f:
            writeBytes(self.default.key, f.read())
        self.clock.advance(0.5)
        self.assertEqual(self.seenNames(self.tls), ["new.example.com"])

    def test_deletedFileKeepsOld(self) -> None:
        """
        A certificate file that disappears keeps the old certificate.
        """
        os.remove(self.default.cert)
        self.clock.advance(0.5)
        self.assertEqual(self.seenNames(self.tls), ["default.example.com"])
        self.assertIn("no such file", str(self.errors()[0]["error"]))

    def test_unchangedFilesNotReloaded(self) -> None:
        """
        Rewriting identical contents is not a reload.
        """
        self.replaceWith(self.default)
        self.clock.advance(0.5)
        self.assertEqual(self.metrics.counter("reloads").value, 0)
        self.assertEqual(self.tls.checkForChanges(), 0)

    def test_caReload(self) -> None:
        """
        A new CA file changes which client certificates are accepted.
        """
        otherCA = newCA()
        client = writeLeaf(self.dir, "client", otherCA, "client.example.com")
        tls = ServerTLS(
            ServerTlsConfig(certPath=self.default.cert, keyPath=self.default.key, caCertPath=self.caPath, requireClientAuth=True),
            self.clock,
        )

        def accepted() -> bool:
            lb = loopbackTLS(tls, ProbeClient(None, clientCert=client))
            lb.clientApp.transport.write(b"x")
            lb.flush()
            return lb.clientApp.received == b"x"

        self.assertFalse(accepted())
        writeCA(otherCA, self.caPath)
        self.assertEqual(tls.checkForChanges(), 1)
        self.assertTrue(accepted())

    def test_caReloadWhileCertificateMissing(self) -> None:
        """
        A CA change seen while the certificate file is briefly missing is
        still applied once the (unchanged) certificate is back.
        """
        otherCA = newCA()
        client = writeLeaf(self.dir, "client", otherCA, "client.example.com")
        tls = ServerTLS(
            ServerTlsConfig(certPath=self.default.cert, keyPath=self.default.key, caCertPath=self.caPath, requireClientAuth=True),
            self.clock,
        )
        with open(self.default.cert, "rb") as f:
            certBytes = f.read()
        os.remove(self.default.cert)
        writeCA(otherCA, self.caPath)
        self.assertEqual(tls.checkForChanges(), 0)
        writeBytes(self.default.cert, certBytes)
        self.assertEqual(tls.checkForChanges(), 1)
        lb = loopbackTLS(tls, ProbeClient(None, clientCert=client))
        lb.clientApp.transport.write(b"x")
        lb.flush()
        self.assertEqual(lb.clientApp.received, b"x")

    def test_stopService(self) -> None:
        """
        Stopping the service stops polling.
        """
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.tls.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_noPolling(self) -> None:
        """
        C{reloadIntervalMs: 0} never polls.
        """
        clock = MemoryReactorClock()
        tls = ServerTLS(
            ServerTlsConfig(certPath=self.default.cert, keyPath=self.default.key, reloadIntervalMs=0), clock
        )
        tls.startService()
        self.assertEqual(clock.getDelayedCalls(), [])
        tls.stopService()
