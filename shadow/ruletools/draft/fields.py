"""Document paths -> fields of one entity: columns, references, polymorphic ids,
nested objects, jsonb blobs, 1:1 child tables, child rows and junction tables, with the
normalizers their types need. Pure: the catalog, the sample's shape and the probes in,
`FieldProposal`s out; what cannot be matched is appended to `Matcher.todos`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shadow.ruletools.draft.catalog import Catalog, Column, ForeignKey, Table
from shadow.ruletools.draft.names import IDENTIFIER, ORDER_COLUMNS, VALUE_LEAVES, ends_with, snake, words
from shadow.ruletools.draft.proposal import FieldProposal, Probes
from shadow.ruletools.draft.sample import ITEM, CollectionShape, PathShape

SCALARS = {"string", "int", "double", "decimal", "bool", "date", "objectid"}


@dataclass
class Matcher:
    """The matching state of one entity: which columns are taken, what is left to do."""

    catalog: Catalog
    shape: CollectionShape
    probes: Probes
    table_collections: dict[str, str]  # table -> the Mongo collection (id_map name) its rows come from
    claimed: dict[str, set[str]] = field(default_factory=dict)
    todos: list[str] = field(default_factory=list)
    tables_used: list[str] = field(default_factory=list)

    def claim(self, table: str, *columns: str) -> None:
        self.claimed.setdefault(table, set()).update(columns)
        if table not in self.tables_used:
            self.tables_used.append(table)

    def free(self, table: Table, name: str) -> Column | None:
        column = table.column(name)
        return column if column is not None and name not in self.claimed.get(table.name, set()) else None

    def todo(self, path: str, text: str) -> None:
        self.todos.append(f"{self.shape.name}.{path}: {text}")

    # ------------------------------------------------------------------ containers
    def fields(self, parent: str, table: Table, prefix: tuple[str, ...], skip: frozenset[str] = frozenset()
               ) -> tuple[FieldProposal, ...]:
        """Proposals for the keys one step under `parent` (a document, subdocument or item)."""
        found = []
        for shape in sorted(self.shape.children(parent), key=lambda shape: shape.path):
            key = shape.path[len(parent) + 1:] if parent else shape.path
            if key in skip:
                continue
            proposal = self.one(shape, key, table, prefix)
            if proposal is not None:
                found.append(proposal)
        # the table's column order, not the (random) sample's: the same stores give the same draft
        return tuple(sorted(found, key=lambda proposal: _position(table, proposal)))

    def one(self, shape: PathShape, key: str, table: Table, prefix: tuple[str, ...]) -> FieldProposal | None:
        kinds = shape.kinds()
        if kinds == {"object"}:
            return self.subdocument(shape, key, table, prefix)
        if kinds == {"array"}:
            return self.array(shape, key, table)
        if kinds & {"object", "array"}:
            json_column = self.free(table, snake(*prefix, key))
            if json_column is not None and json_column.family == "json":
                self.claim(table.name, json_column.name)
                return FieldProposal(key, "json", 0.6, f"mixed types ({shape.summary()}) <- jsonb {json_column.name}",
                                     column=json_column.name)
            self.todo(shape.path, f"mixed types at one path ({shape.summary()}): no single column can hold it")
            return None
        return self.scalar(shape, key, table, prefix)

    # ------------------------------------------------------------------ scalars
    def scalar(self, shape: PathShape, key: str, table: Table, prefix: tuple[str, ...]) -> FieldProposal | None:
        kinds = shape.kinds()
        mixed = self.mixed(shape, key, table, prefix)
        if mixed is not None:
            return mixed
        names = [(snake(*prefix, key), 0.9, "same name")]
        if not prefix and key != names[0][0] and IDENTIFIER.match(key):  # a quoted camelCase column
            names.insert(0, (key, 0.9, "the very name"))
        if prefix and key in VALUE_LEAVES:
            names.append((snake(*prefix), 0.8, f"'{key}' of the subdocument {prefix[-1]} is its own column"))
        if prefix:
            names.append((snake(key), 0.7, "same name without the subdocument prefix"))
        for name, confidence, why in names:
            column = self.free(table, name)
            if column is None:
                continue
            typed = compatible(kinds, column, shape)
            if typed is None:
                self.todo(shape.path, f"named like {table.name}.{name} ({column.declared}) but the sample holds "
                                      f"{shape.summary()}")
                return None
            kind, transforms, note = typed
            self.claim(table.name, name)
            if kind == "ref":
                return self.reference(shape, key, table, column, confidence, why)
            return FieldProposal(key, "column", confidence, f"{why} as {table.name}.{name} ({column.declared}){note}",
                                 column=name, transforms=transforms)
        if "objectid" in kinds:
            return self.reference_by_target(shape, key, table)
        self.todo(shape.path, f"no column of {table.name} matches ({shape.summary()})")
        return None

    def ref_target(self, shape: PathShape, table: Table, column: str) -> tuple[str | None, str]:
        """The id_map collection a reference column points at, and why we think so."""
        probed = self.probes.ref_collections.get((self.shape.name, shape.path))
        fk = table.fk_of(column)
        by_fk = self.table_collections.get(fk.table) if fk is not None else None
        if probed is not None:
            if fk is not None and by_fk is not None and by_fk != probed:
                return probed, (f"sampled ids found in id_map under '{probed}' BUT the FK points at {fk.table} "
                                f"('{by_fk}'): check which is right")
            agrees = f", FK to {fk.table}" if fk is not None and by_fk == probed else ""
            return probed, f"sampled ids found in id_map under '{probed}'{agrees}"
        if by_fk is not None and fk is not None:
            return by_fk, f"FK to {fk.table} (rows of '{by_fk}')"
        return None, "no FK and no sampled id in id_map"

    def reference(self, shape: PathShape, key: str, table: Table, column: Column, confidence: float,
                  why: str) -> FieldProposal | None:
        to, because = self.ref_target(shape, table, column.name)
        if to is None:
            self.todo(shape.path, f"ObjectIds <- {table.name}.{column.name} (uuid), but {because}: add `to:`")
            return None
        sure = "id_map" in because and "BUT" not in because
        return FieldProposal(key, "ref", confidence if sure else round(confidence - 0.3 * ("BUT" in because) - 0.1, 2),
                             f"ObjectId, {why} as {table.name}.{column.name} (uuid); {because}",
                             column=column.name, to=to)

    def reference_by_target(self, shape: PathShape, key: str, table: Table) -> FieldProposal | None:
        """An ObjectId path named like no column: the one free FK to the table its ids live in."""
        probed = self.probes.ref_collections.get((self.shape.name, shape.path))
        targets = [t for t, c in self.table_collections.items() if c == probed]
        fks = [fk for fk in table.foreign_keys if len(fk.columns) == 1 and fk.table in targets
               and self.free(table, fk.columns[0]) is not None]
        if probed is None or len(fks) != 1:
            self.todo(shape.path, f"ObjectIds ({shape.summary()}) but no column of {table.name} matches"
                                  + (f" and {len(fks)} free FKs point at '{probed}'" if probed else ""))
            return None
        column = fks[0].columns[0]
        self.claim(table.name, column)
        return FieldProposal(key, "ref", 0.5, f"the only free FK of {table.name} to {fks[0].table}, where the "
                                              f"sampled ids live ('{probed}')", column=column, to=probed)

    def mixed(self, shape: PathShape, key: str, table: Table, prefix: tuple[str, ...]) -> FieldProposal | None:
        """A polymorphic id: `x_ref_kind` + `x_id` + `x_external_ref` columns."""
        name = snake(*prefix, key)
        bases = [name[:-3]] if name.endswith("_id") else []
        bases.append(name)
        for base in bases:
            columns = (f"{base}_ref_kind", f"{base}_id", f"{base}_external_ref")
            if all(self.free(table, column) is not None for column in columns):
                to, because = self.ref_target(shape, table, columns[1])
                if to is None:
                    self.todo(shape.path, f"polymorphic id <- {', '.join(columns)}, but {because}: add `to:`")
                    return None
                self.claim(table.name, *columns)
                seen = "ObjectIds and strings seen" if {"objectid", "string"} <= shape.kinds() else shape.summary()
                return FieldProposal(key, "mixed", 0.9 if "string" in shape.kinds() else 0.8,
                                     f"polymorphic id ({seen}) <- {base}_ref_kind/_id/_external_ref; {because}",
                                     column=base, to=to)
        return None

    # ------------------------------------------------------------------ subdocuments
    def subdocument(self, shape: PathShape, key: str, table: Table, prefix: tuple[str, ...]) -> FieldProposal | None:
        name = snake(*prefix, key)
        column = self.free(table, name)
        if column is not None and column.family == "json":
            self.claim(table.name, name)
            paths = json_paths(self.shape, shape.path)
            return FieldProposal(key, "json", 0.9, f"subdocument <- jsonb {table.name}.{name}", column=name,
                                 json_paths=paths)
        for child, fk in self.catalog.children_of(table.name):
            child_table = self.catalog.tables[child]
            if (child_table.is_unique(fk.columns) and ends_with(child, key) and fk.ref_columns == ("id",)
                    and child not in self.table_collections):
                self.claim(child, fk.columns[0])
                sub = self.fields(shape.path, child_table, ())
                return FieldProposal(key, "child", 0.85, f"subdocument <- 1:1 child table {child} "
                                     f"(FK {fk.columns[0]} unique)", table=child, fk=fk.columns[0], fields=sub)
        before = len(self.todos)
        sub = self.fields(shape.path, table, (*prefix, key))
        if not sub:  # one TODO for the whole subdocument, not one per level below it
            del self.todos[before:]
            inside = len(self.shape.under(shape.path))
            self.todo(shape.path, f"subdocument ({inside} paths under it): no jsonb column, 1:1 child table or "
                                  f"{name}_* columns in {table.name}")
            return None
        return FieldProposal(key, "object", min(f.confidence for f in sub),
                             f"subdocument <- columns {name}_* of {table.name}", fields=sub)

    # ------------------------------------------------------------------ arrays
    def array(self, shape: PathShape, key: str, table: Table) -> FieldProposal | None:
        item = self.shape.paths.get(shape.path + ITEM)
        kinds = item.kinds() if item is not None else set()
        candidates = [(child, fk) for child, fk in self.catalog.children_of(table.name)
                      if not self.catalog.tables[child].is_unique(fk.columns) and ends_with(child, key)
                      and fk.ref_columns == ("id",) and child not in self.table_collections]
        if len(candidates) != 1:
            found = ", ".join(child for child, _ in candidates) or "none"
            self.todo(shape.path, f"array ({(item.summary() if item else 'always empty')}): child tables with an FK "
                                  f"to {table.name} named like it: {found}")
            return None
        child, fk = candidates[0]
        child_table = self.catalog.tables[child]
        self.claim(child, fk.columns[0])
        order = next((c.name for c in child_table.columns if c.name in ORDER_COLUMNS and c.family == "int"), None)
        if order is not None:
            self.claim(child, order)
        if kinds == {"object"}:
            assert item is not None
            sub = self.fields(item.path, child_table, ())
            how = f"ordered by {order}" if order else "no order column: compared as a multiset"
            return FieldProposal(key, "rows", 0.85, f"array of subdocuments <- child table {child} "
                                 f"(FK {fk.columns[0]}), {how}", table=child, fk=fk.columns[0], order_by=order,
                                 unordered=order is None, fields=sub)
        return self.junction(shape, key, child_table, fk, order, kinds)

    def junction(self, shape: PathShape, key: str, child: Table, fk: ForeignKey, order: str | None,
                 kinds: set[str]) -> FieldProposal | None:
        others = [c for c in child.columns if c.name not in (fk.columns[0], order)]
        item_path = shape.path + ITEM
        order_note = f"; {order} keeps the array's order: use order_by: {order} if the API's order matters" \
            if order else ""
        if len(others) != 1:
            self.todo(shape.path, f"array of {', '.join(sorted(kinds)) or 'nothing seen'} <- {child.name}: "
                                  f"{len(others)} value columns, expected 1")
            return None
        column = others[0]
        self.claim(child.name, column.name)
        item = self.shape.paths.get(item_path)
        if column.family == "uuid" and ("objectid" in kinds or not kinds):
            to, because = self.ref_target(item or shape, child, column.name)
            if to is None:
                self.todo(item_path, f"ids <- {child.name}.{column.name}, but {because}: add `to:`")
                return None
            value = FieldProposal("", "ref", 0.85, because, column=column.name, to=to)
            return FieldProposal(key, "rows", 0.85 if kinds else 0.5,
                                 f"array of ids <- junction table {child.name} (FK {fk.columns[0]}), a set{order_note}"
                                 + ("" if kinds else "; only empty arrays sampled"),
                                 table=child.name, fk=fk.columns[0], unordered=True, value=value)
        typed = compatible(kinds, column, item) if item is not None else None
        if typed is None:
            self.todo(item_path, f"array items vs {child.name}.{column.name} ({column.declared}): types differ")
            return None
        value = FieldProposal("", "column", 0.7, "the one value column", column=column.name, transforms=typed[1])
        return FieldProposal(key, "rows", 0.7, f"array of scalars <- {child.name}.{column.name}"
                             f"{'' if order else ', a multiset'}", table=child.name, fk=fk.columns[0],
                             order_by=order, unordered=order is None, value=value)


def _position(table: Table, proposal: FieldProposal) -> tuple[int, str]:
    """Where a proposal sits among the table's columns (nested tables last, by name)."""
    names = [column.name for column in table.columns]
    if proposal.kind == "object":
        return min((_position(table, sub) for sub in proposal.fields), default=(len(names), proposal.name))
    column = f"{proposal.column}_ref_kind" if proposal.kind == "mixed" else proposal.column
    if proposal.kind in ("rows", "child") or column not in names:
        return len(names), proposal.name
    return names.index(str(column)), proposal.name


