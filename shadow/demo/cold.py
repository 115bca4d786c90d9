"""Cold plants: divergences in documents the demo traffic never reads — a changed field
in a user and a dropped child row (an offer link) of a purchase request — planted in
PostgreSQL after the backfill. Shadow reads cannot see them; `shadow verify` must.

`plant_cold(conn, dataset, taken)` picks documents not among `taken` (the hot plants),
changes their rows and returns what it planted and which reads the traffic must skip."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shadow.demo.marketplace.generate import Dataset

if TYPE_CHECKING:
    from shadow.verify.report import RunReport


@dataclass(frozen=True)
class ColdPlant:
    entity: str
    collection: str
    legacy_id: str
    path: str  # the API path the docs layer reports
    count_check: str  # the counts-layer check that sees it too ("" = none)
    kind: str


@dataclass(frozen=True)
class Cold:
    plants: tuple[ColdPlant, ...]
    skip_keys: frozenset[tuple[str, str]]  # (collection, legacy id) never read one by one
    skip_list_users: frozenset[str]  # users whose list reads would show a cold document


async def plant_cold(conn: Any, dataset: Dataset, taken: set[str]) -> Cold:
    users, requests = dataset.collections["users"], dataset.collections["purchaserequests"]
    request = next(d for d in reversed(requests) if str(d["_id"]) not in taken and len(d["offers"]) >= 1)
    buyer = str(request["buyerId"])
    user = next(d for d in reversed(users) if str(d["_id"]) not in taken and str(d["_id"]) != buyer)
    async with conn.transaction():
        await conn.execute("UPDATE users SET name = name || ' Jr.' WHERE legacy_object_id = $1", str(user["_id"]))
        await conn.execute("DELETE FROM purchase_request_offers WHERE position = 0 AND pr_id = "
                           "(SELECT id FROM purchase_requests WHERE legacy_object_id = $1)", str(request["_id"]))
    plants = (ColdPlant("users", "users", str(user["_id"]), "name", "", "cold_changed_field"),
              ColdPlant("purchase_requests", "purchaserequests", str(request["_id"]), "offers[*]", "rows.offers",
                        "cold_dropped_child_row"))
    return Cold(plants, frozenset((p.collection, p.legacy_id) for p in plants), frozenset({buyer}))


def cold_lines(cold: Cold, report: RunReport, shadow_reads: dict[tuple[str, str], int]) -> tuple[list[str], bool]:
    """The summary lines: per cold plant, shadow reads of it and what verify found; and
    whether verify found every cold plant at its path."""
    found_all = True
    lines = ["cold plants (documents the traffic never reads) — shadow reads vs shadow verify:"]
    for plant in cold.plants:
        seen = shadow_reads.get((plant.entity, plant.legacy_id), 0)
        found: list[str] = []
        for entity in report.entities:
            if entity.entity != plant.entity:
                continue
            for result in entity.layers.values():
                for difference in result.differences:
                    if difference.key == plant.legacy_id and (difference.path == plant.path
                                                              or difference.path.startswith(plant.path + ".")):
                        found.append(f"docs {difference.kind} at {difference.path}")
                    elif plant.count_check and difference.check == plant.count_check and any(
                            named.get("key") == plant.legacy_id for named in difference.documents):
                        found.append(f"counts {difference.check} names it: mongo {difference.mongo} "
                                     f"vs postgres {difference.postgres}")
        ok = any(item.startswith("docs") for item in found)
        found_all = found_all and ok
        lines.append(f"  {'ok ' if ok else 'BAD'} {plant.entity:20} {plant.legacy_id} {plant.kind:24} {plant.path:10} "
                     f"shadow reads: {seen} comparisons -> {'missed' if not seen else 'seen'}; "
                     f"verify: {'; '.join(sorted(set(found))) or 'NOT found'}")
    return lines, found_all
