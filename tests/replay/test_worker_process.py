"""The shadow computation runs in a niced child process (--shadow-process worker, the
default) and reports to the one sink of the proxy's process: outcomes, mismatch log
and explanations arrive there; a killed worker is counted and restarted while clients
notice nothing; a stopped (stalled) worker makes the proxy drop and count reads
rather than buffer without bound."""
from __future__ import annotations

import asyncio
import os
import signal

from shadow.replay.handoff import Handoff
from shadow.replay.pipeline import Pipeline

QUICK = [f"/quick/w{n:04d}" for n in range(1, 41)]


def _nice(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[16])


def _cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        return cmdline.read().replace(b"\0", b" ").decode()


async def _new_worker(handoff: Handoff, old_pid: int, timeout: float = 60.0) -> int:
    for _ in range(int(timeout / 0.05)):
        pid = handoff.worker_pid
        if pid is not None and pid != old_pid:
            return pid
        await asyncio.sleep(0.05)
    raise AssertionError("the shadow worker was not restarted")


def _dropped(sidecar, reason: str) -> float:
    return sidecar.registry.get_sample_value("shadow_dropped_total", {"reason": reason}) or 0.0


async def test_comparisons_run_in_a_niced_child_and_reach_the_one_sink(world, start, probe, tmp_path) -> None:
    await world.sql("UPDATE widgets SET price = 99 WHERE legacy_object_id = 'w0003'")
    sidecar = await start(shadow_nice=7)
    assert isinstance(sidecar.pipeline, Handoff)
    pid = sidecar.pipeline.worker_pid
    assert pid is not None and pid != os.getpid()
    assert "shadow.replay.worker" in _cmdline(pid)
    assert _nice(pid) == _nice(os.getpid()) + 7
    paths = [f"/widgets/w{n:04d}" for n in range(1, 11)]
    assert await probe.get_all(sidecar.proxy_url, paths) == await probe.get_all(world.api_url, paths)
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"match": 9, "mismatch": 1}
    [entry] = sidecar.sink.recent()  # the main process's ring, redacted there
    assert (entry.key, [diff.path for diff in entry.diffs]) == ("w0003", ["price"])
    for _ in range(100):  # deepdiff's explanation comes back from the worker later
        if entry.explained is not None:
            break
        await asyncio.sleep(0.05)
    assert {diff.path for diff in entry.explained or ()} == {"price"}
    sidecar.sink.flush()
    assert '"key":"w0003"' in (tmp_path / "mismatches.jsonl").read_text()
    fetch = sidecar.registry.get_sample_value("shadow_stage_seconds_count", {"entity": "widgets", "stage": "fetch"})
    assert fetch is not None and fetch >= 1  # stage timings of the worker, on this /metrics


async def test_inline_mode_runs_the_pipeline_in_the_proxy_process(world, start, probe) -> None:
    sidecar = await start(shadow_process="inline")
    assert isinstance(sidecar.pipeline, Pipeline)
    await probe.get_all(sidecar.proxy_url, QUICK[:5])
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"match": 5}


async def test_a_killed_worker_is_counted_and_restarted_and_clients_notice_nothing(world, start, probe) -> None:
    sidecar = await start()
    handoff = sidecar.pipeline
    direct = await probe.get_all(world.api_url, QUICK)
    assert await probe.get_all(sidecar.proxy_url, QUICK[:10]) == direct[:10]
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"match": 10}

    old = handoff.worker_pid
    os.kill(old, signal.SIGKILL)
    for _ in range(100):  # the proxy notices at once (the socket closes)
        if handoff.worker_pid is None:
            break
        await asyncio.sleep(0.01)
    assert handoff.worker_pid is None
    # while it is down: answers unchanged, the reads dropped and counted
    assert await probe.get_all(sidecar.proxy_url, QUICK[10:20]) == direct[10:20]
    down = _dropped(sidecar, "worker_down")
    assert 1 <= down <= 10  # (reads after the restart began wait in the new socket)
    assert sidecar.registry.get_sample_value("shadow_errors_total", {"stage": "worker"}) == 1

    new = await _new_worker(handoff, old)
    assert new != old and not os.path.exists(f"/proc/{old}/stat")  # the dead one was reaped
    assert await probe.get_all(sidecar.proxy_url, QUICK[20:]) == direct[20:]
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"match": 40 - down}  # shadowing resumed; every read accounted for
    assert sidecar.registry.get_sample_value("shadow_errors_total", {"stage": "worker"}) == 1


