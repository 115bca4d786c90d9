"""Assemble and run the whole sidecar in the current event loop:

    sidecar = await start_sidecar(config)   # proxy + admin listening, shadow worker running
    ... sidecar.proxy_url, sidecar.admin_url, sidecar.sink, sidecar.registry ...
    await sidecar.pipeline.drain(10)          # wait until the shadow side is idle
    await sidecar.stop()                      # drains in-flight requests, then stops

With `shadow_process="worker"` (the default) the pipeline runs in a child process
(shadow/worker.py) and `sidecar.pipeline` is the Handoff to it; with "inline" the
Pipeline runs in this loop. Used by `shadow proxy` (serve.py), `shadow demo`, the tests
and the benchmarks. Every part can be injected (rules loader, sources, compare, span
exporter) so tests can run the real proxy against real servers with a piece swapped;
injected objects cannot cross a process boundary, so injecting a rules loader,
sources, compare or explain runs the pipeline inline.
"""
from __future__ import annotations

import asyncio
import calendar
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from shadow.publish.admin import Admin, GateHook
from shadow.publish.admin_auth import AdminAuth, is_loopback
from shadow.config import Config
from shadow.replay.handoff import Handoff
from shadow.publish.metrics import Metrics
from shadow.replay.pipeline import Pipeline, PipelineSettings
from shadow.replay.control import UpstreamControl
from shadow.proxy import raw as rawproxy
from shadow.proxy.aiohttp_engine import Proxy, serve
from shadow.publish.redaction import Redaction
from shadow.publish.sink import Divergence, Sink
from shadow.rules.reload import RulesHolder, default_loader
from shadow.tasks import TaskSet
from shadow.publish.tracing import Tracing

log = logging.getLogger("shadow.sidecar")

LAG_INTERVAL = 0.25
SOURCE_RETRY_SECONDS = 1.0


class RulesNotLoaded(RuntimeError):
    """The rules could not be loaded at start; `problems` are file:line messages."""

    def __init__(self, problems: tuple[str, ...]) -> None:
        super().__init__("rules not loaded:\n  " + "\n  ".join(problems))
        self.problems = problems


class LazySource:
    """A shadow source opened on first use and re-opened after it failed to open, so a
    database that is down at start (or later) never stops the proxy."""

    def __init__(self, name: str, open_source: Callable[[], Awaitable[Any]]) -> None:
        self.name = name
        self._open_source = open_source
        self._source: Any = None
        self._failed_at = -SOURCE_RETRY_SECONDS
        self._last_error: BaseException | None = None
        self._lock = asyncio.Lock()
        self._opening: asyncio.Future[Any] | None = None

    async def _get(self) -> Any:
        if self._source is not None:
            return self._source
        async with self._lock:
            if self._source is None:
                if time.monotonic() - self._failed_at < SOURCE_RETRY_SECONDS:
                    raise ConnectionError(f"{self.name} source unavailable: {self._last_error}")
                try:
                    self._source = await self._open_source()
                except Exception as problem:
                    self._failed_at, self._last_error = time.monotonic(), problem
                    raise
        return self._source

    async def warm(self, timeout: float) -> bool:
        """Open now rather than on the first read (the shadow worker, at start). False
        when it failed (retried on use) or is still opening after `timeout` (it goes
        on opening: the first reads then wait for it)."""
        try:
            self._opening = asyncio.ensure_future(self._get())  # a reference: it may outlive the wait
            await asyncio.wait_for(asyncio.shield(self._opening), timeout)
        except Exception as problem:
            log.warning("%s source not open at start (retried on use): %s", self.name, problem or type(problem).__name__)
            return False
        return True

    async def fetch(self, entity: Any, keys: Any) -> Any:
        return await (await self._get()).fetch(entity, keys)

    async def list_keys(self, entity: Any, route: Any, params: Any) -> Any:
        return await (await self._get()).list_keys(entity, route, params)

    async def close(self) -> None:
        if self._source is not None:
            with contextlib.suppress(Exception):
                await self._source.close()
            self._source = None


