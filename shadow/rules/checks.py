"""`verify:` — what `shadow verify` checks beyond documents, per entity:

    verify:
      keep:                                   # rows the remodel keeps (e.g. no soft-deleted)
        mongo: {deletedAt: null}              # a Mongo query on the stored documents
        postgres: {deleted_at: null}          # column = value (null: IS NULL) on the main table
      sums:                                   # exact decimal sums, grouped
        - {sum: amount.value, by: [status, amount.currency]}
      sets:                                   # unique-set digests (e.g. a partial unique index)
        - {name: pending_idempotency, of: [idempotencyKey], where: {status: pending}}

`sum`, `by`, `of` and `where` name API fields rebuilt from a plain column (`column`,
inside `object`s too): the column is the PostgreSQL side, the field path the Mongo side.
`of` also takes references (`ref:`), e.g. the idempotency tuple `of: [buyerId, key]`: the
Mongo value whatever its stored type, the PostgreSQL FK resolved through `id_map`.
Parsed once at load into a frozen `Checks` (sections.py).
"""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from shadow.rules.reader import IDENTIFIER, Reader, kind_of, show
from shadow.rules.sections import NO_CHECKS, Checks, Column, SetCheck, SumCheck
from shadow.rules.spec import Field
from shadow.rules.stored import plain_yaml
from shadow.rules.yamltree import YList, YMap

CHECK_KEYS = ("keep", "sums", "sets")


def parse_checks(reader: Reader, document: YMap, fields: Mapping[str, Field], where: str) -> Checks:
    if "verify" not in document:
        return NO_CHECKS
    value = document["verify"]
    here = f"{where} verify"
    if not isinstance(value, YMap):
        reader.error(document.line_of("verify"),
                     f"{here}: must be a mapping with {', '.join(CHECK_KEYS)}; got {kind_of(value)}")
        return NO_CHECKS
    reader.keys(value, CHECK_KEYS, here)
    keep_mongo: dict[str, Any] = {}
    keep_postgres: dict[str, Any] = {}
    keep = value.get("keep")
    if keep is not None:
        if not isinstance(keep, YMap) or not reader.keys(keep, ("mongo", "postgres"), f"{here} keep"):
            if not isinstance(keep, YMap):
                reader.error(value.line_of("keep"),
                             f"{here}: 'keep' must be {{mongo: QUERY, postgres: {{column: value}}}}")
        else:
            mongo = keep.get("mongo", YMap())
            if isinstance(mongo, YMap):
                keep_mongo = plain_yaml(mongo)
            else:
                reader.error(keep.line_of("mongo"),
                             f"{here}: keep.mongo must be a Mongo query (a mapping), got {kind_of(mongo)}")
            postgres = keep.get("postgres", YMap())
            if isinstance(postgres, YMap):
                for column, wanted in postgres.items():
                    if not isinstance(column, str) or not IDENTIFIER.match(column) or isinstance(wanted, YMap | YList):
                        reader.error(postgres.line_of(column),
                                     f"{here}: keep.postgres takes column: scalar, got {show(column)}")
                    else:
                        keep_postgres[column] = wanted
            else:
                reader.error(keep.line_of("postgres"),
                             f"{here}: keep.postgres must map column -> value, got {kind_of(postgres)}")
    sums = []
    for item, line in _items(reader, value, "sums", here):
        if not reader.keys(item, ("sum", "by", "name"), f"{here} sum", required=("sum",)):
            continue
        column = _column(reader, fields, item.get("sum"), line, here)
        by = tuple(c for c in (_column(reader, fields, path, line, here)
                               for path in reader.strings(item, "by", f"{here} sum")) if c is not None)
        if column is not None:
            name = reader.string(item, "name", here, pattern=IDENTIFIER) or "sum_" + column.column + "".join(
                "_by_" + c.column for c in by)
            sums.append(SumCheck(name, column, by))
    sets = []
    for item, line in _items(reader, value, "sets", here):
        if not reader.keys(item, ("name", "of", "where"), f"{here} set", required=("name", "of")):
            continue
        set_name = reader.string(item, "name", here, pattern=IDENTIFIER)
        of = tuple(c for c in (_column(reader, fields, path, line, here, references=True)
                               for path in reader.strings(item, "of", f"{here} set")) if c is not None)
        conditions = []
        raw_where = item.get("where", YMap())
        if not isinstance(raw_where, YMap):
            reader.error(line, f"{here}: set 'where' must map field -> value, got {kind_of(raw_where)}")
        else:
            for path, wanted in raw_where.items():
                column = _column(reader, fields, path, raw_where.line_of(path), here)
                if column is not None:
                    conditions.append((column, wanted))
        if set_name and of:
            sets.append(SetCheck(set_name, of, tuple(conditions)))
    return Checks(MappingProxyType(keep_mongo), MappingProxyType(keep_postgres), tuple(sums), tuple(sets))


def _items(reader: Reader, value: YMap, key: str, where: str) -> list[tuple[YMap, int]]:
    raw = value.get(key, YList())
    if not isinstance(raw, YList):
        reader.error(value.line_of(key), f"{where}: {key!r} must be a list, got {kind_of(raw)}")
        return []
    found = []
    for index, item in enumerate(raw):
        if isinstance(item, YMap):
            found.append((item, item.line))
        else:
            reader.error(raw.line_of(index), f"{where}: {key!r} items are mappings, got {kind_of(item)}")
    return found


def _column(reader: Reader, fields: Mapping[str, Field], path: Any, line: int, where: str,
            references: bool = False) -> Column | None:
    """The column an API field path is rebuilt from (plain columns; references too when
    `references`)."""
    if not isinstance(path, str) or not path:
        reader.error(line, f"{where}: expected an API field path, got {show(path)}")
        return None
    spec: Field | None = None
    children = fields
    for step in path.split("."):
        spec = children.get(step)
        if spec is None:
            reader.error(line, f"{where}: {path!r} is not a field of the entity")
            return None
        children = spec.children
    if references and spec is not None and spec.kind == "ref" and spec.column and spec.to:
        return Column(path, spec.column, spec.to)
    if spec is None or spec.kind != "column" or not spec.column:
        wanted = "a plain column or a reference (ref:)" if references else "a plain column"
        reader.error(line, f"{where}: {path!r} must be a field rebuilt from {wanted} "
                           f"(got {spec.kind if spec else 'none'})")
        return None
    return Column(path, spec.column)

