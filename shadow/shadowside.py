"""The one value and the one interface where the request path (shadow/proxy/) meets the
shadow side (shadow/replay/), defined below both so that neither imports the other:

- `CapturedRead`: a matched 2xx read as the proxy hands it over, raw bytes, nothing
  parsed (parsing is shadow work, done off the request path by replay/prepare.py);
- `ShadowSide`: what the proxy hands reads to (replay/handoff.py `Handoff` for worker
  processes, replay/pipeline.py `Pipeline` inline). `admit` and `offer` never wait.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from shadow.model import SkipReason
from shadow.rules.spec import RouteMatch


@dataclass(frozen=True, slots=True)
class CapturedRead:
    """A matched 2xx read as the proxy hands it over: raw bytes, nothing parsed yet."""

    match: RouteMatch
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    content_type: str
    content_encoding: str
    trace_headers: tuple[tuple[str, str], ...]
    enqueued_at: float


class SkipCounter(Protocol):
    """The part of the sink the request path touches: counting a read it will not copy."""

    def skipped(self, entity: str, route: str, reason: SkipReason) -> None: ...


class ShadowSide(Protocol):
    """What the proxy hands captured reads to (replay/handoff.py `Handoff`, or an inline
    replay/pipeline.py `Pipeline`). `admit` and `offer` run on the request path and
    never wait; a read the shadow side cannot take is dropped and counted there."""

    @property
    def sink(self) -> SkipCounter: ...

    def admit(self, match: RouteMatch) -> bool:
        """When a matched read's 2xx head arrives: copy its body? (sampling, rate limit)"""
        ...

    def offer(self, read: CapturedRead) -> bool:
        """Take a read without waiting; False when it was dropped (and counted)."""
        ...

    async def drain(self, timeout: float) -> bool:
        """Wait until nothing is queued or in flight; False on timeout."""
        ...

    async def close(self) -> None: ...
