"""
The C{io.linkerd.mesh} protos: the committed C{*_pb2.py} modules are what
C{protoc} makes of the C{.proto} files, and the messages and services have
Linkerd 1's names and field numbers.
"""

from __future__ import annotations

import ast
import os
import re
from typing import Any, Dict, List, Tuple

from twisted.trial.unittest import SynchronousTestCase

from linkerpy.namerd.mesh.protos import (
    codec_pb2,
    delegator_pb2,
    dtab_pb2,
    generate,
    interpreter_pb2,
    policy_pb2,
    resolver_pb2,
)

_SERIALIZED = re.compile(r"AddSerializedFile\((b'(?:[^'\\]|\\.)*')\)")
_VERSION = re.compile(r"^# Protobuf Python Version: (\S+)$", re.MULTILINE)

MODULES = {
    "dtab": dtab_pb2,
    "interpreter": interpreter_pb2,
    "resolver": resolver_pb2,
    "delegator": delegator_pb2,
    "codec": codec_pb2,
    "policy": policy_pb2,
}

#: (message, field, number) from Linkerd's mesh protos (linkerd1.md section 12.3).
FIELDS: List[Tuple[str, str, int]] = [
    ("Path", "elems", 1),
    ("PathNameTree", "neg", 1),
    ("PathNameTree", "fail", 2),
    ("PathNameTree", "empty", 3),
    ("PathNameTree", "alt", 4),
    ("PathNameTree", "union", 5),
    ("PathNameTree", "leaf", 6),
    ("PathNameTree.Alt", "trees", 1),
    ("PathNameTree.Union", "trees", 1),
    ("PathNameTree.Union.Weighted", "weight", 1),
    ("PathNameTree.Union.Weighted", "tree", 2),
    ("PathNameTree.Leaf", "id", 1),
    ("Dtab", "dentries", 1),
    ("Dtab.Dentry", "prefix", 1),
    ("Dtab.Dentry", "dst", 2),
    ("Dtab.Dentry.Prefix", "elems", 1),
    ("Dtab.Dentry.Prefix.Elem", "label", 1),
    ("Dtab.Dentry.Prefix.Elem", "wildcard", 2),
    ("VersionedDtab", "version", 1),
    ("VersionedDtab", "dtab", 2),
    ("VersionedDtab.Version", "id", 1),
    ("BindReq", "root", 1),
    ("BindReq", "name", 2),
    ("BindReq", "dtab", 3),
    ("BoundTreeRsp", "tree", 1),
    ("BoundNameTree", "neg", 1),
    ("BoundNameTree", "fail", 2),
    ("BoundNameTree", "empty", 3),
    ("BoundNameTree", "alt", 4),
    ("BoundNameTree", "union", 5),
    ("BoundNameTree", "leaf", 6),
    ("BoundNameTree.Leaf", "id", 1),
    ("BoundNameTree.Leaf", "residual", 2),
    ("BoundNameTree.Union.Weighted", "weight", 1),
    ("BoundNameTree.Union.Weighted", "tree", 2),
    ("ReplicasReq", "id", 1),
    ("Replicas", "pending", 1),
    ("Replicas", "neg", 2),
    ("Replicas", "failed", 3),
    ("Replicas", "bound", 4),
    ("Replicas.Failed", "message", 1),
    ("Replicas.Bound", "endpoints", 1),
    ("Replicas.Bound", "metadata", 2),
    ("Endpoint", "inet_af", 1),
    ("Endpoint", "address", 2),
    ("Endpoint", "port", 3),
    ("Endpoint", "meta", 4),
    ("Endpoint", "metadata", 5),
    ("Endpoint.Meta", "nodeName", 1),
    ("DtabReq", "root", 1),
    ("DtabRsp", "dtab", 1),
    ("DelegateTreeReq", "root", 1),
    ("DelegateTreeReq", "tree", 2),
    ("DelegateTreeReq", "dtab", 3),
    ("DelegateTreeRsp", "tree", 1),
    ("BoundDelegateTree", "path", 1),
    ("BoundDelegateTree", "dentry", 2),
    ("BoundDelegateTree", "neg", 3),
    ("BoundDelegateTree", "fail", 4),
    ("BoundDelegateTree", "empty", 5),
    ("BoundDelegateTree", "alt", 6),
    ("BoundDelegateTree", "union", 7),
    ("BoundDelegateTree", "leaf", 8),
    ("BoundDelegateTree", "delegate", 9),
    ("BoundDelegateTree", "transformation", 10),
    ("BoundDelegateTree", "exception", 11),
    ("BoundDelegateTree.Leaf", "id", 1),
    ("BoundDelegateTree.Leaf", "residual", 2),
    ("BoundDelegateTree.Transformation", "name", 1),
    ("BoundDelegateTree.Transformation", "leaf", 2),
    ("BoundDelegateTree.Transformation", "tree", 3),
    ("ReadDtabReq", "text", 1),
    ("ReadDtabRsp", "dtab", 1),
    ("ShowDtabReq", "dtab", 1),
    ("ShowDtabRsp", "text", 1),
    ("ReadPathReq", "text", 1),
    ("ReadPathRsp", "path", 1),
    ("ShowPathReq", "path", 1),
    ("ShowPathRsp", "text", 1),
]

