"""The comparison: canonical form of both sides -> plain equality -> path walk ->
Verdict. Pure; runs in a pipeline worker (and in `shadow compare`, `rules test`).

Canonical form (both the API's document and the rebuilt candidate):
- each field's `as:` normalizers from the rule (decimal, timestamp, enum maps, ...);
- numbers: one spelling per value (12.5 == 12.500000000000000000 == 12.5 double);
- datetimes: ms-precision UTC ISO strings, like JS `toISOString()`;
- uuids/ObjectIds: strings; booleans never equal 1/0 (`Flag`);
- null, missing and {} are the same (entity null_is_missing);
- `order: unordered` arrays sorted into a canonical order (multisets);
- the entity's `ignore` paths dropped.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from normalizers.rows import multiset, sort_token
from normalizers.values import canonical_float, canonical_number, canonical_timestamp, decimal, iso_ms, timestamp
from shadow.model import FieldDiff, Outcome, Verdict
from shadow.rules.spec import Entity, Field

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
    plan = entity.plans.get("canonical") or canonical_plan(entity)
    if document.__class__ is dict or isinstance(document, dict):
        return plan.canon(document)
    return plan.root_value(document)


def canonical_plan(entity: Entity) -> _ObjectPlan:
    """The entity's canonicalization plan: compiled from its field specs once (at rule
    load, or on first use) and kept on the entity. Each specced field knows its
    transforms, its sub-plans and whether any `ignore` path lies under it, so the
    per-document walk does no dispatch on spec kinds and builds no path strings."""
    plan = entity.plans.get("canonical")
    if plan is None:
        plan = _ObjectPlan(entity.fields, "", entity)
        entity.plans["canonical"] = plan
    return plan


def _child_path(path: str, name: Any) -> str:
    return f"{path}.{name}" if path else str(name)


def _paths_under(entity: Entity, path: str) -> bool:
    """True when some `ignore` path lies below `path` (so the walk there needs paths)."""
    if not entity.ignore:
        return False
    if not path:
        return True
    return any(hidden.startswith(path + ".") or hidden.startswith(path + "[") for hidden in entity.ignore)


class _ObjectPlan:
    """An object at a static path: its specced fields' canonicalizers, the names
    `ignore` drops here, and how unspecced fields are canonicalized."""

    __slots__ = ("fields", "ignored", "path", "paths", "drop_empty", "ignore", "generic")

    def __init__(self, specs: Mapping[str, Field] | None, path: str, entity: Entity) -> None:
        self.path = path
        self.ignore = entity.ignore
        self.drop_empty = entity.null_is_missing
        self.paths = _paths_under(entity, path)  # unspecced values here need the slow, path-building walk
        if path:
            prefix = path + "."
            self.ignored = frozenset(hidden[len(prefix):] for hidden in entity.ignore if hidden.startswith(prefix))
        else:
            self.ignored = frozenset(entity.ignore)
        #: name -> value -> canonical value, for the specs that differ from "unspecced"
        #: (a plain column without `as:` canonicalizes like any value: left out)
        self.fields: dict[str, Callable[[Any], Any]] = {}
        for name, spec in (specs or {}).items():
            if spec.transforms or spec.children or spec.kind == "rows":
                self.fields[name] = _FieldPlan(spec, _child_path(path, name), entity).runner()
        self.generic = _GENERIC_DROP if self.drop_empty else _GENERIC_KEEP

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

    __slots__ = ("transforms", "bare", "object", "items", "rows_object", "rows_item", "unordered", "natural_key",
                 "rows", "item_path", "paths", "ignore", "drop_empty")

    def __init__(self, spec: Field | None, path: str, entity: Entity | None, drop_empty: bool = True) -> None:
        self.transforms = tuple(transform.apply for transform in spec.transforms) if spec is not None else ()
        self.bare = not self.transforms
        self.drop_empty = entity.null_is_missing if entity is not None else drop_empty
        self.ignore = entity.ignore if entity is not None else ()
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
        if isinstance(value, str) or isinstance(value, int | Flag):
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


def compare(entity: Entity, control: Any, candidate: Any, today: date) -> Verdict:
    """Match / mismatch / missing for one key. Known, unexpired divergences go to
    `suppressed`; once expired they count as real differences."""
    if candidate is None:
        return Verdict(Outcome.MISSING)
    control_c = canonical(entity, control)
    candidate_c = canonical(entity, candidate)
    if control_c == candidate_c:
        return Verdict(Outcome.MATCH)
    diffs: list[FieldDiff] = []
    _walk(control_c, candidate_c, "", "", diffs, None, entity.fields)
    return _verdict(entity, diffs, today)


def _verdict(entity: Entity, diffs: list[FieldDiff], today: date) -> Verdict:
    live = [known for known in entity.known if known.expires >= today]
    real, suppressed = [], []
    for diff in diffs:
        (suppressed if any(known.covers(diff.path) for known in live) else real).append(diff)
    if not real:
        return Verdict(Outcome.MATCH, (), tuple(suppressed))
    return Verdict(Outcome.MISMATCH, tuple(real), tuple(suppressed))


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool | Flag):
        return "bool"
    if isinstance(value, int | Decimal):
        return "number"
    return type(value).__name__


def _walk(control: Any, candidate: Any, path: str, at: str, out: list[FieldDiff],
          spec: Field | None = None, children: Mapping[str, Field] | None = None) -> None:
    """The differing leaves of two canonical values (known to differ). The rule's spec
    rides along so multisets are paired by natural key (or value), not by index."""
    if len(out) >= MAX_DIFFS:
        return
    kind = _kind(control)
    if kind != _kind(candidate):
        out.append(FieldDiff(path, at, plain(control), plain(candidate), "type"))
    elif kind == "object":
        for name in list(control) + [name for name in candidate if name not in control]:
            here_path = f"{path}.{name}" if path else name
            here_at = f"{at}.{name}" if at else name
            if name not in candidate:
                out.append(FieldDiff(here_path, here_at, plain(control[name]), None, "missing_in_candidate"))
            elif name not in control:
                out.append(FieldDiff(here_path, here_at, None, plain(candidate[name]), "extra_in_candidate"))
            elif control[name] != candidate[name]:
                sub = children.get(name) if children else None
                _walk(control[name], candidate[name], here_path, here_at, out, sub, sub.children if sub else None)
    elif kind == "array":
        item_spec = spec.value if spec is not None and spec.kind == "rows" else None
        item_children = spec.children if spec is not None and spec.kind == "rows" else None
        if spec is not None and spec.kind == "rows" and spec.unordered:
            _walk_multiset(control, candidate, path + "[*]", at, out, spec, item_spec, item_children)
            return
        for index in range(max(len(control), len(candidate))):
            here_path, here_at = f"{path}[*]", f"{at}[{index}]"
            if index >= len(candidate):
                out.append(FieldDiff(here_path, here_at, plain(control[index]), None, "missing_in_candidate"))
            elif index >= len(control):
                out.append(FieldDiff(here_path, here_at, None, plain(candidate[index]), "extra_in_candidate"))
            elif control[index] != candidate[index]:
                _walk(control[index], candidate[index], here_path, here_at, out, item_spec, item_children)
    else:
        out.append(FieldDiff(path, at, plain(control), plain(candidate), "changed"))


def _walk_multiset(control: list[Any], candidate: list[Any], path: str, at: str, out: list[FieldDiff],
                   spec: Field, item_spec: Field | None, item_children: Mapping[str, Field] | None) -> None:
    """Unordered arrays: items paired by natural key (then compared field by field), or
    by whole value; unpaired items are missing/extra. `at` indexes the control's order."""
    key = spec.natural_key

    def token(item: Any) -> bytes:
        return sort_token(item.get(key) if key is not None and isinstance(item, dict) else item)

    unpaired: dict[bytes, list[int]] = {}
    for index, item in enumerate(candidate):
        unpaired.setdefault(token(item), []).append(index)
    for index, item in enumerate(control):
        partners = unpaired.get(token(item))
        if partners:
            partner = candidate[partners.pop(0)]
            if partner != item:
                _walk(item, partner, path, f"{at}[{index}]", out, item_spec, item_children)
        else:
            out.append(FieldDiff(path, f"{at}[{index}]", plain(item), None, "missing_in_candidate"))
    for indexes in unpaired.values():
        for index in indexes:
            out.append(FieldDiff(path, f"{at}[+{index}]", None, plain(candidate[index]), "extra_in_candidate"))


