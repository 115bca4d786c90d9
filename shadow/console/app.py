"""`shadow console`'s web app: every pod's evidence (the evidence store) on one page,
plus what Prometheus knows (optional: known divergences and their expiry).

    /                 entities, routes, failing paths (filters and page in the URL), the
                      health strip, verify runs, gate verdicts
    /examples         the kept examples of one failing path (?entity=&path=)
    /examples/{id}    one example: both whole documents side by side, differing paths
                      highlighted; the request, the recheck history, the trace
    /healthz          the process is alive (open)

Read-only (GET only, no form posts anywhere: nothing to forge cross-site); the same auth
model as the admin server (shadow/publish/admin_auth.py): a token as Bearer or the
password of HTTP Basic, required whenever one is configured or the console listens
beyond loopback. Pages are autoescaped templates, no script, a strict CSP.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from shadow.console import queries
from shadow.publish.admin_auth import REALM, AdminAuth
from shadow.publish.render import SECURITY_HEADERS, render
from shadow.publish.views import Filters, PathRow

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger("shadow.console")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPEN = frozenset({"/healthz"})
#: seconds Prometheus' answer about known divergences is reused (they change with rule reloads)
KNOWN_TTL = 30.0
EXPIRIES = "shadow_known_divergence_expiry_timestamp_seconds"
#: text a trace id is linked with, e.g. a Jaeger or Tempo URL with `{trace_id}`
TRACE_LINK_PLACEHOLDER = "{trace_id}"


class Console:
    """Handlers over one evidence store pool."""

    def __init__(self, pool: asyncpg.Pool, auth: AdminAuth, prometheus: str | None = None, trace_url: str | None = None,
                 clean_window: float = queries.DEFAULT_CLEAN_WINDOW) -> None:
        self.pool = pool
        self.auth = auth
        self.prometheus = prometheus.rstrip("/") if prometheus else None
        self.trace_url = trace_url
        self.clean_window = clean_window
        self._known: tuple[float, queries.Known | None] = (-KNOWN_TTL, None)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard])
        app.router.add_get("/", self.index)
        app.router.add_get("/examples", self.examples)
        app.router.add_get("/examples/{id}", self.example)
        app.router.add_get("/healthz", self.healthz)
        return app

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in OPEN and not self.auth.allows(request):
            if self.auth.token is None:
                return web.Response(status=403, text="the console listens beyond loopback without a token: "
                                                     "set SHADOW_CONSOLE_TOKEN (or --token-file)\n")
            return web.Response(status=401, text="token required (Bearer, or the password of HTTP Basic)\n",
                                headers={"WWW-Authenticate": f'Basic realm="{REALM}", Bearer realm="{REALM}"'})
        response = await handler(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def index(self, request: web.Request) -> web.Response:
        filters = Filters.parse(request.query)
        started = time.perf_counter()
        known = await self._known_divergences()
        view = await queries.overview(self.pool, filters, known=known, clean_window=self.clean_window)

        def link(**changes: Any) -> str:
            query = filters.query(**changes)
            return "/" + (f"?{query}" if query else "")

        def examples_link(row: PathRow) -> str:
            import urllib.parse

            return "/examples?" + urllib.parse.urlencode({"entity": row.entity, "path": row.path})

        page = render("console.html", view=view, link=link, examples_link=examples_link,
                      took=time.perf_counter() - started)
        return web.Response(text=page, content_type="text/html", charset="utf-8")

    async def examples(self, request: web.Request) -> web.Response:
        entity, path = _text(request.query.get("entity", ""), 300), _text(request.query.get("path", ""), 1000)
        rows = await queries.examples(self.pool, entity, path)
        return web.Response(text=render("examples.html", entity=entity, path=path, rows=rows,
                                        example_link=lambda row: f"/examples/{row.id}"),
                            content_type="text/html", charset="utf-8")

    async def example(self, request: web.Request) -> web.Response:
        text = request.match_info["id"]
        try:
            example_id = int(text) if text.isascii() and text.isdigit() else -1
        except ValueError:
            raise web.HTTPNotFound(text="no such example\n") from None
        if not 0 < example_id < 2**63:
            raise web.HTTPNotFound(text="no such example\n")
        view = await queries.example(self.pool, example_id)
        if view is None:
            raise web.HTTPNotFound(text="no such example (retention may have removed it)\n")
        trace = (self.trace_url.replace(TRACE_LINK_PLACEHOLDER, view.row.trace_id)
                 if self.trace_url and view.row.trace_id else None)
        return web.Response(text=render("example.html", view=view, trace_link=trace),
                            content_type="text/html", charset="utf-8")

    async def _known_divergences(self) -> queries.Known | None:
        """Known divergences and their expiry, from Prometheus (None without it, or when
        it does not answer: the page still shows the store); asked at most every KNOWN_TTL."""
        if self.prometheus is None:
            return None
        asked, known = self._known
        if time.monotonic() - asked < KNOWN_TTL:
            return known
        known = await self._ask_prometheus()
        self._known = (time.monotonic(), known)
        return known

    async def _ask_prometheus(self) -> queries.Known | None:
        assert self.prometheus is not None
        try:
            timeout = aiohttp.ClientTimeout(total=3)
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
                    f"{self.prometheus}/api/v1/query", params={"query": EXPIRIES}) as response:
                body = await response.json(content_type=None)
            divergences: dict[str, list[tuple[str, float]]] = {}
            for item in body["data"]["result"]:
                labels = item["metric"]
                divergences.setdefault(str(labels.get("entity", "?")), []).append(
                    (str(labels.get("field", "?")), float(item["value"][1])))
            return queries.Known({name: tuple(sorted(set(rows))) for name, rows in divergences.items()})
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as problem:
            log.warning("Prometheus at %s: %s", self.prometheus, problem)
            return None


def _text(value: str, limit: int) -> str:
    """A query value as the store may see it: printable (PostgreSQL refuses NUL in text)
    and bounded; anything else is treated as absent."""
    return value[:limit] if value.isprintable() else ""
