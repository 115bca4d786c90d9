"""Known divergences planted in PostgreSQL after the backfill — the hard cases of DESIGN §1.

Runs once after `backfill` (demo, tests): `plant(conn, dataset, seed)` picks documents
with a seeded RNG, changes their PostgreSQL rows (never Mongo) and returns what it
planted. Each plant touches exactly one document and one API path, and no two plants
share a document, so a shadow read of that document must report exactly that path —
or nothing at all when the plant is not `divergent` (scale-only decimal, µs noise).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from bson import ObjectId

from shadow.demo.marketplace.generate import CURRENCIES, Dataset, Document


@dataclass(frozen=True)
class PlantedDrift:
    """One planted divergence: where (entity = PG main table, collection = Mongo), which
    API field path (`[*]` for array items, `""` = the whole document) and what kind."""

    entity: str
    collection: str
    legacy_id: str
    path: str
    kind: str
    divergent: bool


class DriftError(RuntimeError):
    """The dataset has no document fit for a plant (dataset too small)."""


class _Picker:
    """Draws distinct documents of a collection that satisfy a condition."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.rng = random.Random(f"drift:{seed}")
        self.used: set[str] = set()

    def pick(self, collection: str, kind: str, fits: Any = lambda doc: True) -> Document:
        candidates = [d for d in self.dataset.collections[collection] if str(d["_id"]) not in self.used and fits(d)]
        if not candidates:
            raise DriftError(f"no {collection} document left for a {kind} plant "
                             f"(scale {self.dataset.scale} too small?)")
        doc = candidates[self.rng.randrange(len(candidates))]
        self.used.add(str(doc["_id"]))
        return doc


async def plant(conn: Any, dataset: Dataset, seed: int) -> tuple[PlantedDrift, ...]:
    """Plant one divergence of each kind (in one transaction); what was planted."""
    picker = _Picker(dataset, seed)
    rng = picker.rng
    planted: list[PlantedDrift] = []

    async def run(entity: str, collection: str, doc: Document, path: str, kind: str, divergent: bool,
                  sql: str, *args: Any) -> None:
        status = await conn.execute(sql, str(doc["_id"]), *args)
        if status.split()[-1] == "0":
            raise DriftError(f"{kind} plant on {collection}/{doc['_id']} changed no row: {status}")
        planted.append(PlantedDrift(entity, collection, str(doc["_id"]), path, kind, divergent))

    async with conn.transaction():
        # payments ---------------------------------------------------------------
        pay = picker.pick("payments", "wrong_ref")
        other = next(u for u in rng.sample(dataset.collections["users"], len(dataset.collections["users"]))
                     if u["_id"] != pay["buyerId"])
        await run("payments", "payments", pay, "buyerId", "wrong_ref", True,
                  "UPDATE payments SET buyer_id = (SELECT id FROM users WHERE legacy_object_id = $2)"
                  " WHERE legacy_object_id = $1", str(other["_id"]))

        pay = picker.pick("payments", "mixed_kind", lambda d: isinstance(d["purchaseRequestId"], ObjectId))
        # the classic backfill bug: the new uuid written out as a free string
        await run("payments", "payments", pay, "purchaseRequestId", "mixed_kind", True,
                  "UPDATE payments SET purchase_request_ref_kind = 'template',"
                  " purchase_request_external_ref = purchase_request_id::text, purchase_request_id = NULL"
                  " WHERE legacy_object_id = $1")

        pay = picker.pick("payments", "amount_off_1e-18")
        await run("payments", "payments", pay, "amount.value", "amount_off_1e-18", True,
                  "UPDATE payments SET amount = amount + 0.000000000000000001 WHERE legacy_object_id = $1")

        pay = picker.pick("payments", "timestamp_off_1s")
        await run("payments", "payments", pay, "updatedAt", "timestamp_off_1s", True,
                  "UPDATE payments SET updated_at = updated_at + interval '1 second' WHERE legacy_object_id = $1")

        pay = picker.pick("payments", "timestamp_us_truncation")
        await run("payments", "payments", pay, "createdAt", "timestamp_us_truncation", False,
                  "UPDATE payments SET created_at = created_at + interval '400 microseconds'"
                  " WHERE legacy_object_id = $1")

        pay = picker.pick("payments", "jsonb_change", lambda d: "channel" in (d.get("metadata") or {}))
        channel = rng.choice([c for c in ("web", "ios", "android", "pos") if c != pay["metadata"]["channel"]])
        await run("payments", "payments", pay, "metadata.channel", "jsonb_change", True,
                  "UPDATE payments SET metadata = jsonb_set(metadata, '{channel}', to_jsonb($2::text))"
                  " WHERE legacy_object_id = $1", channel)

        # purchase requests --------------------------------------------------------
        request = picker.pick("purchaserequests", "missing_child_row", lambda d: len(d["offers"]) >= 1)
        await run("purchase_requests", "purchaserequests", request, "offers[*]", "missing_child_row", True,
                  "DELETE FROM purchase_request_offers WHERE position = $2"
                  " AND pr_id = (SELECT id FROM purchase_requests WHERE legacy_object_id = $1)",
                  rng.randrange(len(request["offers"])))

        request = picker.pick("purchaserequests", "enum_drift")
        currency = rng.choice([c for c in CURRENCIES if c != request["budget"]["currency"]])
        await run("purchase_requests", "purchaserequests", request, "budget.currency", "enum_drift", True,
                  "UPDATE purchase_requests SET budget_currency = $2 WHERE legacy_object_id = $1", currency)

        # disputes -------------------------------------------------------------------
        dispute = picker.pick("disputes", "extra_child_row")
        await run("disputes", "disputes", dispute, "evidence[*]", "extra_child_row", True,
                  "INSERT INTO dispute_evidence (dispute_id, position, type, url, description, uploaded_by,"
                  " uploaded_at) SELECT id, $2, 'text', NULL, 'planted: not in Mongo', opened_by, created_at"
                  " FROM disputes WHERE legacy_object_id = $1", len(dispute["evidence"]))

        dispute = picker.pick("disputes", "reordered_timeline", lambda d: len(d["timeline"]) >= 2)
        first = rng.randrange(len(dispute["timeline"]) - 1)
        await run("disputes", "disputes", dispute, "timeline[*]", "reordered_timeline", True,
                  "UPDATE dispute_timeline t SET action = o.action, actor_id = o.actor_id, note = o.note, at = o.at"
                  " FROM dispute_timeline o, disputes d"
                  " WHERE d.legacy_object_id = $1 AND t.dispute_id = d.id AND o.dispute_id = d.id"
                  " AND t.position IN ($2, $2 + 1) AND o.position = 2 * $2 + 1 - t.position", first)

        # funds ledger -----------------------------------------------------------------
        entry = picker.pick("fundsledgerentries", "decimal_scale_only", lambda d: d.get("balanceAfter") is not None)
        await run("funds_ledger_entries", "fundsledgerentries", entry, "balanceAfter", "decimal_scale_only", False,
                  "UPDATE funds_ledger_entries SET balance_after = round(balance_after, scale(balance_after) + 6)"
                  " WHERE legacy_object_id = $1")

        entry = picker.pick("fundsledgerentries", "missing_row")
        await run("funds_ledger_entries", "fundsledgerentries", entry, "", "missing_row", True,
                  "DELETE FROM funds_ledger_entries WHERE legacy_object_id = $1")
    return tuple(planted)