#: (service, method, request, response, server streaming)
METHODS: List[Tuple[str, str, str, str, bool]] = [
    ("Interpreter", "GetBoundTree", "BindReq", "BoundTreeRsp", False),
    ("Interpreter", "StreamBoundTree", "BindReq", "BoundTreeRsp", True),
    ("Resolver", "GetReplicas", "ReplicasReq", "Replicas", False),
    ("Resolver", "StreamReplicas", "ReplicasReq", "Replicas", True),
    ("Delegator", "GetDtab", "DtabReq", "DtabRsp", False),
    ("Delegator", "StreamDtab", "DtabReq", "DtabRsp", True),
    ("Delegator", "GetDelegateTree", "DelegateTreeReq", "DelegateTreeRsp", False),
    ("Delegator", "StreamDelegateTree", "DelegateTreeReq", "DelegateTreeRsp", True),
    ("Codec", "ReadDtab", "ReadDtabReq", "ReadDtabRsp", False),
    ("Codec", "ShowDtab", "ShowDtabReq", "ShowDtabRsp", False),
    ("Codec", "ReadPath", "ReadPathReq", "ReadPathRsp", False),
    ("Codec", "ShowPath", "ShowPathReq", "ShowPathRsp", False),
    ("Policy", "GetPolicy", "PolicyReq", "PolicyRsp", False),
    ("Policy", "StreamPolicy", "PolicyReq", "PolicyRsp", True),
]


def _messages() -> Dict[str, Any]:
    out: Dict[str, Any] = {}

    def walk(descriptor: Any) -> None:
        out[descriptor.full_name] = descriptor
        for nested in descriptor.nested_types:
            walk(nested)

    for module in MODULES.values():
        for descriptor in module.DESCRIPTOR.message_types_by_name.values():
            walk(descriptor)
    return out


def _serialized(text: str) -> bytes:
    match = _SERIALIZED.search(text)
    assert match is not None, "no serialized descriptor in the module"
    return ast.literal_eval(match.group(1))  # type: ignore[no-any-return]


