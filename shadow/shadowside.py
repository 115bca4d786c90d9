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
