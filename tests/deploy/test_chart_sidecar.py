"""Sidecar mode the way a team uses it: its own API chart depends on the shadow chart and
includes `shadow.sidecarContainer` / `shadow.sidecarVolumes` in its pod spec, and its
Service targets the proxy port. This is the example of helm/shadow/README.md."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

CHART_DIR = Path(__file__).resolve().parents[2] / "helm" / "shadow"
README = CHART_DIR / "README.md"


def example_block(marker: str) -> str:
    """The fenced block that follows `<!-- marker -->` in the chart README (tested, so the doc works)."""
    text = README.read_text()
    start = text.index(f"<!-- {marker} -->")
    body = text[text.index("```", start):]
    body = body[body.index("\n") + 1:]
    return body[:body.index("```")]


@pytest.fixture
def api_chart(tmp_path: Path) -> Path:
    """The team's API chart from the README example, with the shadow chart as a dependency."""
    chart = tmp_path / "orders-api"
    (chart / "templates").mkdir(parents=True)
    (chart / "charts").mkdir()
    shutil.copytree(CHART_DIR, chart / "charts" / "shadow")
    (chart / "Chart.yaml").write_text(example_block("sidecar-chart-yaml"))
    (chart / "values.yaml").write_text(example_block("sidecar-values"))
    (chart / "templates" / "deployment.yaml").write_text(example_block("sidecar-deployment"))
    (chart / "templates" / "service.yaml").write_text(example_block("sidecar-service"))
    return chart


def objects_of(rendered: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in rendered if o["kind"] == kind]


def test_api_pod_carries_the_locked_down_sidecar(render_dir, api_chart: Path) -> None:
    rendered = render_dir(api_chart)
    (deployment,) = [d for d in objects_of(rendered, "Deployment") if d["metadata"]["name"] == "orders-api"]
    pod = deployment["spec"]["template"]
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    assert set(containers) == {"api", "shadow"}
    shadow = containers["shadow"]
    env = {e["name"]: e for e in shadow["env"]}
    assert env["SHADOW_UPSTREAM"]["value"] == "http://127.0.0.1:3000"
    assert env["SHADOW_PG"]["valueFrom"]["secretKeyRef"] == {"name": "orders-pg", "key": "dsn"}
    security = shadow["securityContext"]
    assert security["runAsNonRoot"] is True and security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True and security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert shadow["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert shadow["readinessProbe"]["httpGet"]["path"] == "/readyz"
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    for mount in shadow["volumeMounts"]:
        assert mount["name"] in volumes, f"the sidecar mounts {mount['name']} but the pod has no such volume"
    rules_maps = {c["metadata"]["name"] for c in objects_of(rendered, "ConfigMap")}
    assert volumes["shadow-rules"]["configMap"]["name"] in rules_maps, "the pod must mount the ConfigMap the subchart renders"
    for obj in rendered:
        if obj["kind"] not in {"ServiceMonitor", "PrometheusRule"}:
            kubernetes_validate.validate({k: v for k, v in obj.items() if k != "__template__"}, kubernetes_validate.latest_version(), strict=True)


def test_api_service_sends_traffic_through_the_proxy(render_dir, api_chart: Path) -> None:
    rendered = render_dir(api_chart)
    (service,) = [s for s in objects_of(rendered, "Service") if s["metadata"]["name"] == "orders-api"]
    (deployment,) = [d for d in objects_of(rendered, "Deployment") if d["metadata"]["name"] == "orders-api"]
    pod = deployment["spec"]["template"]
    named_ports = {p["name"]: (c["name"], p["containerPort"]) for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    (port,) = service["spec"]["ports"]
    assert named_ports[port["targetPort"]] == ("shadow", 8080), "the API's Service must target the proxy, not the API"
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    policy = next(o for o in rendered if o["kind"] == "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()


def test_checksum_annotation_follows_the_reload_mode(render_dir, api_chart: Path) -> None:
    def annotations(values: dict[str, Any] | None) -> dict[str, str]:
        rendered = render_dir(api_chart, values)
        (deployment,) = [d for d in objects_of(rendered, "Deployment") if d["metadata"]["name"] == "orders-api"]
        return deployment["spec"]["template"]["metadata"].get("annotations") or {}

    assert "checksum/shadow-rules" not in annotations(None), "reload=watch follows ConfigMap edits live"
    assert len(annotations({"shadow": {"config": {"reload": "signal"}}})["checksum/shadow-rules"]) == 64


def test_values_example_is_valid_yaml_for_the_subchart(api_chart: Path) -> None:
    values = yaml.safe_load((api_chart / "values.yaml").read_text())
    assert values["shadow"]["mode"] == "sidecar"


def test_sidecar_carries_the_proxy_settings_and_the_gate_criteria(render_dir, api_chart: Path) -> None:
    """The settings added after the README example was written reach the sidecar with no change to the API chart."""
    def shadow_container(values: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
        rendered = render_dir(api_chart, values)
        (deployment,) = [d for d in objects_of(rendered, "Deployment") if d["metadata"]["name"] == "orders-api"]
        pod = deployment["spec"]["template"]
        (shadow,) = [c for c in pod["spec"]["containers"] if c["name"] == "shadow"]
        return pod, shadow, rendered

    pod, shadow, rendered = shadow_container(None)
    env = {e["name"]: e.get("value") for e in shadow["env"]}
    assert {k: env[k] for k in ("SHADOW_ENGINE", "SHADOW_SHADOW_PROCESS", "SHADOW_SHADOW_NICE")} == \
        {"SHADOW_ENGINE": "raw", "SHADOW_SHADOW_PROCESS": "worker", "SHADOW_SHADOW_NICE": "19"}
    assert env["SHADOW_GATE_CRITERIA"] == "/etc/shadow/gate/gate.yaml"
    (mount,) = [m for m in shadow["volumeMounts"] if m["mountPath"] == "/etc/shadow/gate"]
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == mount["name"]]
    (gate_map,) = [c for c in objects_of(rendered, "ConfigMap") if c["metadata"]["name"] == volume["configMap"]["name"]]
    assert gate_map["data"]["gate.yaml"] == (CHART_DIR.parents[1] / "rules" / "gate.yaml").read_text()

    _, tuned, _ = shadow_container({"shadow": {"config": {"engine": "aiohttp", "shadowProcess": "inline", "shadowNice": 5,
                                                          "explainRate": 0, "recentMismatches": 1000}, "gate": {"enabled": False}}})
    env = {e["name"]: e.get("value") for e in tuned["env"]}
    assert {k: env[k] for k in ("SHADOW_ENGINE", "SHADOW_SHADOW_PROCESS", "SHADOW_SHADOW_NICE", "SHADOW_EXPLAIN_RATE", "SHADOW_RECENT_MISMATCHES")} == \
        {"SHADOW_ENGINE": "aiohttp", "SHADOW_SHADOW_PROCESS": "inline", "SHADOW_SHADOW_NICE": "5", "SHADOW_EXPLAIN_RATE": "0", "SHADOW_RECENT_MISMATCHES": "1000"}
    assert "SHADOW_GATE_CRITERIA" not in env and all(m["mountPath"] != "/etc/shadow/gate" for m in tuned["volumeMounts"])
