"""The pure stage that turns a captured read, as the wire message `messages.Read` the
pipeline queued, into a ShadowJob: inflate the body copy, parse it, take the keys and
control documents the route names, and apply per-key sampling. Runs in a shadow worker
(or the inline pipeline), never on the request path (there the proxy only copies bytes)."""
from __future__ import annotations

from dataclasses import dataclass

import orjson
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

from shadow.model import JobInfo, ShadowJob, SkipReason
from shadow.replay.coding import MAX_INFLATED_BYTES, decoded_body
from shadow.replay.control import Replay, replay_of, replays
from shadow.replay.messages import Read
from shadow.replay.sampling import sampled_by_key
from shadow.replay.viewread import bound_reader, listing
from shadow.rules import InvalidKey, RouteMatch
from shadow.rules.spec import Route

#: shared by every read without a query or headers (most: a read carries only the
#: headers its route reads), read-only
NO_QUERY: MultiDictProxy[str] = MultiDictProxy(MultiDict())
NO_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())


@dataclass(frozen=True, slots=True)
class Prepared:
    """What became of one captured read: a job (or None), the skips to count, and how a
    recheck replays it to the upstream (None: it does not)."""

    job: ShadowJob | None
    skips: tuple[SkipReason, ...] = ()
    replay: Replay | None = None


def prepare(route: Route, read: Read, upstream: bool = False) -> Prepared:
    """The ShadowJob of a captured read of `route`, or why it is not compared;
    `upstream`: rechecks can replay reads to the upstream (the route decides whether)."""
    body = decoded_body(read.body, read.content_encoding, MAX_INFLATED_BYTES)
    if body is None or "json" not in read.content_type.lower():
        return Prepared(None, (SkipReason.NOT_JSON,))
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Prepared(None, (SkipReason.NOT_JSON,))
    # the rules read a query and headers as the proxy had them: a name may repeat (the
    # first counts), header names in any case
    params = dict(read.params)
    query = MultiDictProxy(MultiDict(read.query)) if read.query else NO_QUERY
    headers = CIMultiDictProxy(CIMultiDict(read.headers)) if read.headers else NO_HEADERS
    try:
        controls = route.controls(RouteMatch(route, params), query, headers, document)
        listed = listing(route, document, query) if route.complete or route.page is not None else None
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
    info = JobInfo(route.entity, route.name, route.source, read.enqueued_at, read.trace, read.params,
                   tuple(listed.query.items()) if listed is not None else ())
    job = ShadowJob(info, controls, reader=bound_reader(route.reader, headers), listing=listed)
    replay = replay_of(route, params, query, headers) if upstream and replays(route) else None
    return Prepared(job, skips, replay)
