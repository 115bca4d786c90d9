"""The aiohttp engine's upstream connections, stricter than aiohttp's own about when a
pooled connection may carry another request (issue 18): a connection is reused only when
its previous answer was framed exactly and nothing unread waits on it, as with the raw
engine and nginx. Both hooks are aiohttp internals (`TCPConnector._get`, `_factory`);
the aiohttp version is pinned in requirements.lock and tests/proxy/test_hostile.py
checks the behaviour on every run."""
from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ConnectionKey
from aiohttp.connector import Connection
from aiohttp.tracing import Trace

log = logging.getLogger("shadow.proxy.aiohttp_engine")

HEAD_END = b"\r\n\r\n"
#: the most of a HEAD answer's head kept to find its end (aiohttp refuses far shorter ones)
SEEN_LIMIT = 256 * 1024


class StrictResponseHandler(ResponseHandler):
    """aiohttp's client protocol, but an answer to a HEAD ends at its head: bytes after
    it (a body the upstream must not send) are dropped and the connection is closed
    after this answer, instead of failing the answer (aiohttp reads them as the next
    status line: a 502 where nginx gives the 200)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self._head_only = False  # answering a HEAD: its head's end not seen yet
        self._dropping = False  # past that end: the rest is a body nobody asked for
        self._seen = b""  # the head so far (to find its end across reads)

    def set_response_params(self, **params: Any) -> None:
        self._head_only = bool(params.get("skip_payload"))
        self._dropping = False
        self._seen = b""
        super().set_response_params(**params)

    def data_received(self, data: bytes) -> None:
        if self._dropping:
            return
        if not self._head_only or not data:
            super().data_received(data)
            return
        seen = self._seen + data
        if len(seen) > SEEN_LIMIT:  # a head this long is aiohttp's to refuse: no more watching
            self._head_only = False
            self._seen = b""
            super().data_received(data)
            return
        start = 0
        while True:
            end = seen.find(HEAD_END, start)
            if end < 0:
                self._seen = seen
                super().data_received(data)
                return
            interim = seen[start + 9:start + 10] == b"1" and seen[start + 9:start + 12] != b"101"
            start = end + 4
            if not interim:  # the final head: nothing after it belongs to this answer
                break
        self._head_only = False
        self._seen = b""
        keep = len(data) - (len(seen) - start)
        if keep < len(data):
            log.debug("dropped %d bytes an upstream sent after the head of a HEAD answer", len(data) - keep)
            self._dropping = True
            self.force_close()
        super().data_received(data[:keep])


def _strict_handler(loop: asyncio.AbstractEventLoop) -> ResponseHandler:
    return StrictResponseHandler(loop)


class StrictConnector(aiohttp.TCPConnector):
    """aiohttp's connection pool, never handing out a pooled connection that has bytes
    waiting on it: an upstream that sent more after an answer (a body after a HEAD or a
    204, a whole extra response) would otherwise have those bytes read as the answer to
    the next request on that connection, which may be another client's. Such a
    connection is closed and the next one (or a fresh one) is taken."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._factory = functools.partial(_strict_handler, loop=self._loop)

    async def _get(self, key: ConnectionKey, traces: list[Trace]) -> Connection | None:
        while True:
            connection = await super()._get(key, traces)
            protocol = connection.protocol if connection is not None else None
            if connection is None or protocol is None or not protocol.should_close:
                return connection
            log.debug("closed a pooled upstream connection with unread bytes")
            connection.close()
