"""A list answer against what PostgreSQL selects for the same read (issue 12): pure.

    members the API shows that the filter would not select -> `data[*]` missing_in_candidate
    a member shown twice                                   -> `data[*]` duplicate
    the same members in another order (route `order_by`)   -> `data[*]` order (one diff)
    the total the body claims vs count(*) of the filter    -> `<total>` changed
    the page count the body claims vs ceil(total / limit)  -> `<pages>` changed
    rows the filter selects that the API did not show      -> EXTRA (complete routes)
    a query parameter the route does not model             -> not checked (`unmodeled_query`)

Members the filter would not select are reported here, at the list's path, and not
compared one by one (their own fields are not the difference).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from shadow.model import FieldDiff, ListContext, ShadowJob
from shadow.replay.listquery import Unmodeled, query_values, unmodeled
from shadow.replay.viewread import Listing, list_path
from shadow.rules.spec import Entity, Route

if TYPE_CHECKING:
    from shadow.replay.sources import Source

LIST_KEY = "[list]"  # the key a list-level mismatch is published under (+ the path parameters)


def list_key(params: dict[str, str]) -> str:
    """`[list id=65a1…]`: which list (its path parameters; never query values or headers)."""
    named = " ".join(f"{name}={value}" for name, value in sorted(params.items()))
    return f"{LIST_KEY[:-1]} {named}]"[:200] if named else LIST_KEY


@dataclass(frozen=True, slots=True)
class ListCheck:
    """What one list read's check found. `unmodeled` names why the list was not checked
    (a query parameter or value the route does not model); `context` is what a finding
    carries: the redacted query string and the conditions that selected the rows."""

    extra: tuple[str, ...] = ()
    diffs: tuple[FieldDiff, ...] = ()
    unselected: frozenset[str] = frozenset()
    unmodeled: tuple[str, ...] = ()
    context: ListContext = field(default_factory=ListContext)

    def findings(self, route: Route) -> tuple[FieldDiff, ...]:
        """Every list-level difference, extras included (as `extra_in_candidate` at the
        list's path): what a recheck of the list compares step to step."""
        path = list_path(route)
        return self.diffs + tuple(FieldDiff(path, path[:-3], None, key, "extra_in_candidate") for key in self.extra)


def check_list(route: Route, listing: Listing, selected: tuple[str, ...], total: int | None,
               pages: int | None = None, echo: Mapping[str, int | None] | None = None) -> ListCheck:
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
    page = route.page
    if page is not None and (page.order_by or page.sort is not None):
        expected = [key for key in selected if key in seen]
        if shown != expected:
            diffs.append(FieldDiff(path, at, shown, expected, "order"))
    if page is not None and page.total:
        total_path = ".".join(page.total)
        if _number(listing.total) != total:
            diffs.append(FieldDiff(total_path, total_path, listing.total, total, "changed"))
    if page is not None and page.pages and pages is not None:
        pages_path = ".".join(page.pages)
        if _number(listing.pages) != pages:
            diffs.append(FieldDiff(pages_path, pages_path, listing.pages, pages, "changed"))
    for echo_path, applied in (echo or {}).items():  # the page / limit the body says it applied
        if _number(listing.echoed.get(echo_path)) != applied:
            diffs.append(FieldDiff(echo_path, echo_path, listing.echoed.get(echo_path), applied, "changed"))
    extra = tuple(key for key in selected if key not in seen) if route.complete else ()
    return ListCheck(extra, tuple(diffs), frozenset(unselected))


def _values(query: Mapping[str, Any], name: str) -> list[str]:
    return query_values(query, name)


def _number(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


async def run_list_check(source: Source, entity: Entity, route: Route, job: ShadowJob) -> ListCheck:
    """Ask the source what the read should have shown and check the list against it.
    A read with a query parameter (or a sort / page value) the route does not model is
    not checked (`unmodeled`). Sources without `select` (mongo) only answer the keys of
    the filter (extras)."""
    listing_ = job.listing
    if listing_ is not None:
        names = unmodeled(route, listing_.query)
        context = ListContext(tuple((name, str(value)) for name in sorted(listing_.query)
                                    for value in _values(listing_.query, name)))
        if names:
            return ListCheck(unmodeled=names, context=context)
        if hasattr(source, "select"):
            try:
                selection = await source.select(entity, route, dict(job.params), listing_.query, job.reader)
            except Unmodeled as why:
                return ListCheck(unmodeled=(why.parameter,), context=replace(context, note=str(why)))
            if selection is not None:
                checked = check_list(route, listing_, selection.keys, selection.total, selection.pages,
                                     getattr(selection, "echo", None))
                return replace(checked, context=replace(context, selected_by=tuple(selection.selected_by)))
    listed = await source.list_keys(entity, route, dict(job.params))
    return ListCheck(tuple(sorted(set(listed) - set(job.controls))))


def unverified_paths(entity: Entity | None, control: Any) -> tuple[str, ...]:
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
