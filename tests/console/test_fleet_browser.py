"""The console over the marketplace in a real browser (Playwright driving Debian's
chromium): three sidecars (pods) in front of the sample API and one `shadow verify` run
write into one evidence store; the console shows every hot plant's failing path with the
count of reads that saw it, first and last seen within the test's window, three pods,
the verify run per layer naming the cold plants, filters that narrow the table and live
in the URL, an example with both documents side by side; and no secret of the domain
(password hashes, refresh tokens, emails, phones, transaction hashes) on any page."""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shadow.config import Config
from shadow.console.cli import start_console
from shadow.demo.cold import plant_cold
from shadow.demo.traffic import SINGLE_ROUTES
from shadow.sidecar import start_sidecar
from tests.verify.conftest import Domain, shadow_verify

RULES = Path(__file__).resolve().parents[2] / "rules" / "marketplace"
TOKEN = "console-token-0123456789"
PODS = ("pod-a", "pod-b", "pod-c")
CLEAN_READS = 3  # per collection, documents without a plant: they must match


def minute_text(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:00", time.gmtime(stamp // 60 * 60))


def reads_of(pod_index: int, plant_index: int) -> int:
    """How often one pod reads one planted document (deterministic, uneven, never 0 in total):
    pod-a reads every plant once, pod-b every other one twice, pod-c every third one once."""
    return (1, 2 * (plant_index % 2 == 0), int(plant_index % 3 == 0))[pod_index]


def secrets_of(marketplace: Any) -> set[str]:
    """Values the redaction (or the API's hiding) must keep off every page."""
    found: set[str] = set()
    for user in marketplace.dataset.collections["users"]:
        found |= {user["password"], *(t["token"] for t in user["refreshTokens"]),
                  *(p["publicKey"] for p in user["passkeys"])}
        found |= {user[name] for name in ("email", "emailVerificationToken") if user.get(name)}
        if (user.get("profile") or {}).get("phone"):
            found.add(user["profile"]["phone"])
    for payment in marketplace.dataset.collections["payments"]:
        if (payment.get("blockchain") or {}).get("txHash"):
            found.add(payment["blockchain"]["txHash"])
        if (payment.get("metadata") or {}).get("client"):
            found.add(payment["metadata"]["client"]["ip"])
    return found


@pytest.mark.slow
@pytest.mark.needs_tool("chromium")
async def test_fleet_and_verify_in_one_console(marketplace, sample_api, evidence_dsn, probe, browser,
                                               tmp_path) -> None:
    connection = await asyncpg.connect(marketplace.pg_dsn)
    try:
        cold = await plant_cold(connection, marketplace.dataset, {d.legacy_id for d in marketplace.drifts})
    finally:
        await connection.close()
    plants = marketplace.drifts
    planted_ids = {d.legacy_id for d in plants} | {p.legacy_id for p in cold.plants}
    clean = [SINGLE_ROUTES[collection].format(d["_id"]) for collection in ("users", "payments", "disputes")
             for d in [d for d in marketplace.dataset.collections[collection]
                       if str(d["_id"]) not in planted_ids][:CLEAN_READS]]
    traffic = {pod: [SINGLE_ROUTES[d.collection].format(d.legacy_id)
                     for i, d in enumerate(plants) for _ in range(reads_of(p, i))] + clean
               for p, pod in enumerate(PODS)}
    reads = Counter(d.legacy_id for p in range(len(PODS)) for i, d in enumerate(plants) for _ in range(reads_of(p, i)))

    began = time.time()
    sidecars = []
    try:
        for pod in PODS:
            sidecars.append(await start_sidecar(Config(
                upstream=sample_api, rules=RULES, pg=marketplace.pg_dsn, mongo=marketplace.mongo_uri,
                mongo_db=marketplace.mongo_db, listen="127.0.0.1:0", admin_listen="127.0.0.1:0", reload="signal",
                workers=1, source_timeout=10.0, mismatch_log=str(tmp_path / f"{pod}.jsonl"), shadow_nice=0,
                evidence=evidence_dsn, evidence_pod=pod)))
        for sidecar, paths in zip(sidecars, traffic.values(), strict=True):
            direct = await probe.get_all(sample_api, paths)
            assert {status for status, _ in direct} == {200}  # every document read exists in Mongo
            assert await probe.get_all(sidecar.proxy_url, paths) == direct  # the clients' answers, unchanged
        for sidecar, paths in zip(sidecars, traffic.values(), strict=True):
            await probe.settle(sidecar)
            assert sum(sum(c.values()) for c in sidecar.sink.counts.values()) == len(paths)  # every read compared
            assert await sidecar.evidence.flush()
        versions = {pod: sidecar.rules.current.version for pod, sidecar in zip(PODS, sidecars, strict=True)}
    finally:
        for sidecar in sidecars:
            await sidecar.stop()

    domain = Domain(marketplace.pg_dsn, marketplace.mongo_uri, marketplace.mongo_db, marketplace.dataset)
    cold_entities = tuple(dict.fromkeys(p.entity for p in cold.plants))
    code, _, err = await shadow_verify(domain, *(a for e in cold_entities for a in ("--entity", e)),
                                       "--evidence", evidence_dsn)
    assert code == 1, err  # the cold plants are found
    ended = time.time()

    console = await start_console(evidence_dsn, "127.0.0.1:0", token=TOKEN)
    try:
        context = await browser.new_context(http_credentials={"username": "ops", "password": TOKEN})
        page = await context.new_page()
        await page.goto(console.url + "/")
        pages_seen = [await page.content()]

        health = await page.inner_text("#health")
        assert "pods reporting 3 of 3" in health
        for pod, version in versions.items():
            assert f"{pod}: rules {version}" in health

        payment_reads = sum(reads[d.legacy_id] for d in plants if d.entity == "payments") + len(PODS) * CLEAN_READS
        cells = await page.locator('#routes tr[data-route="GET /api/payments/{id}"] td').all_inner_texts()
        assert cells[2] == str(payment_reads)  # comparisons on the route, all three pods

        rows = {}
        for row in await page.locator("#paths tr.path").all():
            rows[(await row.get_attribute("data-entity"), await row.get_attribute("data-path"))] = row
        # a missing row fails the whole document: the console names it "(document)"
        expected = {(d.entity, d.path or "(document)"): reads[d.legacy_id] for d in plants if d.divergent}
        assert set(rows) == set(expected)
        for (entity, path), count in expected.items():
            row = rows[(entity, path)]
            assert await row.locator("td.persistent").inner_text() == str(count), (entity, path)
            first, last = await row.locator("td.first-seen").inner_text(), await row.locator("td.last-seen").inner_text()
            assert minute_text(began) <= first <= last <= minute_text(ended)

        # the verify run, per layer, naming the documents of its differences: the cold plants
        # (which no sidecar read), and the hot plants of the same entities
        layers = {}
        for row in await page.locator("#verify tr:has(td)").all():
            cells = await row.locator("td").all_inner_texts()
            layers[cells[1]] = (cells[2], cells[4])
        assert {layer: outcome for layer, (outcome, _) in layers.items()} == {
            "counts": "differences", "sums": "ok", "docs": "differences"}
        hot = {d.legacy_id for d in plants if d.divergent and d.entity in cold_entities}
        docs = layers["docs"][1]
        for plant in cold.plants:
            assert f"{plant.entity} {plant.legacy_id} mismatch (document {plant.path})" in docs
        named = {line.split()[1] for line in docs.splitlines()}
        assert {p.legacy_id for p in cold.plants} <= named <= {p.legacy_id for p in cold.plants} | hot
        [dropped_row] = [p for p in cold.plants if p.count_check]
        assert f"{dropped_row.entity} {dropped_row.legacy_id} count ({dropped_row.count_check}" in layers["counts"][1]
        for entity in cold_entities:  # each entity's last verify run, per layer
            text = await page.locator(f'#entities tr[data-entity="{entity}"] td.layers').inner_text()
            assert "docs differences" in text and "sums clean" in text, text
        pages_seen.append(await page.content())

        # filters live in the URL and narrow the table; they survive a reload
        await page.select_option("select[name=entity]", "payments")
        await page.click("form.filters button")
        await page.wait_for_url("**entity=payments**")
        shown = {await r.get_attribute("data-path") for r in await page.locator("#paths tr.path").all()}
        assert shown == {path for entity, path in expected if entity == "payments"}
        await page.fill("input[name=path]", "channel")
        await page.click("form.filters button")
        await page.wait_for_url("**path=channel**")
        assert "entity=payments" in page.url
        await page.reload()
        assert [await r.get_attribute("data-path") for r in await page.locator("#paths tr.path").all()] == [
            "metadata.channel"]
        pages_seen.append(await page.content())

        # the example: both whole documents side by side, the planted path highlighted
        [channel] = [d for d in plants if d.kind == "jsonb_change"]
        payments = {str(d["_id"]): d for d in marketplace.dataset.collections["payments"]}
        document = payments[channel.legacy_id]
        await page.click('#paths tr[data-path="metadata.channel"] a.examples')
        await page.wait_for_url("**/examples?**")
        pages_seen.append(await page.content())
        assert await page.locator("div.entry").count() == reads[channel.legacy_id]
        await page.locator("a.example").first.click()
        await page.wait_for_url("**/examples/*")
        pages_seen.append(await page.content())
        control = await page.locator('#control span.differs[data-path="metadata.channel"]').inner_text()
        candidate = await page.locator('#candidate span.differs[data-path="metadata.channel"]').inner_text()
        assert document["metadata"]["channel"] in control and document["metadata"]["channel"] not in candidate
        assert await page.locator("#control span.differs").count() == 1
        assert f"GET /api/payments/{{id}} with id={channel.legacy_id}" in await page.inner_text("#request")

        # a document with a secret in it: the example shows the field, masked on both sides
        secretive = next(d for d in plants if d.entity == "payments" and d.divergent
                         and (payments[d.legacy_id].get("metadata") or {}).get("client"))
        await page.goto(console.url + "/?entity=payments")
        await page.click(f'#paths tr[data-path="{secretive.path}"] a.examples')
        await page.wait_for_url("**/examples?**")
        await page.locator("a.example").first.click()
        await page.wait_for_url("**/examples/*")
        pages_seen.append(await page.content())
        for side in ("control", "candidate"):
            masked = await page.locator(f'#{side} span[data-path="metadata.client"]').inner_text()
            assert masked.strip().startswith('"client": "[secret object n=2 h='), masked
        await context.close()
    finally:
        await console.stop()

    secrets = secrets_of(marketplace) | {TOKEN, evidence_dsn}
    for html in pages_seen:
        assert not [secret for secret in secrets if secret in html]
