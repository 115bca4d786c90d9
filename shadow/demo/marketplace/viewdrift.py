"""Divergences planted for the view-model routes (views.py, issue 12), in PostgreSQL only.

A view model is computed from several rows, so one PostgreSQL change shows on the view
*and* on the stored-document entity of the same rows: each plant lists every API path it
must show at, per entity (the view's list-level findings use the key `[list id=<buyer>]`).

    reader_flag   an offer's seller repointed      -> view offeredByMe (read by that seller),
                                                      seller_offers sellerId
    list_order    a request made the buyer's oldest -> the buyer's list data[*] (order),
                                                      view + purchase_requests createdAt
    list_member   a request repointed to another    -> the old buyer's list data[*] (an API-only
                  buyer                                member) and total; the new buyer's total;
                                                      view buyer.*, purchase_requests buyerId
The count drift is the shared `missing_child_row` plant (drift.py): its request's view
shows `offersCount`.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from shadow.demo.marketplace.drift import DriftError, PlantedDrift
from shadow.demo.marketplace.generate import Dataset

VIEWS = "purchase_request_views"


@dataclass(frozen=True)
class ViewPlant:
    """One planted change and everything it must be found as: (entity, key, path) where
    entity is a rules entity name and key a document key or `[list id=<buyer>]`."""

    kind: str
    reader: str | None  # the user whose token shows it (per-reader flags), else None
    findings: tuple[tuple[str, str, str], ...]


def list_key(buyer: str) -> str:
    return f"[list id={buyer}]"


def shown_on_views(drifts: tuple[PlantedDrift, ...]) -> tuple[PlantedDrift, ...]:
    """The shared plants of drift.py as the view routes show them (for the demo's tally)."""
    return tuple(PlantedDrift(VIEWS, drift.collection, drift.legacy_id, "offersCount", "count_on_view", True)
                 for drift in drifts if drift.kind == "missing_child_row")


def count_findings(drifts: tuple[PlantedDrift, ...]) -> tuple[ViewPlant, ...]:
    """What the shared plants of drift.py show on the view routes."""
    return tuple(ViewPlant("count", None, ((VIEWS, drift.legacy_id, "offersCount"),))
                 for drift in drifts if drift.kind == "missing_child_row")


async def plant_views(conn: Any, dataset: Dataset, seed: int, avoid: set[str]) -> tuple[ViewPlant, ...]:
    """Plant reader_flag, list_order and list_member on requests not in `avoid` (nor
    sharing a buyer with each other); returns what each must be found as."""
    rng = random.Random(f"viewdrift:{seed}")
    requests = dataset.collections["purchaserequests"]
    by_buyer: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for request in requests:
        by_buyer[str(request["buyerId"])].append(request)
    touched = {str(r["buyerId"]) for r in requests if str(r["_id"]) in avoid}
    buyers = sorted(b for b, rs in by_buyer.items() if len(rs) >= 2 and b not in touched)
    if len(buyers) < 3:
        raise DriftError("not enough buyers with two requests for the view plants (scale too small?)")
    rng.shuffle(buyers)
    plants: list[ViewPlant] = []
    async with conn.transaction():
        # reader_flag: an offer on a request of buyer 0, moved to another seller in PG
        offers = [o for o in dataset.collections["selleroffers"]
                  if any(o["purchaseRequestId"] == r["_id"] for r in by_buyer[buyers[0]])]
        if not offers:
            raise DriftError("no offer on the chosen buyer's requests")
        offer = rng.choice(offers)
        seller = str(offer["sellerId"])
        other = next(str(u["_id"]) for u in dataset.collections["users"] if str(u["_id"]) not in (seller, buyers[0]))
        await conn.execute("UPDATE seller_offers SET seller_id = (SELECT id FROM users WHERE legacy_object_id = $2)"
                           " WHERE legacy_object_id = $1", str(offer["_id"]), other)
        plants.append(ViewPlant("reader_flag", seller, (
            (VIEWS, str(offer["purchaseRequestId"]), "offeredByMe"),
            ("seller_offers", str(offer["_id"]), "sellerId"))))
        # list_order: buyer 1's newest request becomes its oldest in PG
        newest = max(by_buyer[buyers[1]], key=lambda r: (r["createdAt"], str(r["_id"])))
        oldest = min(r["createdAt"] for r in by_buyer[buyers[1]])
        await conn.execute("UPDATE purchase_requests SET created_at = $2::timestamptz - interval '1 day' WHERE "
                           "legacy_object_id = $1",
                           str(newest["_id"]), oldest)
        plants.append(ViewPlant("list_order", None, (
            (VIEWS, list_key(buyers[1]), "data[*]"),
            (VIEWS, str(newest["_id"]), "createdAt"),
            ("purchase_requests", str(newest["_id"]), "createdAt"))))
        # list_member: buyer 2's newest request repointed to buyer 3... (any other user)
        moved = max(by_buyer[buyers[2]], key=lambda r: (r["createdAt"], str(r["_id"])))
        target = buyers[3] if len(buyers) > 3 else other
        await conn.execute("UPDATE purchase_requests SET buyer_id = (SELECT id FROM users WHERE legacy_object_id = $2)"
                           " WHERE legacy_object_id = $1", str(moved["_id"]), target)
        plants.append(ViewPlant("list_member", None, (
            (VIEWS, list_key(buyers[2]), "data[*]"),
            (VIEWS, list_key(buyers[2]), "total"),
            (VIEWS, list_key(target), "total"),
            (VIEWS, str(moved["_id"]), "buyer"),
            ("purchase_requests", str(moved["_id"]), "buyerId"))))
    return tuple(plants)
