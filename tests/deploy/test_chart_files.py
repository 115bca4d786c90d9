"""What the chart ships from the repository: the alert rules (the same rules promtool
tests), the marketplace rules, and the Grafana dashboard (whose queries a real
Prometheus accepts and whose metrics are the ones docs/architecture.md declares)."""
from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "helm" / "shadow"
DASHBOARD = CHART_DIR / "files" / "dashboard.json"
MONITORING = {"demo": True, "upstream": {"url": "http://orders-api.shop.svc:80"}, "prometheusRule": {"enabled": True}, "dashboard": {"enabled": True}}


def test_alert_rules_copy_is_byte_identical() -> None:
    assert (CHART_DIR / "files" / "alerts.yml").read_bytes() == (REPO / "rules" / "alerts.yml").read_bytes(), \
        "helm/shadow/files/alerts.yml drifted from rules/alerts.yml: run scripts/sync-chart-files"


def test_gate_criteria_copy_is_byte_identical_and_outside_the_rules_directory() -> None:
    assert (CHART_DIR / "files" / "gate.yaml").read_bytes() == (REPO / "rules" / "gate.yaml").read_bytes(), \
        "helm/shadow/files/gate.yaml drifted from rules/gate.yaml: run scripts/sync-chart-files"
    assert not (CHART_DIR / "files" / "rules" / "gate.yaml").exists(), "the rules loader would read gate.yaml as a rule file"


def test_marketplace_rules_copy_is_byte_identical() -> None:
    source = {p.name: p.read_bytes() for p in sorted((REPO / "rules" / "marketplace").glob("*.yaml"))}
    shipped = {p.name: p.read_bytes() for p in sorted((CHART_DIR / "files" / "rules").glob("*.yaml"))}
    assert source, "rules/marketplace/*.yaml is missing"
    assert shipped == source, "helm/shadow/files/rules/ drifted from rules/marketplace/: run scripts/sync-chart-files"


def prometheus_rule(render) -> dict[str, Any]:
    (rule,) = [o for o in render(MONITORING) if o["kind"] == "PrometheusRule"]
    return rule


def test_prometheus_rule_renders_the_repository_alert_rules(render) -> None:
    rule = prometheus_rule(render)
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == yaml.safe_load((REPO / "rules" / "alerts.yml").read_text())["groups"]
    for group in rule["spec"]["groups"]:
        assert group["name"] and group["rules"]
        for alert in group["rules"]:
            assert set(alert) <= {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
            assert isinstance(alert["expr"], str) and (alert.get("alert") or alert.get("record"))


@pytest.mark.needs_tool("promtool")
def test_rendered_rules_pass_the_promtool_tests(render, tmp_path: Path) -> None:
    """The groups Helm renders (after its YAML round trip) pass rules/alerts_test.yml."""
    rendered = {"groups": prometheus_rule(render)["spec"]["groups"]}
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rendered, sort_keys=False))
    shutil.copy(REPO / "rules" / "alerts_test.yml", tmp_path / "alerts_test.yml")
    result = subprocess.run(["promtool", "test", "rules", "alerts_test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


# --- the dashboard -------------------------------------------------------------------

def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target and of the query variables, Grafana macros filled in."""
    board = json.loads(DASHBOARD.read_text())
    queries = [(p["title"], t["expr"]) for p in board["panels"] for t in p.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            metric, label = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable["definition"]).groups()
            queries.append((f"${variable['name']}", f"group by ({label}) ({metric})"))
    macros = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "30s", "$entity": ".*"}
    filled = []
    for title, expr in queries:
        for macro, value in macros.items():
            expr = expr.replace(macro, value)
        assert "$" not in expr, f"{title}: unknown Grafana variable in {expr}"
        filled.append((title, expr))
    return filled


def declared_metrics() -> set[str]:
    """The metric names of the contract table in docs/architecture.md."""
    return set(re.findall(r"^\| `(shadow_[a-z_]+)`", (REPO / "docs" / "architecture.md").read_text(), re.MULTILINE))


def test_dashboard_uses_only_declared_metrics_and_covers_the_operator_questions() -> None:
    declared = declared_metrics()
    assert "shadow_comparisons_total" in declared
    used = set()
    for title, expr in dashboard_queries():
        for name in re.findall(r"\bshadow_[a-z_]+", expr):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert base in declared, f"panel {title!r} uses {name}, which docs/architecture.md does not declare"
            used.add(base)
    for question in ("shadow_comparisons_total",          # comparisons by outcome per entity
                     "shadow_mismatch_fields_total",      # which fields mismatch
                     "shadow_proxy_seconds",              # latency the proxy adds
                     "shadow_queue_depth", "shadow_dropped_total",
                     "shadow_rules_reloads_total"):
        assert question in used, f"the dashboard has no panel on {question}"
    board = json.loads(DASHBOARD.read_text())
    titles = {p["title"] for p in board["panels"]}
    assert "Comparisons by outcome per entity" in titles
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[str]:
    """A real, empty Prometheus on loopback; its base URL."""
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\n")
    port = free_port()
    with (tmp_path / "prometheus.log").open("wb") as log:  # the child keeps its own copy of the fd
        process = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as ready:
                    if ready.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
            assert time.monotonic() < deadline, "prometheus did not become ready"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.needs_tool("prometheus")
def test_a_real_prometheus_accepts_every_dashboard_query(prometheus: str) -> None:
    for title, expr in dashboard_queries():
        query = urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(f"{prometheus}/api/v1/query?{query}", timeout=10) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as rejected:
            pytest.fail(f"panel {title!r}: Prometheus rejects {expr!r}: {rejected.read().decode()}")
        assert answer["status"] == "success", (title, answer)


def test_dashboard_configmap_carries_the_file_unchanged(render) -> None:
    (board,) = [o for o in render(MONITORING) if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard")]
    assert board["data"]["shadow.json"] == DASHBOARD.read_text().rstrip("\n")
