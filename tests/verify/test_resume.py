"""An interrupted run resumes mid-collection from its per-bucket checkpoint and ends with
the same report as an uninterrupted run. The interruption is an event: the docs scan
stops (as a killed process would) right after its Nth bucket was checkpointed."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shadow.rules import load_rules
from shadow.verify.buckets import ResumeFile
from shadow.verify.cli import verify_run
from shadow.verify.progress import Progress
from tests.verify.conftest import RULES, Domain, differences, shadow_verify


class Interrupted(BaseException):
    """Stands for SIGKILL: nothing after it runs in the scan."""


class StopAfter(Progress):
    def __init__(self, buckets: int) -> None:
        super().__init__()
        self.left = buckets

    def bucket_done(self, entity: str, bucket: str) -> None:
        self.left -= 1
        if self.left == 0:
            raise Interrupted


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    """What a run found, without when it ran and how much it skipped."""
    docs = dict(report["entities"]["users"]["layers"]["docs"])
    for volatile in ("seconds", "skipped_buckets"):
        docs.pop(volatile)
    return docs


async def test_interrupted_run_resumes_mid_collection_with_the_same_report(domain: Domain, tmp_path: Path) -> None:
    users = sorted(str(d["_id"]) for d in domain.dataset.collections["users"])
    changed = [users[1], users[7], users[10]]  # before and after the interruption
    conn = await asyncpg.connect(domain.pg_dsn)
    try:
        await conn.execute("UPDATE users SET name = name || '!' WHERE legacy_object_id = ANY($1)", changed)
    finally:
        await conn.close()
    code, whole, err = await shadow_verify(domain, "--json", "--entity", "users", "--layer", "docs")
    assert code == 1, err
    buckets = len(whole["entities"]["users"]["layers"]["docs"]["buckets"])
    assert buckets >= 8  # several buckets: the interruption falls mid-collection

    checkpoint = tmp_path / "resume.json"
    rules = load_rules(RULES)
    with pytest.raises(Interrupted):
        await verify_run(rules, domain.pg_dsn, domain.mongo_uri, domain.mongo_db, entities=["users"],
                         layers=("docs",), resume=ResumeFile.open(str(checkpoint), rules.version),
                         progress=StopAfter(5))
    recorded = json.loads(checkpoint.read_text())["entities"]["users"]
    assert 0 < len(recorded) < 5  # the clean ones of the first five buckets, nothing after
    assert not (tmp_path / "resume.json.tmp").exists()  # written atomically

    code, resumed, err = await shadow_verify(domain, "--json", "--entity", "users", "--layer", "docs",
                                             "--resume", str(checkpoint))
    assert code == 1, err
    assert resumed["entities"]["users"]["layers"]["docs"]["skipped_buckets"] == len(recorded)
    assert comparable(resumed) == comparable(whole)
    assert {d["key"] for d in differences(resumed)} == set(changed)


async def test_max_rate_paces_every_document_even_in_a_small_run(domain: Domain,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """12 users at 2 documents/s are spread over ~6 s, though they fit in one page: the
    pauses are recorded instead of slept (the test waits for nothing)."""
    import asyncio

    from pymongo import AsyncMongoClient

    from shadow.replay.sources.postgres import PostgresSource
    from shadow.verify import reconcile
    from shadow.verify.mongoside import LiveMongo
    from shadow.verify.scope import KeyRange

    pauses: list[float] = []

    async def record(seconds: float) -> None:
        pauses.append(seconds)
        await asyncio.sleep(0)

    monkeypatch.setattr(reconcile, "pause", record)
    entity = load_rules(RULES).entities["users"]
    client: AsyncMongoClient[Any] = AsyncMongoClient(domain.mongo_uri, tz_aware=True)
    pool = await asyncpg.create_pool(domain.pg_dsn, min_size=1, max_size=2)
    try:
        result = await reconcile.run_docs(entity, LiveMongo(client, domain.mongo_db), PostgresSource(pool),
                                          KeyRange(), max_rate=2.0)
    finally:
        await pool.close()
        await client.close()
    users = len(domain.dataset.collections["users"])
    assert result.checked == users and result.status == "clean"
    assert len(pauses) >= users - 2  # a pause after (nearly) every document, not once per page
    assert sum(pauses) >= (users - 1) / 2 - 1  # the run is spread over ~users / rate seconds
