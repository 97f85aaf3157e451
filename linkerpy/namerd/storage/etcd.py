# -*- test-case-name: tests.test_namerd_etcd -*-
"""
C{io.l5d.etcd}: documents in an etcd v3 cluster, through its JSON gateway.

Keys are C{<pathPrefix>/<namespace>} for dtabs (default C{/namerd/dtabs})
and C{<policyPrefix>/<namespace>} for policies (default C{/namerd/policy}).
A document's version is its key's C{mod_revision}, which etcd bumps on every
write.  Compare-and-swap is a transaction comparing C{mod_revision} (or
C{create_revision == 0} for a create).

Observers are fed by one watch per prefix: the store reads the whole prefix
(C{/v3/kv/range}), then streams changes from the next revision
(C{/v3/watch}); when the stream breaks, or etcd compacted the revision it
asked for, it reads everything again after a backoff.  Several namerd
processes on one etcd therefore see each other's writes.  Keys and values
travel base64-encoded in the gateway's JSON.
"""

from __future__ import annotations

import base64
import json
import random
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from zope.interface import implementer

from linkerpy.interfaces import IDtabStore
from linkerpy.namerd.errors import (
    KINDS,
    InvalidNamespace,
    NamespaceExists,
    NoSuchNamespace,
    StoreUnavailable,
    VersionMismatch,
    checkKind,
    checkNamespace,
)
from linkerpy.namerd.storage.base import Document, StoreVars
from linkerpy.namerd.streaming import BodyStream, JSONObjectDecoder, newHTTPClient

__all__ = ["EtcdStore", "prefixEnd"]

log = Logger()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Optional[str]) -> bytes:
    return base64.b64decode(text or "")


def prefixEnd(prefix: bytes) -> bytes:
    """
    The C{range_end} covering every key starting with C{prefix}: the
    prefix with its last byte incremented (etcd's C{clientv3.GetPrefixRangeEnd}).
    """
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\x00"


