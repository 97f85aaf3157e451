"""
Tests for what namerd accepts and how it speaks JSON: dtab and policy
bodies (validation with key paths), the JSON codec in both directions
(dtabs, address sets, bound trees, delegation trees), and the helpers the
API builds on.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from linkerpy.namerd.core import mergeAddrs, stripTransformerPrefix
from linkerpy.namerd.documents import DocumentError, parseDtabBody, parsePolicyBody, policySections
from linkerpy.namerd.httputil import etagOf, versionFromETag
from linkerpy.namerd.jsoncodec import (
    CodecError,
    addrFromJSON,
    addrToJSON,
    boundTreeFromJSON,
    boundTreeToJSON,
    delegateTreeFromJSON,
    dtabFromJSON,
    dtabToJSON,
)
from linkerpy.naming import (
    AddrBound,
    AddrFailed,
    AddrNeg,
    AddrPending,
    Address,
    Bound,
    Dtab,
    Empty,
    Fail,
    Leaf,
    Neg,
    Path,
    Union,
    Var,
    Weighted,
)
from linkerpy.plugins.registry import defaultRegistry

#: Linkerd's DelegateApiHandlerTest example (dtab-semantics.md §11), as the exact JSON text.
DELEGATOR_EXAMPLE = (
    '{"type":"delegate","path":"/boo/humbug","delegate":{"type":"alt","path":"/foo/humbug","dentry":{"prefix":"/boo","dst":"/foo"},"alt":['
    '{"type":"neg","path":"/bar/humbug","dentry":{"prefix":"/foo","dst":"/bar"}},'
    '{"type":"delegate","path":"/bah/humbug","dentry":{"prefix":"/foo","dst":"/bah | /beh | /$/fail"},"delegate":{"type":"leaf","path":"/$/inet/127.1/8080",'
    '"dentry":{"prefix":"/bah/humbug","dst":"/$/inet/127.1/8080"},"bound":{"addr":{"type":"bound","addrs":[{"ip":"127.0.0.1","port":8080,"meta":{}}],"meta":{}},"id":"/$/inet/127.1/8080","path":"/"}}},'
    '{"type":"delegate","path":"/beh/humbug","dentry":{"prefix":"/foo","dst":"/bah | /beh | /$/fail"},"delegate":{"type":"exception","path":"/#/error/humbug","dentry":{"prefix":"/beh","dst":"/#/error"},"message":"error naming /#/error/humbug"}},'
    '{"type":"fail","path":"/$/fail/humbug","dentry":{"prefix":"/foo","dst":"/bah | /beh | /$/fail"}}]}}'
)


class DtabBodyTests(SynchronousTestCase):
    """
    L{parseDtabBody}.
    """

    def test_forms(self) -> None:
        """
        JSON, dtab text (application/dtab, text/plain, or no content type) all parse to the same dtab.
        """
        expected = Dtab.read("/svc=>/a | /b;/x=>/y")
        body = json.dumps([{"prefix": "/svc", "dst": "/a | /b"}, {"prefix": "/x", "dst": "/y"}]).encode()
        self.assertEqual(parseDtabBody("application/json; charset=utf-8", body), expected)
        for contentType in ("application/dtab", "text/plain", None, "TEXT/PLAIN"):
            self.assertEqual(parseDtabBody(contentType, b"/svc => /a | /b;\n/x => /y # comment"), expected)

    def test_errors(self) -> None:
        """
        Bad content types, JSON, shapes, dtab syntax and encodings are DocumentErrors saying what is wrong.
        """
        for contentType, body, expected in [
            ("application/x-www-form-urlencoded", b"/a=>/b", "Invalid Content-Type"),
            ("application/json", b"{", "invalid JSON"),
            ("application/json", b'{"prefix": "/a"}', "dtab: expected list"),
            ("application/json", b'[{"prefix": "/a", "dst": "/b", "x": 1}]', "dtab[0]: unknown key"),
            ("application/json", b'[{"prefix": "/a*", "dst": "/b"}]', "dtab[0]"),
            ("application/dtab", b"/a => ", "invalid dtab"),
            ("application/dtab", b"\xff", "not UTF-8"),
            ("application/json", b"[" * 100000 + b"]" * 100000, "nested too deeply"),
            ("application/dtab", b"/a=>" + b"(" * 5000 + b"/b" + b")" * 5000, "invalid dtab"),
        ]:
            with self.assertRaises(DocumentError) as caught:
                parseDtabBody(contentType, body)
            self.assertIn(expected, str(caught.exception))


class PolicyBodyTests(SynchronousTestCase):
    """
    L{parsePolicyBody}: validated with the router's structurer.
    """

    registry = defaultRegistry()

    def parse(self, document: Any, contentType: str = "application/json") -> str:
        return parsePolicyBody(contentType, json.dumps(document).encode(), self.registry)

    def test_valid(self) -> None:
        """
        Documents in the router's service/client shapes are accepted and stored as compact JSON.
        """
        document = {
            "protocol": "http",
            "service": {"kind": "io.l5d.static", "configs": [{"prefix": "/svc/hello", "totalTimeoutMs": 600,
                                                              "retries": {"budget": {"percentCanRetry": 0.5}}}]},
            "client": {"kind": "io.l5d.global", "loadBalancer": {"kind": "ewma"}, "requestAttemptTimeoutMs": 100},
        }
        text = self.parse(document)
        self.assertEqual(json.loads(text), document)
        self.assertNotIn(" ", text)
        self.assertEqual(json.loads(self.parse({})), {})
        self.assertEqual(self.parse({"service": None}, "application/json; charset=utf-8"), '{"service":null}')

    def test_invalid(self) -> None:
        """
        Invalid documents are refused with messages naming the key.
        """
        for document, expected in [
            ({"service": {"kind": "io.l5d.static", "configs": [{"prefix": "/svc", "totalTimeoutMs": -1}]}},
             "service.configs[0].totalTimeoutMs"),
            ({"service": {"kind": "io.l5d.static", "configs": [{"totalTimeoutMs": 1}]}}, "service.configs[0].prefix"),
            ({"client": {"kind": "io.l5d.global", "loadBalancer": {"kind": "nope"}}}, "client.loadBalancer.kind"),
            ({"client": {"kind": "io.l5d.global", "totalTimeoutMs": 5}}, "client.totalTimeoutMs"),
            ({"service": "x"}, "service"),
            ({"service": {"kind": "io.l5d.namerd.http", "dst": "h:1"}}, "service.kind"),
            ({"protocol": "thrift"}, "protocol"),
            ({"routers": []}, "routers"),
            ([], "JSON object"),
        ]:
            with self.assertRaises(DocumentError) as caught:
                self.parse(document)
            self.assertIn(expected, str(caught.exception))
        with self.assertRaises(DocumentError) as caught:
            parsePolicyBody("application/json", b"[" * 100000 + b"]" * 100000, self.registry)
        self.assertIn("nested too deeply", str(caught.exception))
        with self.assertRaises(DocumentError) as caught:
            parsePolicyBody("application/dtab", b"{}", self.registry)
        self.assertIn("Invalid Content-Type", str(caught.exception))

    def test_sections(self) -> None:
        """
        policySections gives the protocol (http by default) and the present sections.
        """
        self.assertEqual(policySections({"client": {"kind": "io.l5d.global"}}), ("http", {"client": {"kind": "io.l5d.global"}}))
        self.assertEqual(policySections({"protocol": "h2", "service": None}), ("h2", {}))


class CodecTests(SynchronousTestCase):
    """
    The JSON codec.
    """

    def test_dtab(self) -> None:
        """
        Dtabs round-trip through JSON.
        """
        dtab = Dtab.read("/svc/*=>/a & 2*/b;/x=>~")
        self.assertEqual(dtabToJSON(dtab), [{"prefix": "/svc/*", "dst": "/a & 2.00*/b"}, {"prefix": "/x", "dst": "~"}])
        self.assertEqual(dtabFromJSON(dtabToJSON(dtab)), dtab)
        self.assertRaises(CodecError, dtabFromJSON, [{"prefix": 1, "dst": "/b"}])

    def test_addr(self) -> None:
        """
        Address sets round-trip, weights travelling in meta as Finagle's endpoint_addr_weight.
        """
        for addr in (
            AddrBound([Address("127.0.0.1", 1, 2.5, {"node": "n1"}), Address("::1", 2)], {"az": "a"}),
            AddrNeg,
            AddrPending,
        ):
            self.assertEqual(addrFromJSON(addrToJSON(addr)), addr)
        failed = addrFromJSON(addrToJSON(AddrFailed(Exception("boom"))))
        self.assertEqual(failed.message, "boom")
        self.assertEqual(
            addrToJSON(AddrBound([Address("10.0.0.1", 80, 0.5)])),
            {"type": "bound", "addrs": [{"ip": "10.0.0.1", "port": 80, "meta": {"endpoint_addr_weight": 0.5}}], "meta": {}},
        )
        for bad in ({"type": "weird"}, {"type": "bound", "addrs": [{"ip": "x"}]}, {"type": "bound", "addrs": [{"ip": "x", "port": True}]}, []):
            self.assertRaises(CodecError, addrFromJSON, bad)

    def test_boundTree(self) -> None:
        """
        Bound trees round-trip (leaf, union, alt, neg, fail, empty) with no path fields.
        """
        addr = Var(AddrBound([Address("127.0.0.1", 1)]))
        a = Bound(Path.read("/#/io.l5d.fs/a"), addr, Path.read("/rest"))
        b = Bound(Path.read("/$/inet/127.0.0.1/2"), Var(AddrNeg))
        tree = Union(Weighted(3.0, Leaf(a)), Weighted(1.0, Leaf(b)))
        doc = boundTreeToJSON(tree)
        self.assertEqual(doc["union"][0], {"weight": 3.0, "tree": {"type": "leaf", "bound": {
            "addr": {"type": "bound", "addrs": [{"ip": "127.0.0.1", "port": 1, "meta": {}}], "meta": {}},
            "id": "/#/io.l5d.fs/a", "path": "/rest"}}})
        made = []

        def boundFor(ident: Path, residual: Path) -> Bound:
            made.append((ident.show, residual.show))
            return Bound(ident, Var(AddrPending), residual)

        self.assertEqual(boundTreeFromJSON(doc, boundFor), tree)
        self.assertEqual(made, [("/#/io.l5d.fs/a", "/rest"), ("/$/inet/127.0.0.1/2", "/")])
        for simple in (Neg, Fail, Empty):
            self.assertIs(boundTreeFromJSON(boundTreeToJSON(simple), boundFor), simple)
        self.assertEqual(boundTreeToJSON(Neg), {"type": "neg"})
        for bad in ({"type": "leaf", "bound": {"id": "nope"}}, {"type": "x"}, {"type": "union", "union": [{"weight": "1"}]}):
            self.assertRaises(CodecError, boundTreeFromJSON, bad, boundFor)

    def test_delegateTree(self) -> None:
        """
        Linkerd's delegator example parses and renders back to the exact same text.
        """
        tree = delegateTreeFromJSON(json.loads(DELEGATOR_EXAMPLE))
        self.assertEqual(tree.toJSONText(), DELEGATOR_EXAMPLE)
        for text in (
            '{"type":"neg","path":"~"}',
            '{"type":"fail","path":"!"}',
            '{"type":"empty","path":"/a/x"}',
            '{"type":"union","path":"/a","union":[{"weight":0.7,"tree":{"type":"neg","path":"/b"}},'
            '{"weight":0.3,"tree":{"type":"neg","path":"/c"}}]}',
        ):
            self.assertEqual(delegateTreeFromJSON(json.loads(text)).toJSONText(), text)
        self.assertRaises(CodecError, delegateTreeFromJSON, {"type": "weird", "path": "/a"})
        self.assertRaises(CodecError, delegateTreeFromJSON, {"type": "neg", "path": "no slash"})


class HelperTests(SynchronousTestCase):
    """
    Small helpers of the control plane.
    """

    def test_etags(self) -> None:
        """
        ETags are base64 versions; If-Match values may be quoted or weak; garbage matches nothing.
        """
        etag = etagOf(b"\x00\x01")
        self.assertEqual(etag, b"AAE=")
        for value in (b"AAE=", b'"AAE="', b'W/"AAE="', b" AAE= "):
            self.assertEqual(versionFromETag(value), b"\x00\x01")
        self.assertIsNone(versionFromETag(b"not base64!"))

    def test_stripTransformerPrefix(self) -> None:
        """
        /%/<transformer prefix> is dropped up to the concrete /# or /$ part.
        """
        for text, expected in [
            ("/%/io.l5d.port/4141/#/io.l5d.fs/hello", "/#/io.l5d.fs/hello"),
            ("/%/io.l5d.localhost/$/inet/127.0.0.1/1", "/$/inet/127.0.0.1/1"),
            ("/#/io.l5d.fs/hello", "/#/io.l5d.fs/hello"),
            ("/%/nothing", "/%/nothing"),
        ]:
            self.assertEqual(stripTransformerPrefix(Path.read(text)).show, expected)

    def test_mergeAddrs(self) -> None:
        """
        A tree's address set is every leaf's addresses together; pending, failed and neg otherwise.
        """
        one = AddrBound([Address("127.0.0.1", 1)])
        two = AddrBound([Address("127.0.0.1", 2)])
        leaf = Leaf(Bound(Path.read("/x"), Var(one)))
        self.assertEqual(mergeAddrs(leaf, [one, two, AddrNeg]), AddrBound([Address("127.0.0.1", 1), Address("127.0.0.1", 2)]))
        self.assertIs(mergeAddrs(leaf, [AddrNeg, AddrPending]), AddrPending)
        self.assertIsInstance(mergeAddrs(leaf, [AddrNeg, AddrFailed(Exception("x"))]), AddrFailed)
        self.assertIs(mergeAddrs(leaf, [AddrNeg]), AddrNeg)
        self.assertIs(mergeAddrs(Neg, []), AddrNeg)
        self.assertEqual(mergeAddrs(Empty, []), AddrBound(()))
        self.assertIsInstance(mergeAddrs(Fail, []), AddrFailed)
