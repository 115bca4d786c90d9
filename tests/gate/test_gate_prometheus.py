"""`shadow gate` against a real Prometheus scraping a real HTTP exporter that serves the
sidecar's own metric declarations (shadow.publish.metrics.Metrics), populated by the test."""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import time
from pathlib import Path

import pytest

from shadow.gate import cli
from shadow.publish.metrics import Metrics

from .conftest import needs_prometheus  # noqa: TID252

pytestmark = [needs_prometheus, pytest.mark.slow]

PAY = "GET /api/payments/{id}"
USER = "GET /api/users/{id}"

CRITERIA = """\
window: 1h
block_on_alerts: [ShadowRulesReloadFailing, ShadowPersistentMismatch, ShadowKnownDivergenceExpired]
defaults: {min_comparisons: 10, max_mismatches: 0, max_error_ratio: 0.05}
entities:
  payments:
    required_routes: ["GET /api/payments/{id}"]
  users:
    required_routes: ["GET /api/users/{id}"]
"""


@pytest.fixture
def criteria(tmp_path: Path) -> Path:
    path = tmp_path / "gate.yaml"
    path.write_text(CRITERIA)
    return path


async def gate(prometheus_url: str, criteria: Path, *extra: str) -> tuple[int, str, str]:
    """Run `shadow gate` (the command's configure/run) off the event loop; (exit, out, err)."""
    parser = argparse.ArgumentParser()
    cli.configure(parser)
    args = parser.parse_args(["--prometheus", prometheus_url, "--criteria", str(criteria), *extra])
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(cli.run, args, out, err)
    return code, out.getvalue(), err.getvalue()


