"""Layer 1: counts — rows per entity (after the `keep` filters), and per PARENT document
its relationships: child rows per embedded array, the 1:1 subdocument, and every
reference (top level, inside objects, inside child rows: `timeline[].actorId`).

Both stores are streamed once in legacy-id order (Mongo projected to the relationship
fields, PostgreSQL one row per parent with a subquery per relationship) and merged by
key, so a parent losing a child row and another gaining one are two named differences,
not a clean total. Each difference carries the totals of both sides, the exact number of
documents concerned and a bounded sample of them (`documents`).

References go by the RULE, never by BSON type or text shape: a `ref:`/`mixed:` value of
any stored type (ObjectId, 24-hex string, free string) is looked up among the `_id`s of
the `to` collection; on PostgreSQL a FK resolves through `id_map` (its `collection` must be
`to`), a Mixed external ref resolves when `id_map` holds it as a legacy id of `to`. Both
sides reduce a reference to `e:<legacy id>` (resolves), `x:<text>` (a Mixed external
ref), or dangling (kept with what it holds, for the sample)."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from shadow.replay.sources.postgres import quote
from shadow.rules.spec import Entity, Field
from shadow.verify.model import Difference, LayerResult, layer_result
from shadow.verify.mongoside import MongoSide, lookup_ids
from shadow.verify.scope import KeyRange, bucket_of, mongo_filter, pg_condition

SAMPLE = 20  # documents named per difference; the count is exact
_CHUNK = 1000  # parents per reference lookup batch (Mongo side)
_MOD = 1 << 128


@dataclass(frozen=True, slots=True)
class Site:
    """One relationship checked per parent.

    kind     rows | child | ref (a reference: top level, in a child, or in child rows)
    path     the API path (`timeline[].actorId` for a reference inside child rows)
    stored   the Mongo path of the array / subdocument / reference
    within   for a reference inside a child or child rows: the sub-path of the item
    """

    kind: str
    path: str
    stored: str
    spec: Field
    owner: Field | None = None  # the rows/child field a reference sits in
    within: str = ""

    @property
    def check(self) -> str:
        return f"{'refs' if self.kind == 'ref' else self.kind}.{self.path}"


def sites(entity: Entity) -> list[Site]:
    """Every relationship of the main document, with references inside objects, the 1:1
    subdocument and child rows (objects within them too)."""
    found: list[Site] = []
    pending = [(spec.name, entity.stored.stored_name(spec.name), spec) for spec in entity.fields.values()]
    while pending:
        path, stored, spec = pending.pop(0)
        if spec.kind == "object":
            pending.extend((f"{path}.{sub.name}", f"{stored}.{sub.name}", sub) for sub in spec.fields)
        elif spec.kind in ("ref", "mixed"):
            found.append(Site("ref", path, stored, spec))
        elif spec.kind in ("rows", "child"):
            found.append(Site(spec.kind, path, stored, spec))
            marker = "[]" if spec.kind == "rows" else ""
            if spec.value is not None and spec.value.kind in ("ref", "mixed"):
                found.append(Site("ref", f"{path}{marker}", stored, spec.value, spec, ""))
            inner = [(sub.name, sub) for sub in spec.fields]
            while inner:
                sub_path, sub = inner.pop(0)
                if sub.kind == "object":
                    inner.extend((f"{sub_path}.{leaf.name}", leaf) for leaf in sub.fields)
                elif sub.kind in ("ref", "mixed"):
                    found.append(Site("ref", f"{path}{marker}.{sub_path}", stored, sub, spec, sub_path))
    return found


def _dig(document: Any, path: str) -> Any:
    for step in path.split("."):
        document = document.get(step) if isinstance(document, dict) else None
    return document


@dataclass(slots=True)
class _Tally:
    """One check's totals, differing parents (exact count + sample) and dangling refs."""

    mongo_total: int = 0
    pg_total: int = 0
    differing: int = 0
    sample: list[dict[str, Any]] = field(default_factory=list)
    mongo_dangling: int = 0
    mongo_dangling_sample: list[dict[str, Any]] = field(default_factory=list)
    pg_dangling: int = 0
    pg_dangling_sample: list[dict[str, Any]] = field(default_factory=list)


def _shown(values: Any) -> Any:
    """A reference value as the sample shows it (dangling: what it holds)."""
    if isinstance(values, list):
        return [_shown(value) for value in values]
    if values is None:
        return None
    return values[2:] if values[:2] in ("e:", "x:", "d:") else values


def _comparable(values: Any) -> Any:
    """Dangling on both sides is the same finding (reported as dangling), not a mismatch."""
    if isinstance(values, list):
        return sorted("d" if v is not None and v.startswith("d:") else (v or "") for v in values)
    return "d" if values is not None and values.startswith("d:") else values


