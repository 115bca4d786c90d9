"""The pure gate decision and its rendering: GO only when every check passes, and every
NO-GO says which entity, route and field, and why."""
from __future__ import annotations

import json

from shadow.gate.criteria import parse_criteria
from shadow.gate.report import render_json, render_table
from shadow.gate.verdict import FiredAlert, GateSamples, RouteSample, decide

NOW = 1_795_000_000.0  # 2026-11-18
PAY = "GET /api/payments/{id}"
EXPORT = "GET /api/export/payments"
USER = "GET /api/users/{id}"

CRITERIA = parse_criteria(
    "window: 7d\n"
    "block_on_alerts: [ShadowPersistentMismatch, ShadowWorkDropped]\n"
    "defaults: {min_comparisons: 100, max_mismatches: 0, max_error_ratio: 0.01}\n"
    "entities:\n"
    "  payments:\n"
    "    required_routes: ['GET /api/payments/{id}']\n"
    "    routes:\n"
    "      'GET /api/export/payments': {min_comparisons: 5, max_error_ratio: 0.5}\n"
    "  users:\n"
    "    required_routes: ['GET /api/users/{id}']\n",
    "gate.yaml",
)


def samples(*routes: RouteSample, fields: dict | None = None, expiries: dict | None = None,
            alerts: tuple[FiredAlert, ...] | None = ()) -> GateSamples:
    return GateSamples("Prometheus http://prom:9090", "7d", NOW, routes, fields or {}, expiries or {}, alerts)


def clean() -> list[RouteSample]:
    return [
        RouteSample("payments", PAY, {"match": 900, "transient": 12}),
        RouteSample("payments", EXPORT, {"match": 40}),
        RouteSample("users", USER, {"match": 300}),
    ]


def test_clean_traffic_is_go_and_transient_never_blocks() -> None:
    report = decide(samples(*clean()), CRITERIA)
    assert report.go and report.exit_code == 0 and report.reasons == ()
    payments = report.entities[0]
    assert (payments.total.comparisons, payments.total.transient, payments.total.persistent) == (952, 12, 0)
    text = render_table(report)
    assert "VERDICT: GO (2 entities pass every criterion)" in text
    assert "NO-GO" not in text


def test_persistent_mismatch_names_entity_route_and_fields() -> None:
    routes = clean()
    routes[0] = RouteSample("payments", PAY, {"match": 900, "mismatch": 2, "missing": 1})
    report = decide(samples(*routes, fields={"payments": {"amount": 2, "buyerId": 1, "status": 1, "x": 1}}), CRITERIA)
    assert report.exit_code == 1
    assert report.entities[1].go  # users may still flip
    reason = f"payments {PAY}: 3 persistent mismatches (2 mismatch, 1 missing) > max 0; fields: amount x2, buyerId x1, status x1"
    text = render_table(report)
    assert f"  - {reason}" in text
    assert "VERDICT: NO-GO (1 reason)" in text
    row = next(line for line in text.splitlines() if PAY in line and line.startswith("payments"))
    assert row.split()[3:] == ["903", "3", "0", "0", "0", "amount", "x2,", "buyerId", "x1,", "status", "x1", "NO-GO"]
    document = json.loads(render_json(report))
    assert document["verdict"] == "NO-GO" and document["reasons"] == [reason]


def test_required_route_without_samples_and_too_few_comparisons() -> None:
    report = decide(samples(RouteSample("payments", EXPORT, {"match": 3})), CRITERIA)
    assert list(report.reasons) == [
        "3 comparisons in 7d, need >= 100",
        "3 comparisons on route in 7d, need >= 5",
        "no comparisons on required route in 7d (no samples)",
        "no comparisons in 7d (no samples; need >= 100)",
        "no comparisons on required route in 7d (no samples)",
    ]
    assert f"users {USER}: no comparisons on required route in 7d (no samples)" in render_table(report)


def test_error_ratio_per_route_limit_and_entity_limit() -> None:
    routes = clean()
    routes[1] = RouteSample("payments", EXPORT, {"match": 40, "error": 20})  # 33% < route max 50%
    report = decide(samples(*routes), CRITERIA)
    assert report.entities[0].reasons == ("error ratio 2.06% (20/972) > max 1.00%",)
    routes[0] = RouteSample("payments", PAY, {"match": 800, "error": 100})
    report = decide(samples(*routes), CRITERIA)
    assert "error ratio 11.11% (100/900) > max 1.00%" in report.entities[0].routes[1].reasons


def test_expired_divergence_and_fired_alerts() -> None:
    report = decide(
        samples(
            *clean(),
            expiries={("payments", "metadata"): NOW - 86400, ("payments", "blockchain"): NOW + 86400},
            alerts=(FiredAlert("ShadowWorkDropped", {"reason": "queue_full"}),
                    FiredAlert("ShadowPersistentMismatch", {"entity": "users", "route": USER})),
        ),
        CRITERIA,
    )
    payments, users = report.entities
    assert payments.reasons == (
        "known divergence on field metadata expired 2026-11-17T11:06:40Z",
        "alert ShadowWorkDropped fired in 7d (reason=queue_full)",
    )
    assert users.reasons == (
        "alert ShadowWorkDropped fired in 7d (reason=queue_full)",
        f"alert ShadowPersistentMismatch fired in 7d (route={USER})",
    )


def test_local_scope_says_alerts_were_not_evaluated() -> None:
    report = decide(samples(*clean(), alerts=None), CRITERIA)
    assert report.go
    assert "note: alerts not evaluated in this scope (no Prometheus)" in render_table(report)
    assert json.loads(render_json(report))["notes"] == ["alerts not evaluated in this scope (no Prometheus)"]


def test_entities_outside_the_criteria_are_not_gated() -> None:
    report = decide(samples(*clean(), RouteSample("disputes", "GET /api/disputes/{id}", {"mismatch": 9})), CRITERIA)
    assert report.go and [e.entity for e in report.entities] == ["payments", "users"]
