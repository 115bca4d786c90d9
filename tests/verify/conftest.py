"""A consistent copy of the marketplace (no drift) for verify tests, and `shadow verify`
run as a user runs it (a subprocess)."""
from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shadow.demo.embedded import MongoServer
from shadow.demo.marketplace.cli import load_domain
from shadow.demo.marketplace.generate import Dataset

RULES = Path(__file__).resolve().parents[2] / "rules" / "marketplace"
REPORT_SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "verify-report.schema.json"


def valid_report(report: dict[str, Any]) -> dict[str, Any]:
    """The report, after checking it against the documented JSON Schema."""
    from jsonschema import Draft202012Validator

    schema = json.loads(REPORT_SCHEMA.read_text())
    Draft202012Validator.check_schema(schema)
    errors = sorted(Draft202012Validator(schema).iter_errors(report), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]
    return report


@dataclass(frozen=True)
class Domain:
    pg_dsn: str
    mongo_uri: str
    mongo_db: str
    dataset: Dataset


@pytest.fixture
async def domain(pg_dsn: str, mongo_server: MongoServer, mongo_db_name: str) -> AsyncIterator[Domain]:
    loaded = await load_domain(pg_dsn, mongo_server.uri, mongo_db_name, scale=12, seed=11, drift=False)
    yield Domain(pg_dsn, mongo_server.uri, mongo_db_name, loaded.dataset)


async def shadow_verify(domain: Domain, *args: str, rules: Path = RULES,
                        env: dict[str, str] | None = None, mongo: tuple[str, ...] | None = None) -> tuple[int, Any, str]:
    """Exit code, the JSON report (or the text when --json is not given), stderr.
    `env` is added to this process's environment; `mongo` replaces the Mongo flags
    (e.g. `("--mongo-dump", PATH)`)."""
    where = ("--mongo", domain.mongo_uri, "--mongo-db", domain.mongo_db) if mongo is None else mongo
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shadow", "verify", "--rules", str(rules), "--pg", domain.pg_dsn, *where, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})})
    out, err = await asyncio.wait_for(process.communicate(), 240)
    text = out.decode()
    report: Any = json.loads(text) if "--json" in args and text.strip() else text
    return process.returncode or 0, report, err.decode()


def differences(report: dict[str, Any], entity: str | None = None) -> list[dict[str, Any]]:
    return [dict(d, entity=name) for name, e in report["entities"].items() if entity in (None, name)
            for layer in e["layers"].values() for d in layer["differences"]]
