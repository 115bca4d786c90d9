"""The sample API's articles family (issue 20) through the whole sidecar with a write loop
beside the reads: readers favorite and unfavorite articles, follow and unfollow writers
and change tag lists through the proxy while every list and document shape is read. The
Mongo-backed sample API writes MongoDB and dual-writes PostgreSQL late (dualwrite.py, a
lag with a tail), so reads race the second leg: lists and documents that differed must
converge on their rechecks (transient or unstable, never a finding); reads with an
unmodeled parameter are skipped; planted divergences are still found at their paths.
(Clean data and plants without writes: test_sample_articles.py.)"""
from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from shadow.demo.marketplace.api import create_app
from shadow.demo.marketplace.articledata import TAGS, ArticlePlant, Articles, plant_articles
from shadow.demo.marketplace.backends import BACKENDS
from shadow.demo.marketplace.cli import LoadedDomain, load_domain
from shadow.demo.marketplace.dualwrite import DualWrite, LagTail
from shadow.demo.marketplace.views import demo_token
from tests.replay.test_sample_articles import ENTITIES, RULES, UNMODELED, findings, missed, reads

#: most second legs land within 150 ms, a fifth of them 0.3-0.6 s late: inside the
#: rules' recheck schedule (200 ms, 1 s), as a dual-write the rules were written for
LAG = LagTail(fast=(0.02, 0.15), slow=(0.3, 0.6), slow_share=0.2, seed=20)
WRITES = 60
READS_PER_WRITE = 4  # the write loop's pace: one write per this many reads answered
PERSISTENT = ("mismatch", "missing", "extra", "error")


@dataclass
class Conduit:
    loaded: LoadedDomain
    family: Articles
    api: str
    pg_dsn: str
    app: web.Application

    @property
    def dual(self) -> DualWrite:
        dual = self.app[BACKENDS].dual_write
        assert dual is not None
        return dual


@pytest.fixture
async def conduit(pg_dsn: str, mongo_server: Any, mongo_db_name: str) -> AsyncIterator[Conduit]:
    loaded = await load_domain(pg_dsn, mongo_server.uri, mongo_db_name, scale=10, seed=11, drift=False,
                               articles=True)
    assert loaded.articles is not None
    app = create_app(mongo_server.uri, mongo_db_name, dual_write_dsn=pg_dsn, dual_write_lag=LAG)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield Conduit(loaded, loaded.articles, f"http://127.0.0.1:{runner.addresses[0][1]}", pg_dsn, app)
    await runner.cleanup()


@dataclass(frozen=True)
class Avoid:
    """Rows the write loop leaves alone (a write there would heal a planted divergence)."""

    slugs: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()


class Traffic:
    """Reads of every shape and a write loop paced by them (one write per
    READS_PER_WRITE reads answered: an event, not a clock)."""

    def __init__(self, base: str, family: Articles, writers: list[str], avoid: Avoid) -> None:
        self.base, self.family, self.avoid = base, family, avoid
        self.writers = [user for user in writers if user not in avoid.users]
        self.answered = 0
        self.progress = asyncio.Condition()
        self.statuses: Counter[int] = Counter()
        self.writes: Counter[str] = Counter()

    async def read(self, wanted: list[tuple[str, str | None]]) -> None:
        semaphore = asyncio.Semaphore(8)
        async with aiohttp.ClientSession() as session:
            async def one(path: str, reader: str | None) -> None:
                headers = {"Authorization": f"Token {demo_token(reader)}"} if reader else {}
                async with semaphore, session.get(self.base + path, headers=headers) as response:
                    await response.read()
                    self.statuses[response.status] += 1
                async with self.progress:
                    self.answered += 1
                    self.progress.notify_all()
            await asyncio.gather(*(one(path, reader) for path, reader in wanted))

    async def write_loop(self, seed: int) -> None:
        rng = random.Random(seed)
        slugs = [a["slug"] for a in self.family.articles if a["slug"] not in self.avoid.slugs]
        names = [w["username"] for w in self.family.writers if str(w["_id"]) not in self.avoid.users]
        async with aiohttp.ClientSession() as session:
            for number in range(WRITES):
                async with self.progress:
                    await self.progress.wait_for(lambda due=number * READS_PER_WRITE: self.answered >= due)
                writer = rng.choice(self.writers)
                headers = {"Authorization": f"Token {demo_token(writer)}"}
                kind = ("favorite", "follow", "tags")[number % 3]
                method = rng.choice(("POST", "DELETE"))
                if kind == "favorite":
                    request = session.request(method, f"{self.base}/api/articles/{rng.choice(slugs)}/favorite",
                                              headers=headers)
                elif kind == "follow":
                    request = session.request(method, f"{self.base}/api/profiles/{rng.choice(names)}/follow",
                                              headers=headers)
                else:
                    tags = sorted(rng.sample(TAGS, rng.randrange(1, 4)))
                    request = session.put(f"{self.base}/api/articles/{rng.choice(slugs)}", headers=headers,
                                          json={"article": {"tagList": tags}})
                async with request as response:
                    assert response.status == 200, (kind, response.status, await response.text())
                self.writes[kind] += 1


