"""The evidence writer against a real PostgreSQL: what a sidecar publishes lands in the
store aggregated per minute, with redacted examples; a down store changes nothing a
client or Prometheus sees, and its drops are counted."""
from __future__ import annotations

import json

import aiohttp
import asyncpg
import pytest

from shadow.config import Config, ConfigError
from shadow.console.cli import start_console
from shadow.publish import evidence_store
from tests.widgets import FULL_FIELDS, widget_rules


async def rows(dsn: str, sql: str, *args) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetch(sql, *args)
    finally:
        await connection.close()


async def test_findings_and_redacted_examples_reach_the_store(world, evidence_dsn, start, probe) -> None:
    await world.sql("UPDATE widgets SET price = 12.75 WHERE legacy_object_id = 'w0009'")
    sidecar = await start(evidence=evidence_dsn, evidence_pod="pod-a")
    answers = await probe.get_all(sidecar.proxy_url, ["/quick/w0009", "/quick/w0010", "/quick/w0011"])
    assert [status for status, _ in answers] == [200, 200, 200]
    await probe.settle(sidecar)
    assert sidecar.evidence is not None
    assert await sidecar.evidence.flush()
    totals = {(r["path"], r["outcome"]): r["count"] for r in await rows(
        evidence_dsn, "SELECT path, outcome, sum(count)::int AS count FROM shadow_evidence.findings GROUP BY 1, 2")}
    assert totals == {("", "match"): 2, ("", "mismatch"): 1, ("price", "mismatch"): 1}
    [example] = await rows(evidence_dsn, "SELECT * FROM shadow_evidence.examples")
    assert example["key"] == "w0009" and list(example["paths"]) == ["price"] and example["pod"] == "pod-a"
    assert example["params"] == '{"id": "w0009"}'  # crossed from the worker process with the documents
    assert "tok-9" not in example["control"] + example["candidate"]  # apiToken is a secret by name
    assert "12.75" in example["candidate"] and "9.5" in example["control"]
    [pod] = await rows(evidence_dsn, "SELECT * FROM shadow_evidence.pods")
    assert pod["pod"] == "pod-a" and pod["rules_version"] == sidecar.rules.current.version


