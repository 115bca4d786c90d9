"""The audit trail: `shadow verify --evidence` records its run per layer with the
documents each difference names; `shadow gate --evidence` records every verdict with its
reasons (also "cannot evaluate"); the console shows both."""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import asyncpg

from shadow.console.cli import start_console

RULES = Path(__file__).resolve().parents[2] / "rules" / "marketplace"
CRITERIA = Path(__file__).resolve().parents[2] / "rules" / "gate.yaml"


async def shadow(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "shadow", *args,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 240)
    return process.returncode or 0, out.decode(), err.decode()


async def test_verify_and_gate_are_recorded_and_shown(marketplace, evidence_dsn) -> None:
    code, _, err = await shadow("verify", "--rules", str(RULES), "--pg", marketplace.pg_dsn, "--mongo",
                                marketplace.mongo_uri, "--mongo-db", marketplace.mongo_db, "--layer", "docs",
                                "--evidence", evidence_dsn)
    assert code == 1, err  # the planted drift is found
    planted = {d.legacy_id for d in marketplace.drifts if d.divergent}
    connection = await asyncpg.connect(evidence_dsn)
    try:
        [run] = await connection.fetch("SELECT * FROM shadow_evidence.verify_runs")
        named = {r["key"] for r in await connection.fetch("SELECT key FROM shadow_evidence.verify_documents")}
    finally:
        await connection.close()
    assert run["layer"] == "docs" and run["outcome"] == "differences"
    assert planted & named, (planted, named)  # the documents the differences name are the planted ones
    assert named <= planted | {""}

    code, _, err = await shadow("gate", "--prometheus", "http://127.0.0.1:9", "--criteria", str(CRITERIA),
                                "--evidence", evidence_dsn)
    assert code == 2 and "CANNOT EVALUATE" in err

    # a later run over one entity only: the others keep what their own last run said
    code, _, err = await shadow("verify", "--rules", str(RULES), "--pg", marketplace.pg_dsn, "--mongo",
                                marketplace.mongo_uri, "--mongo-db", marketplace.mongo_db, "--layer", "docs",
                                "--entity", "users", "--evidence", evidence_dsn)
    assert code == 0, err  # no plant in users

    console = await start_console(evidence_dsn, "127.0.0.1:0")
    try:
        async with aiohttp.ClientSession() as session, session.get(console.url + "/") as response:
            page = await response.text()
    finally:
        await console.stop()
    assert 'id="verify"' in page and any(key in page for key in planted & named)
    entities = page[page.index('id="entities"'):page.index("</table>", page.index('id="entities"'))]
    rows = {row.split('"')[0]: row for row in entities.split('<tr data-entity="')[1:]}
    for entity in {d.entity for d in marketplace.drifts if d.divergent}:  # each entity's last verify run, per layer
        assert "docs <span class=\"failing\">differences</span>" in rows[entity], entity
    assert "docs <span class=\"clean\">clean</span>" in rows["users"]
    assert 'id="gate"' in page and "CANNOT_EVALUATE" in page and "cannot reach Prometheus" in page
