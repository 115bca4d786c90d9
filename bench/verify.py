"""`shadow verify` docs layer from a mongodump snapshot: our CPU per document, wall time
and memory at up to 1M payments-like documents (issue 21).

The world: the marketplace generated at a small scale and backfilled into an embedded
PostgreSQL, then N more payments (clones of the generated ones with fresh ObjectIds one
second apart, so ~86k per day bucket) streamed to PostgreSQL by COPY and to a dump
directory (`<db>/<collection>.bson`, our own writer) in chunks — no Mongo server, memory
flat while building. Each measurement runs in a fresh child process so its peak RSS is
the docs layer's alone.

    python bench/verify.py [--documents 100000 1000000] [--profile 50000] [--before REV] [--docs-only]

Each scale also runs the counts and sums layers of payments from the same dump, and
times the stored -> API shape and canonicalize + compare stages alone (the old bench's
"our CPU") over 20,000 documents held in memory.
`--profile N`: the docs layer under cProfile at N documents, CPU per stage (ratios).
Every docs-layer measurement is made twice on the same world, in fresh processes taking
turns: "before" and "after" (the current code); `--rounds R` repeats the pair and keeps
the best of each. "before" is the code of git revision REV with `--before REV` (its
`shadow` and `normalizers` packages unpacked into a temporary folder and imported from
there), else the current code with the Mongo side's old two-step path (stored -> API
shape -> canonical; `--two-step`). `--docs-only` skips the counts and sums layers and
the in-memory stage timings. Writes bench/results/verify.json."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import bson
from bson import ObjectId

ROOT = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path.pop(0)  # bench/profile.py would shadow the standard library's `profile` (cProfile needs it)
sys.path.insert(0, str(ROOT))

DATABASE = "bench"
BASE_SCALE = 300
CHUNK = 10_000
DOCS_ONLY = False  # --docs-only: the docs layer alone (no counts/sums layers, no in-memory stages)


async def build_world(dsn: str, folder: Path, documents: int) -> int:
    """PostgreSQL at `dsn` (empty) and a dump under `folder`: the same payments."""
    from shadow.demo.marketplace import apply_schema
    from shadow.demo.marketplace.backfill import TABLE_COLUMNS, _Rows, backfill
    from shadow.demo.marketplace.generate import generate

    dataset = generate(3, BASE_SCALE)
    conn = await asyncpg.connect(dsn)
    try:
        await apply_schema(conn)
        ids = await backfill(conn, dataset, 3)
        target = folder / DATABASE
        target.mkdir(parents=True)
        for name, docs in dataset.collections.items():  # in _id order, as mongodump of an ObjectId collection
            ordered = sorted(docs, key=lambda doc: doc["_id"])
            (target / f"{name}.bson").write_bytes(b"".join(bson.encode(doc) for doc in ordered))

        class Rows(_Rows):
            def ref(self, collection: str, value: ObjectId | None) -> uuid.UUID | None:
                return uuid.uuid4() if collection == "payments" else super().ref(collection, value)

        rows = Rows(ids)
        templates = dataset.collections["payments"]
        start = max(doc["_id"].generation_time.timestamp() for doc in templates) + 1  # after the generated ones
        written = 0
        with open(target / "payments.bson", "ab") as dump:
            while written < documents:
                chunk, raw = [], []
                for index in range(written, min(written + CHUNK, documents)):
                    template = templates[index % len(templates)]
                    legacy = ObjectId(int(start + index).to_bytes(4, "big") + index.to_bytes(8, "big"))
                    doc = dict(template, _id=legacy, idempotencyKey=f"bench-{index}")
                    chunk.append(rows.payment(doc))
                    raw.append(bson.encode(doc))
                await conn.copy_records_to_table("payments", records=chunk, columns=TABLE_COLUMNS["payments"])
                dump.write(b"".join(raw))
                written += len(chunk)
        await conn.execute("ANALYZE")
        return documents + len(templates)
    finally:
        await conn.close()


def use_two_step_path() -> None:
    """The docs layer as it was before the speed work (for the "before" column measured
    in the same run): the Mongo side stored -> API shape -> canonical, dates in bson's
    own UTC (whose Python utcoffset() every date conversion calls), `iso_ms` by
    isoformat(), `canonical_number` counting trailing zeros always, and the collector's
    default thresholds."""
    import contextlib
    from datetime import UTC, datetime
    from decimal import Decimal

    from bson.codec_options import CodecOptions

    import normalizers.values as values
    import shadow.compare.canonical
    import shadow.replay.sources.apijson
    import shadow.verify.dump
    import shadow.verify.reconcile
    from shadow.compare.canonical import canonical
    from shadow.replay.sources.apijson import api_document

    new_iso_ms = values.iso_ms

    def iso_ms(moment: datetime) -> str:
        if moment.__class__ is datetime:
            if moment.tzinfo is not None and moment.tzinfo is not UTC and moment.utcoffset():
                moment = moment.astimezone(UTC)
            return moment.isoformat(timespec="milliseconds")[:23] + "Z"
        return new_iso_ms(moment)

    def canonical_number(number: Decimal) -> Any:
        if not number.is_finite():
            return str(number)
        exponent = number.adjusted()
        if not -values.MAX_EXPONENT <= exponent <= values.MAX_EXPONENT:
            return values.out_of_range("decimal", number) if number else 0
        _, digits, _ = number.as_tuple()
        significant = len(digits)
        while significant > 1 and digits[significant - 1] == 0:
            significant -= 1
        if significant > values.MAX_DIGITS:
            return values.out_of_range("decimal", number)
        if number == number.to_integral_value() and exponent < values.MAX_INT_DIGITS:
            return int(number)
        return number.normalize(values._EXACT)

    for module in (values, shadow.compare.canonical, shadow.replay.sources.apijson):
        module.iso_ms = iso_ms  # type: ignore[attr-defined]  # bench only: the old function back
        if hasattr(module, "canonical_number"):
            module.canonical_number = canonical_number  # type: ignore[attr-defined]  # bench only
    shadow.verify.reconcile.stored_canonical = lambda entity, document: canonical(entity, api_document(entity, document))
    shadow.verify.reconcile.fewer_collections = contextlib.nullcontext
    shadow.verify.dump.OPTIONS = CodecOptions(tz_aware=True)


async def measure(dsn: str, dump: str, profile: bool, two_step: bool = False) -> dict[str, Any]:
    """The docs layer of payments from the dump, in this (fresh) process."""
    import cProfile
    import pstats

    if two_step:
        use_two_step_path()

    from shadow.replay.sources.postgres import PostgresSource
    from shadow.rules import load_rules
    from shadow.verify.dump import DumpMongo
    from shadow.verify.reconcile import run_docs
    from shadow.verify.scope import KeyRange

    entity = load_rules(ROOT / "rules" / "marketplace").entities["payments"]
    mongo = DumpMongo.open(dump, DATABASE)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=3)
    source = PostgresSource(pool, statement_timeout=600)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    profiler = cProfile.Profile(time.process_time) if profile else None  # CPU, not waiting
    cpu, wall = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    result = await run_docs(entity, mongo, source, KeyRange(), page=1000)
    if profiler:
        profiler.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    rss_layer = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # before the in-memory stage timing
    other_layers: dict[str, Any] = {}
    if not profile and not two_step and not DOCS_ONLY:
        from shadow.verify.counts import run_counts
        from shadow.verify.sums import run_sums

        for name, run in (("counts", run_counts), ("sums", run_sums)):
            layer_cpu, layer_wall = time.process_time(), time.perf_counter()
            layer = await run(entity, mongo, pool, KeyRange())
            other_layers[name] = {"status": layer.status, "wall_s": round(time.perf_counter() - layer_wall, 1),
                                  "our_cpu_s": round(time.process_time() - layer_cpu, 1)}
        stage_costs = await isolated_stages(entity, mongo, source)
    await pool.close()
    mongo.close()
    figures: dict[str, Any] = {
        "documents": result.checked, "status": result.status, "differences": len(result.differences),
        "wall_s": round(wall, 1), "docs_per_s": round(result.checked / wall),
        "our_cpu_s": round(cpu, 1), "our_cpu_us_per_doc": round(cpu / result.checked * 1e6, 1),
        "max_rss_mb_before": round(rss_before / 1024), "max_rss_mb": round(rss_layer / 1024)}
    if not profile and not two_step and not DOCS_ONLY:
        figures["isolated_us_per_doc"] = stage_costs
        figures["other_layers"] = other_layers
    if profiler:
        stats = pstats.Stats(profiler)
        figures["stages"] = stages(stats)
        own = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:45]  # type: ignore[attr-defined]
        whole = sum(entry[2] for entry in stats.stats.values()) or 1.0  # type: ignore[attr-defined]
        figures["top_functions"] = {f"{Path(f).name}:{line}:{name}": round(entry[2] / whole, 3)
                                    for (f, line, name), entry in own}
    return figures


async def isolated_stages(entity: Any, mongo: Any, source: Any, sample: int = 20_000) -> dict[str, float]:
    """The old bench's stages, each timed alone over `sample` documents held in memory:
    stored -> API shape, and canonicalize + compare (the CPU that is ours alone)."""
    from datetime import date

    from shadow.compare.canonical import canonical
    from shadow.compare.diff import compare
    from shadow.replay.sources.apijson import api_document
    from shadow.verify.storedcanon import stored_canonical

    stored = await mongo.page(entity.collection, {}, None, sample, False)
    keys = [str(document["_id"]) for document in stored]
    candidates: dict[str, Any] = {}
    for first in range(0, len(keys), 1000):
        candidates.update(await source.fetch(entity, keys[first:first + 1000]))
    started = time.process_time()
    controls = [api_document(entity, document) for document in stored]
    shaped = time.process_time() - started
    today = date.today()
    started = time.process_time()
    outcomes = {compare(entity, control, candidates[key], today).outcome.value
                for key, control in zip(keys, controls, strict=True)}
    compared = time.process_time() - started
    assert outcomes == {"match"}, outcomes
    started = time.process_time()
    two_step = [canonical(entity, api_document(entity, document)) for document in stored]
    two_step_s = time.process_time() - started
    started = time.process_time()
    one_walk = [stored_canonical(entity, document) for document in stored]
    one_walk_s = time.process_time() - started
    assert one_walk == two_step
    per_doc = 1e6 / len(keys)
    return {"api_shape": round(shaped * per_doc, 1), "canonicalize_compare": round(compared * per_doc, 1),
            "shape_plus_compare": round((shaped + compared) * per_doc, 1),
            "mongo_side_shape_then_canonical": round(two_step_s * per_doc, 1),
            "mongo_side_one_walk": round(one_walk_s * per_doc, 1), "documents": len(keys)}


STAGES = {  # where a function's own time goes, by the module it lives in
    "dump read + BSON decode": ("shadow/verify/dump.py", "bson/", "gzip.py"),
    "stored -> canonical in one walk": ("shadow/verify/storedcanon.py",),
    "stored -> API shape": ("shadow/replay/sources/apijson.py", "normalizers/values.py"),
    "bucket digests": ("shadow/verify/buckets.py", "orjson", "_blake2"),
    "PostgreSQL fetch (asyncpg, id_map)": ("asyncpg", "shadow/replay/sources/postgres.py", "asyncio"),
    "rebuild from rows": ("shadow/replay/rebuild.py", "shadow/replay/plan"),
    "canonicalize + compare": ("shadow/compare/", "shadow/canonical", "normalizers/", "decimal"),
    "merge loop": ("shadow/verify/reconcile.py",),
}


def stages(stats: Any) -> dict[str, float]:
    """Share of profiled time per stage (own time of each function, by its file)."""
    totals: dict[str, float] = dict.fromkeys(STAGES, 0.0)
    totals["other"] = 0.0
    for (filename, _, name), (_, _, own, _, _) in stats.stats.items():
        where = f"{filename}:{name}"
        for stage, markers in STAGES.items():
            if any(marker in where for marker in markers):
                totals[stage] += own
                break
        else:
            totals["other"] += own
    whole = sum(totals.values()) or 1.0
    return {stage: round(seconds / whole, 3) for stage, seconds in sorted(totals.items(), key=lambda i: -i[1])}


def child(dsn: str, dump: str, profile: bool, two_step: bool = False, code: str | None = None) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--measure", dsn, dump, *(["--with-profile"] if profile else []),
                          *(["--two-step"] if two_step else []), *(["--code", code] if code else []),
                          *(["--docs-only"] if DOCS_ONLY or code else [])],
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


TWO_STEP_FIGURES = ("status", "differences", "our_cpu_s", "our_cpu_us_per_doc", "wall_s", "docs_per_s", "max_rss_mb", "stages", "top_functions")


def checkout(revision: str, folder: str) -> str:
    """The project's code at `revision` (its packages only) unpacked into `folder`."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "shadow", "normalizers"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    return folder


