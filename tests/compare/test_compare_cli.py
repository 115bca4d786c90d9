"""`shadow compare` run as a user runs it (a subprocess) against the seeded domain."""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

RULES = Path(__file__).resolve().parents[2] / "rules" / "marketplace"


async def shadow_compare(marketplace: Any, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shadow", "compare", "--rules", str(RULES), "--pg", marketplace.pg_dsn,
        "--mongo", marketplace.mongo_uri, "--db", marketplace.mongo_db, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(), err.decode()


async def test_compare_by_hand_finds_the_plant_and_passes_the_rest(marketplace: Any) -> None:
    plant = next(p for p in marketplace.drifts if p.kind == "amount_off_1e-18")
    clean = next(str(d["_id"]) for d in marketplace.dataset.collections["payments"]
                 if str(d["_id"]) not in {p.legacy_id for p in marketplace.drifts})
    code, out, err = await shadow_compare(marketplace, "--entity", "payments", "--id", plant.legacy_id)
    assert code == 1, err
    assert f"payments {plant.legacy_id}: MISMATCH — 1 difference(s)" in out and "amount.value  [changed]" in out
    code, out, _ = await shadow_compare(marketplace, "--entity", "payments", "--id", clean, "--json")
    assert code == 0 and json.loads(out)["outcome"] == "match"
    missing = next(p for p in marketplace.drifts if p.kind == "missing_row")
    code, out, _ = await shadow_compare(marketplace, "--entity", "funds_ledger_entries", "--id", missing.legacy_id)
    assert code == 1 and "MISSING" in out and "no row" in out


async def test_compare_redacts_and_refuses_bad_input(marketplace: Any) -> None:
    plant = next(p for p in marketplace.drifts if p.kind == "wrong_ref")
    code, out, _ = await shadow_compare(marketplace, "--entity", "payments", "--id", plant.legacy_id, "--json")
    assert code == 1 and json.loads(out)["diffs"][0]["path"] == "buyerId"
    code, _, err = await shadow_compare(marketplace, "--entity", "payments", "--id", "'; DROP TABLE payments")
    assert code == 2 and "not a 24-hex ObjectId" in err
    code, _, err = await shadow_compare(marketplace, "--entity", "nope", "--id", plant.legacy_id)
    assert code == 2 and "unknown entity 'nope'" in err