async def test_a_stalled_worker_makes_the_proxy_drop_and_count_not_buffer(world, start, probe) -> None:
    sidecar = await start(queue_size=1, max_body_bytes=1000, batch_size=1)
    handoff = sidecar.pipeline
    pid = handoff.worker_pid
    os.kill(pid, signal.SIGSTOP)  # the worker takes nothing off the socket any more
    try:
        paths = [QUICK[n % 40] for n in range(1500)]
        answers = await probe.timed_get_all(sidecar.proxy_url, paths, concurrency=16)
        assert {status for status, _, _ in answers} == {200}
        main_drops = _dropped(sidecar, "queue_full")
        assert main_drops > 0  # the socket and the bounded buffer filled up
        assert handoff.worker_pid == pid  # stopped, not dead
        assert handoff.unsent_bytes <= handoff.buffer_limit  # memory stays bounded
    finally:
        os.kill(pid, signal.SIGCONT)
    await probe.settle(sidecar, timeout=30)
    # every read is accounted for: compared, or dropped (here, or by the worker's own queue)
    compared = sum(probe.outcomes(sidecar).values())
    assert compared > 0
    assert compared + probe.skipped(sidecar, "queue_full") == len(paths)


async def test_several_workers_share_the_keys_and_a_killed_one_is_restarted_alone(world, start, probe) -> None:
    sidecar = await start(shadow_workers=2)
    handoff = sidecar.pipeline
    first, second = handoff.worker_pids
    assert first is not None and second is not None and first != second
    direct = await probe.get_all(world.api_url, QUICK)
    assert await probe.get_all(sidecar.proxy_url, QUICK[:20]) == direct[:20]
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"match": 20}

    os.kill(first, signal.SIGKILL)
    for _ in range(100):
        if handoff.worker_pids[0] is None:
            break
        await asyncio.sleep(0.01)
    assert handoff.worker_pids == [None, second]  # the other one keeps going
    assert await probe.get_all(sidecar.proxy_url, QUICK[20:]) == direct[20:]
    down = _dropped(sidecar, "worker_down")
    assert 1 <= down < 20  # the dead worker's keys are dropped and counted, the others' are compared
    assert sidecar.registry.get_sample_value("shadow_errors_total", {"stage": "worker"}) == 1

    for _ in range(400):  # restarted alone
        if handoff.worker_pids[0] not in (None, first):
            break
        await asyncio.sleep(0.05)
    assert handoff.worker_pids[0] not in (None, first) and handoff.worker_pids[1] == second
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"match": 40 - down}
    assert await probe.get_all(sidecar.proxy_url, QUICK) == direct
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"match": 80 - down}  # every read accounted for, by both workers


async def test_counted_outcomes_reach_the_same_metrics_as_one_by_one(world, start, probe) -> None:
    """Matches, skips and stage timings arrive as Counts deltas; the samples are the
    ones the inline pipeline publishes call by call."""
    results = {}
    for mode in ("worker", "inline"):
        sidecar = await start(shadow_process=mode)
        await probe.get_all(sidecar.proxy_url, [*QUICK[:12], "/quick/nope"])
        await probe.settle(sidecar)
        registry = sidecar.registry
        results[mode] = (
            probe.outcomes(sidecar), dict(sidecar.sink.counts["widgets"]),
            registry.get_sample_value("shadow_stage_seconds_count", {"entity": "widgets", "stage": "compare"}) > 0,
            registry.get_sample_value("shadow_stage_seconds_bucket", {"entity": "widgets", "stage": "queue", "le": "+Inf"})
            == registry.get_sample_value("shadow_stage_seconds_count", {"entity": "widgets", "stage": "queue"}),
        )
        await sidecar.stop()
    assert results["worker"] == results["inline"]
    assert results["worker"][0] == {"match": 12}


async def test_process_metrics_of_both_processes_are_on_the_injected_registry(world, start) -> None:
    """process_* of the main process and shadow_worker_process_* of the worker (read from
    /proc by the worker's pid) are on the sidecar's own registry, not only the global one."""
    sidecar = await start()
    handoff = sidecar.pipeline
    assert isinstance(handoff, Handoff) and handoff.worker_pid is not None
    registry = sidecar.registry
    assert any(family.name == "python_info" for family in registry.collect())
    worker_start = registry.get_sample_value("shadow_worker_process_start_time_seconds")
    own_start = registry.get_sample_value("process_start_time_seconds")
    assert worker_start is not None and own_start is not None and worker_start >= own_start
    assert registry.get_sample_value("shadow_worker_process_resident_memory_bytes") > 0
    assert registry.get_sample_value("shadow_worker_process_cpu_seconds_total") > 0
