"""Who may use the admin endpoints that show production data or change the sidecar.

    open always     /metrics /healthz /readyz /gate   (counts and verdicts, no documents)
    token required  /mismatches /rules POST /reload / (documents, rule files, a reload)

The token (`SHADOW_ADMIN_TOKEN`, or `--admin-token-file`) is sent as
`Authorization: Bearer <token>`, or as the password of HTTP Basic (any user name) so a
browser can open the mismatch page. Compared in constant time. Without a token:
- admin on loopback (the default 127.0.0.1): open, as before — only the pod / host
  can reach it — for requests whose Host is a loopback name (a DNS-rebinding page
  sends its own host name);
- admin beyond loopback (the chart's 0.0.0.0): those endpoints answer 403 and the
  process logs a warning at start; probes and scraping keep working.

`POST /reload` also refuses what a browser sends cross-site: a `Sec-Fetch-Site` other
than same-origin/none, an `Origin` that is not the admin's own, and the "simple"
content types a cross-site form or no-preflight fetch can send (form, multipart,
text/plain) — a reload has no body, or a JSON one.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from shadow.config import check_token

log = logging.getLogger("shadow.publish.admin")

PROTECTED = frozenset({"/mismatches", "/rules", "/reload", "/"})
REALM = "shadow-admin"
#: what a cross-site <form> or a fetch() without preflight may send as Content-Type
SIMPLE_CONTENT_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost; False for 0.0.0.0, ::, names, pod IPs."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AdminAuth:
    token: str | None = field(default=None, repr=False)
    exposed: bool = False  # admin listens beyond loopback

    def __post_init__(self) -> None:
        if self.token is not None:
            check_token(self.token)

    @property
    def required(self) -> bool:
        """Whether protected endpoints need a credential (else: open, or refused)."""
        return self.token is not None or self.exposed

    def warn_if_refusing(self) -> None:
        if self.exposed and self.token is None:
            log.warning("admin listens beyond loopback without SHADOW_ADMIN_TOKEN: /mismatches, /rules and "
                        "POST /reload answer 403 (set SHADOW_ADMIN_TOKEN or --admin-token-file to use them)")

    def allows(self, request: web.Request) -> bool:
        if self.token is None:
            return not self.exposed and is_loopback(_hostname(request.host or ""))
        presented = _presented(request.headers.get("Authorization", ""))
        return presented is not None and hmac.compare_digest(presented.encode(), self.token.encode())

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource  # as routed (decoded), not as spelled
        path = resource.canonical if resource is not None else None
        if path in PROTECTED:
            if not self.allows(request):
                return _refusal(self.token is None, self.exposed)
            if path == "/reload":
                problem = cross_site_problem(request)
                if problem is not None:
                    return web.json_response({"error": f"POST /reload refused: {problem}"}, status=403)
        return await handler(request)


def _presented(header: str) -> str | None:
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer" and credentials:
        return credentials
    if scheme.lower() == "basic" and credentials:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        _, sep, password = decoded.partition(":")
        return password if sep else None
    return None


def _hostname(host: str) -> str:
    """The name part of a Host header: `[::1]:9090` -> `::1`, `localhost:9090` -> `localhost`."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _refusal(no_token: bool, exposed: bool) -> web.Response:
    if no_token and exposed:
        return web.json_response({"error": "admin listens beyond loopback and no admin token is configured: "
                                           "set SHADOW_ADMIN_TOKEN (or --admin-token-file) to use this endpoint"},
                                 status=403)
    if no_token:
        return web.json_response({"error": "without an admin token only a loopback Host (127.0.0.1, localhost) "
                                           "may use this endpoint"}, status=403)
    return web.json_response({"error": "admin token required: Authorization: Bearer <token>"}, status=401,
                             headers={"WWW-Authenticate": f'Bearer realm="{REALM}", Basic realm="{REALM}"'})


def cross_site_problem(request: web.Request) -> str | None:
    """Why a POST looks like a browser's cross-site request, or None."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site.strip().lower() not in ("same-origin", "none"):
        return f"Sec-Fetch-Site: {fetch_site[:40]}"
    origin = request.headers.get("Origin")
    if origin is not None:
        expected = f"{request.scheme}://{request.host}"
        if origin.strip().lower() != expected.lower():
            return "Origin is not this admin server"
    content_type = request.headers.get("Content-Type")
    if content_type is not None:
        media = content_type.split(";", 1)[0].strip().lower()
        if media in SIMPLE_CONTENT_TYPES or not media:
            return f"content type {media or '(empty)'!r}: send no body, or application/json"
    return None