def default_sources(config: Config) -> dict[str, Any]:
    """The sources the config names, opened lazily."""
    sources: dict[str, Any] = {}
    if config.pg:
        async def open_postgres() -> Any:
            from shadow.replay.sources.postgres import PostgresSource

            # one connection per worker, plus one for the recheck task
            return await PostgresSource.create(config.pg, statement_timeout=config.source_timeout,
                                               pool_size=config.workers + 1)

        sources["postgres"] = LazySource("postgres", open_postgres)
    if config.mongo:
        async def open_mongo() -> Any:
            from shadow.replay.sources.mongo import MongoSource

            return MongoSource(config.mongo, config.mongo_db, timeout=config.source_timeout)

        sources["mongo"] = LazySource("mongo", open_mongo)
    return sources


def rules_facts(rules: Any) -> tuple[dict[str, Redaction], list[Divergence]]:
    """What the sink needs from the rules: each entity's redaction, known divergences."""
    redact: dict[str, Redaction] = {}
    divergences: list[Divergence] = []
    for name, entity in getattr(rules, "entities", {}).items():
        redact[name] = Redaction.of(getattr(entity, "redact", ()) or (), getattr(entity, "redact_names", ()) or ())
        for known in getattr(entity, "known", ()) or ():
            expires = getattr(known, "expires", None)
            # the end of the expiry day, UTC (compare() counts a divergence until that day ends)
            stamp = (calendar.timegm(expires.timetuple()) + 86400.0 if expires is not None and hasattr(expires, "timetuple")
                     else float("inf"))
            divergences.append(Divergence(name, getattr(known, "path", "?"), stamp))
    return redact, divergences


@dataclass
class Sidecar:
    """A running sidecar. `stop()` drains in-flight requests, then stops everything."""

    config: Config
    proxy_url: str
    admin_url: str
    sink: Sink
    rules: RulesHolder
    pipeline: Pipeline | Handoff  # what the proxy hands captured reads to
    proxy: Proxy | rawproxy.RawProxy  # per config.engine
    admin: Admin
    _runners: list[Any] = field(default_factory=list)  # the proxy's server (cleanup() drains), the admin's
    _sources: Mapping[str, Any] = field(default_factory=dict)
    _tasks: TaskSet = field(default_factory=lambda: TaskSet("sidecar"))
    _stopped: bool = False

    @property
    def registry(self) -> CollectorRegistry:
        return self.sink.metrics.registry

    def set_gate(self, gate: GateHook | None) -> None:
        """What /gate answers with (the gate's local evaluation); None = 501."""
        self.admin.gate = gate

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        proxy_runner, admin_runner = self._runners
        await proxy_runner.cleanup()  # stops accepting, waits for in-flight requests
        await self.pipeline.close()
        await admin_runner.cleanup()
        await self.rules.close()
        await self._tasks.close()
        for source in self._sources.values():
            with contextlib.suppress(Exception):
                await source.close()
        await self.proxy.close()
        # flushing spans to an OTLP collector is blocking HTTP: not on the loop
        await asyncio.to_thread(self.sink.close)


async def _sample_loop_lag(metrics: Metrics) -> None:
    """A sleeper: how late it wakes up is how long the loop was busy elsewhere."""
    while True:
        asked = time.monotonic()
        await asyncio.sleep(LAG_INTERVAL)
        lag = max(0.0, time.monotonic() - asked - LAG_INTERVAL)
        metrics.loop_lag.set(lag)
        metrics.loop_lag_hist.observe(lag)


async def _flush_every_second(sink: Sink) -> None:
    while True:
        await asyncio.sleep(1.0)
        sink.flush()


