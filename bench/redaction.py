"""Benchmark: what redaction costs. µs to mask a whole API document (what a `missing`
outcome logs), µs per noteworthy outcome through the sink (a mismatch with a few diffs:
ring entry + log line, redaction included) against the same sink with redaction
replaced by a pass-through, and µs per string for the value patterns. Writes
bench/results/redaction.json.

    python bench/redaction.py [--scale 20] [--before OLD_REDACTION_PY]

`--before` loads another redaction module (e.g. `git show d199657:shadow/publish/redaction.py
> old.py`) and times its whole-document redaction on the same documents.
Pure CPU, one process, no database: the seeded marketplace documents in the API's shape.
Measures only; never run as a test.
"""
from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import platform
import sys
import timeit
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shadow.demo.marketplace.generate import generate
from shadow.demo.marketplace.tojson import to_api
from shadow.model import Comparison, FieldDiff, Outcome
from shadow.publish.metrics import Metrics
from shadow.publish.redaction import Redaction, redact_text
from shadow.publish.sink import Sink
from shadow.rules import load_rules

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "redaction.json"
ENTITIES = ("payments", "purchase_requests", "disputes", "users")
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"


def best_us(run: Any, loops: int) -> float:
    """µs per call, best of 7 (the machine is shared: the quietest run is the cost)."""
    return round(min(timeit.repeat(run, number=loops, repeat=7)) / loops * 1e6, 2)


class PassThrough(Redaction):
    """The sink without redaction: the floor the redaction's share is measured against."""

    def value(self, value: Any, path: str = "") -> Any:
        return value

    def text(self, text: str) -> str:
        return text


def sink_cost(redaction: Redaction, comparison: Comparison, loops: int) -> float:
    sink = Sink(Metrics(), mismatch_log=io.StringIO(), recent=200)
    sink.use_rules({comparison.entity: redaction}, [])

    def one() -> None:
        sink.publish(comparison)
        if len(sink._pending) > 1000:  # what flush() takes off the sink each second
            sink._pending.clear()

    return best_us(one, loops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=20)
    parser.add_argument("--before", help="an older shadow/publish/redaction.py to time next to this one")
    args = parser.parse_args()
    rules = load_rules(ROOT / "rules" / "marketplace")
    dataset = generate(1, args.scale)
    before = None
    if args.before:
        spec = importlib.util.spec_from_file_location("redaction_before", args.before)
        assert spec is not None and spec.loader is not None
        before = importlib.util.module_from_spec(spec)
        sys.modules["redaction_before"] = before  # dataclasses look their module up
        spec.loader.exec_module(before)
    results: dict[str, Any] = {}
    for name in ENTITIES:
        entity = rules.entities[name]
        redaction = Redaction.for_entity(entity)
        documents = [to_api(entity.collection, doc) for doc in dataset.collections[entity.collection]][:200]
        per_document = best_us(lambda r=redaction, docs=documents: [r.value(d) for d in docs], 3) / len(documents)
        found: dict[str, Any] = {"documents": len(documents),
                                 "document_bytes": round(sum(len(json.dumps(d, default=str)) for d in documents)
                                                         / len(documents)),
                                 "whole_document_us": round(per_document, 1)}
        if before is not None:
            old = before.Redaction.for_entity(entity)
            found["whole_document_us_before"] = round(
                best_us(lambda old=old, docs=documents: [old.value(d) for d in docs], 3) / len(documents), 1)
        sample = documents[0]
        paths = [key for key, value in sample.items() if isinstance(value, str | int | float)][:3]
        diffs = tuple(FieldDiff(path, path, sample[path], f"{sample[path]}-x") for path in paths)
        mismatch = Comparison(entity=name, route=f"GET /api/{name}/{{id}}", key=str(sample.get("_id", "k")),
                              outcome=Outcome.MISMATCH, diffs=diffs, at=1.0)
        missing = Comparison(entity=name, route=f"GET /api/{name}/{{id}}", key=str(sample.get("_id", "k")),
                             outcome=Outcome.MISSING, control=sample, at=1.0)
        found["sink_mismatch_3_diffs_us"] = {"redacted": sink_cost(redaction, mismatch, 2000),
                                             "pass_through": sink_cost(PassThrough(), mismatch, 2000)}
        found["sink_missing_whole_document_us"] = {"redacted": sink_cost(redaction, missing, 500),
                                                   "pass_through": sink_cost(PassThrough(), missing, 500)}
        results[name] = found
        print(name, json.dumps(found))
    texts = {"short_plain": "completed", "iso_date": "2026-12-06T11:43:02.123Z", "object_id": "65a1b2c3d4e5f60718293a4b",
             "note_200_plain": "The buyer asked for a refund after the item arrived late; " * 3 + "ok",
             "note_with_jwt_url_card": f"Bearer {JWT} https://u:pw@h/x?token=abc card 4111 1111 1111 1111",
             "free_text_10k": ("lorem ipsum dolor sit amet, 42 items; " * 270)[:10_000],
             "hostile_200k": "eyJa." * 40_000}
    text_us = {label: best_us(lambda text=text: redact_text(text), 20 if len(text) > 1000 else 2000)
               for label, text in texts.items()}
    print(json.dumps(text_us))
    report = {
        "benchmark": "bench/redaction.py", "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "settings": {"scale": args.scale, "rules": rules.version, "before": bool(args.before)},
        "entities": results, "redact_text_us": text_us,
        "notes": ["whole_document_us: Redaction.value over an API document (names + value patterns on every string)",
                  "sink_*_us: Sink.publish of one noteworthy outcome (counters, ring entry, JSON log line), "
                  "redacted vs a pass-through redaction: the difference is what redaction adds",
                  "machine is 2 cores shared with other work: best of 7 runs; ratios matter, not absolutes"],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
