"""
Tests for namerd's HTTP API (C{io.l5d.httpController}) over real loopback
sockets: every endpoint, status code and watch stream, on each storage
kind (C{io.l5d.inMemory}, C{io.l5d.fs}, and C{io.l5d.etcd} against a real
etcd server started for the test class).
"""

from __future__ import annotations

import base64
import json
import tempfile
from typing import Any, Dict, List, Optional

from twisted.internet import defer, reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from linkerpy.interfaces import INamer
from linkerpy.namerd.api import NamerdAPI
from linkerpy.namerd.core import Namerd
from linkerpy.namerd.service import ApiSite
from linkerpy.namerd.streaming import BodyStream, LineDecoder, newHTTPClient
from linkerpy.namerd.watch import SKIP, EndOfStream, WatchStream
from linkerpy.naming import Activity, AddrBound, AddrNeg, AddrPending, Address, Bound, Leaf, Neg, Path, Var
from linkerpy.plugins.registry import defaultRegistry
from tests.support import httpGet, waitUntil

TIMEOUT = 30.0
TOKEN = "s3cret-token-0123456789"
POLICY = {"service": {"kind": "io.l5d.static", "configs": [{"prefix": "/svc/hello", "totalTimeoutMs": 600}]}}


@implementer(INamer)
class FakeNamer:
    """
    A namer at C{/#/test} whose names and address sets the test controls.
    """

    prefix = Path.read("/#/test")

    def __init__(self) -> None:
        self.addrs: Dict[str, Var[Any]] = {}

    def add(self, name: str, addr: Any = AddrPending) -> Var[Any]:
        var = self.addrs[name] = Var(addr)
        return var

    def lookup(self, path: Path) -> Any:
        if not path.elems:
            return Activity.value(Neg)
        name = path.elems[0].decode()
        if name not in self.addrs:
            return Activity.value(Neg)
        return Activity.value(Leaf(Bound(Path("#", "test", name), self.addrs[name], path.drop(1))))

    def names(self) -> defer.Deferred:
        """
        Enumerate, as io.l5d.fs does: path element tuples below the prefix.
        """
        return defer.succeed(frozenset((n.encode(),) for n in self.addrs))


class Watch:
    """
    A streaming GET collecting the lines of the answer.
    """

    def __init__(self, url: str, headers: Optional[Dict[bytes, List[bytes]]] = None) -> None:
        self.url = url
        self.headers = headers or {}
        self.lines: List[str] = []
        self.code: Optional[int] = None
        self.stream: Optional[BodyStream] = None
        self.response: Any = None

    @defer.inlineCallbacks
    def open(self) -> Any:
        client = newHTTPClient(reactor, persistent=False)
        self.response = yield client.get(self.url, headers=self.headers, unbuffered=True, reactor=reactor, timeout=TIMEOUT)
        self.code = self.response.code
        self.stream = BodyStream(LineDecoder(lambda line: self.lines.append(line.decode("utf-8"))))
        self.response.deliverBody(self.stream)
        return self

    def waitLines(self, n: int) -> defer.Deferred:
        return waitUntil(lambda: len(self.lines) >= n, TIMEOUT, f"{n} lines from {self.url} (have {self.lines})")

    def close(self) -> defer.Deferred:
        if self.stream is None:
            return defer.succeed(None)
        self.stream.abort()
        return self.stream.done.addErrback(lambda _: None)


