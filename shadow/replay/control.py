"""Re-reading the control on a recheck: the same safe read replayed to the upstream
API, or the stored document in MongoDB through the entity's toJSON rules.

Runs in the shadow worker, only for keys that differed. A replay is a GET/HEAD to the
configured upstream (never through the proxy), marked `X-Shadow-Recheck: 1` so the
operator can tell it apart in the API's logs, carrying only the request headers the
route's `recheck.headers` allows. Those headers (credentials, often) live in a Replay
held by the recheck heap for the recheck window only; they are never logged, put in
a repr, published or sent anywhere but to the upstream.
"""
from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from shadow.proxy.capture import MAX_INFLATED_BYTES
from shadow.rules.spec import InvalidKey, Route, RouteMatch

RECHECK_HEADER = "X-Shadow-Recheck"
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ControlGone(Exception):
    """The upstream answered that the document is not there any more (404/410)."""


@dataclass(frozen=True, slots=True)
class Replay:
    """The safe read to send again: method, origin-form target, the allowed headers."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def __repr__(self) -> str:  # never show header values (credentials)
        return f"Replay({self.method} {self.target}, {len(self.headers)} header(s))"


def replays(route: Route) -> bool:
    """Does a recheck of this route replay the read to the upstream? Not when the answer
    depends on who reads (a view model's `reader`) and the reader's header is not among
    the allowed `recheck.headers`: a replay without it would read someone else's view,
    so the control stays the original answer (as with `control: none`)."""
    if not route.recheck.enabled or route.recheck.control != "upstream":
        return False
    reader = route.reader
    return reader is None or reader.header.lower() in route.recheck.headers


def replay_of(route: Route, params: Mapping[str, str], query: Any, headers: Any) -> Replay:
    """The replay of a captured read: the path rebuilt from the route's template and
    the matched parameters, the query as sent, and only the headers the route allows."""
    path = _PARAM.sub(lambda found: quote(str(params.get(found.group(1), "")), safe=""), route.template)
    items = list(query.items()) if query is not None else []
    target = path + ("?" + urlencode(items) if items else "")
    allowed = route.recheck.headers
    kept = tuple((name, value) for name, value in (headers.items() if headers is not None else ())
                 if name.lower() in allowed)
    return Replay(route.method, target, kept)


class UpstreamControl:
    """Replays safe reads to the upstream API (one aiohttp session, opened lazily)."""

    def __init__(self, upstream: str, timeout: float) -> None:
        self.upstream = upstream.rstrip("/")
        self.timeout = timeout
        self._session: Any = None
        self.sent = 0

    async def read(self, route: Route, params: Mapping[str, str], replay: Replay) -> dict[str, Any]:
        """key -> the control document(s) the upstream answers now. Raises ControlGone
        on 404/410, RuntimeError on any other non-2xx or a body without the document."""
        import aiohttp
        from multidict import CIMultiDict, MultiDict
        from yarl import URL

        if replay.method not in ("GET", "HEAD"):  # the rules refuse it too; never replay a write
            raise RuntimeError(f"refusing to replay {replay.method}")
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout),
                                                  auto_decompress=True)
        headers = CIMultiDict(replay.headers)
        headers[RECHECK_HEADER] = "1"
        url = URL(self.upstream + replay.target, encoded=True)
        self.sent += 1
        async with self._session.request(replay.method, url, headers=headers, allow_redirects=False) as answer:
            if answer.status in (404, 410):
                raise ControlGone(f"upstream answered {answer.status}")
            if not 200 <= answer.status < 300:
                raise RuntimeError(f"upstream answered {answer.status}")
            body = await answer.content.read(MAX_INFLATED_BYTES + 1)
            if len(body) > MAX_INFLATED_BYTES:
                raise RuntimeError("upstream answer too large")
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as problem:
            raise RuntimeError("upstream answer is not JSON") from problem
        query = MultiDict(URL(replay.target, encoded=True).query)
        try:
            return route.controls(RouteMatch(route, dict(params)), query, CIMultiDict(replay.headers), document)
        except InvalidKey as problem:
            raise RuntimeError(f"upstream answer has no valid key: {problem}") from problem

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def read_upstream_once(reader: UpstreamControl, route: Route, params: Mapping[str, str], replay: Replay,
                             cache: dict[tuple[Any, ...], asyncio.Future[dict[str, Any]]]) -> dict[str, Any]:
    """One replay per (route, target, headers) within a batch of rechecks: the keys of
    one list read share its answer."""
    cache_key = (route.name, replay.target, replay.headers)
    pending = cache.get(cache_key)
    if pending is None:
        pending = cache[cache_key] = asyncio.ensure_future(reader.read(route, params, replay))
    return await asyncio.shield(pending)
