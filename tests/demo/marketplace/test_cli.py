"""`shadow seed` and `python -m shadow.demo.marketplace.api` as a user runs them."""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import asyncpg

from shadow.demo.embedded import free_port


async def run(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(sys.executable, *args, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT)
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


async def test_seed_loads_both_databases_and_prints_the_drift(pg_dsn, mongo_server, mongo_db_name) -> None:
    code, out = await run("-m", "shadow", "seed", "--pg", pg_dsn, "--mongo", mongo_server.uri,
                          "--db", mongo_db_name, "--scale", "15", "--seed", "4", "--drift")
    assert code == 0, out
    assert "payments                   15 documents" in out
    assert "drift amount_off_1e-18" in out and "[NOT divergent]" in out and "timings: generate" in out
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM id_map") == 8 * 15
        assert await conn.fetchval("SELECT count(*) FROM funds_ledger_entries") == 15 - 1  # missing_row plant
    finally:
        await conn.close()

    port = free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shadow.demo.marketplace.api", "--mongo", mongo_server.uri, "--db", mongo_db_name,
        "--port", str(port), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/api/categories") as response:
                        body = await response.json()
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            assert 0 < body["count"] <= 15
    finally:
        server.terminate()
        await server.wait()


async def test_seed_rejects_a_bad_scale() -> None:
    code, out = await run("-m", "shadow", "seed", "--pg", "postgresql:///x", "--mongo", "mongodb://x", "--scale", "0")
    assert code == 2 and "--scale must be >= 1, got 0" in out


async def test_seed_loads_the_articles_family_on_request(pg_dsn, mongo_server, mongo_db_name) -> None:
    code, out = await run("-m", "shadow", "seed", "--pg", pg_dsn, "--mongo", mongo_server.uri,
                          "--db", mongo_db_name, "--scale", "5", "--seed", "4", "--articles")
    assert code == 0, out
    assert "writers                     5 documents" in out and "articles                   10 documents" in out
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM articles") == 10
        assert await conn.fetchval("SELECT count(*) FROM article_tags") > 0
    finally:
        await conn.close()
    rules = Path(__file__).resolve().parents[3] / "rules" / "examples" / "articles"
    code, _ = await run("-m", "shadow", "rules", "check", str(rules), "--pg", pg_dsn)
    assert code == 0  # every table and column the example rules read exists
