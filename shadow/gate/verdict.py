"""The gate decision, pure: counts over a window (`GateSamples`) + `GateCriteria` →
`GateReport`, one row per entity and route, GO only when every check passes, and a
reason for each NO-GO that names the entity, the route and the differing fields.

Runs after prometheus.py or local.py has collected the samples; does no I/O.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shadow.gate.criteria import EntityCriteria, GateCriteria, RouteCriteria
from shadow.gate.layers import LayerSample, layer_reasons

PERSISTENT = ("mismatch", "missing", "extra")
OUTCOMES = ("match", "mismatch", "transient", "unstable", "missing", "extra", "error")
#: noisy paths shown per entity (the control differed from itself there: suggest `ignore`)
TOP_NOISY = 5
TOP_FIELDS = 3


class GateUnavailable(Exception):
    """The gate cannot evaluate (no Prometheus, metric absent, alert rules not loaded):
    the message says what is missing and where. Never a GO."""


@dataclass(frozen=True, slots=True)
class RouteSample:
    """Comparisons of one entity on one route in the window, by outcome."""

    entity: str
    route: str
    outcomes: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class FiredAlert:
    alertname: str
    labels: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class GateSamples:
    """Everything the decision needs, already counted over the window."""

    scope: str  # where the counts come from, shown on every report
    window: str  # "7d", or "since process start"
    evaluated_at: float  # unix seconds the counts end at; expiries are judged against it
    routes: tuple[RouteSample, ...]
    mismatch_fields: Mapping[str, Mapping[str, int]]  # entity -> field -> persistent count
    divergence_expiries: Mapping[tuple[str, str], float]  # (entity, field) -> expiry, unix s
    fired_alerts: tuple[FiredAlert, ...] | None  # None: alerts not known in this scope
    transient_fields: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    verify: Mapping[tuple[str, str], LayerSample] = field(default_factory=dict)  # (entity, layer)
    unverifiable: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # entity -> path -> reads
    noisy_fields: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # entity -> path -> count
    #: (entity, route) -> list reads not list-checked (a query parameter the route does not model)
    unmodeled: Mapping[tuple[str, str], int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RouteRow:
    """One line of the table. route == ALL_ROUTES for an entity's totals."""

    entity: str
    route: str
    comparisons: int
    persistent: int  # mismatch + missing + extra
    transient: int
    errors: int
    outcomes: Mapping[str, int]
    top_fields: tuple[tuple[str, int], ...]  # entity-wide persistent fields (metric has no route)
    reasons: tuple[str, ...]  # why this row is NO-GO; empty = GO
    unstable: int = 0  # the control kept changing: no verdict (shown, never blocking)

    @property
    def go(self) -> bool:
        return not self.reasons

    @property
    def unstable_share(self) -> float:
        return self.unstable / self.comparisons if self.comparisons else 0.0

    @property
    def error_ratio(self) -> float:
        return self.errors / self.comparisons if self.comparisons else 0.0


ALL_ROUTES = "(all routes)"


@dataclass(frozen=True, slots=True)
class EntityVerdict:
    entity: str
    total: RouteRow  # entity-level checks' reasons live here
    routes: tuple[RouteRow, ...]
    layers: Mapping[str, str] = field(default_factory=dict)  # verify layer -> cell (gate/layers.py)
    noisy: tuple[tuple[str, int], ...] = ()  # noisiest paths: candidates for `ignore` (never blocking)

    @property
    def reasons(self) -> tuple[str, ...]:
        return self.total.reasons + tuple(r for row in self.routes for r in row.reasons)

    @property
    def go(self) -> bool:
        return not self.reasons


@dataclass(frozen=True, slots=True)
class GateReport:
    scope: str
    window: str
    evaluated_at: float
    entities: tuple[EntityVerdict, ...]
    notes: tuple[str, ...] = ()  # caveats of the scope (e.g. alerts not evaluated)

    @property
    def go(self) -> bool:
        return bool(self.entities) and all(e.go for e in self.entities)

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(r for e in self.entities for r in e.reasons)

    @property
    def exit_code(self) -> int:
        return 0 if self.go else 1


def decide(samples: GateSamples, criteria: GateCriteria) -> GateReport:
    """GO / NO-GO for every entity of the criteria; never GO without samples."""
    entities = tuple(_entity_verdict(samples, c) for c in criteria.entities)
    notes: tuple[str, ...] = () if samples.fired_alerts is not None \
        else ("alerts not evaluated in this scope (no Prometheus)",)
    notes += tuple(f"{entity}: not verified (declared unverifiable): "
                   + ", ".join(f"{path} x{n}" for path, n in sorted(paths.items()))
                   for entity, paths in sorted(samples.unverifiable.items()) if paths)
    notes += tuple(f"{entity} {route}: {count} list read(s) not list-checked (a query parameter the route "
                   "does not model; its members were compared)"
                   for (entity, route), count in sorted(samples.unmodeled.items()) if count)
    return GateReport(samples.scope, samples.window, samples.evaluated_at, entities, notes)


