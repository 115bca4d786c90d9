"""YAML with line numbers: every mapping and list remembers the line of each of its
keys / items, so a rule error can name file:line. Duplicate keys are errors (plain
PyYAML silently keeps the last one).

Hostile input: rule files are read by the proxy process on every hot reload, so a
393-byte "billion laughs" file (anchors re-expanded by every alias) must not cost
seconds and gigabytes. Rule files refuse aliases outright (file:line; an anchor nothing
refers to is harmless); `rules test` files, where merge keys (`<<: *doc`) are useful,
may use them, but the expanded tree is capped at MAX_NODES nodes (so is any file).
Parsing uses libyaml when PyYAML has it (about 8x faster than the pure-Python parser,
and it caps nesting at 1000 levels); composing never expands aliases, so only our
conversion below could, and it counts every node it builds.
"""
from __future__ import annotations

from typing import Any

import yaml

#: nodes of one expanded YAML text (aliases counted each time they are expanded)
MAX_NODES = 200_000


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


_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader",
                                         yaml.SafeLoader) if yaml.__with_libyaml__ else yaml.SafeLoader


class _Budget:
    """Nodes left to build, and (when aliases are refused) the nodes already built: an
    alias is the same node object met a second time."""

    __slots__ = ("left", "limit", "seen")

    def __init__(self, nodes: int, aliases: bool) -> None:
        self.left = self.limit = nodes
        self.seen: set[int] | None = None if aliases else set()


def load_documents(text: str, *, aliases: bool = False, max_nodes: int = MAX_NODES) -> list[Any]:
    """Every document of a YAML text, as YMap/YList/scalars. Raises YamlProblem.
    `aliases=False` refuses aliases (and merge keys, which use them); either way the
    converted tree may hold at most `max_nodes` nodes."""
    loader = _LOADER(text)
    budget = _Budget(max_nodes, aliases)
    try:
        documents = []
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                if budget.seen is not None:  # aliases never cross documents, and the ids of a
                    budget.seen.clear()  # converted document's (freed) nodes are reused
                documents.append(_convert(node, loader, budget))
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
    except RecursionError:  # `[[[[…` a few thousand deep: the parser and _convert recurse
        raise YamlProblem(1, "YAML nested too deeply") from None
    finally:
        loader.dispose()


_MERGE = "tag:yaml.org,2002:merge"


def _convert(node: yaml.Node, loader: yaml.SafeLoader, budget: _Budget, used_at: int = 0) -> Any:
    """`used_at`: the line that refers to `node` (where an alias would be written)."""
    if budget.seen is not None:
        if id(node) in budget.seen:
            anchored = node.start_mark.line + 1
            raise YamlProblem(used_at or anchored, "YAML aliases (*name, <<: *name) are not allowed in rule files "
                                                   f"(this one repeats the node anchored on line {anchored})")
        budget.seen.add(id(node))
    budget.left -= 1
    if budget.left < 0:
        raise YamlProblem(node.start_mark.line + 1, f"YAML holds too many nodes (more than {budget.limit}, "
                                                    "aliases counted each time they expand)")
    if isinstance(node, yaml.MappingNode):
        mapping = YMap()
        mapping.line = node.start_mark.line + 1
        mapping.lines = {}
        # `<<: *anchor` / `<<: [*a, *b]` merge keys: merged entries first (earlier
        # mappings win), own keys override them. Merged mappings are converted through
        # the same budget, so nested merges cannot multiply unbounded.
        merged: list[YMap] = []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE:
                continue
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in sources:
                converted = _convert(source, loader, budget, key_node.start_mark.line + 1)
                if not isinstance(converted, YMap):
                    raise YamlProblem(source.start_mark.line + 1,
                                      "a merge key (<<) takes a mapping or a list of mappings")
                merged.append(converted)
        for source_map in reversed(merged):
            for key, value in source_map.items():
                mapping[key] = value
                mapping.lines[key] = source_map.line_of(key)
        own: set[Any] = set()
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                continue
            key = _convert(key_node, loader, budget)
            if isinstance(key, (YMap, YList)):
                raise YamlProblem(key_node.start_mark.line + 1, "a key must be a plain value")
            if key in own:
                raise YamlProblem(key_node.start_mark.line + 1,
                                  f"duplicate key {key!r} (first on line {mapping.lines[key]})")
            own.add(key)
            mapping[key] = _convert(value_node, loader, budget, key_node.start_mark.line + 1)
            mapping.lines[key] = key_node.start_mark.line + 1
        return mapping
    if isinstance(node, yaml.SequenceNode):
        sequence = YList(_convert(item, loader, budget) for item in node.value)
        sequence.line = node.start_mark.line + 1
        sequence.lines = [item.start_mark.line + 1 for item in node.value]
        return sequence
    return loader.construct_object(node, deep=True)
