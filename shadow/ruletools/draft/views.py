"""View models seen in recorded answers: documents keyed by `id` instead of `_id`,
computed per read (embedded rows, counts, per-reader flags). The draft reuses the
stored entity's fields the view shows under the same name and declares the rest
`unverifiable`, each with a hint of what could rebuild it (an aggregate over a child
table, an embedded referenced row, a per-reader `exists`). Pure."""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import replace

from shadow.ruletools.draft.catalog import Catalog
from shadow.ruletools.draft.names import singular, words
from shadow.ruletools.draft.proposal import EntityProposal, FieldProposal, RouteProposal


def computed_hint(key: str, entity: EntityProposal, catalog: Catalog, tables: Mapping[str, str]) -> str:
    """What might rebuild a field the API shows and no column explains (a comment, never a rule)."""
    found = words(key)
    if len(found) > 1 and found[-1] in ("count", "total"):
        stem = [singular(word) for word in found[:-1]]
        for child, fk in catalog.children_of(entity.table):
            if child not in tables and [singular(word) for word in words(child)][-len(stem):] == stem:
                return f"an aggregate candidate: {{count: {child}, fk: {fk.columns[0]}}}"
        return "an aggregate candidate (count: a child table)"
    if found and (found[0] in ("is", "has", "can", "my") or found[-1] in ("me", "mine")):
        return "a per-reader or computed flag: {exists: …, where: {…: reader}} (needs `reader:`), or unverifiable"
    ref = next((f for f in entity.fields if f.kind == "ref" and f.name in (key + "Id", key + "_id")), None)
    table = catalog.tables.get(entity.table)
    embedded = table.fk_of(ref.column) if ref is not None and ref.column and table is not None else None
    if ref is not None and embedded is not None:
        return f"the referenced row embedded: {{child: {embedded.table}, fk: id, parent: {ref.column}, fields: …}}"
    return "computed by the API"


def view_entity(base: EntityProposal, routes: tuple[RouteProposal, ...], shown: Counter[str], documents: int,
                catalog: Catalog, tables: Mapping[str, str]) -> EntityProposal:
    """A `view: true` entity over the base entity's table, for answers keyed by `id`."""
    name = f"{base.name}_views"
    fields = [FieldProposal("id", "column", 0.9, f"the view's key: the legacy _id ({base.key})", column=base.key)]
    for spec in base.fields:
        if spec.name in shown and spec.name != "id":
            fields.append(replace(spec, reason=f"shown by the view as by the stored document; {spec.reason}"))
    known = {spec.name for spec in fields}
    unverifiable = []
    for key, count in sorted(shown.items()):
        if key in known:
            continue
        hint = computed_hint(key, base, catalog, tables)
        unverifiable.append((key, f"shown in {count} of {documents} recorded documents, rebuilt from no column: "
                                  f"{hint}"))
    todos = [f"{name}.{key}: {why}" for key, why in unverifiable]
    if any(route.is_list for route in routes):
        todos.append(f"{name}: a list view — if it is paged or sorted, add order_by / limit / offset / total by hand")
    return EntityProposal(name, base.collection, base.table, 0.6,
                          f"documents keyed by `id` in {documents} recorded answer(s): a view model computed per read",
                          base.key, tuple(fields), routes=routes, unverifiable=tuple(unverifiable),
                          todos=tuple(todos), view=True, id_field="id")