def _entity_verdict(samples: GateSamples, criteria: EntityCriteria) -> EntityVerdict:
    name = criteria.entity
    fields = _top(samples.mismatch_fields.get(name, {}))
    by_route = {s.route: s.outcomes for s in samples.routes if s.entity == name}
    route_criteria = {r.route: r for r in criteria.routes}
    rows = []
    for route in sorted(set(by_route) | set(route_criteria)):
        outcomes = by_route.get(route, {})
        rows.append(_row(name, route, outcomes, fields,
                         _route_reasons(samples.window, outcomes, fields, criteria, route_criteria.get(route))))
    totals: dict[str, int] = {}
    for outcomes in by_route.values():
        for outcome, count in outcomes.items():
            totals[outcome] = totals.get(outcome, 0) + count
    reasons = _entity_reasons(samples, criteria, totals, fields, route_mismatch_reported=any(
        _persistent(row.outcomes) for row in rows if row.reasons))
    verify_reasons, cells = layer_reasons(name, criteria.verify, samples.verify, samples.evaluated_at)
    reasons = [*reasons, *verify_reasons]
    noisy = tuple(sorted(((f, n) for f, n in samples.noisy_fields.get(name, {}).items() if n > 0),
                         key=lambda item: (-item[1], item[0]))[:TOP_NOISY])
    return EntityVerdict(name, _row(name, ALL_ROUTES, totals, fields, tuple(reasons)), tuple(rows), cells, noisy)


def _route_reasons(window: str, outcomes: Mapping[str, int], fields: tuple[tuple[str, int], ...],
                   entity: EntityCriteria, route: RouteCriteria | None) -> tuple[str, ...]:
    reasons = []
    comparisons = sum(outcomes.values())
    persistent = _persistent(outcomes)
    max_mismatches = route.max_mismatches if route else entity.max_mismatches
    max_error_ratio = route.max_error_ratio if route else entity.max_error_ratio
    if route and comparisons < route.min_comparisons:
        what = "required route" if route.required else "route"
        if comparisons == 0:
            reasons.append(f"no comparisons on {what} {_during(window)} (no samples)")
        else:
            reasons.append(f"{comparisons} comparisons on {what} {_during(window)}, need >= {route.min_comparisons}")
    if persistent > max_mismatches:
        detail = ", ".join(f"{outcomes[o]} {o}" for o in PERSISTENT if outcomes.get(o))
        reasons.append(f"{_mismatches(persistent)} ({detail}) > max {max_mismatches}; fields: {_fields_text(fields)}")
    errors = outcomes.get("error", 0)
    if comparisons and errors / comparisons > max_error_ratio:
        reasons.append(f"error ratio {errors / comparisons:.2%} ({errors}/{comparisons}) > max {max_error_ratio:.2%}")
    return tuple(reasons)


def _entity_reasons(samples: GateSamples, criteria: EntityCriteria, totals: Mapping[str, int],
                    fields: tuple[tuple[str, int], ...], route_mismatch_reported: bool) -> list[str]:
    reasons = []
    comparisons = sum(totals.values())
    if comparisons < criteria.min_comparisons:
        if comparisons == 0:
            reasons.append(f"no comparisons {_during(samples.window)} (no samples; need >= {criteria.min_comparisons})")
        else:
            reasons.append(f"{comparisons} comparisons {_during(samples.window)}, need >= {criteria.min_comparisons}")
    persistent = _persistent(totals)
    if persistent > criteria.max_mismatches and not route_mismatch_reported:
        reasons.append(f"{_mismatches(persistent)} > max {criteria.max_mismatches}; fields: {_fields_text(fields)}")
    errors = totals.get("error", 0)
    if comparisons and errors / comparisons > criteria.max_error_ratio:
        reasons.append(f"error ratio {errors / comparisons:.2%} ({errors}/{comparisons}) > max "
                       f"{criteria.max_error_ratio:.2%}")
    for (entity, field_path), expiry in sorted(samples.divergence_expiries.items()):
        if entity == criteria.entity and expiry < samples.evaluated_at:
            reasons.append(f"known divergence on field {field_path} expired {_iso(expiry)}")
    for alert in samples.fired_alerts or ():
        if alert.labels.get("entity", criteria.entity) == criteria.entity:
            where = " ".join(f"{k}={alert.labels[k]}" for k in ("route", "field", "reason",
                                                                "instance") if alert.labels.get(k))
            reasons.append(f"alert {alert.alertname} fired in {samples.window}" + (f" ({where})" if where else ""))
    return reasons


def _row(entity: str, route: str, outcomes: Mapping[str, int], fields: tuple[tuple[str, int], ...],
         reasons: tuple[str, ...]) -> RouteRow:
    return RouteRow(
        entity, route, sum(outcomes.values()), _persistent(outcomes), outcomes.get("transient", 0),
        outcomes.get("error", 0), dict(outcomes), fields if _persistent(outcomes) or route == ALL_ROUTES else (),
        reasons,
        outcomes.get("unstable", 0),
    )


def _mismatches(count: int) -> str:
    return f"{count} persistent mismatch{'' if count == 1 else 'es'}"


def _during(window: str) -> str:
    return window if window.startswith("since") else f"in {window}"


def _persistent(outcomes: Mapping[str, int]) -> int:
    return sum(outcomes.get(o, 0) for o in PERSISTENT)


def _top(counts: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    ranked = sorted(((f, n) for f, n in counts.items() if n > 0), key=lambda item: (-item[1], item[0]))
    return tuple(ranked[:TOP_FIELDS])


def _fields_text(fields: tuple[tuple[str, int], ...]) -> str:
    return ", ".join(f"{f} x{n}" for f, n in fields) if fields else "(none recorded)"


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
