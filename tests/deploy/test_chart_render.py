"""The chart renders valid Kubernetes objects in both modes, with the security settings,
probes, secrets-only DSNs and the admin port kept internal."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "helm" / "shadow"
#: The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schema known.
KUBE_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}

#: the base value sets deploy the repository's demo rules (`demo: true`); without it the
#: chart wants the user's own (test_the_chart_refuses_to_render_without_user_rules)
STANDALONE = {"demo": True, "upstream": {"url": "http://orders-api.shop.svc.cluster.local:80"}}
SIDECAR = {"demo": True, "mode": "sidecar", "upstream": {"url": "http://127.0.0.1:3000"},
           "sidecar": {"podSelector": {"app": "orders-api"}}}
MONITORING = {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
              "prometheusRule": {"enabled": True}, "dashboard": {"enabled": True}}
SECRETS = {"postgres": {"existingSecret": {"name": "orders-pg", "key": "dsn"}},
           "mongo": {"existingSecret": {"name": "orders-mongo", "key": "uri"}}}
#: the proxy settings added after the chart was written, all away from their defaults
PROXY_TUNING = {"config": {"engine": "aiohttp", "shadowProcess": "inline", "shadowNice": 10, "explainRate": 2.5, "recentMismatches": 50,
                           "headerTimeout": 10, "maxConnections": 500, "adminMaxConnections": 8,
                           "forwardedHeaders": "append", "traceMethod": "forward", "dotSegments": "forward"}}
TUNED_ENV = {"SHADOW_HEADER_TIMEOUT": "10", "SHADOW_MAX_CONNECTIONS": "500", "SHADOW_ADMIN_MAX_CONNECTIONS": "8",
             "SHADOW_FORWARDED_HEADERS": "append", "SHADOW_TRACE_METHOD": "forward", "SHADOW_DOT_SEGMENTS": "forward", "SHADOW_ENGINE": "aiohttp", "SHADOW_SHADOW_PROCESS": "inline", "SHADOW_SHADOW_NICE": "10",
             "SHADOW_EXPLAIN_RATE": "2.5", "SHADOW_RECENT_MISMATCHES": "50"}
DEFAULT_ENV = {"SHADOW_HEADER_TIMEOUT": "60", "SHADOW_KEEPALIVE_TIMEOUT": "75", "SHADOW_MAX_CONNECTIONS": "10000",
               "SHADOW_ADMIN_MAX_CONNECTIONS": "16", "SHADOW_FORWARDED_HEADERS": "overwrite", "SHADOW_TRACE_METHOD": "refuse",
               "SHADOW_DOT_SEGMENTS": "refuse",
               "SHADOW_MAX_REQUEST_LINE": "8192", "SHADOW_MAX_HEADER_COUNT": "100", "SHADOW_ENGINE": "raw", "SHADOW_SHADOW_PROCESS": "worker", "SHADOW_SHADOW_NICE": "19",
               "SHADOW_EXPLAIN_RATE": "20", "SHADOW_RECENT_MISMATCHES": "200"}
GATE_FILE = "/etc/shadow/gate/gate.yaml"


def merged(*parts: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(result.get(key), dict):
                result[key] = merged(result[key], value)
            else:
                result[key] = copy.deepcopy(value)
    return result


VALUE_SETS: dict[str, dict[str, Any]] = {
    "standalone-minimal": STANDALONE,
    "standalone-full": merged(STANDALONE, MONITORING, SECRETS, PROXY_TUNING, {
        "image": {"digest": "sha256:" + "a" * 64},
        "imagePullSecrets": [{"name": "registry"}],
        "config": {"reload": "signal", "rateLimit": 250.5, "otlpEndpoint": "http://otel-collector.monitoring:4318", "logLevel": "debug"},
        "extraEnv": [{"name": "SHADOW_PG", "valueFrom": {"secretKeyRef": {"name": "other-pg", "key": "dsn"}}},
                     {"name": "TZ", "value": "UTC"}],
        "standalone": {"replicaCount": 3, "service": {"type": "LoadBalancer", "port": 8000},
                       "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
                                                      "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "shadow"}}}]},
        "networkPolicy": {"proxyFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}}],
                          "adminFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                                         "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]},
        "ports": {"proxy": 18080, "admin": 19090},
    }),
    "standalone-existing-rules": merged(STANDALONE, {"demo": False, "rules": {"existingConfigMap": "orders-shadow-rules-v7"},
                                                     "gate": {"existingConfigMap": "orders-cutover", "key": "criteria.yaml"},
                                                     "networkPolicy": {"enabled": False}, "podDisruptionBudget": {"enabled": False}}),
    "sidecar-minimal": SIDECAR,
    "sidecar-gate-off": merged(SIDECAR, {"gate": {"enabled": False}}),
    "sidecar-full": merged(SIDECAR, MONITORING, SECRETS, PROXY_TUNING, {
        "config": {"reload": "signal"}, "dashboard": {"namespace": "monitoring"},
        "networkPolicy": {"extraIngress": [{"ports": [{"port": 3000, "protocol": "TCP"}],
                                            "from": [{"podSelector": {"matchLabels": {"app": "orders-batch"}}}]}]},
    }),
}


@pytest.fixture(params=sorted(VALUE_SETS), scope="module")
def value_set(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param, VALUE_SETS[request.param]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {[(o['kind'], o['metadata']['name']) for o in objects]}"
    return found[0]


def without_marker(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != "__template__"}


def test_every_manifest_is_valid_against_the_kubernetes_schemas(render, value_set) -> None:
    name, values = value_set
    objects = render(values)
    assert objects, name
    for obj in objects:
        if obj["kind"] in CRD_KINDS:
            continue  # no schema in kubernetes-validate: checked structurally below
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(without_marker(obj), version, strict=True)
            except kubernetes_validate.ValidationError as invalid:
                pytest.fail(f"{name}: {obj['__template__']} ({obj['kind']}) invalid for Kubernetes {version}: {invalid.message} at {list(invalid.path)}")


def test_lint_is_clean_in_strict_mode(value_set) -> None:
    name, values = value_set
    report = helm.lint(CHART_DIR, values, strict=True, namespace="shop")
    problems = [m for m in report["messages"] if m["severity"] >= 2 and "icon is recommended" not in m["error"]]
    assert not report["errors"] and not problems, f"{name}: {report}"


def test_modes_render_their_own_objects(render) -> None:
    standalone = {o["kind"] for o in render(VALUE_SETS["standalone-minimal"])}
    sidecar = {o["kind"] for o in render(VALUE_SETS["sidecar-minimal"])}
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "NetworkPolicy"} <= standalone
    # sidecar: no workload of its own; the API pod carries the container (test_chart_sidecar.py)
    assert "Deployment" not in sidecar
    assert {"ConfigMap", "Service", "PodDisruptionBudget", "NetworkPolicy"} <= sidecar
    assert not {"ServiceMonitor", "PrometheusRule"} & (standalone | sidecar), "monitoring objects are opt-in"


def test_standalone_service_fronts_the_proxy_pods(render) -> None:
    objects = render(VALUE_SETS["standalone-full"])
    deployment = next(o for o in by_kind(objects, "Deployment"))
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    front = next(s for s in by_kind(objects, "Service") if s["metadata"]["name"] == "orders-shadow")
    assert front["spec"]["type"] == "LoadBalancer"
    assert front["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "shadow-proxy", "protocol": "TCP"}]
    assert front["spec"]["selector"].items() <= pod_labels.items()
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["SHADOW_UPSTREAM"]["value"] == "http://orders-api.shop.svc.cluster.local:80"
    assert env["SHADOW_LISTEN"]["value"] == "0.0.0.0:18080"
    assert env["SHADOW_ADMIN_LISTEN"]["value"] == "0.0.0.0:19090"
    assert env["SHADOW_RATE_LIMIT"]["value"] == "250.5"
    assert env["SHADOW_OTLP_ENDPOINT"]["value"] == "http://otel-collector.monitoring:4318"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"shadow-proxy": 18080, "shadow-admin": 19090}
    assert container["image"] == "ghcr.io/example/shadow@sha256:" + "a" * 64
    assert deployment["spec"]["replicas"] == 3


def pods_of(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o["spec"]["template"] for o in by_kind(objects, "Deployment")]


def test_container_runs_locked_down_with_probes_on_the_admin_port(render) -> None:
    for name in ("standalone-minimal", "standalone-full"):
        objects = render(VALUE_SETS[name])
        (pod,) = pods_of(objects)
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 10001
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        (container,) = spec["containers"]
        security = container["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] > 0
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]["name"]], "read-only root fs needs a writable /tmp"
        assert mounts["/etc/shadow/rules"]["readOnly"] is True
        assert {e["name"]: e.get("value") for e in container["env"]}["SHADOW_RULES"] == "/etc/shadow/rules"
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "shadow-admin"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "shadow-admin"}
        assert container["resources"]["requests"]["memory"] and container["resources"]["limits"]["memory"]
        # endpoints go first, then the proxy drains within the grace period
        assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
        drain = float({e["name"]: e.get("value") for e in container["env"]}["SHADOW_DRAIN_TIMEOUT"])
        assert spec["terminationGracePeriodSeconds"] > 5 + drain


def test_dsns_only_come_from_existing_secrets(render, value_set) -> None:
    name, values = value_set
    objects = render(values)
    text = yaml.safe_dump_all([without_marker(o) for o in objects])
    assert "postgres://" not in text and "mongodb://" not in text
    for pod in pods_of(objects):
        for container in pod["spec"]["containers"]:
            for env in container["env"]:
                if env["name"] in ("SHADOW_PG", "SHADOW_MONGO"):
                    assert "value" not in env and "secretKeyRef" in env["valueFrom"], f"{name}: {env}"
    if values.get("postgres") and values.get("mode") != "sidecar":
        (pod,) = pods_of(objects)
        env = [e for e in pod["spec"]["containers"][0]["env"] if e["name"] == "SHADOW_PG"]
        assert env[0]["valueFrom"]["secretKeyRef"] == {"name": "orders-pg", "key": "dsn"}


def test_rules_come_from_the_chart_or_an_existing_configmap(render) -> None:
    shipped = render(VALUE_SETS["standalone-minimal"])
    rules_map = next(c for c in by_kind(shipped, "ConfigMap") if c["metadata"]["name"] == "orders-shadow-rules")
    chart_files = sorted(p.name for p in (CHART_DIR / "files" / "rules").glob("*.yaml"))
    assert sorted(rules_map["data"]) == chart_files
    (pod,) = pods_of(shipped)
    assert {"name": "shadow-rules", "configMap": {"name": "orders-shadow-rules"}} in pod["spec"]["volumes"]

    existing = render(VALUE_SETS["standalone-existing-rules"])
    assert not [c for c in by_kind(existing, "ConfigMap") if c["metadata"]["name"] == "orders-shadow-rules"]
    (pod,) = pods_of(existing)
    assert {"name": "shadow-rules", "configMap": {"name": "orders-shadow-rules-v7"}} in pod["spec"]["volumes"]


def checksum_of(objects: list[dict[str, Any]]) -> str | None:
    (pod,) = pods_of(objects)
    return (pod["metadata"].get("annotations") or {}).get("checksum/shadow-rules")


def test_rule_edits_roll_the_pods_only_when_hot_reload_is_off(render, render_dir, chart_copy: Path) -> None:
    watch = render(STANDALONE)
    assert {e["name"]: e.get("value") for e in pods_of(watch)[0]["spec"]["containers"][0]["env"]}["SHADOW_RELOAD"] == "watch"
    assert checksum_of(watch) is None, "with reload=watch the proxy follows ConfigMap edits: no restart needed"

    signal_values = merged(STANDALONE, {"config": {"reload": "signal"}})
    before = checksum_of(render(signal_values))
    assert before and len(before) == 64
    rule_file = sorted((chart_copy / "files" / "rules").glob("*.yaml"))[0]
    rule_file.write_text(rule_file.read_text() + "\n# an edit\n")
    after = checksum_of(render_dir(chart_copy, signal_values))
    assert after and after != before, "a rule change must change the pod template so the pods roll"


def ingress_rules_for(policy: dict[str, Any], port: str) -> list[dict[str, Any]]:
    return [rule for rule in policy["spec"]["ingress"] if any(p["port"] == port for p in rule.get("ports", []))]


@pytest.mark.parametrize("name", ["standalone-minimal", "standalone-full", "sidecar-minimal", "sidecar-full"])
def test_network_policy_keeps_the_admin_port_internal(render, name: str) -> None:
    objects = render(VALUE_SETS[name])
    policy = one(objects, "NetworkPolicy")
    admin_rules = ingress_rules_for(policy, "shadow-admin")
    assert admin_rules, "the admin port must have an explicit rule"
    for rule in admin_rules:
        assert rule.get("from"), "an admin rule without `from` would open it to every pod"
        for peer in rule["from"]:
            assert "ipBlock" not in peer
            assert peer.get("namespaceSelector") or peer.get("podSelector")
    assert ingress_rules_for(policy, "shadow-proxy")
    selected = policy["spec"]["podSelector"]["matchLabels"]
    if name.startswith("sidecar"):
        assert selected == {"app": "orders-api"}
    else:
        (pod,) = pods_of(objects)
        assert selected.items() <= pod["metadata"]["labels"].items()


@pytest.mark.parametrize("name", ["standalone-full", "sidecar-full"])
def test_pdb_and_metrics_service_select_the_pods_carrying_the_proxy(render, name: str) -> None:
    objects = render(VALUE_SETS[name])
    pdb = one(objects, "PodDisruptionBudget")
    metrics = next(s for s in by_kind(objects, "Service") if s["metadata"]["name"] == "orders-shadow-metrics")
    expected = {"app": "orders-api"} if name.startswith("sidecar") else pods_of(objects)[0]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= expected.items()
    assert metrics["spec"]["selector"].items() <= expected.items()
    assert metrics["spec"]["ports"][0]["targetPort"] == "shadow-admin"


@pytest.mark.parametrize("name", ["standalone-full", "sidecar-full"])
def test_service_monitor_scrapes_the_metrics_service(render, name: str) -> None:
    objects = render(VALUE_SETS[name])
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    metrics = next(s for s in by_kind(objects, "Service") if s["metadata"]["name"] == "orders-shadow-metrics")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= metrics["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["shop"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in metrics["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


def test_dashboard_configmap_is_picked_up_by_the_grafana_sidecar(render) -> None:
    objects = render(VALUE_SETS["sidecar-full"])
    dashboard = next(c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == "orders-shadow-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert json.loads(dashboard["data"]["shadow.json"]) == json.loads((CHART_DIR / "files" / "dashboard.json").read_text())


def test_notes_say_what_to_do_next(chart) -> None:
    for values in (VALUE_SETS["standalone-minimal"], VALUE_SETS["sidecar-minimal"]):
        notes = chart.render(values, name="orders", namespace="shop")["shadow/templates/NOTES.txt"]
        assert "kubectl -n shop port-forward svc/orders-shadow-metrics 9090" in notes
        assert "shadow gate --prometheus" in notes and "rules/gate.yaml" in notes
        assert "dashboard" in notes
    sidecar_notes = chart.render(VALUE_SETS["sidecar-minimal"], name="orders", namespace="shop")["shadow/templates/NOTES.txt"]
    assert 'include "shadow.sidecarContainer"' in sidecar_notes and "shadow-proxy" in sidecar_notes


def shadow_containers(objects: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(pod spec, shadow container) of every pod carrying the proxy: the Deployment's in
    standalone mode, the sidecar template rendered into a pod in sidecar mode."""
    pods = [pod["spec"] for pod in pods_of(objects)]
    return [(spec, c) for spec in pods for c in spec["containers"] if c["name"] == "shadow"]


