# -*- test-case-name: tests.test_demo -*-
"""
A tiny demo service, like Linkerd's helloworld, for the per-service policy
walkthrough (C{docs/per-service-policy.md}).

    python -m linkerpy.demo.helloworld --port 7777 --text Hello --target world
    python -m linkerpy.demo.helloworld --port 7778 --text world

C{GET /} answers C{<text> (<ip>)!!}, or, with C{--target}, C{<text> (<ip>) }
followed by the target's answer, fetched through the router
(C{--router 127.0.0.1:4140}, with C{Host: <target>}).  C{--latency 500ms}
delays every answer; C{POST /setLatency?latency=600ms} changes it live.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any, List, Optional

from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|)\s*$")


def parseLatency(text: str) -> float:
    """
    C{'600ms'}, C{'1.5s'} or C{'250'} (milliseconds) to seconds.

    @raise ValueError: not a duration.
    """
    m = _DURATION.match(text)
    if m is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 600ms or 1.5s)")
    value = float(m.group(1))
    return value if m.group(2) == "s" else value / 1000.0


class HelloWorld(Resource):
    """
    The demo service.
    """

    isLeaf = True

    def __init__(self, reactor: Any, text: str, ip: str, latency: float, target: Optional[str], router: str) -> None:
        super().__init__()
        self.reactor = reactor
        self.text = text
        self.ip = ip
        self.latency = latency
        self.target = target
        self.router = router

    def render_GET(self, request: Any) -> Any:
        if request.path != b"/":
            request.setResponseCode(404)
            return b"not found\n"
        self._answer(request)
        return NOT_DONE_YET

    @inlineCallbacks
    def _answer(self, request: Any) -> Any:
        if self.latency > 0:
            yield deferLater(self.reactor, self.latency, lambda: None)
        body = f"{self.text} ({self.ip})"
        if self.target:
            import treq

            try:
                response = yield treq.get(
                    f"http://{self.router}/", headers={"Host": self.target}, timeout=30, reactor=self.reactor
                )
                downstream = (yield treq.content(response)).decode("utf-8", "replace")
                if response.code != 200:
                    request.setResponseCode(502)
                    downstream = f"<{self.target} answered {response.code}: {downstream.strip()}>"
            except Exception as e:  # noqa: BLE001 - shown to the demo user
                request.setResponseCode(502)
                downstream = f"<{self.target} failed: {e}>"
            body += " " + downstream
        else:
            body += "!!"
        if not request.finished and not getattr(request, "_disconnected", False):
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            request.write(body.encode("utf-8"))
            request.finish()

    def render_POST(self, request: Any) -> bytes:
        if request.path != b"/setLatency":
            request.setResponseCode(404)
            return b"not found\n"
        values = (request.args or {}).get(b"latency")
        if not values:
            request.setResponseCode(400)
            return b"missing latency (e.g. ?latency=600ms)\n"
        try:
            self.latency = parseLatency(values[0].decode("ascii", "replace"))
        except ValueError as e:
            request.setResponseCode(400)
            return f"{e}\n".encode("utf-8")
        return b"ok"


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m linkerpy.demo.helloworld", description=__doc__.split("\n\n")[0])
    parser.add_argument("--addr", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7777, help="listen port (default 7777)")
    parser.add_argument("--text", default="Hello", help="the text to answer with (default Hello)")
    parser.add_argument("--target", default=None, help="another service to call through the router (by Host)")
    parser.add_argument("--router", default="127.0.0.1:4140", help="the router's address (default 127.0.0.1:4140)")
    parser.add_argument("--latency", default="0ms", help="delay before answering, e.g. 500ms")
    args = parser.parse_args(argv)
    try:
        latency = parseLatency(args.latency)
    except ValueError as e:
        parser.error(str(e))
    from twisted.internet import reactor

    site = Site(HelloWorld(reactor, args.text, args.addr, latency, args.target, args.router))
    site.log = lambda request: None  # type: ignore[method-assign]
    port = reactor.listenTCP(args.port, site, interface=args.addr)
    print(f"helloworld {args.text!r} listening on {args.addr}:{port.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
