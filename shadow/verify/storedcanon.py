"""A stored (BSON-decoded) document straight to the canonical form the comparison uses,
in one walk: exactly `canonical(entity, api_document(entity, document))`, without
building the API-shaped document in between (the docs layer's hottest path).

Compiled once per entity from its canonical plan. Each field knows what the two steps
would have done to each stored type: an ObjectId becomes its hex and a date its
`toISOString()` text before the field's canonicalizer, a `Decimal128` under `as: decimal`
goes in as its text, a specced sub-object is walked in place, and anything rarer takes
the two-step path for that one value. Entities whose canonical form needs paths (an
`ignore` or `unverifiable` path) or whose `stored:` view renames or fills defaults take
the two-step path for the whole document (`None` from `stored_canonical_plan`);
tests/verify/test_fast_paths.py checks both give the same result."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from bson import Decimal128, ObjectId

from normalizers.values import OutOfRange, canonical_number, decimal, iso_ms, timestamp
from shadow.compare.canonical import FALSE, TRUE, canonical, canonical_plan
from shadow.plancache import PlanCache
from shadow.replay.sources.apijson import api_document, decimal128_number, decimal128_text, to_api_json
from shadow.rules.spec import Entity

_PLAIN = frozenset({str, int, bool, float, type(None)})
Canon = Callable[[Any], Any]
_SEEN_NUMBERS = 4096  # distinct Decimal128 values remembered per field (cleared when full)


class _StoredObject:
    """One object of the entity's canonical plan, read from stored values."""

    __slots__ = ("absent", "drop", "drop_empty", "fields", "generic")

    def __init__(self, plan: Any, drop: frozenset[str]) -> None:
        self.drop = drop | plan.ignored  # stored names never shown, then names `ignore` drops here
        self.drop_empty = plan.drop_empty
        self.generic: Canon = plan.generic.post
        self.absent: tuple[tuple[str, Any], ...] = plan.absent
        self.fields: dict[str, Canon] = {name: _stored_field(field, plan.fields[name])
                                         for name, field in plan.plans.items()}

    def canon(self, document: Mapping[str, Any]) -> dict[str, Any]:
        fields, drop, empty, generic = self.fields, self.drop, self.drop_empty, self.generic
        canon: dict[str, Any] = {}
        for name, value in document.items():
            if drop and name in drop:
                continue
            run = fields.get(name)
            cls = value.__class__
            if run is None:  # the canonical plan's common leaves, then the stored types
                if cls is str or cls is int:
                    canon[name] = value
                    continue
                if value is None:
                    if not empty:
                        canon[name] = None
                    continue
                if cls is bool:
                    canon[name] = TRUE if value else FALSE
                    continue
                if cls is ObjectId:
                    canon[name] = str(value)
                    continue
                if cls is datetime:
                    canon[name] = iso_ms(value)
                    continue
                value = generic(_api(value))
            else:
                value = run(value)
            if empty:  # null, missing and {} are the same (as in the canonical plan)
                if value is None:
                    continue
                cls = value.__class__
                if cls is dict:
                    if not value:
                        continue
                elif cls is not str and cls is not list and cls is not int and value == {}:
                    continue
            canon[name] = value
        for name, value in self.absent:
            if name not in canon:
                canon[name] = value
        return canon


def _api(value: Any) -> Any:
    """The API's shape of one stored value (a dict of plain values is its own shape)."""
    if value.__class__ is dict and all(item.__class__ in _PLAIN for item in value.values()):
        return value
    return to_api_json(value)


def _stored_field(field: Any, run: Canon) -> Canon:
    """A specced field's canonicalizer of stored values (`run`: the same of API values)."""
    if field.json_paths:
        return lambda value: run(_api(value))
    if field.transforms == (timestamp,):
        def timestamp_field(value: Any) -> Any:  # iso_ms's text is canonical: kept as it is
            return iso_ms(value) if value.__class__ is datetime else run(_api(value))
        return timestamp_field
    if field.transforms == (decimal,):
        seen: dict[bytes, Any] = {}  # amounts repeat: one conversion per distinct Decimal128 (its 16 bytes)

        def decimal_field(value: Any) -> Any:
            if value.__class__ is Decimal128:
                bid = value.bid
                known = seen.get(bid)
                if known is not None:
                    return known
                # `decimal` reads {"$numberDecimal": t} as t, and t (at most 34 digits and
                # an exponent: short) as canonical_number(Decimal(t)); the bit fields give
                # the same Decimal without the text. canonical_number's result is its own
                # canonical form; an out-of-range marker is spelled from t: the long way.
                number = decimal128_number(value)
                if number is not None:
                    canon = canonical_number(number)
                    if canon.__class__ is not OutOfRange:
                        if len(seen) >= _SEEN_NUMBERS:
                            seen.clear()
                        seen[bid] = canon
                        return canon
                return run(decimal128_text(value))
            return run(_api(value))
        return decimal_field
    if field.bare and field.object is not None and not field.rows:
        inner = _StoredObject(field.object, frozenset())

        def object_field(value: Any) -> Any:
            return inner.canon(value) if value.__class__ is dict else run(_api(value))
        return object_field
    return lambda value: run(_api(value))


def _compile(entity: Entity) -> _StoredObject | None:
    plan = canonical_plan(entity)
    view = entity.stored
    if plan.paths or view.rename or view.defaults or entity.distinct is not None:
        return None
    drop = frozenset(entity.hidden) | frozenset(view.hidden)
    return _StoredObject(plan, drop | {view.version_key} if view.version_key else drop)


_PLANS: PlanCache[_StoredObject | None] = PlanCache(_compile)


def stored_canonical(entity: Entity, document: dict[str, Any]) -> Any:
    """The canonical form of one stored document, as the API would show it."""
    plan = _PLANS.get(entity)
    if plan is None or document.__class__ is not dict:
        return canonical(entity, api_document(entity, document))
    return plan.canon(document)
