"""The shipped alerting rules: promtool validates them and runs their unit tests, and
every alert is actionable (labels, summary, a runbook anchor that exists) and proven to
fire by at least one promtool case."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "rules" / "alerts.yml"
ALERT_TESTS = ROOT / "rules" / "alerts_test.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"

promtool = shutil.which("promtool")
needs_promtool = pytest.mark.needs_tool("promtool")  # Debian package `prometheus`


def _alert_rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


@needs_promtool
def test_promtool_check_rules_accepts_the_alerts() -> None:
    done = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_alert_rules())} rules found" in done.stdout


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    done = subprocess.run(
        [promtool, "test", "rules", ALERT_TESTS.name], cwd=ALERT_TESTS.parent, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@needs_promtool
def test_promtool_unit_tests_catch_a_transient_that_pages(tmp_path: Path) -> None:
    """If someone widened the mismatch alert to transient outcomes, the silence cases fail."""
    widened = ALERTS.read_text().replace('outcome=~"mismatch|missing|extra"', 'outcome=~"mismatch|missing|extra|transient"')
    assert widened != ALERTS.read_text()
    (tmp_path / "alerts.yml").write_text(widened)
    shutil.copy(ALERT_TESTS, tmp_path / "alerts_test.yml")
    done = subprocess.run([promtool, "test", "rules", "alerts_test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "ShadowPersistentMismatch" in done.stdout + done.stderr


def test_every_alert_is_actionable() -> None:
    anchors = set(re.findall(r'<a id="([a-z0-9-]+)"></a>', RUNBOOK.read_text()))
    rules = _alert_rules()
    assert len(rules) >= 6
    for rule in rules:
        annotations = rule["annotations"]
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule["alert"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        path, _, anchor = annotations["runbook"].partition("#")
        assert path == "docs/runbook.md" and anchor == rule["alert"].lower(), rule["alert"]
        assert anchor in anchors, f"{rule['alert']}: runbook anchor #{anchor} missing in docs/runbook.md"


def test_every_alert_has_a_firing_case() -> None:
    fired = {
        case["alertname"]
        for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {rule["alert"] for rule in _alert_rules()} <= fired


def test_transient_outcomes_never_page() -> None:
    for rule in _alert_rules():
        assert "transient" not in rule["expr"], f"{rule['alert']} looks at transient outcomes"
