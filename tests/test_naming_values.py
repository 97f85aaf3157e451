"""
Tests for paths, prefixes, name trees and dtabs (parse, show, lookup, eval, simplify).
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from linkerpy.config.errors import ConfigError
from linkerpy.config.structure import structure, unstructure
from linkerpy.naming import (
    ANY,
    Alt,
    Dentry,
    Dtab,
    Empty,
    Fail,
    Leaf,
    NameTree,
    Neg,
    ParseError,
    Path,
    Prefix,
    Union,
    Weighted,
    formatWeight,
)
from linkerpy.naming.parser import MAX_NESTING
from linkerpy.plugins.registry import PluginRegistry
from tests.naming_support import vectors


class PathVectorTests(SynchronousTestCase):
    def test_pathParseVectors(self) -> None:
        """Every path_parse vector parses to its elements and show, or fails with its exact message."""
        cases = vectors("path_parse")
        self.assertTrue(cases)
        for case in cases:
            if case.get("error"):
                e = self.assertRaises(ParseError, Path.read, case["in"])
                self.assertEqual(str(e), case["message"], case)
            else:
                p = Path.read(case["in"])
                self.assertEqual([x.decode("utf-8") for x in p.elems], case["out"], case)
                self.assertEqual(p.show, case["show"], case)

    def test_pathShowVectors(self) -> None:
        """Every path_show vector shows as expected."""
        for case in vectors("path_show"):
            self.assertEqual(Path(*case["in"]).show, case["out"])


class PathTests(SynchronousTestCase):
    def test_errors(self) -> None:
        """Malformed paths from the reference are rejected."""
        for bad in ["", "foo", "/foo/", "//foo", "/foo//bar", "/*", "/foo^bar", "/\\?", "/\\x?", "/\\x0?",
                    "/foo bar", "/foo/ bar", "/\\X41", "/é", "/a|b"]:
            self.assertRaises(ParseError, Path.read, bad)

    def test_whitespaceAndComments(self) -> None:
        """Whitespace and a trailing comment around a path are skipped; # inside a label is a character."""
        self.assertEqual(Path.read(" \t/foo #c"), Path("foo"))
        self.assertEqual(Path.read("/foo#bar"), Path("foo#bar"))
        self.assertEqual(Path.read("/#/io.l5d.fs").elems, (b"#", b"io.l5d.fs"))
        self.assertEqual(Path.read("\u2003/a\u2028"), Path("a"))
        self.assertRaises(ParseError, Path.read, "\u00a0/a")

    def test_escapes(self) -> None:
        """Escapes produce arbitrary bytes and non-showable elements show fully escaped."""
        p = Path.read("/\\x61\\x20\\x62/ok")
        self.assertEqual(p.elems, (b"a b", b"ok"))
        self.assertEqual(p.show, "/\\x61\\x20\\x62/ok")
        self.assertEqual(Path(b"foo/bar").show, "/\\x66\\x6f\\x6f\\x2f\\x62\\x61\\x72")
        self.assertEqual(Path.read("/\\x61").show, "/a")
        self.assertEqual(Path.read("/\\xff\\x00").elems, (b"\xff\x00",))

    def test_emptyPath(self) -> None:
        """'/' is the empty path, which shows as '/'."""
        self.assertEqual(Path.read("/"), Path.empty)
        self.assertEqual(Path.empty.show, "/")
        self.assertEqual(len(Path.empty), 0)

    def test_operations(self) -> None:
        """startsWith, take, drop, len and + behave like sequences."""
        p = Path.read("/a/b/c")
        self.assertTrue(p.startsWith(Path.read("/a/b")))
        self.assertTrue(p.startsWith(Path.empty))
        self.assertFalse(p.startsWith(Path.read("/a/c")))
        self.assertFalse(Path.read("/a").startsWith(p))
        self.assertEqual(p.drop(1), Path.read("/b/c"))
        self.assertEqual(p.drop(5), Path.empty)
        self.assertEqual(p.take(2), Path.read("/a/b"))
        self.assertEqual(p.take(0), Path.empty)
        self.assertEqual(len(p), 3)
        self.assertEqual(Path.read("/a") + Path.read("/b/c"), p)
        self.assertEqual(p + Path.empty, p)
        self.assertEqual(list(p), [b"a", b"b", b"c"])

    def test_hashEquality(self) -> None:
        """Equal paths are equal and hash alike; equality is byte-exact (case-sensitive)."""
        self.assertEqual(hash(Path.read("/a/b")), hash(Path("a", "b")))
        self.assertEqual({Path.read("/a/b"): 1}[Path(b"a", b"b")], 1)
        self.assertNotEqual(Path.read("/A"), Path.read("/a"))

    def test_emptyElementRejected(self) -> None:
        """The constructor refuses empty elements."""
        self.assertRaises(ValueError, Path, "a", "")

    def test_structure(self) -> None:
        """Path structures from a string and reports the parser's message otherwise."""
        self.assertEqual(Path.__structure__("/svc"), Path("svc"))
        e = self.assertRaises(ValueError, Path.__structure__, "svc")
        self.assertIn("'/' expected but 's' found", str(e))
        self.assertRaises(ValueError, Path.__structure__, 3)
        self.assertEqual(Path.read("/a/b").__unstructure__(), "/a/b")


