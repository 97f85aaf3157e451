"""
Tests for L{linkerpy.protocol.h2.headers}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from linkerpy.protocol.h2.headers import H2Headers, sanitize
from linkerpy.protocol.http import l5d


class H2HeadersTests(SynchronousTestCase):
    """
    L{H2Headers}: lookups and edits with the HTTP header list's API.
    """

    def headers(self) -> H2Headers:
        return H2Headers(
            [(b":method", b"GET"), (b":path", b"/a"), (b"x-a", b"1"), (b"X-B", b"2"), (b"x-a", b"3")]
        )

    def test_namesLowerCased(self) -> None:
        """
        Names are lower-cased on the way in and looked up in any case.
        """
        h = self.headers()
        self.assertEqual(h.names(), [b":method", b":path", b"x-a", b"x-b", b"x-a"])
        self.assertEqual(h.get(b"X-b"), b"2")

    def test_getFirstLastAll(self) -> None:
        """
        C{get}, C{getLast} and C{getAll} see every value in order.
        """
        h = self.headers()
        self.assertEqual((h.get(b"x-a"), h.getLast(b"x-a"), h.getAll(b"x-a")), (b"1", b"3", [b"1", b"3"]))
        self.assertIsNone(h.get(b"missing"))
        self.assertIn(b"x-a", h)
        self.assertNotIn("x-a", h)

    def test_setReplacesAll(self) -> None:
        """
        C{set} keeps one value at the position of the first occurrence.
        """
        h = self.headers()
        h.set(b"x-a", b"9")
        self.assertEqual(list(h), [(b":method", b"GET"), (b":path", b"/a"), (b"x-a", b"9"), (b"x-b", b"2")])

    def test_pseudoHeadersStayFirst(self) -> None:
        """
        A pseudo-header field added late still goes before the regular
        fields, and C{toWire} orders them conventionally.
        """
        h = H2Headers([(b":path", b"/"), (b"x", b"1")])
        h.add(b":method", b"POST")
        h.set(b":authority", b"svc")
        self.assertEqual(h.names()[:3], [b":path", b":method", b":authority"])
        self.assertEqual([n for n, _ in h.toWire()], [b":method", b":authority", b":path", b"x"])

    def test_removeAndPrefix(self) -> None:
        """
        C{remove} and C{removePrefix} drop every matching field.
        """
        h = H2Headers([(b"l5d-dtab", b"/a=>/b"), (b"l5d-ctx-x", b"1"), (b"x", b"1")])
        self.assertEqual(h.remove(b"x"), 1)
        self.assertEqual(h.removePrefix(b"L5D-"), 2)
        self.assertEqual(len(h), 0)

    def test_sanitize(self) -> None:
        """
        Connection-specific fields (and C{te} other than C{trailers}) are
        removed; C{te: trailers} stays.
        """
        h = H2Headers([(b"connection", b"x"), (b"keep-alive", b"1"), (b"te", b"gzip"), (b"upgrade", b"h2c"), (b"x", b"1")])
        sanitize(h)
        self.assertEqual(list(h), [(b"x", b"1")])
        h = H2Headers([(b"te", b"trailers")])
        sanitize(h)
        self.assertEqual(list(h), [(b"te", b"trailers")])

    def test_l5dRulesApply(self) -> None:
        """
        The HTTP C{l5d-*} helpers work on h2 header lists: local dtab,
        call depth, trace.
        """
        import random

        h = H2Headers([(b"l5d-dtab", b"/a=>/b"), (b"via", b"2 x, 2 y")])
        self.assertEqual(l5d.readLocalDtab(h).show, "/a=>/b")
        self.assertNotIn(b"l5d-dtab", h)
        self.assertEqual(l5d.callDepth(h), 2)
        trace = l5d.Trace.fromHeaders(h, random.Random(1))
        self.assertEqual(len(trace.header()), 44)
