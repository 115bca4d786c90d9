"""The raw engine's modules import one another without a circle (issue 19): exchange at
the bottom (with the Protocols each part needs of the others), then upstream, engine and
client, and server over them. TYPE_CHECKING imports count too."""
from __future__ import annotations

import ast
from pathlib import Path

import shadow.proxy.raw as raw

PACKAGE = Path(raw.__file__).parent


def imports_within_the_package(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("shadow.proxy.raw."):
            found.add(node.module.rsplit(".", 1)[1])
    return found


def test_the_raw_engine_modules_import_each_other_without_a_circle() -> None:
    graph = {path.stem: imports_within_the_package(path) for path in PACKAGE.glob("*.py") if path.stem != "__init__"}
    assert graph["exchange"] == set()
    assert graph["upstream"] == {"exchange"}
    assert graph["client"] == {"exchange"}
    assert graph["engine"] == {"exchange", "upstream"}
    # and in general: a topological order exists
    done: set[str] = set()
    while len(done) < len(graph):
        ready = {name for name, needs in graph.items() if name not in done and needs <= done}
        assert ready, f"import circle among {sorted(set(graph) - done)}"
        done |= ready