class PrefixTests(SynchronousTestCase):
    def test_wildcards(self) -> None:
        """A whole-element * is a wildcard; an escaped \\x2a is a literal label."""
        p = Prefix.read("/foo/*/bar")
        self.assertIs(p.elems[1], ANY)
        self.assertEqual(p.show, "/foo/*/bar")
        lit = Prefix.read("/\\x2a")
        self.assertEqual(lit.elems, (b"*",))
        self.assertEqual(lit.show, "/\\x2a")
        for bad in ["/foo/*bar", "/a*", "/http/1.1/*/"]:
            self.assertRaises(ParseError, Prefix.read, bad)

    def test_matches(self) -> None:
        """Prefixes match element-wise, * matches any one element, / matches everything."""
        self.assertTrue(Prefix.read("/a/*/c").matches(Path.read("/a/b/c/d")))
        self.assertFalse(Prefix.read("/a/*/c").matches(Path.read("/a/b")))
        self.assertFalse(Prefix.read("/a/*/c").matches(Path.read("/a/b/d")))
        self.assertTrue(Prefix.read("/").matches(Path.empty))
        self.assertFalse(Prefix.read("/\\x2a").matches(Path.read("/x")))


class NameTreeVectorTests(SynchronousTestCase):
    def test_parseVectors(self) -> None:
        """Every nametree_parse vector gives its show and structure, or its exact error."""
        cases = vectors("nametree_parse")
        self.assertTrue(cases)
        for case in cases:
            if case.get("error"):
                e = self.assertRaises(ParseError, NameTree.read, case["in"])
                self.assertEqual(str(e), case["message"], case)
            else:
                t = NameTree.read(case["in"])
                self.assertEqual(t.show, case["out_show"], case)
                self.assertEqual(repr(t), case["out_struct"], case)

    def test_evalVectors(self) -> None:
        """Every eval vector evaluates to its (unordered) set or None."""
        cases = vectors("eval")
        self.assertTrue(cases)
        for case in cases:
            got = NameTree.read(case["tree"]).eval()
            shown = None if got is None else sorted(p.show for p in got)
            self.assertEqual(shown, case["result"], case)

    def test_simplifyVectors(self) -> None:
        """Every simplify vector (the section may be empty) simplifies as recorded."""
        for case in vectors("simplify"):
            self.assertEqual(NameTree.read(case["tree"]).simplify().show, case["result"], case)


def _t(s: str) -> NameTree:
    return NameTree.read(s)


