"""One secret-laden mismatch through every exit of a running sidecar (real PostgreSQL,
the widget API as the control, the real pipeline): the mismatch log, /mismatches as
JSON and as the HTML page, deepdiff's explanation, the span's attributes and
`shadow compare`. No planted secret may appear in any of them; the masks must still
show which values differ. The name and value tables are in tests/compare/test_redact.py."""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from shadow.publish import secretvalues

#: finding 4's names (issue 18) and the first release's: each gets a value per side
SECRET_FIELDS = ("pwd", "pass", "passphrase", "pin", "otp", "totp", "mfaCode", "jwt", "bearer", "session",
                 "sessionId", "sid", "key", "pem", "signature", "pan", "securityCode", "accountNumber",
                 "routingNumber", "socialSecurityNumber", "taxId", "dob", "dateOfBirth", "email", "phone", "address",
                 "creds", "connectionString", "dsn", "databaseUrl", "mnemonic", "seedPhrase", "walletPrivKey",
                 "password", "apiKey", "ssn", "cvv", "iban", "internalRef")
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJsZWFrIn0.c2lnbmF0dXJlMTIzNDU2Nzg5MA"
EXTRA_RULES = """\
  note: note
  profile: {json: profile}
redaction:
  names: [internalRef]
  patterns: ['PLANT-[0-9]{6}']
"""


def _value(tag: str) -> str:
    return f"{tag}{secrets.token_hex(6)}"


#: the pods' shared key: the sidecar and `shadow compare` then mask a value alike
KEY = "a key shared by every pod of the test"


async def _compare(world: Any, *extra: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shadow", "compare", "--rules", str(world.rules), "--pg", world.pg_dsn,
        "--url", world.api_url, "--route", "GET /quick/{id}", "--entity", "widgets", "--id", "w0001", *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "SHADOW_REDACTION_KEY": KEY})
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 1, err.decode()  # a mismatch
    return out.decode() + err.decode()


@pytest.fixture
def shared_key() -> Iterator[str]:
    """KEY for the sidecar (it sets this process's key at start); the old key afterwards."""
    original = secretvalues._key
    yield KEY
    secretvalues._key = original


async def test_no_planted_secret_leaves_through_any_exit(world, start, probe, tmp_path: Path, shared_key: str) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    control = {name: _value("C") for name in SECRET_FIELDS}
    candidate = {name: _value("P") for name in SECRET_FIELDS}
    card, order = "4111 1111 1111 1111", "4111111111111112"  # the second fails the Luhn check: shown
    password, token, mail, pem = _value("pw"), _value("tq"), _value("ann"), _value("pem")
    note = (f"paid with {card}; call Bearer {JWT} at https://svc:{password}@api.example/cb?token={token}&page=2; "
            f"mail {mail}@example.com; -----BEGIN PRIVATE KEY-----\n{pem}\n-----END PRIVATE KEY----- "
            f"ref PLANT-482913, order {order}")
    planted = [*control.values(), *candidate.values(), JWT, card, password, token, mail, pem, "482913"]
    await world.sql("ALTER TABLE widgets ADD COLUMN note text, ADD COLUMN profile jsonb")
    await world.sql("UPDATE widgets SET note = 'no note', profile = $1::jsonb WHERE legacy_object_id = 'w0001'",
                    json.dumps(candidate))
    world.documents["w0001"] = {**world.documents["w0001"], "name": "renamed", "note": note, "profile": control}
    rules = world.rules / "widgets.yaml"
    rules.write_text(rules.read_text().replace("  apiToken: api_token\n", "  apiToken: api_token\n" + EXTRA_RULES))
    exporter = InMemorySpanExporter()
    sidecar = await start(_span_exporter=exporter, redaction_key=shared_key)
    answers = await probe.get_all(sidecar.proxy_url, ["/quick/w0001", f"/quick/{JWT}?echo=1"])
    assert [status for status, _ in answers] == [200, 200]
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"mismatch": 1, "missing": 1}
    [mismatch] = [entry for entry in sidecar.sink.recent() if entry.outcome == "mismatch"]
    assert mismatch.explained, "deepdiff's explanation is one of the exits"
    sidecar.sink.flush()

    exits: dict[str, str] = {"log": (tmp_path / "mismatches.jsonl").read_text()}
    async with aiohttp.ClientSession() as session:
        async with session.get(sidecar.admin_url + "/mismatches") as response:
            exits["/mismatches"] = await response.text()
        async with session.get(sidecar.admin_url + "/mismatches?format=html") as response:
            exits["page"] = await response.text()
    exits["spans"] = json.dumps([{**dict(span.attributes or {}), "status": span.status.description}
                                 for span in exporter.get_finished_spans()])
    exits["shadow compare"] = await _compare(world)
    exits["shadow compare --json"] = await _compare(world, "--json")

    for name, text in exits.items():
        leaked = [secret for secret in planted if secret in text]
        assert not leaked, f"{name} shows {leaked}"
    for name in ("log", "/mismatches", "page", "shadow compare", "shadow compare --json"):
        text = exits[name]
        assert "renamed" in text and order in text and "api.example/cb" in text, name  # the rest is shown
        assert "[secret len=" in text and "[pii len=" in text, name
    assert "profile.socialSecurityNumber" in exits["spans"] and "[secret len=" in exits["spans"]  # the key
    shown = {diff["path"]: diff for diff in json.loads(exits["/mismatches"])["recent"][-1]["diffs"]}
    pin = shown["profile.pin"]
    assert pin["control"] != pin["candidate"]  # different values, different masks
    compared = {diff["path"]: diff for diff in json.loads(exits["shadow compare --json"])["diffs"]}
    assert compared["profile.pin"]["control"] == pin["control"]  # one key: the same mask in two processes
    assert not await _shows_values(world)


async def _shows_values(world: Any) -> bool:
    """--show-values opts out in `shadow compare` (and only there)."""
    output = await _compare(world, "--show-values")
    return JWT not in output
