"""`shadow compare --url`: the control taken from the real API (issue 12) — the route's
answer for each key, read with the headers given (e.g. a reader's token), through the
same rules and normalization as the proxy — instead of rebuilding it from MongoDB. So
view-model entities, which no store holds as a document, can be checked by hand."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from shadow.replay.viewread import BoundReader, bound_reader
from shadow.rules.spec import Entity, Route, RouteMatch


class ControlError(Exception):
    """The API could not give a control (no usable route, a non-2xx answer, not JSON)."""


def parse_headers(values: list[str] | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    for value in values or ():
        name, sep, text = value.partition(":")
        if not sep or not name.strip():
            raise ControlError(f"--header takes 'Name: value', got {value[:40]!r}")
        headers[name.strip()] = text.strip()
    return headers


def pick_route(rules: Any, entity: Entity, name: str | None) -> Route:
    """The route named, or the entity's first single-document route keyed by one path parameter."""
    routes: list[Route] = [route for route in rules.routes if route.entity == entity.name]
    route: Route | None
    if name is not None:
        route = rules.route_named(name)
        if route is None or route.entity != entity.name:
            names = ", ".join(r.name for r in routes)
            raise ControlError(f"no route {name!r} for entity {entity.name!r}; it has: {names}")
    else:
        route = next((r for r in routes if not r.is_list and r.key.kind == "path" and len(r.param_names) == 1), None)
        if route is None:
            raise ControlError(f"entity {entity.name!r} has no single-document route keyed by one path parameter: "
                               "use --route")
    if route.is_list or route.key.kind != "path" or len(route.param_names) != 1:
        raise ControlError(f"{route.name}: --url needs a single-document route keyed by its one path parameter")
    return route


async def api_controls(url: str, route: Route, keys: list[str], headers: Mapping[str, str],
                       timeout: float) -> tuple[dict[str, Any], BoundReader | None]:
    """key -> the API's document (None on 404), and the reader the headers name."""
    param = route.param_names[0]
    controls: dict[str, Any] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        for key in keys:
            path = route.template.replace("{" + param + "}", quote(key, safe=""))
            async with session.get(url.rstrip("/") + path, headers=dict(headers)) as response:
                body = await response.read()
                if response.status == 404:
                    controls[key] = None
                    continue
                if not 200 <= response.status < 300:
                    raise ControlError(f"GET {path}: HTTP {response.status}")
            try:
                document = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise ControlError(f"GET {path}: not JSON") from None
            found = route.controls(RouteMatch(route, {param: key}), {}, headers, document)
            controls[key] = next(iter(found.values()), None)
    return controls, bound_reader(route.reader, headers)
