"""Proxy benchmark (issue 4): what the sidecar costs the user path, in one run.

Targets, all in front of the same sample API process:
  direct       the sample API itself
  nginx        nginx, one worker, keep-alive upstream pool (the reference reverse proxy)
  shadow_off   `shadow proxy` with a routeless rules set (pure pass-through; raw engine)
  shadow_off_aiohttp_engine   the same with `--engine aiohttp`
  shadow_on    `shadow proxy` with the marketplace rules, 100 % sampling
  shadow_stall `shadow proxy` as shadow_on, with PostgreSQL stalled (ACCESS EXCLUSIVE locks held)

For each: max throughput (wrk, closed loop), p50/p99 at a fixed offered 1,000 req/s
(bench/loadgen.py, open loop, its own process), proxy CPU seconds per 1,000 requests,
peak RSS, and shadow counters (comparisons, drops). Then a 10x overload run for RSS.
Writes bench/results/proxy.json and prints a table. Ratios are what to read: the
machine is shared and has 2 cores, so absolute numbers move from run to run.

The sample API runs with --cache (documents served from memory after the first read),
so the upstream is not the bottleneck that hides the proxy's own cost.

    .venv/bin/python bench/proxy.py [--seconds 5] [--rounds 3] [--rate 1000]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shadow.demo.embedded import free_port, start_mongo, start_postgres  # noqa: E402

PY = sys.executable
SHADOW = str(Path(PY).parent / "shadow")


def wait_http(url: str, timeout: float = 30) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def proc_tree(pid: int) -> list[int]:
    """pid and its children (nginx: the master and its one worker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(int(c) for c in children)]


def proc_cpu(pid: int) -> float:
    return sum(_cpu(p) for p in proc_tree(pid))


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_peak_rss_mb(pid: int) -> float:
    """The largest single process of the tree (shadow: the proxy or its worker)."""
    return max(_peak_rss_mb(p) for p in proc_tree(pid))


def proc_peak_rss_sum_mb(pid: int) -> float:
    """Peak RSS summed over the tree (an upper bound: the peaks need not coincide)."""
    return sum(_peak_rss_mb(p) for p in proc_tree(pid))


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class World:
    """What every proxy benchmark runs against: the seeded stores and the sample API."""

    pg: Any
    mongo: Any
    spawn: Callable[..., subprocess.Popen[bytes]]  # (argv, env=None): logged to `work`, stopped on exit
    direct: str  # the sample API's URL
    paths: list[str]  # the single-document reads to rotate through


def marketplace_world(stack: ExitStack, work: Path, scale: int) -> World:
    """PostgreSQL and Mongo seeded with the marketplace (drift planted), and the sample
    API in front of Mongo with its cache on; everything is stopped when `stack` closes."""
    pg = start_postgres()
    stack.callback(pg.cleanup)
    mongo = start_mongo()
    stack.callback(mongo.stop)
    subprocess.run([SHADOW, "seed", "--pg", pg.dsn, "--mongo", mongo.uri, "--db", "bench",
                    "--scale", str(scale), "--seed", "7", "--drift"], check=True, capture_output=True)

    def spawn(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = stack.enter_context(open(work / f"{Path(argv[0]).name}-{len(list(work.iterdir()))}.log", "wb"))  # noqa: SIM115 - the stack closes it
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        stack.callback(lambda: (process.terminate(), process.wait(30)))
        return process

    api_port = free_port()
    spawn([PY, "-m", "shadow.demo.marketplace.api", "--mongo", mongo.uri, "--db", "bench",
           "--port", str(api_port), "--cache", "--quiet"])
    direct = f"http://127.0.0.1:{api_port}"
    wait_http(direct + "/healthz")
    return World(pg, mongo, spawn, direct, asyncio.run(_read_paths(mongo.uri, "bench")))


def routeless_rules(work: Path) -> Path:
    """A valid rules set with no routes: nothing is ever matched (shadowing off)."""
    rules = work / "no-routes"
    rules.mkdir()
    ledger = (ROOT / "rules" / "marketplace" / "funds_ledger_entries.yaml").read_text()
    (rules / "ledger.yaml").write_text(ledger.split("\nroutes:")[0] + "\n")
    return rules


def image_like_env(work: Path) -> dict[str, str]:
    """The environment the shadow processes run in, as in the image: requirements.lock has
    no numpy, and this venv has it only because the embedded Mongo server (SecantusDB)
    needs it; deepdiff imports it when present (11 MB resident per worker)."""
    hidden = work / "image-like"
    (hidden / "numpy").mkdir(parents=True, exist_ok=True)
    (hidden / "numpy" / "__init__.py").write_text('raise ImportError("numpy is not in the shadow image")\n')
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(hidden), os.environ.get("PYTHONPATH")]))}


