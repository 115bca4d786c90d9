"""The pure stages of `shadow rules draft`: what a sample's shape records (and does not),
and the proposals for shapes the marketplace does not have (dates inside jsonb, arrays
of scalars, a reference named like no column, two child tables named alike)."""
from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType

from bson import Decimal128, ObjectId

from shadow.ruletools.draft.catalog import Catalog, Column, ForeignKey, Index, Table
from shadow.ruletools.draft.proposal import KeyHit, Probes
from shadow.ruletools.draft.propose import propose
from shadow.ruletools.draft.sample import shape_of


def test_a_shape_records_types_presence_and_arrays_but_no_values() -> None:
    ref = ObjectId()
    shape = shape_of("things", [
        {"_id": ObjectId(), "name": "Secret Value", "flag": None, "ids": [ref, ref], "items": [{"n": 1}, {"n": 2.5}],
         "price": Decimal128("1.50"), "at": datetime(2026, 1, 1, tzinfo=UTC)},
        {"_id": ObjectId(), "name": "lower", "ids": [], "items": [{"m": "x"}]},
    ])
    assert shape.documents == 2
    name = shape.paths["name"]
    assert (dict(name.types), name.present, name.absent, name.cases) == ({"string": 2}, 2, 0, {"mixed", "lower"})
    flag = shape.paths["flag"]
    assert (dict(flag.types), flag.present, flag.absent) == ({"null": 1}, 1, 1)  # null and absent told apart
    assert dict(shape.paths["ids[*]"].types) == {"objectid": 2} and shape.paths["ids"].max_items == 2
    assert dict(shape.paths["items[*]"].types) == {"object": 3}
    assert dict(shape.paths["items[*].n"].types) == {"int": 1, "double": 1}
    assert shape.paths["items[*].n"].absent == 1  # one item of three lacks it
    assert dict(shape.paths["price"].types) == {"decimal": 1} and dict(shape.paths["at"].types) == {"date": 1}
    assert shape.probe_ids["ids[*]"] == (str(ref),)  # kept for the id_map lookup only
    assert "Secret Value" not in repr(shape)


def _table(name: str, columns: list[tuple[str, str]], fks: tuple[ForeignKey, ...] = (),
           pk: tuple[str, ...] = ("id",), indexes: tuple[Index, ...] = ()) -> Table:
    return Table(name, tuple(Column(c, family, family, True) for c, family in columns), pk, fks, indexes)


KEY = Index("k", ("legacy_object_id",), True, False)


def _catalog(*tables: Table) -> Catalog:
    referenced: dict[str, list[tuple[str, ForeignKey]]] = {}
    for table in tables:
        for fk in table.foreign_keys:
            referenced.setdefault(fk.table, []).append((table.name, fk))
    return Catalog(MappingProxyType({t.name: t for t in tables}), True, ("orders", "users"),
                   MappingProxyType({k: tuple(v) for k, v in referenced.items()}))


def test_dates_inside_jsonb_scalar_arrays_and_a_reference_named_like_no_column() -> None:
    catalog = _catalog(
        _table("users", [("id", "uuid"), ("legacy_object_id", "text")], indexes=(KEY,)),
        _table("orders", [("id", "uuid"), ("legacy_object_id", "text"), ("meta", "json"), ("placed_by", "uuid")],
               (ForeignKey(("placed_by",), "users", ("id",)),), indexes=(KEY,)),
        _table("order_tags", [("order_id", "uuid"), ("tag", "text")], (ForeignKey(("order_id",), "orders", ("id",)),),
               pk=()),
        _table("order_notes", [("order_id", "uuid"), ("body", "text")], (ForeignKey(("order_id",), "orders", ("id",)),),
               pk=()),
        _table("archived_order_notes", [("order_id", "uuid"), ("body", "text")],
               (ForeignKey(("order_id",), "orders", ("id",)),), pk=()),
    )
    shape = shape_of("orders", [{"_id": ObjectId(), "meta": {"paidAt": datetime(2026, 1, 1, tzinfo=UTC),
                                                             "fees": [{"amount": Decimal128("1.5")}]},
                                 "owner": ObjectId(), "tags": ["a", "b"], "notes": [{"body": "x"}]}])
    probes = Probes(MappingProxyType({"orders": (KeyHit("orders", "legacy_object_id", 1, 1),)}),
                    MappingProxyType({("orders", "owner"): "users"}))
    draft = propose(catalog, [shape], probes)
    (orders,) = draft.entities
    fields = {f.name: f for f in orders.fields}
    assert fields["meta"].kind == "json"
    assert set(fields["meta"].json_paths) == {("paidAt", "timestamp"), ("fees[*].amount", "decimal")}
    assert (fields["owner"].kind, fields["owner"].column, fields["owner"].to) == ("ref", "placed_by", "users")
    assert "the only free FK of orders to users" in fields["owner"].reason
    tags = fields["tags"]
    assert (tags.kind, tags.table, tags.unordered) == ("rows", "order_tags", True)
    assert tags.value is not None and tags.value.column == "tag"
    # two child tables end like `notes`: no guess, a TODO naming both
    assert "notes" not in fields
    assert ("orders.notes: array (object 1 of 1): child tables with an FK to orders named like it: order_notes, "
            "archived_order_notes") in orders.todos


def test_a_reference_whose_ids_live_elsewhere_than_its_fk_says_is_flagged() -> None:
    catalog = _catalog(
        _table("users", [("id", "uuid"), ("legacy_object_id", "text")], indexes=(KEY,)),
        _table("orders", [("id", "uuid"), ("legacy_object_id", "text"), ("user_id", "uuid")],
               (ForeignKey(("user_id",), "users", ("id",)),), indexes=(KEY,)),
    )
    shape = shape_of("orders", [{"_id": ObjectId(), "userId": ObjectId()}])
    probes = Probes(MappingProxyType({"orders": (KeyHit("orders", "legacy_object_id", 1, 1),)}),
                    MappingProxyType({("orders", "userId"): "orders"}))  # the sampled ids are orders' ids
    (orders,) = propose(catalog, [shape], probes).entities
    user = next(f for f in orders.fields if f.name == "userId")
    assert user.to == "orders" and user.confidence < 0.6
    assert "BUT the FK points at users ('users'): check which is right" in user.reason
