"""The console tests run sidecars over the widget world of the pipeline tests (its
fixtures re-exported from tests/replay/conftest.py, as tests/publish does), writing into
an evidence store in a database of its own."""
from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from shadow.demo.embedded import PostgresServer

_NAME = "shadow_tests_widget_world"
if _NAME not in sys.modules:
    _spec = importlib.util.spec_from_file_location(_NAME, Path(__file__).parents[1] / "replay" / "conftest.py")
    assert _spec is not None and _spec.loader is not None
    sys.modules[_NAME] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules[_NAME])
_world = sys.modules[_NAME]

world = _world.world
start = _world.start
probe = _world.probe


@pytest.fixture
def engine() -> str:
    return "raw"  # the request path is not what these tests are about


@pytest.fixture
async def evidence_dsn(pg_server: PostgresServer) -> AsyncIterator[str]:
    """An empty database for the evidence store (not the shadow source's)."""
    name = f"ev_{uuid.uuid4().hex[:12]}"
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
