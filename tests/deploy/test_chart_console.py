"""The chart's console: a Deployment and Service (optional Ingress) reading the evidence
store whose DSN comes only from a Secret; the proxy pods and the verify Job write to the
same store; the console's pods are not behind the proxy's Service."""
from __future__ import annotations

from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest

STANDALONE = {"demo": True, "upstream": {"url": "http://orders-api.shop.svc:80"}}
EVIDENCE = {"evidence": {"existingSecret": {"name": "orders-evidence", "key": "dsn"}, "retentionDays": 7}}
CONSOLE = {**STANDALONE, **EVIDENCE, "console": {"enabled": True, "prometheus": "http://prometheus.monitoring:9090",
                                                 "ingress": {"enabled": True, "host": "shadow.example.com",
                                                             "tlsSecretName": "shadow-tls"}}}


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_the_console_renders_valid_objects_wired_to_the_evidence_secret(render) -> None:
    objects = render(CONSOLE)
    for obj in objects:
        kubernetes_validate.validate({k: v for k, v in obj.items() if k != "__template__"},
                                     kubernetes_validate.latest_version(), strict=True)
    deployment = named(objects, "Deployment", "orders-shadow-console")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["shadow", "console"]
    env = env_of(container)
    assert env["SHADOW_EVIDENCE"] == {"secretKeyRef": {"name": "orders-evidence", "key": "dsn"}}
    assert env["SHADOW_CONSOLE_TOKEN"] == {"secretKeyRef": {"name": "orders-shadow-admin", "key": "token"}}
    assert env["SHADOW_PROMETHEUS"] == "http://prometheus.monitoring:9090"
    service = named(objects, "Service", "orders-shadow-console")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    proxy_service = named(objects, "Service", "orders-shadow")
    assert not proxy_service["spec"]["selector"].items() <= labels.items()  # console pods get no client traffic
    ingress = named(objects, "Ingress", "orders-shadow-console")
    assert ingress["spec"]["rules"][0]["host"] == "shadow.example.com"
    assert ingress["spec"]["tls"][0]["secretName"] == "shadow-tls"


def test_the_proxy_pods_write_evidence_under_their_pod_name(render) -> None:
    objects = render({**STANDALONE, **EVIDENCE})
    (container,) = named(objects, "Deployment", "orders-shadow")["spec"]["template"]["spec"]["containers"]
    env = env_of(container)
    assert env["SHADOW_EVIDENCE"] == {"secretKeyRef": {"name": "orders-evidence", "key": "dsn"}}
    assert env["SHADOW_EVIDENCE_POD"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["SHADOW_EVIDENCE_RETENTION"] == "7"
    assert not [o for o in objects if o["metadata"]["name"].endswith("-console")]  # the console is opt-in


def test_one_redaction_key_for_every_process_that_writes_masks(render) -> None:
    key = {"redaction": {"existingSecret": {"name": "shadow-redaction", "key": "key"}}}
    objects = render({**CONSOLE, **key, "verify": {
        "enabled": True, "postgres": {"existingSecret": {"name": "ro-pg", "key": "dsn"}},
        "mongo": {"existingSecret": {"name": "ro-mongo", "key": "url"}}}})
    proxy = named(objects, "Deployment", "orders-shadow")["spec"]["template"]["spec"]["containers"][0]
    verify = named(objects, "CronJob", "orders-shadow-verify")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    console = named(objects, "Deployment", "orders-shadow-console")["spec"]["template"]["spec"]["containers"][0]
    for container in (proxy, verify["containers"][0], console):
        assert env_of(container)["SHADOW_REDACTION_KEY"] == {"secretKeyRef": {"name": "shadow-redaction", "key": "key"}}
    unset = named(render(STANDALONE), "Deployment", "orders-shadow")["spec"]["template"]["spec"]["containers"][0]
    assert "SHADOW_REDACTION_KEY" not in env_of(unset)  # a random key per process


def test_without_evidence_nothing_is_written(render) -> None:
    (container,) = named(render(STANDALONE), "Deployment", "orders-shadow")["spec"]["template"]["spec"]["containers"]
    assert not {"SHADOW_EVIDENCE", "SHADOW_EVIDENCE_POD"} & set(env_of(container))


def test_the_verify_job_records_its_runs(render) -> None:
    objects = render({**STANDALONE, **EVIDENCE, "verify": {
        "enabled": True, "postgres": {"existingSecret": {"name": "ro-pg", "key": "dsn"}},
        "mongo": {"existingSecret": {"name": "ro-mongo", "key": "url"}}}})
    cron = named(objects, "CronJob", "orders-shadow-verify")
    (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert env_of(container)["SHADOW_EVIDENCE"] == {"secretKeyRef": {"name": "orders-evidence", "key": "dsn"}}


@pytest.mark.parametrize(("values", "key"), [
    ({**STANDALONE, "console": {"enabled": True}}, "evidence"),
    ({**STANDALONE, **EVIDENCE, "evidence": {"dsn": "postgresql://u:p@db/x"}}, "/evidence"),
    ({**CONSOLE, "console": {"enabled": True, "ingress": {"enabled": True}}}, "host"),
    ({**CONSOLE, "console": {"enabled": True, "token": {"value": "an-inline-token-0123"}}}, "/console/token"),
    ({**STANDALONE, "redaction": {"key": "an-inline-key-0123456"}}, "/redaction"),
])
def test_bad_console_values_are_refused(chart: helm.Chart, values: dict[str, Any], key: str) -> None:
    with pytest.raises(helm.HelmValuesError) as refused:
        chart.render(values, name="orders", namespace="shop")
    assert key in str(refused.value)
