"""Helpers the tests of several folders share: a fresh PostgreSQL database per test (or
module), an aiohttp app served on a loopback port, and another folder's conftest loaded
as a module."""
from __future__ import annotations

import contextlib
import importlib.util
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import asyncpg
from aiohttp import web

from shadow.demo.embedded import PostgresServer

TESTS = Path(__file__).resolve().parent


def load_conftest(folder: str) -> ModuleType:
    """tests/<folder>/conftest.py as a module, loaded once per process (conftest modules
    are not importable by name under --import-mode=importlib), to re-export its fixtures."""
    name = f"shadow_tests_{folder.replace('/', '_')}_conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TESTS / folder / "conftest.py")
        assert spec is not None and spec.loader is not None
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """`app` served on a free loopback port for the block; its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def create_database(pg_server: PostgresServer, prefix: str = "t") -> str:
    """A new, empty database on `pg_server`; its DSN."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_server.dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return pg_server.dsn_for(name)


async def drop_database(pg_server: PostgresServer, dsn: str) -> None:
    """Drop the database of `dsn` (made by create_database), connections and all."""
    name = dsn.rsplit("/", 1)[-1].split("?")[0]
    admin = await asyncpg.connect(pg_server.dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