async def start_sidecar(config: Config, *, registry: CollectorRegistry | None = None,
                        rules_loader: Callable[[Path], Any] = default_loader,
                        sources: Mapping[str, Any] | None = None,
                        compare: Callable[..., Any] | None = None, explain: Callable[..., Any] | None = None,
                        span_exporter: Any = None, gate: GateHook | None = None,
                        install_signal_handlers: bool = False) -> Sidecar:
    """Start proxy, pipeline and admin server in the running loop. Raises
    RulesNotLoaded when the rules cannot be loaded at start (a bad edit later keeps the
    last good rules instead)."""
    metrics = Metrics(registry)
    sink = Sink(metrics, Tracing(config.otlp_endpoint, span_exporter), config.mismatch_log, config.recent_mismatches)
    handoff: Handoff | None = None

    def rules_changed(rules: Any) -> None:
        sink.use_rules(*rules_facts(rules))
        if handoff is not None:
            handoff.rules_changed(rules)

    loader = rules_loader
    if rules_loader is default_loader:
        loader = functools.partial(default_loader, policy=config.rules_policy)
    holder = RulesHolder(config.rules, metrics, loader, on_change=rules_changed)
    first = holder.load()
    if not first.ok:
        sink.close()
        raise RulesNotLoaded(first.problems)
    inline = (config.shadow_process == "inline" or rules_loader is not default_loader
              or sources is not None or compare is not None or explain is not None)
    opened_sources: dict[str, Any] = {}
    pipeline: Pipeline | Handoff
    if inline:
        if compare is None or explain is None:
            from shadow.compare import diff as compare_diff
            from shadow.compare import explain as compare_explain

            compare = compare or compare_diff.compare
            explain = explain or compare_explain.explain
        opened_sources = dict(sources) if sources is not None else default_sources(config)
        pipeline = Pipeline(
            PipelineSettings(queue_size=config.queue_size, workers=config.workers, batch_size=config.batch_size,
                             source_timeout=config.source_timeout, rate_limit=config.rate_limit,
                             explain_rate=config.explain_rate, recheck_capacity=config.queue_size,
                             queue_bytes=max(64 * 1024 * 1024, 4 * config.max_body_bytes)),
            sink, lambda: holder.current, opened_sources, compare, explain,
            upstream=UpstreamControl(config.upstream, config.source_timeout))
        pipeline.start()
    else:
        pipeline = handoff = Handoff(config, sink)
        await handoff.start()
    engine, serve_engine = (rawproxy.RawProxy, rawproxy.serve) if config.engine == "raw" else (Proxy, serve)
    proxy = engine(config.upstream, lambda: holder.current, pipeline, metrics,
                   max_body_bytes=config.max_body_bytes, upstream_timeout=config.upstream_timeout)
    await proxy.open()
    host, port = Config.host_port(config.listen)
    admin_host, admin_port = Config.host_port(config.admin_listen)
    auth = AdminAuth(config.admin_token_value, exposed=not is_loopback(admin_host))
    auth.warn_if_refusing()
    admin = Admin(sink, holder, config.upstream, gate, auth)
    try:
        proxy_runner, bound = await serve_engine(proxy, host, port, config.drain_timeout)  # type: ignore[arg-type]
        admin_runner = web.AppRunner(admin.app(), access_log=None)
        await admin_runner.setup()
        await web.TCPSite(admin_runner, admin_host, admin_port, reuse_address=True).start()
    except BaseException:  # e.g. address in use: leave no worker process behind
        await pipeline.close()
        await proxy.close()
        sink.close()
        raise
    admin_bound = admin_runner.addresses[0][1]
    sidecar = Sidecar(config=config, proxy_url=f"http://{_url_host(host)}:{bound}",
                      admin_url=f"http://{_url_host(admin_host)}:{admin_bound}", sink=sink, rules=holder,
                      pipeline=pipeline, proxy=proxy, admin=admin, _runners=[proxy_runner, admin_runner],
                      _sources=opened_sources)
    sidecar._tasks.spawn(_sample_loop_lag(metrics), "loop-lag")
    sidecar._tasks.spawn(_flush_every_second(sink), "flush-log")
    if config.reload == "watch":
        holder.watch()
    if install_signal_handlers:
        holder.on_sighup()
    log.info("proxy on %s -> %s; admin on %s; rules %s (%d routes)", sidecar.proxy_url, config.upstream,
             sidecar.admin_url, holder.current.version, len(holder.current.routes))
    return sidecar


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "", "::"):  # listening everywhere: reach it on loopback
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


__all__ = ["Sidecar", "start_sidecar", "RulesNotLoaded", "LazySource"]
