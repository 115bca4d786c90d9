"""The admin /gate verdict: the same criteria and decision, from one process's registry
(counters since process start), labelled as such."""
from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry, Counter

from shadow.gate.criteria import parse_criteria
from shadow.gate.local import evaluate_local
from shadow.gate.report import to_json
from shadow.gate.verdict import GateUnavailable
from shadow.publish.metrics import Metrics

PAY = "GET /api/payments/{id}"
CRITERIA = parse_criteria(
    "block_on_alerts: [ShadowPersistentMismatch]\n"
    "defaults: {min_comparisons: 5}\n"
    "entities:\n"
    "  payments:\n"
    "    required_routes: ['GET /api/payments/{id}']\n"
)


def test_local_counters_give_the_same_verdict_labelled_as_local() -> None:
    metrics = Metrics()
    metrics.comparisons.labels("payments", PAY, "match").inc(10)
    metrics.comparisons.labels("payments", PAY, "transient").inc(2)
    report = evaluate_local(metrics.registry, CRITERIA)
    assert report.go
    assert report.scope.startswith("local counters since process start (")
    assert report.window == "since process start"
    assert report.notes == ("alerts not evaluated in this scope (no Prometheus)",)

    metrics.comparisons.labels("payments", PAY, "extra").inc()
    metrics.mismatch_fields.labels("payments", "offers[*]").inc()
    report = evaluate_local(metrics.registry, CRITERIA)
    document = to_json(report)
    assert document["verdict"] == "NO-GO"
    assert document["reasons"] == [f"payments {PAY}: 1 persistent mismatch (1 extra) > max 0; fields: offers[*] x1"]


def test_no_traffic_yet_is_no_go_not_go() -> None:
    report = evaluate_local(Metrics().registry, CRITERIA)
    assert not report.go
    assert to_json(report)["reasons"][0] == "payments: no comparisons since process start (no samples; need >= 5)"


def test_expired_divergence_counts_locally() -> None:
    metrics = Metrics()
    metrics.comparisons.labels("payments", PAY, "match").inc(10)
    metrics.divergence_expiry.labels("payments", "metadata").set(time.time() - 60)
    assert "known divergence on field metadata expired" in evaluate_local(metrics.registry, CRITERIA).reasons[0]


def test_a_registry_without_shadow_metrics_cannot_evaluate() -> None:
    registry = CollectorRegistry()
    Counter("unrelated", "not ours", registry=registry).inc()
    with pytest.raises(GateUnavailable, match="shadow_comparisons_total is not in this process's registry"):
        evaluate_local(registry, CRITERIA)


def test_gate_hook_answers_json_and_never_go_without_metrics() -> None:
    from shadow.gate.local import gate_hook

    metrics = Metrics()
    metrics.comparisons.labels("payments", PAY, "match").inc(10)
    assert gate_hook(metrics.registry, CRITERIA)()["verdict"] == "GO"
    answer = gate_hook(CollectorRegistry(), CRITERIA)()
    assert answer["verdict"] == "CANNOT_EVALUATE" and "not in this process's registry" in answer["error"]


def test_unstable_never_blocks_but_shows_its_share_and_the_noisy_fields_suggest_an_ignore() -> None:
    metrics = Metrics()
    metrics.comparisons.labels("payments", PAY, "match").inc(6)
    metrics.comparisons.labels("payments", PAY, "unstable").inc(2)
    metrics.noisy_fields.labels("payments", "servedAt").inc(2)
    metrics.noisy_fields.labels("payments", "nonce").inc(1)
    report = evaluate_local(metrics.registry, CRITERIA)
    assert report.go
    route = report.entities[0].routes[0]
    assert (route.comparisons, route.unstable, route.unstable_share) == (8, 2, 0.25)
    document = to_json(report)
    row = document["entities"][0]["routes"][0]
    assert (row["unstable"], row["unstable_share"], row["verdict"]) == (2, 0.25, "GO")
    assert document["entities"][0]["noisy_fields"] == [
        {"field": "servedAt", "count": 2, "suggest": "ignore: ['servedAt']"},
        {"field": "nonce", "count": 1, "suggest": "ignore: ['nonce']"}]
    from shadow.gate.report import render_table

    text = render_table(report)
    assert "2 (25%)" in text and "payments servedAt x2: suggest ignore: ['servedAt']" in text
    assert "VERDICT: GO" in text