class ApiTestsMixin:
    """
    The API on one storage kind.  Subclasses provide C{makeStore()} (a
    Deferred firing with a started store).
    """

    timeout = 120
    token: Optional[str] = None
    maxWatches = 100

    def makeStore(self) -> defer.Deferred:
        raise NotImplementedError()

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.store = yield self.makeStore()
        self.addCleanup(self.store.close)
        self.namer = FakeNamer()
        self.namerd = Namerd(self.store, [(Path.read("/#/test"), self.namer)], reactor, defaultRegistry())
        self.namerd.boundNamesInterval = 0.05
        self.api = NamerdAPI(self.namerd, reactor, token=self.token, maxWatches=self.maxWatches, requestTimeout=2.0)
        self.site = ApiSite(self.api, 4096, reactor)
        self.port = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.addCleanup(self._stopServer)
        self.base = f"http://127.0.0.1:{self.port.getHost().port}"
        self.watches: List[Watch] = []

    @defer.inlineCallbacks
    def _stopServer(self) -> Any:
        for w in self.watches:
            yield w.close()
        yield self.port.stopListening()
        self.site.closeAll()
        yield waitUntil(lambda: not self.site.openProtocols, TIMEOUT, "server connections to close")

    def request(self, method: str, path: str, body: Any = None, headers: Optional[Dict[str, Any]] = None) -> defer.Deferred:
        hdrs: Dict[str, Any] = dict(headers or {})
        data = body
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode("utf-8")
            hdrs.setdefault("content-type", "application/json")
        elif isinstance(body, str):
            data = body.encode("utf-8")
            hdrs.setdefault("content-type", "application/dtab")
        if method in ("POST", "PUT", "DELETE") and self.token:
            hdrs.setdefault("authorization", f"Bearer {self.token}")
        return httpGet(self.base + path, headers=hdrs, method=method, data=data, timeout=TIMEOUT)

    @defer.inlineCallbacks
    def watch(self, path: str, headers: Optional[Dict[bytes, List[bytes]]] = None) -> Any:
        w = Watch(self.base + path, headers)
        self.watches.append(w)
        yield w.open()
        return w

    # -- dtabs ------------------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_dtabsListAndGet(self) -> Any:
        """
        GET /api/1/dtabs lists namespaces (sorted); GET of a namespace gives JSON and an ETag.
        """
        response, body = yield self.request("GET", "/api/1/dtabs")
        self.assertEqual((response.code, json.loads(body)), (200, []))
        for ns in ("zeta", "alpha"):
            response, _ = yield self.request("POST", f"/api/1/dtabs/{ns}", "/svc => /#/io.l5d.fs")
            self.assertEqual(response.code, 204)
        response, body = yield self.request("GET", "/api/1/dtabs")
        self.assertEqual(json.loads(body), ["alpha", "zeta"])
        response, body = yield self.request("GET", "/api/1/dtabs/alpha")
        self.assertEqual(response.code, 200)
        self.assertEqual(json.loads(body), [{"prefix": "/svc", "dst": "/#/io.l5d.fs"}])
        etag = response.headers.getRawHeaders(b"etag")[0]
        self.assertTrue(base64.b64decode(etag))
        response, body = yield self.request("GET", "/api/1/dtabs/alpha", headers={"accept": "application/dtab"})
        self.assertEqual((response.code, body), (200, b"/svc=>/#/io.l5d.fs\n"))
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"application/dtab"])

    @defer.inlineCallbacks
    def test_dtabMissingAndHead(self) -> Any:
        """
        A missing namespace is 404 for GET and HEAD; HEAD of an existing one gives its ETag and no body.
        """
        response, _ = yield self.request("GET", "/api/1/dtabs/nope")
        self.assertEqual(response.code, 404)
        response, _ = yield self.request("HEAD", "/api/1/dtabs/nope")
        self.assertEqual(response.code, 404)
        yield self.request("POST", "/api/1/dtabs/ns", "/a=>/b")
        response, body = yield self.request("HEAD", "/api/1/dtabs/ns")
        self.assertEqual((response.code, body), (200, b""))
        get, _ = yield self.request("GET", "/api/1/dtabs/ns")
        self.assertEqual(response.headers.getRawHeaders(b"etag"), get.headers.getRawHeaders(b"etag"))

    @defer.inlineCallbacks
    def test_createFormsAndConflicts(self) -> Any:
        """
        POST accepts JSON and dtab bodies (204), answers 409 for an existing namespace and 400 for bad bodies.
        """
        response, _ = yield self.request("POST", "/api/1/dtabs/json", [{"prefix": "/svc", "dst": "/a | /b"}])
        self.assertEqual(response.code, 204)
        response, body = yield self.request("GET", "/api/1/dtabs/json", headers={"accept": "text/plain"})
        self.assertEqual(body, b"/svc=>/a | /b\n")
        response, _ = yield self.request("POST", "/api/1/dtabs/json", "/x=>/y")
        self.assertEqual(response.code, 409)
        response, body = yield self.request("POST", "/api/1/dtabs/bad", "/svc => ")
        self.assertEqual(response.code, 400)
        self.assertIn(b"invalid dtab", body)
        response, body = yield self.request("POST", "/api/1/dtabs/bad", [{"prefix": "/svc"}])
        self.assertEqual(response.code, 400)
        self.assertIn(b"dtab[0].dst", body)
        response, body = yield self.request(
            "POST", "/api/1/dtabs/bad", b"/a=>/b", headers={"content-type": "application/x-www-form-urlencoded"}
        )
        self.assertEqual(response.code, 400)
        self.assertIn(b"Invalid Content-Type", body)
        response, _ = yield self.request("GET", "/api/1/dtabs/bad")
        self.assertEqual(response.code, 404)

    @defer.inlineCallbacks
    def test_putCompareAndSwap(self) -> Any:
        """
        PUT with the current ETag succeeds (new ETag); a stale one gets 412; If-Match on a missing namespace 404.
        """
        yield self.request("POST", "/api/1/dtabs/ns", "/a=>/b")
        get, _ = yield self.request("GET", "/api/1/dtabs/ns")
        etag = get.headers.getRawHeaders(b"etag")[0].decode()
        response, _ = yield self.request("PUT", "/api/1/dtabs/ns", "/a=>/c", headers={"if-match": etag})
        self.assertEqual(response.code, 204)
        newEtag = response.headers.getRawHeaders(b"etag")[0].decode()
        self.assertNotEqual(newEtag, etag)
        response, _ = yield self.request("PUT", "/api/1/dtabs/ns", "/a=>/d", headers={"if-match": etag})
        self.assertEqual(response.code, 412)
        response, _ = yield self.request("PUT", "/api/1/dtabs/ns", "/a=>/d", headers={"if-match": '"not base64!"'})
        self.assertEqual(response.code, 412)
        response, _ = yield self.request("PUT", "/api/1/dtabs/missing", "/a=>/d", headers={"if-match": etag})
        self.assertEqual(response.code, 404)
        response, body = yield self.request("GET", "/api/1/dtabs/ns", headers={"accept": "application/dtab"})
        self.assertEqual(body, b"/a=>/c\n")

    @defer.inlineCallbacks
    def test_putWithoutIfMatchCreates(self) -> Any:
        """
        PUT without If-Match is an unconditional write that creates a missing namespace.
        """
        response, _ = yield self.request("PUT", "/api/1/dtabs/fresh", "/a=>/b")
        self.assertEqual(response.code, 204)
        response, body = yield self.request("GET", "/api/1/dtabs/fresh")
        self.assertEqual(json.loads(body), [{"prefix": "/a", "dst": "/b"}])

    @defer.inlineCallbacks
    def test_delete(self) -> Any:
        """
        DELETE answers 204, then 404.
        """
        yield self.request("POST", "/api/1/dtabs/ns", "/a=>/b")
        response, _ = yield self.request("DELETE", "/api/1/dtabs/ns")
        self.assertEqual(response.code, 204)
        response, _ = yield self.request("DELETE", "/api/1/dtabs/ns")
        self.assertEqual(response.code, 404)

    @defer.inlineCallbacks
    def test_badRequests(self) -> Any:
        """
        Invalid namespace names get 400, unknown endpoints 404, unsupported methods 405 with Allow.
        """
        response, body = yield self.request("GET", "/api/1/dtabs/..")
        self.assertIn(response.code, (400, 404))
        response, body = yield self.request("PUT", "/api/1/dtabs/a%2Fb", "/a=>/b")
        self.assertEqual(response.code, 400)
        self.assertIn(b"invalid namespace", body)
        response, _ = yield self.request("GET", "/api/2/dtabs")
        self.assertEqual(response.code, 404)
        response, _ = yield self.request("GET", "/api/1/dtabs/a/b")
        self.assertEqual(response.code, 404)
        response, _ = yield self.request("GET", "/api/1/bind")
        self.assertEqual(response.code, 404)
        response, _ = yield self.request("PATCH", "/api/1/dtabs/ns", "/a=>/b")
        self.assertEqual(response.code, 405)
        self.assertIn(b"PUT", response.headers.getRawHeaders(b"allow")[0])
        response, _ = yield self.request("POST", "/api/1/bind/ns", "/a=>/b")
        self.assertEqual(response.code, 405)

    @defer.inlineCallbacks
    def test_watchDtab(self) -> Any:
        """
        ?watch=true on a namespace streams null, then each distinct dtab, then null when deleted.
        """
        w = yield self.watch("/api/1/dtabs/ns?watch=true")
        self.assertEqual(w.code, 200)
        yield w.waitLines(1)
        self.assertEqual(w.lines, ["null"])
        yield self.request("PUT", "/api/1/dtabs/ns", "/a=>/b")
        yield w.waitLines(2)
        yield self.request("PUT", "/api/1/dtabs/ns", "/a => /b")  # same dtab: no new line
        yield self.request("PUT", "/api/1/dtabs/ns", "/a=>/c")
        yield w.waitLines(3)
        yield self.request("DELETE", "/api/1/dtabs/ns")
        yield w.waitLines(4)
        self.assertEqual(
            w.lines,
            ["null", '[{"prefix":"/a","dst":"/b"}]', '[{"prefix":"/a","dst":"/c"}]', "null"],
        )

    @defer.inlineCallbacks
    def test_watchDtabText(self) -> Any:
        """
        A dtab watch with Accept: application/dtab streams dtab text lines.
        """
        yield self.request("PUT", "/api/1/dtabs/ns", "/a=>/b")
        w = yield self.watch("/api/1/dtabs/ns?watch=true", {b"accept": [b"application/dtab"]})
        yield w.waitLines(1)
        yield self.request("PUT", "/api/1/dtabs/ns", "/a=>/b;/c=>/d")
        yield w.waitLines(2)
        self.assertEqual(w.lines, ["/a=>/b", "/a=>/b;/c=>/d"])

    @defer.inlineCallbacks
    def test_watchDtabList(self) -> Any:
        """
        ?watch=true on /api/1/dtabs streams the namespace list as it changes.
        """
        w = yield self.watch("/api/1/dtabs?watch=true")
        yield w.waitLines(1)
        yield self.request("PUT", "/api/1/dtabs/b", "/a=>/b")
        yield w.waitLines(2)
        yield self.request("PUT", "/api/1/dtabs/a", "/a=>/b")
        yield w.waitLines(3)
        self.assertEqual([json.loads(line) for line in w.lines], [[], ["b"], ["a", "b"]])

    # -- policy --------------------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_policyRoundTrip(self) -> Any:
        """
        A valid policy document is stored (204), read back with an ETag, listed, and deleted.
        """
        response, _ = yield self.request("PUT", "/api/1/policy/default", POLICY)
        self.assertEqual(response.code, 204)
        response, body = yield self.request("GET", "/api/1/policy/default")
        self.assertEqual(response.code, 200)
        self.assertEqual(json.loads(body), POLICY)
        etag = response.headers.getRawHeaders(b"etag")[0].decode()
        response, _ = yield self.request("PUT", "/api/1/policy/default", {"client": {"kind": "io.l5d.global"}},
                                         headers={"if-match": etag})
        self.assertEqual(response.code, 204)
        response, _ = yield self.request("PUT", "/api/1/policy/default", POLICY, headers={"if-match": etag})
        self.assertEqual(response.code, 412)
        response, body = yield self.request("GET", "/api/1/policy")
        self.assertEqual(json.loads(body), ["default"])
        response, _ = yield self.request("POST", "/api/1/policy/default", POLICY)
        self.assertEqual(response.code, 409)
        response, _ = yield self.request("DELETE", "/api/1/policy/default")
        self.assertEqual(response.code, 204)
        response, _ = yield self.request("GET", "/api/1/policy/default")
        self.assertEqual(response.code, 404)

    @defer.inlineCallbacks
    def test_invalidPolicyRejected(self) -> Any:
        """
        Invalid policies get 400 naming the bad key, and nothing is stored or pushed.
        """
        yield self.request("PUT", "/api/1/policy/default", POLICY)
        w = yield self.watch("/api/1/policy/default?watch=true")
        yield w.waitLines(1)
        cases = [
            ({"service": {"kind": "io.l5d.static", "configs": [{"prefix": "/svc/a", "totalTimeoutMs": "soon"}]}},
             b"service.configs[0].totalTimeoutMs"),
            ({"service": {"kind": "io.l5d.static", "configs": [{"prefix": "/svc/a", "totalTimeout": 5}]}},
             b"service.configs[0].totalTimeout"),
            ({"client": {"kind": "io.l5d.nope"}}, b"client.kind"),
            ({"service": {"kind": "io.l5d.namerd.http", "dst": "127.0.0.1:4180"}}, b"service.kind"),
            ({"servic": {}}, b"servic"),
            ({"protocol": "thrift", "service": {"kind": "io.l5d.global"}}, b"protocol"),
            ([1, 2], b"JSON object"),
        ]
        for document, key in cases:
            response, body = yield self.request("PUT", "/api/1/policy/default", document)
            self.assertEqual(response.code, 400, body)
            self.assertIn(key, body)
        response, body = yield self.request("PUT", "/api/1/policy/default", b"{not json", headers={"content-type": "application/json"})
        self.assertEqual(response.code, 400)
        response, body = yield self.request("PUT", "/api/1/policy/default", b"{}", headers={"content-type": "application/dtab"})
        self.assertEqual(response.code, 400)
        response, body = yield self.request("GET", "/api/1/policy/default")
        self.assertEqual(json.loads(body), POLICY)
        self.assertEqual(len(w.lines), 1)

    @defer.inlineCallbacks
    def test_watchPolicy(self) -> Any:
        """
        ?watch=true on a policy namespace streams each document (null when absent).
        """
        w = yield self.watch("/api/1/policy/default?watch=true")
        yield w.waitLines(1)
        yield self.request("PUT", "/api/1/policy/default", POLICY)
        yield w.waitLines(2)
        yield self.request("DELETE", "/api/1/policy/default")
        yield w.waitLines(3)
        self.assertEqual([json.loads(line) for line in w.lines], [None, POLICY, None])

    # -- naming ---------------------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_bind(self) -> Any:
        """
        GET /api/1/bind binds through the stored dtab (plus ?dtab=) and shows each leaf's addresses.
        """
        yield self.request("PUT", "/api/1/dtabs/default", "/svc => /$/inet/127.0.0.1")
        response, body = yield self.request("GET", "/api/1/bind/default?path=/svc/8080")
        self.assertEqual(response.code, 200)
        self.assertEqual(
            json.loads(body),
            {"type": "leaf", "bound": {"addr": {"type": "bound", "addrs": [{"ip": "127.0.0.1", "port": 8080, "meta": {}}],
                                                "meta": {}}, "id": "/$/inet/127.0.0.1/8080", "path": "/"}},
        )
        response, body = yield self.request("GET", "/api/1/bind/default?path=/svc/8080/rest&dtab=/svc/8080=>/$/inet/127.0.0.2/9")
        self.assertEqual(json.loads(body)["bound"]["id"], "/$/inet/127.0.0.2/9")
        self.assertEqual(json.loads(body)["bound"]["path"], "/rest")
        response, body = yield self.request("GET", "/api/1/bind/default?path=/nothing")
        self.assertEqual(json.loads(body), {"type": "neg"})
        response, body = yield self.request("GET", "/api/1/bind/other?path=/svc/8080")
        self.assertEqual(json.loads(body), {"type": "neg"})

    @defer.inlineCallbacks
    def test_bindUnion(self) -> Any:
        """
        A weighted union binds to a union document.
        """
        yield self.request("PUT", "/api/1/dtabs/default", "/svc/x => 3 * /$/inet/127.0.0.1/1 & /$/inet/127.0.0.1/2")
        response, body = yield self.request("GET", "/api/1/bind/default?path=/svc/x")
        doc = json.loads(body)
        self.assertEqual(doc["type"], "union")
        self.assertEqual([b["weight"] for b in doc["union"]], [3.0, 1.0])
        self.assertEqual([b["tree"]["bound"]["id"] for b in doc["union"]], ["/$/inet/127.0.0.1/1", "/$/inet/127.0.0.1/2"])

    @defer.inlineCallbacks
    def test_bindErrors(self) -> Any:
        """
        A missing or malformed path, or a malformed dtab, gets 400 with Namerd's messages.
        """
        response, body = yield self.request("GET", "/api/1/bind/default")
        self.assertEqual(response.code, 400)
        response, body = yield self.request("GET", "/api/1/bind/default?path=invalid-param")
        self.assertEqual(response.code, 400)
        self.assertIn(b"Invalid path: invalid-param / '/' expected but 'i' found at '[i]nvalid-param'", body)
        response, body = yield self.request("GET", "/api/1/bind/default?path=/a&dtab=/a=>")
        self.assertEqual(response.code, 400)
        self.assertIn(b"Invalid dtab", body)

    @defer.inlineCallbacks
    def test_watchBind(self) -> Any:
        """
        A bind watch streams a new tree when the dtab changes and when a leaf's addresses change.
        """
        addr = self.namer.add("hello", AddrBound([Address("127.0.0.1", 1)]))
        yield self.request("PUT", "/api/1/dtabs/default", "/svc => /#/test")
        w = yield self.watch("/api/1/bind/default?path=/svc/hello&watch=true")
        yield w.waitLines(1)
        self.assertEqual(json.loads(w.lines[0])["bound"]["id"], "/#/test/hello")
        addr.update(AddrBound([Address("127.0.0.1", 2)]))
        yield w.waitLines(2)
        self.assertEqual(json.loads(w.lines[1])["bound"]["addr"]["addrs"][0]["port"], 2)
        yield self.request("PUT", "/api/1/dtabs/default", "/svc => /$/inet/127.0.0.1/3")
        yield w.waitLines(3)
        self.assertEqual(json.loads(w.lines[2])["bound"]["id"], "/$/inet/127.0.0.1/3")
        yield self.request("DELETE", "/api/1/dtabs/default")
        yield w.waitLines(4)
        self.assertEqual(json.loads(w.lines[3]), {"type": "neg"})

    @defer.inlineCallbacks
    def test_watchReleasesObservation(self) -> Any:
        """
        When a watching client goes away, the server stops observing the namer.
        """
        addr = self.namer.add("hello", AddrBound([Address("127.0.0.1", 1)]))
        yield self.request("PUT", "/api/1/dtabs/default", "/svc => /#/test")
        w = yield self.watch("/api/1/bind/default?path=/svc/hello&watch=true")
        yield w.waitLines(1)
        self.assertEqual(self.api.watches, 1)
        self.assertGreater(addr.observerCount, 0)
        yield w.close()
        yield waitUntil(lambda: self.api.watches == 0 and addr.observerCount == 0, TIMEOUT, "the watch to be released")

    @defer.inlineCallbacks
    def test_addr(self) -> Any:
        """
        GET /api/1/addr gives a concrete name's address set, streams its changes, and strips /%/ prefixes.
        """
        addr = self.namer.add("hello", AddrBound([Address("127.0.0.1", 1, 2.0)]))
        response, body = yield self.request("GET", "/api/1/addr/default?path=/%23/test/hello")
        self.assertEqual(
            json.loads(body),
            {"type": "bound", "addrs": [{"ip": "127.0.0.1", "port": 1, "meta": {"endpoint_addr_weight": 2.0}}], "meta": {}},
        )
        response, body = yield self.request("GET", "/api/1/addr/default?path=/%25/io.l5d.port/4141/%23/test/hello")
        self.assertEqual(json.loads(body)["type"], "bound")
        response, body = yield self.request("GET", "/api/1/addr/default?path=/%23/test/nope")
        self.assertEqual(json.loads(body), {"type": "neg"})
        w = yield self.watch("/api/1/addr/default?path=/%23/test/hello&watch=true")
        yield w.waitLines(1)
        addr.update(AddrNeg)
        yield w.waitLines(2)
        addr.update(AddrBound([Address("127.0.0.1", 5)]))
        yield w.waitLines(3)
        self.assertEqual([json.loads(line)["type"] for line in w.lines], ["bound", "neg", "bound"])

    @defer.inlineCallbacks
    def test_addrPendingTimesOut(self) -> Any:
        """
        A non-watch addr request for a set that stays pending answers "pending" after the request timeout.
        """
        self.namer.add("slow")
        response, body = yield self.request("GET", "/api/1/addr/default?path=/%23/test/slow")
        self.assertEqual(json.loads(body), {"type": "pending"})

    @defer.inlineCallbacks
    def test_resolve(self) -> Any:
        """
        GET /api/1/resolve gives the merged addresses of a logical name, and streams changes.
        """
        yield self.request("PUT", "/api/1/dtabs/default", "/svc/x => /$/inet/127.0.0.1/1 & /#/test/b")
        b = self.namer.add("b", AddrBound([Address("127.0.0.2", 2)]))
        response, body = yield self.request("GET", "/api/1/resolve/default?path=/svc/x")
        ports = sorted(a["port"] for a in json.loads(body)["addrs"])
        self.assertEqual(ports, [1, 2])
        w = yield self.watch("/api/1/resolve/default?path=/svc/x&watch=true")
        yield w.waitLines(1)
        b.update(AddrBound([Address("127.0.0.2", 3)]))
        yield w.waitLines(2)
        self.assertEqual(sorted(a["port"] for a in json.loads(w.lines[1])["addrs"]), [1, 3])
        response, body = yield self.request("GET", "/api/1/resolve/default?path=/unknown")
        self.assertEqual(json.loads(body), {"type": "neg"})

    @defer.inlineCallbacks
    def test_delegate(self) -> Any:
        """
        GET /api/1/delegate explains a binding through the stored dtab followed by ?dtab=.
        """
        yield self.request("PUT", "/api/1/dtabs/default", "/svc => /host; /host => /$/inet/127.0.0.1")
        response, body = yield self.request("GET", "/api/1/delegate/default?path=/svc/80")
        self.assertEqual(response.code, 200)
        tree = json.loads(body)
        self.assertEqual(tree["type"], "delegate")
        self.assertEqual(tree["path"], "/svc/80")
        self.assertEqual(tree["delegate"]["dentry"], {"prefix": "/svc", "dst": "/host"})
        response, body = yield self.request("GET", "/api/1/delegate?namespace=default&path=/svc/80&dtab=/svc/80=>/$/nil")
        tree = json.loads(body)
        self.assertEqual(tree["type"], "alt")
        self.assertEqual(tree["alt"][0]["type"], "empty")
        response, body = yield self.request("GET", "/api/1/delegate/default?path=/svc/80&watch=true")
        self.assertEqual(response.code, 400)
        response, body = yield self.request("GET", "/api/1/delegate/default?path=nope")
        self.assertEqual(response.code, 400)

    @defer.inlineCallbacks
    def test_boundNames(self) -> Any:
        """
        GET /api/1/bound-names lists the names of enumerating namers, and streams changes (polled).
        """
        self.namer.add("b")
        response, body = yield self.request("GET", "/api/1/bound-names")
        self.assertEqual(json.loads(body), ["/#/test/b"])
        w = yield self.watch("/api/1/bound-names?watch=true")
        yield w.waitLines(1)
        self.namer.add("a")
        yield w.waitLines(2)
        self.assertEqual(json.loads(w.lines[1]), ["/#/test/a", "/#/test/b"])