def plain(value: Any) -> Any:
    """A canonical value made JSON-safe for logs (Decimal -> its string)."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Flag):
        return value.value
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def explain(entity: Entity, control: Any, candidate: Any) -> list[FieldDiff]:
    """The detailed differences by deepdiff (costly: ~1 ms per 1.5 KB document and it
    blocks the loop — run it bounded, off the event loop)."""
    from deepdiff import DeepDiff
    from deepdiff.helper import notpresent

    kinds = {"dictionary_item_removed": "missing_in_candidate", "iterable_item_removed": "missing_in_candidate",
             "dictionary_item_added": "extra_in_candidate", "iterable_item_added": "extra_in_candidate",
             "type_changes": "type", "values_changed": "changed"}
    unordered = _unordered_paths(entity.fields.values(), "")

    def ignore_order(level: Any) -> bool:
        return _collapse(level.path(output_format="list")) in unordered

    report = DeepDiff(_unflag(canonical(entity, control)), _unflag(canonical(entity, candidate)), view="tree",
                      ignore_order_func=ignore_order, cutoff_intersection_for_pairs=1, cutoff_distance_for_pairs=1)
    diffs = []
    for report_type, levels in report.items():
        for level in levels:
            parts = level.path(output_format="list")
            at, path = _collapse(parts, exact=True), _collapse(parts)
            control_value = None if level.t1 is notpresent else plain(level.t1)
            candidate_value = None if level.t2 is notpresent else plain(level.t2)
            kind = kinds.get(report_type, report_type)
            if kind == "type" and _kind(control_value) == _kind(candidate_value) == "number":
                kind = "changed"
            diffs.append(FieldDiff(path, at, control_value, candidate_value, kind))
    return sorted(diffs, key=lambda diff: diff.at)


def _collapse(parts: list[Any], exact: bool = False) -> str:
    """deepdiff's path parts as `offers[*].status` (or `offers[2].status` when exact)."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]" if exact else "[*]"
        else:
            text = f"{text}.{part}" if text else str(part)
    return text