async def main(scales: list[int], profile: int | None, rounds: int, before: str | None = None) -> dict[str, Any]:
    from shadow.demo.embedded import start_postgres

    server = start_postgres()
    runs = []
    try:
        wanted = [(scale, False) for scale in scales] + ([(profile, True)] if profile else [])
        for scale, profiled in wanted:
            name = f"bench_verify_{scale}{'_p' if profiled else ''}"
            admin = await asyncpg.connect(server.dsn)
            await admin.execute(f'CREATE DATABASE "{name}"')
            await admin.close()
            dsn = server.dsn_for(name)
            with tempfile.TemporaryDirectory(prefix="shadow-bench-dump-") as folder, \
                    tempfile.TemporaryDirectory(prefix="shadow-bench-code-") as code:
                started = time.perf_counter()
                total = await build_world(dsn, Path(folder), scale)
                built = time.perf_counter() - started
                old_code = checkout(before, code) if before else None
                before_runs, after = [], []
                for _ in range(rounds):  # interleaved: the load moves
                    before_runs.append(child(dsn, folder, profiled, two_step=old_code is None, code=old_code))
                    after.append(child(dsn, folder, profiled))
            figures = min(after, key=lambda run: run["our_cpu_us_per_doc"])
            old = min(before_runs, key=lambda run: run["our_cpu_us_per_doc"])
            runs.append({"extra_payments": scale, "payments": total, "profiled": profiled, "build_s": round(built, 1),
                         **figures, "rounds": rounds,
                         "before": {"code": f"git {before}" if before else "the two-step path (--two-step)",
                                    **{name: old[name] for name in old if name in TWO_STEP_FIGURES}},
                         "our_cpu_ratio_before_after": round(old["our_cpu_us_per_doc"] / figures["our_cpu_us_per_doc"], 2),
                         "our_cpu_us_per_doc_each_round": {"before": [run["our_cpu_us_per_doc"] for run in before_runs],
                                                           "after": [run["our_cpu_us_per_doc"] for run in after]},
                         "load_average": [round(load, 2) for load in os.getloadavg()]})
            print(json.dumps(runs[-1]), file=sys.stderr)
    finally:
        server.cleanup()
    return {"entity": "payments", "source": "mongodump directory", "runs": runs}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--profile", type=int, default=None)
    parser.add_argument("--measure", nargs=2, metavar=("DSN", "DUMP"))
    parser.add_argument("--with-profile", action="store_true")
    parser.add_argument("--two-step", action="store_true", help="(child) the Mongo side's old two-step path")
    parser.add_argument("--before", metavar="REV", help="measure the code at git REV as 'before' (default: "
                        "the current code with the two-step path)")
    parser.add_argument("--code", help="(child) import the project's packages from this folder")
    parser.add_argument("--docs-only", action="store_true", help="skip the counts and sums layers and the "
                        "in-memory stage timings")
    parser.add_argument("--rounds", type=int, default=1, help="before/after pairs per scale (best of each kept)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "verify.json"))
    args = parser.parse_args()
    if args.code:
        sys.path.insert(0, args.code)  # before the first import of the project's packages
    if args.docs_only:
        DOCS_ONLY = True
    if args.measure:
        print(json.dumps(asyncio.run(measure(args.measure[0], args.measure[1], args.with_profile, args.two_step))))
    else:
        result = asyncio.run(main(args.documents, args.profile, args.rounds, args.before))
        print(json.dumps(result, indent=2))
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