def compatible(kinds: set[str], column: Column, shape: PathShape | None) -> tuple[str, tuple[Any, ...], str] | None:
    """(column | ref, the `as:` normalizers, a note for the reason) — or None when the
    types cannot be the same value."""
    family = column.family
    if not kinds:  # only nulls seen: the name decides
        return ("ref" if family == "uuid" and column is not None else "column"), (), "; only nulls sampled"
    if family == "json":
        return "column", (), ""
    if kinds <= {"objectid"} and family == "uuid":
        return "ref", (), ""
    if kinds <= {"string", "objectid"} and family in ("text", "enum", "uuid"):
        return "column", enum_case(column, shape), ""
    if kinds <= {"int"} and family in ("int", "numeric", "float"):
        return "column", (), ""
    if kinds <= {"int", "double", "decimal"} and family in ("numeric", "float"):
        scale = f"numeric scale {column.scale}" if column.scale is not None else "unconstrained numeric"
        if "decimal" in kinds:
            return "column", ("decimal",), f"; Decimal128 vs {scale}: compared by value, not scale"
        return "column", (), ""
    if kinds <= {"bool"} and family == "bool":
        return "column", (), ""
    if kinds <= {"date"} and family in ("timestamp", "date"):
        return "column", ("timestamp",), (f"; dates are ms in Mongo, µs (precision {column.precision}) "
                                          "in PostgreSQL" if family == "timestamp" else "; date column")
    if kinds <= {"string"} and family in ("timestamp", "date"):
        return "column", ("timestamp",), "; ISO strings vs a timestamp column"
    return None


def enum_case(column: Column, shape: PathShape | None) -> tuple[Any, ...]:
    """`lower_trim` when the enum's labels and the sampled strings differ in letter case."""
    if column.family != "enum" or shape is None or not shape.cases:
        return ()
    labels = {"lower" if label == label.lower() else "upper" if label == label.upper() else "mixed"
              for label in column.enum_labels if label.lower() != label.upper()}
    return ("lower_trim",) if labels and shape.cases != labels else ()


def json_paths(shape: CollectionShape, root: str) -> tuple[tuple[str, str], ...]:
    """Normalizers at paths inside a subdocument read as a jsonb blob (dates, Decimal128)."""
    found = []
    for inner in shape.under(root):
        kinds = inner.kinds()
        relative = inner.path[len(root):].lstrip(".")
        if not relative or not all(IDENTIFIER.match(w.replace(ITEM, "")) for w in relative.split(".")):
            continue
        if kinds == {"date"}:
            found.append((relative, "timestamp"))
        elif "decimal" in kinds and kinds <= {"decimal", "int", "double"}:
            found.append((relative, "decimal"))
    return tuple(found)


__all__ = ["Matcher", "compatible", "words"]
