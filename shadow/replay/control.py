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
import contextlib
import http.client
import re
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import orjson
from multidict import CIMultiDict, MultiDict

from shadow.replay.coding import MAX_INFLATED_BYTES, decoded_body
from shadow.rules.spec import InvalidKey, Route, RouteMatch

RECHECK_HEADER = "X-Shadow-Recheck"
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ControlGone(Exception):
    """The upstream answered that the document is not there any more (a status of the
    route's `recheck.gone`, 404 and 410 by default)."""


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


#: request headers a replay never copies from the captured read: the client sets its
#: own framing and Host
_NOT_REPLAYED = frozenset({"host", "connection", "content-length", "transfer-encoding", "keep-alive",
                           "te", "upgrade", "expect", RECHECK_HEADER.lower()})
_CHUNK = 64 * 1024


class UpstreamControl:
    """Replays safe reads to the upstream API.

    A replay is rare (only keys that differed, once per recheck step), so each one is a
    fresh connection closed after the answer, made by the standard library's HTTP client
    in a thread: no client session to keep, and no aiohttp in the worker's memory (it is
    15 MB of resident memory per worker process, for a few requests a second at most).
    `timeout` bounds the whole exchange: connect, answer and body."""

    def __init__(self, upstream: str, timeout: float, max_bytes: int = MAX_INFLATED_BYTES) -> None:
        self.upstream = upstream.rstrip("/")
        parts = urlsplit(self.upstream)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path
        self._tls = ssl.create_default_context() if self._https else None  # loaded once: the CA store is costly
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.sent = 0

    async def read(self, route: Route, params: Mapping[str, str], replay: Replay) -> dict[str, Any]:
        """key -> the control document(s) the upstream answers now. Raises ControlGone
        on a `recheck.gone` status (404/410 by default), RuntimeError on any other
        non-2xx or a body without the document."""
        document = await self.read_body(route, replay)
        _path, _, query_text = replay.target.partition("?")
        query = MultiDict(parse_qsl(query_text, keep_blank_values=True))
        try:
            return route.controls(RouteMatch(route, dict(params)), query, CIMultiDict(replay.headers), document)
        except InvalidKey as problem:
            raise RuntimeError(f"upstream answer has no valid key: {problem}") from problem

    async def read_body(self, route: Route, replay: Replay) -> Any:
        """The parsed JSON body the upstream answers now (a list read's whole answer).
        Raises ControlGone on a `recheck.gone` status, RuntimeError on other failures."""
        if replay.method not in ("GET", "HEAD"):  # the rules refuse it too; never replay a write
            raise RuntimeError(f"refusing to replay {replay.method}")
        self.sent += 1
        connection = self._connection()
        try:
            status, body, coding = await asyncio.wait_for(asyncio.to_thread(self._exchange, connection, replay),
                                                          self.timeout)
        except (OSError, ValueError, http.client.HTTPException) as problem:  # refused, reset, bad answer, timeout
            raise RuntimeError(f"upstream replay failed: {problem or type(problem).__name__}") from problem
        finally:  # wakes the thread if it still waits on the socket (timed out, cancelled)
            _shut(connection)
        if status in route.recheck.gone:
            raise ControlGone(f"upstream answered {status}")
        if not 200 <= status < 300:
            raise RuntimeError(f"upstream answered {status}")
        if len(body) > self.max_bytes:
            raise RuntimeError("upstream answer too large")
        plain = decoded_body(body, coding, self.max_bytes)
        if plain is None:
            raise RuntimeError(f"upstream answer has an unreadable content coding {coding!r}")
        try:
            return orjson.loads(plain)
        except orjson.JSONDecodeError as problem:
            raise RuntimeError("upstream answer is not JSON") from problem

    def _connection(self) -> http.client.HTTPConnection:
        if self._tls is not None:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout, context=self._tls)
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def _exchange(self, connection: http.client.HTTPConnection, replay: Replay) -> tuple[int, bytes, str]:
        """One request and its answer, in a worker thread: (status, body, content coding).
        The body is read up to max_bytes + 1 (more is refused by the caller)."""
        deadline = time.monotonic() + self.timeout
        try:
            connection.putrequest(replay.method, self._prefix + replay.target, skip_accept_encoding=True)
            for name, value in replay.headers:
                if name.lower() not in _NOT_REPLAYED:
                    connection.putheader(name, value)
            connection.putheader(RECHECK_HEADER, "1")
            connection.putheader("Connection", "close")
            connection.endheaders()
            answer = connection.getresponse()
            chunks: list[bytes] = []
            size = 0
            while size <= self.max_bytes:  # a trickling body must not outlive the timeout
                if time.monotonic() > deadline:
                    raise TimeoutError("upstream answer not complete in time")
                chunk = answer.read1(min(_CHUNK, self.max_bytes + 1 - size))
                if not chunk:
                    if answer.length:  # the connection closed before Content-Length bytes came
                        raise http.client.IncompleteRead(b"".join(chunks), answer.length)
                    break
                chunks.append(chunk)
                size += len(chunk)
            return answer.status, b"".join(chunks), answer.getheader("Content-Encoding") or ""
        finally:
            connection.close()

    async def close(self) -> None:
        """Nothing is held between replays."""


def _shut(connection: http.client.HTTPConnection) -> None:
    """End a replay's connection from the loop's thread: shutdown() wakes a thread blocked
    in recv on it (close() alone would not), then close."""
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    connection.close()


async def read_upstream_once(reader: UpstreamControl, route: Route, params: Mapping[str, str], replay: Replay,
                             cache: dict[tuple[Any, ...], asyncio.Future[dict[str, Any]]]) -> dict[str, Any]:
    """One replay per (route, target, headers) within a batch of rechecks: the keys of
    one list read share its answer."""
    cache_key = (route.name, replay.target, replay.headers)
    pending = cache.get(cache_key)
    if pending is None:  # the first key reads; the others sharing it await its answer (no task of its own)
        pending = cache[cache_key] = asyncio.get_running_loop().create_future()
        try:
            answer = await reader.read(route, params, replay)
        except asyncio.CancelledError:
            pending.cancel()  # the keys sharing it are not left waiting
            raise
        except Exception as problem:
            pending.set_exception(problem)
            pending.exception()  # marked retrieved: each key sharing it sees it through its own await
        else:
            pending.set_result(answer)
    return await asyncio.shield(pending)
