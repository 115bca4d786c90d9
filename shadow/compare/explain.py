"""The explanation of a persistent mismatch by deepdiff: costly (~1 ms per 1.5 KB
document, blocks the loop), so the pipeline runs it bounded and off the event loop."""
from __future__ import annotations

from typing import Any

from shadow.compare.canonical import Flag, canonical
from shadow.compare.diff import _kind, plain
from shadow.model import FieldDiff
from shadow.rules.spec import Entity


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


def _unflag(value: Any) -> Any:
    """Canonical booleans back to bool, for deepdiff (it would walk into Flag's slot)."""
    if isinstance(value, Flag):
        return value.value
    if isinstance(value, dict):
        return {key: _unflag(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unflag(item) for item in value]
    return value
