"""`shadow console --prometheus`: a sidecar whose rules declare a known divergence,
scraped by a real Prometheus; the console shows the divergence and its expiry beside
the entity's evidence."""
from __future__ import annotations

import aiohttp
import pytest

from shadow.console.cli import start_console
from tests.fixtures import load_conftest
from tests.widgets import FULL_FIELDS, widget_rules

start_prometheus = load_conftest("gate").start_prometheus

RULES = widget_rules("  - route: GET /quick/{id}\n    recheck: 0\n", fields=FULL_FIELDS,
                     extra='known:\n  - {path: price, reason: "PG rounds prices (MIG-7)", expires: 2099-01-31}\n')


@pytest.mark.needs_tool("prometheus")
async def test_known_divergences_come_from_prometheus(world, evidence_dsn, start, probe, start_prometheus) -> None:
    (world.rules / "widgets.yaml").write_text(RULES)
    sidecar = await start(evidence=evidence_dsn, evidence_pod="pod-a")
    await probe.get_all(sidecar.proxy_url, ["/quick/w0001"])
    await probe.settle(sidecar)
    assert await sidecar.evidence.flush()
    prometheus = start_prometheus([sidecar.admin_url.removeprefix("http://")], with_alerts=False)
    await prometheus.wait_for("shadow_known_divergence_expiry_timestamp_seconds", lambda result: len(result) == 1)
    console = await start_console(evidence_dsn, "127.0.0.1:0", prometheus=prometheus.url)
    try:
        async with aiohttp.ClientSession() as session, session.get(console.url + "/") as response:
            html = await response.text()
    finally:
        await console.stop()
    row = html[html.index('<tr data-entity="widgets">'):]
    row = row[:row.index("</tr>")]
    assert "<code>price</code> (2099-02-01 00:00:00)" in row  # the end of the expiry day, UTC
