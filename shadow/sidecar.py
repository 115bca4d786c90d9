"""Assemble and run the whole sidecar in the current event loop:

    sidecar = await start_sidecar(config)   # proxy + admin listening, shadow worker running
    ... sidecar.proxy_url, sidecar.admin_url, sidecar.sink, sidecar.registry ...
    await sidecar.pipeline.drain(10)          # wait until the shadow side is idle
    await sidecar.stop()                      # drains in-flight requests, then stops

With `shadow_process="worker"` (the default) the pipeline runs in a child process
(shadow/replay/worker.py) and `sidecar.pipeline` is the Handoff to it; with "inline" the
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
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from shadow.config import Config, RequestLimits
from shadow.model import FieldDiff, Verdict
from shadow.proxy import raw as rawproxy
from shadow.proxy.aiohttp_engine import Proxy
from shadow.proxy.aiohttp_guard import serve, serve_app
from shadow.proxy.recording import Recorder, RecordSettings
from shadow.publish.admin import Admin, GateHook
from shadow.publish.admin_auth import AdminAuth, is_loopback
from shadow.publish.evidence import EvidenceWriter, evidence_writer
from shadow.publish.metrics import Metrics
from shadow.publish.redaction import Redaction
from shadow.publish.secretvalues import set_key as set_redaction_key
from shadow.publish.sink import Divergence, Sink
from shadow.publish.tracing import Tracing
from shadow.replay.handoff import Handoff
from shadow.replay.pipeline import Pipeline
from shadow.replay.plans import load_compiled
from shadow.replay.settings import pipeline_settings, recheck_upstream
from shadow.replay.sources import Source
from shadow.replay.sources.lazy import LazySource, default_sources
from shadow.rules.load import RuleSet
from shadow.rules.reload import RulesHolder, default_loader
from shadow.shadowside import ShadowSide
from shadow.tasks import TaskSet

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger("shadow.sidecar")

LAG_INTERVAL = 0.25


class RulesNotLoaded(RuntimeError):
    """The rules could not be loaded at start; `problems` are file:line messages."""

    def __init__(self, problems: tuple[str, ...]) -> None:
        super().__init__("rules not loaded:\n  " + "\n  ".join(problems))
        self.problems = problems


def rules_facts(rules: RuleSet) -> tuple[dict[str, Redaction], list[Divergence]]:
    """What the sink needs from the rules: each entity's redaction, known divergences."""
    redact: dict[str, Redaction] = {}
    divergences: list[Divergence] = []
    for name, entity in getattr(rules, "entities", {}).items():
        redact[name] = Redaction.for_entity(entity) if hasattr(entity, "redact") else Redaction()
        for known in getattr(entity, "known", ()) or ():
            expires = getattr(known, "expires", None)
            # the end of the expiry day, UTC (compare() counts a divergence until that day ends)
            stamp = (calendar.timegm(expires.timetuple()) + 86400.0
                     if expires is not None and hasattr(expires, "timetuple") else float("inf"))
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
    pipeline: ShadowSide  # what the proxy hands captured reads to: a Handoff, or the inline Pipeline
    proxy: Proxy | rawproxy.RawProxy  # per config.engine
    admin: Admin
    evidence: EvidenceWriter | None = None  # --evidence: findings to the evidence store
    recorder: Recorder | None = None  # --record: answers for `rules draft`
    _runners: list[Any] = field(default_factory=list)  # the proxy's server (cleanup() drains), the admin's
    _sources: Mapping[str, Source] = field(default_factory=dict)
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
        self.admin.listening = False  # not ready any more: the Service stops sending traffic
        await proxy_runner.cleanup()  # stops accepting, waits for in-flight requests
        await self.pipeline.close()
        await admin_runner.cleanup()
        await self.rules.close()
        await self._tasks.close()
        for source in self._sources.values():
            with contextlib.suppress(Exception):
                await source.close()
        await self.proxy.close()
        if self.recorder is not None:
            await self.recorder.close()  # what is queued gets a bounded time to be written
        if self.evidence is not None:
            await self.evidence.close()  # one last bounded write
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
                        rules_loader: Callable[[Path], RuleSet] = default_loader,
                        sources: Mapping[str, Source] | None = None,
                        compare: Callable[..., Verdict] | None = None,
                        explain: Callable[..., list[FieldDiff]] | None = None,
                        span_exporter: SpanExporter | None = None, gate: GateHook | None = None,
                        install_signal_handlers: bool = False, warm_in_background: bool = False) -> Sidecar:
    """Start proxy, pipeline and admin server in the running loop. Raises
    RulesNotLoaded when the rules cannot be loaded at start (a bad edit later keeps the
    last good rules instead). The proxy listens before the shadow worker starts; with
    warm_in_background the worker's warm-up (rules, database connections) is not awaited
    either, and /readyz answers ready as soon as this returns."""
    if config.redaction_key is not None:
        set_redaction_key(config.redaction_key)
    metrics = Metrics(registry)
    sink = Sink(metrics, Tracing(config.otlp_endpoint, span_exporter), config.mismatch_log, config.recent_mismatches)
    handoff: Handoff | None = None

    def rules_changed(rules: RuleSet) -> None:
        sink.use_rules(*rules_facts(rules))
        if handoff is not None:
            handoff.rules_changed(rules)

    loader = rules_loader
    if rules_loader is default_loader:
        loader = functools.partial(load_compiled, policy=config.rules_policy)  # plans compiled at (re)load
    holder = RulesHolder(config.rules, loader, on_change=rules_changed, on_result=metrics.rules_loaded)
    first = holder.load()
    if not first.ok:
        sink.close()
        raise RulesNotLoaded(first.problems)
    inline = (config.shadow_process == "inline" or rules_loader is not default_loader
              or sources is not None or compare is not None or explain is not None)
    opened_sources: dict[str, Source] = {}
    pipeline: ShadowSide
    if inline:
        if compare is None or explain is None:
            from shadow.compare import diff as compare_diff
            from shadow.compare import explain as compare_explain

            compare = compare or compare_diff.compare
            explain = explain or compare_explain.explain
        opened_sources = dict(sources if sources is not None else default_sources(config))
        pipeline = Pipeline(
            pipeline_settings(config), sink, lambda: holder.current, opened_sources, compare, explain,
            upstream=recheck_upstream(config))
        pipeline.start()
    else:
        pipeline = handoff = Handoff(config, sink)  # started once the proxy listens (below)
        metrics.worker_pid = lambda: handoff.worker_pid if handoff is not None else None
        metrics.workers = handoff.worker_states
    recorder = None
    if config.record is not None:
        recorder = Recorder(RecordSettings(config.record, config.record_max_body, config.record_per_route,
                                           config.record_max), metrics)
        recorder.start()
    engine, serve_engine = (rawproxy.RawProxy, rawproxy.serve) if config.engine == "raw" else (Proxy, serve)
    proxy = engine(config.upstream, lambda: holder.current, pipeline, metrics,
                   max_body_bytes=config.max_body_bytes, upstream_timeout=config.upstream_timeout,
                   limits=request_limits(config), recorder=recorder)
    await proxy.open()
    host, port = Config.host_port(config.listen)
    admin_host, admin_port = Config.host_port(config.admin_listen)
    auth = AdminAuth(config.admin_token_value, exposed=not is_loopback(admin_host))
    auth.warn_if_refusing()
    admin = Admin(sink, holder, config.upstream, gate, auth)
    admin.workers = metrics.workers
    started: list[Any] = []
    try:
        proxy_runner, bound = await serve_engine(proxy, host, port, config.drain_timeout)  # type: ignore[arg-type]
        started.append(proxy_runner)
        admin_runner, admin_bound = await serve_app(admin.app(), admin_host, admin_port, admin_limits(config))
        started.append(admin_runner)
        if handoff is not None:
            # listen first: the worker loads the rules and opens (warms) its database
            # connections while the proxy already serves; reads offered meanwhile wait in
            # the worker's socket. (`shadow proxy` does not wait for the warm-up at all;
            # embedders and tests get a warmed worker by default.)
            await handoff.start(wait_ready=not warm_in_background)
    except BaseException:  # e.g. address in use: leave no worker process or open port behind
        for runner in reversed(started):
            await runner.cleanup()
        await pipeline.close()
        await proxy.close()
        if recorder is not None:
            await recorder.close()
        sink.close()
        raise
    sidecar = Sidecar(config=config, proxy_url=f"http://{_url_host(host)}:{bound}",
                      admin_url=f"http://{_url_host(admin_host)}:{admin_bound}", sink=sink, rules=holder,
                      pipeline=pipeline, proxy=proxy, admin=admin, _runners=[proxy_runner, admin_runner],
                      _sources=opened_sources, recorder=recorder)
    if config.evidence is not None:
        sidecar.evidence = sink.recorder = evidence_writer(config, metrics, holder)
        sidecar.evidence.start()
    sidecar._tasks.spawn(_sample_loop_lag(metrics), "loop-lag")
    sidecar._tasks.spawn(_flush_every_second(sink), "flush-log")
    if config.reload == "watch":
        holder.watch()
    if install_signal_handlers:
        holder.on_sighup()
    admin.listening = True  # ready: rules loaded, proxy listening, signal handlers in place
    in_force = holder.current
    assert in_force is not None  # loaded at start; a reload only ever replaces it
    log.info("proxy on %s -> %s; admin on %s; rules %s (%d routes)", sidecar.proxy_url, config.upstream,
             sidecar.admin_url, in_force.version, len(in_force.routes))
    return sidecar


def request_limits(config: Config) -> RequestLimits:
    """The request-path limits and timeouts the config sets."""
    return RequestLimits(**{name: getattr(config, name) for name in RequestLimits.__dataclass_fields__})


def admin_limits(config: Config) -> RequestLimits:
    """The admin server's: the proxy's head limits and timeouts, its own connection cap."""
    return dataclasses.replace(request_limits(config), max_connections=config.admin_max_connections,
                               admin_max_connections=0)


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "", "::"):  # listening everywhere: reach it on loopback
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


__all__ = ["LazySource", "RulesNotLoaded", "Sidecar", "start_sidecar"]
