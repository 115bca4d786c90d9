"""Import cycles between modules: none but the few listed here, each with its reason.

`lint-imports` (contracts in pyproject.toml) holds the packages to their layers; inside a
package, two modules that import each other (directly or around a circle, counting the
imports made only for type checking) are one module in two files. A new circle fails this
test; so does a listed one that is gone (take it off the list).
"""
from __future__ import annotations

import grimp

#: each allowed circle (its modules) -> why it stays for now (none left: keep it so)
ALLOWED: dict[frozenset[str], str] = {}


def import_cycles(graph: grimp.ImportGraph) -> set[frozenset[str]]:
    """The strongly connected components (more than one module) of an import graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: set[frozenset[str]] = set()

    def visit(module: str) -> None:  # Tarjan; the graph is small enough for recursion
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.add(frozenset(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return cycles


def test_no_import_cycles_but_the_listed_ones() -> None:
    cycles = import_cycles(grimp.build_graph("shadow", "normalizers", cache_dir=None))
    new = [sorted(cycle) for cycle in cycles - ALLOWED.keys()]
    assert not new, f"modules that import each other (break the circle, or list it with a reason): {new}"
    gone = [sorted(cycle) for cycle in ALLOWED.keys() - cycles]
    assert not gone, f"listed circles that no longer exist (take them off ALLOWED): {gone}"


def test_a_circle_around_three_modules_is_found() -> None:
    graph = grimp.ImportGraph()
    for importer, imported in (("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d"), ("p.d", "p.e")):
        graph.add_import(importer=importer, imported=imported)
    assert import_cycles(graph) == {frozenset({"p.a", "p.b", "p.c"})}
