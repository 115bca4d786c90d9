"""Hostile flags and resume files (exit 2, nothing read), partitions that add up to the
whole, --resume skipping clean buckets, a not-verifiable entity, dual-write gap labels,
and --push to a real HTTP server standing in for the Pushgateway."""
from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from pymongo import AsyncMongoClient

from tests.verify.conftest import RULES, Domain, differences, shadow_verify, valid_report


@pytest.mark.parametrize(("flags", "message"), [
    (("--partition", "3/2"), "0 <= I < N"),
    (("--partition", "2/2"), "0 <= I < N"),
    (("--partition", "0/0"), "0 <= I < N"),
    (("--partition", "junk"), "--partition must be I/N"),
    (("--partition", "-1/2"), "--partition"),  # argparse refuses it (a flag-like value)
    (("--partition", "1/2/3"), "--partition must be I/N"),
    (("--partition", "99999999/1"), "--partition must be I/N"),
    (("--layer", "everything"), "--layer must be one of"),
    (("--max-rate", "0"), "--max-rate must be > 0"),
    (("--max-rate", "nan"), "--max-rate must be > 0"),
    (("--max-rate", "fast"), "--max-rate must be a number"),
    (("--entity", "nope"), "unknown entity 'nope'"),
])
async def test_hostile_flags_exit_2(domain: Domain, flags: tuple[str, ...], message: str) -> None:
    code, out, err = await shadow_verify(domain, *flags)
    assert code == 2 and message in err, (out, err)


@pytest.mark.parametrize("content", [b"", b"not json", b"[1, 2]", b'{"entities": 5}', b"\xff\xfe",
                                     b'{"rules_version": "x", "entities": {"users": [1]}}'])
async def test_hostile_resume_files_exit_2_or_start_over(domain: Domain, tmp_path: Path, content: bytes) -> None:
    resume = tmp_path / "resume.json"
    resume.write_bytes(content)
    code, out, err = await shadow_verify(domain, "--entity", "users", "--layer", "docs", "--resume", str(resume))
    # a resume file of other rules carries nothing over (exit 0); anything unreadable is exit 2
    assert (code == 2 and "--resume" in err) or code == 0, (out, err)
    directory = tmp_path / "adir"
    directory.mkdir()
    code, _, err = await shadow_verify(domain, "--entity", "users", "--resume", str(directory))
    assert code == 2 and "not a regular file" in err


async def test_partitions_add_up_and_resume_skips_clean_buckets(domain: Domain, tmp_path: Path) -> None:
    conn = await asyncpg.connect(domain.pg_dsn)
    try:
        await conn.execute("UPDATE users SET name = name || '!'")  # every user differs
    finally:
        await conn.close()
    code, whole, _ = await shadow_verify(domain, "--json", "--entity", "users", "--layer", "docs")
    assert code == 1
    keys = {d["key"] for d in differences(whole)}
    assert len(keys) == len(domain.dataset.collections["users"])
    halves = []
    for index in range(3):
        code, part, _ = await shadow_verify(domain, "--json", "--entity", "users", "--layer", "docs",
                                            "--partition", f"{index}/3")
        halves.append({d["key"] for d in differences(part)})
    assert set().union(*halves) == keys and sum(len(h) for h in halves) == len(keys)
    # resume: a clean run records its buckets; the rerun skips them all
    conn = await asyncpg.connect(domain.pg_dsn)
    try:
        await conn.execute("UPDATE users SET name = left(name, length(name) - 1)")
    finally:
        await conn.close()
    resume = tmp_path / "resume.json"
    code, first, _ = await shadow_verify(domain, "--json", "--entity", "users", "--layer", "docs", "--resume", str(resume))
    assert code == 0 and first["entities"]["users"]["layers"]["docs"]["skipped_buckets"] == 0
    buckets = len(first["entities"]["users"]["layers"]["docs"]["buckets"])
    code, again, _ = await shadow_verify(domain, "--json", "--entity", "users", "--layer", "docs", "--resume", str(resume))
    docs = again["entities"]["users"]["layers"]["docs"]
    # nothing read again, and the report says what the first run said (carried buckets count)
    assert code == 0 and docs["skipped_buckets"] == buckets
    assert docs["checked"] == first["entities"]["users"]["layers"]["docs"]["checked"]
    assert docs["buckets"] == first["entities"]["users"]["layers"]["docs"]["buckets"]


