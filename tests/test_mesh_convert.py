"""
Tests for L{linkerpy.namerd.mesh.convert}: naming values to mesh messages
and back.
"""

from __future__ import annotations

import json
from typing import Any, Dict

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from linkerpy.namerd.jsoncodec import delegateTreeFromJSON
from linkerpy.namerd.mesh.convert import (
    MAX_DEPTH,
    ConvertError,
    addrToReplicas,
    boundTreeFromProto,
    boundTreeToProto,
    delegateTreeFromProto,
    delegateTreeToProto,
    dtabFromProto,
    dtabToProto,
    nameTreeFromProto,
    nameTreeToProto,
    pathFromProto,
    pathToProto,
    replicasToAddr,
)
from linkerpy.namerd.mesh.protos import delegator_pb2, dtab_pb2, interpreter_pb2, resolver_pb2
from linkerpy.naming import (
    AddrBound,
    AddrFailed,
    AddrNeg,
    AddrPending,
    Address,
    Alt,
    Bound,
    Dentry,
    Dtab,
    Empty,
    Fail,
    Leaf,
    NameTree,
    Neg,
    Path,
    Union,
    Var,
    Weighted,
)
from linkerpy.naming.delegate import DLeaf

EXAMPLES = "/work/shared/reference/dtab-examples.json"


def _examples(section: str) -> Any:
    import os

    if not os.path.exists(EXAMPLES):
        return []
    with open(EXAMPLES, encoding="utf-8") as f:
        return json.load(f)[section]


def bound(ident: str, residual: str = "/") -> Bound:
    return Bound(Path.read(ident), Var.const(AddrPending), Path.read(residual))


class PathAndDtabTests(SynchronousTestCase):
    """
    Paths, dentries, dtabs and name trees of paths.
    """

    def test_pathBytes(self) -> None:
        """
        Path elements travel as raw bytes, including ones that need escapes when shown.
        """
        path = Path(b"svc", b"\xff\x00x")
        message = pathToProto(path)
        self.assertEqual(list(message.elems), [b"svc", b"\xff\x00x"])
        self.assertEqual(pathFromProto(dtab_pb2.Path.FromString(message.SerializeToString())), path)
        self.assertEqual(pathFromProto(dtab_pb2.Path()), Path.empty)

    def test_emptyElement(self) -> None:
        """
        An empty path element is refused.
        """
        self.assertRaises(ConvertError, pathFromProto, dtab_pb2.Path(elems=[b"a", b""]))

    def test_dtabVectors(self) -> None:
        """
        Every dtab of the reference vectors survives a trip through the messages.
        """
        vectors = [v for v in _examples("dtab_parse") if not v.get("error")]
        if not vectors:
            self.skipTest("the reference vectors are not available")
        for vector in vectors:
            dtab = Dtab.read(vector["in"])
            wire = dtabToProto(dtab).SerializeToString()
            back = dtabFromProto(dtab_pb2.Dtab.FromString(wire))
            self.assertEqual(back, dtab, vector["in"])
            self.assertEqual(back.show, vector["out_show"])

    def test_wildcardAndWeights(self) -> None:
        """
        Wildcard prefix elements, weights, alternatives and ~ ! $ are kept.
        """
        dtab = Dtab.read("/svc/*/x => 0.3 * /a & 0.7 * (/b | ~) ; /f => ! ; /e => $")
        message = dtabToProto(dtab)
        elems = message.dentries[0].prefix.elems
        self.assertEqual([e.WhichOneof("value") for e in elems], ["label", "wildcard", "label"])
        self.assertEqual(dtabFromProto(message), dtab)

    def test_nameTrees(self) -> None:
        """
        Name trees of the reference vectors survive a trip through the messages.
        """
        vectors = [v for v in _examples("nametree_parse") if not v.get("error")]
        trees = [NameTree.read(v["in"]) for v in vectors] + [NameTree.read("/a | (/b & 2 * /c)"), Neg, Fail, Empty]
        for tree in trees:
            wire = nameTreeToProto(tree).SerializeToString()
            self.assertEqual(nameTreeFromProto(dtab_pb2.PathNameTree.FromString(wire)), tree)

    def test_zeroWeightOnTheWire(self) -> None:
        """
        A union branch of weight 0 still carries its weight on the wire (Linkerd's clients skip branches without).
        """
        union = nameTreeToProto(NameTree.read("0 * /a & /b"))
        self.assertTrue(union.union.trees[0].SerializeToString().startswith(b"\t" + b"\x00" * 8))
        bound = boundTreeToProto(Union(Weighted(0.0, Leaf(Bound(Path("a"), Var.const(AddrPending)))), Weighted(1.0, Neg)))
        self.assertTrue(bound.union.trees[0].SerializeToString().startswith(b"\t" + b"\x00" * 8))

    def test_malformedDentry(self) -> None:
        """
        A dentry without a prefix or dst, or an empty prefix element, is refused with its index.
        """
        message = dtab_pb2.Dtab()
        message.dentries.add()
        error = self.assertRaises(ConvertError, dtabFromProto, message)
        self.assertIn("dentry 0", str(error))
        message = dtabToProto(Dtab.read("/a=>/b"))
        message.dentries[0].prefix.elems.add()
        self.assertRaises(ConvertError, dtabFromProto, message)
        self.assertRaises(ConvertError, nameTreeFromProto, dtab_pb2.PathNameTree())

    def test_tooDeep(self) -> None:
        """
        Trees nested deeper than the limit are refused.
        """
        tree: NameTree = Leaf(Path("a"))
        for _ in range(MAX_DEPTH + 2):
            tree = Alt(tree, Neg)
        self.assertRaises(ConvertError, nameTreeFromProto, nameTreeToProto(tree))


