"""The evidence store's database side, shared by its writers (the sidecar's evidence
writer, `shadow verify --evidence`, `shadow gate --evidence`) and its reader (`shadow
console`): connecting, the idempotent schema (evidence_schema.sql), retention.

The store is PostgreSQL in its own schema, `shadow_evidence`; its DSN (`--evidence`)
may name a different database from the shadow source's (`--pg`).
"""
from __future__ import annotations

import datetime as dt
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg

SCHEMA = "shadow_evidence"
#: a database the store cannot reach within this many seconds counts as down
CONNECT_TIMEOUT = 5.0
#: statements that take longer are abandoned (the writer counts the batch as dropped)
COMMAND_TIMEOUT = 10.0
#: whole examples kept per (entity, route, first differing path, outcome); older ones are deleted
EXAMPLES_KEPT_PER_PATH = 20


def schema_sql() -> str:
    return resources.files("shadow.publish").joinpath("evidence_schema.sql").read_text("utf-8")


async def connect(dsn: str) -> asyncpg.Connection:
    """One asyncpg connection with the schema in place (created or migrated)."""
    import asyncpg

    connection = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT, command_timeout=COMMAND_TIMEOUT)
    try:
        await migrate(connection)
    except BaseException:
        await connection.close()
        raise
    return connection


async def create_pool(dsn: str, max_size: int = 6) -> asyncpg.Pool:
    """A pool for the console (reads); the schema is created first, so an empty store
    shows an empty console rather than an error."""
    import asyncpg

    connection = await connect(dsn)
    await connection.close()
    return await asyncpg.create_pool(dsn, min_size=1, max_size=max_size, timeout=CONNECT_TIMEOUT,
                                     command_timeout=COMMAND_TIMEOUT)


async def migrate(connection: asyncpg.Connection) -> None:
    """Create or upgrade the schema; safe to run concurrently from many pods (an
    advisory lock serialises the DDL)."""
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(hashtext('shadow_evidence.schema'))")
        await connection.execute(schema_sql())


async def apply_retention(connection: asyncpg.Connection, keep: dt.timedelta, now: dt.datetime | None = None,
                          examples_per_path: int = EXAMPLES_KEPT_PER_PATH) -> tuple[int, int]:
    """Delete findings and examples older than `keep`, and examples beyond the newest
    `examples_per_path` of a path. Returns (finding rows, examples) deleted."""
    cutoff = (now or dt.datetime.now(dt.UTC)) - keep
    findings = await connection.execute(f"DELETE FROM {SCHEMA}.findings WHERE minute < $1", cutoff)
    await connection.execute(f"DELETE FROM {SCHEMA}.findings_hourly WHERE hour < date_trunc('hour', $1::timestamptz)",
                             cutoff)
    examples = await connection.execute(f"DELETE FROM {SCHEMA}.examples WHERE at < $1", cutoff)
    extra = await connection.execute(
        f"""DELETE FROM {SCHEMA}.examples WHERE id IN (
              SELECT id FROM (
                SELECT id, row_number() OVER (PARTITION BY entity, route, paths[1], outcome ORDER BY at DESC) AS n
                FROM {SCHEMA}.examples) ranked
              WHERE n > $1)""", examples_per_path)
    return _rows(findings), _rows(examples) + _rows(extra)


def _rows(status: str) -> int:
    """The row count of an asyncpg status line such as 'DELETE 12'."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0
