"""The gate's view of `shadow verify` (layers 1, 2 and 3b): per entity, which layers
must be clean, how old the last clean run may be, and how many differences are
tolerated (default 0). In the criteria file, per entity:

    entities:
      payments:
        verify: {max_age: 1d, layers: [counts, sums, docs], max_differences: 0}

The results come from the Pushgateway series `shadow verify --push` writes, as scraped
by Prometheus. A missing, stale or failed layer is a NO-GO reason, never a GO."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LAYERS = ("counts", "sums", "docs")
GAPS = "dualwrite_gaps"  # not a layer: open dual-write gaps, reported beside the layers
VERIFY_KEYS = frozenset({"max_age", "layers", "max_differences"})


@dataclass(frozen=True, slots=True)
class VerifyCriteria:
    max_age_seconds: float
    max_age: str
    layers: tuple[str, ...]
    max_differences: int = 0


@dataclass(frozen=True, slots=True)
class LayerSample:
    """One entity's layer across all pushed partitions: the oldest last run, the sum of
    differences, and whether every partition was clean."""

    last_run: float
    differences: int
    clean: bool


def parse_verify(value: Any, parse_duration: Any) -> tuple[VerifyCriteria | None, list[str]]:
    """The entity's `verify:` value (already plain YAML) -> criteria and problems."""
    if not isinstance(value, dict):
        return None, [f"verify must be {{max_age, layers, max_differences}}, got {type(value).__name__}"]
    problems = [f"verify: unknown key {key!r} (expected {', '.join(sorted(VERIFY_KEYS))})"
                for key in value if key not in VERIFY_KEYS]
    max_age = value.get("max_age", "1d")
    try:
        seconds = parse_duration(max_age)
    except ValueError as error:
        problems.append(f"verify.max_age: {error}")
        seconds = 0.0
    layers = value.get("layers", list(LAYERS))
    if not isinstance(layers, list) or not layers or any(layer not in LAYERS for layer in layers):
        problems.append(f"verify.layers must be a non-empty list of {', '.join(LAYERS)}, got {layers!r:.60}")
        layers = list(LAYERS)
    tolerance = value.get("max_differences", 0)
    if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance < 0:
        problems.append(f"verify.max_differences must be an integer >= 0, got {tolerance!r:.40}")
        tolerance = 0
    return VerifyCriteria(seconds, str(max_age), tuple(dict.fromkeys(layers)), tolerance), problems


def layer_reasons(entity: str, criteria: VerifyCriteria | None, samples: Mapping[tuple[str, str], LayerSample],
                  now: float) -> tuple[list[str], dict[str, str]]:
    """NO-GO reasons and a per-layer cell (clean / N diff / stale / missing / -)."""
    cells = {layer: "-" for layer in LAYERS}
    gaps = samples.get((entity, GAPS))
    if gaps is not None:
        cells[GAPS] = f"{gaps.differences} open"
    if criteria is None:
        return [], cells
    reasons = []
    for layer in criteria.layers:
        sample = samples.get((entity, layer))
        if sample is None:
            cells[layer] = "missing"
            reasons.append(f"{entity}: verify {layer}: no result (shadow verify --push has not reported it)")
            continue
        age = now - sample.last_run
        if sample.differences > criteria.max_differences or (not sample.clean and criteria.max_differences == 0):
            cells[layer] = f"{sample.differences} diff"
            reasons.append(f"{entity}: verify {layer}: {sample.differences} difference(s) > max "
                           f"{criteria.max_differences}")
        elif age > criteria.max_age_seconds:
            cells[layer] = "stale"
            reasons.append(f"{entity}: verify {layer}: last run {age / 3600:.1f}h ago > max_age {criteria.max_age}")
        else:
            cells[layer] = "clean"
    return reasons, cells


def collect_layers(query: Any) -> dict[tuple[str, str], LayerSample]:
    """The verify series in Prometheus (as scraped from the Pushgateway)."""
    runs = {(labels.get("entity", ""), labels.get("layer", "")): value for labels, value in
            query("min by (entity, layer) (shadow_verify_last_run_timestamp_seconds)")}
    found = {(labels.get("entity", ""), labels.get("layer", "")): value for labels, value in
             query("sum by (entity, layer) (shadow_verify_differences)")}
    clean = {(labels.get("entity", ""), labels.get("layer", "")): value for labels, value in
             query("min by (entity, layer) (shadow_verify_clean)")}
    samples = {key: LayerSample(at, int(found.get(key, 0)), clean.get(key, 0) >= 1) for key, at in runs.items()}
    for labels, value in query("max by (entity) (shadow_verify_open_dualwrite_gaps)"):
        samples[(labels.get("entity", ""), GAPS)] = LayerSample(0.0, int(value), value == 0)
    return samples