class NameTreeTests(SynchronousTestCase):
    def test_precedenceAndNesting(self) -> None:
        """| binds loosest, & tighter, parentheses keep nesting and add no node."""
        self.assertEqual(repr(_t("/a & /b | /c")), "Alt(Union(Weighted(1.0,Leaf(Path(a))),Weighted(1.0,Leaf(Path(b)))),Leaf(Path(c)))")
        self.assertEqual(_t("(/a)"), Leaf(Path("a")))
        self.assertEqual(_t("(/a | /b) | /c"), Alt(Alt(Leaf(Path("a")), Leaf(Path("b"))), Leaf(Path("c"))))
        self.assertEqual(
            _t("(/a & /b) & /c"),
            Union(Weighted(1, Union.of(Leaf(Path("a")), Leaf(Path("b")))), Weighted(1, Leaf(Path("c")))),
        )
        self.assertEqual(_t("2 * /a"), Leaf(Path("a")))
        self.assertEqual(_t("(2 * /a)"), Leaf(Path("a")))

    def test_weights(self) -> None:
        """Weight syntax: 1, 1.0, 1. and .5 parse; signs, exponents and lone dots do not."""
        for text, w in [("1", 1.0), ("1.0", 1.0), ("1.", 1.0), (".5", 0.5), ("3", 3.0)]:
            t = _t(f"{text} * /a & /b")
            self.assertEqual(t.trees[0].weight, w)
        for bad in ["-1 * /a", "1e3 * /a", ". * /a", "0.1.2 * /a", "2 /a", "+1 * /a"]:
            self.assertRaises(ParseError, NameTree.read, bad)

    def test_errors(self) -> None:
        """Malformed trees are rejected."""
        for bad in ["", "#", "/foo &", "/a | ", "| /a", "/a & & /b", "(/a", "/a)", "/a /b", "a", "/a/*"]:
            self.assertRaises(ParseError, NameTree.read, bad)

    def test_canonicalShow(self) -> None:
        """show prints the canonical form with %.2f HALF_UP weights and minimal parentheses."""
        for text in ["/a | (/b | /c)", "(/a | /b) & /c", "/a & (/b | /c)", "2.00*(/a & /b) & /c",
                     "0.50*(/a | /b) & 0.50*/c", "/a | /b & /c", "! | ~ | $", "/a & 10.00*/b"]:
            self.assertEqual(_t(text).show, text)
        self.assertEqual(_t("0.125 * /a & /b").show, "0.13*/a & /b")
        self.assertEqual(_t("1.00001 * /a & /b").show, "1.00*/a & /b")
        self.assertEqual(_t("0 * /a & /b").show, "0.00*/a & /b")
        self.assertEqual(_t("0.333 * /a & /b").show, "0.33*/a & /b")

    def test_formatWeight(self) -> None:
        """formatWeight matches Java's %.2f on the shortest decimal repr."""
        self.assertEqual(formatWeight(0.125), "0.13")
        self.assertEqual(formatWeight(2.675), "2.68")
        self.assertEqual(formatWeight(1.005), "1.01")
        self.assertEqual(formatWeight(2.0), "2.00")
        self.assertEqual(formatWeight(1e20), "100000000000000000000.00")

    def test_simplify(self) -> None:
        """simplify drops Neg alternatives, stops at Fail, drops Neg/Fail union branches."""
        cases = {
            "/a | ! | /b": "/a | !",
            "/a | (~ | /b)": "/a | /b",
            "~ | ~": "~",
            "~ | $ | /a": "$ | /a",
            "/ok & !": "/ok",
            "/ok & ~ & $": "/ok & $",
            "2 * /a & ~": "/a",
            "! & ~": "~",
            "3 * /a & 2 * /b & !": "3.00*/a & 2.00*/b",
            "(/a | /b) | /c": "(/a | /b) | /c",
        }
        for text, expected in cases.items():
            s = _t(text).simplify()
            self.assertEqual(s.show, expected, text)
            self.assertEqual(s.simplify(), s)
        self.assertIs(Alt().simplify(), Neg)
        self.assertIs(Union().simplify(), Neg)

    def test_evalMore(self) -> None:
        """eval ignores weights, treats Empty as the empty set and a Fail alternative as failure."""
        self.assertEqual(_t("2 * /a & /b").eval(), frozenset({Path("a"), Path("b")}))
        self.assertIsNone(_t("!").eval())
        self.assertEqual(_t("$").eval(), frozenset())
        self.assertIsNone(_t("~ | ! | /a").eval())
        self.assertEqual(_t("(! & !) | /a").eval(), frozenset({Path("a")}))

    def test_map(self) -> None:
        """map applies a function to every leaf keeping the shape."""
        t = _t("/a | 2 * /b & /c").map(lambda p: p + Path("x"))
        self.assertEqual(t.show, "/a/x | 2.00*/b/x & /c/x")
        self.assertEqual([l.value.show for l in t.leaves()], ["/a/x", "/b/x", "/c/x"])

    def test_nestingLimit(self) -> None:
        """Parentheses nested beyond the limit give a ParseError, never a RecursionError."""
        ok = "(" * MAX_NESTING + "/a" + ")" * MAX_NESTING
        self.assertEqual(_t(ok), Leaf(Path("a")))
        deep = "(" * (MAX_NESTING + 1) + "/a" + ")" * (MAX_NESTING + 1)
        e = self.assertRaises(ParseError, NameTree.read, deep)
        self.assertIn("levels of parentheses expected", str(e))
        self.assertRaises(ParseError, Dtab.read, "/a=>" + "(" * 5000)

    def test_hashable(self) -> None:
        """Trees are hashable and equal trees hash alike."""
        self.assertEqual(hash(_t("/a | /b & /c")), hash(_t("/a|/b&/c")))
        self.assertEqual(len({Neg, Fail, Empty, Neg}), 3)


