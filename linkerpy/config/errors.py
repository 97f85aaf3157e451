# -*- test-case-name: tests.test_config -*-
"""
Configuration errors: every problem names its key path, the line in the file
where YAML gives one, and what was expected.
"""

from __future__ import annotations

from typing import Iterable, List, Optional

import attrs


@attrs.frozen
class Problem:
    """
    One thing wrong with a configuration.

    @ivar path: the key path, e.g. C{routers[1].servers[0].port}.
    @ivar message: what is wrong and what was expected.
    @ivar line: 1-based line in the source file, when known.
    """

    path: str
    message: str
    line: Optional[int] = None

    def __str__(self) -> str:
        where = self.path or "<top level>"
        if self.line is not None:
            return f"{where} (line {self.line}): {self.message}"
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """
    A configuration could not be loaded; C{problems} lists every reason.
    """

    def __init__(self, problems: Iterable[Problem], source: Optional[str] = None):
        self.problems: List[Problem] = list(problems)
        self.source = source
        super().__init__(self.render())

    def __str__(self) -> str:
        return self.render()

    def render(self) -> str:
        head = f"invalid configuration{f' in {self.source}' if self.source else ''}"
        if len(self.problems) == 1:
            return f"{head}: {self.problems[0]}"
        lines = [f"{head}: {len(self.problems)} problems"]
        lines.extend(f"  - {p}" for p in self.problems)
        return "\n".join(lines)


def joinPath(base: str, key: object) -> str:
    """
    Extend a key path with a mapping key (C{a.b}) or a list index (C{a[0]}).
    """
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else str(key)
