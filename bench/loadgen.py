"""Open-loop HTTP/1.1 load at a fixed offered rate, for latency percentiles.

Run as its own process (`python bench/loadgen.py URL_FILE RATE SECONDS`) so the client
does not share an event loop with what it measures. Requests go out on a schedule
(t0 + i/rate) whether or not earlier ones returned; latency is measured from the
scheduled time, so a stalled server cannot hide its queueing (no coordinated omission).
Prints one JSON line: sent, ok, errors, p50/p90/p99/max in milliseconds.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import urlsplit


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> int:
    writer.write(head)
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    length = 0
    chunked = False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readline()).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def run(urls: list[str], rate: float, seconds: float, connections: int = 64) -> dict[str, float]:
    parts = urlsplit(urls[0])
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    heads = [
        f"GET {urlsplit(u).path}{'?' + urlsplit(u).query if urlsplit(u).query else ''} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\nUser-Agent: shadow-bench\r\n\r\n".encode()
        for u in urls
    ]
    total = int(rate * seconds)
    schedule: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    latencies: list[float] = []
    errors = 0

    async def connection_worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        while True:
            item = await schedule.get()
            if item is None:
                break
            due, head = item
            try:
                status = await _request(reader, writer, head)
                if status >= 500:
                    errors += 1
                latencies.append(time.perf_counter() - due)
            except (OSError, ValueError, asyncio.IncompleteReadError):
                errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
        writer.close()

    workers = [asyncio.ensure_future(connection_worker()) for _ in range(connections)]
    await asyncio.sleep(0.2)  # connections up before the clock starts
    start = time.perf_counter()
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        schedule.put_nowait((due, heads[i % len(heads)]))
    for _ in workers:
        schedule.put_nowait(None)
    await asyncio.wait_for(asyncio.gather(*workers), timeout=seconds + 30)
    elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 3) if latencies else float("nan")

    return {"offered_rps": rate, "sent": total, "ok": len(latencies) - errors, "errors": errors,
            "achieved_rps": round(len(latencies) / elapsed, 1),
            "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99), "max_ms": pct(1.0 - 1e-9)}


def main() -> None:
    url_file, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    with open(url_file) as handle:
        urls = [line.strip() for line in handle if line.strip()]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(urls, rate, seconds))))


if __name__ == "__main__":
    main()