async def test_schema_is_created_idempotently(evidence_dsn) -> None:
    for _ in range(2):
        connection = await evidence_store.connect(evidence_dsn)
        await connection.close()
    tables = await rows(evidence_dsn, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'shadow_evidence'")
    assert {r["table_name"] for r in tables} >= {"findings", "examples", "pods", "verify_runs", "gate_verdicts"}


@pytest.mark.parametrize(("values", "message"), [
    ({"evidence": "mysql://user:s3cret@db/x"}, "--evidence / SHADOW_EVIDENCE: expected a postgresql:// DSN, got (value not shown)"),
    ({"evidence": "s3cret"}, "--evidence / SHADOW_EVIDENCE: expected a postgresql:// DSN, got (value not shown)"),
    ({"evidence_retention": "-1"}, "--evidence-retention / SHADOW_EVIDENCE_RETENTION: expected a number > 0.0, got '-1'"),
    ({"evidence_retention": "nan"}, "--evidence-retention / SHADOW_EVIDENCE_RETENTION: expected a finite number, got 'nan'"),
    ({"evidence_pod": "  "}, "--evidence-pod / SHADOW_EVIDENCE_POD: expected a non-empty value, got '  '"),
])
def test_evidence_flags_are_checked_and_the_dsn_never_echoed(world, values, message) -> None:
    with pytest.raises(ConfigError) as refused:
        Config(upstream=world.api_url, rules=world.rules, **values)
    assert str(refused.value) == message and "s3cret" not in str(refused.value)


async def test_retention_deletes_old_minutes_and_examples_beyond_the_newest_per_path(evidence_dsn) -> None:
    import datetime as dt

    now = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
    connection = await evidence_store.connect(evidence_dsn)
    try:
        await connection.executemany(
            "INSERT INTO shadow_evidence.findings (minute, entity, route, path, outcome, count) VALUES ($1, 'e', 'r', 'p', 'mismatch', 1)",
            [(now - dt.timedelta(days=days),) for days in (0, 1, 13, 15, 30)])
        await connection.executemany(
            "INSERT INTO shadow_evidence.examples (at, entity, route, outcome, paths, pod, diffs) "
            "VALUES ($1, 'e', 'r', 'mismatch', ARRAY['p'], 'pod', '[]')",
            [(now - dt.timedelta(minutes=n),) for n in range(25)] + [(now - dt.timedelta(days=20),)])
        findings, examples = await evidence_store.apply_retention(connection, dt.timedelta(days=14), now,
                                                                  examples_per_path=20)
        assert (findings, examples) == (2, 6)  # 15 and 30 days old; 1 too old + 5 beyond the newest 20
        left = await connection.fetchval("SELECT min(at) FROM shadow_evidence.examples")
        assert left == now - dt.timedelta(minutes=19)
    finally:
        await connection.close()


async def test_a_list_reads_example_keeps_its_query_with_secrets_redacted(world, evidence_dsn, start, probe) -> None:
    await world.sql("INSERT INTO widgets (legacy_object_id, name, price, api_token) VALUES ('w9999', 'only in PG', 1, 't')")
    rules = world.rules / "widgets.yaml"  # the list route models these parameters (else: not list-checked)
    text = rules.read_text()
    assert "    at: items\n" in text
    rules.write_text(text.replace("    at: items\n", "    at: items\n    query: [tag, token]\n", 1))
    sidecar = await start(evidence=evidence_dsn, evidence_pod="pod-a")
    [(status, _)] = await probe.get_all(sidecar.proxy_url, ["/widgets?tag=blue&tag=red&token=hunter2"])
    assert status == 200
    await probe.settle(sidecar)
    assert await sidecar.evidence.flush()
    [example] = await rows(evidence_dsn, "SELECT * FROM shadow_evidence.examples WHERE outcome = 'extra'")
    assert example["key"] == "w9999" and example["route"] == "GET /widgets"
    # a secret by name stays out of the store: only its mask (length, keyed hash) is kept
    assert example["query"].startswith("tag=blue&tag=red&token=%5Bsecret+len%3D7+h%3D")
    assert "hunter2" not in example["query"]


async def test_an_examples_recheck_history_keeps_each_step_paths_only(world, evidence_dsn, start, probe) -> None:
    """A difference that holds on both rechecks: the example keeps both steps (when,
    after how long, what each saw, the paths still differing) and never a value; the
    console's example view shows them as a table."""
    await world.sql("UPDATE widgets SET price = 12.75, api_token = 'tok-pg' WHERE legacy_object_id = 'w0009'")
    (world.rules / "widgets.yaml").write_text(widget_rules(
        "  - route: GET /widgets/{id}\n    recheck: {after: [50ms, 100ms], control: upstream}\n", fields=FULL_FIELDS))
    sidecar = await start(evidence=evidence_dsn, evidence_pod="pod-a")
    [(status, _)] = await probe.get_all(sidecar.proxy_url, ["/widgets/w0009"])
    assert status == 200
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"mismatch": 1}
    assert await sidecar.evidence.flush()
    [example] = await rows(evidence_dsn, "SELECT id, rechecks FROM shadow_evidence.examples")
    history = json.loads(example["rechecks"])
    assert history["done"] == 2 and history["schedule_seconds"] == [0.05, 0.1]
    steps = history["steps"]
    assert [step["saw"] for step in steps] == ["differs", "differs"]
    assert all(step["paths"] == ["apiToken", "price"] for step in steps)  # names only ...
    assert "tok-" not in example["rechecks"] and "12.75" not in example["rechecks"]  # ... never a value
    assert 0.05 <= steps[0]["after"] <= steps[1]["after"]  # each after its point on the schedule
    console = await start_console(evidence_dsn, "127.0.0.1:0")
    try:
        async with aiohttp.ClientSession() as session, \
                session.get(f"{console.url}/examples/{example['id']}") as response:
            assert response.status == 200
            html = await response.text()
    finally:
        await console.stop()
    table = html[html.index('<table id="rechecks">'):]
    table = table[:table.index("</table>")]
    assert table.count('<tr data-saw="differs">') == 2 and "still differs" in table
    assert "<code>apiToken</code>, <code>price</code>" in table
