"""Rules loaded with their plans compiled: the canonical form (compare) and the row ->
document builder (replay) of every entity are built here, when a rule set is loaded or
reloaded off the request path, rather than on the first comparison. The rules layer
does not know these plans exist; each owning module keeps its own typed cache."""
from __future__ import annotations

from pathlib import Path

from shadow.compare.canonical import canonical_plan
from shadow.policy import RulesPolicy
from shadow.replay.rebuild import rebuild_plan
from shadow.rules.load import RuleSet
from shadow.rules.reload import default_loader


def compile_plans(rules: RuleSet) -> RuleSet:
    """Compile every entity's canonical and rebuild plans now; returns `rules`."""
    for entity in rules.entities.values():
        canonical_plan(entity)
        rebuild_plan(entity)
    return rules


def load_compiled(directory: Path, policy: RulesPolicy | None = None) -> RuleSet:
    """`default_loader` (the operator's RulesPolicy), then `compile_plans`."""
    rules: RuleSet = default_loader(directory, policy)
    return compile_plans(rules)