def _unordered_paths(fields: Any, prefix: str) -> set[str]:
    """Collapsed paths of the arrays the rules compare as multisets."""
    found: set[str] = set()
    for spec in fields:
        here = f"{prefix}.{spec.name}" if prefix else spec.name
        if spec.kind == "rows" and spec.unordered:
            found.add(here)
        found |= _unordered_paths(spec.fields, here + ("[*]" if spec.kind == "rows" else ""))
    return found


REDACTED = "<redacted>"


def _redacts(redact: tuple[str, ...], path: str) -> bool:
    """True when `path` is a redact path, under one, or holds one (conservative)."""
    for hidden in redact:
        if path == hidden or path.startswith(hidden + ".") or path.startswith(hidden + "["):
            return True
        if hidden.startswith(path + ".") or hidden.startswith(path + "["):
            return True
    return False


def redact_diffs(entity: Entity, diffs: tuple[FieldDiff, ...] | list[FieldDiff]) -> tuple[FieldDiff, ...]:
    """The diffs with the values of the entity's `redact` paths replaced (for logs, views)."""
    from dataclasses import replace

    if not entity.redact:
        return tuple(diffs)
    return tuple(replace(diff, control=REDACTED if diff.control is not None else None,
                         candidate=REDACTED if diff.candidate is not None else None)
                 if _redacts(entity.redact, diff.path) else diff for diff in diffs)


def redact_document(entity: Entity, document: Any, path: str = "") -> Any:
    """A copy of an API-shaped document with the `redact` paths' values replaced."""
    if not entity.redact:
        return document
    if isinstance(document, dict):
        copy = {}
        for name, value in document.items():
            here = f"{path}.{name}" if path else str(name)
            copy[name] = REDACTED if here in entity.redact and value is not None else redact_document(entity, value, here)
        return copy
    if isinstance(document, list):
        here = path + "[*]"
        if here in entity.redact:
            return [REDACTED for _ in document]
        return [redact_document(entity, item, here) for item in document]
    return document


def _unflag(value: Any) -> Any:
    """Canonical booleans back to bool, for deepdiff (it would walk into Flag's slot)."""
    if isinstance(value, Flag):
        return value.value
    if isinstance(value, dict):
        return {key: _unflag(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unflag(item) for item in value]
    return value