async def run_counts(entity: Entity, mongo: MongoSide, pool: asyncpg.Pool, key_range: KeyRange,
                     id_map_table: str = "id_map") -> LayerResult:
    started = time.perf_counter()
    relationships = sites(entity)
    tallies = {site.check: _Tally() for site in relationships}
    presence = _Tally()  # the `count` check: documents on one side only
    buckets: dict[str, list[int]] = {}  # bucket -> [mongo count, mongo digest, pg count, pg digest]

    def digest(bucket: str, side: int, key: str, values: tuple[Any, ...]) -> None:
        entry = buckets.setdefault(bucket, [0, 0, 0, 0])
        entry[side] += 1
        data = repr((key, tuple(_comparable(v) if site.kind == "ref" else v
                                for site, v in zip(relationships, values, strict=True)))).encode()
        hashed = int.from_bytes(hashlib.blake2b(data, digest_size=16).digest(), "big")
        entry[side + 1] = (entry[side + 1] + hashed) % _MOD

    mongo_rows = _mongo_parents(entity, mongo, key_range, relationships).__aiter__()
    async with pool.acquire() as connection, connection.transaction(readonly=True):
        pg_rows = _pg_parents(entity, connection, key_range, relationships, id_map_table).__aiter__()
        mongo_next = await anext(mongo_rows, None)
        pg_next = await anext(pg_rows, None)
        previous_pg: str | None = None
        while mongo_next is not None or pg_next is not None:
            if pg_next is not None and previous_pg is not None and pg_next[0] <= previous_pg:
                raise RuntimeError(f"PostgreSQL keys out of order: {pg_next[0]!r} after {previous_pg!r}")
            if pg_next is None or (mongo_next is not None and mongo_next[0] < pg_next[0]):
                assert mongo_next is not None
                presence.mongo_total += 1
                _note(presence, {"key": mongo_next[0], "mongo": "present", "postgres": None})
                _totals(relationships, tallies, mongo_next[1], None)
                _dangling(relationships, tallies, mongo_next[0], mongo_next[1], "mongo")
                digest(bucket_of(mongo_next[0]), 0, mongo_next[0], mongo_next[1])
                mongo_next = await anext(mongo_rows, None)
                continue
            previous_pg = pg_next[0]
            if mongo_next is None or pg_next[0] < mongo_next[0]:
                presence.pg_total += 1
                _note(presence, {"key": pg_next[0], "mongo": None, "postgres": "present"})
                _totals(relationships, tallies, None, pg_next[1])
                _dangling(relationships, tallies, pg_next[0], pg_next[1], "postgres")
                digest(bucket_of(pg_next[0]), 2, pg_next[0], pg_next[1])
                pg_next = await anext(pg_rows, None)
                continue
            key = mongo_next[0]
            presence.mongo_total += 1
            presence.pg_total += 1
            _totals(relationships, tallies, mongo_next[1], pg_next[1])
            _dangling(relationships, tallies, key, mongo_next[1], "mongo")
            _dangling(relationships, tallies, key, pg_next[1], "postgres")
            for site, in_mongo, in_pg in zip(relationships, mongo_next[1], pg_next[1], strict=True):
                if site.kind == "ref":
                    if _comparable(in_mongo) != _comparable(in_pg):
                        _note(tallies[site.check], {"key": key, "path": site.path,
                                                    "mongo": _shown(in_mongo), "postgres": _shown(in_pg)})
                elif in_mongo != in_pg:
                    _note(tallies[site.check], {"key": key, "path": site.path, "mongo": in_mongo, "postgres": in_pg})
            digest(bucket_of(key), 0, key, mongo_next[1])
            digest(bucket_of(key), 2, key, pg_next[1])
            mongo_next, pg_next = await anext(mongo_rows, None), await anext(pg_rows, None)
    differences: list[Difference] = []
    checks: list[dict[str, Any]] = []
    for check, tally in (("count", presence), *tallies.items()):
        passed = True
        if tally.differing or tally.mongo_total != tally.pg_total:
            passed = False
            differences.append(Difference("counts", check, "count", mongo=tally.mongo_total, postgres=tally.pg_total,
                                          count=tally.differing, documents=tuple(tally.sample)))
        checks.append({"check": check, "passed": passed, "mongo": tally.mongo_total, "postgres": tally.pg_total})
        if check.startswith("refs."):
            dangling_check = "dangling." + check[len("refs."):]
            for kind, number, sample, side in (
                    ("dangling_in_mongo", tally.mongo_dangling, tally.mongo_dangling_sample, "mongo"),
                    ("dangling_in_postgres", tally.pg_dangling, tally.pg_dangling_sample, "postgres")):
                if number:
                    differences.append(Difference("counts", dangling_check, kind,
                                                  mongo=number if side == "mongo" else 0,
                                                  postgres=number if side == "postgres" else 0,
                                                  count=number, documents=tuple(sample)))
            checks.append({"check": dangling_check, "passed": not (tally.mongo_dangling or tally.pg_dangling),
                           "mongo": tally.mongo_dangling, "postgres": tally.pg_dangling})
    return layer_result("counts", differences, len(checks), time.perf_counter() - started, checks=checks,
                        buckets={name: {"mongo": {"count": entry[0], "digest": f"{entry[1]:032x}"},
                                        "postgres": {"count": entry[2], "digest": f"{entry[3]:032x}"}}
                                 for name, entry in sorted(buckets.items())})


