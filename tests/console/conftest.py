"""The console tests run sidecars over the widget world of the pipeline tests (its
fixtures re-exported from tests/replay/conftest.py, as tests/publish does), writing into
an evidence store in a database of its own."""
from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, async_playwright

from shadow.demo.embedded import PostgresServer
from tests.fixtures import create_database, drop_database, load_conftest

_world = load_conftest("replay")

world = _world.world
start = _world.start
probe = _world.probe


@pytest.fixture
def engine() -> str:
    return "raw"  # the request path is not what these tests are about


@pytest.fixture
async def evidence_dsn(pg_server: PostgresServer) -> AsyncIterator[str]:
    """An empty database for the evidence store (not the shadow source's)."""
    dsn = await create_database(pg_server, "ev")
    yield dsn
    await drop_database(pg_server, dsn)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's chromium under Playwright (never `playwright install`)."""
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            yield chromium
        finally:
            await chromium.close()