class DtabVectorTests(SynchronousTestCase):
    def test_parseVectors(self) -> None:
        """Every dtab_parse vector shows and counts as recorded, or fails with its exact message."""
        cases = vectors("dtab_parse")
        self.assertTrue(cases)
        for case in cases:
            if case.get("error"):
                e = self.assertRaises(ParseError, Dtab.read, case["in"])
                self.assertEqual(str(e), case["message"], case)
            else:
                d = Dtab.read(case["in"])
                self.assertEqual(d.show, case["out_show"], case)
                self.assertEqual(len(d), case["size"], case)

    def test_lookupVectors(self) -> None:
        """Every dtab_lookup vector gives its one-step result."""
        cases = vectors("dtab_lookup")
        self.assertTrue(cases)
        for case in cases:
            got = Dtab.read(case["dtab"]).lookup(Path.read(case["path"]))
            self.assertEqual(got.show, case["result"], case)


class DtabTests(SynchronousTestCase):
    def test_syntax(self) -> None:
        """A trailing ; is allowed; empty entries, missing ;, '= >' and '->' are errors."""
        self.assertEqual(len(Dtab.read("/a=>/b;")), 1)
        self.assertEqual(len(Dtab.read("/a=>/b; # done\n")), 1)
        self.assertEqual(Dtab.read("  # only a comment\n"), Dtab.empty)
        for bad in [";", "/a=>/b;;/c=>/d", "/a=>/b /c=>/d", "/a -> /b", "/a=>", "=>/b", "/a = > /b",
                    "/a=>/b/*", "/a=>/b;;"]:
            self.assertRaises(ParseError, Dtab.read, bad)

    def test_lookupEveryMatch(self) -> None:
        """Every matching dentry applies, latest first, whatever the prefix lengths."""
        d = Dtab.read("/a=>/x;/a/b=>/y")
        self.assertEqual(d.lookup(Path.read("/a/b/c")).show, "/y/c | /x/b/c")
        d = Dtab.read("/a/b=>/y;/a=>/x")
        self.assertEqual(d.lookup(Path.read("/a/b/c")).show, "/x/b/c | /y/c")

    def test_lookupResidualAndShapes(self) -> None:
        """The residual is appended to every leaf; Neg/Fail/Empty and tree shapes are kept."""
        self.assertEqual(Dtab.read("/a/* => /b").lookup(Path.read("/a/foo/bar")).show, "/b/bar")
        self.assertEqual(Dtab.read("/a => /").lookup(Path.read("/a/b/c")).show, "/b/c")
        self.assertEqual(Dtab.read("/a => /x | 2*/y & ~").lookup(Path.read("/a/z")).show, "/x/z | 2.00*/y/z & ~")
        self.assertIs(Dtab.read("/a => ~").lookup(Path.read("/a")), Neg)
        self.assertEqual(Dtab.read("/a => ~; /a => ~").lookup(Path.read("/a")), Alt(Neg, Neg))
        self.assertIs(Dtab.read("/a => !").lookup(Path.read("/a/b")), Fail)
        self.assertIs(Dtab.read("/a => $").lookup(Path.read("/a/b")), Empty)

    def test_indexedLookupAgreesWithScan(self) -> None:
        """A large dtab (indexed lookup) finds the same matches, in the same order, as a linear scan."""
        text = ";".join(
            f"/svc/s{i} => /x{i}" if i % 7 else f"/*/s{i} => /w{i}" for i in range(200)
        ) + ";/ => /root;/svc => /all"
        d = Dtab.read(text)
        for name in ["/svc/s3", "/svc/s7", "/other/s14", "/svc", "/", "/nope/x"]:
            p = Path.read(name)
            expected = [e for e in reversed(d.dentries) if e.prefix.matches(p)]
            self.assertEqual(d.matching(p), expected, name)

    def test_concatenation(self) -> None:
        """+ puts the right-hand entries later (so they take precedence)."""
        base = Dtab.read("/svc=>/a")
        local = Dtab.read("/svc=>/b")
        self.assertEqual((base + local).show, "/svc=>/a;/svc=>/b")
        self.assertEqual((base + local).lookup(Path.read("/svc")).show, "/b | /a")
        self.assertIs(base + Dtab.empty, base)

    def test_hashableCacheKey(self) -> None:
        """Equal dtabs are equal and hash alike, so they can key a cache."""
        self.assertEqual(hash(Dtab.read("/a=>/b; /c=>/d")), hash(Dtab.read("/a => /b;/c => /d")))
        self.assertEqual({Dtab.read("/a=>/b"): 1}[Dtab.read(" /a => /b ")], 1)
        self.assertEqual(list(Dtab.read("/a=>/b;/c=>/d"))[1], Dentry.read("/c=>/d"))

    def test_dentryShow(self) -> None:
        """A dentry shows as prefix=>tree without spaces."""
        self.assertEqual(Dentry.read(" /a/*  =>  /b | /c ").show, "/a/*=>/b | /c")


