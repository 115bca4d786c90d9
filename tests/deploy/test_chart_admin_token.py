"""The chart wires the admin token: SHADOW_ADMIN_TOKEN always comes from a Secret (an
existing one, or one the chart generates and keeps), never from an inline value."""
from __future__ import annotations

import base64
import importlib.util
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

from shadow.config import check_token

STANDALONE = {"demo": True, "upstream": {"url": "http://orders-api.shop.svc:80"}}
SIDECAR = {"demo": True, "mode": "sidecar", "upstream": {"url": "http://127.0.0.1:3000"}, "sidecar": {"podSelector": {"app": "orders-api"}}}
EXISTING = {"adminToken": {"existingSecret": {"name": "orders-admin", "key": "bearer"}}}


def token_env(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (env,) = [e for e in container["env"] if e["name"] == "SHADOW_ADMIN_TOKEN"]
    return env


def secrets(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == "Secret"]


def test_by_default_the_chart_generates_the_token_secret(render) -> None:
    objects = render(STANDALONE)
    env = token_env(objects)
    assert "value" not in env and env["valueFrom"]["secretKeyRef"] == {"name": "orders-shadow-admin", "key": "token"}
    (secret,) = secrets(objects)
    assert secret["metadata"]["name"] == "orders-shadow-admin"
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"  # an uninstall does not rotate it
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert check_token(token) == token and len(token) == 40  # what the proxy accepts
    assert base64.b64decode(secrets(render(STANDALONE))[0]["data"]["token"]).decode() != token  # random, not a constant


def test_an_existing_secret_is_referenced_and_none_is_generated(render) -> None:
    objects = render({**STANDALONE, **EXISTING})
    assert token_env(objects)["valueFrom"]["secretKeyRef"] == {"name": "orders-admin", "key": "bearer"}
    assert secrets(objects) == []


def test_sidecar_mode_renders_the_secret_its_container_refers_to(render) -> None:
    (secret,) = secrets(render(SIDECAR))
    assert secret["metadata"]["name"] == "orders-shadow-admin"


@pytest.mark.parametrize(("values", "key"), [
    ({**STANDALONE, "adminToken": {"token": "s3cret-Token-0123456789"}}, "/adminToken"),
    ({**STANDALONE, "adminToken": {"existingSecret": {"name": "x", "key": ""}}}, "/adminToken/existingSecret/key"),
])
def test_an_inline_token_is_rejected(chart: helm.Chart, values: dict[str, Any], key: str) -> None:
    with pytest.raises(helm.HelmValuesError) as rejected:
        chart.render(values, name="orders", namespace="shop")
    assert key in str(rejected.value)


def _sidecar_tests() -> Any:
    name = "shadow_tests_chart_sidecar"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / "test_chart_sidecar.py")
        assert spec is not None and spec.loader is not None
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def test_the_api_pod_sidecar_gets_the_token_from_the_secret(render_dir, tmp_path: Path) -> None:
    api_chart = _sidecar_tests().api_chart.__wrapped__(tmp_path)  # the README's parent chart
    rendered = render_dir(api_chart)
    (deployment,) = [d for d in rendered if d["kind"] == "Deployment" and d["metadata"]["name"] == "orders-api"]
    (shadow,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "shadow"]
    (env,) = [e for e in shadow["env"] if e["name"] == "SHADOW_ADMIN_TOKEN"]
    secret_name = env["valueFrom"]["secretKeyRef"]["name"]
    assert secret_name in {s["metadata"]["name"] for s in secrets(rendered)}
