"""Real Prometheus (Debian's 2.42 binary, loopback, 1 s scrape/eval interval) and real
HTTP exporters serving a prometheus_client registry, for the gate tests. Every process
started here is stopped at teardown, even when the test fails."""
from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "rules" / "alerts.yml"
PROMETHEUS = shutil.which("prometheus")

needs_prometheus = pytest.mark.needs_tool("prometheus")  # Debian package `prometheus`


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningPrometheus:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    async def query(self, promql: str) -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{self.url}/api/v1/query", params={"query": promql}) as response:
                body = await response.json()
        assert body["status"] == "success", body
        return body["data"]["result"]

    async def wait_for(self, promql: str, ready: Callable[[list[dict[str, Any]]], bool], timeout: float = 40) -> list[dict[str, Any]]:
        """Poll an instant query until `ready(result)`; the first scrape lands seconds after start."""
        deadline = time.monotonic() + timeout
        while True:
            result = await self.query(promql)
            if ready(result):
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"Prometheus never had {promql!r} ready; last: {result}; log: {self.log.read_text()[-2000:]}")
            await asyncio.sleep(0.5)

    async def scrapes(self, count: int = 2) -> None:
        """Let `count` more scrape/evaluation rounds happen."""
        await asyncio.sleep(1.1 * count)


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[Callable[..., RunningPrometheus]]:
    """start_prometheus(targets, with_alerts=True) -> a running Prometheus scraping `targets`."""
    running: list[RunningPrometheus] = []

    def start(targets: list[str], with_alerts: bool = True) -> RunningPrometheus:
        assert PROMETHEUS is not None
        home = tmp_path / f"prometheus-{len(running)}"
        home.mkdir()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": [str(ALERTS)] if with_alerts else [],
            "scrape_configs": [{"job_name": "shadow", "static_configs": [{"targets": targets}]}],
        }
        (home / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        log = home / "prometheus.log"
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                [PROMETHEUS, f"--config.file={home / 'prometheus.yml'}", f"--storage.tsdb.path={home / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"],
                stdout=log_file, stderr=subprocess.STDOUT,
            )
        server = RunningPrometheus(f"http://127.0.0.1:{port}", process, log)
        running.append(server)
        deadline = time.monotonic() + 20
        while True:  # /-/ready answers 503 until the TSDB is open
            try:
                with urllib.request.urlopen(f"{server.url}/-/ready", timeout=0.5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"Prometheus did not start: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        return server

    try:
        yield start
    finally:
        for server in running:
            server.stop()


@dataclass
class Exporter:
    """A real HTTP /metrics endpoint serving one registry (what the sidecar's admin does)."""

    registry: CollectorRegistry
    target: str = ""
    runner: web.AppRunner | None = field(default=None, repr=False)


@pytest.fixture
async def start_exporter() -> AsyncIterator[Callable[[CollectorRegistry], Any]]:
    exporters: list[Exporter] = []

    async def start(registry: CollectorRegistry) -> Exporter:
        exporter = Exporter(registry)

        async def metrics(_: web.Request) -> web.Response:  # reads exporter.registry: tests swap it to "restart"
            return web.Response(body=generate_latest(exporter.registry), content_type="text/plain", charset="utf-8")

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        exporter.target, exporter.runner = f"{host}:{port}", runner
        exporters.append(exporter)
        return exporter

    try:
        yield start
    finally:
        for exporter in exporters:
            if exporter.runner is not None:
                await exporter.runner.cleanup()