class BoundTreeTests(SynchronousTestCase):
    """
    Bound trees (Interpreter answers).
    """

    def test_roundTrip(self) -> None:
        """
        Leaves keep their ids and residuals; unions their weights; Neg, Fail, Empty and Alt are kept.
        """
        tree = Union(
            Weighted(3.0, Leaf(bound("/#/io.l5d.fs/a", "/rest"))),
            Weighted(1.0, Alt(Leaf(bound("/$/inet/127.0.0.1/80")), Neg, Fail, Empty)),
        )
        made = []

        def boundFor(ident: Path, residual: Path) -> Bound:
            made.append((ident.show, residual.show))
            return bound(ident.show, residual.show)

        wire = boundTreeToProto(tree).SerializeToString()
        back = boundTreeFromProto(interpreter_pb2.BoundNameTree.FromString(wire), boundFor)
        self.assertEqual(back, tree)
        self.assertEqual(made, [("/#/io.l5d.fs/a", "/rest"), ("/$/inet/127.0.0.1/80", "/")])

    def test_malformed(self) -> None:
        """
        A node without a value, a leaf without an id, or a union branch without a tree is refused.
        """
        self.assertRaises(ConvertError, boundTreeFromProto, interpreter_pb2.BoundNameTree(), bound)
        leaf = interpreter_pb2.BoundNameTree()
        leaf.leaf.SetInParent()
        self.assertRaises(ConvertError, boundTreeFromProto, leaf, bound)
        union = interpreter_pb2.BoundNameTree()
        union.union.trees.add(weight=1.0)
        self.assertRaises(ConvertError, boundTreeFromProto, union, bound)


