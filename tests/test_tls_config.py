# -*- test-case-name: tests.test_tls_config -*-
"""
Tests for L{linkerpy.tls.config}: structuring and validating TLS settings.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from linkerpy.config.errors import ConfigError
from linkerpy.config.structure import structure
from linkerpy.tls.config import ClientTlsConfig, ServerTlsConfig, checkServerNamePattern


def _server(raw: Any) -> ServerTlsConfig:
    return structure(ServerTlsConfig, raw, None, "routers[0].servers[0].tls")


def _client(raw: Any) -> ClientTlsConfig:
    return structure(ClientTlsConfig, raw, None, "routers[0].client.tls")


class ServerTlsConfigTests(SynchronousTestCase):
    """
    Tests for L{ServerTlsConfig}.
    """

    def test_defaults(self) -> None:
        """
        A minimal server block enables TLS 1.2 and 1.3, no client auth, and
        reloads every second.
        """
        config = _server({"certPath": "c.pem", "keyPath": "k.pem"})
        self.assertEqual(config.protocols, ("TLSv1.2", "TLSv1.3"))
        self.assertFalse(config.requireClientAuth)
        self.assertIsNone(config.caCertPath)
        self.assertEqual(config.reloadIntervalMs, 1000)
        self.assertEqual(config.sni, ())

    def test_linkerdKeys(self) -> None:
        """
        The Linkerd key names are accepted, including the undocumented
        C{ciphers} list.
        """
        config = _server(
            {
                "certPath": "c.pem",
                "keyPath": "k.pem",
                "intermediateCertsPath": "i.pem",
                "caCertPath": "ca.pem",
                "requireClientAuth": True,
                "protocols": ["TLSv1.2"],
                "ciphers": ["ECDHE-RSA-AES128-GCM-SHA256"],
                "enabled": True,
            }
        )
        self.assertEqual(config.ciphers, ("ECDHE-RSA-AES128-GCM-SHA256",))
        self.assertEqual(config.intermediateCertsPath, "i.pem")

    def test_sniStructured(self) -> None:
        """
        C{sni} entries become L{SniCertificate}s.
        """
        config = _server(
            {"sni": [{"serverNames": ["a.example.com", "*.b.example.com"], "certPath": "a.pem", "keyPath": "a.key"}]}
        )
        self.assertEqual(config.sni[0].serverNames, ("a.example.com", "*.b.example.com"))
        self.assertIsNone(config.certPath)

    def test_certificateRequired(self) -> None:
        """
        Without C{certPath} or C{sni} the error names C{certPath}.
        """
        e = self.assertRaises(ConfigError, _server, {"keyPath": "k.pem"})
        self.assertIn("routers[0].servers[0].tls.certPath", str(e))

    def test_keyRequired(self) -> None:
        """
        C{certPath} without C{keyPath} is reported at C{keyPath}.
        """
        e = self.assertRaises(ConfigError, _server, {"certPath": "c.pem"})
        self.assertIn("tls.keyPath", str(e))

    def test_requireClientAuthNeedsCA(self) -> None:
        """
        C{requireClientAuth} without C{caCertPath} is an error at
        C{caCertPath}.
        """
        e = self.assertRaises(
            ConfigError, _server, {"certPath": "c", "keyPath": "k", "requireClientAuth": True}
        )
        self.assertIn("tls.caCertPath", str(e))

    def test_unknownProtocol(self) -> None:
        """
        An unknown protocol name is rejected with the accepted names.
        """
        e = self.assertRaises(ConfigError, _server, {"certPath": "c", "keyPath": "k", "protocols": ["SSLv3"]})
        self.assertIn("tls.protocols", str(e))
        self.assertIn("TLSv1.2", str(e))

    def test_protocolGap(self) -> None:
        """
        A protocol list with a hole (TLSv1 and TLSv1.2 without TLSv1.1) is
        rejected: OpenSSL can only enable a range.
        """
        e = self.assertRaises(
            ConfigError, _server, {"certPath": "c", "keyPath": "k", "protocols": ["TLSv1", "TLSv1.2"]}
        )
        self.assertIn("contiguous", str(e))

    def test_emptyProtocols(self) -> None:
        """
        An empty protocol list is rejected.
        """
        e = self.assertRaises(ConfigError, _server, {"certPath": "c", "keyPath": "k", "protocols": []})
        self.assertIn("at least one", str(e))

    def test_negativeReloadInterval(self) -> None:
        """
        A negative C{reloadIntervalMs} is rejected.
        """
        e = self.assertRaises(ConfigError, _server, {"certPath": "c", "keyPath": "k", "reloadIntervalMs": -5})
        self.assertIn("reloadIntervalMs", str(e))

    def test_badServerNames(self) -> None:
        """
        SNI names must be host names or C{*.} wildcards over at least two
        labels; the error names the entry.
        """
        for bad in ["*foo.example.com", "a.*.example.com", "*.com", "exa mple.com", ""]:
            e = self.assertRaises(
                ConfigError,
                _server,
                {"sni": [{"serverNames": ["ok.example.com", bad], "certPath": "a", "keyPath": "b"}]},
            )
            self.assertIn("sni[0].serverNames[1]", str(e), bad)

    def test_duplicateServerNames(self) -> None:
        """
        The same server name in two SNI entries is rejected.
        """
        e = self.assertRaises(
            ConfigError,
            _server,
            {
                "sni": [
                    {"serverNames": ["a.example.com"], "certPath": "a", "keyPath": "b"},
                    {"serverNames": ["A.example.com"], "certPath": "c", "keyPath": "d"},
                ]
            },
        )
        self.assertIn("sni[1].serverNames[0]", str(e))

    def test_serverNamePatterns(self) -> None:
        """
        L{checkServerNamePattern} accepts host names and one-label wildcards.
        """
        for good in ["example.com", "a-b.example.com", "*.example.com", "localhost", "Upper.Example.COM"]:
            self.assertIsNone(checkServerNamePattern(good), good)
        for bad in ["*", "*.", "**.example.com", "-a.example.com", "a..b"]:
            self.assertIsNotNone(checkServerNamePattern(bad), bad)


class ClientTlsConfigTests(SynchronousTestCase):
    """
    Tests for L{ClientTlsConfig}.
    """

    def test_defaults(self) -> None:
        """
        A client block with a commonName validates with the system CAs and
        TLS 1.2/1.3.
        """
        config = _client({"commonName": "{service}.example.com"})
        self.assertTrue(config.enabled)
        self.assertFalse(config.disableValidation)
        self.assertEqual(config.trustCerts, ())
        self.assertEqual(config.protocols, ("TLSv1.2", "TLSv1.3"))

    def test_commonNameRequired(self) -> None:
        """
        Validation needs a commonName.
        """
        e = self.assertRaises(ConfigError, _client, {"trustCerts": ["ca.pem"]})
        self.assertIn("routers[0].client.tls.commonName", str(e))

    def test_disableValidationWithoutName(self) -> None:
        """
        C{disableValidation: true} needs no commonName.
        """
        config = _client({"disableValidation": True})
        self.assertIsNone(config.commonName)

    def test_clientAuthWithoutValidation(self) -> None:
        """
        C{clientAuth} cannot be combined with C{disableValidation} (as in
        Linkerd).
        """
        e = self.assertRaises(
            ConfigError,
            _client,
            {"disableValidation": True, "clientAuth": {"certPath": "c", "keyPath": "k"}},
        )
        self.assertIn("tls.clientAuth", str(e))

    def test_clientAuth(self) -> None:
        """
        C{clientAuth} takes certPath, keyPath and intermediateCertsPath.
        """
        config = _client(
            {
                "commonName": "x",
                "trustCertsBundle": "bundle.pem",
                "clientAuth": {"certPath": "c", "keyPath": "k", "intermediateCertsPath": "i"},
            }
        )
        assert config.clientAuth is not None
        self.assertEqual(config.clientAuth.intermediateCertsPath, "i")
        self.assertEqual(config.trustCertsBundle, "bundle.pem")

    def test_hashable(self) -> None:
        """
        Equal configurations are equal and hash alike (creators are cached
        by configuration).
        """
        a = _client({"commonName": "x", "trustCerts": ["a", "b"]})
        b = _client({"commonName": "x", "trustCerts": ["a", "b"]})
        self.assertEqual(a, b)
        self.assertEqual(hash(a), hash(b))
