"""Rule loading: YAML rule files -> a frozen RuleSet (entities, routes, matching)."""
from shadow.rules.issues import RuleIssue, RulesError
from shadow.rules.load import RuleSet, load_rules
from shadow.rules.spec import (
                               Entity,
                               Field,
                               InvalidKey,
                               KeySource,
                               KnownDivergence,
                               ListFilter,
                               Route,
                               RouteMatch,
)

__all__ = ["Entity", "Field", "InvalidKey", "KeySource", "KnownDivergence", "ListFilter", "Route",
           "RouteMatch", "RuleIssue", "RuleSet", "RulesError", "load_rules"]
