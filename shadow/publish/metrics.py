"""Every Prometheus metric of the sidecar, declared once (names and labels are the
contract in docs/architecture.md: alerts, the gate and dashboards read them).

The registry is injectable so tests and several in-process sidecars do not share
counters; `Metrics()` without one gets a fresh registry.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from shadow.model import STAGE_BUCKETS, DropReason, WorkerState

if TYPE_CHECKING:
    from shadow.rules.reload import ReloadResult

#: the proxy's own time is tens of µs; the interesting tail is around 1 ms
PROXY_BUCKETS = (0.00005, 0.0001, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1)
UPSTREAM_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)


class Metrics:
    """The sidecar's metrics on one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.comparisons = Counter("shadow_comparisons", "Shadow comparisons by outcome",
                                   ["entity", "route", "outcome"], registry=r)
        self.skipped = Counter("shadow_skipped", "Matched reads not compared, by reason", ["entity", "route", "reason"],
                               registry=r)
        self.dropped = Counter("shadow_dropped", "Shadow work dropped to protect the user path", ["reason"], registry=r)
        self.mismatch_fields = Counter("shadow_mismatch_fields", "Persistently differing field paths",
                                       ["entity", "field"], registry=r)
        self.transient_fields = Counter("shadow_transient_fields",
                                        "Field paths that differed then converged on recheck", ["entity", "field"],
                                        registry=r)
        self.unverifiable = Counter("shadow_unverifiable",
                                    "Fields the API showed that the rules declare unverifiable (not checked)",
                                    ["entity", "field"], registry=r)
        self.noisy_fields = Counter("shadow_noisy_fields",
                                    "Field paths that differed between two back-to-back reads of the control "
                                    "(generated per request: suggest `ignore`)", ["entity", "field"], registry=r)
        self.suppressed = Counter("shadow_suppressed", "Differences covered by a known divergence", ["entity", "field"],
                                  registry=r)
        self.divergence_expiry = Gauge("shadow_known_divergence_expiry_timestamp_seconds",
                                       "Expiry of each known divergence (Unix time)", ["entity", "field"], registry=r)
        self.stage_seconds = Histogram("shadow_stage_seconds", "Time spent per shadow stage", ["entity", "stage"],
                                       buckets=STAGE_BUCKETS, registry=r)
        self.queue_depth = Gauge("shadow_queue_depth", "Reads waiting in the shadow queue", registry=r)
        self.queue_capacity = Gauge("shadow_queue_capacity", "Capacity of the shadow queue", registry=r)
        self.proxy_seconds = Histogram("shadow_proxy_seconds",
                                       "Time the proxy adds to a request (its own handling, not the upstream's)",
                                       buckets=PROXY_BUCKETS, registry=r)
        self.proxy_requests = Counter("shadow_proxy_requests", "Requests through the proxy", ["method", "code"],
                                      registry=r)
        self.proxy_held = Counter("shadow_proxy_held_requests",
                                  "Pipelined requests held back until their client read the answers before them",
                                  registry=r)
        self.upstream_seconds = Histogram("shadow_upstream_seconds", "Upstream time to response headers",
                                          buckets=UPSTREAM_BUCKETS, registry=r)
        self.loop_lag = Gauge("shadow_event_loop_lag_seconds", "Event loop lag (last sample)", registry=r)
        self.loop_lag_hist = Histogram("shadow_event_loop_lag_seconds_hist", "Event loop lag", buckets=LAG_BUCKETS,
                                       registry=r)
        self.reloads = Counter("shadow_rules_reloads", "Rule (re)loads by result", ["result"], registry=r)
        self.rules_info = Gauge("shadow_rules_info", "The loaded rules (value 1)", ["version"], registry=r)
        self.errors = Counter("shadow_errors", "Shadow-side failures by stage", ["stage"], registry=r)
        self.record_written = Counter("shadow_record_written", "Answers --record wrote to its directory", registry=r)
        self.record_dropped = Counter("shadow_record_dropped",
                                      "Answers --record would have kept but did not, by reason", ["reason"],
                                      registry=r)
        for reason in (DropReason.QUEUE_FULL, DropReason.RATE_LIMITED, DropReason.EXPLAIN_BUDGET, DropReason.SHUTDOWN):
            self.dropped.labels(reason.value)  # present at 0 so rate() and alerts work from the start
        for result in ("success", "error"):
            self.reloads.labels(result)
        # process_* (CPU, memory, fds, start time) and python_info of this process on the
        # injected registry, as on the global one; and the shadow worker process's own as
        # shadow_worker_process_* (read from /proc by its pid; absent while it is down).
        if r is not REGISTRY:  # the global registry has its own already
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
        #: the running shadow worker's pid, or None (set by the sidecar in worker mode)
        self.worker_pid: Callable[[], int | None] = lambda: None
        ProcessCollector(namespace="shadow_worker", pid=self._worker_pid, registry=r)
        #: the shadow worker processes' states (set by the sidecar in worker mode)
        self.workers: Callable[[], Sequence[WorkerState]] = lambda: ()
        r.register(WorkerCollector(lambda: self.workers()))

    def rules_loaded(self, result: ReloadResult) -> None:
        """Count a rules (re)load; the version in force is the one shadow_rules_info shows."""
        if not result.ok:
            self.reloads.labels("error").inc()
            return
        self.reloads.labels("success").inc()
        self.rules_info.clear()
        self.rules_info.labels(result.version).set(1)

    def _worker_pid(self) -> str:
        pid = self.worker_pid()
        return str(pid) if pid is not None else "-"  # /proc/-/ does not exist: no samples


#: the longest last-error text shown as a label value
MAX_ERROR_LABEL = 200


class WorkerCollector(Collector):
    """shadow_worker_ready, shadow_worker_restarts_total and shadow_worker_last_error_info
    by worker, read from the Handoff at scrape time: a worker that keeps dying (say, on an
    import error) shows here with its last error, not only in stderr."""

    def __init__(self, workers: Callable[[], Sequence[WorkerState]]) -> None:
        self._workers = workers

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | InfoMetricFamily]:
        ready = GaugeMetricFamily("shadow_worker_ready",
                                  "The shadow worker process is up and said ready (1) or not (0)",
                                  labels=["worker"])
        restarts = CounterMetricFamily("shadow_worker_restarts", "Times the shadow worker process went away and was "
                                       "restarted", labels=["worker"])
        last_error = InfoMetricFamily("shadow_worker_last_error", "Why the shadow worker process last went away",
                                      labels=["worker"])
        for state in self._workers():
            worker = str(state.index)
            ready.add_metric([worker], 1.0 if state.ready else 0.0)
            restarts.add_metric([worker], state.restarts)
            if state.last_error is not None:
                last_error.add_metric([worker], {"error": state.last_error[:MAX_ERROR_LABEL]})
        yield ready
        yield restarts
        yield last_error
