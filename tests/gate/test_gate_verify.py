"""The gate reads all three layers: a clean shadow-read window with a failed, stale or
missing verify is NO-GO; GO only when counts, sums and docs are all clean and fresh.
Real Prometheus scraping a real exporter that serves the sidecar's metrics and the
series `shadow verify --push` leaves in a Pushgateway."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from prometheus_client import Gauge

from shadow.gate.criteria import CriteriaError, parse_criteria
from shadow.publish.metrics import Metrics

from .conftest import needs_prometheus  # noqa: TID252
from .test_gate_prometheus import gate, healthy_traffic  # noqa: TID252

CRITERIA = """\
window: 1h
defaults: {min_comparisons: 10, max_mismatches: 0, max_error_ratio: 0.05}
entities:
  payments:
    required_routes: ["GET /api/payments/{id}"]
    verify: {max_age: 1h, layers: [counts, sums, docs]}
"""


@needs_prometheus
@pytest.mark.slow
async def test_clean_shadow_window_needs_every_verify_layer(start_exporter, start_prometheus, tmp_path: Path) -> None:
    criteria = tmp_path / "gate.yaml"
    criteria.write_text(CRITERIA)
    metrics = Metrics()
    healthy_traffic(metrics)
    labels = ("entity", "layer", "partition")
    clean = Gauge("shadow_verify_clean", "", labels, registry=metrics.registry)
    found = Gauge("shadow_verify_differences", "", labels, registry=metrics.registry)
    last = Gauge("shadow_verify_last_run_timestamp_seconds", "", labels, registry=metrics.registry)
    Gauge("shadow_verify_open_dualwrite_gaps", "", ("entity", "partition"),
          registry=metrics.registry).labels("payments", "0-of-1").set(2)

    def pushed(layer: str, differences: int, at: float) -> None:
        clean.labels("payments", layer, "0-of-1").set(1 if differences == 0 else 0)
        found.labels("payments", layer, "0-of-1").set(differences)
        last.labels("payments", layer, "0-of-1").set(at)

    exporter = await start_exporter(metrics.registry)
    prometheus = start_prometheus([exporter.target], with_alerts=False)
    await prometheus.wait_for("shadow_comparisons_total", lambda result: len(result) >= 2)

    code, out, err = await gate(prometheus.url, criteria, "--entity", "payments")  # no verify run at all
    assert code == 1 and "payments: verify counts: no result" in out, out + err

    now = time.time()
    pushed("counts", 0, now)
    pushed("sums", 1, now)  # the ledger sum off by 1e-18
    pushed("docs", 0, now - 3 * 3600)  # last clean scan too old
    await prometheus.wait_for('shadow_verify_clean{layer="docs"}', lambda result: len(result) == 1)
    code, out, _ = await gate(prometheus.url, criteria, "--entity", "payments")
    assert code == 1
    assert "payments: verify sums: 1 difference(s) > max 0" in out
    assert "payments: verify docs: last run 3.0h ago > max_age 1h" in out
    assert "verify counts" not in out.split("NO-GO reasons:")[1]

    pushed("sums", 0, time.time())
    pushed("docs", 0, time.time())
    await prometheus.wait_for("shadow_verify_differences == 0", lambda result: len(result) == 3)
    await prometheus.wait_for("time() - shadow_verify_last_run_timestamp_seconds < 600", lambda result: len(result) == 3)
    code, out, err = await gate(prometheus.url, criteria, "--entity", "payments")
    assert code == 0, out + err
    assert "VERDICT: GO" in out
    row = next(line for line in out.splitlines() if line.startswith("payments") and "clean" in line)
    assert row.split()[1:4] == ["clean", "clean", "clean"] and row.endswith("2 open")  # reported, not blocking


@pytest.mark.parametrize(("verify", "message"), [
    ("[counts]", "verify must be"),
    ("{max_age: soon}", "verify.max_age"),
    ("{layers: [rows]}", "verify.layers"),
    ("{layers: []}", "verify.layers"),
    ("{max_differences: -1}", "verify.max_differences"),
    ("{max_differences: true}", "verify.max_differences"),
    ("{when: always}", "unknown key 'when'"),
])
def test_bad_verify_criteria_are_refused(verify: str, message: str) -> None:
    with pytest.raises(CriteriaError) as raised:
        parse_criteria(f"window: 1h\nentities:\n  payments:\n    verify: {verify}\n", "gate.yaml")
    assert message in str(raised.value) and "gate.yaml:4" in str(raised.value)
