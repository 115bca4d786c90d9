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
from shadow.rules.load import RuleSet
from shadow.rules.spec import Entity, InvalidKey, Route, RouteMatch


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


def pick_route(rules: RuleSet, entity: Entity, name: str | None) -> Route:
    """The route named, or the entity's first single-document route keyed by one path
    parameter (or by a constant: a scalar list)."""
    routes: list[Route] = [route for route in rules.routes if route.entity == entity.name]
    route: Route | None
    if name is not None:
        route = rules.route_named(name)
        if route is None or route.entity != entity.name:
            names = ", ".join(r.name for r in routes)
            raise ControlError(f"no route {name!r} for entity {entity.name!r}; it has: {names}")
    else:
        route = next((r for r in routes if _readable(r)), None)
        if route is None:
            lists = [r.name for r in routes if r.is_list]
            if lists and len(lists) == len(routes):
                raise ControlError(f"entity {entity.name!r} has only list routes ({', '.join(lists)}): --url reads "
                                   "one document per key; list reads are checked by the sidecar")
            raise ControlError(f"entity {entity.name!r} has no single-document route keyed by one path parameter "
                               f"or a constant (it has: {', '.join(r.name for r in routes) or 'none'}): use --route")
    if route.is_list:
        raise ControlError(f"{route.name} is a list route: --url reads one document per key (--id); name a "
                           "single-document route with --route (list reads are checked by the sidecar)")
    if not _readable(route):
        raise ControlError(f"{route.name}: --url needs a route keyed by its one path parameter or by a constant "
                           f"(this one takes its key from the {route.key.kind})")
    return route


def _readable(route: Route) -> bool:
    if route.is_list:
        return False
    return route.const_key is not None or (route.key.kind == "path" and len(route.param_names) == 1)


def route_key(route: Route, raw: str) -> str:
    """The key as the route makes it from a URL value (its `normalize:` steps)."""
    for step in route.key_normalize:
        raw = raw.lower() if step == "lower" else raw.strip()
    return raw


async def api_controls(url: str, route: Route, keys: list[str], headers: Mapping[str, str],
                       timeout: float) -> tuple[dict[str, Any], BoundReader | None]:
    """key -> the API's document (None on 404), and the reader the headers name. Keys
    are the route's (normalized as it says: `--id UPPER` on a `normalize: lower` route
    reads /UPPER and compares key `upper`); a constant-key route is read once, as its
    constant (`--id all`)."""
    controls: dict[str, Any] = {}
    entity = route.entity_spec
    assert entity is not None, "a loaded route knows its entity"
    if route.const_key is not None:
        wrong = [key for key in keys if key != route.const_key]
        if wrong:
            raise ControlError(f"{route.name} has the one key {route.const_key!r} (key: {{const}}): "
                               f"use --id {route.const_key}")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        for key in keys:
            params = {} if route.const_key is not None else {route.param_names[0]: key}
            path = route.template
            for name, value in params.items():
                path = path.replace("{" + name + "}", quote(value, safe=""))
            wanted = key if route.const_key is not None else entity.validate_key(route_key(route, key))
            async with session.get(url.rstrip("/") + path, headers=dict(headers)) as response:
                body = await response.read()
                if response.status == 404:
                    controls[wanted] = None
                    continue
                if not 200 <= response.status < 300:
                    raise ControlError(f"GET {path}: HTTP {response.status}")
            try:
                document = orjson.loads(body)
                found = route.controls(RouteMatch(route, params), {}, headers, document)
            except orjson.JSONDecodeError:
                raise ControlError(f"GET {path}: not JSON") from None
            except InvalidKey as problem:
                raise ControlError(f"GET {path}: {problem}") from None
            controls[wanted] = found.get(wanted, next(iter(found.values()), None))
    return controls, bound_reader(route.reader, headers)
