"""The one sink: exact counts, bounded labels, redaction in the log and the recent view."""
from __future__ import annotations

import dataclasses
import io
import json
import logging

import pytest

from shadow.model import Comparison, DropReason, Failure, FieldDiff, Outcome, SkipReason, Stage
from shadow.publish.metrics import Metrics
from shadow.publish.redaction import is_mask, redact_value
from shadow.publish.sink import MAX_FIELDS_PER_ENTITY, Sink


def mismatch(key: str, *diffs: FieldDiff, entity: str = "users") -> Comparison:
    return Comparison(entity=entity, route="GET /api/users/{id}", key=key, outcome=Outcome.MISMATCH, diffs=diffs, at=1.0)


def test_sensitive_fields_and_rule_paths_are_redacted_everywhere() -> None:
    document = {"email": "a@b.c", "passwordHash": "x", "profile": {"ssn": "123", "name": "Ann"},
                "refreshTokens": [{"value": "t"}], "passkeys": [{"publicKey": "pk", "salt": "s"}]}
    redacted = redact_value(document, "", frozenset({"profile.ssn", "email"}))
    assert redacted["profile"]["name"] == "Ann" and redacted["passkeys"][0]["publicKey"] == "pk"
    hidden = [redacted["email"], redacted["passwordHash"], redacted["profile"]["ssn"], redacted["refreshTokens"],
              redacted["passkeys"][0]["salt"]]
    assert all(is_mask(value) for value in hidden), hidden
    assert redacted["refreshTokens"].startswith("[secret list n=1 ")  # a list under a secret name: one mask


def test_the_log_and_the_recent_view_carry_redacted_values_only() -> None:
    out = io.StringIO()
    sink = Sink(Metrics(), mismatch_log=out)
    sink.use_rules({"users": ("profile.ssn",)}, [])
    sink.publish(mismatch("u1", FieldDiff("profile.ssn", "profile.ssn", "123-45", "999-99"),
                          FieldDiff("apiSecret", "apiSecret", "s1", "s2"), FieldDiff("name", "name", "Ann", "Anne")))
    sink.flush()
    [line] = [json.loads(text) for text in out.getvalue().splitlines()]
    assert line["key"] == "u1" and line["outcome"] == "mismatch"
    shown = {d["path"]: (d["control"], d["candidate"]) for d in line["diffs"]}
    assert shown["name"] == ("Ann", "Anne")
    for path in ("profile.ssn", "apiSecret"):  # masked, and the masks differ as the values do
        control, candidate = shown[path]
        assert is_mask(control) and is_mask(candidate) and control != candidate
    assert "123-45" not in out.getvalue() and "s1" not in out.getvalue()
    assert [diff.as_json() for diff in sink.recent()[0].diffs] == line["diffs"]


def test_an_explanation_makes_a_new_ring_entry_and_the_json_keeps_its_shape() -> None:
    out = io.StringIO()
    sink = Sink(Metrics(), mismatch_log=out, recent=2)
    entry = sink.publish(mismatch("u1", FieldDiff("name", "name", "Ann", "Anne")))
    assert entry is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.explained = ()  # type: ignore[misc]  # the point: a ring entry cannot be changed in place
    sink.explained(entry, [FieldDiff("name", "name", "Ann", "Anne", "changed")])
    [now] = sink.recent()
    assert now.id == entry.id and entry.explained is None  # replaced in the ring, the old value untouched
    assert [diff.path for diff in now.explained or ()] == ["name"]
    shown = now.as_json()
    assert list(shown) == ["id", "at", "entity", "route", "key", "outcome", "source", "reason", "diffs",
                           "suppressed", "trace_id", "explained"]
    assert shown["diffs"] == shown["explained"] == [
        {"path": "name", "at": "name", "kind": "changed", "control": "Ann", "candidate": "Anne"}]
    assert shown["suppressed"] == [] and json.loads(json.dumps(shown)) == shown
    late = sink.publish(mismatch("u2", FieldDiff("name", "name", "Bo", "Bob")))
    sink.publish(mismatch("u3", FieldDiff("name", "name", "Cy", "Cyd")))
    assert late is not None
    sink.publish(mismatch("u4", FieldDiff("name", "name", "Di", "Dia")))  # u2 has left the ring
    sink.explained(late, [FieldDiff("name", "name", "Bo", "Bob")])  # too late: nothing to replace
    assert [e.key for e in sink.recent()] == ["u4", "u3"] and all(e.explained is None for e in sink.recent())


def test_field_labels_are_capped_per_entity() -> None:
    sink = Sink(Metrics(), mismatch_log=io.StringIO())
    for number in range(MAX_FIELDS_PER_ENTITY + 50):
        sink.publish(mismatch(f"k{number}", FieldDiff(f"metadata.f{number}", f"metadata.f{number}", 1, 2)))
    samples = [s for m in sink.metrics.registry.collect() if m.name == "shadow_mismatch_fields"
               for s in m.samples if s.name.endswith("_total")]
    assert len(samples) == MAX_FIELDS_PER_ENTITY + 1
    assert sink.metrics.registry.get_sample_value("shadow_mismatch_fields_total", {"entity": "users", "field": "other"}) == 50
    assert sink.metrics.registry.get_sample_value("shadow_comparisons_total", {"entity": "users", "route": "GET /api/users/{id}", "outcome": "mismatch"}) == MAX_FIELDS_PER_ENTITY + 50


