"""The `recheck:` option of a route, parsed into a RecheckPolicy.

Two spellings: the scalar `recheck: 2s` (one re-read 2 s after the first, `0` = off)
and the mapping `recheck: {after: [1s, 5s, 30s, 2m], control: upstream|mongo|none,
headers: [authorization]}`. Every error names the route, the key and the bad value.
"""
from __future__ import annotations

import re
from typing import Any

from shadow.rules.reader import Reader, kind_of, show
from shadow.rules.spec import (
    RECHECK_CONTROLS,
    SAFE_METHODS,
    RecheckControl,
    RecheckPolicy,
)
from shadow.rules.yamltree import YList, YMap

RECHECK_KEYS = ("after", "control", "headers", "gone")
#: a schedule is short: every step holds the key's control (and credentials) in memory
MAX_STEPS = 8
MAX_DELAY_SECONDS = 3600.0
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m)$")
DEFAULT_AFTER = (2.0,)
DEFAULT_GONE = (404, 410)


def parse_recheck(reader: Reader, options: YMap, where: str, method: str, source: str) -> RecheckPolicy:
    """The route's recheck policy (the default one when `recheck` is absent)."""
    default_control: RecheckControl = "upstream" if method in SAFE_METHODS else "none"
    if "recheck" not in options:
        return RecheckPolicy(DEFAULT_AFTER, default_control)
    value, line = options["recheck"], options.line_of("recheck")
    if not isinstance(value, YMap):  # the scalar spelling: one delay
        seconds = _seconds(value)
        if seconds is None:
            reader.error(line, f"{where}: 'recheck' must be a duration like 2s, 500ms or 0, or "
                               f"{{after: [1s, 5s], control: upstream|mongo|none}}, got {kind_of(value)}")
            return RecheckPolicy(DEFAULT_AFTER, default_control)
        return RecheckPolicy((seconds,) if seconds > 0 else (), default_control)
    reader.keys(value, RECHECK_KEYS, f"{where} recheck")
    after = _after(reader, value, where)
    control = reader.string(value, "control", f"{where} recheck", default=default_control,
                            choices=RECHECK_CONTROLS) or default_control
    if control == "upstream" and method not in SAFE_METHODS:
        reader.error(value.line_of("control"), f"{where}: recheck control 'upstream' replays the read, "
                                               f"only {' and '.join(SAFE_METHODS)} may be replayed (got {method})")
        control = "none"
    if control == "mongo" and source == "mongo":
        reader.error(value.line_of("control"), f"{where}: recheck control 'mongo' needs a postgres source "
                                               f"(with source: mongo the shadow side already reads MongoDB)")
        control = "none"
    headers = tuple(name.lower() for name in reader.strings(value, "headers", f"{where} recheck", HEADER_NAME))
    if headers and control != "upstream":
        reader.error(value.line_of("headers"), f"{where}: recheck 'headers' are only sent with control: upstream")
    return RecheckPolicy(after, control, headers, _gone(reader, value, where))  # type: ignore[arg-type]


def _gone(reader: Reader, value: YMap, where: str) -> tuple[int, ...]:
    """`gone: [401, 404, 410]`: control statuses that mean the document is not there any
    more (default 404, 410); any other non-2xx answer is an error."""
    if "gone" not in value:
        return DEFAULT_GONE
    raw = value["gone"]
    items = list(raw) if isinstance(raw, YList) else [raw]
    statuses = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int) or not 300 <= item <= 599:
            reader.error(value.line_of("gone"),
                         f"{where}: recheck 'gone' lists HTTP statuses 300-599, got {kind_of(item)}")
            continue
        statuses.append(item)
    if "gone" in value and value.get("control", "upstream") != "upstream":
        reader.error(value.line_of("gone"), f"{where}: recheck 'gone' statuses are for control: upstream")
    return tuple(sorted(set(statuses)))


def _after(reader: Reader, value: YMap, where: str) -> tuple[float, ...]:
    if "after" not in value:
        return DEFAULT_AFTER
    raw, line = value["after"], value.line_of("after")
    items: list[Any] = list(raw) if isinstance(raw, YList) else [raw]
    steps = []
    for index, item in enumerate(items):
        seconds = _seconds(item)
        item_line = raw.line_of(index) if isinstance(raw, YList) else line
        if seconds is None or seconds <= 0 or seconds > MAX_DELAY_SECONDS:
            reader.error(item_line, f"{where}: recheck 'after' entries must be durations above 0 and up to 1h "
                                    f"like 1s, 500ms, 2m, got {show(item) if isinstance(item, str) else kind_of(item)}")
            continue
        steps.append(seconds)
    if len(steps) > MAX_STEPS:
        reader.error(line, f"{where}: recheck 'after' has {len(steps)} steps, at most {MAX_STEPS}")
        steps = steps[:MAX_STEPS]
    if steps != sorted(steps) or len(set(steps)) != len(steps):
        reader.error(line, f"{where}: recheck 'after' must be strictly ascending (times after the first read), "
                           f"got {', '.join(f'{step:g}s' for step in steps)}")
        steps = sorted(set(steps))
    return tuple(steps)


def _seconds(value: Any) -> float | None:
    """Seconds from `2`, `2.5`, `2s`, `500ms`, `1m`; None for anything else."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) if value >= 0 else None
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    return float(match.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[match.group(2)]
