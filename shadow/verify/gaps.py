"""Dual-write gaps: the backend records PostgreSQL writes that failed after Mongo's in a
table; a difference on a key with an open gap is labelled (still blocking). Configured
in the gate criteria:

    dualwrite_gaps: {table: pg_dualwrite_gaps, collection: collection,
                     key: legacy_object_id, open_when_null: resolved_at}
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from shadow.replay.sources.postgres import quote
from shadow.rules.reader import IDENTIFIER, TABLE
from shadow.rules.spec import Entity

if TYPE_CHECKING:
    import asyncpg

GAP_KEYS = {"table": TABLE, "collection": IDENTIFIER, "key": IDENTIFIER, "open_when_null": IDENTIFIER}


class GapConfigError(ValueError):
    pass


def gap_config(criteria_path: str | None) -> dict[str, str] | None:
    if not criteria_path:
        return None
    try:
        data = yaml.safe_load(Path(criteria_path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise GapConfigError(f"--criteria {criteria_path!r}: {type(error).__name__}: {error}") from None
    section = data.get("dualwrite_gaps") if isinstance(data, dict) else None
    if section is None:
        return None
    if not isinstance(section, dict) or set(section) - set(GAP_KEYS) or "table" not in section:
        raise GapConfigError(f"{criteria_path}: dualwrite_gaps takes {', '.join(GAP_KEYS)} (table required)")
    config = {"collection": "collection", "key": "legacy_object_id", "open_when_null": "resolved_at", **section}
    for name, pattern in GAP_KEYS.items():
        if not isinstance(config[name], str) or not pattern.match(config[name]):
            raise GapConfigError(f"{criteria_path}: dualwrite_gaps.{name}: bad name {config[name]!r:.60}")
    return config


Lookup = Callable[[Entity, list[str]], Awaitable[list[str]]]


async def open_gaps(criteria_path: str | None, pool: asyncpg.Pool) -> tuple[Lookup | None, dict[str, int] | None]:
    """A lookup `(entity, keys) -> keys with an open gap` and the open gaps per collection,
    or (None, None) when not configured."""
    config = gap_config(criteria_path)
    if config is None:
        return None, None
    sql = (f"SELECT {quote(config['key'])} FROM {quote(config['table'])} WHERE {quote(config['collection'])} = $1 "
           f"AND {quote(config['key'])} = ANY($2::text[]) AND {quote(config['open_when_null'])} IS NULL")

    async def lookup(entity: Entity, keys: list[str]) -> list[str]:
        async with pool.acquire() as connection:
            return [row[0] for row in await connection.fetch(sql, entity.collection, keys)]

    return lookup, await open_gap_counts(config, pool)


async def open_gap_counts(config: dict[str, str], pool: asyncpg.Pool) -> dict[str, int]:
    """Open gaps per collection (for the gate's report)."""
    sql = (f"SELECT {quote(config['collection'])}, count(*) FROM {quote(config['table'])} "
           f"WHERE {quote(config['open_when_null'])} IS NULL GROUP BY 1")
    async with pool.acquire() as connection:
        return {row[0]: int(row[1]) for row in await connection.fetch(sql)}