def test_skips_drops_and_failures_are_counted_by_reason_and_stage() -> None:
    sink = Sink(Metrics(), mismatch_log=io.StringIO())
    sink.dropped(DropReason.QUEUE_FULL, "users", "GET /api/users/{id}")
    sink.skipped("users", "GET /api/users/{id}", SkipReason.NOT_JSON)
    sink.raised(Failure.of(Stage.FETCH, TimeoutError("slow")), "users")
    sink.raised(Failure.of(Stage.FETCH, TimeoutError("slow")), "users")
    registry = sink.metrics.registry
    assert registry.get_sample_value("shadow_dropped_total", {"reason": "queue_full"}) == 1
    assert registry.get_sample_value("shadow_skipped_total", {"entity": "users", "route": "GET /api/users/{id}", "reason": "queue_full"}) == 1
    assert registry.get_sample_value("shadow_skipped_total", {"entity": "users", "route": "GET /api/users/{id}", "reason": "not_json"}) == 1
    assert registry.get_sample_value("shadow_errors_total", {"stage": "fetch"}) == 2
    assert dict(sink.counts["users"]) == {"skipped": 2}


def test_drop_reasons_keep_their_label_values_and_only_three_count_as_skips() -> None:
    """The reason label values are an interface (dashboards, alerts): pinned here. A drop
    with an entity and route is also a SKIPPED read only for the reasons that are skips."""
    labels = {"queue_full", "rate_limited", "shutdown", "worker_down", "explain_budget", "recheck_full",
              "recheck_bytes", "log_backlog"}
    assert {reason.value for reason in DropReason} == labels
    sink = Sink(Metrics(), mismatch_log=io.StringIO())
    for reason in DropReason:
        sink.dropped(reason, "users", "GET /api/users/{id}")
    sink.dropped("worker_down")  # type: ignore[arg-type]  # a label value from a worker's message
    registry = sink.metrics.registry
    for label in labels:
        assert registry.get_sample_value("shadow_dropped_total", {"reason": label}) == (2 if label == "worker_down" else 1)
    skipped = {s.labels["reason"] for m in registry.collect() if m.name == "shadow_skipped"
               for s in m.samples if s.name == "shadow_skipped_total" and s.value}
    assert skipped == {"queue_full", "rate_limited", "shutdown"}
    assert {reason.skip for reason in DropReason} == {SkipReason.QUEUE_FULL, SkipReason.RATE_LIMITED,
                                                      SkipReason.SHUTDOWN, None}
    assert dict(sink.counts["users"]) == {"skipped": 3}


def test_no_secret_value_leaves_through_log_page_or_span() -> None:
    """Every way out of the sink: the mismatch log, the recent ring behind /mismatches
    (JSON and page), deepdiff explanations and spans (which carry paths, never values)."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from shadow.publish.redaction import Redaction
    from shadow.publish.tracing import Tracing

    exporter = InMemorySpanExporter()
    out = io.StringIO()
    sink = Sink(Metrics(), Tracing(exporter=exporter), mismatch_log=out)
    sink.use_rules({"users": Redaction.of(("profile.phone",), ("taxId",))}, [])
    secrets = {"apiKey": "AK-1", "authorization": "Bearer AB-2", "cookie": "sid=CK-3", "privateKey": "PK-4",
               "ssn": "SSN-5", "cvv": "CVV-6", "card.number": "CN-7", "credentials.pass": "CP-8", "taxId": "TX-9",
               "profile.phone": "PH-10", "apiToken": "AT-11", "passwordHash": "PW-12"}
    diffs = [FieldDiff(path, path, value, value + "-other") for path, value in secrets.items()]
    entry = sink.publish(mismatch("u1", *diffs, FieldDiff("name", "name", "Ann", "Anne")))
    assert entry is not None
    sink.explained(entry, diffs)
    sink.flush()
    page = json.dumps([e.as_json() for e in sink.recent()])
    spans = json.dumps([dict(span.attributes or {}) for span in exporter.get_finished_spans()])
    for where in (out.getvalue(), page, spans):
        assert not [value for value in secrets.values() if value in where], where
    assert "Anne" in out.getvalue() and "apiKey" in spans  # paths are shown, values are not


def test_a_failure_is_logged_with_its_traceback_and_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    sink = Sink(Metrics(), mismatch_log=io.StringIO())
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlMTIz"
    try:
        raise ValueError(f"invalid input for query argument $1: 'Bearer {token}'")
    except ValueError as error:
        with caplog.at_level(logging.WARNING, logger="shadow.publish.sink"):
            sink.raised(Failure.of(Stage.FETCH, error), "users")
    [record] = caplog.records
    text = record.getMessage() + (record.exc_text or "")
    assert "Traceback (most recent call last)" in text and "test_a_failure_is_logged" in text
    assert token not in text and "Bearer [secret len=" in text