@pytest.mark.parametrize("name", ["standalone-minimal", "standalone-full"])
def test_new_proxy_settings_reach_the_standalone_container(render, name: str) -> None:
    (_, container), = shadow_containers(render(VALUE_SETS[name]))
    env = {e["name"]: e.get("value") for e in container["env"]}
    expected = TUNED_ENV if name == "standalone-full" else DEFAULT_ENV
    assert {key: env.get(key) for key in expected} == expected


@pytest.mark.parametrize("name", ["standalone-minimal", "standalone-existing-rules", "sidecar-gate-off"])
def test_gate_criteria_are_mounted_outside_the_rules_directory(render, name: str, chart_copy: Path, render_dir) -> None:
    values = VALUE_SETS[name]
    if values.get("mode") == "sidecar":  # the subchart renders no pod: put the named templates in one
        (chart_copy / "templates" / "probe-pod.yaml").write_text(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: probe\nspec:\n"
            "  containers:\n    {{- include \"shadow.sidecarContainer\" . | nindent 4 }}\n"
            "  volumes:\n    {{- include \"shadow.sidecarVolumes\" . | nindent 4 }}\n")
        objects = render_dir(chart_copy, values)
        (pod,) = by_kind(objects, "Pod")
        spec = pod["spec"]
    else:
        objects = render(values)
        (pod,) = pods_of(objects)
        spec = pod["spec"]
    (container,) = spec["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    gate_maps = [c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"].endswith("-gate")]
    if name == "sidecar-gate-off":
        assert "SHADOW_GATE_CRITERIA" not in env, "gate.enabled=false: /gate answers 501"
        assert "/etc/shadow/gate" not in mounts and "shadow-gate" not in volumes and not gate_maps
        return
    assert env["SHADOW_GATE_CRITERIA"] == GATE_FILE
    gate_dir = GATE_FILE.rsplit("/", 1)[0]
    rules_dir = env["SHADOW_RULES"]
    assert not gate_dir.startswith(rules_dir.rstrip("/") + "/") and gate_dir != rules_dir, \
        "the rules loader reads every *.yaml of its directory: gate.yaml must live elsewhere"
    assert mounts[gate_dir]["readOnly"] is True
    volume = volumes[mounts[gate_dir]["name"]]
    rules_volume = volumes[mounts[rules_dir]["name"]]
    assert volume["configMap"]["name"] != rules_volume["configMap"]["name"]
    if name == "standalone-existing-rules":
        assert volume["configMap"] == {"name": "orders-cutover", "items": [{"key": "criteria.yaml", "path": "gate.yaml"}]}
        assert not gate_maps, "an existing gate ConfigMap replaces the chart's"
        assert "checksum/shadow-gate" not in (pod["metadata"].get("annotations") or {})
        return
    (gate_map,) = gate_maps
    assert volume["configMap"]["name"] == gate_map["metadata"]["name"] == "orders-shadow-gate"
    (item,) = volume["configMap"]["items"]
    assert item["path"] == "gate.yaml"
    assert gate_map["data"][item["key"]] == (REPO / "rules" / "gate.yaml").read_text(), "the pod must get rules/gate.yaml unchanged"
    rules_map = next(c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == "orders-shadow-rules")
    assert "gate.yaml" not in rules_map["data"]
    assert len(pod["metadata"]["annotations"]["checksum/shadow-gate"]) == 64, "criteria are read at start: a change must roll the pods"