class _Watcher:
    """
    Keeps one kind's documents in the store's vars: range, then watch, then
    (after a failure) range again.
    """

    def __init__(self, store: "EtcdStore", kind: str) -> None:
        self.store = store
        self.kind = kind
        self.prefix = store.keyPrefix(kind)
        self.revision = 0
        self.synced: Deferred = Deferred()
        self.stream: Optional[BodyStream] = None
        self.inflight: Optional[Deferred] = None
        self.call: Any = None
        self.stopped = False
        self.delays = store.newBackoff()
        self.connected = False

    def start(self) -> None:
        self._sync()

    def stop(self) -> Deferred:
        """
        Stop watching.

        @return: a Deferred firing once the connections are closed.
        """
        self.stopped = True
        if self.call is not None and self.call.active():
            self.call.cancel()
        waits = []
        if self.inflight is not None:
            inflight, self.inflight = self.inflight, None
            inflight.cancel()
        if self.stream is not None:
            stream, self.stream = self.stream, None
            stream.abort()
            waits.append(stream.done.addErrback(lambda _: None))
        return DeferredList(waits)

    def _sync(self) -> None:
        self.call = None
        if self.stopped:
            return
        end = prefixEnd(self.prefix)
        d = self.inflight = self.store.call("kv/range", {"key": _b64(self.prefix), "range_end": _b64(end)})
        d.addCallback(self._synced)
        d.addErrback(self._failed, "range")

    def _synced(self, answer: Dict[str, Any]) -> None:
        self.inflight = None
        if self.stopped:
            return
        docs: Dict[str, Document] = {}
        revisions: Dict[str, int] = {}
        for kv in answer.get("kvs") or ():
            ns = self.store.namespaceOf(self.kind, _unb64(kv.get("key")))
            if ns is None:
                continue
            text = _unb64(kv.get("value")).decode("utf-8", "replace")
            rev = int(kv.get("mod_revision", 0))
            docs[ns] = (text, str(rev).encode("ascii"))
            revisions[ns] = rev
        self.revision = int(answer.get("header", {}).get("revision", 0))
        self.store.replaceAll(self.kind, docs, revisions, self.revision)
        if not self.synced.called:
            self.synced.callback(None)
        self._watch()

    def _watch(self) -> None:
        if self.stopped:
            return
        body = {
            "create_request": {
                "key": _b64(self.prefix),
                "range_end": _b64(prefixEnd(self.prefix)),
                "start_revision": str(self.revision + 1),
            }
        }
        stream = self.stream = BodyStream(JSONObjectDecoder(self._onMessage))
        d = self.inflight = self.store.watchClient.post(
            self.store.url("watch"),
            data=json.dumps(body).encode("utf-8"),
            headers={b"content-type": [b"application/json"]},
            unbuffered=True,
            reactor=self.store.reactor,
            timeout=self.store.timeout,
        )

        def gotResponse(response: Any) -> Deferred:
            self.inflight = None
            response.deliverBody(stream)
            if response.code != 200:
                stream.abort()
                raise StoreUnavailable(f"etcd watch answered {response.code}")
            return stream.done

        d.addCallback(gotResponse)
        d.addCallback(lambda _: self._failed(None, "watch"))
        d.addErrback(self._failed, "watch")

    def _onMessage(self, message: Any) -> None:
        if self.stopped or self.stream is None:
            return
        result = message.get("result") if isinstance(message, dict) else None
        if result is None:
            error = message.get("error") if isinstance(message, dict) else message
            raise StoreUnavailable(f"etcd watch error: {error}")
        if result.get("created"):
            self.connected = True
            self.delays = self.store.newBackoff()
        if result.get("canceled") or int(result.get("compact_revision", 0) or 0):
            # The revision we asked for is gone (compacted): read again.
            raise StoreUnavailable("etcd watch was cancelled (compacted revision); resynchronising")
        for event in result.get("events") or ():
            kv = event.get("kv") or {}
            ns = self.store.namespaceOf(self.kind, _unb64(kv.get("key")))
            rev = int(kv.get("mod_revision", 0))
            self.revision = max(self.revision, rev)
            if ns is None:
                continue
            if event.get("type") == "DELETE":
                self.store.apply(self.kind, ns, None, rev)
            else:
                text = _unb64(kv.get("value")).decode("utf-8", "replace")
                self.store.apply(self.kind, ns, (text, str(rev).encode("ascii")), rev)
        header = result.get("header") or {}
        if "revision" in header and not result.get("events"):
            # Progress notifications carry the current revision.
            self.revision = max(self.revision, int(header["revision"]))

    def _failed(self, failure: Any, what: str) -> None:
        self.stream = None
        self.inflight = None
        self.connected = False
        if self.stopped:
            return
        delay = next(self.delays)
        if failure is not None:
            log.warn(
                "etcd {what} of {prefix} failed ({error}); retrying in {delay:.1f}s",
                what=what,
                prefix=self.prefix.decode("utf-8", "replace"),
                error=failure.getErrorMessage(),
                delay=delay,
            )
        self.store.reconnects.incr()
        self.call = self.store.reactor.callLater(delay, self._sync)


