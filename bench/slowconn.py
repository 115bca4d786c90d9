"""Slow-connection benchmark (issue 9): up to 20,000 clients trickle a request head one
byte every few seconds into `shadow proxy` on loopback, while a fresh client keeps
asking for a page. Records whether the fresh client got through, the proxy's RSS and
descriptor count, how the slow connections ended (evicted, 408, 503), and whether the
proxy logged EMFILE. Bounded: it opens `--connections`, holds them `--hold` seconds, and
stops by itself. Not a test: no pass/fail, figures in bench/results/slowconn.json.

The script raises its own descriptor limit (soft -> hard) and the proxy inherits it;
the slow clients are spread over worker processes so no single process needs more than
~10,000 descriptors.

    .venv/bin/python bench/slowconn.py [--connections 20000] [--hold 30] [--engines raw aiohttp]
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
PER_WORKER = 9000
RULES = """\
entity: widgets
collection: widgets
table: widgets
key_type: string
fields:
  name: name
routes:
  - route: GET /widgets/{id}
"""


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------- the upstream (a subprocess)

async def upstream_main(port: int) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


# ---------------------------------------------------------------- slow clients (subprocesses)

async def slow_main(port: int, count: int, seconds: float, trickle: float) -> None:
    """Opens `count` connections that trickle a head; after `seconds` reports how they ended."""
    ends: dict[str, int] = {}
    opened = failed = 0
    stop_at = time.monotonic() + seconds
    gate = asyncio.Semaphore(200)

    async def one() -> None:
        nonlocal opened, failed
        async with gate:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
            except (OSError, TimeoutError):
                failed += 1
                return
            opened += 1
            writer.write(b"GET /widgets/1 HTTP/1.1\r\nHost: api\r\n")
        answer = asyncio.ensure_future(reader.read(64))
        try:
            while time.monotonic() < stop_at:
                done, _ = await asyncio.wait({answer}, timeout=min(trickle, max(0.0, stop_at - time.monotonic())))
                if done:
                    data = answer.result() if not answer.exception() else b""
                    key = data.split(b"\r\n", 1)[0].decode("latin-1", "replace") if data else "closed"
                    ends[key] = ends.get(key, 0) + 1
                    return
                writer.write(b"X")  # one byte of a header that never ends
            ends["held to the end"] = ends.get("held to the end", 0) + 1
        except (ConnectionError, OSError):
            ends["reset"] = ends.get("reset", 0) + 1
        finally:
            answer.cancel()
            writer.close()

    await asyncio.gather(*(one() for _ in range(count)))
    print(json.dumps({"opened": opened, "connect_failed": failed, "ends": ends}))


# ---------------------------------------------------------------- the run

def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


def fresh_request(port: int) -> tuple[str, float]:
    started = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /widgets/1 HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
        status = data.split(b"\r\n", 1)[0].decode("latin-1") or "closed"
    except OSError as problem:
        status = type(problem).__name__
    return status, time.perf_counter() - started


def run(engine: str, connections: int, hold: float, trickle: float, max_connections: int | None) -> dict[str, object]:
    up_port, port, admin = free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "rules"
        rules.mkdir()
        (rules / "widgets.yaml").write_text(RULES)
        upstream = subprocess.Popen([PY, __file__, "--upstream-server", str(up_port)])
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        command = [PY, "-m", "shadow.cli", "proxy", "--upstream", f"http://127.0.0.1:{up_port}", "--rules", str(rules),
                   "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}", "--engine", engine,
                   "--shadow-process", "inline", "--log-level", "warning", "--mismatch-log", os.devnull]
        if max_connections is not None:
            command += ["--max-connections", str(max_connections)]
        log_path = Path(tmp) / "proxy.log"
        with open(log_path, "wb") as log:
            proxy = subprocess.Popen(command, env=env, stderr=log, stdout=log)
        try:
            deadline = time.monotonic() + 60
            while fresh_request(port)[0] != "HTTP/1.1 200 OK":
                if time.monotonic() > deadline or proxy.poll() is not None:
                    raise RuntimeError("proxy did not start: " + log_path.read_text()[-2000:])
                time.sleep(0.2)
            baseline = rss_kib(proxy.pid)[0]
            workers = []
            left = connections
            while left > 0:
                share = min(PER_WORKER, left)
                left -= share
                workers.append(subprocess.Popen([PY, __file__, "--slow-worker", str(port), str(share), str(hold),
                                                 str(trickle)], stdout=subprocess.PIPE, text=True))
            fresh: list[tuple[float, str, float]] = []
            peaks = {"fds": 0, "rss": 0}
            flooding = threading.Event()
            flooding.set()

            def sample() -> None:  # every 0.2 s: the proxy's descriptors and RSS
                while flooding.is_set():
                    with contextlib.suppress(OSError):
                        peaks["fds"] = max(peaks["fds"], len(os.listdir(f"/proc/{proxy.pid}/fd")))
                        peaks["rss"] = max(peaks["rss"], rss_kib(proxy.pid)[0])
                    time.sleep(0.2)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.monotonic()
            while any(worker.poll() is None for worker in workers):
                status, seconds = fresh_request(port)
                fresh.append((round(time.monotonic() - started, 1), status, round(seconds, 4)))
                time.sleep(0.5)
            flooding.clear()
            sampler.join()
            peak_fds, peak_rss = peaks["fds"], peaks["rss"]
            reports = [json.loads(worker.communicate()[0] or "{}") for worker in workers]
            after_status, _ = fresh_request(port)
            alive = proxy.poll() is None
            hwm = rss_kib(proxy.pid)[1] if alive else 0
        finally:
            proxy.terminate()
            upstream.terminate()
            proxy.wait(30)
            upstream.wait(30)
        text = log_path.read_text(errors="replace")
    ends: dict[str, int] = {}
    for report in reports:
        for key, value in report.get("ends", {}).items():
            ends[key] = ends.get(key, 0) + value
    ok = [item for item in fresh if item[1] == "HTTP/1.1 200 OK"]
    return {
        "engine": engine, "slow_connections_asked": connections, "hold_seconds": hold, "trickle_seconds": trickle,
        "max_connections_flag": max_connections or 10000,
        "slow_opened": sum(report.get("opened", 0) for report in reports),
        "slow_connect_failed": sum(report.get("connect_failed", 0) for report in reports),
        "slow_ends": ends,
        "fresh_requests": len(fresh), "fresh_ok": len(ok),
        "fresh_not_ok": [item for item in fresh if item[1] != "HTTP/1.1 200 OK"][:20],
        "fresh_seconds_max": max((item[2] for item in ok), default=None),
        "fresh_after_flood": after_status,
        "proxy_rss_mib_baseline": round(baseline / 1024, 1), "proxy_rss_mib_peak_sampled": round(peak_rss / 1024, 1),
        "proxy_rss_mib_hwm": round(hwm / 1024, 1), "proxy_fds_peak": peak_fds,
        "proxy_alive": alive, "emfile_in_log": text.count("Too many open files"),
        "proxy_log_tail": text[-800:],
    }


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--upstream-server":
        asyncio.run(upstream_main(int(sys.argv[2])))
        return
    if len(sys.argv) > 2 and sys.argv[1] == "--slow-worker":
        raise_fd_limit()
        port, count, hold, trickle = sys.argv[2:6]
        asyncio.run(slow_main(int(port), int(count), float(hold), float(trickle)))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=20000)
    parser.add_argument("--hold", type=float, default=30.0, help="seconds each slow client keeps going")
    parser.add_argument("--trickle", type=float, default=5.0, help="seconds between its bytes")
    parser.add_argument("--engines", nargs="+", default=["raw", "aiohttp"])
    parser.add_argument("--max-connections", type=int, default=None)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "slowconn.json"))
    args = parser.parse_args()
    limit = raise_fd_limit()
    results = {"fd_limit": limit, "runs": [run(engine, args.connections, args.hold, args.trickle, args.max_connections)
                                           for engine in args.engines]}
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    for result in results["runs"]:
        print(json.dumps({key: value for key, value in result.items() if key != "proxy_log_tail"}, indent=2))


if __name__ == "__main__":
    main()
