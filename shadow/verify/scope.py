"""Which slice of the key space a run covers (`--partition I/N`, by ObjectId range) and
the rules' `keep` filters, as a Mongo query and a parameterised SQL condition."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bson import ObjectId

from shadow.replay.sources.postgres import quote
from shadow.rules.spec import Entity

DAY = 86_400
_PARTITION = re.compile(r"^(\d{1,6})/(\d{1,6})$")


class BadFlag(ValueError):
    """A command-line value verify refuses (exit 2)."""


@dataclass(frozen=True, slots=True)
class Partition:
    """Slice `index` (0-based, like a Kubernetes Indexed Job's JOB_COMPLETION_INDEX) of `count`."""

    index: int = 0
    count: int = 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_partition(text: str) -> Partition:
    match = _PARTITION.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise BadFlag(f"--partition must be I/N (slice I of N, 0 <= I < N), got {text!r:.40}")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or count > 10_000 or index >= count:
        raise BadFlag(f"--partition {text!r}: need 0 <= I < N <= 10000")
    return Partition(index, count)


@dataclass(frozen=True, slots=True)
class KeyRange:
    """Legacy ids `low <= id < high` (hex, lowercase: string order is ObjectId order);
    None = open on that side."""

    low: str | None = None
    high: str | None = None

    def mongo(self) -> dict[str, Any]:
        bounds: dict[str, Any] = {}
        if self.low is not None:
            bounds["$gte"] = ObjectId(self.low)
        if self.high is not None:
            bounds["$lt"] = ObjectId(self.high)
        return {"_id": bounds} if bounds else {}

    def contains(self, key: str) -> bool:
        return (self.low is None or key >= self.low) and (self.high is None or key < self.high)


def _day_id(seconds: int) -> str:
    return f"{max(0, min(seconds, 0xFFFFFFFF)):08x}" + "0" * 16


def partition_range(partition: Partition, first: str | None, last: str | None) -> KeyRange:
    """The key range of one slice. Boundaries are whole days between the first and the
    last ObjectId's day, so N processes started the same day agree on them; the first
    slice is open below and the last open above (ids written during the run are taken)."""
    if partition.count == 1 or first is None or last is None:
        return KeyRange()
    low_day = int(first[:8], 16) // DAY
    high_day = int(last[:8], 16) // DAY + 1
    span = high_day - low_day

    def boundary(index: int) -> str:
        return _day_id((low_day + span * index // partition.count) * DAY)

    low = None if partition.index == 0 else boundary(partition.index)
    high = None if partition.index == partition.count - 1 else boundary(partition.index + 1)
    return KeyRange(low, high)


def bucket_of(key: str) -> str:
    """The id-range bucket of a legacy id: the UTC day of its ObjectId (`d` + day number)."""
    try:
        return f"d{int(key[:8], 16) // DAY}"
    except ValueError:
        return "other"


def mongo_filter(entity: Entity, key_range: KeyRange) -> dict[str, Any]:
    """The documents of this slice that the remodel keeps."""
    parts = [part for part in (key_range.mongo(), dict(entity.checks.keep_mongo) if entity.checks else {}) if part]
    if not parts:
        return {}
    return parts[0] if len(parts) == 1 else {"$and": parts}


def pg_condition(entity: Entity, key_range: KeyRange, alias: str = "", first_arg: int = 1) -> tuple[str, list[Any]]:
    """`WHERE`-ready SQL (or "TRUE") for this slice and the `keep` filter, and its args."""
    prefix = f"{alias}." if alias else ""
    conditions: list[str] = []
    args: list[Any] = []
    key = prefix + quote(entity.key)
    if key_range.low is not None:
        args.append(key_range.low)
        conditions.append(f'{key} >= ${first_arg + len(args) - 1}')
    if key_range.high is not None:
        args.append(key_range.high)
        conditions.append(f'{key} < ${first_arg + len(args) - 1}')
    for column, wanted in (entity.checks.keep_postgres.items() if entity.checks else ()):
        if wanted is None:
            conditions.append(f"{prefix}{quote(column)} IS NULL")
        else:
            args.append(wanted)
            conditions.append(f"{prefix}{quote(column)} = ${first_arg + len(args) - 1}")
    return (" AND ".join(conditions) or "TRUE"), args


def verifiable(entity: Entity) -> str | None:
    """None when a stored document can produce the entity's API view; else why not."""
    if entity.stored.unverifiable:
        return entity.stored.unverifiable
    if entity.view:
        return "a view model (view: true): computed per read, no stored document holds it"
    if entity.distinct is not None:
        return "a distinct list of values (distinct:), not one document per key"
    stored_kinds = {"column", "ref", "mixed", "object", "json", "rows", "child", "const"}
    pending = list(entity.fields.values())
    while pending:
        spec = pending.pop()
        if spec.kind not in stored_kinds:
            return f"field {spec.node or spec.name!r} is {spec.kind}: not in the stored document"
        pending.extend(spec.fields)
        if spec.value is not None:
            pending.append(spec.value)
    return None
