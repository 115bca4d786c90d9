"""Where the CPU of a shadowed read goes (issue 13): py-spy on the proxy and on each
shadow worker while an open-loop generator offers a fixed rate (default 1,000 req/s)
with 100 % shadowing (the marketplace rules), then every sampled stack is put in one
stage and the stage's share of the process's CPU seconds is divided by the reads.

    .venv/bin/python bench/profile.py [--seconds 10] [--rate 1000] [--workers N] [--out FILE]

py-spy samples only threads that are running (not idle), without pausing the process
(--nonblocking), so its sample counts are proportional to CPU time; the CPU seconds
themselves come from /proc (utime + stime) over the same window. The machine is
shared: run it twice and read the spread. Writes bench/results/profile.json and prints
a table (CPU µs per shadowed read, by stage and process).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from proxy import (  # noqa: E402
    PY,
    SHADOW,
    _cpu,
    ensure_wrk,
    image_like_env,
    loadgen,
    marketplace_world,
    routeless_rules,
    scrape,
    wait_http,
)

from shadow.demo.embedded import free_port  # noqa: E402

#: (stage, substrings of a frame "function (file:line)"), tried from the innermost frame
#: outwards; the first stage any frame matches is the sample's stage.
PROXY_STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # the worker's reports arriving and published (checked before the request path's own
    # metric calls, which are prometheus_client frames too)
    ("publish", ("Link.received", "Handoff._received", "_Connection.data_received", "publish/sink.py")),
    ("hand-off", ("replay/handoff.py", "replay/messages.py", "pickle")),
    ("copy", ("body_copy", "captured_read", "BodyCopy", "copy_body", "_hand_over")),
    ("match", ("shadow/rules/",)),
)
WORKER_STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("relay", ("RemoteSink", "Relay", "flush (", "publish/sink.py", "dumps")),
    ("rebuild", ("replay/rebuild.py",)),
    ("canonicalize", ("compare/canonical.py", "normalizers/")),
    ("explain", ("compare/explain.py", "deepdiff")),
    ("compare", ("compare/diff.py", "_judge")),
    ("fetch", ("replay/sources/", "asyncpg", "pymongo", "_fetch")),
    ("parse", ("replay/prepare.py", "replay/coding.py", "orjson", "prepare")),
    ("match", ("shadow/rules/",)),
    ("hand-off", ("replay/handoff.py", "replay/messages.py", "loads", "_offer", "data_received")),
    ("batch", ("replay/pipeline.py", "replay/recheck.py", "asyncio/queues")),
)
#: "request path" in the proxy: everything that is not shadow work, the event loop's own
#: time (socket reads and writes, uvloop) included
ORDER = ("request path", "match", "copy", "hand-off", "parse", "batch", "fetch", "rebuild", "canonicalize",
         "compare", "explain", "publish", "relay", "loop/other")


def stage_of(stack: list[str], rules: tuple[tuple[str, tuple[str, ...]], ...], by_rule: bool = False) -> str:
    """The stage of one sampled stack: the first rule any frame matches (`by_rule`), or
    the first frame, innermost first, that any rule matches."""
    if by_rule:
        for stage, needles in rules:
            if any(needle in frame for frame in stack for needle in needles):
                return stage
        return "request path" if stack else "loop/other"
    for frame in reversed(stack):  # innermost first
        for stage, needles in rules:
            if any(needle in frame for needle in needles):
                return stage
    return "loop/other"


def read_collapsed(path: Path, rules: tuple[tuple[str, tuple[str, ...]], ...]) -> collections.Counter[str]:
    by_rule = rules is PROXY_STAGES  # in the proxy, whatever is not shadow work is the request path
    counts: collections.Counter[str] = collections.Counter()
    if not path.exists():
        return counts
    for line in path.read_text().splitlines():
        stack_text, _, number = line.rpartition(" ")
        if not stack_text or not number.isdigit():
            continue
        frames = stack_text.split(";")[1:]  # the first is the thread
        counts[stage_of(frames, rules, by_rule)] += int(number)
    return counts


def workers_of(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children if b"shadow.replay.worker" in Path(f"/proc/{child}/cmdline").read_bytes()]


def find_py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("py-spy not found: pip install py-spy (it is in the [test] extra)")
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--scale", type=int, default=200)
    parser.add_argument("--workers", type=int, default=0, help="--shadow-workers (0 = the proxy's default)")
    parser.add_argument("--sample-rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--passthrough", action="store_true", help="a routeless rules set: nothing is shadowed")
    parser.add_argument("--label", default="")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "profile.json"))
    opts = parser.parse_args()
    py_spy = find_py_spy()
    ensure_wrk()
    work = Path(tempfile.mkdtemp(prefix="shadow-profile-"))
    with ExitStack() as stack:
        world = marketplace_world(stack, work, opts.scale)
        pg, mongo, spawn, direct, paths = world.pg, world.mongo, world.spawn, world.direct, world.paths
        port, admin_port = free_port(), free_port()
        rules = routeless_rules(work) if opts.passthrough else ROOT / "rules" / "marketplace"
        argv = [SHADOW, "proxy", "--upstream", direct, "--rules", str(rules), "--pg", pg.dsn,
                "--mongo", mongo.uri, "--mongo-db", "bench", "--listen", f"127.0.0.1:{port}",
                "--admin-listen", f"127.0.0.1:{admin_port}", "--source-timeout", "0.5",
                "--mismatch-log", str(work / "mismatches.jsonl")]
        if opts.workers:
            argv += ["--shadow-workers", str(opts.workers)]
        proxy = spawn(argv, env=image_like_env(work))
        admin = f"http://127.0.0.1:{admin_port}"
        wait_http(admin + "/healthz")
        url_file = work / "urls.txt"
        url_file.write_text("\n".join(f"http://127.0.0.1:{port}{p}" for p in paths))
        loadgen(url_file, opts.rate, 3)  # warm up: caches, connections, id_map
        settled, last = time.monotonic() + 30, None
        while time.monotonic() < settled:  # until the warm-up reads are all counted
            now = sum(scrape(f"http://127.0.0.1:{admin_port}").values())
            if now == last:
                break
            last = now
            time.sleep(1.0)
        workers = workers_of(proxy.pid)
        pids = {"proxy": [proxy.pid], "worker": workers}
        before = scrape(admin)
        cpu0 = {pid: _cpu(pid) for pid in [proxy.pid, *workers]}
        spies = []
        for role, role_pids in pids.items():
            for pid in role_pids:
                out = work / f"{role}-{pid}.txt"
                spies.append((role, pid, out, subprocess.Popen(
                    [py_spy, "record", "--pid", str(pid), "--rate", str(opts.sample_rate), "--nonblocking",
                     "--format", "raw", "--output", str(out)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        fixed = loadgen(url_file, opts.rate, opts.seconds)
        # the proxy's window ends with the load (what follows is this script's scraping)
        cpu1 = {proxy.pid: _cpu(proxy.pid)}
        for role, _, _, spy in spies:
            if role == "proxy":
                spy.send_signal(signal.SIGINT)
        # the window ends when every read is accounted for (compared, skipped or dropped),
        # so a worker that lags behind is charged for all of its work
        deadline = time.monotonic() + (0 if opts.passthrough else 60)
        after = scrape(admin)
        while time.monotonic() < deadline:
            after = scrape(admin)
            if sum(v - before.get(k, 0) for k, v in after.items()) >= fixed["sent"]:
                break
            time.sleep(0.5)
        cpu1.update({pid: _cpu(pid) for pid in workers})
        for role, _, _, spy in spies:
            if role == "worker":
                spy.send_signal(signal.SIGINT)
        for _, _, _, spy in spies:
            spy.wait(60)
    outcomes = sum(v - before.get(k, 0) for k, v in after.items() if k.startswith("comparisons:"))
    for key, value in sorted(after.items()):
        if value - before.get(key, 0):
            print(f"  {key}: {value - before.get(key, 0):g}")
    dropped = sum(v - before.get(k, 0) for k, v in after.items() if k.startswith("dropped:"))
    reads = fixed["sent"]
    table: dict[str, dict[str, float]] = {}
    samples: dict[str, int] = {}
    cpu_s: dict[str, float] = {}
    for role, rules in (("proxy", PROXY_STAGES), ("worker", WORKER_STAGES)):
        counts: collections.Counter[str] = collections.Counter()
        for spy_role, _pid, out, _ in spies:
            if spy_role == role:
                counts += read_collapsed(out, rules)
        seconds = sum(cpu1[pid] - cpu0[pid] for pid in pids[role])
        total = sum(counts.values()) or 1
        samples[role] = sum(counts.values())
        cpu_s[role] = round(seconds, 3)
        table[role] = {stage: round(seconds * counts[stage] / total / reads * 1e6, 1) for stage in ORDER if counts[stage]}
    report = {"passthrough": opts.passthrough, "drops": {k: v - before.get(k, 0) for k, v in after.items() if k.startswith("dropped:")},
              "when": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "label": opts.label,
              "rate": opts.rate, "seconds": opts.seconds, "workers": len(workers), "reads_sent": reads,
              "comparisons": outcomes, "dropped": dropped, "cpu_s": cpu_s, "samples": samples,
              "cpu_us_per_read": table, "fixed": fixed, "loadavg": os.getloadavg()}
    Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
    Path(opts.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"{reads} reads at {opts.rate:g}/s, {outcomes:g} comparisons, {dropped:g} dropped, "
          f"{len(workers)} worker(s), loadavg {os.getloadavg()[0]:.2f}")
    print(f"{'stage':<14}{'proxy µs':>10}{'worker µs':>11}")
    for stage in ORDER:
        p, w = table["proxy"].get(stage, 0.0), table["worker"].get(stage, 0.0)
        if p or w:
            print(f"{stage:<14}{p:>10.1f}{w:>11.1f}")
    total_p = cpu_s["proxy"] / reads * 1e6
    total_w = cpu_s["worker"] / reads * 1e6
    print(f"{'total':<14}{total_p:>10.1f}{total_w:>11.1f}   = {(total_p + total_w) / 1000:.3f} CPU-s per 1k reads")


if __name__ == "__main__":
    main()
