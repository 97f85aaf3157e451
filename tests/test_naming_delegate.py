"""
Tests for delegation trees, their JSON and the naming admin resources.
"""

from __future__ import annotations

import json
import os
from io import BytesIO
from typing import Any, List, Optional

from twisted.internet import reactor as globalReactor
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.server import Site
from twisted.web.test.requesthelper import DummyRequest

from linkerpy.admin.naming import BoundNamesResource, DelegatorResource, NamerStateResource, namingResources
from linkerpy.naming import Activity, Dtab, Path, Pending, Var
from linkerpy.naming.delegate import delegateTree
from linkerpy.naming.fs import FsNamer
from linkerpy.naming.interpreter import ConfiguredNamersInterpreter
from linkerpy.naming.system import SystemNamer
from tests.naming_support import ErrorNamer, vectors

ERROR = Path.read("/#/error")


def _interp(clock: Any = None, namers: Any = None) -> ConfiguredNamersInterpreter:
    clock = clock or MemoryReactorClock()
    if namers is None:
        namers = [(ERROR, ErrorNamer(ERROR))]
    return ConfiguredNamersInterpreter(clock, namers, system=SystemNamer(clock))


class DelegatorJSONVectorTests(SynchronousTestCase):
    def test_vectors(self) -> None:
        """Every delegator_json vector renders exactly its JSON text."""
        cases = vectors("delegator_json")
        self.assertTrue(cases)
        for case in cases:
            tree = self.successResultOf(_interp().delegate(Dtab.read(case["dtab"]), Path.read(case["path"])))
            self.assertEqual(tree.toJSONText(), case["json_text"], case["path"])
            self.assertEqual(tree.toJSON(), case["json"])


class DelegateTreeTests(SynchronousTestCase):
    def json(self, dtab: str, path: str) -> Any:
        return json.loads(delegateTree(Dtab.read(dtab), Path.read(path), _interp().lookup).toJSONText())

    def test_union(self) -> None:
        """Union nodes list every branch with its weight; an explicit $ is an empty node at the looked-up path."""
        got = self.json("/t => /s; /s => 0.7*/$/inet/127.0.0.1/1 & 0.3*/e; /e => $", "/t")
        self.assertEqual(got["type"], "delegate")
        union = got["delegate"]
        self.assertEqual(union["type"], "union")
        self.assertEqual(union["dentry"], {"prefix": "/t", "dst": "/s"})
        self.assertEqual(union["path"], "/s")
        self.assertEqual([b["weight"] for b in union["union"]], [0.7, 0.3])
        self.assertEqual(union["union"][0]["tree"]["type"], "leaf")
        empty = union["union"][1]["tree"]
        self.assertEqual(empty["delegate"] if "delegate" in empty else empty,
                         {"type": "empty", "path": "/e", "dentry": {"prefix": "/e", "dst": "$"}})

    def test_rootShapes(self) -> None:
        """Unmatched paths are a bare neg; a directly bound path is a leaf without dentry; several matches an alt."""
        self.assertEqual(self.json("", "/nope"), {"type": "neg", "path": "/nope"})
        leaf = self.json("", "/$/inet/127.0.0.1/9/x")
        self.assertEqual((leaf["type"], leaf["path"], "dentry" in leaf), ("leaf", "/$/inet/127.0.0.1/9/x", False))
        self.assertEqual(leaf["bound"]["path"], "/x")
        alt = self.json("/a=>/b;/a=>/c", "/a")
        self.assertEqual((alt["type"], "dentry" in alt, len(alt["alt"])), ("alt", False, 2))

    def test_failShapes(self) -> None:
        """An explicit ! shows path '!'; /$/fail shows its path; /$/nil is empty at the /$/nil path."""
        self.assertEqual(self.json("/a=>!", "/a")["delegate"]["path"], "!")
        self.assertEqual(self.json("/a=>/$/nil", "/a/x")["delegate"]["path"], "/$/nil/x")

    def test_depthExceptionInBranch(self) -> None:
        """A looping alternative becomes an exception node with the old Finagle message; others still show."""
        got = self.json("/loop=>/loop/x;/s=>/$/inet/127.0.0.1/1 | /loop", "/s")
        self.assertEqual((got["type"], got["path"], "dentry" in got), ("alt", "/s", False))
        branches = got["alt"]
        self.assertEqual(branches[1]["type"], "exception")
        self.assertEqual(branches[1]["message"], "Max recursion level reached.")

    def test_pendingNamerIsWaitedFor(self) -> None:
        """delegate waits for a pending namer's first answer before rendering."""
        var: Var[Any] = Var(Pending)

        class Slow:
            prefix = Path.read("/#/slow")

            def lookup(self, path: Path) -> Activity[Any]:
                return Activity(var)

        interp = _interp(namers=[(Slow.prefix, Slow())])
        d = interp.delegate(Dtab.read("/s=>/#/slow"), Path.read("/s/x"))
        self.assertNoResult(d)
        from linkerpy.naming import Ok
        from linkerpy.naming.tree import Leaf

        var.update(Ok(Leaf(Path.read("/$/inet/127.0.0.1/5"))))
        tree = self.successResultOf(d)
        self.assertIn('"port":5', tree.toJSONText())
        self.assertEqual(var.observerCount, 0)


