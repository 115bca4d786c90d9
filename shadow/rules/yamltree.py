"""YAML with line numbers: every mapping and list remembers the line of each of its
keys / items, so a rule error can name file:line. Duplicate keys are errors (plain
PyYAML silently keeps the last one)."""
from __future__ import annotations

from typing import Any

import yaml


class YMap(dict):  # type: ignore[type-arg]
    """A YAML mapping; `.line` of the mapping, `.lines[key]` of each key (1-based)."""

    line: int = 0
    lines: dict[Any, int]

    def line_of(self, key: Any) -> int:
        return self.lines.get(key, self.line)


class YList(list):  # type: ignore[type-arg]
    """A YAML sequence; `.line` of the sequence, `.lines[i]` of each item (1-based)."""

    line: int = 0
    lines: list[int]

    def line_of(self, index: int) -> int:
        return self.lines[index] if 0 <= index < len(self.lines) else self.line


class YamlProblem(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def load_documents(text: str) -> list[Any]:
    """Every document of a YAML text, as YMap/YList/scalars. Raises YamlProblem."""
    loader = yaml.SafeLoader(text)
    try:
        documents = []
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                documents.append(_convert(node, loader))
        return documents
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else 1
        message = f"YAML syntax: {error.problem or error}"
        source_line = text.splitlines()[line - 1] if 0 < line <= len(text.splitlines()) else ""
        if "[*]" in source_line or "*]" in source_line:
            message += " (inside [a, b] lists quote paths with [*]: 'offers[*].status', or use a - list)"
        raise YamlProblem(line, message) from None
    except yaml.YAMLError as error:
        raise YamlProblem(1, f"YAML syntax: {error}") from None
    finally:
        loader.dispose()


def _convert(node: yaml.Node, loader: yaml.SafeLoader) -> Any:
    if isinstance(node, yaml.MappingNode):
        mapping = YMap()
        mapping.line = node.start_mark.line + 1
        mapping.lines = {}
        own = {id(key_node) for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge"}
        loader.flatten_mapping(node)  # `<<: *anchor` merge keys: merged entries first, own keys win
        merged: set[Any] = set()
        for key_node, value_node in node.value:
            key = _convert(key_node, loader)
            if isinstance(key, (YMap, YList)):
                raise YamlProblem(key_node.start_mark.line + 1, "a key must be a plain value")
            if id(key_node) not in own:
                merged.add(key)
            elif key in merged:
                merged.discard(key)
            elif key in mapping:
                raise YamlProblem(key_node.start_mark.line + 1,
                                  f"duplicate key {key!r} (first on line {mapping.lines[key]})")
            mapping[key] = _convert(value_node, loader)
            mapping.lines[key] = key_node.start_mark.line + 1
        return mapping
    if isinstance(node, yaml.SequenceNode):
        sequence = YList(_convert(item, loader) for item in node.value)
        sequence.line = node.start_mark.line + 1
        sequence.lines = [item.start_mark.line + 1 for item in node.value]
        return sequence
    return loader.construct_object(node, deep=True)
