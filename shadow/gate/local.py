"""The gate from this process's own counters: what the admin `/gate` answers.

Same criteria, same `decide()`, but the window is "since process start" (counters are
never reset in-process) and alerts are not known here, which the report says. Runs on
each GET /gate; reads the registry, does no other I/O.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

from shadow.gate.criteria import GateCriteria
from shadow.gate.report import to_json
from shadow.gate.verdict import GateReport, GateSamples, GateUnavailable, RouteSample, decide

_LOADED_AT = time.time()  # "process start" when the injected registry has no process collector


def evaluate_local(registry: CollectorRegistry, criteria: GateCriteria, *, now: float | None = None) -> GateReport:
    """GO / NO-GO from `registry`'s shadow counters since process start.

    Raises GateUnavailable if the registry has no shadow_comparisons_total at all (the
    sidecar's metrics are not in it) — never a GO on missing data."""
    routes: dict[tuple[str, str], dict[str, int]] = {}
    mismatch_fields: dict[str, dict[str, int]] = {}
    transient_fields: dict[str, dict[str, int]] = {}
    unverifiable: dict[str, dict[str, int]] = {}
    noisy_fields: dict[str, dict[str, int]] = {}
    unmodeled: dict[tuple[str, str], int] = {}
    expiries: dict[tuple[str, str], float] = {}
    declared = False
    started = None
    for family in registry.collect():
        if family.name == "shadow_comparisons":
            declared = True
        for sample in family.samples:
            labels, value = sample.labels, sample.value
            if sample.name == "shadow_comparisons_total":
                key = (labels.get("entity", ""), labels.get("route", ""))
                outcomes = routes.setdefault(key, {})
                outcomes[labels.get("outcome", "")] = outcomes.get(labels.get("outcome", ""), 0) + int(value)
            elif sample.name == "shadow_mismatch_fields_total" and value > 0:
                mismatch_fields.setdefault(labels.get("entity", ""), {})[labels.get("field", "")] = int(value)
            elif sample.name == "shadow_unverifiable_total" and value > 0:
                unverifiable.setdefault(labels.get("entity", ""), {})[labels.get("field", "")] = int(value)
            elif sample.name == "shadow_transient_fields_total" and value > 0:
                transient_fields.setdefault(labels.get("entity", ""), {})[labels.get("field", "")] = int(value)
            elif sample.name == "shadow_skipped_total" and labels.get("reason") == "unmodeled_query" and value > 0:
                unmodeled[(labels.get("entity", ""), labels.get("route", ""))] = int(value)
            elif sample.name == "shadow_noisy_fields_total" and value > 0:
                noisy_fields.setdefault(labels.get("entity", ""), {})[labels.get("field", "")] = int(value)
            elif sample.name == "shadow_known_divergence_expiry_timestamp_seconds":
                expiries[(labels.get("entity", ""), labels.get("field", ""))] = value
            elif sample.name == "process_start_time_seconds":
                started = value
    if not declared:
        raise GateUnavailable("shadow_comparisons_total is not in this process's registry: the shadow metrics are not "
                              "registered")
    # process_start_time_seconds of the injected registry (Metrics puts a process collector
    # on it); never the global registry, which belongs to whoever else runs in this process
    started = started if started is not None else _LOADED_AT
    samples = GateSamples(
        scope=f"local counters since process start ({datetime.fromtimestamp(started, UTC):%Y-%m-%dT%H:%M:%SZ})",
        window="since process start",
        evaluated_at=time.time() if now is None else now,
        routes=tuple(RouteSample(entity, route, outcomes) for (entity, route), outcomes in sorted(routes.items())),
        mismatch_fields=mismatch_fields,
        divergence_expiries=expiries,
        fired_alerts=None,
        transient_fields=transient_fields,
        unverifiable=unverifiable,
        noisy_fields=noisy_fields,
        unmodeled=unmodeled,
    )
    return decide(samples, criteria)


def gate_hook(registry: CollectorRegistry, criteria: GateCriteria) -> Callable[[], dict[str, Any]]:
    """What the admin /gate calls on each request: the local report as JSON, or
    `{"verdict": "CANNOT_EVALUATE", "error": ...}` — never a GO on missing data.
    Wire it with `sidecar.set_gate(gate_hook(sidecar.registry, load_criteria(path)))`."""

    def evaluate() -> dict[str, Any]:
        try:
            return to_json(evaluate_local(registry, criteria))
        except GateUnavailable as error:
            return {"verdict": "CANNOT_EVALUATE", "scope": "local counters since process start", "error": str(error)}

    return evaluate
