"""The worker's Relay and the proxy's Sink implement the same messages.Sink Protocol:
whatever the pipeline reports ends in the same metric samples, whether it was published
call by call (inline) or counted in a worker and merged as Counts deltas."""
from __future__ import annotations

import io
import pickle
from typing import Any

from shadow.model import Comparison, DropReason, Failure, FieldDiff, Outcome, SkipReason, Stage
from shadow.publish.metrics import Metrics
from shadow.publish.sink import Sink
from shadow.replay.messages import (
    Counts,
    Explained,
    FrameReader,
    Published,
    Raised,
    ToProxy,
    frame,
)
from shadow.replay.relay import Relay


def _suppressed(path: str) -> FieldDiff:
    return FieldDiff(path=path, at=path, kind="changed", control=1, candidate=2)


def _report(sink: Any) -> None:
    """One pipeline's worth of reports, in the order a pipeline might make them."""
    for n in range(5):
        sink.publish(Comparison("payments", "GET /p/{id}", f"k{n}", Outcome.MATCH, source="postgres", at=1.0))
    sink.publish(Comparison("payments", "GET /p/{id}", "k9", Outcome.MATCH, suppressed=(_suppressed("fee"),), at=1.0))
    sink.publish(Comparison("payments", "GET /p/{id}", "m1", Outcome.MISMATCH, diffs=(_suppressed("amount"),), at=1.0))
    sink.publish(Comparison("users", "GET /u/{id}", "u1", Outcome.ERROR, reason="fetch: TimeoutError: after 0.5s", at=1.0))
    sink.skipped("payments", "GET /p/{id}", SkipReason.NOT_JSON)
    sink.skipped("payments", "GET /p/{id}", SkipReason.NOT_JSON)
    sink.dropped(SkipReason.QUEUE_FULL, "users", "GET /u/{id}")
    sink.dropped(DropReason.EXPLAIN_BUDGET)
    sink.dropped(DropReason.RECHECK_FULL)
    sink.raised(Failure(Stage.FETCH, "TimeoutError", "after 0.5s"), "users")
    for seconds in (0.00001, 0.0003, 0.004, 0.004, 0.7, 99.0):
        sink.observe_stage("payments", "fetch", seconds)


def _samples(sink: Sink) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for metric in sink.metrics.registry.collect():
        for sample in metric.samples:
            if sample.name.startswith(("shadow_comparisons", "shadow_skipped", "shadow_dropped", "shadow_suppressed",
                                       "shadow_mismatch_fields", "shadow_errors", "shadow_stage_seconds")) \
                    and not sample.name.endswith("_created"):
                found[sample.name, tuple(sorted(sample.labels.items()))] = round(sample.value, 9)
    return found


def test_counted_in_the_worker_and_merged_equals_published_one_by_one() -> None:
    direct = Sink(Metrics(), mismatch_log=io.StringIO())
    _report(direct)

    merged = Sink(Metrics(), mismatch_log=io.StringIO())
    sent: list[ToProxy] = []
    relay = Relay(sent.append)
    _report(relay)
    counts = relay.counts()
    assert counts is not None and relay.counts() is None  # taken once
    # over the wire, as the worker sends them
    [batch] = FrameReader().feed(frame([*sent, counts]))
    for message in batch:
        match message:
            case Counts():
                merged.merge(message)
            case Published(comparison=comparison):
                merged.publish(comparison, None)
            case Raised(failure=failure, entity=entity):
                merged.raised(failure, entity)
            case _:
                raise AssertionError(message)

    assert _samples(merged) == _samples(direct)
    assert merged.counts == direct.counts
    # only the noteworthy, the error and the failure travelled one by one
    assert [type(message).__name__ for message in sent] == ["Published", "Published", "Raised"]


def test_a_traced_match_travels_whole_when_the_proxy_exports_spans() -> None:
    from shadow.model import JobInfo

    job = JobInfo("payments", "GET /p/{id}", "postgres",
                  trace=(("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),))
    match = Comparison("payments", "GET /p/{id}", "k1", Outcome.MATCH, at=1.0)
    for tracing, expected in ((False, 0), (True, 1)):
        sent: list[ToProxy] = []
        Relay(sent.append, tracing=tracing).publish(match, job)
        assert len(sent) == expected
    [published] = sent
    assert isinstance(published, Published) and published.job is not None
    assert dict(published.job.trace)["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")


def test_explanations_and_documents_cross_slim() -> None:
    sent: list[ToProxy] = []
    relay = Relay(sent.append)
    entry = relay.publish(Comparison("payments", "GET /p/{id}", "m1", Outcome.MISMATCH, control={"big": "x" * 1000},
                                     candidate={"big": "y"}, at=1.0))
    missing = relay.publish(Comparison("payments", "GET /p/{id}", "m2", Outcome.MISSING, control={"a": 1}, at=1.0))
    assert entry is not None and missing is not None and entry.id != missing.id
    relay.explained(entry, [_suppressed("big")])
    mismatch, gone, explained = sent
    assert isinstance(mismatch, Published) and mismatch.comparison.control is None and mismatch.comparison.candidate is None
    assert isinstance(gone, Published) and gone.comparison.control == {"a": 1}  # the ring shows what is missing
    assert isinstance(explained, Explained) and explained.handle == entry.id
    assert pickle.loads(pickle.dumps(explained)) == explained
