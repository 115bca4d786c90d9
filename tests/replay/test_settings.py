"""One place turns Config into pipeline settings and a worker count; the CPU quota is
read from cgroup's cpu.max, which may say anything."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from shadow.config import Config
from shadow.replay.settings import cpu_quota, pipeline_settings, shadow_workers
from tests.widgets import widget_rules


def _config(tmp_path: Path, **values: object) -> Config:
    return Config(upstream="http://api:3000", rules=tmp_path, **values)  # type: ignore[arg-type]


def test_the_worker_does_not_rate_limit_a_second_time(tmp_path: Path) -> None:
    config = _config(tmp_path, rate_limit=50.0, queue_size=7, workers=3, batch_size=9, explain_rate=2.0)
    inline, worker = pipeline_settings(config), pipeline_settings(config, rate_limited_before=True)
    assert (inline.rate_limit, worker.rate_limit) == (50.0, 0.0)
    assert (worker.queue_size, worker.workers, worker.batch_size, worker.explain_rate, worker.recheck_capacity) == (7, 3, 9, 2.0, 7)
    assert inline.queue_bytes == worker.queue_bytes


def test_workers_share_one_queue(tmp_path: Path) -> None:
    config = _config(tmp_path, queue_size=10000, batch_size=50)
    one, four = pipeline_settings(config, shards=1), pipeline_settings(config, shards=4)
    assert (one.queue_size, four.queue_size) == (10000, 2500)
    assert (one.recheck_capacity, four.recheck_capacity) == (10000, 2500)
    assert four.queue_bytes * 4 == one.queue_bytes
    tiny = pipeline_settings(_config(tmp_path, queue_size=30, batch_size=50), shards=8)
    assert tiny.queue_size == 30  # never below one batch (or the whole queue when smaller)


@pytest.mark.parametrize(("cpus", "expected"), [(0.5, 1), (1.0, 1), (1.9, 1), (2.0, 1), (3.0, 2), (4.5, 3), (64.0, 8)])
def test_the_default_worker_count_leaves_a_cpu_to_the_proxy(tmp_path: Path, cpus: float, expected: int) -> None:
    assert shadow_workers(_config(tmp_path), quota=cpus) == expected
    assert shadow_workers(_config(tmp_path, shadow_workers=5), quota=cpus) == 5  # the flag wins


@pytest.mark.parametrize(("text", "limit"), [
    ("max 100000\n", None),          # no quota
    ("150000 100000\n", 1.5),
    ("50000 100000", 0.5),
    ("200000", 2.0),                 # period missing: the kernel default
    ("", None), ("garbage here", None), ("1e999 1", None), ("-5 100000", None),
    ("100000 0", None),              # a zero period cannot be divided by
    ("\x00\xff", None),
])
def test_cpu_max_is_read_defensively(tmp_path: Path, text: str, limit: float | None) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text(text, errors="surrogateescape") if "\xff" not in text else cpu_max.write_bytes(b"\x00\xff")
    affinity = float(len(os.sched_getaffinity(0)))
    expected = affinity if limit is None else min(affinity, limit)
    assert cpu_quota(cpu_max) == expected


def test_a_missing_cpu_max_means_the_affinity_mask(tmp_path: Path) -> None:
    assert cpu_quota(tmp_path / "absent") == float(len(os.sched_getaffinity(0)))


def test_workers_share_the_queue_memory(tmp_path: Path) -> None:
    config = _config(tmp_path, max_body_bytes=1000)
    one, four = pipeline_settings(config).queue_bytes, pipeline_settings(config, shards=4).queue_bytes
    assert four * 4 == one
    big = _config(tmp_path, max_body_bytes=64 * 1024 * 1024)
    assert pipeline_settings(big, shards=4).queue_bytes == 4 * big.max_body_bytes  # never less than 4 bodies


ROOT = Path(__file__).resolve().parents[2]


def test_a_worker_opens_only_the_sources_its_rules_read(tmp_path: Path) -> None:
    from shadow.replay.worker import sources_in_use
    from shadow.rules import load_rules

    assert sources_in_use(load_rules(ROOT / "rules" / "marketplace")) == {"postgres"}
    (tmp_path / "w.yaml").write_text(
        widget_rules("  - route: GET /w/{id}\n    recheck: {after: [1s], control: mongo}\n"))
    assert sources_in_use(load_rules(tmp_path)) == {"postgres", "mongo"}
    assert sources_in_use(None) == set()
