"""A verify run's results: the text table, the JSON document, and the Pushgateway push
(`--push`, Prometheus text format; the convention for batch jobs).

The JSON document is versioned (`format`, `version`) and described by the JSON Schema
docs/verify-report.schema.json; a change that could break a reader bumps `version`."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from shadow.verify.model import LAYERS, Difference, LayerResult

REPORT_FORMAT = "shadow-verify-report"
REPORT_VERSION = 2


@dataclass
class EntityReport:
    entity: str
    verifiable: bool = True
    reason: str = ""
    layers: dict[str, LayerResult] = field(default_factory=dict)
    open_gaps: int | None = None  # open dual-write gaps of the collection (None: not configured)


@dataclass
class RunReport:
    rules_version: str
    partition: str
    started: float
    entities: list[EntityReport] = field(default_factory=list)
    finished: float = 0.0
    error: str = ""
    source: str = "mongo"  # what the Mongo side was read from: the live server or a mongodump

    def exit_code(self, named: set[str]) -> int:
        if self.error:
            return 2
        if any(not e.verifiable and e.entity in named for e in self.entities):
            return 2
        if any(result.status == "error" for e in self.entities for result in e.layers.values()):
            return 2
        if any(result.status == "differences" for e in self.entities for result in e.layers.values()):
            return 1
        return 0

    def as_json(self, named: set[str]) -> dict[str, Any]:
        return {
            "format": REPORT_FORMAT, "version": REPORT_VERSION, "source": self.source,
            "rules_version": self.rules_version, "partition": self.partition,
            "started": self.started, "finished": self.finished, "exit": self.exit_code(named),
            "error": self.error or None,
            "entities": {e.entity: {
                "verifiable": e.verifiable, "reason": e.reason or None, "open_dualwrite_gaps": e.open_gaps,
                "layers": {name: {"status": r.status, "checked": r.checked, "seconds": round(r.seconds, 3),
                                  "error": r.error or None, "truncated": r.truncated,
                                  "checks": r.extra.get("checks", []),
                                  "differences": [d.as_json() for d in r.differences],
                                  **{k: v for k, v in r.extra.items() if k != "checks"}}
                           for name, r in e.layers.items()}} for e in self.entities}}

    def text(self) -> str:
        lines = [f"shadow verify — rules {self.rules_version}, partition {self.partition}"]
        lines.append(f"{'ENTITY':24} {'COUNTS':12} {'SUMS':12} {'DOCS':12} CHECKED")
        for e in self.entities:
            if not e.verifiable:
                lines.append(f"{e.entity:24} not verifiable: {e.reason}")
                continue
            cells = []
            for layer in LAYERS:
                result = e.layers.get(layer)
                cells.append("-" if result is None else result.status if result.status != "differences"
                             else f"{len(result.differences) + result.truncated} diff")
            docs = e.layers.get("docs")
            gaps = f"  ({e.open_gaps} open dual-write gaps)" if e.open_gaps else ""
            checked = docs.checked if docs else ""
            lines.append(f"{e.entity:24} {cells[0]:12} {cells[1]:12} {cells[2]:12} {checked}{gaps}")
        for e in self.entities:
            for result in e.layers.values():
                if result.error:
                    lines.append(f"  {e.entity} {result.layer}: cannot evaluate: {result.error}")
                for d in result.differences:
                    lines.extend(_difference_lines(e.entity, d))
                if result.truncated:
                    lines.append(f"  {e.entity} {result.layer}: {result.truncated} more difference(s) not shown")
        if self.error:
            lines.append(f"cannot evaluate: {self.error}")
        return "\n".join(lines)


def _difference_lines(entity: str, d: Difference) -> list[str]:
    where = " ".join(part for part in (d.key, d.path, json.dumps(d.group, default=str) if d.group else "") if part)
    note = f"  (explained: {d.explained}; still blocking)" if d.explained else ""
    if d.kind == "missing":
        found = "in Mongo, missing from PostgreSQL"
    elif d.kind == "extra":
        found = "in PostgreSQL, not in Mongo"
    else:
        found = f"mongo={json.dumps(d.mongo, default=str)} postgres={json.dumps(d.postgres, default=str)}"
    lines = [f"  {entity} {d.layer} {d.check} [{d.kind}]{' ' + where if where else ''}: {found}{note}"]
    if d.count is not None:
        lines.append(f"    {d.count} document(s){', e.g.:' if d.documents else ''}")
        for document in d.documents:
            lines.append("      " + " ".join(f"{name}={json.dumps(value, default=str)}" if name != "key" else str(value)
                                             for name, value in document.items()))
    return lines


def push(report: RunReport, url: str, timeout: float = 10.0) -> None:
    """Per entity and layer: clean (1/0), differences, checked, and the time of the last
    run; grouped by partition so the N slices of an Indexed Job do not overwrite each other."""
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

    registry = CollectorRegistry()
    labels = ("entity", "layer")
    clean = Gauge("shadow_verify_clean", "1 when the layer found no difference", labels, registry=registry)
    found = Gauge("shadow_verify_differences", "differences found by the layer", labels, registry=registry)
    checked = Gauge("shadow_verify_checked", "documents, groups or relationships checked", labels, registry=registry)
    last = Gauge("shadow_verify_last_run_timestamp_seconds", "when the layer last ran (Unix time)", labels,
                 registry=registry)
    evaluable = Gauge("shadow_verify_verifiable", "0 when the rules describe a view the stored document cannot produce",
                      ("entity",), registry=registry)
    gaps = Gauge("shadow_verify_open_dualwrite_gaps", "open dual-write gaps of the entity's collection",
                 ("entity",), registry=registry)
    for e in report.entities:
        evaluable.labels(e.entity).set(1 if e.verifiable else 0)
        if e.open_gaps is not None:
            gaps.labels(e.entity).set(e.open_gaps)
        for name, result in e.layers.items():
            if result.status == "error":
                continue  # no sample: the gate sees the layer as missing, never as clean
            clean.labels(e.entity, name).set(1 if result.status == "clean" else 0)
            found.labels(e.entity, name).set(len(result.differences) + result.truncated)
            checked.labels(e.entity, name).set(result.checked)
            last.labels(e.entity, name).set(report.finished or time.time())
    index, _, count = report.partition.partition("/")
    push_to_gateway(url, job="shadow_verify", registry=registry, timeout=timeout,
                    grouping_key={"partition": f"{index}-of-{count}"})
