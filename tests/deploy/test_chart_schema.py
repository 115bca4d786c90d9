"""values.schema.json rejects bad values before anything reaches the cluster: each bad
value set fails `helm template/install` with an error naming the offending key."""
from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest

GOOD = {"demo": True, "upstream": {"url": "http://orders-api.shop.svc:80"}}
SIDECAR = {"demo": True, "mode": "sidecar", "upstream": {"url": "http://127.0.0.1:3000"}, "sidecar": {"podSelector": {"app": "orders-api"}}}

#: bad values -> the key path the error must name
BAD_VALUES: dict[str, tuple[dict[str, Any], str]] = {
    "inline postgres dsn": ({**GOOD, "postgres": {"dsn": "postgres://shadow:hunter2@pg/orders"}}, "/postgres"),
    "inline mongo url": ({**GOOD, "mongo": {"url": "mongodb://mongo/orders"}}, "/mongo"),
    "inline dsn through extraEnv": ({**GOOD, "extraEnv": [{"name": "SHADOW_PG", "value": "postgres://pg/orders"}]}, "/extraEnv/0"),
    "dsn secret with an empty key": ({**GOOD, "postgres": {"existingSecret": {"name": "orders-pg", "key": ""}}}, "/postgres/existingSecret/key"),
    "unknown mode": ({**GOOD, "mode": "daemonset"}, "/mode"),
    "missing upstream": ({"upstream": {}}, "/upstream"),
    "empty upstream": ({"upstream": {"url": ""}}, "/upstream/url"),
    "upstream not a URL": ({"upstream": {"url": "orders-api:80"}}, "/upstream/url"),
    "proxy port out of range": ({**GOOD, "ports": {"proxy": 70000, "admin": 9090}}, "/ports/proxy"),
    "admin port zero": ({**GOOD, "ports": {"proxy": 8080, "admin": 0}}, "/ports/admin"),
    "service port not a number": ({**GOOD, "standalone": {"service": {"port": "http"}}}, "/standalone/service/port"),
    "typo in a top-level key": ({**GOOD, "replicaCount": 3}, "replicaCount"),
    "typo in config": ({**GOOD, "config": {"queue_size": 10}}, "/config"),
    "unknown reload mode": ({**GOOD, "config": {"reload": "inotify"}}, "/config/reload"),
    "zero workers": ({**GOOD, "config": {"workers": 0}}, "/config/workers"),
    "root user": ({**GOOD, "runAsUser": 0}, "/runAsUser"),
    "admin port open to everyone": ({**GOOD, "networkPolicy": {"adminFrom": []}}, "/networkPolicy/adminFrom"),
    "admin port open to an ipBlock": ({**GOOD, "networkPolicy": {"adminFrom": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}}, "/networkPolicy/adminFrom/0"),
    "sidecar without pod selector": ({**SIDECAR, "sidecar": {"podSelector": {}}}, "/sidecar/podSelector"),
    "bad image digest": ({**GOOD, "image": {"repository": "r", "digest": "latest"}}, "/image/digest"),
    "bad scrape interval": ({**GOOD, "serviceMonitor": {"enabled": True, "interval": "often"}}, "/serviceMonitor/interval"),
    "switch not a boolean": ({**GOOD, "prometheusRule": {"enabled": "yes"}}, "/prometheusRule/enabled"),
    "unknown engine": ({**GOOD, "config": {"engine": "uvicorn"}}, "/config/engine"),
    "unknown shadow process mode": ({**GOOD, "config": {"shadowProcess": "thread"}}, "/config/shadowProcess"),
    "niceness above 19": ({**GOOD, "config": {"shadowNice": 20}}, "/config/shadowNice"),
    "negative niceness": ({**GOOD, "config": {"shadowNice": -5}}, "/config/shadowNice"),
    "niceness not a number": ({**GOOD, "config": {"shadowNice": "low"}}, "/config/shadowNice"),
    "negative explain rate": ({**GOOD, "config": {"explainRate": -1}}, "/config/explainRate"),
    "zero recent mismatches": ({**GOOD, "config": {"recentMismatches": 0}}, "/config/recentMismatches"),
    "gate switch not a boolean": ({**GOOD, "gate": {"enabled": "true"}}, "/gate/enabled"),
    "gate configmap not a name": ({**GOOD, "gate": {"existingConfigMap": "Gate Criteria"}}, "/gate/existingConfigMap"),
    "gate key with a slash": ({**GOOD, "gate": {"key": "../gate.yaml"}}, "/gate/key"),
    "typo in gate": ({**GOOD, "gate": {"criteria": "gate.yaml"}}, "/gate"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_are_rejected_naming_the_key(chart: helm.Chart, case: str) -> None:
    values, key = BAD_VALUES[case]
    with pytest.raises(helm.HelmValuesError) as rejected:
        chart.render(values, name="orders", namespace="shop")
    assert key in str(rejected.value), f"{case}: the error should name {key}: {rejected.value}"


@pytest.mark.parametrize("values", [GOOD, SIDECAR], ids=["standalone", "sidecar"])
def test_good_values_pass_the_schema(chart: helm.Chart, values: dict[str, Any]) -> None:
    chart.validate_schema(chart.merge_values(values))
    assert chart.render(values, name="orders", namespace="shop")


def test_the_chart_defaults_alone_do_not_install(chart: helm.Chart) -> None:
    """upstream.url is required: `helm install` without it says so instead of deploying a proxy to nowhere."""
    with pytest.raises(helm.HelmValuesError, match="/upstream/url"):
        chart.render(None, name="orders", namespace="shop")


def test_grace_period_shorter_than_the_drain_is_rejected(chart: helm.Chart) -> None:
    """Across-key check the schema cannot express: Kubernetes would SIGKILL the proxy mid-drain."""
    values = {**GOOD, "standalone": {"terminationGracePeriodSeconds": 10}}
    with pytest.raises(helm.HelmRenderError, match=r"standalone\.terminationGracePeriodSeconds \(10\)"):
        chart.render(values, name="orders", namespace="shop")
