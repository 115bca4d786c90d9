"""Layer 3b: full reconciliation. Both stores streamed in legacy-id order in keyset
pages — Mongo by `_id`, PostgreSQL by the key column, each page rebuilt through the
rules' compiled plans by the PostgreSQL source — every document canonicalized (a stored
one straight from BSON, storedcanon.py) and, when the two forms differ, made the API's
shape and compared by the proxy's diff. Memory: two pages, whatever the size of
the collection."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

from bson import ObjectId

from shadow.compare.canonical import canonical
from shadow.compare.diff import compare
from shadow.model import Outcome
from shadow.publish.redaction import Redaction
from shadow.replay.sources.apijson import api_document
from shadow.replay.sources.postgres import PostgresSource, quote
from shadow.rules.spec import Entity
from shadow.verify.buckets import Bucket, ResumeFile, bucket_end
from shadow.verify.collector import fewer_collections
from shadow.verify.model import MAX_REPORTED, Difference, LayerResult, layer_result
from shadow.verify.mongoside import MongoSide
from shadow.verify.scope import KeyRange, bucket_of, mongo_filter, pg_condition
from shadow.verify.storedcanon import stored_canonical

Gaps = Callable[[Entity, list[str]], Any]  # async: keys -> the ones with an open dual-write gap
pause: Callable[[float], Awaitable[None]] = asyncio.sleep  # --max-rate's wait (a test records it)


class OrderError(RuntimeError):
    """PostgreSQL returned keys out of ObjectId order (a collation that does not sort
    lowercase hex bytewise): the merge cannot be trusted."""


class _Pages:
    """One store's documents in key order, one page at a time."""

    def __init__(self, fetch: Callable[[str | None, int, bool], Any], page: int) -> None:
        self.fetch, self.page = fetch, page
        self.items: list[tuple[str, Any]] = []
        self.index = 0
        self.bound: str | None = None  # where the next page starts
        self.inclusive = False  # the bound itself included (after a skip) or not (after a page)
        self.last: str | None = None
        self.done = False
        self.read = 0

    async def head(self) -> tuple[str, Any] | None:
        if self.index >= len(self.items):
            if self.done:
                return None
            self.items, self.index = await self.fetch(self.bound, self.page, self.inclusive), 0
            self.read += len(self.items)
            self.done = len(self.items) < self.page
            if not self.items:
                return None
            previous = self.last
            for key, _ in self.items:
                if previous is not None and key <= previous:
                    raise OrderError(f"keys out of order: {key!r} after {previous!r}")
                previous = key
            self.last = self.bound = self.items[-1][0]
            self.inclusive = False
        return self.items[self.index]

    def peek(self) -> tuple[str, Any] | None:
        """The head when the current page holds it (no await); else None."""
        return self.items[self.index] if self.index < len(self.items) else None

    def pop(self) -> None:
        self.index += 1

    def skip_to(self, boundary: str) -> None:
        """Drop everything before `boundary` (the end of a bucket the resume file skips)."""
        while self.index < len(self.items) and self.items[self.index][0] < boundary:
            self.index += 1
        if self.index >= len(self.items) and not self.done and (self.last is None or boundary > self.last):
            self.bound, self.inclusive = boundary, True


async def run_docs(entity: Entity, mongo_side: MongoSide, source: PostgresSource, key_range: KeyRange, *,
                   page: int = 500, max_rate: float | None = None, resume: ResumeFile | None = None,
                   gaps: Gaps | None = None, on_page: Callable[[int], None] | None = None,
                   on_bucket: Callable[[str, str], None] | None = None,
                   today: date | None = None) -> LayerResult:
    """`on_bucket(entity, bucket)` is called once each bucket is complete (and, with
    `--resume`, checkpointed)."""
    with fewer_collections():  # documents hold no cycles: see collector.py
        return await _run_docs(entity, mongo_side, source, key_range, page, max_rate, resume, gaps, on_page,
                               on_bucket, today)