async def gate_process(prometheus_url: str, criteria: Path) -> tuple[int, bytes, bytes]:
    """Run `shadow gate` as CI calls it (the real entry point, a process); (exit, out, err)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shadow", "gate", "--prometheus", prometheus_url, "--criteria", str(criteria),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stdout, stderr


async def scraping_healthy_traffic(start_exporter, start_prometheus, with_alerts: bool = True):
    """Healthy traffic on an exporter that a real Prometheus has scraped; (metrics, exporter, prometheus)."""
    metrics = Metrics()
    healthy_traffic(metrics)
    exporter = await start_exporter(metrics.registry)
    prometheus = start_prometheus([exporter.target], with_alerts=with_alerts)
    await prometheus.wait_for("shadow_comparisons_total", lambda result: len(result) == 3)
    return metrics, exporter, prometheus


def healthy_traffic(metrics: Metrics) -> None:
    metrics.comparisons.labels("payments", PAY, "match").inc(40)
    metrics.comparisons.labels("payments", PAY, "transient").inc(3)  # converged dual-write lag: never blocks
    metrics.transient_fields.labels("payments", "status").inc(3)
    metrics.comparisons.labels("users", USER, "match").inc(25)


async def test_clean_traffic_is_go_then_a_divergence_is_no_go_naming_entity_route_field(
    start_exporter, start_prometheus, criteria: Path
) -> None:
    metrics = Metrics()
    healthy_traffic(metrics)
    exporter = await start_exporter(metrics.registry)
    prometheus = start_prometheus([exporter.target])
    await prometheus.wait_for("shadow_comparisons_total", lambda result: len(result) == 3)
    await prometheus.scrapes(2)  # rules evaluated at least once: ALERTS queried on real state

    code, out, err = await gate(prometheus.url, criteria)
    assert code == 0, out + err
    assert "VERDICT: GO" in out
    payments_row = next(line for line in out.splitlines() if line.startswith("payments") and PAY in line)
    assert payments_row.split()[-7:] == ["43", "0", "3", "0", "0", "-", "GO"]

    # one persistent mismatch, born between two scrapes (the series starts at 1, not 0)
    metrics.comparisons.labels("payments", PAY, "mismatch").inc()
    metrics.mismatch_fields.labels("payments", "amount").inc()
    await prometheus.wait_for('shadow_comparisons_total{outcome="mismatch"}', lambda result: len(result) == 1)

    code, out, err = await gate(prometheus.url, criteria)
    assert code == 1, out + err
    assert f"payments {PAY}: 1 persistent mismatch (1 mismatch) > max 0; fields: amount x1" in out
    assert "VERDICT: NO-GO" in out

    code, out, _ = await gate(prometheus.url, criteria, "--json")
    report = json.loads(out)
    assert code == 1 and report["verdict"] == "NO-GO"
    by_entity = {e["entity"]: e for e in report["entities"]}
    assert by_entity["users"]["verdict"] == "GO"
    route = next(r for r in by_entity["payments"]["routes"] if r["route"] == PAY)
    assert route["persistent_mismatches"] == 1 and route["top_fields"] == [{"field": "amount", "count": 1}]

    code, out, _ = await gate(prometheus.url, criteria, "--entity", "users")  # the other collection may still flip
    assert code == 0, out

    # a window that starts after the mismatch no longer sees it (clean traffic goes on)
    mismatch_seen = time.monotonic()
    while time.monotonic() - mismatch_seen < 9:
        metrics.comparisons.labels("payments", PAY, "match").inc(5)
        metrics.comparisons.labels("users", USER, "match").inc(5)
        await asyncio.sleep(0.5)
    code, out, err = await gate(prometheus.url, criteria, "--window", "6s")
    assert code == 0, out + err
    assert "window 6s" in out and "VERDICT: GO" in out


async def test_required_route_without_traffic_is_no_go_for_lack_of_samples(start_exporter, start_prometheus, criteria: Path) -> None:
    metrics = Metrics()
    metrics.comparisons.labels("payments", PAY, "match").inc(40)
    metrics.comparisons.labels("users", "GET /api/users", "match").inc(30)  # users seen, but not on the hot path
    exporter = await start_exporter(metrics.registry)
    prometheus = start_prometheus([exporter.target])
    await prometheus.wait_for("shadow_comparisons_total", lambda result: len(result) == 2)

    code, out, err = await gate(prometheus.url, criteria)
    assert code == 1, out + err
    assert f"users {USER}: no comparisons on required route in 1h (no samples)" in out
    assert not any(line.startswith("  - payments") for line in out.splitlines())


async def test_stopped_prometheus_cannot_evaluate_exit_2(start_exporter, start_prometheus, criteria: Path) -> None:
    _, _, prometheus = await scraping_healthy_traffic(start_exporter, start_prometheus)
    prometheus.stop()

    code, stdout, stderr = await gate_process(prometheus.url, criteria)
    assert code == 2, stdout + stderr
    assert b"CANNOT EVALUATE" in stderr and b"cannot reach Prometheus" in stderr
    assert b"GO" not in stdout


async def test_absent_metric_cannot_evaluate(start_exporter, start_prometheus, criteria: Path) -> None:
    metrics = Metrics()  # declared, never incremented: no comparison series exported
    exporter = await start_exporter(metrics.registry)
    prometheus = start_prometheus([exporter.target])
    await prometheus.wait_for("shadow_dropped_total", lambda result: len(result) > 0)

    code, out, err = await gate(prometheus.url, criteria, "--json")
    assert code == 2
    assert "shadow_comparisons_total has no samples" in err
    assert json.loads(out)["verdict"] == "CANNOT_EVALUATE"


async def test_alert_rules_not_loaded_cannot_evaluate(start_exporter, start_prometheus, criteria: Path) -> None:
    _, _, prometheus = await scraping_healthy_traffic(start_exporter, start_prometheus, with_alerts=False)

    code, _, err = await gate(prometheus.url, criteria)
    assert code == 2
    assert "alert rules not loaded" in err and "ShadowRulesReloadFailing" in err


async def test_an_alert_that_fired_in_the_window_is_no_go(start_exporter, start_prometheus, criteria: Path) -> None:
    metrics, exporter, prometheus = await scraping_healthy_traffic(start_exporter, start_prometheus)

    metrics.reloads.labels("error").inc()  # a bad rules edit; ShadowRulesReloadFailing has no `for`
    await prometheus.wait_for('ALERTS{alertname="ShadowRulesReloadFailing", alertstate="firing"}', lambda result: len(result) == 1)

    code, out, err = await gate(prometheus.url, criteria)
    assert code == 1, out + err
    assert f"payments: alert ShadowRulesReloadFailing fired in 1h (instance={exporter.target})" in out
    assert f"users: alert ShadowRulesReloadFailing fired in 1h (instance={exporter.target})" in out


async def test_expired_known_divergence_is_no_go(start_exporter, start_prometheus, criteria: Path) -> None:
    metrics = Metrics()
    healthy_traffic(metrics)
    metrics.divergence_expiry.labels("payments", "metadata").set(1_700_000_000)  # 2023-11-14
    metrics.divergence_expiry.labels("users", "profile.bio").set(4_102_444_800)  # 2100
    exporter = await start_exporter(metrics.registry)
    prometheus = start_prometheus([exporter.target])
    await prometheus.wait_for("shadow_known_divergence_expiry_timestamp_seconds", lambda result: len(result) == 2)

    code, out, err = await gate(prometheus.url, criteria, "--entity", "payments")
    assert code == 1, out + err
    assert "payments: known divergence on field metadata expired 2023-11-14T22:13:20Z" in out
    code, out, err = await gate(prometheus.url, criteria, "--entity", "users")
    assert code == 0, out + err


async def test_a_restart_never_hides_a_mismatch(start_exporter, start_prometheus, criteria: Path) -> None:
    """The sidecar restarts after a mismatch: its counters start over (here even with the
    mismatch series pre-created at 0), and the gate still counts the mismatch."""
    before = Metrics()
    healthy_traffic(before)
    exporter = await start_exporter(before.registry)
    prometheus = start_prometheus([exporter.target])
    await prometheus.wait_for("shadow_comparisons_total", lambda result: len(result) == 3)
    before.comparisons.labels("payments", PAY, "mismatch").inc()
    before.mismatch_fields.labels("payments", "amount").inc()
    await prometheus.wait_for('shadow_comparisons_total{outcome="mismatch"}', lambda result: len(result) == 1)
    await prometheus.scrapes(1)

    after = Metrics()  # the restarted process
    after.comparisons.labels("payments", PAY, "mismatch")
    after.mismatch_fields.labels("payments", "amount")
    after.comparisons.labels("payments", PAY, "match").inc(5)
    after.comparisons.labels("users", USER, "match").inc(25)
    exporter.registry = after.registry
    await prometheus.wait_for('resets(shadow_comparisons_total{outcome="mismatch"}[1m]) > 0', lambda result: len(result) == 1)

    code, out, err = await gate(prometheus.url, criteria)
    assert code == 1, out + err
    assert f"payments {PAY}: 1 persistent mismatch (1 mismatch) > max 0; fields: amount x1" in out


async def test_list_reads_not_list_checked_are_noted_per_route(start_exporter, start_prometheus, criteria: Path) -> None:
    metrics = Metrics()
    healthy_traffic(metrics)
    metrics.skipped.labels("payments", "GET /api/payments", "unmodeled_query").inc(7)
    metrics.skipped.labels("payments", "GET /api/payments", "not_sampled").inc(5)  # not a list-check matter
    exporter = await start_exporter(metrics.registry)
    prometheus = start_prometheus([exporter.target])
    await prometheus.wait_for('shadow_skipped_total{reason="unmodeled_query"}', lambda result: len(result) == 1)

    code, out, err = await gate(prometheus.url, criteria)
    assert code == 0, out + err  # a note, never a NO-GO
    assert "payments GET /api/payments: 7 list read(s) not list-checked" in out
    assert out.count("not list-checked") == 1
