"""Gate criteria files: the shipped one loads; bad ones are refused with file:line and
the bad value, all problems at once."""
from __future__ import annotations

from pathlib import Path

import pytest

from shadow.gate.criteria import CriteriaError, load_criteria, parse_criteria, parse_duration

ROOT = Path(__file__).resolve().parents[2]


def issues(text: str) -> list[str]:
    with pytest.raises(CriteriaError) as raised:
        parse_criteria(text, "gate.yaml")
    return [str(issue) for issue in raised.value.issues]


def test_shipped_criteria_load() -> None:
    criteria = load_criteria(ROOT / "rules" / "gate.yaml")
    assert criteria.window == "7d" and criteria.window_seconds == 7 * 86400
    payments = criteria.only("payments").entities[0]
    assert payments.min_comparisons == 2000 and payments.max_mismatches == 0
    required = {r.route for r in payments.routes if r.required}
    assert required == {"GET /api/payments/{id}"}
    writes = next(r for r in payments.routes if r.route == "POST /api/payments")
    assert (writes.min_comparisons, writes.required, writes.max_error_ratio) == (10, False, 0.001)
    assert "ShadowPersistentMismatch" in criteria.block_on_alerts


def test_defaults_and_entity_overrides() -> None:
    criteria = parse_criteria(
        "window: 24h\n"
        "defaults: {min_comparisons: 50, max_error_ratio: 0.01}\n"
        "entities:\n"
        "  users:\n"
        "  payments:\n"
        "    max_mismatches: 2\n"
        "    required_routes: ['GET /api/payments/{id}']\n"
    )
    users, payments = criteria.entities
    assert (users.min_comparisons, users.max_mismatches, users.max_error_ratio, users.routes) == (50, 0, 0.01, ())
    assert payments.max_mismatches == 2
    assert payments.routes[0].min_comparisons == 1 and payments.routes[0].max_mismatches == 2
    assert criteria.with_window("1h").window_seconds == 3600


def test_errors_name_file_line_key_and_value() -> None:
    found = issues(
        "window: 7 days\n"                                  # 1
        "block_on_alerts: [ShadowPersistentMismatch, 'not an alert']\n"  # 2
        "entities:\n"                                        # 3
        "  payments:\n"                                      # 4
        "    max_mismatch: 0\n"                              # 5
        "    max_error_ratio: 5%\n"                          # 6
        "    min_comparisons: -3\n"                          # 7
        "    required_routes: [payments]\n"                  # 8
        "    routes:\n"                                      # 9
        "      'GET /api/payments': {min_comparison: 1}\n"   # 10
    )
    assert found == [
        "gate.yaml:1: window: '7 days' is not a Prometheus duration (e.g. 30m, 24h, 7d, 1h30m)",
        "gate.yaml:2: block_on_alerts: 'not an alert' is not an alert name",
        "gate.yaml:5: entities.payments: unknown key 'max_mismatch' (allowed: max_error_ratio, max_mismatches, min_comparisons, required_routes, routes, verify)",
        "gate.yaml:7: entities.payments.min_comparisons: expected a whole number >= 1, got -3",
        "gate.yaml:6: entities.payments.max_error_ratio: expected a ratio between 0 and 1, got '5%'",
        "gate.yaml:8: entities.payments.required_routes: 'payments' is not a route name like 'GET /api/payments/{id}'",
        "gate.yaml:10: entities.payments.routes['GET /api/payments']: unknown key 'min_comparison' (allowed: max_error_ratio, max_mismatches, min_comparisons)",
    ]


def test_an_entity_can_never_be_go_without_samples() -> None:
    assert issues("defaults: {min_comparisons: 0}\nentities: {users: }\n") == [
        "gate.yaml:1: defaults.min_comparisons: expected a whole number >= 1, got 0"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "gate.yaml:1: empty file: expected `window` and `entities`"),
        ("window: 7d\n", "gate.yaml:1: missing key `entities`: the gate needs at least one entity"),
        ("entities: {}\n", "gate.yaml:1: `entities` is empty: the gate needs at least one entity"),
        ("entities:\n  users:\n  users:\n", "gate.yaml:3: entities: duplicate key 'users'"),
        ("windw: 7d\nentities: {users: }\n", "gate.yaml:1: the file: unknown key 'windw' (allowed: block_on_alerts, defaults, dualwrite_gaps, entities, window)"),
        ("entities: [users]\n", "gate.yaml:1: entities: expected a mapping, got ['users']"),
        ("entities:\n  users: {max_mismatches: [1]\n", "gate.yaml:3: not valid YAML: expected ',' or '}', but got '<stream end>'"),
    ],
)
def test_structural_errors(text: str, expected: str) -> None:
    assert issues(text) == [expected]


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(CriteriaError, match=r"missing\.yaml:0: cannot read: No such file"):
        load_criteria(tmp_path / "missing.yaml")


def test_only_and_window_overrides_refuse_bad_input() -> None:
    criteria = parse_criteria("entities: {users: , payments: }\n")
    with pytest.raises(KeyError, match="entity 'orders' is not in <criteria> \\(known: users, payments\\)"):
        criteria.only("orders")
    with pytest.raises(ValueError, match="'seven' is not a Prometheus duration"):
        criteria.with_window("seven")


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("1h30m", 5400), ("7d", 604800), ("1w", 604800), ("500ms", 0.5)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_shipped_criteria_name_only_entities_and_routes_the_rules_shadow() -> None:
    from shadow.rules import load_rules

    rules = load_rules(ROOT / "rules" / "marketplace")
    shadowed = {(route.entity, route.name) for route in rules.routes}
    criteria = load_criteria(ROOT / "rules" / "gate.yaml")
    assert {e.entity for e in criteria.entities} == set(rules.entities)
    for entity in criteria.entities:
        for route in entity.routes:
            assert (entity.entity, route.route) in shadowed, f"{entity.entity}: {route.route} is not a shadowed route"


def test_shipped_criteria_block_on_every_shipped_alert() -> None:
    import yaml

    groups = yaml.safe_load((ROOT / "rules" / "alerts.yml").read_text())["groups"]
    alerts = {rule["alert"] for group in groups for rule in group["rules"]}
    assert set(load_criteria(ROOT / "rules" / "gate.yaml").block_on_alerts) == alerts
