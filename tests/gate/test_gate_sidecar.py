"""The gate end to end: a real Prometheus (loopback, 1 s scrapes, the shipped alert
rules loaded) scraping a real running sidecar in front of the sample API over the
seeded marketplace (PostgreSQL rebuilt through id_map, planted divergences).

clean traffic → GO · a planted divergence hit by traffic → NO-GO naming entity, route
and field (and the admin /gate agrees, from local counters) · a required route without
traffic → NO-GO for lack of samples · Prometheus stopped → exit 2."""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from shadow.config import Config
from shadow.gate.criteria import load_criteria
from shadow.gate.local import gate_hook
from shadow.sidecar import start_sidecar

from .conftest import needs_prometheus  # noqa: TID252
from .test_gate_prometheus import gate, gate_process  # noqa: TID252

pytestmark = [needs_prometheus, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PAY = "GET /api/payments/{id}"
USER = "GET /api/users/{id}"
ALERTS = "[ShadowPersistentMismatch, ShadowMismatchFields, ShadowKnownDivergenceExpired, ShadowErrorRatioHigh, " \
         "ShadowComparisonsStarved, ShadowWorkDropped, ShadowRulesReloadFailing]"
CRITERIA = f"""\
window: 1h
block_on_alerts: {ALERTS}
defaults: {{min_comparisons: 5, max_mismatches: 0, max_error_ratio: 0}}
entities:
  payments:
    required_routes: ["{PAY}"]
  users:
    required_routes: ["{USER}"]
"""
# the same, plus an entity whose second hot path gets no traffic in this test
WITH_UNUSED_ROUTE = CRITERIA + """\
  addresses:
    min_comparisons: 1
    required_routes: ["GET /api/addresses/{id}", "GET /api/users/{id}/addresses"]
"""


def comparisons(registry: Any, entity: str, route: str, outcome: str) -> float:
    return registry.get_sample_value("shadow_comparisons_total", {"entity": entity, "route": route, "outcome": outcome}) or 0.0


async def until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_gate_against_prometheus_scraping_the_running_sidecar(
    marketplace: Any, sample_api: str, start_prometheus: Any, tmp_path: Path
) -> None:
    criteria = tmp_path / "gate.yaml"
    criteria.write_text(CRITERIA)
    wider = tmp_path / "gate-wider.yaml"
    wider.write_text(WITH_UNUSED_ROUTE)
    drifted = {(d.collection, d.legacy_id) for d in marketplace.drifts}
    collections = marketplace.dataset.collections
    clean_payments = [str(p["_id"]) for p in collections["payments"] if ("payments", str(p["_id"])) not in drifted][:8]
    clean_users = [str(u["_id"]) for u in collections["users"] if ("users", str(u["_id"])) not in drifted][:8]
    clean_address = next(str(a["_id"]) for a in collections["addresses"] if ("addresses", str(a["_id"])) not in drifted)
    plant = next(d for d in marketplace.drifts if d.entity == "payments" and d.divergent and d.path == "buyerId")

    sidecar = await start_sidecar(Config(
        upstream=sample_api, rules=ROOT / "rules" / "marketplace", pg=marketplace.pg_dsn,
        listen="127.0.0.1:0", admin_listen="127.0.0.1:0", reload="signal", workers=2,
        mismatch_log=str(tmp_path / "mismatches.jsonl"),
    ))
    try:
        sidecar.set_gate(gate_hook(sidecar.registry, load_criteria(criteria)))
        prometheus = start_prometheus([sidecar.admin_url.removeprefix("http://")])
        registry = sidecar.registry
        async with aiohttp.ClientSession() as client:
            async def read(path: str) -> None:
                async with client.get(f"{sidecar.proxy_url}{path}") as response:
                    assert response.status == 200, (path, response.status)
                    await response.read()

            # --- clean traffic → GO -------------------------------------------------
            for key in clean_payments:
                await read(f"/api/payments/{key}")
            for key in clean_users:
                await read(f"/api/users/{key}")
            await read(f"/api/addresses/{clean_address}")
            await until(lambda: comparisons(registry, "payments", PAY, "match") >= 8
                        and comparisons(registry, "users", USER, "match") >= 8, 30, "clean comparisons")
            await prometheus.wait_for(
                'sum(shadow_comparisons_total{outcome="match", entity=~"payments|users"})',
                lambda result: bool(result) and float(result[0]["value"][1]) >= 16)
            await prometheus.scrapes(2)

            code, out, err = await gate(prometheus.url, criteria)
            assert code == 0, out + err
            assert "VERDICT: GO" in out
            row = next(line for line in out.splitlines() if line.startswith("payments") and PAY in line)
            assert row.split()[3:] == ["8", "0", "0", "0", "0", "-", "GO"]

            # --- a required route nobody called → NO-GO for lack of samples --------------
            code, out, err = await gate(prometheus.url, wider)
            assert code == 1, out + err
            assert "  - addresses GET /api/users/{id}/addresses: no comparisons on required route in 1h (no samples)" in out
            assert sum(line.startswith("  - ") for line in out.splitlines()) == 1

            # --- a planted divergence hit by traffic → NO-GO naming entity, route, field --
            await read(f"/api/payments/{plant.legacy_id}")
            await until(lambda: comparisons(registry, "payments", PAY, "mismatch") >= 1, 30, "the persistent mismatch (after recheck)")
            await prometheus.wait_for('shadow_comparisons_total{outcome="mismatch"}', lambda result: len(result) == 1)
            await prometheus.wait_for("shadow_mismatch_fields_total", lambda result: len(result) >= 1)

            code, out, err = await gate(prometheus.url, criteria)
            assert code == 1, out + err
            reason = f"payments {PAY}: 1 persistent mismatch (1 mismatch) > max 0; fields: {plant.path} x1"
            assert f"  - {reason}" in out
            assert "VERDICT: NO-GO (1 reason)" in out
            code, out, _ = await gate(prometheus.url, criteria, "--json")
            from_prometheus = json.loads(out)
            assert from_prometheus["reasons"] == [reason]

            # the admin /gate: same verdict, from this process's counters, labelled so
            async with client.get(f"{sidecar.admin_url}/gate") as response:
                local = await response.json()
            assert local["verdict"] == "NO-GO" and local["reasons"] == [reason]
            assert local["scope"].startswith("local counters since process start")

            # --- Prometheus stopped → cannot evaluate, exit 2 (the real entry point) -----
            prometheus.stop()
            code, stdout, stderr = await gate_process(prometheus.url, criteria)
            assert code == 2, stdout + stderr
            assert b"cannot reach Prometheus" in stderr and b"GO" not in stdout
    finally:
        await sidecar.stop()
