"""A list answer against what PostgreSQL selects for the same read (issue 12): pure.

    members the API shows that the filter would not select -> `data[*]` missing_in_candidate
    a member shown twice                                   -> `data[*]` duplicate
    the same members in another order (route `order_by`)   -> `data[*]` order (one diff)
    the total the body claims vs count(*) of the filter    -> `<total>` changed
    rows the filter selects that the API did not show      -> EXTRA (complete routes)

Members the filter would not select are reported here, at the list's path, and not
compared one by one (their own fields are not the difference).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shadow.model import FieldDiff
from shadow.replay.viewread import Listing, list_path
from shadow.rules.spec import Route

LIST_KEY = "[list]"  # the key a list-level mismatch is published under (+ the path parameters)


def list_key(params: dict[str, str]) -> str:
    """`[list id=65a1…]`: which list (its path parameters; never query values or headers)."""
    named = " ".join(f"{name}={value}" for name, value in sorted(params.items()))
    return f"{LIST_KEY[:-1]} {named}]"[:200] if named else LIST_KEY


@dataclass(frozen=True, slots=True)
class ListCheck:
    extra: tuple[str, ...] = ()
    diffs: tuple[FieldDiff, ...] = ()
    unselected: frozenset[str] = frozenset()


def check_list(route: Route, listing: Listing, selected: tuple[str, ...], total: int | None) -> ListCheck:
    path = list_path(route)
    at = path[:-3]
    diffs: list[FieldDiff] = []
    chosen = set(selected)
    seen: set[str] = set()
    shown: list[str] = []
    unselected: set[str] = set()
    for index, key in enumerate(listing.keys):
        if key in seen:
            diffs.append(FieldDiff(path, f"{at}[{index}]", key, None, "duplicate"))
            continue
        seen.add(key)
        if key in chosen:
            shown.append(key)
        else:
            unselected.add(key)
            diffs.append(FieldDiff(path, f"{at}[{index}]", key, None, "missing_in_candidate"))
    if route.page is not None and route.page.order_by:
        expected = [key for key in selected if key in seen]
        if shown != expected:
            diffs.append(FieldDiff(path, at, shown, expected, "order"))
    if route.page is not None and route.page.total:
        total_path = ".".join(route.page.total)
        claimed = _number(listing.total)
        if claimed != total:
            diffs.append(FieldDiff(total_path, total_path, listing.total, total, "changed"))
    extra = tuple(key for key in selected if key not in seen) if route.complete else ()
    return ListCheck(extra, tuple(diffs), frozenset(unselected))


def _number(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


async def run_list_check(source: Any, entity: Any, route: Route, job: Any) -> ListCheck:
    """Ask the source what the read should have shown and check the list against it.
    Sources without `select` (mongo) only answer the keys of the filter (extras)."""
    listing_ = job.listing
    if hasattr(source, "select") and listing_ is not None:
        selection = await source.select(entity, route, dict(job.params), listing_.query)
        if selection is not None:
            return check_list(route, listing_, selection.keys, selection.total)
    listed = await source.list_keys(entity, route, dict(job.params))
    return ListCheck(tuple(sorted(set(listed) - set(job.controls))))


def unverified_paths(entity: Any, control: Any) -> tuple[str, ...]:
    """The entity's `unverifiable` paths the API showed in this document (counted, so
    what is not verified stays visible)."""
    if entity is None or not entity.unverifiable:
        return ()
    return tuple(path for path in entity.unverifiable if _present(control, path.replace("[*]", ".[*]").split(".")))


def _present(value: Any, steps: list[str]) -> bool:
    if not steps:
        return value is not None
    step, rest = steps[0], steps[1:]
    if step == "[*]":
        return isinstance(value, list) and any(_present(item, rest) for item in value)
    return isinstance(value, dict) and _present(value.get(step), rest)
