"""`shadow rules draft` run as a user runs it (a subprocess) against real servers.

`drafted` (one per module): the marketplace domain seeded with its planted drift into
fresh PG and Mongo databases, answers recorded from the sample API over real HTTP, then
`shadow rules draft --answers … --check` run once; tests read the files it wrote."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from pymongo import AsyncMongoClient

from shadow.config import Config
from shadow.demo.embedded import MongoServer, PostgresServer
from shadow.demo.marketplace.api import create_app
from shadow.demo.marketplace.cli import load_domain
from shadow.demo.marketplace.drift import PlantedDrift
from shadow.demo.marketplace.generate import Dataset
from shadow.sidecar import start_sidecar
from tests.fixtures import create_database, drop_database, serving
from tests.widgets import widget_rules

SEED = 7
SCALE = 20


def shadow(*args: str, timeout: float = 120) -> tuple[int, str, str]:
    done = subprocess.run([sys.executable, "-m", "shadow", *args], capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout, done.stderr


@dataclass(frozen=True)
class Stores:
    pg_dsn: str
    mongo_uri: str
    mongo_db: str


@dataclass(frozen=True)
class Drafted:
    stores: Stores
    dataset: Dataset
    drifts: tuple[PlantedDrift, ...]
    out: Path
    answers: Path
    code: int
    stdout: str
    stderr: str

    def text(self, entity: str) -> str:
        return (self.out / f"{entity}.yaml").read_text()


async def _drop(pg_server: PostgresServer, stores: Stores) -> None:
    await drop_database(pg_server, stores.pg_dsn)
    client: AsyncMongoClient[Any] = AsyncMongoClient(stores.mongo_uri)
    try:
        await client.drop_database(stores.mongo_db)
    finally:
        await client.close()


@pytest.fixture(scope="module")
def fresh_stores(pg_server: PostgresServer, mongo_server: MongoServer) -> Iterator[Stores]:
    """Empty PG and Mongo databases for one module."""
    stores = Stores(asyncio.run(create_database(pg_server)), mongo_server.uri, f"t_{uuid.uuid4().hex[:12]}")
    yield stores
    asyncio.run(_drop(pg_server, stores))


async def record_answers(stores: Stores, dataset: Dataset, directory: Path) -> None:
    """A few GET answers of the sample API, recorded as a user records them: through the
    proxy with `--record DIR` (shadow/proxy/recording.py), redacted on the way."""
    directory.mkdir()
    rules = directory.parent / "proxy-rules"  # the proxy needs rules; no route of them matches the API
    rules.mkdir()
    (rules / "widgets.yaml").write_text(widget_rules("  - route: GET /widgets/{id}\n"))
    async with serving(create_app(stores.mongo_uri, stores.mongo_db)) as api:
        sidecar = await start_sidecar(Config(upstream=api, rules=rules, listen="127.0.0.1:0",
                                             admin_listen="127.0.0.1:0", reload="signal", shadow_process="inline",
                                             record=directory))
        paths = [f"/api/users/{u['_id']}" for u in dataset.collections["users"][:4]]
        owners = list(dict.fromkeys(str(a["userId"]) for a in dataset.collections["addresses"]))[:3]
        paths += [f"/api/users/{owner}/addresses" for owner in owners]
        paths += [f"/api/payments/{p['_id']}" for p in dataset.collections["payments"][:3]]
        paths += ["/api/categories"]
        requests = dataset.collections["purchaserequests"]
        paths += [f"/api/views/purchase-requests/{r['_id']}" for r in requests[:3]]  # view models: keyed by `id`
        paths += [f"/api/views/users/{r['buyerId']}/purchase-requests" for r in requests[:2]]
        try:
            async with ClientSession() as session:
                for path in paths:
                    async with session.get(f"{sidecar.proxy_url}{path}") as response:
                        assert response.status == 200, path
                        await response.read()
            async with asyncio.timeout(60):  # bounds a hang only: waits for the files to be written
                while (sidecar.registry.get_sample_value("shadow_record_written_total") or 0) < len(paths):
                    await asyncio.sleep(0.01)
        finally:
            await sidecar.stop()
    assert len(list(directory.glob("*.json"))) == len(paths)


@pytest.fixture(scope="module")
def drafted(fresh_stores: Stores, tmp_path_factory: pytest.TempPathFactory) -> Drafted:
    stores = fresh_stores
    loaded = asyncio.run(load_domain(stores.pg_dsn, stores.mongo_uri, stores.mongo_db, scale=SCALE, seed=SEED,
                                     drift=True))
    base = tmp_path_factory.mktemp("draft")
    answers = base / "answers"
    asyncio.run(record_answers(stores, loaded.dataset, answers))
    out = base / "rules"
    code, stdout, stderr = shadow("rules", "draft", "--pg", stores.pg_dsn, "--mongo", stores.mongo_uri,
                                  "--mongo-db", stores.mongo_db, "--answers", str(answers), "-o", str(out), "--check")
    return Drafted(stores, loaded.dataset, loaded.drifts, out, answers, code, stdout, stderr)
