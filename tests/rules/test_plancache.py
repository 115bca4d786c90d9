"""Compiled plans live beside the frozen rules, not on them: each owning layer keeps a
typed PlanCache; a plan is compiled once per entity, a reloaded entity gets its own, and
a dropped entity's plan goes with it. The rules layer imports no layer above it."""
from __future__ import annotations

import dataclasses
import gc
import subprocess
from pathlib import Path

import pytest

from shadow.compare.canonical import canonical_plan
from shadow.plancache import PlanCache
from shadow.replay.plans import compile_plans, load_compiled
from shadow.replay.rebuild import rebuild_plan
from shadow.replay.sources.postgres import fetch_plan
from shadow.rules import Entity, load_rules

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "rules" / "marketplace"


def test_each_plan_is_compiled_once_per_entity_and_anew_for_a_reloaded_one() -> None:
    first, second = load_rules(RULES), load_rules(RULES)
    for name, entity in first.entities.items():
        if entity.distinct is not None:
            continue
        again = second.entities[name]
        for plan_of in (canonical_plan, rebuild_plan, fetch_plan):
            assert plan_of(entity) is plan_of(entity)
            assert plan_of(again) is not plan_of(entity)


def test_a_dropped_entity_takes_its_plan_with_it() -> None:
    built: list[str] = []

    def build(entity: Entity) -> str:
        built.append(entity.name)
        return f"plan of {entity.name}"

    cache: PlanCache[str] = PlanCache(build)
    rules = load_rules(RULES)
    names = sorted(rules.entities)
    assert [cache.get(rules.entities[name]) for name in names] == [f"plan of {name}" for name in names]
    assert [cache.get(rules.entities[name]) for name in names] == [f"plan of {name}" for name in names]
    assert built == names and len(cache) == len(names)
    del rules
    gc.collect()
    assert len(cache) == 0


def test_the_entity_is_never_written_to() -> None:
    entity = next(iter(load_rules(RULES).entities.values()))
    assert not hasattr(entity, "plans")
    assert "plans" not in {f.name for f in dataclasses.fields(entity)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        entity.name = "other"  # type: ignore[misc]


def test_load_compiled_compiles_the_canonical_and_rebuild_plans() -> None:
    rules = load_compiled(RULES)
    assert compile_plans(rules) is rules
    entity = rules.entities["payments"]
    assert canonical_plan(entity) is canonical_plan(entity)


def test_the_rules_layer_imports_no_layer_above_it() -> None:
    found = subprocess.run(["grep", "-rnE", r"(from|import) shadow\.(compare|replay)",
                            str(ROOT / "shadow" / "rules")], capture_output=True, text=True)
    assert found.stdout == ""