def _note(tally: _Tally, document: dict[str, Any]) -> None:
    tally.differing += 1
    if len(tally.sample) < SAMPLE:
        tally.sample.append(document)


def _size(site: Site, value: Any) -> int:
    """What a value adds to the check's total: rows, a subdocument, references set."""
    if value is None:
        return 0
    if site.kind == "ref":
        return sum(v is not None for v in value) if isinstance(value, list) else 1
    return int(value)


def _totals(relationships: list[Site], tallies: dict[str, _Tally], mongo: Any, pg: Any) -> None:
    for index, site in enumerate(relationships):
        tally = tallies[site.check]
        if mongo is not None:
            tally.mongo_total += _size(site, mongo[index])
        if pg is not None:
            tally.pg_total += _size(site, pg[index])


def _dangling(relationships: list[Site], tallies: dict[str, _Tally], key: str, values: tuple[Any, ...],
              side: str) -> None:
    for site, value in zip(relationships, values, strict=True):
        if site.kind != "ref" or value is None:
            continue
        items = value if isinstance(value, list) else [value]
        for position, item in enumerate(items):
            if item is None or not item.startswith("d:"):
                continue
            tally = tallies[site.check]
            path = site.path.replace("[]", f"[{position}]", 1) if isinstance(value, list) else site.path
            if side == "mongo":
                tally.mongo_dangling += 1
                if len(tally.mongo_dangling_sample) < SAMPLE:
                    tally.mongo_dangling_sample.append({"key": key, "path": path, "ref": item[2:]})
            else:
                tally.pg_dangling += 1
                if len(tally.pg_dangling_sample) < SAMPLE:
                    tally.pg_dangling_sample.append({"key": key, "path": path, "ref": item[2:]})


# --------------------------------------------------------------------------- Mongo side

def _reference_values(site: Site, document: dict[str, Any]) -> list[Any]:
    """The raw stored references of one site in one document (None: not set)."""
    if site.owner is None:
        return [_dig(document, site.stored)]
    holder = _dig(document, site.stored)
    items = holder if site.owner.kind == "rows" else [holder] if holder is not None else []
    if not isinstance(items, list):
        return []
    return [item if not site.within else _dig(item, site.within) for item in items]


async def _mongo_parents(entity: Entity, mongo: MongoSide, key_range: KeyRange,
                         relationships: list[Site]) -> Any:
    """(key, values per site) per document in key order; references resolved per chunk."""
    projection = {site.stored: 1 for site in relationships} or {"_id": 1}
    chunk: list[dict[str, Any]] = []
    async for document in mongo.documents(entity.collection, mongo_filter(entity, key_range), projection):
        chunk.append(document)
        if len(chunk) >= _CHUNK:
            for row in await _resolve_chunk(entity, mongo, relationships, chunk):
                yield row
            chunk = []
    if chunk:
        for row in await _resolve_chunk(entity, mongo, relationships, chunk):
            yield row


async def _resolve_chunk(entity: Entity, mongo: MongoSide, relationships: list[Site],
                         documents: list[dict[str, Any]]) -> list[tuple[str, tuple[Any, ...]]]:
    wanted: dict[str, list[Any]] = {}
    for site in relationships:
        if site.kind == "ref":
            ids = wanted.setdefault(site.spec.to or "", [])
            for document in documents:
                for value in _reference_values(site, document):
                    if value is not None:
                        ids.extend(lookup_ids(value))
    found = {target: {_key(value) for value in await mongo.existing(target, _unique(ids))} if ids else set()
             for target, ids in wanted.items()}
    objectid = entity.key_type == "objectid"
    rows = []
    for document in documents:
        key = str(document["_id"])
        values: list[Any] = []
        for site in relationships:
            stored = _dig(document, site.stored)
            if site.kind == "rows":
                values.append(len(stored) if isinstance(stored, list) else 0)
            elif site.kind == "child":
                values.append(int(isinstance(stored, dict)))
            else:
                resolved = [_resolve(site.spec, value, found[site.spec.to or ""])
                            for value in _reference_values(site, document)]
                values.append(resolved if site.owner is not None and site.owner.kind == "rows"
                              else (resolved[0] if resolved else None))
        rows.append((key.lower() if objectid else key, tuple(values)))
    return rows