class InMemoryApiTests(ApiTestsMixin, TestCase):
    """
    The API on C{io.l5d.inMemory}, plus what does not depend on the store.
    """

    def makeStore(self) -> defer.Deferred:
        from linkerpy.namerd.storage.memory import InMemoryStore

        store = InMemoryStore()
        return store.start().addCallback(lambda _: store)

    @defer.inlineCallbacks
    def test_bodyTooLarge(self) -> Any:
        """
        A request body over the limit gets 413 and is not stored.
        """
        response, body = yield self.request("PUT", "/api/1/dtabs/big", "/a=>/b;" * 1000)
        self.assertEqual(response.code, 413)
        response, _ = yield self.request("GET", "/api/1/dtabs/big")
        self.assertEqual(response.code, 404)

    @defer.inlineCallbacks
    def test_watchLimit(self) -> Any:
        """
        Watches beyond maxWatches get 503; closing one makes room.
        """
        self.api.maxWatches = 1
        w = yield self.watch("/api/1/dtabs?watch=true")
        yield w.waitLines(1)
        response, body = yield self.request("GET", "/api/1/dtabs?watch=true")
        self.assertEqual(response.code, 503)
        yield w.close()
        yield waitUntil(lambda: self.api.watches == 0, TIMEOUT, "the watch to close")
        w2 = yield self.watch("/api/1/dtabs?watch=true")
        yield w2.waitLines(1)
        self.assertEqual(w2.code, 200)