def _request(method: bytes, args: Optional[dict] = None, body: bytes = b"", contentType: Optional[bytes] = None,
             postpath: Optional[List[bytes]] = None) -> DummyRequest:
    req = DummyRequest(postpath or [])
    req.method = method
    req.args = {k.encode(): [v.encode()] for k, v in (args or {}).items()}
    req.content = BytesIO(body)
    if contentType is not None:
        req.requestHeaders.setRawHeaders(b"content-type", [contentType])
    return req


def _render(resource: Any, req: DummyRequest) -> Any:
    result = getattr(resource, "render_" + req.method.decode())(req)
    if isinstance(result, bytes):
        req.write(result)
        req.finish()
    return req


def _body(req: DummyRequest) -> str:
    return b"".join(req.written).decode()


class DelegatorResourceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.interp = _interp(self.clock)
        self.base = Dtab.read("/svc=>/$/inet/127.0.0.1/80")
        routers = {"web": (self.interp, self.base)}
        self.resource = DelegatorResource(
            lambda label: routers.get(label or "web"), [(ERROR, ErrorNamer(ERROR))], clock=self.clock
        )

    def test_get(self) -> None:
        """GET delegates with the given dtab; without dtab the router's base dtab is used."""
        case = vectors("delegator_json")[0]
        req = _render(self.resource, _request(b"GET", {"path": case["path"], "dtab": case["dtab"], "namespace": "web"}))
        self.assertEqual((req.responseCode or 200, _body(req)), (200, case["json_text"]))
        req = _render(self.resource, _request(b"GET", {"path": "/svc"}))
        self.assertIn('"prefix":"/svc"', _body(req))

    def test_post(self) -> None:
        """POST takes JSON; other content types get 415; malformed bodies get 400."""
        body = json.dumps({"namespace": "web", "dtab": "/a=>/b", "path": "/a"}).encode()
        req = _render(self.resource, _request(b"POST", body=body, contentType=b"application/json; charset=utf-8"))
        self.assertIn('"type":"delegate"', _body(req))
        req = _render(self.resource, _request(b"POST", body=body, contentType=b"text/plain"))
        self.assertEqual(req.responseCode, 415)
        req = _render(self.resource, _request(b"POST", body=b'{"dtab": 3}', contentType=b"application/json"))
        self.assertEqual(req.responseCode, 400)
        self.assertIn("Malformed delegation request", _body(req))
        req = _render(self.resource, _request(b"POST", body=b"x" * 70000, contentType=b"application/json"))
        self.assertEqual(req.responseCode, 413)

    def test_errors(self) -> None:
        """Bad dtabs and paths get 400 with the parser message; unknown namespaces 404."""
        req = _render(self.resource, _request(b"GET", {"path": "/a", "dtab": "/a=>"}))
        self.assertEqual(req.responseCode, 400)
        self.assertEqual(_body(req), "Invalid dtab: simple expected but end of input found at '/a=>[]'\n")
        req = _render(self.resource, _request(b"GET", {"path": "invalid-param"}))
        self.assertEqual(_body(req), "Invalid path: '/' expected but 'i' found at '[i]nvalid-param'\n")
        req = _render(self.resource, _request(b"GET", {"dtab": ""}))
        self.assertEqual(req.responseCode, 400)
        req = _render(self.resource, _request(b"GET", {"path": "/a", "namespace": "nope"}))
        self.assertEqual(req.responseCode, 404)

    def test_timeout(self) -> None:
        """A delegation that does not finish within 2 s answers 503 'Request timed out.'."""
        var: Var[Any] = Var(Pending)

        class Slow:
            def lookup(self, path: Path) -> Activity[Any]:
                return Activity(var)

        interp = _interp(self.clock, [(Path.read("/#/slow"), Slow())])
        resource = DelegatorResource(lambda label: (interp, Dtab.empty), clock=self.clock)
        req = _render(resource, _request(b"GET", {"path": "/#/slow/x"}))
        self.assertEqual(req.finished, 0)
        self.clock.advance(2.1)
        self.assertEqual((req.responseCode, _body(req)), (503, "Request timed out."))
        self.assertEqual(var.observerCount, 0)

    def test_topLevelFailure(self) -> None:
        """A failure at the top (a loop) is a 500 with a message, never a traceback."""
        req = _render(self.resource, _request(b"GET", {"path": "/a", "dtab": "/a=>/a/b"}))
        self.assertEqual(req.responseCode, 500)
        self.assertEqual(_body(req), "Delegation failed: Max recursion level reached.\n")

    def test_defaultWithoutRouters(self) -> None:
        """With no router, delegation uses the configured namers and the /$/ namers."""
        resource = DelegatorResource(lambda label: None, [(ERROR, ErrorNamer(ERROR))], clock=self.clock)
        req = _render(resource, _request(b"GET", {"path": "/x", "dtab": "/x=>/#/error"}))
        self.assertIn('"message":"error naming /#/error"', _body(req))