class GeneratedTests(SynchronousTestCase):
    """
    The committed modules match the .proto files.
    """

    def regenerate(self) -> Dict[str, str]:
        import importlib.util

        if importlib.util.find_spec("grpc_tools") is None:
            if os.environ.get("LINKERPY_REQUIRE_TOOLS"):
                self.fail("grpcio-tools is required to check the generated modules (pip install grpcio-tools)")
            self.skipTest("grpcio-tools is not installed")
        return generate.generate()

    def test_current(self) -> None:
        """
        Regenerating gives the committed descriptors, and the committed text when the protoc version is the same.
        """
        fresh = self.regenerate()
        self.assertEqual(sorted(fresh), sorted(f"{name}_pb2.py" for name in MODULES))
        for module, text in fresh.items():
            with open(os.path.join(generate.HERE, module), encoding="utf-8") as f:
                committed = f.read()
            self.assertEqual(
                _serialized(committed),
                _serialized(text),
                f"{module} is stale: run python -m linkerpy.namerd.mesh.protos.generate",
            )
            if _VERSION.search(committed).group(1) == _VERSION.search(text).group(1):  # type: ignore[union-attr]
                self.assertEqual(committed, text, f"{module} differs from protoc's output")

    def test_postProcess(self) -> None:
        """
        Imports become package imports and the runtime version check is dropped.
        """
        raw = (
            "# NO CHECKED-IN PROTOBUF GENCODE\n"
            "from google.protobuf import runtime_version as _runtime_version\n"
            "_runtime_version.ValidateProtobufRuntimeVersion(\n    _runtime_version.Domain.PUBLIC,\n    7,\n    'x.proto'\n)\n"
            "import dtab_pb2 as dtab__pb2\n"
        )
        out = generate.postProcess(raw)
        self.assertNotIn("runtime_version", out)
        self.assertIn("from linkerpy.namerd.mesh.protos import dtab_pb2 as dtab__pb2\n", out)
        self.assertNotIn("NO CHECKED-IN", out)

    def test_committedDescriptorsMatchModules(self) -> None:
        """
        Each module's loaded descriptor is the one embedded in its source (nothing edited by hand).
        """
        from google.protobuf import descriptor_pb2

        for name, module in MODULES.items():
            with open(os.path.join(generate.HERE, f"{name}_pb2.py"), encoding="utf-8") as f:
                embedded = descriptor_pb2.FileDescriptorProto.FromString(_serialized(f.read()))
            loaded = descriptor_pb2.FileDescriptorProto()
            module.DESCRIPTOR.CopyToProto(loaded)
            self.assertEqual(loaded.name, f"{name}.proto")
            self.assertEqual(loaded.package, "io.linkerd.mesh")
            self.assertEqual([m.name for m in loaded.message_type], [m.name for m in embedded.message_type])


class ShapeTests(SynchronousTestCase):
    """
    Names and numbers are Linkerd's.
    """

    def test_fieldNumbers(self) -> None:
        """
        Every field of the reference has its documented number.
        """
        messages = _messages()
        for message, field, number in FIELDS:
            descriptor = messages.get(f"io.linkerd.mesh.{message}")
            self.assertIsNotNone(descriptor, message)
            self.assertIn(field, descriptor.fields_by_name, f"{message}.{field}")
            self.assertEqual(descriptor.fields_by_name[field].number, number, f"{message}.{field}")

    def test_oneofs(self) -> None:
        """
        The tree and result alternatives are oneofs, as in Linkerd.
        """
        messages = _messages()
        for message, oneof, fields in (
            ("PathNameTree", "node", ["neg", "fail", "empty", "alt", "union", "leaf"]),
            ("BoundNameTree", "node", ["neg", "fail", "empty", "alt", "union", "leaf"]),
            ("Replicas", "result", ["pending", "neg", "failed", "bound"]),
            ("BoundDelegateTree", "node", ["neg", "fail", "empty", "alt", "union", "leaf", "delegate", "transformation", "exception"]),
            ("Dtab.Dentry.Prefix.Elem", "value", ["label", "wildcard"]),
        ):
            descriptor = messages[f"io.linkerd.mesh.{message}"]
            self.assertEqual([f.name for f in descriptor.oneofs_by_name[oneof].fields], fields, message)

    def test_addressFamily(self) -> None:
        """
        Endpoint.AddressFamily is INET4 = 0, INET6 = 1.
        """
        self.assertEqual(resolver_pb2.Endpoint.INET4, 0)
        self.assertEqual(resolver_pb2.Endpoint.INET6, 1)

    def test_services(self) -> None:
        """
        Every method has its request, response and streaming kind.
        """
        for service, method, request, response, streaming in METHODS:
            module = {"Interpreter": interpreter_pb2, "Resolver": resolver_pb2, "Delegator": delegator_pb2,
                      "Codec": codec_pb2, "Policy": policy_pb2}[service]
            descriptor = module.DESCRIPTOR.services_by_name[service].methods_by_name[method]
            self.assertEqual(descriptor.input_type.full_name, f"io.linkerd.mesh.{request}")
            self.assertEqual(descriptor.output_type.full_name, f"io.linkerd.mesh.{response}")
            self.assertEqual(descriptor.server_streaming, streaming, method)
            self.assertFalse(descriptor.client_streaming, method)

    def test_wireCompatible(self) -> None:
        """
        A request encodes as Linkerd's would (root, then name, each a Path of bytes elements).
        """
        request = interpreter_pb2.BindReq(root=dtab_pb2.Path(elems=[b"default"]), name=dtab_pb2.Path(elems=[b"svc", b"a"]))
        self.assertEqual(request.SerializeToString(), b"\n\t\n\x07default\x12\x08\n\x03svc\n\x01a")
