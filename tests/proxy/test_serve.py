"""`shadow proxy` as a process, configured from SHADOW_* env vars: it serves, reloads on
SIGHUP, rejects bad configuration with the name of the setting, and drains on SIGTERM."""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from shadow.demo.embedded import free_port


def _env(**values: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("SHADOW_")}
    env.update(values)
    return env


def _spawn_from_env(upstream_url: str, rules: Path, tmp_path: Path, *args: str,
                    stdout: int = subprocess.PIPE) -> tuple[subprocess.Popen, int, int]:
    """`shadow proxy` configured by SHADOW_* env vars only (as the image and chart run it)."""
    port, admin_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "shadow", "proxy", *args],
        env=_env(SHADOW_UPSTREAM=upstream_url, SHADOW_RULES=str(rules), SHADOW_LISTEN=f"127.0.0.1:{port}",
                 SHADOW_ADMIN_LISTEN=f"127.0.0.1:{admin_port}", SHADOW_RELOAD="signal", SHADOW_LOG_LEVEL="warning",
                 SHADOW_MISMATCH_LOG=str(tmp_path / "mismatches.jsonl")),
        stdout=stdout, stderr=subprocess.PIPE, text=True)
    return process, port, admin_port


def _drivers(pid: int) -> set[str]:
    """The database drivers whose native code is mapped into a process."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {name for name in ("bson", "pymongo", "asyncpg") if f"/{name}/" in maps}


async def _wait_ready(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(int(timeout / 0.1)):
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} not ready within {timeout}s")


async def test_shadow_proxy_runs_from_env_reloads_on_sighup_and_drains_on_sigterm(upstream, widget_rules: Path, tmp_path: Path) -> None:
    process, port, admin_port = _spawn_from_env(upstream.url, widget_rules, tmp_path)
    try:
        admin = f"http://127.0.0.1:{admin_port}"
        await _wait_ready(admin + "/readyz", process)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/3") as response:
                assert response.status == 200 and (await response.json())["_id"] == "3"
            async with session.get(admin + "/rules") as response:
                before = (await response.json())["version"]
            (widget_rules / "widgets.yaml").write_text((widget_rules / "widgets.yaml").read_text() + "  - route: GET /json/{id}\n")
            process.send_signal(signal.SIGHUP)
            for _ in range(100):
                async with session.get(admin + "/rules") as response:
                    after = (await response.json())["version"]
                if after != before:
                    break
                await asyncio.sleep(0.05)
            assert after != before
            in_flight = asyncio.ensure_future(session.get(f"http://127.0.0.1:{port}/slow?delay=0.5"))
            await asyncio.wait_for(upstream.arrived.wait(), 60)  # the request is in flight upstream
            process.send_signal(signal.SIGTERM)
            response = await in_flight
            assert response.status == 200 and await response.text() == "slow"
            response.release()
        assert await asyncio.to_thread(process.wait, 15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_bad_configuration_is_rejected_with_the_setting_and_value(widget_rules: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "shadow", "proxy", "--upstream", "http://127.0.0.1:1", "--rules", str(widget_rules)],
        env=_env(SHADOW_QUEUE_SIZE="lots"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "SHADOW_QUEUE_SIZE: expected a whole number >= 1, got 'lots'" in result.stderr
    result = subprocess.run([sys.executable, "-m", "shadow", "proxy", "--rules", str(widget_rules)],
                            env=_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--upstream / SHADOW_UPSTREAM: required" in result.stderr


def test_a_broken_rules_directory_at_start_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("entity: widgets\ncollection: widgets\ntable: widgets\nfields: {name: name}\nroutes:\n  - route: FETCH /x\n")
    result = subprocess.run(
        [sys.executable, "-m", "shadow", "proxy", "--upstream", "http://127.0.0.1:1", "--rules", str(tmp_path),
         "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        env=_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "bad.yaml:6" in result.stderr and "FETCH" in result.stderr


def test_flags_override_env_and_values_are_checked(widget_rules: Path) -> None:
    from shadow.config import Config, ConfigError

    config = Config.parse({"upstream": "http://api:3000", "rules": str(widget_rules), "workers": "8"},
                          {"SHADOW_WORKERS": "2", "SHADOW_BATCH_SIZE": "10", "SHADOW_LISTEN": "127.0.0.1:8081"})
    assert (config.workers, config.batch_size, config.listen) == (8, 10, "127.0.0.1:8081")
    for env, message in [({"SHADOW_LISTEN": "8080"}, "SHADOW_LISTEN: expected HOST:PORT"),
                         ({"SHADOW_SOURCE_TIMEOUT": "-1"}, "SHADOW_SOURCE_TIMEOUT: expected a number > 0"),
                         ({"SHADOW_RELOAD": "inotify"}, "SHADOW_RELOAD: expected one of watch, signal"),
                         ({"SHADOW_RULES": "/nonexistent"}, None)]:
        try:
            Config.parse({"upstream": "http://api:3000"} if "SHADOW_RULES" in env else
                         {"upstream": "http://api:3000", "rules": str(widget_rules)}, env)
        except ConfigError as problem:
            assert message is None or message in str(problem), str(problem)
            assert "'" in str(problem)  # the bad value is quoted
        else:
            raise AssertionError(f"{env} accepted")


async def test_gate_criteria_flag_serves_the_local_verdict_and_bad_criteria_fail_the_start(upstream, widget_rules: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad-gate.yaml"
    bad.write_text("window: 1h\nentities:\n  widgets: {min_comparison: 3}\n")
    result = subprocess.run(
        [sys.executable, "-m", "shadow", "proxy", "--upstream", upstream.url, "--rules", str(widget_rules),
         "--gate-criteria", str(bad), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        env=_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "bad-gate.yaml:3" in result.stderr and "min_comparison" in result.stderr

    good = tmp_path / "gate.yaml"
    good.write_text("window: 1h\nentities:\n  widgets: {min_comparisons: 1, max_mismatches: 0}\n")
    process, _port, admin_port = _spawn_from_env(upstream.url, widget_rules, tmp_path, "--gate-criteria", str(good),
                                                stdout=subprocess.DEVNULL)
    try:
        admin = f"http://127.0.0.1:{admin_port}"
        await _wait_ready(admin + "/readyz", process)
        async with aiohttp.ClientSession() as session:
            async with session.get(admin + "/gate") as response:
                verdict = await response.json()
        # no traffic yet: never GO on missing data, and it says why and from what
        assert verdict["verdict"] == "NO-GO"
        assert "since process start" in verdict["scope"]
        assert any("widgets" in reason for reason in verdict["reasons"])
    finally:
        process.terminate()
        process.wait(15)
        if process.stderr is not None:
            process.stderr.close()


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as children:
        return [int(child) for child in children.read().split()]


async def test_shadow_proxy_shadows_in_a_worker_process_and_leaves_none_behind(upstream, widget_rules: Path, tmp_path: Path) -> None:
    process, port, admin_port = _spawn_from_env(upstream.url, widget_rules, tmp_path)
    workers: list[int] = []
    try:
        await _wait_ready(f"http://127.0.0.1:{admin_port}/readyz", process)
        for _ in range(100):
            workers = [child for child in _children(process.pid)
                       if b"shadow.replay.worker" in Path(f"/proc/{child}/cmdline").read_bytes()]
            if workers:
                break
            await asyncio.sleep(0.05)
        assert len(workers) == 1  # worker mode is the default
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/3") as response:
                assert response.status == 200
        # resident memory: the proxy never loads a database driver, and a worker only the
        # drivers its rules read (none here) and no HTTP client library
        assert _drivers(process.pid) == set()
        assert _drivers(workers[0]) == set()
        assert "/aiohttp/" not in Path(f"/proc/{workers[0]}/maps").read_text()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 15) == 0
        assert not Path(f"/proc/{workers[0]}").exists()  # stopped and reaped, not orphaned
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
