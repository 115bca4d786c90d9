"""The one place Config becomes PipelineSettings and a worker count (the proxy's inline
pipeline and every shadow worker process build theirs here)."""
from __future__ import annotations

import math
import os
from pathlib import Path

from shadow.config import Config
from shadow.replay.control import UpstreamControl
from shadow.replay.pipeline import PipelineSettings

#: never more shadow worker processes than this from the CPU quota alone
MAX_AUTO_WORKERS = 8
CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


#: body copies all shadow queues together may hold; beyond -> queue_full
QUEUE_BYTES = 64 * 1024 * 1024
#: documents all shadow recheck heaps together may hold; beyond -> recheck_bytes
RECHECK_BYTES = 256 * 1024 * 1024


def pipeline_settings(config: Config, *, rate_limited_before: bool = False, shards: int = 1) -> PipelineSettings:
    """The pipeline settings of `config`. `rate_limited_before`: the proxy already
    applied the rate limit (a worker process must not apply it a second time).
    `shards`: the pipeline is one of that many workers, which share the queue: its
    length (--queue-size), its bytes and the recheck heap are split between them."""
    shards = max(1, shards)
    queue_size = max(config.queue_size // shards, min(config.queue_size, config.batch_size))  # a share of one queue
    return PipelineSettings(
        queue_size=queue_size, workers=config.workers, batch_size=config.batch_size,
        source_timeout=config.source_timeout, rate_limit=0.0 if rate_limited_before else config.rate_limit,
        explain_rate=config.explain_rate, explain_concurrency=config.explain_concurrency,
        recheck_capacity=queue_size,
        recheck_bytes=max(RECHECK_BYTES // shards, 4 * config.max_body_bytes),
        queue_bytes=max(QUEUE_BYTES // shards, 4 * config.max_body_bytes))


def recheck_upstream(config: Config) -> UpstreamControl:
    """How rechecks with `control: upstream` replay a read to the upstream (the worker
    process needs it as much as the inline pipeline)."""
    return UpstreamControl(config.upstream, config.source_timeout)


def cpu_quota(cpu_max: Path = CPU_MAX) -> float:
    """CPUs this process may use: the cgroup v2 quota (cpu.max) if set, else the CPUs
    it may run on (sched_getaffinity), whichever is smaller."""
    try:
        cpus = float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cpus = float(os.cpu_count() or 1)
    try:
        quota, _, period = cpu_max.read_text().strip().partition(" ")
        limit = float(quota) / float(period or 100000) if quota != "max" else math.inf
    except (OSError, ValueError, ZeroDivisionError):  # absent, unreadable or nonsense: no quota
        return cpus
    return min(cpus, limit) if 0 < limit < math.inf else cpus


def shadow_workers(config: Config, quota: float | None = None) -> int:
    """How many shadow worker processes: `--shadow-workers`, or one per whole CPU of the
    quota beyond the one the proxy needs, at least 1, at most MAX_AUTO_WORKERS."""
    if config.shadow_workers > 0:
        return config.shadow_workers
    cpus = cpu_quota() if quota is None else quota
    return max(1, min(MAX_AUTO_WORKERS, math.floor(cpus) - 1))


__all__ = ["cpu_quota", "pipeline_settings", "recheck_upstream", "shadow_workers"]