def test_gate_criteria_edits_roll_the_pods(render, render_dir, chart_copy: Path) -> None:
    def checksum(objects: list[dict[str, Any]]) -> str:
        (pod,) = pods_of(objects)
        return pod["metadata"]["annotations"]["checksum/shadow-gate"]

    before = checksum(render(STANDALONE))
    gate_file = chart_copy / "files" / "gate.yaml"
    gate_file.write_text(gate_file.read_text().replace("window: 7d", "window: 14d"))
    assert checksum(render_dir(chart_copy, STANDALONE)) != before


def memory_bytes(quantity: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[:-len(suffix)]) * factor
    return float(quantity)


def test_default_memory_leaves_room_for_the_proxy_and_its_worker(render) -> None:
    """Worker mode (default) runs two processes under one limit. bench/RESULTS.md: about
    90 MB per process, 151 MB together under 10x overload; both queues are capped at 64 MiB."""
    (_, container), = shadow_containers(render(STANDALONE))
    assert {e["name"]: e.get("value") for e in container["env"]}["SHADOW_SHADOW_PROCESS"] == "worker"
    requests, limits = container["resources"]["requests"], container["resources"]["limits"]
    measured_overload = 151e6
    worst_case = 2 * 90e6 + 2 * 64 * 2**20
    assert memory_bytes(requests["memory"]) >= measured_overload * 2, "the request should cover the measured overload twice"
    assert memory_bytes(limits["memory"]) >= worst_case * 2, "the limit should cover the bounded worst case with headroom"
    assert "cpu" not in limits, "a CPU limit would throttle the client path"