async def test_unverifiable_entity_is_reported_and_exit_2_only_by_name(domain: Domain, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    for path in RULES.glob("*.yaml"):
        text = path.read_text()
        if path.name == "disputes.yaml":
            text += "stored: {unverifiable: 'the API embeds the opener and counts evidence per reader'}\n"
        (rules / path.name).write_text(text)
    code, report, _ = await shadow_verify(domain, "--json", "--layer", "counts", rules=rules)
    assert code == 0 and report["entities"]["disputes"]["verifiable"] is False
    code, report, _ = await shadow_verify(domain, "--json", "--layer", "counts", "--entity", "disputes", rules=rules)
    assert code == 2 and "per reader" in report["entities"]["disputes"]["reason"]


async def test_dual_write_gap_labels_the_difference(domain: Domain, tmp_path: Path) -> None:
    user = str(domain.dataset.collections["users"][0]["_id"])
    conn = await asyncpg.connect(domain.pg_dsn)
    try:
        await conn.execute("CREATE TABLE pg_dualwrite_gaps (collection text, legacy_object_id text, resolved_at timestamptz)")
        await conn.execute("INSERT INTO pg_dualwrite_gaps VALUES ('users', $1, NULL)", user)
        await conn.execute("UPDATE users SET name = 'lagging' WHERE legacy_object_id = $1", user)
    finally:
        await conn.close()
    criteria = tmp_path / "gate.yaml"
    criteria.write_text("window: 1d\ndualwrite_gaps: {table: pg_dualwrite_gaps}\n")
    code, report, _ = await shadow_verify(domain, "--json", "--entity", "users", "--layer", "docs",
                                          "--criteria", str(criteria))
    (found,) = differences(report)
    assert code == 1 and found["key"] == user and found["explained"] == "open dual-write gap"
    assert report["entities"]["users"]["open_dualwrite_gaps"] == 1
    criteria.write_text("dualwrite_gaps: {table: 'x; drop table users'}\n")
    code, _, _ = await shadow_verify(domain, "--entity", "users", "--criteria", str(criteria))
    assert code == 2


async def test_push_sends_per_layer_results_to_the_pushgateway(domain: Domain) -> None:
    received: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    async def pushgateway(request: web.Request) -> web.Response:
        await received.put((request.path, await request.text()))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", pushgateway)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        code, _, err = await shadow_verify(domain, "--entity", "payments", "--push", f"http://{host}:{port}")
        assert code == 0, err
        path, body = await asyncio.wait_for(received.get(), 10)
    finally:
        await runner.cleanup()
    assert path == "/metrics/job/shadow_verify/partition/0-of-1"
    assert 'shadow_verify_clean{entity="payments",layer="sums"} 1.0' in body
    assert 'shadow_verify_last_run_timestamp_seconds{entity="payments",layer="docs"}' in body
    code, _, err = await shadow_verify(domain, "--entity", "payments", "--layer", "counts",
                                       "--push", f"http://{host}:{port}")
    assert code == 2 and "push" in err  # the gateway is gone: the run says so


async def test_unreachable_store_exit_2(domain: Domain) -> None:
    unreachable = Domain("postgresql://nobody@127.0.0.1:1/x", domain.mongo_uri, domain.mongo_db, domain.dataset)
    code, out, _ = await shadow_verify(unreachable, "--entity", "users", "--timeout", "2")
    assert code == 2 and "store unreachable" in out


USER_NORMALIZERS = Path(__file__).resolve().parents[1] / "normalizers"


async def test_user_normalizer_modules_by_flag_or_env(domain: Domain, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules, ignore=shutil.ignore_patterns("tests"))
    users = rules / "users.yaml"
    users.write_text(users.read_text().replace("  name: name\n",
                                               '  name: {column: name, as: "user_normalizers_example:strip_sku_prefix"}\n'))
    path = {"PYTHONPATH": os.pathsep.join([str(USER_NORMALIZERS), *sys.path])}
    code, _, err = await shadow_verify(domain, "--entity", "users", "--layer", "docs", rules=rules, env=path)
    assert code == 2 and "is not allowed" in err
    code, _, err = await shadow_verify(domain, "--entity", "users", "--layer", "docs", "--normalizer-modules",
                                       "user_normalizers_example", rules=rules, env=path)
    assert code == 0, err
    code, _, err = await shadow_verify(domain, "--entity", "users", "--layer", "docs", rules=rules,
                                       env={**path, "SHADOW_NORMALIZER_MODULES": "user_normalizers_example"})
    assert code == 0, err


async def test_a_database_or_collection_that_does_not_exist_is_exit_2(domain: Domain) -> None:
    misspelled = Domain(domain.pg_dsn, domain.mongo_uri, domain.mongo_db + "x", domain.dataset)
    code, out, _ = await shadow_verify(misspelled, "--entity", "users")
    assert code == 2 and f"Mongo database {domain.mongo_db + 'x'!r} does not exist" in out
    code, report, _ = await shadow_verify(misspelled, "--entity", "users", "--json")
    assert code == 2 and valid_report(report)["exit"] == 2 and "does not exist" in report["error"]
    client: AsyncMongoClient[Any] = AsyncMongoClient(domain.mongo_uri)
    try:
        await client[domain.mongo_db].drop_collection("addresses")
    finally:
        await client.close()
    code, out, _ = await shadow_verify(domain, "--entity", "addresses", "--layer", "counts")
    assert code == 2 and "collection 'addresses' does not exist" in out
