"""Gate criteria: rules/gate.yaml → frozen `GateCriteria`, validated once when the gate
(CLI or admin /gate) starts. Unknown keys are rejected; every problem is reported as
`file:line: message` naming the key and the bad value, all problems at once.

Format (one entity shown; `defaults` apply to every entity, an entity's keys override
them, a `routes` entry overrides the entity's for that route only):

    window: 7d                      # Prometheus duration: 30m, 24h, 7d, 1w, 1h30m
    block_on_alerts: [ShadowPersistentMismatch, ...]   # any of these firing in the window → NO-GO
    defaults: {min_comparisons: 1000, max_mismatches: 0, max_error_ratio: 0.001}
    entities:
      payments:
        min_comparisons: 500
        required_routes: ["GET /api/payments/{id}"]      # must each have comparisons
        routes:
          "GET /api/payments": {min_comparisons: 50}

Expired known divergences are always a NO-GO (no knob: an expiry is a promise).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from shadow.gate.layers import VerifyCriteria, parse_verify
from shadow.rules.issues import RuleIssue

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = re.compile(r"^(?:\d+(?:ms|s|m|h|d|w|y))+$")
_ALERT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# gaps: shadow verify reads them
TOP_KEYS = frozenset({"window", "block_on_alerts", "defaults", "entities", "dualwrite_gaps"})
THRESHOLD_KEYS = frozenset({"min_comparisons", "max_mismatches", "max_error_ratio"})
ENTITY_KEYS = THRESHOLD_KEYS | {"required_routes", "routes", "verify"}

#: used where neither `defaults` nor the entity says otherwise
DEFAULT_THRESHOLDS = {"min_comparisons": 1, "max_mismatches": 0, "max_error_ratio": 0.0}


#: one problem in the criteria file, `file:line: message` — the same shape as a rule file's
CriteriaIssue = RuleIssue


class CriteriaError(Exception):
    """The criteria file cannot be used; `issues` name file:line and the bad value."""

    def __init__(self, issues: list[CriteriaIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))


@dataclass(frozen=True, slots=True)
class RouteCriteria:
    """Thresholds for one route of an entity, checked on that route's own counts."""

    route: str
    min_comparisons: int
    max_mismatches: int
    max_error_ratio: float
    required: bool  # a hot path: no traffic in the window is a NO-GO


@dataclass(frozen=True, slots=True)
class EntityCriteria:
    """Thresholds for one entity (collection), checked on its totals over all routes."""

    entity: str
    min_comparisons: int
    max_mismatches: int  # persistent: outcomes mismatch + missing + extra
    max_error_ratio: float  # error / all comparisons
    routes: tuple[RouteCriteria, ...]  # required routes and per-route overrides
    line: int
    verify: VerifyCriteria | None = None  # shadow verify layers required (gate/layers.py)


@dataclass(frozen=True, slots=True)
class GateCriteria:
    """The whole criteria file, validated."""

    source: str
    window: str  # Prometheus duration, as written
    window_seconds: float
    block_on_alerts: tuple[str, ...]
    entities: tuple[EntityCriteria, ...]

    def with_window(self, window: str) -> GateCriteria:
        """The same criteria over another window (`--window`); ValueError if not a duration."""
        return replace(self, window=window, window_seconds=parse_duration(window))

    def only(self, entity: str) -> GateCriteria:
        """The criteria for one entity (`--entity`); KeyError naming the known ones."""
        chosen = tuple(e for e in self.entities if e.entity == entity)
        if not chosen:
            known = ", ".join(e.entity for e in self.entities)
            raise KeyError(f"entity {entity!r} is not in {self.source} (known: {known})")
        return replace(self, entities=chosen)


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration (`7d`, `1h30m`); ValueError naming the text."""
    if not isinstance(text, str) or not _DURATION.match(text):
        raise ValueError(f"{text!r} is not a Prometheus duration (e.g. 30m, 24h, 7d, 1h30m)")
    seconds = sum(int(n) * _UNITS[unit] for n, unit in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text))
    if seconds <= 0:
        raise ValueError(f"{text!r} is an empty window")
    return float(seconds)


def load_criteria(path: str | Path) -> GateCriteria:
    """Read and validate a criteria file. Raises CriteriaError with every issue found."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise CriteriaError([CriteriaIssue(str(path), 0, f"cannot read: {error.strerror or error}")]) from None
    return parse_criteria(text, str(path))


def parse_criteria(text: str, source: str = "<criteria>") -> GateCriteria:
    """Validate criteria YAML text; `source` names the file in error messages."""
    return _Reader(source).read(text)