class NamerResourcesTests(SynchronousTestCase):
    def test_boundNamesAndState(self) -> None:
        """bound-names lists fs names; namer_state shows each name's addresses; unknown prefixes 404."""
        root = self.mktemp()
        os.makedirs(root)
        with open(os.path.join(root, "web"), "w") as f:
            f.write("127.0.0.1 8080\n")
        with open(os.path.join(root, "bad"), "w") as f:
            f.write("nonsense\n")
        clock = MemoryReactorClock()
        prefix = Path.read("/#/io.l5d.fs")
        namers = [(prefix, FsNamer(clock, root, prefix))]
        resources = namingResources(lambda label: None, namers, clock)
        self.assertEqual(sorted(resources), ["/bound-names.json", "/delegator.json", "/namer_state/"])
        req = _render(BoundNamesResource(namers, clock), _request(b"GET"))
        self.assertEqual(json.loads(_body(req)), ["/#/io.l5d.fs/bad", "/#/io.l5d.fs/web"])
        req = _render(NamerStateResource(namers, clock), _request(b"GET", postpath=[b"io.l5d.fs.json"]))
        state = json.loads(_body(req))
        self.assertEqual(state["/#/io.l5d.fs/web"]["addrs"], [{"ip": "127.0.0.1", "port": 8080, "meta": {}}])
        self.assertEqual(state["/#/io.l5d.fs/bad"], {"type": "failed", "cause": "malformed address: nonsense"})
        req = _render(NamerStateResource(namers, clock), _request(b"GET", postpath=[b"nope.json"]))
        self.assertEqual(req.responseCode, 404)


class RealSocketTests(TestCase):
    timeout = 60

    async def test_delegatorOverHTTP(self) -> None:
        """The delegator answers a real HTTP GET on 127.0.0.1 with the exact JSON, and 415 to a non-JSON POST."""
        from urllib.parse import urlencode

        from twisted.web.client import Agent, HTTPConnectionPool, readBody
        from twisted.web.http_headers import Headers

        case = vectors("delegator_json")[1]
        interp = _interp(globalReactor)
        resource = DelegatorResource(lambda label: (interp, Dtab.empty), clock=globalReactor)
        port = globalReactor.listenTCP(0, Site(resource), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        agent = Agent(globalReactor, pool=HTTPConnectionPool(globalReactor, persistent=False))
        url = f"http://127.0.0.1:{port.getHost().port}/delegator.json"
        query = urlencode({"path": case["path"], "dtab": case["dtab"]})
        response = await agent.request(b"GET", (url + "?" + query).encode())
        self.assertEqual(response.code, 200)
        self.assertEqual((await readBody(response)).decode(), case["json_text"])
        response = await agent.request(b"POST", url.encode(), Headers({b"content-type": [b"text/plain"]}))
        self.assertEqual(response.code, 415)
        await readBody(response)