class AuthApiTests(TestCase):
    """
    Bearer-token protection of mutations.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_mutationsNeedToken(self) -> Any:
        """
        With a token configured, POST/PUT/DELETE without it get 401; reads need none; the right token works.
        """
        from linkerpy.namerd.storage.memory import InMemoryStore

        namerd = Namerd(InMemoryStore(), [], reactor, defaultRegistry())
        site = ApiSite(NamerdAPI(namerd, reactor, token=TOKEN), 4096, reactor)
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        base = f"http://127.0.0.1:{port.getHost().port}/api/1/dtabs/ns"
        dtab = {"content-type": "application/dtab"}
        for method in ("POST", "PUT", "DELETE"):
            response, _ = yield httpGet(base, headers=dtab, method=method, data=b"/a=>/b")
            self.assertEqual(response.code, 401)
            self.assertEqual(response.headers.getRawHeaders(b"www-authenticate"), [b'Bearer realm="namerd"'])
        response, _ = yield httpGet(base, headers=dict(dtab, authorization="Bearer wrong"), method="PUT", data=b"/a=>/b")
        self.assertEqual(response.code, 401)
        response, _ = yield httpGet(base, headers=dict(dtab, authorization=f"Bearer {TOKEN}"), method="PUT", data=b"/a=>/b")
        self.assertEqual(response.code, 204)
        response, _ = yield httpGet(base)
        self.assertEqual(response.code, 200)


class FsApiTests(ApiTestsMixin, TestCase):
    """
    The API on C{io.l5d.fs} (file operations in worker threads).
    """

    def makeStore(self) -> defer.Deferred:
        from linkerpy.namerd.storage.fs import FsStore

        store = FsStore(tempfile.mkdtemp(prefix="linkerpy-fs-api-"), reactor, pollInterval=0.2)
        return store.start().addCallback(lambda _: store)


class EtcdApiTests(ApiTestsMixin, TestCase):
    """
    The API on C{io.l5d.etcd} against a real etcd server (one per class;
    each test uses its own key prefixes).
    """

    etcd: Any = None
    counter = 0

    @classmethod
    def setUpClass(cls) -> None:
        from linkerpy.namerd.testing import EtcdServer, requireEtcd

        cls.etcd = EtcdServer(requireEtcd(cls)).start()

    @classmethod
    def tearDownClass(cls) -> None:
        if cls.etcd is not None:
            cls.etcd.cleanup()

    def makeStore(self) -> defer.Deferred:
        from linkerpy.namerd.storage.etcd import EtcdStore

        EtcdApiTests.counter += 1
        prefix = f"/t{EtcdApiTests.counter}"
        store = EtcdStore(
            self.etcd.host, self.etcd.port, {"dtabs": prefix + "/dtabs", "policy": prefix + "/policy"}, reactor,
            backoff=(0.1, 1.0),
        )
        return store.start().addCallback(lambda _: store)


class FakeRequest:
    """
    Just enough of a twisted.web request for L{WatchStream}.
    """

    def __init__(self) -> None:
        self.code: Optional[int] = None
        self.headers: Dict[bytes, bytes] = {}
        self.written: List[bytes] = []
        self.producer: Any = None
        self.finished = False
        self._disconnected = False
        self._notify: List[defer.Deferred] = []

    def setResponseCode(self, code: int) -> None:
        self.code = code

    def setHeader(self, name: bytes, value: bytes) -> None:
        self.headers[name] = value

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def notifyFinish(self) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self._notify.append(d)
        return d

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def finish(self) -> None:
        self.finished = True
        for d in self._notify:
            d.callback(None)

    def lose(self) -> None:
        self._disconnected = True
        for d in self._notify:
            d.errback(Exception("connection lost"))

    def lines(self) -> List[bytes]:
        return [w for w in self.written if w]


class WatchStreamTests(SynchronousTestCase):
    """
    L{WatchStream} on a fake request.
    """

    def test_deduplicatesAndSkips(self) -> None:
        """
        Values rendering like the previous one, or to SKIP, write nothing; the head is sent at once.
        """
        request = FakeRequest()
        var: Var[Any] = Var(1)
        WatchStream(request, var, lambda v: SKIP if v is None else str(v // 10)).start()
        self.assertEqual((request.code, request.written), (200, [b"", b"0\n"]))
        for v in (2, None, 11, 12):
            var.update(v)
        self.assertEqual(request.lines(), [b"0\n", b"1\n"])

    def test_slowClientGetsLatestOnly(self) -> None:
        """
        While paused, only the latest rendering is kept; it is written on resume.
        """
        request = FakeRequest()
        var: Var[Any] = Var(0)
        WatchStream(request, var, str).start()
        request.producer.pauseProducing()
        for v in range(1, 6):
            var.update(v)
        self.assertEqual(request.lines(), [b"0\n"])
        request.producer.resumeProducing()
        self.assertEqual(request.lines(), [b"0\n", b"5\n"])

    def test_endOfStream(self) -> None:
        """
        EndOfStream writes its message as the last line, finishes the response and stops observing.
        """
        request = FakeRequest()
        var: Var[Any] = Var("ok")
        closed: List[bool] = []

        def render(v: Any) -> str:
            if v == "bad":
                raise EndOfStream("binding failed")
            return v

        WatchStream(request, var, render, onClose=lambda: closed.append(True)).start()
        var.update("bad")
        self.assertEqual(request.lines(), [b"ok\n", b"binding failed\n"])
        self.assertTrue(request.finished)
        self.assertEqual((closed, var.observerCount), ([True], 0))

    def test_disconnectReleases(self) -> None:
        """
        A client going away closes the observation and calls onClose once.
        """
        request = FakeRequest()
        var: Var[Any] = Var("x")
        closed: List[bool] = []
        WatchStream(request, var, str, onClose=lambda: closed.append(True)).start()
        self.assertEqual(var.observerCount, 1)
        request.lose()
        self.assertEqual((closed, var.observerCount), ([True], 0))
        var.update("y")
        self.assertEqual(request.lines(), [b"x\n"])
