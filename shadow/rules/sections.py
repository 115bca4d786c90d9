"""The frozen types of an entity's `stored:`, `verify:` and `redaction:` sections.

The rule types (spec.py) name these; their parsers (stored.py, checks.py,
redaction.py) build them with the located-YAML reader. Kept below both, importing
nothing of the package, so that the types and the parsers don't import each other.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True, slots=True)
class StoredView:
    """Stored Mongo document -> API document (the `stored:` section; stored.py)."""

    version_key: str | None = "__v"
    hidden: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    rename: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    unverifiable: str | None = None
    odm: str = "none"

    def stored_name(self, api_name: str) -> str:
        """The stored field an API top-level field comes from (renames undone)."""
        for stored, api in self.rename.items():
            if api == api_name:
                return stored
        return api_name


DEFAULT_VIEW = StoredView()


@dataclass(frozen=True, slots=True)
class Column:
    """An API field (dotted path) and the PostgreSQL column of the main row it comes from;
    `to` for a reference (`ref:`): the column is a uuid FK shown as the legacy id of `to`."""

    path: str
    column: str
    to: str | None = None


@dataclass(frozen=True, slots=True)
class SumCheck:
    name: str
    value: Column
    by: tuple[Column, ...]


@dataclass(frozen=True, slots=True)
class SetCheck:
    name: str
    of: tuple[Column, ...]
    where: tuple[tuple[Column, Any], ...]


@dataclass(frozen=True, slots=True)
class Checks:
    """What `shadow verify` checks beyond documents (the `verify:` section; checks.py)."""

    keep_mongo: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    keep_postgres: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    sums: tuple[SumCheck, ...] = ()
    sets: tuple[SetCheck, ...] = ()


NO_CHECKS = Checks()


@dataclass(frozen=True, slots=True)
class RedactionRules:
    """An entity's `redaction:` section, as written (patterns checked, not compiled;
    redaction.py)."""

    names: tuple[str, ...] = ()
    pii: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    show: tuple[str, ...] = ()
    show_patterns: tuple[str, ...] = ()
    show_pii: bool = False


NO_REDACTION_RULES = RedactionRules()
