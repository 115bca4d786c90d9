"""`shadow compare` run as a user runs it (a subprocess) against the seeded domain."""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

RULES = Path(__file__).resolve().parents[2] / "rules" / "marketplace"


async def shadow_compare(marketplace: Any, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shadow", "compare", "--rules", str(RULES), "--pg", marketplace.pg_dsn,
        "--mongo", marketplace.mongo_uri, "--db", marketplace.mongo_db, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(), err.decode()


async def test_compare_by_hand_finds_the_plant_and_passes_the_rest(marketplace: Any) -> None:
    plant = next(p for p in marketplace.drifts if p.kind == "amount_off_1e-18")
    clean = next(str(d["_id"]) for d in marketplace.dataset.collections["payments"]
                 if str(d["_id"]) not in {p.legacy_id for p in marketplace.drifts})
    code, out, err = await shadow_compare(marketplace, "--entity", "payments", "--id", plant.legacy_id)
    assert code == 1, err
    assert f"payments {plant.legacy_id}: MISMATCH — 1 difference(s)" in out and "amount.value  [changed]" in out
    code, out, _ = await shadow_compare(marketplace, "--entity", "payments", "--id", clean, "--json")
    assert code == 0 and json.loads(out)["outcome"] == "match"
    missing = next(p for p in marketplace.drifts if p.kind == "missing_row")
    code, out, _ = await shadow_compare(marketplace, "--entity", "funds_ledger_entries", "--id", missing.legacy_id)
    assert code == 1 and "MISSING" in out and "no row" in out


async def test_compare_redacts_and_refuses_bad_input(marketplace: Any) -> None:
    plant = next(p for p in marketplace.drifts if p.kind == "wrong_ref")
    code, out, _ = await shadow_compare(marketplace, "--entity", "payments", "--id", plant.legacy_id, "--json")
    assert code == 1 and json.loads(out)["diffs"][0]["path"] == "buyerId"
    code, _, err = await shadow_compare(marketplace, "--entity", "payments", "--id", "'; DROP TABLE payments")
    assert code == 2 and "not a 24-hex ObjectId" in err
    code, _, err = await shadow_compare(marketplace, "--entity", "nope", "--id", plant.legacy_id)
    assert code == 2 and "unknown entity 'nope'" in err


SECRET_RULES = """\
entity: accounts
collection: accounts
table: accounts
fields:
  _id: legacy_object_id
  name: name
  apiToken: api_token
  passwordHash: password_hash
  card: {object: {number: card_number, last4: card_last4}}
  taxId: tax_id
redact_names: [taxId]
"""


async def test_compare_never_prints_secret_values(pg_dsn: str, mongo_server: Any, mongo_db_name: str,
                                                  tmp_path: Path) -> None:
    """`shadow compare` redacts as the sink does: by name (apiToken, passwordHash,
    card.number), by the rules' `redact_names`, in text and JSON; --show-values opts out."""
    import uuid

    import asyncpg
    from bson import ObjectId
    from pymongo import AsyncMongoClient

    (tmp_path / "accounts.yaml").write_text(SECRET_RULES)
    key = ObjectId()
    mongo_secrets = {"apiToken": "tok-MONGO-1111", "passwordHash": "$2b$10$MONGOHASH", "taxId": "TAX-MONGO"}
    pg_secrets = {"api_token": "tok-PG-2222", "password_hash": "$2b$10$PGHASH", "tax_id": "TAX-PG"}
    client: AsyncMongoClient = AsyncMongoClient(mongo_server.uri)
    try:
        await client[mongo_db_name]["accounts"].insert_one(
            {"_id": key, "name": "Ann", **mongo_secrets, "card": {"number": "4111111111111111", "last4": "1111"}})
    finally:
        await client.close()
    connection = await asyncpg.connect(pg_dsn)
    try:
        await connection.execute("CREATE TABLE accounts (id uuid PRIMARY KEY, legacy_object_id text UNIQUE, name text, "
                                 "api_token text, password_hash text, card_number text, card_last4 text, tax_id text)")
        await connection.execute("INSERT INTO accounts VALUES ($1, $2, 'Anne', $3, $4, '4000000000000002', '1111', $5)",
                                 uuid.uuid4(), str(key), pg_secrets["api_token"], pg_secrets["password_hash"],
                                 pg_secrets["tax_id"])
    finally:
        await connection.close()

    async def run(*extra: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shadow", "compare", "--rules", str(tmp_path), "--pg", pg_dsn,
            "--mongo", mongo_server.uri, "--db", mongo_db_name, "--entity", "accounts", "--id", str(key), *extra,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 1, err.decode()
        return process.returncode, out.decode() + err.decode()

    secrets = [*mongo_secrets.values(), *pg_secrets.values(), "4111111111111111", "4000000000000002"]
    for extra in ((), ("--json",)):
        _, output = await run(*extra)
        assert "Ann" in output and "Anne" in output  # the rest is shown
        assert "[secret len=" in output and not [secret for secret in secrets if secret in output], output
    _, output = await run("--json")
    diffs = {diff["path"]: diff for diff in json.loads(output)["diffs"]}
    assert set(diffs) == {"name", "apiToken", "passwordHash", "card.number", "taxId"}
    _, shown = await run("--show-values")
    assert all(secret in shown for secret in secrets)


async def test_compare_takes_the_control_from_the_real_api(marketplace: Any, sample_api: str) -> None:
    from shadow.demo.marketplace.views import demo_token

    requests = marketplace.dataset.by_id("purchaserequests")
    plant = next(p for p in marketplace.drifts if p.kind == "missing_child_row")
    clean = next(key for key in requests if key not in {p.legacy_id for p in marketplace.drifts})
    as_buyer = f"Authorization: Bearer {demo_token(str(requests[clean]['buyerId']))}"
    code, out, err = await shadow_compare(marketplace, "--entity", "purchase_request_views", "--id", clean,
                                          "--url", sample_api, "--header", as_buyer, "--json")
    assert code == 0 and json.loads(out)["outcome"] == "match", (out, err)  # isMine true on both sides
    code, out, err = await shadow_compare(marketplace, "--entity", "purchase_request_views", "--id", plant.legacy_id,
                                          "--url", sample_api)
    assert code == 1 and "offersCount  [changed]" in out and "API:" in out, (out, err)
    code, out, _ = await shadow_compare(marketplace, "--entity", "purchase_request_views", "--id", "0" * 24,
                                        "--url", sample_api)
    assert code == 2 and "NOT IN THE API" in out
    code, _, err = await shadow_compare(marketplace, "--entity", "purchase_request_views", "--id", clean,
                                        "--url", sample_api, "--header", "Authorization: Bearer forged.token.x")
    assert code == 2 and "HTTP 401" in err
