# -*- test-case-name: tests.test_namerd_documents -*-
"""
Validating what clients send before anything is stored: dtabs (JSON or
dtab text) and policy documents.

A policy document holds a router's C{service:} and C{client:} sections in
exactly their config-file shape, checked with the router's own structurer,
so what namerd accepts is what a router accepts::

    {"protocol": "http",
     "service": {"kind": "io.l5d.static",
                 "configs": [{"prefix": "/svc/hello", "totalTimeoutMs": 600}]},
     "client": {"kind": "io.l5d.global", "loadBalancer": {"kind": "ewma"}}}

C{protocol} (C{http} by default) selects the keys a section may use.  The
stored text is the document re-serialised as compact JSON.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional, Tuple

from linkerpy.config.errors import ConfigError
from linkerpy.namerd.jsoncodec import CodecError, dtabFromJSON
from linkerpy.naming import Dtab

__all__ = [
    "DocumentError",
    "DTAB_TYPES",
    "JSON_TYPES",
    "parseDtabBody",
    "parsePolicyBody",
    "policySections",
    "POLICY_SCOPES",
    "POLICY_PROTOCOLS",
]

#: Content types of a dtab in its text form.
DTAB_TYPES = ("application/dtab", "text/plain")
#: Content types of JSON documents.
JSON_TYPES = ("application/json",)

POLICY_SCOPES = ("service", "client")
POLICY_PROTOCOLS = ("http", "h2")


class DocumentError(ValueError):
    """
    A request body that cannot be stored; the message says what is wrong
    (and, for policies, which key).
    """


def _loads(body: bytes) -> Any:
    try:
        return json.loads(_text(body))
    except RecursionError:
        raise DocumentError("invalid JSON: nested too deeply")
    except ValueError as e:
        if isinstance(e, DocumentError):
            raise
        raise DocumentError(f"invalid JSON: {e}")


def mediaType(contentType: Optional[str]) -> Optional[str]:
    """
    @return: C{type/subtype} lower-cased, without parameters (or C{None}).
    """
    if not contentType:
        return None
    return contentType.split(";", 1)[0].strip().lower() or None


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DocumentError(f"the body is not UTF-8 text: {e}")


def parseDtabBody(contentType: Optional[str], body: bytes) -> Dtab:
    """
    Parse a dtab sent as JSON (C{application/json}) or as dtab text
    (C{application/dtab}, C{text/plain}, or no content type).

    @raise DocumentError: unknown content type or malformed dtab.
    """
    media = mediaType(contentType)
    if media in JSON_TYPES:
        raw = _loads(body)
        try:
            return dtabFromJSON(raw)
        except CodecError as e:
            raise DocumentError(f"invalid dtab: {e}")
    if media is None or media in DTAB_TYPES:
        try:
            return Dtab.read(_text(body))
        except ValueError as e:
            raise DocumentError(f"invalid dtab: {e}")
    raise DocumentError(
        f"Invalid Content-Type {contentType!r}: use application/json or application/dtab"
    )


def policySections(raw: Any) -> Tuple[str, Dict[str, Any]]:
    """
    Check a policy document's top level.

    @return: C{(protocol, {scope: raw section})}.
    @raise DocumentError: not a mapping, unknown keys, unknown protocol.
    """
    if not isinstance(raw, dict):
        raise DocumentError("a policy document is a JSON object with 'service' and/or 'client' keys")
    unknown = sorted(set(raw) - set(POLICY_SCOPES) - {"protocol"})
    if unknown:
        raise DocumentError(
            f"{unknown[0]}: unknown key {unknown[0]!r}; expected one of: client, protocol, service"
        )
    protocol = raw.get("protocol", "http")
    if protocol not in POLICY_PROTOCOLS:
        raise DocumentError(f"protocol: expected one of {', '.join(POLICY_PROTOCOLS)}, got {protocol!r}")
    return protocol, {scope: raw[scope] for scope in POLICY_SCOPES if raw.get(scope) is not None}


def structureSection(raw: Any, scope: str, protocol: str, registry: Any) -> Any:
    """
    Structure one section with the router's structurer.

    @return: a L{linkerpy.config.structure.Configured}.
    @raise ConfigError: the section is invalid (problems name key paths
        such as C{service.configs[0].totalTimeoutMs}).
    @raise DocumentError: the section names a control-plane kind.
    """
    from linkerpy.config.structure import structurePlugin
    from linkerpy.interfaces import IPolicySourcePlugin

    configured = structurePlugin(
        IPolicySourcePlugin, raw, registry, path=scope, pluginArgs={"scope": scope, "protocol": protocol}
    )
    if getattr(configured.plugin, "controlPlane", False):
        raise DocumentError(
            f"{scope}.kind: {configured.kind!r} reads policy from a control plane; "
            "a policy document must hold the policy itself (io.l5d.global or io.l5d.static)"
        )
    return configured


def parsePolicyBody(contentType: Optional[str], body: bytes, registry: Any) -> str:
    """
    Validate a policy document and return the text to store.

    @raise DocumentError: with a message naming the bad key.
    """
    from linkerpy.interfaces import IProtocolPlugin

    media = mediaType(contentType)
    if media is not None and media not in JSON_TYPES:
        raise DocumentError(f"Invalid Content-Type {contentType!r}: a policy document is application/json")
    raw = _loads(body)
    protocol, sections = policySections(raw)
    if registry.lookup(IProtocolPlugin, protocol) is None:
        raise DocumentError(f"protocol: no {protocol!r} router protocol is installed in this namerd")
    for scope, section in sections.items():
        try:
            structureSection(section, scope, protocol, registry)
        except ConfigError as e:
            raise DocumentError("; ".join(str(p) for p in e.problems))
        except (ValueError, TypeError) as e:
            if isinstance(e, DocumentError):
                raise
            raise DocumentError(f"{scope}: {e}")
    return json.dumps(raw, separators=(",", ":"), ensure_ascii=False)