@implementer(IDtabStore)
class EtcdStore:
    """
    A store in etcd (see the module docstring).

    @param prefixes: C{{kind: key prefix}}, e.g. C{{'dtabs': '/namerd/dtabs'}}.
    @param backoff: C{(baseSeconds, maxSeconds)} between reconnection attempts.
    """

    def __init__(
        self,
        host: str,
        port: int,
        prefixes: Dict[str, str],
        reactor: Any,
        metrics: Any = None,
        backoff: Tuple[float, float] = (0.5, 30.0),
        timeout: float = 10.0,
        rng: Optional[random.Random] = None,
    ) -> None:
        from linkerpy.telemetry.metrics import MetricsTree

        self.host = host
        self.port = port
        self.reactor = reactor
        self.prefixes = {kind: prefixes[kind].rstrip("/") for kind in KINDS}
        self.timeout = timeout
        self.backoff = backoff
        self.random = rng or random.Random()
        self.metrics = metrics if metrics is not None else MetricsTree()
        self.reconnects = self.metrics.counter("reconnects")
        self.metrics.gauge("connected", fn=lambda: float(all(w.connected for w in self._watchers.values())))
        self.vars = StoreVars(known=False)
        self.client = newHTTPClient(reactor, persistent=True, connectTimeout=timeout)
        self.watchClient = newHTTPClient(reactor, persistent=False, connectTimeout=timeout)
        self._revisions: Dict[Tuple[str, str], int] = {}
        self._watchers: Dict[str, _Watcher] = {}
        self._started: Optional[Deferred] = None

    def describe(self) -> str:
        return f"etcd at {self.host}:{self.port} ({', '.join(self.prefixes.values())})"

    def newBackoff(self) -> Any:
        from linkerpy.policy.backoff import decorrelatedJittered

        base, maximum = self.backoff
        return decorrelatedJittered(base, maximum, self.random)

    # -- keys and calls ---------------------------------------------------------------

    def url(self, method: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v3/{method}"

    def keyPrefix(self, kind: str) -> bytes:
        return (self.prefixes[kind] + "/").encode("utf-8")

    def key(self, kind: str, ns: str) -> bytes:
        return self.keyPrefix(kind) + ns.encode("utf-8")

    def namespaceOf(self, kind: str, key: bytes) -> Optional[str]:
        prefix = self.keyPrefix(kind)
        if not key.startswith(prefix):
            return None
        try:
            return checkNamespace(key[len(prefix):].decode("utf-8"))
        except (UnicodeDecodeError, InvalidNamespace):
            return None

    def call(self, method: str, body: Dict[str, Any]) -> "Deferred[Dict[str, Any]]":
        """
        One unary gateway call.

        @raise StoreUnavailable: (in the Deferred) etcd is unreachable or
            answered an error.
        """
        d = self.client.post(
            self.url(method),
            data=json.dumps(body).encode("utf-8"),
            headers={b"content-type": [b"application/json"]},
            reactor=self.reactor,
            timeout=self.timeout,
        )

        def gotResponse(response: Any) -> Deferred:
            return response.content().addCallback(lambda content: (response.code, content))

        def decode(result: Tuple[int, bytes]) -> Dict[str, Any]:
            code, content = result
            try:
                answer = json.loads(content.decode("utf-8"))
            except ValueError:
                raise StoreUnavailable(f"etcd {method} answered {code} with a non-JSON body")
            if code != 200 or not isinstance(answer, dict):
                message = answer.get("message") or answer.get("error") if isinstance(answer, dict) else answer
                raise StoreUnavailable(f"etcd {method} answered {code}: {message}")
            return answer

        def unavailable(failure: Any) -> Any:
            if failure.check(StoreUnavailable):
                return failure
            raise StoreUnavailable(f"etcd at {self.host}:{self.port} is unreachable: {failure.getErrorMessage()}")

        d.addCallback(gotResponse)
        d.addCallback(decode)
        d.addErrback(unavailable)
        return d

    # -- the local view ----------------------------------------------------------------

    def replaceAll(self, kind: str, docs: Dict[str, Document], revisions: Dict[str, int], revision: int) -> None:
        for key in [k for k in self._revisions if k[0] == kind]:
            del self._revisions[key]
        for ns, rev in revisions.items():
            self._revisions[(kind, ns)] = rev
        self.vars.replaceAll(kind, docs)

    def apply(self, kind: str, ns: str, doc: Optional[Document], revision: int) -> None:
        """
        Record a change seen at C{revision}, unless a newer one was already seen.
        """
        if self._revisions.get((kind, ns), 0) >= revision:
            return
        self._revisions[(kind, ns)] = revision
        self.vars.set(kind, ns, doc)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Deferred:
        if self._started is None:
            for kind in KINDS:
                watcher = self._watchers[kind] = _Watcher(self, kind)
                watcher.start()
            d = DeferredList([w.synced for w in self._watchers.values()], fireOnOneErrback=True, consumeErrors=True)
            d.addCallback(lambda _: self.vars.markKnown())
            self._started = d
        return self._started

    def close(self) -> Deferred:
        waits = [watcher.stop() for watcher in self._watchers.values()]
        pool = self.client._agent._pool  # type: ignore[attr-defined]
        waits.append(pool.closeCachedConnections())
        return DeferredList(waits)

    # -- IDtabStore --------------------------------------------------------------------

    def list(self, kind: str) -> "Deferred[List[str]]":
        checkKind(kind)
        prefix = self.keyPrefix(kind)
        d = self.call("kv/range", {"key": _b64(prefix), "range_end": _b64(prefixEnd(prefix)), "keys_only": True})

        def names(answer: Dict[str, Any]) -> List[str]:
            out = []
            for kv in answer.get("kvs") or ():
                ns = self.namespaceOf(kind, _unb64(kv.get("key")))
                if ns is not None:
                    out.append(ns)
            return sorted(out)

        return d.addCallback(names)

    def get(self, kind: str, ns: str) -> Deferred:
        checkKind(kind)
        checkNamespace(ns)
        d = self.call("kv/range", {"key": _b64(self.key(kind, ns))})

        def found(answer: Dict[str, Any]) -> Optional[Document]:
            kvs = answer.get("kvs") or ()
            if not kvs:
                return None
            kv = kvs[0]
            return _unb64(kv.get("value")).decode("utf-8", "replace"), str(kv.get("mod_revision", 0)).encode("ascii")

        return d.addCallback(found)

    def create(self, kind: str, ns: str, text: str) -> "Deferred[bytes]":
        checkKind(kind)
        checkNamespace(ns)
        key = _b64(self.key(kind, ns))
        body = {
            "compare": [{"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            "success": [{"request_put": {"key": key, "value": _b64(text.encode("utf-8"))}}],
        }

        def done(answer: Dict[str, Any]) -> bytes:
            if not answer.get("succeeded"):
                raise NamespaceExists(kind, ns)
            return self._written(kind, ns, text, answer)

        return self.call("kv/txn", body).addCallback(done)

    def update(self, kind: str, ns: str, text: str, version: Optional[bytes]) -> "Deferred[bytes]":
        checkKind(kind)
        checkNamespace(ns)
        key = _b64(self.key(kind, ns))
        value = _b64(text.encode("utf-8"))
        if version is None:
            return self.call("kv/put", {"key": key, "value": value}).addCallback(
                lambda answer: self._written(kind, ns, text, answer)
            )
        try:
            expected = int(version.decode("ascii"))
            if expected <= 0:
                raise ValueError()
        except (ValueError, UnicodeDecodeError):
            # Not one of our versions: it cannot match, but say "missing"
            # if the namespace does not exist, as for any other version.
            return self.get(kind, ns).addCallback(self._mismatch, kind, ns)
        body = {
            "compare": [{"key": key, "target": "MOD", "result": "EQUAL", "mod_revision": str(expected)}],
            "success": [{"request_put": {"key": key, "value": value}}],
            "failure": [{"request_range": {"key": key, "keys_only": True}}],
        }

        def done(answer: Dict[str, Any]) -> bytes:
            if not answer.get("succeeded"):
                responses = answer.get("responses") or [{}]
                kvs = (responses[0].get("response_range") or {}).get("kvs")
                if not kvs:
                    raise NoSuchNamespace(kind, ns)
                raise VersionMismatch(kind, ns)
            return self._written(kind, ns, text, answer)

        return self.call("kv/txn", body).addCallback(done)

    def _mismatch(self, current: Optional[Document], kind: str, ns: str) -> Any:
        if current is None:
            raise NoSuchNamespace(kind, ns)
        raise VersionMismatch(kind, ns)

    def _written(self, kind: str, ns: str, text: str, answer: Dict[str, Any]) -> bytes:
        revision = int(answer.get("header", {}).get("revision", 0))
        version = str(revision).encode("ascii")
        self.apply(kind, ns, (text, version), revision)
        return version

    def delete(self, kind: str, ns: str) -> Deferred:
        checkKind(kind)
        checkNamespace(ns)

        def done(answer: Dict[str, Any]) -> None:
            if int(answer.get("deleted", 0) or 0) == 0:
                raise NoSuchNamespace(kind, ns)
            self.apply(kind, ns, None, int(answer.get("header", {}).get("revision", 0)))

        return self.call("kv/deleterange", {"key": _b64(self.key(kind, ns))}).addCallback(done)

    def observe(self, kind: str, ns: str) -> Any:
        return self.vars.observe(kind, ns)

    def observeNamespaces(self, kind: str) -> Any:
        return self.vars.observeNamespaces(kind)