@attrs.frozen
class _RouterLike:
    label: str
    dtab: Dtab = Dtab.empty
    dstPrefix: Path = Path.read("/svc")
    extra: Optional[Tuple[Path, ...]] = None


class ConfigTests(SynchronousTestCase):
    def test_structureRouterLike(self) -> None:
        """Path and Dtab fields structure from strings and unstructure back to their show form."""
        cfg = structure(_RouterLike, {"label": "r", "dtab": "/svc => /#/io.l5d.fs;", "dstPrefix": "/http",
                                      "extra": ["/a", "/b/c"]}, PluginRegistry([]))
        self.assertEqual(cfg.dtab, Dtab.read("/svc=>/#/io.l5d.fs"))
        self.assertEqual(cfg.dstPrefix, Path("http"))
        self.assertEqual(cfg.extra, (Path("a"), Path("b", "c")))
        self.assertEqual(unstructure(cfg)["dtab"], "/svc=>/#/io.l5d.fs")

    def test_badDtabReportsKeyPath(self) -> None:
        """A bad dtab is a ConfigError naming the key path and the parser's message."""
        e = self.assertRaises(
            ConfigError, structure, _RouterLike, {"label": "r", "dtab": "/svc => "}, PluginRegistry([]),
            "routers[0]",
        )
        self.assertIn("routers[0].dtab", str(e))
        self.assertIn("simple expected but end of input found", str(e))
        e = self.assertRaises(
            ConfigError, structure, _RouterLike, {"label": "r", "dstPrefix": "svc"}, PluginRegistry([]),
        )
        self.assertIn("dstPrefix", str(e))


