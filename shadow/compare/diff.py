"""The diff: canonical forms of both sides -> plain equality -> path walk -> Verdict.
Pure; runs in a pipeline worker (and in `shadow compare`, `rules test`, `shadow verify`)."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from normalizers.rows import sort_token
from shadow.compare.canonical import Flag, canonical
from shadow.model import FieldDiff, Outcome, Verdict
from shadow.rules.spec import Entity, Field

MAX_DIFFS = 100  # per document; a wholly different list must not flood the log


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
    if entity.distinct is not None and isinstance(control_c, list) and isinstance(candidate_c, list):
        _walk_values(control_c, candidate_c, diffs)  # a scalar list: a set of values
    else:
        _walk(control_c, candidate_c, "", "", diffs, None, entity.fields)
    return _verdict(entity, diffs, today)


def _walk_values(control: list[Any], candidate: list[Any], out: list[FieldDiff]) -> None:
    """The values one side of a scalar list has and the other has not (at most MAX_DIFFS)."""
    tokens = {sort_token(value) for value in candidate}
    shown = {sort_token(value) for value in control}
    for index, value in enumerate(control):
        if sort_token(value) not in tokens and len(out) < MAX_DIFFS:
            out.append(FieldDiff("[*]", f"[{index}]", plain(value), None, "missing_in_candidate"))
    for index, value in enumerate(candidate):
        if sort_token(value) not in shown and len(out) < MAX_DIFFS:
            out.append(FieldDiff("[*]", f"[+{index}]", None, plain(value), "extra_in_candidate"))


def _verdict(entity: Entity, diffs: list[FieldDiff], today: date) -> Verdict:
    live = [known for known in entity.known if known.expires >= today]
    real: list[FieldDiff] = []
    suppressed: list[FieldDiff] = []
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
        if _permutation(control, candidate):  # the same items, moved: one difference, not each field
            out.append(FieldDiff(path + "[*]", at, plain(control), plain(candidate), "order"))
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


def _permutation(control: list[Any], candidate: list[Any]) -> bool:
    """The two (differing) arrays hold the same items in another order."""
    if len(control) != len(candidate) or len(control) < 2:
        return False
    return sorted(map(sort_token, control)) == sorted(map(sort_token, candidate))


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