async def run(start: Any, conduit: Conduit, readers: list[str], avoid: Avoid | None = None) -> tuple[Any, Traffic]:
    """Reads of every shape (and the unmodeled ones) with the write loop beside them,
    through the sidecar; returns once PostgreSQL has every write and the shadow side
    has judged every read (rechecks included)."""
    sidecar = await start(upstream=conduit.api, rules=RULES, pg=conduit.pg_dsn, workers=2, source_timeout=5.0,
                          recent_mismatches=10_000)
    users = [str(user["_id"]) for user in conduit.loaded.dataset.collections["users"][:6]]
    traffic = Traffic(sidecar.proxy_url, conduit.family, sorted(set(readers) | set(users)), avoid or Avoid())
    wanted = reads(conduit.family, readers) + [(path, None) for path in UNMODELED]
    random.Random(20).shuffle(wanted)  # every shape read early and late in the write loop
    assert len(wanted) > WRITES * READS_PER_WRITE  # the writes happen while the reads run
    await asyncio.gather(traffic.read(wanted), traffic.write_loop(seed=20))
    await conduit.dual.settled()
    assert conduit.dual.landed == WRITES  # every second leg reached PostgreSQL
    await traffic.read(reads(conduit.family, readers))  # and a round after the writes, on settled data
    assert await sidecar.pipeline.drain(120)
    assert set(traffic.statuses) == {200}, traffic.statuses
    assert min(traffic.writes.values()) == WRITES // 3, traffic.writes
    return sidecar, traffic


def outcomes(sidecar: Any) -> Counter[str]:
    counted: Counter[str] = Counter()
    for entity in ENTITIES:
        counted.update(sidecar.sink.counts.get(entity, {}))
    return counted


@pytest.mark.parametrize("engine", ["raw"])
async def test_a_write_loop_beside_clean_reads_gives_no_finding(conduit, start, probe) -> None:
    readers = [str(user["_id"]) for user in conduit.loaded.dataset.collections["users"][:3]]
    sidecar, _ = await run(start, conduit, readers)
    findings = [(e.outcome, e.route, e.key, e.reason, e.diffs) for e in sidecar.sink.recent(limit=100_000)
                if e.outcome in PERSISTENT]
    assert findings == [], findings[:5]
    counted = outcomes(sidecar)
    assert not any(counted[outcome] for outcome in PERSISTENT), counted
    assert counted["transient"] > 0, counted  # reads raced the dual write, and converged
    converged = Counter(e.key == "[list]" for e in sidecar.sink.recent(limit=100_000) if e.outcome == "transient")
    assert converged[True] > 0 and converged[False] > 0, converged  # list-level races too (membership, totals)
    assert counted["match"] > len(reads(conduit.family, readers)), counted
    assert counted["skipped"] == len(UNMODELED) == probe.skipped(sidecar, "unmodeled_query")


@pytest.mark.parametrize("engine", ["raw"])
async def test_plants_are_found_at_their_paths_with_a_write_loop_beside(conduit, start) -> None:
    connection = await asyncpg.connect(conduit.pg_dsn)
    try:
        plants = await plant_articles(connection, conduit.family, 11)
        follower = await _planted_follower(connection, conduit.family)
    finally:
        await connection.close()
    liked = next(p for p in plants if p.kind == "favorite")
    fan_name = next(query for _, _, _, query, _ in liked.findings if query and query.startswith("favorited="))
    fan = next(str(w["_id"]) for w in conduit.family.writers if w["username"] == fan_name.removeprefix("favorited="))
    followee = next(key for entity, _, key, _, _ in next(p for p in plants if p.kind == "follow").findings
                    if entity == "profile")
    followee_id = next(str(w["_id"]) for w in conduit.family.writers if w["username"] == followee)
    users = [str(user["_id"]) for user in conduit.loaded.dataset.collections["users"][:3]]
    readers = sorted({fan, follower, *users})
    avoid = Avoid(slugs=frozenset(_planted_slugs(plants)), users=frozenset({fan, follower, followee_id}))
    sidecar, _ = await run(start, conduit, readers, avoid)
    found = findings(sidecar, PERSISTENT)
    missing = missed(plants, found)
    assert missing == [], (missing, sorted(found)[:60])
    assert not any(f[0] == "current_user" for f in found)
    assert not any(f[0] == "profile" and f[2] != followee for f in found)


def _planted_slugs(plants: tuple[ArticlePlant, ...]) -> set[str]:
    """The articles whose rows a plant changed (single-article findings name them)."""
    return {key for plant in plants for entity, route, key, _, _ in plant.findings
            if entity == "article" and route == "GET /api/articles/{slug}"}


async def _planted_follower(connection: Any, family: Articles) -> str:
    """The user PostgreSQL says follows someone the API says they do not."""
    rows = await connection.fetch("SELECT m.legacy_object_id, e.legacy_object_id AS followee FROM follows f "
                                  "JOIN id_map m ON m.new_id = f.follower_id AND m.collection = 'users' "
                                  "JOIN id_map e ON e.new_id = f.followee_id AND e.collection = 'users'")
    api_follows = {(str(f["follower"]), str(f["followee"])) for f in family.follows}
    [planted] = [row[0] for row in rows if (row[0], row["followee"]) not in api_follows]
    return str(planted)
