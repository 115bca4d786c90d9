"""The pure stage that turns a captured read (shadow/shadowside.py) into a ShadowJob:
inflate the body copy, parse it, take the keys and control documents the route names,
and apply per-key sampling. Runs in a shadow worker (or the inline pipeline), never on
the request path (there the proxy only copies bytes)."""
from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import orjson
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shadow.model import ShadowJob, SkipReason
from shadow.replay.sampling import sampled_by_key
from shadow.replay.viewread import bound_reader, listing
from shadow.rules import InvalidKey
from shadow.shadowside import CapturedRead

MAX_INFLATED_BYTES = 16 * 1024 * 1024  # a gzip body may not inflate past this (zip bombs)
_PROPAGATOR = TraceContextTextMapPropagator()


@dataclass(frozen=True, slots=True)
class Prepared:
    """What became of one captured read: a job (or None) and the skips to count."""

    job: ShadowJob | None
    skips: tuple[SkipReason, ...] = ()


def prepare(read: CapturedRead) -> Prepared:
    """The ShadowJob of a captured read, or why it is not compared."""
    route = read.match.route
    body = decoded_body(read.body, read.content_encoding, MAX_INFLATED_BYTES)
    if body is None or "json" not in read.content_type.lower():
        return Prepared(None, (SkipReason.NOT_JSON,))
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Prepared(None, (SkipReason.NOT_JSON,))
    try:
        controls = route.controls(read.match, read.query, read.headers, document)
        listed = listing(route, document, read.query) if route.complete or route.page is not None else None
    except InvalidKey:
        return Prepared(None, (SkipReason.INVALID_KEY,))
    if not controls and listed is None:  # an empty list that must be checked is still a job
        return Prepared(None, (SkipReason.NO_DOCUMENT,))
    skips: tuple[SkipReason, ...] = ()
    if route.sample_by == "key" and route.sample < 1.0:
        chosen = {key: doc for key, doc in controls.items() if sampled_by_key(key, route.sample)}
        skips = (SkipReason.NOT_SAMPLED,) * (len(controls) - len(chosen))
        if not chosen:
            return Prepared(None, skips)
        controls = chosen
    job = ShadowJob(
        entity=route.entity, route=route.name, source=route.source, controls=controls,
        params=dict(read.match.params), enqueued_at=read.enqueued_at,
        trace_context=request_context(dict(read.trace_headers)) if read.trace_headers else None,
        reader=bound_reader(route.reader, read.headers), listing=listed,
    )
    return Prepared(job, skips)


def decoded_body(body: bytes, content_encoding: str, limit: int) -> bytes | None:
    """The body without its content coding (gzip/deflate), at most `limit` bytes; None
    when the coding is unknown or the body is corrupt or would inflate past the limit."""
    coding = content_encoding.strip().lower()
    if coding in ("", "identity"):
        return body
    if coding not in ("gzip", "x-gzip", "deflate"):
        return None
    try:
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 32 if coding != "deflate" else zlib.MAX_WBITS)
        plain = inflater.decompress(body, limit)
    except zlib.error:
        if coding != "deflate":
            return None
        try:  # raw deflate, as some servers send it
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            plain = inflater.decompress(body, limit)
        except zlib.error:
            return None
    return None if inflater.unconsumed_tail else plain


def request_context(trace_headers: Mapping[str, str] | None) -> Context | None:
    """The client's trace context from its `traceparent`/`tracestate`, or None (the
    proxy only copies the header values; they are parsed here, off the request path)."""
    if not trace_headers:
        return None
    return _PROPAGATOR.extract(carrier=dict(trace_headers))
