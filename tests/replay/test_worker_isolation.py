"""The shadow worker process imports the installed package, whatever the current
directory holds; and a worker that cannot start shows why, on /readyz and /metrics,
while clients notice nothing (issue 19: a `shadow/` folder in the directory `shadow demo`
ran from made every worker crash-loop, and the cause was only in stderr)."""
from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

QUICK = [f"/quick/w{n:04d}" for n in range(1, 11)]
DECOY_ERROR = "decoy shadow package, not the installed one"


def decoy_checkout(root: Path) -> Path:
    """A directory holding a folder named `shadow` that fails on import."""
    package = root / "checkout" / "shadow"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f"raise ImportError({DECOY_ERROR!r})\n")
    return package.parent


async def admin_get(sidecar, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(sidecar.admin_url + path) as response:
        return response.status, await response.text()


@pytest.mark.parametrize("engine", ["raw"])
async def test_a_shadow_folder_in_the_working_directory_does_not_replace_the_package(
        world, start, probe, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(decoy_checkout(tmp_path))
    sidecar = await start()
    [state] = sidecar.pipeline.worker_states()
    assert state.ready and state.restarts == 0 and state.last_error is None
    assert await probe.get_all(sidecar.proxy_url, QUICK) == await probe.get_all(world.api_url, QUICK)
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"match": len(QUICK)}
    status, body = await admin_get(sidecar, "/readyz")
    assert status == 200 and json.loads(body)["shadow_problems"] == []


@pytest.mark.parametrize("engine", ["raw"])
async def test_a_worker_that_cannot_start_shows_why_on_readyz_and_metrics(
        world, start, probe, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(decoy_checkout(tmp_path)))  # explicit, so it wins even with -P
    sidecar = await start()
    handoff = sidecar.pipeline
    await probe.until(lambda: handoff.worker_states()[0].restarts >= 2
                      and DECOY_ERROR in (handoff.worker_states()[0].last_error or ""), "two restarts with the reason")
    # clients notice nothing
    assert await probe.get_all(sidecar.proxy_url, QUICK) == await probe.get_all(world.api_url, QUICK)

    status, body = await admin_get(sidecar, "/readyz")
    assert status == 200  # the user path is fine: the replica stays in the Service ...
    assert "worker 0: down or restarting, restarted" in body and DECOY_ERROR in body  # ... and says what is wrong

    status, metrics = await admin_get(sidecar, "/metrics")
    restarts = sidecar.registry.get_sample_value("shadow_worker_restarts_total", {"worker": "0"})
    assert restarts is not None and restarts >= 2
    assert sidecar.registry.get_sample_value("shadow_worker_ready", {"worker": "0"}) == 0
    [line] = [line for line in metrics.splitlines() if line.startswith("shadow_worker_last_error_info{")]
    assert DECOY_ERROR in line and line.endswith(" 1.0")
