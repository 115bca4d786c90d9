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
and verified here, as the real backend would); a bad token is a 401, no token reads
anonymously (both flags false).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from aiohttp import web
from bson import ObjectId

from shadow.demo.marketplace.tojson import iso_ms

DEMO_JWT_SECRET = b"marketplace-demo-secret"  # a demo API's secret; the shadow never needs it
MAX_LIMIT = 100
DEFAULT_LIMIT = 20


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def demo_token(user_id: str, secret: bytes = DEMO_JWT_SECRET) -> str:
    """An HS256 JWT for `user_id` (claim `id`), as the sample API's login would issue."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps({"id": user_id}).encode())
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


def reader_of(request: web.Request) -> ObjectId | None:
    """The verified reader, None when anonymous; a bad token is a 401."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    token = header.removeprefix("Bearer ").strip()
    parts = token.split(".")
    try:
        if len(parts) != 3:
            raise ValueError("not a JWT")
        expected = hmac.new(DEMO_JWT_SECRET, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(_b64(expected), parts[2]):
            raise ValueError("bad signature")
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        return ObjectId(claims["id"])
    except (ValueError, KeyError, TypeError):
        raise web.HTTPUnauthorized(text='{"error": "invalid token"}', content_type="application/json") from None


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
    from shadow.demo.marketplace.api import BACKENDS, _object_id

    reader = reader_of(request)
    db = request.app[BACKENDS].db
    doc = await db["purchaserequests"].find_one({"_id": _object_id(request.match_info["id"])})
    if doc is None:
        return web.json_response({"error": "not found"}, status=404)
    return _json((await _views(db, [doc], reader))[0])


def _page_param(request: web.Request, name: str, default: int, high: int) -> int:
    from shadow.demo.marketplace.api import BadRequest

    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) > high:
        raise BadRequest(f"{name} must be an integer in [0, {high}]")
    return int(raw)


async def buyer_requests_view(request: web.Request) -> web.Response:
    from shadow.demo.marketplace.api import BACKENDS, _object_id

    reader = reader_of(request)
    db = request.app[BACKENDS].db
    query: dict[str, Any] = {"buyerId": _object_id(request.match_info["id"])}
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
    from shadow.demo.marketplace.api import BACKENDS

    statuses = await request.app[BACKENDS].db["purchaserequests"].distinct("status")
    return _json({"statuses": sorted(statuses)})


def add_view_routes(app: web.Application) -> None:
    app.router.add_get("/api/views/purchase-requests/{id}", purchase_request_view)
    app.router.add_get("/api/views/users/{id}/purchase-requests", buyer_requests_view)
    app.router.add_get("/api/views/purchase-request-statuses", statuses_view)
