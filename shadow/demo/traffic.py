"""The demo's client traffic: reads on every shadowed route for every key of the
marketplace (the planted keys first, so they are found within seconds), list reads, and
a few `PATCH /api/payments/{id}` writes whose dual-write lag makes transients.

Runs during `shadow demo` against the proxy: `plan_requests(dataset, planted)` builds
the endless request sequence (pure), `Traffic.run(base_url, ...)` sends it at a fixed
rate until stopped and keeps per-status counts and the status each planted key got.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from shadow.demo.marketplace.generate import Dataset
from shadow.tasks import TaskSet

#: Mongo collection -> the sample API's single-document route
SINGLE_ROUTES = {
    "users": "/api/users/{}", "addresses": "/api/addresses/{}", "categories": "/api/categories/{}",
    "selleroffers": "/api/seller-offers/{}", "purchaserequests": "/api/purchase-requests/{}",
    "payments": "/api/payments/{}", "fundsledgerentries": "/api/funds-ledger/{}", "disputes": "/api/disputes/{}",
}
#: one list read every LIST_EVERY requests, one payment write every WRITE_EVERY requests
LIST_EVERY = 7
WRITE_EVERY = 25
PAYMENT_STATUSES = ("pending", "processing", "completed", "failed", "refunded")


@dataclass(frozen=True)
class PlannedRequest:
    """One request of the demo traffic. `planted` names the (collection, legacy id) the
    read is for, when that document carries a planted divergence."""

    method: str
    path: str
    body: dict[str, Any] | None = None
    planted: tuple[str, str] | None = None
    headers: dict[str, str] | None = None  # view-model reads: the reader's token


VIEW_ROUTE = "/api/views/purchase-requests/{}"
VIEW_LIST_QUERIES = ("?limit=5", "?status=open,in_progress&limit=3&offset=1")


def _as(user: str) -> dict[str, str]:
    from shadow.demo.marketplace.views import demo_token

    return {"Authorization": f"Bearer {demo_token(user)}"}


def view_requests(dataset: Dataset, planted: set[tuple[str, str]],
                  cold: frozenset[tuple[str, str]] = frozenset(), cold_users: frozenset[str] = frozenset(),
                  ) -> list[PlannedRequest]:
    """The view model of every purchase request, read by its buyer (isMine true) and,
    when it has offers, by one of their sellers (offeredByMe true); never one that would
    show a cold document (the request itself, or its buyer embedded)."""
    seller_of = {str(offer["purchaseRequestId"]): str(offer["sellerId"])
                 for offer in dataset.collections["selleroffers"]}
    reads = []
    for request in dataset.collections["purchaserequests"]:
        key = str(request["_id"])
        if ("purchaserequests", key) in cold or str(request["buyerId"]) in cold_users:
            continue
        mark = ("purchaserequests", key) if ("purchaserequests", key) in planted else None
        for reader in dict.fromkeys([str(request["buyerId"]), seller_of.get(key)]):
            if reader is not None:
                reads.append(PlannedRequest("GET", VIEW_ROUTE.format(key), planted=mark, headers=_as(reader)))
    return reads


def plan_requests(dataset: Dataset, planted: Iterable[tuple[str, str]], cold: Iterable[tuple[str, str]] = (),
                  cold_list_users: Iterable[str] = ()) -> Iterator[PlannedRequest]:
    """The endless request sequence: planted documents first, then every document of
    every collection round-robin, interleaved with list reads and payment writes.
    A payment is written at most once per pass and never a planted one (a write would
    overwrite the plant), so a recheck never races a second write to the same row.
    `cold` documents are never read (nor the lists of `cold_list_users`): only `shadow
    verify` can find what is planted in them."""
    planted_keys = list(dict.fromkeys(planted))
    planted_set = set(planted_keys) | set(cold)
    skip_lists = set(cold_list_users)
    singles = [PlannedRequest("GET", SINGLE_ROUTES[collection].format(key), planted=(collection, key))
               for collection, key in planted_keys]
    by_collection = [[(collection, str(doc["_id"])) for doc in dataset.collections[collection]]
                     for collection in SINGLE_ROUTES]
    cold_set = frozenset(planted_set - set(planted_keys))
    cold_users = frozenset(key for collection, key in cold_set if collection == "users")  # embedded in views
    views = view_requests(dataset, set(planted_keys), cold_set, cold_users)
    singles.extend(request for request in views if request.planted is not None)  # planted first
    columns: list[list[PlannedRequest]] = [
        [PlannedRequest("GET", SINGLE_ROUTES[item[0]].format(item[1])) for item in docs if item not in planted_set]
        for docs in by_collection]
    for column in itertools.zip_longest(*columns, [r for r in views if r.planted is None]):
        singles.extend(request for request in column if request is not None)
    users = [str(doc["_id"]) for doc in dataset.collections["users"]]
    lists = itertools.cycle([PlannedRequest("GET", "/api/categories"),
                             PlannedRequest("GET", "/api/views/purchase-request-statuses")]
                            + [PlannedRequest("GET", f"/api/users/{user}/{what}")
                               for user in users if user not in skip_lists
                               for what in ("addresses", "purchase-requests")]
                            + [PlannedRequest("GET", f"/api/views/users/{user}/purchase-requests{query}",
                                              headers=_as(user))
                               for user in users if user not in skip_lists and user not in cold_users
                               for query in VIEW_LIST_QUERIES])
    writable = [str(doc["_id"]) for doc in dataset.collections["payments"]
                if ("payments", str(doc["_id"])) not in planted_set]
    writes = itertools.cycle([PlannedRequest("PATCH", f"/api/payments/{key}",
                                             {"status": PAYMENT_STATUSES[number % len(PAYMENT_STATUSES)]})
                              for number, key in enumerate(writable)] or [None])
    counter = itertools.count(1)
    for request in itertools.cycle(singles):
        yield request
        number = next(counter)
        if number % LIST_EVERY == 0:
            yield next(lists)
        if number % WRITE_EVERY == 0:
            write = next(writes)
            if write is not None:
                yield write


@dataclass
class Traffic:
    """Sends the planned requests at `rate` per second; what came back, by status."""

    rate: float
    sent: Counter[str] = field(default_factory=Counter)  # "GET 200", "PATCH 200", "GET error"
    planted_status: dict[tuple[str, str], int] = field(default_factory=dict)

    async def run(self, base_url: str, requests: Iterator[PlannedRequest], stop: asyncio.Event,
                  concurrency: int = 8) -> None:
        """Until `stop` is set; requests in flight when it is set finish first."""
        interval = 1.0 / self.rate
        slots = asyncio.Semaphore(concurrency)
        in_flight = TaskSet("traffic")
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            next_at = time.monotonic()
            for request in requests:
                if stop.is_set():
                    break
                await slots.acquire()
                in_flight.spawn(self._send(session, base_url, request, slots), f"{request.method} {request.path}")
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                else:
                    next_at = time.monotonic()  # behind: do not burst to catch up
            await in_flight.join()

    async def _send(self, session: aiohttp.ClientSession, base_url: str, request: PlannedRequest,
                    slots: asyncio.Semaphore) -> None:
        try:
            async with session.request(request.method, base_url + request.path, json=request.body,
                                       headers=request.headers) as response:
                await response.read()
                status: int | None = response.status
        except (aiohttp.ClientError, TimeoutError):
            status = None
        finally:
            slots.release()
        self.sent[f"{request.method} {status if status is not None else 'error'}"] += 1
        if request.planted is not None and status is not None:
            self.planted_status[request.planted] = status

    @property
    def total(self) -> int:
        return sum(self.sent.values())
