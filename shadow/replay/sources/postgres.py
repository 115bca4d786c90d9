"""The PostgreSQL shadow source: rebuild API documents for a batch of keys.

One batch = one connection, a bounded number of round trips whatever its size:
1 query for the main rows (`key = ANY($1)`), 1 per child table (all parents at once),
and at most 1 for the id_map uuids not cached yet. Always bound parameters; table and
column names come from validated rules and are quoted. Read-only (server setting
`default_transaction_read_only`, or a read-only transaction on a pool handed in),
with a statement timeout.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from normalizers.idmap import IdMapCache
from normalizers.rows import group_rows
from shadow.plancache import PlanCache
from shadow.replay.rebuild import Fetched, rebuild_plan, row_columns, uuid_columns
from shadow.replay.sources.pgview import Selection, aggregate_sql, distinct_fetch, resolve, select_keys
from shadow.replay.viewread import BoundReader
from shadow.rules.spec import AGGREGATES, Entity, Field, Route
from shadow.rules.walk import item_fields, table_fields


def quote(name: str) -> str:
    """A validated identifier (`table` or `schema.table`) quoted for SQL."""
    return ".".join(f'"{part}"' for part in name.split("."))


class PostgresSource:
    """Batches of keys -> API-shaped documents rebuilt from PostgreSQL rows."""

    name = "postgres"

    def __init__(self, pool: asyncpg.Pool, *, statement_timeout: float = 2.0,
                 id_map_cache: IdMapCache | None = None, read_only_session: bool = False,
                 id_map_table: str = "id_map") -> None:
        """`read_only_session`: the pool's connections are already read-only with a
        statement timeout (as `create` makes them); otherwise each batch runs in a
        read-only transaction with `SET LOCAL statement_timeout`."""
        self.pool = pool
        self.statement_timeout = statement_timeout
        self.id_map = id_map_cache or IdMapCache()
        self.read_only_session = read_only_session
        self.id_map_table = quote(id_map_table)
        self.round_trips = 0  # queries sent, for benchmarks and the closing report
        self._own_pool = False

    @classmethod
    async def create(cls, dsn: str, statement_timeout: float = 2.0, pool_size: int = 4,
                     id_map_cache_size: int = 100_000) -> PostgresSource:
        """A source with its own pool: read-only sessions with a statement timeout."""
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=pool_size, command_timeout=statement_timeout + 1.0,
            server_settings={"default_transaction_read_only": "on",
                             "statement_timeout": str(int(statement_timeout * 1000)),
                             "application_name": "shadow"},
            reset=_keep_session)  # plain autocommit SELECTs leave no session state to reset
        source = cls(pool, statement_timeout=statement_timeout, id_map_cache=IdMapCache(id_map_cache_size),
                     read_only_session=True)
        source._own_pool = True
        return source

    async def close(self) -> None:
        if self._own_pool:
            await self.pool.close()

    async def fetch(self, entity: Entity, keys: list[str], reader: BoundReader | None = None) -> dict[str, Any]:
        """key -> rebuilt document, or None when PostgreSQL has no row for it. `reader`:
        who read the API (for fields bound to the reader); never logged."""
        keys = list(dict.fromkeys(keys))
        if not keys:
            return {}
        async with self.pool.acquire() as connection:
            if self.read_only_session:
                return await self._fetch(connection, entity, keys, reader)
            async with connection.transaction(readonly=True):
                await connection.execute(f"SET LOCAL statement_timeout = {int(self.statement_timeout * 1000)}")
                self.round_trips += 3  # BEGIN, SET, COMMIT
                return await self._fetch(connection, entity, keys, reader)

    async def query(self, connection: asyncpg.Connection, sql: str, *args: Any) -> list[asyncpg.Record]:
        """One counted SELECT within the statement timeout (pgview's queries run through it)."""
        self.round_trips += 1
        records: list[asyncpg.Record] = await connection.fetch(sql, *args, timeout=self.statement_timeout + 1.0)
        return records

    async def _fetch(self, connection: asyncpg.Connection, entity: Entity, keys: list[str],
                     reader: BoundReader | None = None) -> dict[str, Any]:
        if entity.distinct is not None:  # a scalar list: one query answers every (constant) key
            return await distinct_fetch(self, connection, entity, keys)
        plan = _PLANS.get(entity)
        reader_id = None
        if plan.needs_reader and reader is not None:
            reader_id = await resolve(self, connection, reader.lookup, reader.value)
        main = await self.query(connection, plan.sql, keys)
        uuid_at = plan.uuid_columns
        uuids: set[Any] = {row[column] for row in main for column in uuid_at} if uuid_at else set()
        children: dict[str, Mapping[Any, list[Any]]] = {}
        level = [(table, main) for table in plan.tables]
        while level:  # one query per child table, breadth first (children of children next)
            deeper: list[tuple[TableFetch, list[Any]]] = []
            for table, parent_rows in level:
                parent = table.parent
                parents = list({row[parent] for row in parent_rows} - {None})
                rows: list[Any] = []
                if parents:
                    rows = await self.query(connection, table.sql, parents, *table.args,
                                             *((reader_id,) if table.reader else ()))
                children[table.node] = group_rows(rows, table.fk)
                if table.uuid_columns:
                    uuids.update(row[column] for row in rows for column in table.uuid_columns)
                deeper.extend((sub, rows) for sub in table.tables)
            level = deeper
        unknown = self.id_map.unknown(uuids)
        if unknown:
            pairs = await self.query(
                connection, f"SELECT new_id, legacy_object_id FROM {self.id_map_table} WHERE new_id = ANY($1::uuid[])",
                unknown)
            self.id_map.remember((pair[0], pair[1]) for pair in pairs)
        fetched = Fetched(children, self.id_map.legacy_of(uuids))
        key_column = entity.key
        by_key = {row[key_column]: row for row in main}
        build = rebuild_plan(entity)
        return {key: build(row, fetched) if (row := by_key.get(key)) is not None else None for key in keys}

    async def list_keys(self, entity: Entity, route: Route, params: Mapping[str, str]) -> set[str]:
        """Every key the route's filter selects (a complete list read shows all of them)."""
        selection = await self.select(entity, route, params, {})
        return set(selection.keys)

    async def select(self, entity: Entity, route: Route, params: Mapping[str, str], query: Mapping[str, str],
                     reader: BoundReader | None = None) -> Selection:
        """The keys a list route shows (in its order, its page) and the total count."""
        async with self.pool.acquire() as connection:
            return await select_keys(self, connection, entity, route, params, query, reader)

    async def new_id(self, connection: asyncpg.Connection, collection: str, legacy: str) -> Any:
        """The PostgreSQL uuid of a legacy Mongo id, through the id_map cache; None when unknown."""
        cached = self.id_map.new_of(collection, legacy)
        if cached is not None:
            return cached
        rows = await self.query(
            connection, f"SELECT new_id FROM {self.id_map_table} WHERE collection = $1 AND legacy_object_id = $2",
            collection, legacy)
        if not rows:
            return None
        self.id_map.remember([(rows[0]["new_id"], legacy)], collection)
        return rows[0]["new_id"]


@dataclass(frozen=True, slots=True)
class TableFetch:
    """One child table of the fetch plan: its query (all parents at once), the parent
    column its fk refers to, the uuid columns of its rows, and its own child tables."""

    node: str
    parent: str
    fk: str
    sql: str
    uuid_columns: tuple[str, ...]
    tables: tuple[TableFetch, ...]
    args: tuple[Any, ...] = ()  # constants of an aggregate's conditions ($2, $3, ...)
    reader: bool = False  # an aggregate bound to the reader: its id is the last argument


@dataclass(frozen=True, slots=True)
class FetchPlan:
    """An entity's queries, built once from its rules (SQL text, uuid columns, tables)."""

    sql: str
    uuid_columns: tuple[str, ...]
    tables: tuple[TableFetch, ...]
    needs_reader: bool = False


def fetch_plan(entity: Entity) -> FetchPlan:
    """The entity's fetch plan, compiled once and kept in this module's cache."""
    return _PLANS.get(entity)


def _compile(entity: Entity) -> FetchPlan:
    fields = list(entity.fields.values())
    columns = _unique([entity.key, entity.id, *row_columns(fields)])
    tables = tuple(_table_fetch(spec) for spec in table_fields(fields))
    return FetchPlan(f"SELECT {', '.join(map(quote, columns))} FROM {quote(entity.table)} "
                     f"WHERE {quote(entity.key)} = ANY($1)",
                     tuple(uuid_columns(fields)), tables, _needs_reader(tables))


def _needs_reader(tables: tuple[TableFetch, ...]) -> bool:
    return any(table.reader or _needs_reader(table.tables) for table in tables)


def _table_fetch(spec: Field) -> TableFetch:
    if spec.kind in AGGREGATES:
        sql, args, reader = aggregate_sql(spec)
        return TableFetch(spec.node, spec.parent, spec.fk or "", sql, (), (), args, reader)
    items = item_fields(spec)
    wanted = _unique([spec.fk, *row_columns(items), *spec.order_by])
    order = ", ".join(map(quote, (spec.fk or "", *spec.order_by)))
    sql = (f"SELECT {', '.join(map(quote, wanted))} FROM {quote(spec.table or '')} "
           f"WHERE {quote(spec.fk or '')} = ANY($1) ORDER BY {order}")
    return TableFetch(spec.node, spec.parent, spec.fk or "", sql, tuple(uuid_columns(items)),
                      tuple(_table_fetch(sub) for sub in table_fields(items)))


def _unique(names: list[str | None]) -> list[str]:
    return [name for name in dict.fromkeys(names) if name]


async def _keep_session(connection: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing. asyncpg's default (RESET ALL, UNLISTEN,
    advisory unlocks, CLOSE ALL) is one more round trip per fetch for state a
    read-only autocommit SELECT never creates."""


_PLANS: PlanCache[FetchPlan] = PlanCache(_compile)
