"""Lookups in PostgreSQL keyed by sampled ids — the only queries of `shadow rules draft`
that touch user tables, each an index probe of at most `PROBE_KEYS` values:
which table's unique text column holds a collection's sampled `_id`s, and which
`id_map` collection the ObjectIds at a reference path belong to. Returns `Probes`
(names and counts only: the ids stay here)."""
from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

from shadow.ruletools.draft.catalog import Catalog
from shadow.ruletools.draft.names import squashed
from shadow.ruletools.draft.proposal import KeyHit, Probes
from shadow.ruletools.draft.propose import key_candidates
from shadow.ruletools.draft.sample import CollectionShape

PROBE_KEYS = 20


def _quoted(name: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


async def _key_hits(connection: Any, catalog: Catalog, tables: Sequence[str], keys: list[str]) -> list[KeyHit]:
    hits = []
    for name in tables:
        for column in key_candidates(catalog.tables[name]):
            found = await connection.fetchval(
                f"SELECT count(*) FROM {_quoted(name)} WHERE {_quoted(column)} = ANY($1::text[])", keys)
            if found:
                hits.append(KeyHit(name, column, int(found), len(keys)))
    return hits


async def probe(connection: Any, catalog: Catalog, shapes: Sequence[CollectionShape]) -> Probes:
    key_hits: dict[str, tuple[KeyHit, ...]] = {}
    for shape in shapes:
        keys = list(shape.keys[:PROBE_KEYS])
        if not keys:
            continue
        # the tables named like the collection first: one probe each when names agree
        named = [name for name in catalog.tables if squashed(name.rpartition(".")[2]) == squashed(shape.name)]
        hits = await _key_hits(connection, catalog, named, keys)
        if not hits:
            others = [name for name in catalog.tables if name not in named and name != "id_map"]
            hits = await _key_hits(connection, catalog, others, keys)
        key_hits[shape.name] = tuple(hits)
    refs: dict[tuple[str, str], str] = {}
    if catalog.id_map and catalog.id_map_collections:
        for shape in shapes:
            for path, ids in shape.probe_ids.items():
                if path == "_id":
                    continue
                rows = await connection.fetch(
                    "SELECT m.collection, count(*) AS n FROM unnest($1::text[]) AS c(name)"
                    " JOIN id_map m ON m.collection = c.name AND m.legacy_object_id = ANY($2::text[])"
                    " GROUP BY m.collection ORDER BY n DESC", list(catalog.id_map_collections), list(ids))
                if rows:
                    refs[(shape.name, path)] = rows[0]["collection"]
    return Probes(MappingProxyType(key_hits), MappingProxyType(refs))
