"""The admin server, on its own port (loopback unless configured otherwise):

  /metrics     Prometheus exposition of the sidecar's registry
  /healthz     the process is alive
  /readyz      rules loaded and listening (the upstream and PostgreSQL are not checked);
               the shadow workers' state and problems in the body
  /rules       version, files and routes of the rules in force
  /mismatches  recent mismatches, redacted: JSON, or an HTML page
               (?format=html or Accept: text/html)
  /gate        the cutover verdict from local counters (a hook set at startup)
  POST /reload reload the rules now

/mismatches, /rules and POST /reload need the admin token whenever one is configured
or admin listens beyond loopback (shadow/publish/admin_auth.py).
"""
from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from yarl import URL

from shadow.model import WorkerState
from shadow.publish.admin_auth import AdminAuth
from shadow.publish.render import SECURITY_HEADERS, render
from shadow.publish.sink import Sink
from shadow.publish.views import Filters, from_memory
from shadow.rules.reload import RulesHolder, rule_files
from shadow.rules.spec import Route

#: /gate's hook: returns a JSON-able verdict (sync or async); set by the lead's wiring
GateHook = Callable[[], "Awaitable[dict[str, Any]] | dict[str, Any]"]


class Admin:
    """Handlers of the admin endpoints over the sidecar's parts."""

    def __init__(self, sink: Sink, rules: RulesHolder, upstream: str, gate: GateHook | None = None,
                 auth: AdminAuth | None = None) -> None:
        self.auth = auth or AdminAuth()
        self.sink = sink
        self.rules = rules
        self.upstream = URL(upstream)
        self.gate = gate
        #: the proxy port accepts connections (set by the sidecar once bound, cleared when it
        #: stops listening). Readiness is "rules loaded and listening" and nothing else: no
        #: check of the upstream or the shadow sources, so an outage of the API (or of
        #: PostgreSQL) never takes every replica out of the Service at once.
        self.listening = False
        #: the shadow worker processes (set by the sidecar in worker mode; none inline)
        self.workers: Callable[[], Sequence[WorkerState]] = lambda: ()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.auth.middleware])
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/rules", self.rules_view)
        app.router.add_get("/mismatches", self.mismatches)
        app.router.add_get("/gate", self.gate_view)
        app.router.add_post("/reload", self.reload)
        app.router.add_get("/", self.index)
        return app

    async def index(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/mismatches?format=html")

    async def metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.sink.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        problems = []
        rules = self.rules.current
        if rules is None:
            problems.append("rules: none loaded (" + "; ".join(self.rules.last_result.problems
                                                               if self.rules.last_result else ()) + ")")
        if not self.listening:
            problems.append("proxy: not listening")
        shadow = shadow_side(self.workers())
        if problems:
            return web.json_response({"ready": False, "problems": problems, **shadow}, status=503)
        assert rules is not None  # a problem otherwise
        return web.json_response({"ready": True, "rules": rules.version, **shadow})

    async def rules_view(self, request: web.Request) -> web.Response:
        rules = self.rules.current
        last = self.rules.last_result
        body: dict[str, Any] = {
            "directory": str(self.rules.directory),
            "version": getattr(rules, "version", None),
            "files": [str(path.relative_to(self.rules.directory)) for path in rule_files(self.rules.directory)],
            "routes": [_describe_route(route) for route in getattr(rules, "routes", ())],
            # declared unverifiable paths and how many compared documents showed them
            "unverifiable": {name: {path: self.sink.unverified[name][path] for path in entity.unverifiable}
                             for name, entity in getattr(rules, "entities", {}).items() if entity.unverifiable},
            "last_reload": last.as_json() if last else None,
        }
        return _json(body)

    async def mismatches(self, request: web.Request) -> web.Response:
        entity = request.query.get("entity")
        try:
            limit = int(request.query.get("limit", "100"))
            if limit < 0:
                raise ValueError
        except ValueError:
            raise web.HTTPBadRequest(
                text=f"limit: expected a whole number >= 0, got {request.query['limit']!r}\n") from None
        wanted = request.query.get("format")
        if wanted == "html" or (wanted is None and "text/html" in request.headers.get("Accept", "")):
            return web.Response(text=self._page(request), content_type="text/html", charset="utf-8",
                                headers=SECURITY_HEADERS)
        recent = self.sink.recent(entity, limit)
        counts = {name: dict(counter) for name, counter in sorted(self.sink.counts.items())}
        return _json({"version": getattr(self.rules.current, "version", None), "counts": counts,
                      "recent": [entry.as_json() for entry in recent],
                      "errors": [error.as_json() for error in reversed(self.sink.recent_errors)],
                      "noisy": self.sink.noisiest()})

    async def gate_view(self, request: web.Request) -> web.Response:
        if self.gate is None:
            return web.json_response({"error": "no gate criteria configured for this sidecar"}, status=501)
        verdict = self.gate()
        if inspect.isawaitable(verdict):
            verdict = await verdict
        return _json(verdict)

    async def reload(self, request: web.Request) -> web.Response:
        result = await self.rules.reload("POST /reload")
        return _json(result.as_json(), status=200 if result.ok else 422)

    # ------------------------------------------------------------------ the HTML page

    def _page(self, request: web.Request) -> str:
        """The pod's evidence page: the typed aggregate (shadow/publish/views.py) from this
        sink's memory, through the templates `shadow console` uses."""
        filters = Filters.parse(request.query)
        view = from_memory(self.sink, getattr(self.rules.current, "version", None), filters)
        total = sum(sum(counter.values()) for counter in self.sink.counts.values())

        def link(**changes: Any) -> str:
            query = filters.query(**changes)
            return "/mismatches?format=html" + (f"&{query}" if query else "")

        return render("admin.html", view=view, total=total, link=link, workers=tuple(self.workers()))


def _describe_route(route: Route) -> dict[str, Any]:
    return {"name": route.name, "entity": route.entity, "source": route.source, "sample": route.sample,
            "sample_by": route.sample_by, "recheck_seconds": list(route.recheck.after),
            "recheck_control": route.recheck.control, "list": route.is_list,
            "complete_list": route.complete, "file": f"{route.file}:{route.line}"}


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS),
                        status=status, content_type="application/json")


def shadow_side(workers: Sequence[WorkerState]) -> dict[str, Any]:
    """The shadow side's part of /readyz: each worker process, and what is wrong with it.
    Shown, never counted against readiness: the user path does not need the workers, and
    a shadow-side fault must not take every replica out of the Service."""
    if not workers:
        return {}
    problems = [f"worker {state.index}: " + ("starting" if state.restarts == 0 else
                f"down or restarting, restarted {state.restarts} times; last error: {state.last_error}")
                for state in workers if not state.ready]
    return {"shadow_workers": [{"worker": state.index, "pid": state.pid, "ready": state.ready,
                                "restarts": state.restarts, "last_error": state.last_error} for state in workers],
            "shadow_problems": problems}
