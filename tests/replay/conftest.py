"""A small controlled world for the shadow pipeline: a widget API (the control, its
documents held by the test), a real PostgreSQL table (the shadow source, through the
real PostgresSource), the real rules loader, and the whole sidecar in front."""
from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from shadow.config import Config
from shadow.sidecar import Sidecar, start_sidecar
from tests.widgets import FULL_FIELDS, widget_rules

#: widgets: a tiny entity for the pipeline tests
WIDGET_RULES = widget_rules(
    "  - route: GET /widgets/{id}\n    recheck: 300ms\n",
    "  - route: GET /widgets\n    list: true\n    complete: true\n    at: items\n    recheck: 0\n",
    "  - route: GET /quick/{id}\n    recheck: 0\n",
    "  - route: GET /hashed/{id}\n    sample: 0.5\n    sample_by: key\n    recheck: 0\n",
    fields=FULL_FIELDS)

SCHEMA = """
CREATE TABLE widgets (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  legacy_object_id text UNIQUE NOT NULL,
  name text,
  price numeric(38,18),
  api_token text
);
"""


def widget(number: int) -> dict[str, Any]:
    return {"_id": f"w{number:04d}", "name": f"widget {number}", "price": f"{number}.5", "apiToken": f"tok-{number}"}


async def load_widgets(dsn: str, documents: Any) -> None:
    """Create the widgets table in `dsn` and insert `documents` as rows."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(SCHEMA)
        await connection.executemany(
            "INSERT INTO widgets (legacy_object_id, name, price, api_token) VALUES ($1, $2, $3, $4)",
            [(d["_id"], d["name"], decimal.Decimal(d["price"]), d["apiToken"]) for d in documents])
    finally:
        await connection.close()


@dataclass
class WidgetWorld:
    """The control documents (what the API answers) and the PG table (the candidate)."""

    api_url: str
    pg_dsn: str
    documents: dict[str, dict[str, Any]]
    rules: Path
    requests: list[str] = field(default_factory=list)
    #: (path, headers) of every recheck replay (X-Shadow-Recheck: 1) the API received
    replays: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    #: awaited with the key before the API answers a recheck replay (a test's dual-write hook)
    on_replay: Callable[[str], Awaitable[None]] | None = None

    async def sql(self, statement: str, *args: Any) -> None:
        connection = await asyncpg.connect(self.pg_dsn)
        try:
            await connection.execute(statement, *args)
        finally:
            await connection.close()


def widget_api(world: WidgetWorld) -> web.Application:
    documents = world.documents

    async def one(request: web.Request) -> web.Response:
        if request.headers.get("X-Shadow-Recheck") == "1":
            world.replays.append((request.path_qs, dict(request.headers)))
            if world.on_replay is not None:
                await world.on_replay(request.match_info["id"])
        document = documents.get(request.match_info["id"])
        if document is None and "echo" in request.query:  # any key, even one PG cannot hold
            document = {"_id": request.match_info["id"], "name": "echo"}
        if document is None:
            return web.json_response({"error": "not found"}, status=404)
        if "text" in request.query:
            return web.Response(text=str(document))
        if "chunked" in request.query:  # no Content-Length: the size shows while streaming
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            text = json.dumps(document).encode()
            for start in range(0, len(text), 16):
                await response.write(text[start:start + 16])
            await response.write_eof()
            return response
        if request.path.startswith("/stamped/"):  # a field generated per request
            document = {**document, "servedAt": dt.datetime.now(dt.UTC).isoformat()}
        return web.json_response(document)

    async def listing(request: web.Request) -> web.Response:
        if request.headers.get("X-Shadow-Recheck") == "1":
            world.replays.append((request.path_qs, dict(request.headers)))
            if world.on_replay is not None:
                await world.on_replay("[list]")
        return web.json_response({"items": sorted(documents.values(), key=lambda d: d["_id"])})

    app = web.Application()
    for prefix in ("widgets", "quick", "hashed", "plain", "stamped"):  # /plain/ has no rule: never shadowed
        app.router.add_get(f"/{prefix}/{{id}}", one)
    app.router.add_get("/widgets", listing)
    return app


@pytest.fixture
async def world(pg_dsn: str, tmp_path: Path) -> AsyncIterator[WidgetWorld]:
    documents = {doc["_id"]: doc for doc in (widget(n) for n in range(1, 41))}
    await load_widgets(pg_dsn, documents.values())
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "widgets.yaml").write_text(WIDGET_RULES)
    world = WidgetWorld("", pg_dsn, documents, rules)
    runner = web.AppRunner(widget_api(world))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    world.api_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield world
    await runner.cleanup()


StartSidecar = Callable[..., Awaitable[Sidecar]]


@pytest.fixture(params=("aiohttp", "raw"))
def engine(request: pytest.FixtureRequest) -> str:
    """The request-path engine (`--engine`): every pipeline test runs on both."""
    return request.param


@pytest.fixture
async def start(world: WidgetWorld, tmp_path: Path, engine: str) -> AsyncIterator[StartSidecar]:
    """start(**config overrides) -> a running sidecar over `world`; stopped afterwards."""
    running: list[Sidecar] = []

    async def starter(**overrides: Any) -> Sidecar:
        values: dict[str, Any] = dict(upstream=world.api_url, rules=world.rules, pg=world.pg_dsn,
                                      listen="127.0.0.1:0", admin_listen="127.0.0.1:0", reload="signal",
                                      workers=2, source_timeout=10.0, mismatch_log=str(tmp_path / "mismatches.jsonl"),
                                      # not niced: these tests are about outcomes, not priority (test_worker_process
                                      # checks the nice), and must not starve when other processes load the CPU
                                      shadow_nice=0,
                                      engine=engine)
        extra = {name: overrides.pop(name) for name in list(overrides) if name.startswith("_")}
        values.update(overrides)
        sidecar = await start_sidecar(Config(**values), **{name[1:]: value for name, value in extra.items()})
        running.append(sidecar)
        return sidecar

    yield starter
    for sidecar in running:
        await sidecar.stop()


async def get_all(base: str, paths: list[str], concurrency: int = 8) -> list[tuple[int, bytes]]:
    """GET every path through `base`; (status, body) in order."""
    return [(status, body) for status, body, _ in await timed_get_all(base, paths, concurrency)]


async def timed_get_all(base: str, paths: list[str], concurrency: int = 8) -> list[tuple[int, bytes, float]]:
    """GET every path through `base`; (status, body, seconds) in order."""
    results: list[tuple[int, bytes, float]] = [(0, b"", 0.0)] * len(paths)
    semaphore = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:
        async def one(index: int, path: str) -> None:
            async with semaphore:
                started = time.perf_counter()
                async with session.get(base + path) as response:
                    body = await response.read()
                results[index] = (response.status, body, time.perf_counter() - started)
        await asyncio.gather(*(one(index, path) for index, path in enumerate(paths)))
    return results


def outcomes(sidecar: Sidecar, entity: str = "widgets") -> dict[str, int]:
    """Counts by outcome as exported on /metrics (summed over routes)."""
    counts: dict[str, int] = {}
    for metric in sidecar.registry.collect():
        if metric.name != "shadow_comparisons":
            continue
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels["entity"] == entity:
                outcome = sample.labels["outcome"]
                counts[outcome] = counts.get(outcome, 0) + int(sample.value)
    return counts


def skipped(sidecar: Sidecar, reason: str) -> float:
    total = 0.0
    for metric in sidecar.registry.collect():
        if metric.name == "shadow_skipped":
            total += sum(s.value for s in metric.samples if s.name.endswith("_total") and s.labels["reason"] == reason)
    return total


def stage_count(sidecar: Sidecar, stage: str, entity: str = "widgets") -> float:
    """How many `stage` samples the shadow side has reported (e.g. compare: keys judged)."""
    value = sidecar.registry.get_sample_value("shadow_stage_seconds_count", {"entity": entity, "stage": stage})
    return value or 0.0


async def until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Wait for an event (a counter reaching a value, a request arriving); the timeout
    only turns a hang into a failure, it is not part of what is tested."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.01)


async def settle(sidecar: Sidecar, timeout: float = 120.0) -> None:
    assert await sidecar.pipeline.drain(timeout), "the shadow pipeline did not finish in time"


class Probe:
    """The helpers above, for test modules (conftest modules are not importable)."""

    get_all = staticmethod(get_all)
    timed_get_all = staticmethod(timed_get_all)
    load_widgets = staticmethod(load_widgets)
    rules_text = WIDGET_RULES
    outcomes = staticmethod(outcomes)
    skipped = staticmethod(skipped)
    settle = staticmethod(settle)
    stage_count = staticmethod(stage_count)
    until = staticmethod(until)
    widget = staticmethod(widget)


@pytest.fixture
def probe() -> type[Probe]:
    return Probe
