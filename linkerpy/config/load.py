# -*- test-case-name: tests.test_config -*-
"""
Reading configuration text (YAML, of which JSON is a subset) into plain
mappings and lists that remember the line each key and item came from.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import yaml

from linkerpy.config.errors import ConfigError, Problem


class LineDict(dict):
    """
    A C{dict} from YAML, with C{lines}: the 1-based line of each key.
    """

    line: Optional[int] = None
    lines: Dict[Any, int]


class LineList(list):
    """
    A C{list} from YAML, with C{lines}: the 1-based line of each item.
    """

    line: Optional[int] = None
    lines: List[int]


class _Loader(yaml.SafeLoader):
    """
    A safe loader that records line numbers and rejects duplicate keys.
    """


def _constructMapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.lines = {}
    for keyNode, valueNode in node.value:
        key = loader.construct_object(keyNode, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                "found an unhashable key",
                keyNode.start_mark,
            )
        if key in result:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                keyNode.start_mark,
            )
        result[key] = loader.construct_object(valueNode, deep=True)
        result.lines[key] = keyNode.start_mark.line + 1
    return result


def _constructSequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.lines = [child.start_mark.line + 1 for child in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _constructMapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _constructSequence)


def loadText(text: str, source: Optional[str] = None) -> Any:
    """
    Parse YAML or JSON text.

    @raise ConfigError: the text is not well-formed.
    """
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        message = " ".join(str(m) for m in (e.context, e.problem) if m)
        raise ConfigError([Problem("", f"not valid YAML/JSON: {message}", line)], source)
    except yaml.YAMLError as e:
        raise ConfigError([Problem("", f"not valid YAML/JSON: {e}")], source)


def loadFile(path: str) -> Any:
    """
    Read and parse a configuration file.

    @raise ConfigError: the file cannot be read or parsed.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError([Problem("", f"cannot read configuration file: {e.strerror}")], path)
    except UnicodeDecodeError as e:
        raise ConfigError([Problem("", f"configuration file is not UTF-8: {e}")], path)
    return loadText(text, path)


def lineOf(container: Any, key: Any) -> Optional[int]:
    """
    The line of C{key} (a mapping key or list index) in C{container}, if known.
    """
    lines = getattr(container, "lines", None)
    if lines is None:
        return None
    if isinstance(lines, dict):
        return lines.get(key)
    if isinstance(key, int) and 0 <= key < len(lines):
        return lines[key]
    return None


def lineAt(container: Any, relativePath: str) -> Optional[int]:
    """
    The line of a nested key path such as C{routers[1].servers[0].port}
    inside C{container}: the deepest line known along the way.
    """
    import re

    best = getattr(container, "line", None)
    node = container
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", relativePath):
        key: Any = int(index) if index else name
        line = lineOf(node, key)
        if line is None:
            break
        best = line
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
    return best
