"""The marketplace reference domain (DESIGN §1): the Mongo documents the production
API serves and their remodeled PostgreSQL rows, shared by the demo, tests and benchmarks.

- `schema.sql` / `apply_schema(conn)` — the PostgreSQL DDL
- `generate.generate(seed, scale)` — Mongo-shaped documents, deterministic from a seed
- `backfill.backfill(conn, dataset, seed)` — the equivalent PG rows through `id_map`
- `drift.plant(conn, dataset, seed)` — known divergences planted in PG
- `tojson.to_api(collection, doc)` — the Mongoose `toJSON` shape the API returns
- `api.create_app(mongo_uri, db_name)` — the sample Mongo-backed HTTP API
"""
from __future__ import annotations

from importlib import resources
from typing import Any

#: Mongo collection -> PostgreSQL main table, in load order (parents before children).
COLLECTIONS: dict[str, str] = {
    "users": "users",
    "addresses": "addresses",
    "categories": "categories",
    "purchaserequests": "purchase_requests",
    "selleroffers": "seller_offers",
    "payments": "payments",
    "fundsledgerentries": "funds_ledger_entries",
    "disputes": "disputes",
}


def schema_sql() -> str:
    """The DDL of the remodeled schema (one script, no data)."""
    return resources.files(__package__).joinpath("schema.sql").read_text(encoding="utf-8")


async def apply_schema(conn: Any) -> None:
    """Create every type, table and index on an empty database (asyncpg connection)."""
    await conn.execute(schema_sql())