def ensure_wrk() -> str:
    """The `wrk` binary: found on PATH, or installed from the Debian package `wrk` when
    missing and running as root (apt-get); otherwise exit with how to get it."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk not found: apt-get install -y wrk", file=sys.stderr, flush=True)
        install = ["apt-get", "install", "-y", "--no-install-recommends", "wrk"]
        if subprocess.run(install, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True)
            subprocess.run(install, capture_output=True)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit("bench/proxy.py needs wrk (max throughput): `apt-get install wrk` (Debian/Ubuntu), "
                     "`brew install wrk`, or build https://github.com/wg/wrk and put it on PATH")


def wrk(url: str, lua: Path, seconds: float, connections: int = 32) -> dict[str, float]:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "-s", str(lua), url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"max_rps": rps, "non_2xx": int(errors.group(1)) if errors else 0}


def loadgen(url_file: Path, rate: float, seconds: float) -> dict[str, float]:
    out = subprocess.run([PY, str(ROOT / "bench" / "loadgen.py"), str(url_file), str(rate), str(seconds)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def scrape(admin: str) -> dict[str, float]:
    import urllib.request

    text = urllib.request.urlopen(admin + "/metrics", timeout=5).read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r'shadow_(comparisons|dropped|skipped)_total\{(.*)\} ([\d.e+]+)', line)
        if match:
            kind, labels, value = match.groups()
            label = re.search(r'(outcome|reason)="([^"]+)"', labels)
            key = f"{kind}:{label.group(2) if label else ''}"
            totals[key] = totals.get(key, 0) + float(value)
    return totals


async def stall_postgres(dsn: str) -> asyncpg.Connection:
    """Hold ACCESS EXCLUSIVE locks on every table: every shadow query waits until its timeout."""
    conn = await asyncpg.connect(dsn)
    tables = [r["tablename"] for r in await conn.fetch("select tablename from pg_tables where schemaname='public'")]
    await conn.execute("begin")
    for table in tables:
        await conn.execute(f'lock table "{table}" in access exclusive mode')
    return conn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--scale", type=int, default=200)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "proxy.json"))
    parser.add_argument("--shadow-workers", type=int, default=0, help="shadow worker processes (0 = the proxy's default)")
    opts = parser.parse_args()
    ensure_wrk()
    if not shutil.which("nginx"):
        raise SystemExit("bench/proxy.py needs nginx (the reference proxy): `apt-get install nginx-light`")
    work = Path(tempfile.mkdtemp(prefix="shadow-bench-"))
    results: dict[str, dict] = {}
    with ExitStack() as stack:
        world = marketplace_world(stack, work, opts.scale)
        pg, mongo, spawn, direct, paths = world.pg, world.mongo, world.spawn, world.direct, world.paths
        lua = work / "rotate.lua"
        lua.write_text("paths = {" + ",".join(f'"{p}"' for p in paths) + "}\ni = 0\n"
                       "request = function()\n  i = (i % #paths) + 1\n  return wrk.format('GET', paths[i])\nend\n")
        # warm the upstream cache so every target sees the same upstream
        subprocess.run(["wrk", "-t1", "-c8", "-d2s", "-s", str(lua), direct], capture_output=True, check=True)

        ngx_port = free_port()
        ngx_conf = work / "nginx.conf"
        ngx_conf.write_text(f"""worker_processes 1; pid {work}/nginx.pid; error_log {work}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{ access_log off; upstream api {{ server {direct.removeprefix("http://")}; keepalive 64; }}
  server {{ listen 127.0.0.1:{ngx_port};
    location / {{ proxy_pass http://api; proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}
""")
        nginx = spawn(["nginx", "-c", str(ngx_conf), "-p", str(work), "-g", "daemon off;"])
        wait_http(f"http://127.0.0.1:{ngx_port}/healthz")

        empty_rules = routeless_rules(work)  # shadowing off

        image_env = image_like_env(work)

        def shadow(rules: Path, engine: str = "raw") -> tuple[subprocess.Popen[bytes], str, str]:
            port, admin_port = free_port(), free_port()
            process = spawn([SHADOW, "proxy", "--upstream", direct, "--rules", str(rules), "--pg", pg.dsn,
                             "--mongo", mongo.uri, "--mongo-db", "bench",
                             "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin_port}",
                             "--source-timeout", "0.5", "--mismatch-log", str(work / "mismatches.jsonl"),
                             "--engine", engine,
                             *(["--shadow-workers", str(opts.shadow_workers)] if opts.shadow_workers else [])],
                            env=image_env)
            admin = f"http://127.0.0.1:{admin_port}"
            wait_http(admin + "/healthz")
            return process, f"http://127.0.0.1:{port}", admin

        def measure_once(name: str, url: str, pid: int | None) -> dict[str, float]:
            url_file = work / f"urls-{name}.txt"
            url_file.write_text("\n".join(url + p for p in paths))
            row: dict[str, float] = {}
            cpu0 = proc_cpu(pid) if pid else 0.0
            fixed = loadgen(url_file, opts.rate, opts.seconds)
            if pid:
                row["cpu_s_per_1k_req"] = round((proc_cpu(pid) - cpu0) / (fixed["sent"] / 1000), 4)
            row.update({f"fixed_{k}": v for k, v in fixed.items()})
            row.update(wrk(url, lua, opts.seconds))
            return row

        def summarize(name: str, runs: list[dict[str, float]], pid: int | None, admin: str | None) -> None:
            """Median of the rounds for every figure; the rounds themselves are kept too."""
            row: dict[str, object] = {key: round(statistics.median(run[key] for run in runs), 4) for key in runs[0]}
            row["rounds"] = runs
            if pid:
                row["peak_rss_mb"] = round(proc_peak_rss_mb(pid), 1)
                row["peak_rss_sum_mb"] = round(proc_peak_rss_sum_mb(pid), 1)
            if admin:
                time.sleep(1.0)  # let the pipeline finish what it queued
                row["shadow"] = scrape(admin)
            results[name] = row
            print(name, json.dumps({k: v for k, v in row.items() if k != "rounds"}), flush=True)

        off, off_url, off_admin = shadow(empty_rules)
        off_aio, off_aio_url, off_aio_admin = shadow(empty_rules, engine="aiohttp")
        on, on_url, on_admin = shadow(ROOT / "rules" / "marketplace")
        targets = {"direct": (direct, None, None), "nginx": (f"http://127.0.0.1:{ngx_port}", nginx.pid, None),
                   "shadow_off": (off_url, off.pid, off_admin),
                   "shadow_off_aiohttp_engine": (off_aio_url, off_aio.pid, off_aio_admin),
                   "shadow_on": (on_url, on.pid, on_admin)}
        # Rounds interleave the targets, so a noisy moment on the shared machine hits one
        # round of each rather than all of one target; the medians are what is reported.
        rounds: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        for _ in range(opts.rounds):
            for name, (url, pid, _admin) in targets.items():
                rounds[name].append(measure_once(name, url, pid))
        for name, (_url, pid, admin) in targets.items():
            summarize(name, rounds[name], pid, admin)
        off.terminate()
        off_aio.terminate()

        async def stalled() -> None:
            conn = await stall_postgres(pg.dsn)
            try:
                runs = [await asyncio.to_thread(measure_once, "shadow_stall", on_url, on.pid) for _ in range(opts.rounds)]
                summarize("shadow_stall", runs, on.pid, on_admin)
            finally:
                await conn.close()

        asyncio.run(stalled())
        # 10x overload: many more connections than the fixed-load run, as fast as possible
        overload = wrk(on_url, lua, opts.seconds, connections=256)
        results["shadow_overload"] = {**overload, "peak_rss_mb": round(proc_peak_rss_mb(on.pid), 1),
                                      "peak_rss_sum_mb": round(proc_peak_rss_sum_mb(on.pid), 1),
                                      "shadow": scrape(on_admin)}
        print("shadow_overload", json.dumps(results["shadow_overload"]), flush=True)

    d, n, off_r, on_r, st = (results[k] for k in ("direct", "nginx", "shadow_off", "shadow_on", "shadow_stall"))
    ratios = {
        "added_p50_ms_shadow_on": round(on_r["fixed_p50_ms"] - d["fixed_p50_ms"], 3),
        "added_p99_ms_shadow_on": round(on_r["fixed_p99_ms"] - d["fixed_p99_ms"], 3),
        "added_p50_ms_shadow_off": round(off_r["fixed_p50_ms"] - d["fixed_p50_ms"], 3),
        "added_p50_ms_nginx": round(n["fixed_p50_ms"] - d["fixed_p50_ms"], 3),
        "added_p99_ms_stalled_vs_on": round(st["fixed_p99_ms"] - on_r["fixed_p99_ms"], 3),
        "max_rps_shadow_on_over_off": round(on_r["max_rps"] / off_r["max_rps"], 3),
        "max_rps_shadow_off_over_direct": round(off_r["max_rps"] / d["max_rps"], 3),
        "max_rps_shadow_off_over_nginx": round(off_r["max_rps"] / n["max_rps"], 3),
        "max_rps_raw_engine_over_aiohttp_engine": round(off_r["max_rps"] / results["shadow_off_aiohttp_engine"]["max_rps"], 3),
        "cpu_per_1k_raw_engine_over_aiohttp_engine": round(off_r["cpu_s_per_1k_req"] / results["shadow_off_aiohttp_engine"]["cpu_s_per_1k_req"], 3),
        "cpu_per_1k_shadow_on_over_nginx": round(on_r["cpu_s_per_1k_req"] / max(n["cpu_s_per_1k_req"], 1e-9), 2),
        "vcpu_per_1k_rps_shadow_on": on_r["cpu_s_per_1k_req"],
    }
    report = {"when": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "cores": os.cpu_count(),
              "seconds_per_run": opts.seconds, "rounds": opts.rounds, "fixed_rate": opts.rate, "targets": results, "ratios": ratios}
    Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
    Path(opts.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(ratios, indent=2))


async def _read_paths(uri: str, db: str) -> list[str]:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient = AsyncMongoClient(uri, tz_aware=True)
    try:
        paths: list[str] = []
        for collection, prefix in (("payments", "/api/payments/"), ("users", "/api/users/"),
                                   ("purchaserequests", "/api/purchase-requests/"), ("disputes", "/api/disputes/")):
            async for doc in client[db][collection].find({}, {"_id": 1}).limit(100):
                paths.append(prefix + str(doc["_id"]))
        return paths
    finally:
        await client.close()


if __name__ == "__main__":
    main()
