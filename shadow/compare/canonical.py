"""The canonical form of an API-shaped document, compiled per entity into a plan.
Pure; both sides (the API's document and the rebuilt candidate) go through it.

Canonical form (both the API's document and the rebuilt candidate):
- each field's `as:` normalizers from the rule (decimal, timestamp, enum maps, ...);
- numbers: one spelling per value (12.5 == 12.500000000000000000 == 12.5 double);
- datetimes: ms-precision UTC ISO strings, like JS `toISOString()`;
- uuids/ObjectIds: strings; booleans never equal 1/0 (`Flag`);
- null, missing and {} are the same (entity null_is_missing);
- `order: unordered` arrays sorted into a canonical order (multisets);
- the entity's `ignore` paths dropped.

Over 350 lines: the compiled plan and the reference (slow) walk must stay side by side,
tests/compare/test_plans.py checks they agree.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from normalizers.rows import multiset
from normalizers.values import canonical_float, canonical_number, canonical_timestamp, decimal, iso_ms, timestamp
from shadow.compare.viewcanon import at_paths
from shadow.plancache import PlanCache
from shadow.rules.spec import NO_ABSENT, Entity, Field

MAX_DIFFS = 100  # per document; a wholly different list must not flood the log


class Flag:
    """A canonical boolean. Python has `True == 1`; a JSON `true` must not equal a
    rebuilt `1` (a flag remodeled as smallint is a type difference to report)."""

    __slots__ = ("value",)

    def __init__(self, value: bool) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Flag) and other.value is self.value

    def __hash__(self) -> int:
        return hash((Flag, self.value))

    def __repr__(self) -> str:
        return repr(self.value)


TRUE, FALSE = Flag(True), Flag(False)


def canonical(entity: Entity, document: Any) -> Any:
    """The canonical form of one API-shaped document (the entity's plan, compiled once)."""
    plan = _PLANS.get(entity)
    if entity.distinct is not None and isinstance(document, list):  # a scalar list: a set of values
        return multiset([plan.root_value(value) for value in dict.fromkeys(_hashable(v) for v in document)])
    if document.__class__ is dict or isinstance(document, dict):
        return plan.canon(document)
    return plan.root_value(document)


def canonical_plan(entity: Entity) -> _ObjectPlan:
    """The entity's canonicalization plan: compiled from its field specs once (at rule
    load, or on first use) and kept in this module's cache. Each specced field knows its
    transforms, its sub-plans and whether any `ignore` path lies under it, so the
    per-document walk does no dispatch on spec kinds and builds no path strings."""
    return _PLANS.get(entity)


def _compile(entity: Entity) -> _ObjectPlan:
    return _ObjectPlan(entity.fields, "", entity)


def _dropped(entity: Entity) -> tuple[str, ...]:
    """Paths never compared: `ignore`, and `unverifiable` (those are counted apart)."""
    return entity.ignore + entity.unverifiable if entity.unverifiable else entity.ignore


def _child_path(path: str, name: Any) -> str:
    return f"{path}.{name}" if path else str(name)


def _paths_under(entity: Entity, path: str) -> bool:
    """True when some `ignore` path lies below `path` (so the walk there needs paths)."""
    if not _dropped(entity):
        return False
    if not path:
        return True
    return any(hidden.startswith(path + ".") or hidden.startswith(path + "[") for hidden in _dropped(entity))


class _ObjectPlan:
    """An object at a static path: its specced fields' canonicalizers, the names
    `ignore` drops here, and how unspecced fields are canonicalized."""

    __slots__ = ("absent", "drop_empty", "fields", "generic", "ignore", "ignored", "path", "paths", "plans")

    def __init__(self, specs: Mapping[str, Field] | None, path: str, entity: Entity) -> None:
        self.path = path
        self.ignore = _dropped(entity)
        self.drop_empty = entity.null_is_missing
        self.paths = _paths_under(entity, path)  # unspecced values here need the slow, path-building walk
        if path:
            prefix = path + "."
            self.ignored = frozenset(hidden[len(prefix):] for hidden in _dropped(entity) if hidden.startswith(prefix))
        else:
            self.ignored = frozenset(_dropped(entity))
        #: name -> value -> canonical value, for the specs that differ from "unspecced"
        #: (a plain column without `as:` canonicalizes like any value: left out)
        self.fields: dict[str, Callable[[Any], Any]] = {}
        #: the same fields' plans (shadow/verify/storedcanon.py reads their kinds)
        self.plans: dict[str, _FieldPlan] = {}
        for name, spec in (specs or {}).items():
            if spec.transforms or spec.children or spec.kind == "rows" or spec.json_paths:
                self.plans[name] = _FieldPlan(spec, _child_path(path, name), entity)
                self.fields[name] = self.plans[name].runner()
        self.generic = _GENERIC_DROP if self.drop_empty else _GENERIC_KEEP
        #: `absent: v` fields: (name, canonical v) filled in when a side lacks the field
        self.absent: tuple[tuple[str, Any], ...] = tuple(
            (name, self.fields.get(name, self.generic.post)(spec.absent))
            for name, spec in (specs or {}).items() if spec.absent is not NO_ABSENT and name not in self.ignored)

    def canon(self, document: Mapping[str, Any]) -> dict[str, Any]:
        fields, ignored, drop = self.fields, self.ignored, self.drop_empty
        canon: dict[str, Any] = {}
        for name, value in document.items():
            if ignored and (name if name.__class__ is str else str(name)) in ignored:
                continue
            run = fields.get(name)
            if run is None:  # the common leaves first: no call, no dispatch
                cls = value.__class__
                if cls is str or cls is int:
                    canon[name] = value
                    continue
                if value is None:
                    if not drop:
                        canon[name] = None
                    continue
                if cls is bool:
                    canon[name] = TRUE if value else FALSE
                    continue
                if self.paths:
                    value = _canon_slow(value, _child_path(self.path, name), self.ignore, drop)
                else:
                    value = self.generic.post(value)
            else:
                value = run(value)
            if drop:  # null, missing and {} are the same
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

    def root_value(self, value: Any) -> Any:
        """A document that is not an object (no specs apply, as for any unspecced value)."""
        if self.paths:
            return _canon_slow(value, "", self.ignore, self.drop_empty)
        return self.generic.post(value)


class _FieldPlan:
    """One specced field (or an unspecced value when spec is None): its transforms, then
    the canonical form by the value's type, with the spec's sub-plans for objects and
    rows."""

    __slots__ = (
        "bare",
        "drop_empty",
        "ignore",
        "item_path",
        "items",
        "json_paths",
        "natural_key",
        "object",
        "paths",
        "rows",
        "rows_item",
        "rows_object",
        "transforms",
        "unordered",
    )

    def __init__(self, spec: Field | None, path: str, entity: Entity | None, drop_empty: bool = True) -> None:
        self.transforms = tuple(transform.apply for transform in spec.transforms) if spec is not None else ()
        self.json_paths = tuple((path, tuple(t.apply for t in transforms)) for path, transforms in spec.json_paths) \
            if spec is not None else ()
        self.bare = not self.transforms
        self.drop_empty = entity.null_is_missing if entity is not None else drop_empty
        self.ignore = _dropped(entity) if entity is not None else ()
        self.item_path = path + "[*]"
        self.paths = entity is not None and _paths_under(entity, path)
        self.rows = spec is not None and spec.kind == "rows"
        self.unordered = self.rows and spec is not None and spec.unordered
        self.natural_key = spec.natural_key if spec is not None else None
        self.rows_object = self.rows_item = None
        if entity is None:  # the shared unspecced plan (no ignore paths anywhere below)
            self.object = None
            return
        self.object = _ObjectPlan(spec.children if spec is not None else None, path, entity)
        if self.rows and spec is not None:
            if spec.value is not None:
                self.rows_item = _FieldPlan(spec.value, self.item_path, entity)
            else:
                self.rows_object = _ObjectPlan(spec.children, self.item_path, entity)

    def runner(self) -> Callable[[Any], Any]:
        """The cheapest callable canonicalizing this field's values."""
        if self.json_paths:
            whole, paths = self.canon, self.json_paths
            return lambda value: whole(at_paths(value, paths))
        if not self.transforms:
            return self.post
        if len(self.transforms) == 1 and self.transforms[0] is timestamp:
            slow = self.canon

            def timestamp_field(value: Any) -> Any:
                cls = value.__class__
                if cls is datetime:
                    return iso_ms(value)
                if cls is str and canonical_timestamp(value):
                    return value  # already what JS toISOString() writes
                return slow(value)
            return timestamp_field
        if len(self.transforms) == 1 and self.transforms[0] is decimal:
            slow = self.canon

            def decimal_field(value: Any) -> Any:
                if value.__class__ is Decimal:  # a rebuilt numeric: already exact, just canonical
                    return canonical_number(value)
                return slow(value)
            return decimal_field
        return self.canon

    def canon(self, value: Any) -> Any:
        for transform in self.transforms:
            try:
                value = transform(value)
            except (ValueError, TypeError, ArithmeticError, KeyError):
                break  # unreadable: keep the raw value, it shows up as a mismatch
        return self.post(value)

    def post(self, value: Any) -> Any:
        """The canonical form of a transformed value (exact types first, then the rest)."""
        cls = value.__class__
        if cls is str or cls is int or value is None:
            return value
        if cls is bool:
            return TRUE if value else FALSE
        if cls is dict:
            return self._object(value)
        if cls is list:
            return self._list(value)
        if cls is Decimal:
            return canonical_number(value)
        if cls is datetime:
            return iso_ms(value)
        if cls is float:
            return canonical_float(value)
        if isinstance(value, bool):
            return TRUE if value else FALSE
        if isinstance(value, str | int | Flag):
            return value
        if isinstance(value, dict):
            return self._object(value)
        if isinstance(value, list):
            return self._list(value)
        if isinstance(value, tuple):
            return self.canon(list(value))  # as a list, transforms included (as always)
        return _leaf(value)

    def _object(self, value: Mapping[str, Any]) -> dict[str, Any]:
        if self.object is not None:
            return self.object.canon(value)
        return _generic_object(value, self.drop_empty)

    def _list(self, value: list[Any]) -> list[Any]:
        if self.rows:
            if self.rows_item is not None:
                item_plan = self.rows_item
                items = [item_plan.canon(item) for item in value]
            else:
                object_plan = self.rows_object
                assert object_plan is not None
                items = [object_plan.canon(item) if isinstance(item, dict) else self._unspecced(item)
                         for item in value]
            return multiset(items, self.natural_key) if self.unordered else items
        return [self._unspecced(item) for item in value]

    def _unspecced(self, item: Any) -> Any:
        if self.paths:
            return _canon_slow(item, self.item_path, self.ignore, self.drop_empty)
        return (_GENERIC_DROP if self.drop_empty else _GENERIC_KEEP).post(item)


def _hashable(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


def _generic_object(document: Mapping[str, Any], drop: bool) -> dict[str, Any]:
    """An unspecced object with no `ignore` path below it."""
    generic = _GENERIC_DROP if drop else _GENERIC_KEEP
    canon: dict[str, Any] = {}
    for name, value in document.items():
        cls = value.__class__
        if cls is str or cls is int:
            canon[name] = value
            continue
        if value is None:
            if not drop:
                canon[name] = None
            continue
        value = generic.post(value)
        if drop and (value is None or value == {}):
            continue
        canon[name] = value
    return canon


_GENERIC_DROP = _FieldPlan(None, "", None, drop_empty=True)
_GENERIC_KEEP = _FieldPlan(None, "", None, drop_empty=False)


def _leaf(value: Any) -> Any:
    """The canonical form of the remaining scalar types (after dicts, lists, tuples)."""
    if isinstance(value, Decimal):
        return canonical_number(value)
    if isinstance(value, float):
        return canonical_float(value)
    if isinstance(value, datetime):
        return iso_ms(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "to_decimal"):  # bson.Decimal128
        return canonical_number(value.to_decimal())
    if type(value).__name__ == "ObjectId":
        return str(value)
    return value


def _canon_slow(value: Any, path: str, ignore: tuple[str, ...], drop_empty: bool) -> Any:
    """An unspecced value under which some `ignore` path lies: walked with its paths."""
    if isinstance(value, bool):
        return TRUE if value else FALSE
    if isinstance(value, str) or value is None or isinstance(value, int | Flag):
        return value
    if isinstance(value, dict):
        canon: dict[str, Any] = {}
        for name, item in value.items():
            here = _child_path(path, name)
            if here in ignore:
                continue
            item = _canon_slow(item, here, ignore, drop_empty)
            if drop_empty and (item is None or item == {}):
                continue
            canon[name] = item
        return canon
    if isinstance(value, list):
        return [_canon_slow(item, path + "[*]", ignore, drop_empty) for item in value]
    if isinstance(value, tuple):
        return _canon_slow(list(value), path, ignore, drop_empty)
    return _leaf(value)


_PLANS: PlanCache[_ObjectPlan] = PlanCache(_compile)
