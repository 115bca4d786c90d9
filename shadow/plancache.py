"""Compiled per-entity plans, kept beside the frozen rules instead of on them.

Each layer that compiles something from an entity's field specs (compare: the
canonical form; replay: the row -> document builder; the PostgreSQL source: its
queries) owns one typed `PlanCache` and builds its plan on first use. The rules layer
knows nothing of these plans; an `Entity` is never written to. Entries are keyed by the
entity's identity and dropped when the entity is (a reloaded rule set compiles anew)."""
from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from shadow.rules.spec import Entity

Plan = TypeVar("Plan")


class PlanCache(Generic[Plan]):
    """One plan per live entity, compiled by `build` on first `get`. Thread-safe in the
    sense that matters here: a race compiles the same (pure) plan twice, never a torn one."""

    __slots__ = ("_build", "_plans")

    def __init__(self, build: Callable[[Entity], Plan]) -> None:
        self._build = build
        self._plans: dict[int, tuple[weakref.ref[Entity], Plan]] = {}

    def get(self, entity: Entity) -> Plan:
        hit = self._plans.get(id(entity))
        if hit is not None and hit[0]() is entity:
            return hit[1]
        plan = self._build(entity)
        key = id(entity)
        self._plans[key] = (weakref.ref(entity, lambda _gone: self._plans.pop(key, None)), plan)
        return plan

    def __len__(self) -> int:
        return len(self._plans)
