"""`shadow compare --url` with view-model routes (issue 20): the route's key normalizer
applies (an upper-case name in the URL is the lower-case key PostgreSQL holds, not a
false MISSING), a constant-key route (a scalar list) is read as its constant, and list
routes and wrong keys get errors that say what to do."""
from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.replay.sources.test_viewmodel import RULES, seed


@pytest.fixture
async def api() -> AsyncIterator[str]:
    async def profile(request: web.Request) -> web.Response:
        name = request.match_info["username"].strip().lower()  # the API lower-cases its lookups
        if name not in ("alice", "bob"):
            return web.json_response({"error": "not found"}, status=404)
        return web.json_response({"username": name, "verified": name == "bob"})

    async def tags(request: web.Request) -> web.Response:
        return web.json_response({"tags": ["t1", "all", "t0"]})

    app = web.Application()
    app.router.add_get("/api/profiles/{username}", profile)
    app.router.add_get("/api/tags", tags)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def compare(rules: Path, pg: str, url: str, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shadow", "compare", "--rules", str(rules), "--pg", pg, "--url", url, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(), err.decode()


async def test_compare_url_follows_the_routes_keys(pg_dsn: str, api: str, tmp_path: Path) -> None:
    await seed(pg_dsn)
    (tmp_path / "articles.yaml").write_text(textwrap.dedent(RULES))
    code, out, err = await compare(tmp_path, pg_dsn, api, "--entity", "profile", "--id", "ALICE", "--json")
    assert code == 0, (out, err)
    assert json.loads(out)["key"] == "alice" and json.loads(out)["outcome"] == "match"
    code, out, err = await compare(tmp_path, pg_dsn, api, "--entity", "tags", "--id", "all", "--json")
    assert code == 0 and json.loads(out)["outcome"] == "match", (out, err)
    code, _, err = await compare(tmp_path, pg_dsn, api, "--entity", "tags", "--id", "t0")
    assert code == 2 and "has the one key 'all' (key: {const}): use --id all" in err
    code, _, err = await compare(tmp_path, pg_dsn, api, "--entity", "comment", "--id", "0" * 24)
    assert code == 2 and "has only list routes (GET /api/articles/{slug}/comments)" in err
    code, _, err = await compare(tmp_path, pg_dsn, api, "--entity", "article", "--id", "0" * 24,
                                 "--route", "GET /api/articles")
    assert code == 2 and "GET /api/articles is a list route" in err
