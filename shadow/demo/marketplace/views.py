"""View-model reads of the sample API (issue 12): answers that are not stored documents
but are computed per request, the way most production APIs answer.

    GET /api/views/purchase-requests/{id}
        {"id", "title", "status", "createdAt",
         "buyer": {"id", "name", "firstName", "lastName"},    # the buyer embedded as a profile
         "offersCount": n,                                    # count of its offers
         "isMine": bool, "offeredByMe": bool}                 # for the reader (JWT claim `id`)
    GET /api/views/users/{id}/purchase-requests?status=open,in_progress&limit=20&offset=0
        {"data": [view, ...], "total": n}     # newest first (createdAt desc, then id)
    GET /api/views/purchase-request-statuses
        {"statuses": ["cancelled", "open", ...]}              # distinct values, no key

The reader comes from `Authorization: Bearer <JWT>` (HS256, signed with DEMO_JWT_SECRET
and verified by tokens.py, as the real backend would); a bad token is a 401, no token reads
anonymously (both flags false).
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from bson import ObjectId

from shadow.demo.marketplace.backends import BACKENDS, BadRequest, object_id
from shadow.demo.marketplace.tojson import iso_ms
from shadow.demo.marketplace.tokens import DEMO_JWT_SECRET, demo_token, reader_of

__all__ = ["DEMO_JWT_SECRET", "add_view_routes", "demo_token", "reader_of"]

MAX_LIMIT = 100
DEFAULT_LIMIT = 20


async def _views(db: Any, requests: list[dict[str, Any]], reader: ObjectId | None) -> list[dict[str, Any]]:
    """The view models of `requests`: two more queries for the whole list (buyers, the
    reader's offers), as a careful backend would batch them."""
    buyer_ids = list({r["buyerId"] for r in requests})
    buyers = {user["_id"]: user async for user in db["users"].find({"_id": {"$in": buyer_ids}})}
    mine: set[ObjectId] = set()
    if reader is not None and requests:
        cursor = db["selleroffers"].find({"sellerId": reader,
                                          "purchaseRequestId": {"$in": [r["_id"] for r in requests]}})
        mine = {offer["purchaseRequestId"] async for offer in cursor}
    views = []
    for request in requests:
        buyer = buyers.get(request["buyerId"], {})
        profile = buyer.get("profile") or {}
        views.append({
            "id": str(request["_id"]), "title": request["title"], "status": request["status"],
            "createdAt": iso_ms(request["createdAt"]),
            "buyer": {"id": str(request["buyerId"]), "name": buyer.get("name"),
                      "firstName": profile.get("firstName"), "lastName": profile.get("lastName")},
            "offersCount": len(request.get("offers") or []),
            "isMine": reader is not None and request["buyerId"] == reader,
            "offeredByMe": request["_id"] in mine,
        })
    return views


def _json(body: Any) -> web.Response:
    return web.json_response(body)


async def purchase_request_view(request: web.Request) -> web.Response:
    reader = reader_of(request)
    db = request.app[BACKENDS].db
    doc = await db["purchaserequests"].find_one({"_id": object_id(request.match_info["id"])})
    if doc is None:
        return web.json_response({"error": "not found"}, status=404)
    return _json((await _views(db, [doc], reader))[0])


def _page_param(request: web.Request, name: str, default: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) > high:
        raise BadRequest(f"{name} must be an integer in [0, {high}]")
    return int(raw)


async def buyer_requests_view(request: web.Request) -> web.Response:
    reader = reader_of(request)
    db = request.app[BACKENDS].db
    query: dict[str, Any] = {"buyerId": object_id(request.match_info["id"])}
    statuses = [status for status in request.query.get("status", "").split(",") if status]
    if statuses:
        query["status"] = {"$in": statuses}
    limit = _page_param(request, "limit", DEFAULT_LIMIT, MAX_LIMIT)
    offset = _page_param(request, "offset", 0, 1_000_000)
    cursor = db["purchaserequests"].find(query).sort([("createdAt", -1), ("_id", 1)]).skip(offset).limit(limit)
    docs = await cursor.to_list(None) if limit else []
    total = await db["purchaserequests"].count_documents(query)
    return _json({"data": await _views(db, docs, reader), "total": total})


async def statuses_view(request: web.Request) -> web.Response:
    statuses = await request.app[BACKENDS].db["purchaserequests"].distinct("status")
    return _json({"statuses": sorted(statuses)})


def add_view_routes(app: web.Application) -> None:
    app.router.add_get("/api/views/purchase-requests/{id}", purchase_request_view)
    app.router.add_get("/api/views/users/{id}/purchase-requests", buyer_requests_view)
    app.router.add_get("/api/views/purchase-request-statuses", statuses_view)
