"""Every route of the sample marketplace API answers the same through the proxy (with
the shipped rules shadowing its reads against PostgreSQL) as it does directly."""
from __future__ import annotations

import json
from pathlib import Path

import aiohttp

from shadow.config import Config
from shadow.sidecar import start_sidecar

RULES = Path(__file__).parents[2] / "rules" / "marketplace"


async def answer(session: aiohttp.ClientSession, method: str, url: str, **kwargs) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    async with session.request(method, url, allow_redirects=False, **kwargs) as response:
        body = await response.read()
        headers = sorted((name.lower(), value) for name, value in response.raw_headers if name.lower() != b"date")
        return response.status, headers, body


async def test_every_sample_api_route_is_passed_through_unchanged(marketplace, sample_api, tmp_path: Path, engine: str) -> None:
    data = marketplace.dataset
    first = {collection: next(iter(data.by_id(collection))) for collection in data.collections}
    user = first["users"]
    reads = [f"/api/users/{user}", f"/api/users/{user}/addresses", f"/api/users/{user}/purchase-requests",
             f"/api/addresses/{first['addresses']}", "/api/categories", f"/api/categories/{first['categories']}",
             f"/api/seller-offers/{first['selleroffers']}", f"/api/purchase-requests/{first['purchaserequests']}",
             f"/api/payments/{first['payments']}", f"/api/funds-ledger/{first['fundsledgerentries']}",
             f"/api/disputes/{first['disputes']}", "/api/export/payments", "/api/blob?size=2000000",
             "/api/slow?ms=20", "/api/users/000000000000000000000000", "/api/users/not-an-id", "/api/nowhere"]
    sidecar = await start_sidecar(Config(upstream=sample_api, rules=RULES, pg=marketplace.pg_dsn, listen="127.0.0.1:0",
                                         admin_listen="127.0.0.1:0", reload="signal", mismatch_log=str(tmp_path / "log"),
                                         engine=engine, source_timeout=30.0))  # pass-through test: no fetch
    # timeouts from a starved worker on a loaded machine (timeouts have their own tests)
    try:
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            for path in reads:
                for method in ("GET", "HEAD"):
                    direct = await answer(session, method, sample_api + path)
                    proxied = await answer(session, method, sidecar.proxy_url + path)
                    assert proxied == direct, f"{method} {path}"
            # writes: the same request through the proxy has the same effect and answer shape
            patch = {"status": "failed"}
            payment = first["payments"]
            direct = await answer(session, "PATCH", f"{sample_api}/api/payments/{payment}", json=patch)
            proxied = await answer(session, "PATCH", f"{sidecar.proxy_url}/api/payments/{payment}", json=patch)
            assert proxied[0] == direct[0] == 200
            assert [name for name, _ in proxied[1]] == [name for name, _ in direct[1]]
            assert json.loads(proxied[2])["status"] == "failed"
            bad = await answer(session, "POST", f"{sidecar.proxy_url}/api/payments", data=b"not json",
                               headers={"Content-Type": "application/json"})
            assert bad[0] == 400 and bad == await answer(session, "POST", f"{sample_api}/api/payments", data=b"not json",
                                                         headers={"Content-Type": "application/json"})
        assert await sidecar.pipeline.drain(120)  # a hang guard, not a bound: drain returns when done
        counts = {entity: dict(counter) for entity, counter in sidecar.sink.counts.items()}
        for entity in ("users", "addresses", "categories", "payments", "disputes"):
            compared = sum(n for outcome, n in counts[entity].items() if outcome != "skipped")
            assert compared >= 1, entity  # shadowed, not just passed through
        assert sum(counter.get("error", 0) for counter in counts.values()) == 0
    finally:
        await sidecar.stop()