# ---------------------------------------------------------------------------
# Property tests

_label = st.binary(min_size=1, max_size=6)
paths = st.lists(_label, max_size=5).map(lambda es: Path(*es))
_weights = st.one_of(
    st.just(1.0),
    st.integers(min_value=0, max_value=10_000).map(lambda n: n / 100),
)


def _trees(depth: int = 3) -> Any:
    leaf = st.one_of(paths.map(Leaf), st.sampled_from([Neg, Fail, Empty]))
    return st.recursive(
        leaf,
        lambda children: st.one_of(
            st.lists(children, min_size=2, max_size=3).map(lambda ts: Alt(*ts)),
            st.lists(st.tuples(_weights, children), min_size=2, max_size=3).map(
                lambda ws: Union(*(Weighted(w, t) for w, t in ws))
            ),
        ),
        max_leaves=8,
    )


trees = _trees()
_prefixElem = st.one_of(_label, st.just(ANY))
prefixes = st.lists(_prefixElem, max_size=4).map(lambda es: Prefix(*es))
dtabs = st.lists(st.builds(Dentry, prefixes, trees), max_size=5).map(Dtab)


def _canonical(t: NameTree) -> NameTree:
    """The tree as the parser would rebuild it (single-child nodes collapse, weights of 2-decimals)."""
    if isinstance(t, Alt):
        kids = [_canonical(c) for c in t.trees]
        return kids[0] if len(kids) == 1 else Alt(*kids)
    if isinstance(t, Union):
        kids = [Weighted(float(formatWeight(w.weight)), _canonical(w.tree)) for w in t.trees]
        return kids[0].tree if len(kids) == 1 else Union(*kids)
    return t


class PropertyTests(SynchronousTestCase):
    @given(paths)
    def test_pathRoundTrip(self, p: Path) -> None:
        """Path.read(p.show) == p for any path."""
        self.assertEqual(Path.read(p.show), p)

    @given(trees)
    @settings(max_examples=300)
    def test_treeRoundTrip(self, t: NameTree) -> None:
        """NameTree.read(t.show) rebuilds the tree (weights at two decimals)."""
        self.assertEqual(NameTree.read(t.show), _canonical(t))

    @given(dtabs)
    @settings(max_examples=200)
    def test_dtabRoundTrip(self, d: Dtab) -> None:
        """Dtab.read(d.show) shows the same as d."""
        self.assertEqual(Dtab.read(d.show).show, d.show)

    @given(trees)
    def test_simplifyIsFixpoint(self, t: NameTree) -> None:
        """simplify is idempotent and never leaves an empty or single-child node."""
        s = t.simplify()
        self.assertEqual(s.simplify(), s)

    @given(st.text(max_size=30))
    @settings(max_examples=300)
    def test_parserNeverCrashes(self, text: str) -> None:
        """Arbitrary text either parses or raises ParseError (never another exception)."""
        for fn in (Path.read, NameTree.read, Dtab.read):
            try:
                fn(text)
            except ParseError:
                pass