USER_UPSTREAM = {"upstream": {"url": "http://orders-api.shop.svc.cluster.local:80"}}
USER_RULES = {"rules": {"existingConfigMap": "orders-rules"}, "gate": {"existingConfigMap": "orders-cutover"}}


@pytest.mark.parametrize(("values", "message"), [
    (merged(USER_UPSTREAM, {"gate": {"enabled": False}}), "rules: set rules.existingConfigMap"),
    (merged(USER_UPSTREAM, {"rules": {"existingConfigMap": "orders-rules"}}), "gate: set gate.existingConfigMap"),
    (merged(USER_UPSTREAM, USER_RULES, {"mongo": {"existingSecret": {"name": "orders-mongo", "key": "url"}}}),
     "config.mongoDb: the MongoDB database name is required"),
], ids=["no rules", "no gate criteria", "mongo without a database name"])
def test_the_chart_refuses_to_render_without_user_rules(chart, values: dict[str, Any], message: str) -> None:
    """The demo's marketplace rules, gate and database name are never a silent default."""
    with pytest.raises(helm.HelmRenderError, match=message):
        chart.render(values, name="orders", namespace="shop")


def test_user_rules_render_without_anything_of_the_demo(render) -> None:
    for values in (merged(USER_UPSTREAM, USER_RULES), merged(USER_UPSTREAM, {"rules": {"existingConfigMap": "orders-rules"},
                                                                            "gate": {"enabled": False}})):
        objects = render(values)
        names = {o["metadata"]["name"] for o in by_kind(objects, "ConfigMap")}
        assert "orders-shadow-rules" not in names and "orders-shadow-gate" not in names
        (_, container), = shadow_containers(objects)
        assert "SHADOW_MONGO_DB" not in {e["name"] for e in container["env"]}
    objects = render(merged(USER_UPSTREAM, USER_RULES, {"config": {"mongoDb": "orders"}}))
    (_, container), = shadow_containers(objects)
    assert {"name": "SHADOW_MONGO_DB", "value": "orders"} in container["env"]
    (_, container), = shadow_containers(render(STANDALONE))
    assert {"name": "SHADOW_MONGO_DB", "value": "marketplace"} in container["env"]  # demo: true