async def _run_docs(entity: Entity, mongo_side: MongoSide, source: PostgresSource, key_range: KeyRange,
                    page: int, max_rate: float | None, resume: ResumeFile | None, gaps: Gaps | None,
                    on_page: Callable[[int], None] | None, on_bucket: Callable[[str, str], None] | None,
                    today: date | None) -> LayerResult:
    started = time.perf_counter()
    today = today or date.today()
    query = mongo_filter(entity, key_range)
    where, args = pg_condition(entity, key_range)
    objectid = entity.key_type == "objectid"
    redaction = Redaction.for_entity(entity)

    async def mongo_page(after: str | None, size: int, inclusive: bool) -> list[tuple[str, Any]]:
        bound = None if after is None else ObjectId(after) if objectid else after
        found = []
        for document in await mongo_side.page(entity.collection, query, bound, size, inclusive):
            key = str(document["_id"])
            found.append((key.lower() if objectid else key, document))
        return found

    key_sql = quote(entity.key)

    async def pg_page(after: str | None, size: int, inclusive: bool) -> list[tuple[str, Any]]:
        condition, values = where, list(args)
        if after is not None:
            values.append(after)
            condition += f" AND {key_sql} {'>=' if inclusive else '>'} ${len(values)}"
        values.append(size)
        async with source.pool.acquire() as connection:
            rows = await connection.fetch(f"SELECT {key_sql} FROM {quote(entity.table)} WHERE {condition} "
                                          f"ORDER BY {key_sql} LIMIT ${len(values)}", *values)
        keys = [row[0] for row in rows]
        documents = await source.fetch(entity, keys)
        return [(key, documents[key]) for key in keys]

    mongo, pg = _Pages(mongo_page, page), _Pages(pg_page, page)
    buckets: dict[str, Bucket] = {}
    carried: dict[str, dict[str, Any]] = {}  # buckets a resume file records clean: their digests
    differences: list[Difference] = []
    dropped = compared = matched = 0
    pending: list[tuple[str, Difference]] = []  # differences not yet labelled by the gap lookup
    paced_from = time.monotonic()
    current: str | None = None  # the bucket being verified

    async def flush() -> None:
        nonlocal dropped
        open_gaps: set[str] = set(await gaps(entity, [key for key, _ in pending])) if gaps and pending else set()
        for key, difference in pending:
            if len(differences) >= MAX_REPORTED:
                dropped += 1
                continue
            if key in open_gaps:
                difference = Difference(difference.layer, difference.check, difference.kind, difference.key,
                                        difference.path, difference.mongo, difference.postgres,
                                        "open dual-write gap")
            differences.append(difference)
        pending.clear()

    async def close(name: str) -> None:
        """A bucket is complete: checkpoint it (its differences reported first)."""
        await flush()
        if resume is not None:
            resume.record_bucket(entity.name, name, buckets[name])
        if on_bucket is not None:
            on_bucket(entity.name, name)

    prefix = ""  # the key's first 8 hex digits (its second): the bucket changes only with them
    name = ""
    while True:
        mongo_head = mongo.peek() or await mongo.head()
        pg_head = pg.peek() or await pg.head()
        if mongo_head is None:
            if pg_head is None:
                break
            key = pg_head[0]
        elif pg_head is None or mongo_head[0] <= pg_head[0]:
            key = mongo_head[0]
        else:
            key = pg_head[0]
        if key[:8] != prefix or not objectid:
            prefix, name = key[:8], bucket_of(key)
        if name != current:
            if current is not None and current in buckets:
                await close(current)
            current = name
            recorded = resume.recorded(entity.name, name) if resume is not None else None
            end = bucket_end(name)
            if recorded is not None and end is not None:
                carried[name] = recorded
                mongo.skip_to(end)
                pg.skip_to(end)
                continue
        bucket = buckets.get(name) or buckets.setdefault(name, Bucket())  # no Bucket made per document
        if mongo_head is not None and mongo_head[0] == key:
            stored = mongo_head[1]
            control_c = stored_canonical(entity, stored)  # no API-shaped copy unless they differ
            mongo.pop()
            if pg_head is not None and pg_head[0] == key:
                candidate = pg_head[1]
                pg.pop()
                candidate_c = canonical(entity, candidate) if candidate is not None else None
                if control_c == candidate_c:  # the common case: one hash, no diff walk
                    bucket.add_both(key, control_c)
                    matched += 1
                else:
                    bucket.add_mongo(key, control_c)
                    bucket.add_pg(key, candidate_c)
                    verdict = compare(entity, api_document(entity, stored), candidate, today)
                    if verdict.outcome is not Outcome.MATCH:
                        bucket.differences += 1
                        for diff in redaction.diffs(verdict.diffs):  # the report leaves the process
                            pending.append((key, Difference("docs", "document", "mismatch", key, diff.path,
                                                            diff.control, diff.candidate)))
                    else:
                        matched += 1
            else:
                bucket.add_mongo(key, control_c)
                bucket.differences += 1
                pending.append((key, Difference("docs", "document", "missing", key, mongo="present")))
        else:
            assert pg_head is not None
            bucket.add_pg(key, canonical(entity, pg_head[1]) if pg_head[1] is not None else None)
            pg.pop()
            bucket.differences += 1
            pending.append((key, Difference("docs", "document", "extra", key, postgres="present")))
        compared += 1
        if max_rate:  # paced per document: never more than max_rate documents in any second
            ahead = compared / max_rate - (time.monotonic() - paced_from)
            if ahead > 0:
                await pause(ahead)
        if compared % page == 0:
            await flush()
            if on_page is not None:
                on_page(page)
    if current is not None and current in buckets:
        await close(current)
    await flush()
    if on_page is not None:
        on_page(compared % page)
    # a resumed run reports what an uninterrupted one does: carried buckets count as checked
    carried_documents = sum(int(entry["mongo"]["count"]) for entry in carried.values())
    reported = {name: bucket.as_json() for name, bucket in buckets.items()}
    reported.update(carried)
    mongo_count = sum(int(entry["mongo"]["count"]) for entry in reported.values())
    pg_count = sum(int(entry["postgres"]["count"]) for entry in reported.values())
    checks = [{"check": "documents", "passed": not differences and not dropped, "mongo": mongo_count,
               "postgres": pg_count, "matched": matched + carried_documents}]
    return layer_result("docs", differences, compared + carried_documents, time.perf_counter() - started, dropped,
                        buckets=dict(sorted(reported.items())), skipped_buckets=len(carried), checks=checks)
