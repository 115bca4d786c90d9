"""Parsing `fields:` — how each API field is rebuilt from PostgreSQL.

    status: status                                  # a column (the short form)
    amount: {column: amount, as: decimal}          # a column, canonicalized
    buyerId: {ref: buyer_id, to: users}            # uuid FK -> legacy id via id_map
    sellerId: {mixed: seller, to: users}           # seller_ref_kind / seller_id / seller_external_ref
    profile: {object: {firstName: profile_first_name}}
    metadata: {json: metadata}
    offers: {rows: purchase_request_offers, fk: pr_id, order_by: position,
             value: {ref: offer_id, to: selleroffers}}
    deliveryInfo: {child: pr_delivery_info, fk: pr_id, fields: {city: city}}
    kind: {const: purchase}
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any

import normalizers
from shadow.rules.reader import IDENTIFIER, TABLE, Reader, kind_of, show
from shadow.rules.spec import AGGREGATES, FIELD_KINDS, Field, Transform
from shadow.rules.viewspec import (
    AGGREGATE_OPTIONS,
    parse_absent,
    parse_aggregate,
    parse_json_paths,
)
from shadow.rules.yamltree import YList, YMap

_OPTIONS: dict[str, tuple[str, ...]] = {
    "column": ("as", "default", "absent"),
    "ref": ("to", "as", "default", "absent"),
    "mixed": ("to", "as", "default", "absent"),
    "object": ("as",),
    "json": ("as", "default", "absent", "paths"),
    "rows": ("fk", "parent", "fields", "value", "order_by", "order", "key", "as"),
    "child": ("fk", "parent", "fields", "as"),
    "const": ("as",),
    **{kind: AGGREGATE_OPTIONS for kind in AGGREGATES},
}


def parse_fields(reader: Reader, mapping: Any, line: int, where: str, node: str) -> tuple[Field, ...]:
    """The fields of an entity, object, child or rows item."""
    if not isinstance(mapping, YMap):
        reader.error(line, f"{where}: fields must be a mapping of API field -> spec, got {kind_of(mapping)}")
        return ()
    fields = []
    for name, spec in mapping.items():
        if not isinstance(name, str) or not name:
            reader.error(mapping.line_of(name), f"{where}: field name must be a string, got {show(name)}")
            continue
        parsed = parse_field(reader, name, spec, mapping.line_of(name), f"{node}.{name}" if node else name)
        if parsed is not None:
            fields.append(parsed)
    return tuple(fields)


def parse_transforms(reader: Reader, value: Any, line: int, where: str) -> tuple[Transform, ...]:
    """`as: decimal`, `as: [lower_trim, {enum: {a: b}}]`, `as: pkg.mod:func`."""
    items = value if isinstance(value, YList) else [value]
    transforms = []
    for index, item in enumerate(items):
        item_line = items.line_of(index) if isinstance(items, YList) else line
        if isinstance(item, str):
            name, argument, has_argument = item, None, False
        elif isinstance(item, YMap) and len(item) == 1:
            name, argument = next(iter(item.items()))
            has_argument = True
        else:
            reader.error(item_line, f"{where}: 'as' takes a normalizer name or {{name: argument}}, got {kind_of(item)}")
            continue
        try:
            normalizer = normalizers.get(str(name), reader.normalizer_modules)
        except normalizers.UnknownNormalizer as error:
            reader.error(item_line, f"{where}: {error}")
            continue
        if normalizer.takes_argument and not has_argument:
            reader.error(item_line, f"{where}: normalizer {name!r} needs an argument: write {{{name}: ...}}")
            continue
        if has_argument and not normalizer.takes_argument:
            reader.error(item_line, f"{where}: normalizer {name!r} takes no argument")
            continue
        transforms.append(Transform(str(name), normalizer.bind(argument)))
    return tuple(transforms)


def parse_field(reader: Reader, name: str, spec: Any, line: int, node: str) -> Field | None:
    where = f"field {node!r}"
    if isinstance(spec, str):
        if not IDENTIFIER.match(spec):
            reader.error(line, f"{where}: {show(spec)} is not a column name")
            return None
        return Field(name, "column", line, column=spec, node=node)
    if not isinstance(spec, YMap):
        reader.error(line, f"{where}: must be a column name or a mapping with one of "
                           f"{', '.join(FIELD_KINDS)}; got {kind_of(spec)}")
        return None
    kinds = [key for key in spec if key in FIELD_KINDS]
    if len(kinds) != 1:
        got = ", ".join(kinds) if kinds else "none"
        reader.error(spec.line, f"{where}: needs exactly one of {', '.join(FIELD_KINDS)} (got {got})")
        return None
    kind = kinds[0]
    if not reader.keys(spec, (kind, *_OPTIONS[kind]), where):
        return None
    transforms = parse_transforms(reader, spec["as"], spec.line_of("as"), where) if "as" in spec else ()
    common: dict[str, Any] = {"transforms": transforms, "default": spec.get("default"), "node": node,
                              "absent": parse_absent(spec)}
    if kind in AGGREGATES:
        return parse_aggregate(reader, name, kind, spec, line, where, common)
    if kind == "json" and "paths" in spec:
        common["json_paths"] = parse_json_paths(reader, spec, where, parse_transforms)
    argument, argument_line = spec[kind], spec.line_of(kind)
    if kind in ("column", "ref", "mixed", "json"):
        if not isinstance(argument, str) or not IDENTIFIER.match(argument):
            reader.error(argument_line, f"{where}: {kind!r} must be a column name, got {kind_of(argument)}")
            return None
        to = None
        if kind in ("ref", "mixed"):
            to = reader.string(spec, "to", where, pattern=TABLE)
            if to is None and "to" not in spec:
                reader.error(spec.line,
                             f"{where}: {kind} needs 'to: <collection>' (the id_map collection it points at)")
                return None
        return Field(name, kind, line, column=argument, to=to, **common)
    if kind == "const":
        return Field(name, kind, line, const=argument, **common)
    if kind == "object":
        fields = parse_fields(reader, argument, argument_line, where, node)
        return Field(name, kind, line, fields=fields, children=_index(fields), **common)
    return _parse_table_field(reader, name, kind, spec, line, where, common)


def _parse_table_field(reader: Reader, name: str, kind: str, spec: YMap, line: int, where: str,
                       common: dict[str, Any]) -> Field | None:
    table = spec[kind]
    if not isinstance(table, str) or not TABLE.match(table):
        reader.error(spec.line_of(kind), f"{where}: {kind!r} must be a table name, got {kind_of(table)}")
        return None
    fk = reader.string(spec, "fk", where, pattern=IDENTIFIER)
    if fk is None:
        if "fk" not in spec:
            reader.error(spec.line, f"{where}: {kind} needs 'fk: <column of {table} pointing at the parent>'")
        return None
    parent = reader.string(spec, "parent", where, default="id", pattern=IDENTIFIER) or "id"
    node = common["node"]
    fields: tuple[Field, ...] = ()
    value = None
    if kind == "child" or "fields" in spec:
        if "fields" not in spec:
            reader.error(spec.line, f"{where}: child needs 'fields:'")
            return None
        fields = parse_fields(reader, spec["fields"], spec.line_of("fields"), where, node)
    if kind == "rows":
        if ("fields" in spec) == ("value" in spec):
            reader.error(spec.line, f"{where}: rows needs exactly one of 'fields:' (items are objects) "
                                    "or 'value:' (items are single values)")
            return None
        if "value" in spec:
            value = parse_field(reader, "", spec["value"], spec.line_of("value"), node + "[*]")
            if value is None:
                return None
            if value.kind in ("rows", "child"):
                reader.error(spec.line_of("value"), f"{where}: 'value' cannot itself be {value.kind}; use fields")
                return None
        order_by = reader.strings(spec, "order_by", where, pattern=IDENTIFIER)
        order = reader.string(spec, "order", where, default="ordered", choices=("ordered", "unordered"))
        natural_key = reader.string(spec, "key", where)
        unordered = order == "unordered"
        if not unordered and not order_by:
            reader.error(spec.line, f"{where}: say how the API orders the items: "
                                    "'order_by: <column>' or 'order: unordered' (compared as a multiset)")
            return None
        if natural_key is not None and not unordered:
            reader.error(spec.line_of("key"),
                         f"{where}: 'key' (the natural key of a multiset) needs 'order: unordered'")
        return Field(name, kind, line, table=table, fk=fk, parent=parent, fields=fields, value=value,
                     order_by=order_by, unordered=unordered, natural_key=natural_key,
                     children=_index(fields), **common)
    return Field(name, kind, line, table=table, fk=fk, parent=parent, fields=fields,
                 children=_index(fields), **common)


def _index(fields: tuple[Field, ...]) -> MappingProxyType[str, Field]:
    return MappingProxyType({field.name: field for field in fields})