class _Reader:
    """Walks the YAML node tree (which keeps line numbers) and collects issues."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.issues: list[CriteriaIssue] = []
        self._construct = yaml.constructor.SafeConstructor()

    def read(self, text: str) -> GateCriteria:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = mark.line + 1 if mark else 0
            raise CriteriaError([CriteriaIssue(self.source, line,
                                               f"not valid YAML: {getattr(error, 'problem', error)}")]) from None
        if root is None:
            raise CriteriaError([CriteriaIssue(self.source, 1, "empty file: expected `window` and `entities`")])
        top = self._mapping(root, "the file", TOP_KEYS)
        window, window_seconds = "7d", 7 * 86400.0
        if "window" in top:
            window_node = top["window"][1]
            window = str(self._value(window_node))
            try:
                window_seconds = parse_duration(self._value(window_node))
            except ValueError as error:
                self._issue(window_node, f"window: {error}")
        alerts = self._alerts(top["block_on_alerts"][1]) if "block_on_alerts" in top else ()
        defaults = dict(DEFAULT_THRESHOLDS)
        if "defaults" in top:
            fields = self._mapping(top["defaults"][1], "defaults", THRESHOLD_KEYS)
            defaults.update(self._thresholds(fields, "defaults", least_comparisons=1))
        entities: list[EntityCriteria] = []
        if "entities" not in top:
            self._issue(root, "missing key `entities`: the gate needs at least one entity")
        else:
            node = top["entities"][1]
            for name, (key_node, value_node) in self._mapping(node, "entities", None).items():
                entity = self._entity(name, key_node, value_node, defaults)
                if entity is not None:
                    entities.append(entity)
            if not entities and not self.issues:
                self._issue(node, "`entities` is empty: the gate needs at least one entity")
        if self.issues:
            raise CriteriaError(self.issues)
        return GateCriteria(self.source, window, window_seconds, alerts, tuple(entities))

    def _entity(self, name: str, key_node: yaml.Node, node: yaml.Node,
                defaults: dict[str, Any]) -> EntityCriteria | None:
        where = f"entities.{name}"
        fields = self._mapping(node, where, ENTITY_KEYS) if not _is_null(node) else {}
        thresholds = {**defaults, **self._thresholds(fields, where, least_comparisons=1)}
        required: list[str] = []
        if "required_routes" in fields:
            required = self._routes_list(fields["required_routes"][1], f"{where}.required_routes")
        overrides: dict[str, RouteCriteria] = {}
        if "routes" in fields:
            for route, (route_key, route_node) in self._mapping(fields["routes"][1], f"{where}.routes", None).items():
                route_where = f"{where}.routes[{route!r}]"
                self._check_route_name(route_key, route, route_where)
                own = self._thresholds(self._mapping(route_node, route_where, THRESHOLD_KEYS), route_where)
                overrides[route] = RouteCriteria(
                    route,
                    own.get("min_comparisons", 1 if route in required else 0),
                    own.get("max_mismatches", thresholds["max_mismatches"]),
                    own.get("max_error_ratio", thresholds["max_error_ratio"]),
                    route in required,
                )
        default = (thresholds["max_mismatches"], thresholds["max_error_ratio"])
        routes = [overrides.pop(r) if r in overrides else RouteCriteria(r, 1, *default, True) for r in required]
        routes.extend(overrides.values())
        verify = None
        if "verify" in fields:
            verify, problems = parse_verify(self._value(fields["verify"][1]), parse_duration)
            for problem in problems:
                self._issue(fields["verify"][1], f"{where}.{problem}")
        return EntityCriteria(
            name, thresholds["min_comparisons"], thresholds["max_mismatches"], thresholds["max_error_ratio"],
            tuple(routes), key_node.start_mark.line + 1, verify,
        )

    def _thresholds(self, fields: dict[str, tuple[yaml.Node, yaml.Node]], where: str,
                    least_comparisons: int = 0) -> dict[str, Any]:
        """`least_comparisons` is 1 for defaults and entities: the gate never says GO
        on an entity without samples, whatever the file says."""
        out: dict[str, Any] = {}
        for key, least in (("min_comparisons", least_comparisons), ("max_mismatches", 0)):
            if key in fields:
                value = self._value(fields[key][1])
                if isinstance(value, bool) or not isinstance(value, int) or value < least:
                    self._issue(fields[key][1], f"{where}.{key}: expected a whole number >= {least}, got {value!r}")
                else:
                    out[key] = value
        if "max_error_ratio" in fields:
            value = self._value(fields["max_error_ratio"][1])
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                self._issue(fields["max_error_ratio"][1],
                            f"{where}.max_error_ratio: expected a ratio between 0 and 1, got {value!r}")
            else:
                out["max_error_ratio"] = float(value)
        return out

    def _alerts(self, node: yaml.Node) -> tuple[str, ...]:
        names = self._value(node)
        if not isinstance(names, list):
            self._issue(node, f"block_on_alerts: expected a list of alert names, got {names!r}")
            return ()
        for item, name in zip(node.value, names, strict=True):
            if not isinstance(name, str) or not _ALERT_NAME.match(name):
                self._issue(item, f"block_on_alerts: {name!r} is not an alert name")
        return tuple(n for n in names if isinstance(n, str) and _ALERT_NAME.match(n))

    def _routes_list(self, node: yaml.Node, where: str) -> list[str]:
        routes = self._value(node)
        if not isinstance(routes, list):
            self._issue(node, f"{where}: expected a list of route names, got {routes!r}")
            return []
        out = []
        for item, route in zip(node.value, routes, strict=True):
            if self._check_route_name(item, route, where):
                out.append(route)
        return out

    def _check_route_name(self, node: yaml.Node, route: object, where: str) -> bool:
        # route names are the rules' names: "<METHOD> <path template>"
        if not isinstance(route, str) or not re.match(r"^[A-Z]+ /\S*$", route):
            self._issue(node, f"{where}: {route!r} is not a route name like 'GET /api/payments/{{id}}'")
            return False
        return True

    def _mapping(self, node: yaml.Node, where: str,
                 allowed: frozenset[str] | None) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """Keys of a mapping node → (key node, value node); unknown keys are issues."""
        if not isinstance(node, yaml.MappingNode):
            self._issue(node, f"{where}: expected a mapping, got {self._value(node)!r}")
            return {}
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = self._value(key_node)
            if not isinstance(key, str):
                self._issue(key_node, f"{where}: key {key!r} is not a string")
            elif allowed is not None and key not in allowed:
                self._issue(key_node, f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")
            elif key in out:
                self._issue(key_node, f"{where}: duplicate key {key!r}")
            else:
                out[key] = (key_node, value_node)
        return out

    def _value(self, node: yaml.Node) -> Any:
        return self._construct.construct_object(node, deep=True)

    def _issue(self, node: yaml.Node, message: str) -> None:
        self.issues.append(CriteriaIssue(self.source, node.start_mark.line + 1, message))


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"