def _unique(ids: list[Any]) -> list[Any]:
    seen: dict[tuple[str, Any], Any] = {}
    for value in ids:
        try:
            seen.setdefault((type(value).__name__, value), value)
        except TypeError:  # unhashable: a subdocument names nothing
            continue
    return list(seen.values())


def _key(value: Any) -> str:
    return str(value)


def _resolve(spec: Field, value: Any, targets: set[str]) -> str | None:
    """`e:<legacy id>` when the value names a document of `to` (whatever its stored type),
    else `x:<text>` for a Mixed string (an external ref), else `d:<value>` (dangling)."""
    if value is None:
        return None
    for candidate in lookup_ids(value):
        if _key(candidate) in targets:
            return "e:" + _key(candidate)
    if spec.kind == "mixed" and isinstance(value, str):
        return "x:" + value
    return "d:" + str(value)


# --------------------------------------------------------------------------- PostgreSQL side

class _Args:
    def __init__(self, values: list[Any]) -> None:
        self.values = values

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def _resolve_sql(fk: str, to: str, args: _Args, id_map: str) -> str:
    return (f"CASE WHEN {fk} IS NULL THEN NULL ELSE COALESCE((SELECT 'e:' || i.legacy_object_id FROM {id_map} i "
            f"WHERE i.new_id = {fk} AND i.collection = {args.add(to)}), 'd:' || {fk}::text) END")


def _reference_sql(spec: Field, alias: str, args: _Args, id_map: str) -> str:
    column = spec.column or ""
    to = spec.to or ""
    if spec.kind == "ref":
        return _resolve_sql(f"{alias}.{quote(column)}", to, args, id_map)
    kind, new_id, external = (f"{alias}.{quote(column + suffix)}" for suffix in ("_ref_kind", "_id", "_external_ref"))
    return (f"CASE WHEN {kind}::text = 'entity' THEN {_resolve_sql(new_id, to, args, id_map)} "
            f"WHEN {external} IS NOT NULL THEN COALESCE((SELECT 'e:' || i.legacy_object_id FROM {id_map} i "
            f"WHERE i.collection = {args.add(to)} AND i.legacy_object_id = {external}), 'x:' || {external}) END")


async def _pg_parents(entity: Entity, connection: asyncpg.Connection, key_range: KeyRange, relationships: list[Site],
                      id_map_table: str) -> Any:
    where, condition_args = pg_condition(entity, key_range, "m")
    args = _Args(list(condition_args))
    id_map = quote(id_map_table)
    columns = []
    for site in relationships:
        if site.owner is None and site.kind in ("rows", "child"):
            spec = site.spec
            child = f"FROM {quote(spec.table or '')} c WHERE c.{quote(spec.fk or '')} = m.{quote(spec.parent)}"
            columns.append(f"(SELECT count(*) {child})" if site.kind == "rows"
                           else f"(SELECT count(*) > 0 {child})::int")
        elif site.owner is None:
            columns.append(_reference_sql(site.spec, "m", args, id_map))
        else:
            owner = site.owner
            child = (f"FROM {quote(owner.table or '')} c WHERE c.{quote(owner.fk or '')} = m.{quote(owner.parent)}")
            reference = _reference_sql(site.spec, "c", args, id_map)
            columns.append(f"(SELECT array_agg({reference}) {child})" if owner.kind == "rows"
                           else f"(SELECT {reference} {child} LIMIT 1)")
    key = f"m.{quote(entity.key)}"
    select = ", ".join([f"{key}::text", *columns])
    # the key's own order (its unique index serves it, as in the docs layer); the merge
    # checks the order and refuses a collation that does not sort hex bytewise
    sql = f"SELECT {select} FROM {quote(entity.table)} m WHERE {where} ORDER BY {key}"
    async for row in connection.cursor(sql, *args.values, prefetch=2000):
        values: list[Any] = []
        for index, site in enumerate(relationships, start=1):
            value = row[index]
            if site.kind == "ref" and site.owner is not None and site.owner.kind == "rows":
                value = list(value or [])
            elif site.kind != "ref":
                value = int(value or 0)
            values.append(value)
        yield row[0], tuple(values)
