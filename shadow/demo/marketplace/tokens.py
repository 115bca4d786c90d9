"""The sample API's tokens: HS256 JWTs with the claim `id` (a user's ObjectId), issued
as its login would (`demo_token`) and verified on every read that has one
(`reader_of`). The shadow never needs the secret: it reads the claim, unverified."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json

from aiohttp import web
from bson import ObjectId

DEMO_JWT_SECRET = b"marketplace-demo-secret"  # a demo API's secret; the shadow never needs it
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def demo_token(user_id: str, secret: bytes = DEMO_JWT_SECRET) -> str:
    """An HS256 JWT for `user_id` (claim `id`), as the sample API's login would issue."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps({"id": user_id}).encode())
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


def reader_of(request: web.Request) -> ObjectId | None:
    """The verified reader (`Authorization: Bearer <jwt>` or `Token <jwt>`), None when
    anonymous; a bad token is a 401."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    token = header.removeprefix("Bearer ").removeprefix("Token ").strip()  # RealWorld clients send `Token`
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
