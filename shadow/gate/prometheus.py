"""Collect the gate's samples from a Prometheus server (HTTP API, instant queries at one
evaluation time over the criteria's window). The only module that talks to Prometheus.

Runs once per `shadow gate`; returns `GateSamples` or raises `GateUnavailable`
(unreachable, query refused, metric absent, alert rules not loaded) — the CLI turns that
into exit 2, because the gate never says GO on data it could not see.
"""
from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from shadow.gate.criteria import GateCriteria
from shadow.gate.layers import collect_layers
from shadow.gate.verdict import FiredAlert, GateSamples, GateUnavailable, RouteSample

COMPARISONS = "shadow_comparisons_total"
MISMATCH_FIELDS = "shadow_mismatch_fields_total"
TRANSIENT_FIELDS = "shadow_transient_fields_total"
NOISY_FIELDS = "shadow_noisy_fields_total"
EXPIRIES = "shadow_known_divergence_expiry_timestamp_seconds"


UNMODELED = 'shadow_skipped_total{reason="unmodeled_query"}'  # list reads not list-checked


def window_count(metric: str, window: str, by: str) -> str:
    """PromQL for how much a counter grew in the window, per `by` labels — exact where
    it can be, because the gate compares counts against thresholds like "0 mismatches".

    increase() extrapolates (8 reads can read 9) and misses the first value of a series
    born inside the window (a label set created and incremented between two scrapes
    starts at 1, not 0 — exactly a rare mismatch). So, per series:
      existed at the window's start, no reset:  last value - value at the start
      born inside the window, no reset:         last value (counters start at 0)
      reset inside the window (restart):        increase(), + the peak value if born
    After a restart the count is approximate and leans high (the peak stands in for the
    unknowable first value), so a mismatch is never hidden by a restart.
    """
    last = f"last_over_time({metric}[{window}])"
    start = f"{metric} offset {window}"
    reset = f"resets({metric}[{window}]) > 0"
    grown = f"increase({metric}[{window}])"
    peak = f"max_over_time({metric}[{window}])"
    return (
        f"sum by ({by}) ("
        f"(({last} - {start}) unless {reset})"
        f" or ({last} unless {start} unless {reset})"
        f" or ({grown} + ({peak} unless {start}))"
        f" or {grown}"
        f")"
    )


def collect(url: str, criteria: GateCriteria, *, now: float | None = None, timeout: float = 10.0) -> GateSamples:
    """Query Prometheus at `url` for everything `decide()` needs over criteria.window."""
    api = _Api(url.rstrip("/"), timeout, time.time() if now is None else now)
    window = criteria.window
    comparisons = api.query(window_count(COMPARISONS, window, "entity, route, outcome"))
    if not comparisons:
        raise GateUnavailable(
            f"{COMPARISONS} has no samples in Prometheus at {api.base} over {window}: "
            "is it scraping the sidecar's admin /metrics?"
        )
    routes: dict[tuple[str, str], dict[str, int]] = {}
    for labels, value in comparisons:
        outcomes = routes.setdefault((labels.get("entity", ""), labels.get("route", "")), {})
        outcomes[labels.get("outcome", "")] = outcomes.get(labels.get("outcome", ""), 0) + _count(value)
    fired: tuple[FiredAlert, ...] = ()
    if criteria.block_on_alerts:
        fired = _fired_alerts(api, criteria)
    return GateSamples(
        scope=f"Prometheus {api.base}",
        window=window,
        evaluated_at=api.at,
        routes=tuple(RouteSample(entity, route, outcomes) for (entity, route), outcomes in sorted(routes.items())),
        mismatch_fields=_by_entity_field(api.query(window_count(MISMATCH_FIELDS, window, "entity, field"))),
        transient_fields=_by_entity_field(api.query(window_count(TRANSIENT_FIELDS, window, "entity, field"))),
        unverifiable=_by_entity_field(api.query(window_count("shadow_unverifiable_total", window, "entity, field"))),
        noisy_fields=_by_entity_field(api.query(window_count(NOISY_FIELDS, window, "entity, field"))),
        unmodeled={(labels.get("entity", ""), labels.get("route", "")): _count(value)
                   for labels, value in api.query(window_count(UNMODELED, window, "entity, route")) if _count(value)},
        divergence_expiries={
            (labels.get("entity", ""), labels.get("field", "")): value
            for labels, value in api.query(f"max by (entity, field) ({EXPIRIES})")
        },
        fired_alerts=fired,
        verify=collect_layers(api.query) if any(e.verify for e in criteria.entities) else {},
    )


def _fired_alerts(api: _Api, criteria: GateCriteria) -> tuple[FiredAlert, ...]:
    loaded = {
        rule.get("name")
        for group in api.get("/api/v1/rules", {"type": "alert"}).get("groups", [])
        for rule in group.get("rules", [])
        if rule.get("type") == "alerting"
    }
    absent = [name for name in criteria.block_on_alerts if name not in loaded]
    if absent:
        raise GateUnavailable(
            f"alert rules not loaded in Prometheus at {api.base}: {', '.join(absent)} — load rules/alerts.yml "
            "(the chart's PrometheusRule) or remove them from block_on_alerts"
        )
    names = "|".join(criteria.block_on_alerts)
    firing = api.query(
        f'max by (alertname, entity, route, field, reason, instance) '
        f'(max_over_time(ALERTS{{alertstate="firing", alertname=~"{names}"}}[{criteria.window}]))'
    )
    return tuple(FiredAlert(labels.pop("alertname", "?"), labels) for labels,
                 _ in sorted(firing, key=lambda s: sorted(s[0].items())))


def _by_entity_field(samples: list[tuple[dict[str, str], float]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for labels, value in samples:
        if _count(value):
            out.setdefault(labels.get("entity", ""), {})[labels.get("field", "")] = _count(value)
    return out


def _count(value: float) -> int:
    """Exact counts are whole already; increase() (after a reset) extrapolates: round,
    but never round a real increase down to zero."""
    if not math.isfinite(value) or value <= 0:
        return 0
    return max(1, round(value))


class _Api:
    def __init__(self, base: str, timeout: float, at: float) -> None:
        self.base, self.timeout, self.at = base, timeout, at

    def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        """Instant vector query at self.at → [(labels, value)]."""
        data = self.get("/api/v1/query", {"query": promql, "time": f"{self.at:.3f}"})
        if data.get("resultType") != "vector":
            raise GateUnavailable(f"Prometheus at {self.base} answered {data.get('resultType')!r} for {promql!r}, "
                                  "expected a vector")
        return [(dict(item["metric"]), float(item["value"][1])) for item in data["result"]]

    def get(self, path: str, params: dict[str, str]) -> Any:
        request_url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(request_url, timeout=self.timeout) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            body = _error_body(error)
            if body is None:
                raise GateUnavailable(f"Prometheus at {self.base} answered HTTP {error.code} for {path}") from None
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise GateUnavailable(f"cannot reach Prometheus at {self.base}: {reason}") from None
        if body.get("status") != "success":
            raise GateUnavailable(f"Prometheus at {self.base} refused {params.get('query', path)!r}: "
                                  f"{body.get('error')}")
        return body["data"]


def _error_body(error: urllib.error.HTTPError) -> dict[str, Any] | None:
    try:
        body = json.load(error)
    except (ValueError, OSError):
        return None
    finally:
        error.close()
    return body if isinstance(body, dict) else None
