"""The optional verify CronJob: an Indexed Job, one ObjectId-range partition per index,
read-only credentials from Secrets, a rate limit, results pushed to a Pushgateway."""
from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from .test_chart_render import KUBE_VERSIONS, STANDALONE, by_kind, merged, without_marker  # noqa: TID252

VERIFY = {"verify": {"enabled": True, "partitions": 3, "maxRate": 500, "entities": ["payments"],
                     "pushgateway": "http://pushgateway.monitoring:9091",
                     "postgres": {"existingSecret": {"name": "orders-pg-readonly", "key": "dsn"}},
                     "mongo": {"existingSecret": {"name": "orders-mongo-readonly", "key": "url"}}}}


def test_verify_is_off_by_default(render) -> None:
    assert by_kind(render(STANDALONE), "CronJob") == []


def test_verify_cronjob_is_an_indexed_job_with_read_only_secrets_and_push(render) -> None:
    (cron,) = by_kind(render(merged(STANDALONE, VERIFY)), "CronJob")
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(without_marker(cron), version, strict=True)
    job = cron["spec"]["jobTemplate"]["spec"]
    assert job["completionMode"] == "Indexed" and job["completions"] == 3 and job["parallelism"] == 3
    (container,) = job["template"]["spec"]["containers"]
    args: list[Any] = container["args"]
    assert container["command"] == ["shadow", "verify"]
    assert args[args.index("--partition") + 1] == "$(JOB_COMPLETION_INDEX)/3"
    assert args[args.index("--max-rate") + 1] == "500" and args[args.index("--entity") + 1] == "payments"
    assert args[args.index("--push") + 1] == "http://pushgateway.monitoring:9091"
    env = {item["name"]: item for item in container["env"]}
    assert env["SHADOW_PG"]["valueFrom"]["secretKeyRef"]["name"] == "orders-pg-readonly"
    assert env["SHADOW_MONGO"]["valueFrom"]["secretKeyRef"]["name"] == "orders-mongo-readonly"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert job["template"]["spec"]["restartPolicy"] == "Never"


@pytest.mark.parametrize("bad", [
    {"verify": {"enabled": True}},  # no read-only secrets: refused at render
    {"verify": {"enabled": True, "partitions": 0}},
    {"verify": {"enabled": True, "layer": "everything"}},
    {"verify": {"enabled": True, "pushgateway": "ftp://x"}},
    {"verify": {"postgres": {"dsn": "postgresql://inline"}}},
])
def test_bad_verify_values_are_refused(render, bad: dict[str, Any]) -> None:
    with pytest.raises(Exception):  # noqa: B017 — schema or template failure, as helm reports it
        render(merged(STANDALONE, VERIFY if "partitions" in bad["verify"] or "layer" in bad["verify"] else {}, bad))