class ReplicasTests(SynchronousTestCase):
    """
    Address sets (Resolver answers).
    """

    def test_bound(self) -> None:
        """
        IPv4 and IPv6 endpoints, a weight, a node name and metadata survive; a host that is not an IP is left out.
        """
        addr = AddrBound(
            [
                Address("127.0.0.1", 8080, 2.5, {"nodeName": "node-a", "zone": "z1"}),
                Address("::1", 9090),
                Address("not-an-ip.example", 1),
            ],
            {"authority": "hello"},
        )
        message = addrToReplicas(addr)
        endpoints = {e.port: e for e in message.bound.endpoints}
        self.assertEqual(sorted(endpoints), [8080, 9090])
        self.assertEqual(endpoints[8080].inet_af, resolver_pb2.Endpoint.INET4)
        self.assertEqual(endpoints[8080].address, b"\x7f\x00\x00\x01")
        self.assertEqual(endpoints[8080].meta.nodeName, "node-a")
        self.assertEqual(endpoints[8080].metadata["endpoint_addr_weight"], "2.5")
        self.assertEqual(endpoints[9090].inet_af, resolver_pb2.Endpoint.INET6)
        self.assertEqual(len(endpoints[9090].address), 16)
        back = replicasToAddr(resolver_pb2.Replicas.FromString(message.SerializeToString()))
        self.assertEqual(
            back,
            AddrBound(
                [Address("127.0.0.1", 8080, 2.5, {"nodeName": "node-a", "zone": "z1"}), Address("::1", 9090)],
                {"authority": "hello"},
            ),
        )

    def test_familyOnTheWire(self) -> None:
        """
        An IPv4 endpoint carries its family (INET4, 0) on the wire, as Linkerd's clients need.
        """
        message = addrToReplicas(AddrBound([Address("127.0.0.1", 80)]))
        self.assertTrue(message.bound.endpoints[0].SerializeToString().startswith(b"\x08\x00"))

    def test_states(self) -> None:
        """
        Neg, Pending and Failed map to their results, and a message without a result is Neg.
        """
        for addr in (AddrNeg, AddrPending):
            self.assertIs(replicasToAddr(addrToReplicas(addr)), addr)
        failed = addrToReplicas(AddrFailed(Exception("no such file")))
        self.assertEqual(failed.failed.message, "no such file")
        self.assertEqual(replicasToAddr(failed), AddrFailed(Exception("no such file")))
        self.assertIs(replicasToAddr(resolver_pb2.Replicas()), AddrNeg)
        self.assertEqual(addrToReplicas(AddrBound([])).WhichOneof("result"), "bound")

    def test_badEndpoint(self) -> None:
        """
        An address of the wrong length, a bad port or a bad weight is refused.
        """
        for endpoint in (
            resolver_pb2.Endpoint(address=b"\x01\x02\x03", port=80),
            resolver_pb2.Endpoint(address=b"\x7f\x00\x00\x01", port=0),
            resolver_pb2.Endpoint(address=b"\x7f\x00\x00\x01", port=80, metadata={"endpoint_addr_weight": "heavy"}),
        ):
            message = resolver_pb2.Replicas()
            message.bound.endpoints.append(endpoint)
            self.assertRaises(ConvertError, replicasToAddr, message)

    @settings(max_examples=100, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.ip_addresses().map(str),
                st.integers(min_value=1, max_value=65535),
                st.sampled_from([1.0, 0.5, 2.0, 10.0]),
            ),
            max_size=6,
        )
    )
    def test_anyAddresses(self, items: Any) -> None:
        """
        Any set of IP endpoints with weights survives the trip.
        """
        import ipaddress

        addr = AddrBound([Address(str(ipaddress.ip_address(h)), p, w) for h, p, w in items])
        back = replicasToAddr(resolver_pb2.Replicas.FromString(addrToReplicas(addr).SerializeToString()))
        self.assertEqual(back, addr)


class DelegateTreeTests(SynchronousTestCase):
    """
    Delegation trees (Delegator answers).
    """

    def test_vectors(self) -> None:
        """
        The reference delegation trees survive a trip through the messages (their JSON is unchanged).
        """
        vectors = _examples("delegator_json")
        if not vectors:
            self.skipTest("the reference vectors are not available")
        for vector in vectors:
            tree = delegateTreeFromJSON(vector["json"])
            addrs: Dict[Path, Any] = {b.id: b.addr for b in tree.bounds()}
            wire = delegateTreeToProto(tree).SerializeToString()
            back = delegateTreeFromProto(
                delegator_pb2.BoundDelegateTree.FromString(wire), lambda i, r: Bound(i, addrs[i], r)
            )
            self.assertEqual(back.toJSON(), vector["json"], vector["path"])

    def test_rootDentry(self) -> None:
        """
        Every node carries a dentry (the root /$/nop => ~, as Linkerd's client needs), read back as no dentry.
        """
        tree = delegateTreeFromJSON({"type": "neg", "path": "/nope"})
        message = delegateTreeToProto(tree)
        self.assertTrue(message.HasField("dentry"))
        self.assertEqual(dtabFromProto(dtab_pb2.Dtab(dentries=[message.dentry])).show, "/$/nop=>~")
        self.assertIsNone(delegateTreeFromProto(message).dentry)
        self.assertEqual(message.WhichOneof("node"), "neg")

    def test_unboundLeaf(self) -> None:
        """
        A leaf still holding a path is sent as a leaf with that id and an empty residual.
        """
        message = delegateTreeToProto(DLeaf(Path.read("/a"), Dentry.read("/a=>/b"), Path.read("/b")))
        self.assertEqual(list(message.leaf.id.elems), [b"b"])
        self.assertTrue(message.leaf.HasField("residual"))
        back = delegateTreeFromProto(message)
        self.assertEqual(back.value.id, Path.read("/b"))

    def test_transformation(self) -> None:
        """
        A transformation node keeps its name, bound leaf and tree.
        """
        json_ = {
            "type": "transformation", "path": "/svc/a", "name": "io.l5d.port",
            "bound": {"addr": {"type": "pending"}, "id": "/#/io.l5d.fs/a", "path": "/"},
            "tree": {"type": "neg", "path": "~"},
        }
        tree = delegateTreeFromJSON(json_)
        message = delegateTreeToProto(tree)
        self.assertEqual(message.transformation.name, "io.l5d.port")
        self.assertEqual(delegateTreeFromProto(message).toJSON(), json_)
