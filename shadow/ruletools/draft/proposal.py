"""The frozen values between the stages of `shadow rules draft`: what was learned from
the stores (`Probes`), and what is proposed (`FieldProposal`, `EntityProposal`,
`Draft`). Every proposal carries its confidence (0..1) and a one-line reason; emit.py
writes both as YAML comments. Nothing here holds a value read from a sample."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True, slots=True)
class KeyHit:
    """Sampled `_id`s of a collection found in a table's column."""

    table: str
    column: str
    hits: int
    probed: int


@dataclass(frozen=True, slots=True)
class Probes:
    """Lookups in PostgreSQL keyed by sampled ids (the ids themselves are not kept here).

    key_hits        collection -> tables whose unique text column holds its sampled _ids
    ref_collections (collection, path) -> the id_map collection the sampled ObjectIds at
                    that path belong to
    """

    key_hits: Mapping[str, tuple[KeyHit, ...]] = field(default_factory=lambda: MappingProxyType({}))
    ref_collections: Mapping[tuple[str, str], str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class FieldProposal:
    """One API field and how it is rebuilt, in the rule format's terms (fieldspec.py).

    kind   column | ref | mixed | object | json | rows | child
    """

    name: str
    kind: str
    confidence: float
    reason: str
    column: str | None = None
    to: str | None = None
    table: str | None = None
    fk: str | None = None
    order_by: str | None = None
    unordered: bool = False
    transforms: tuple[str | tuple[str, Any], ...] = ()  # `as:` names (or (name, argument) from the catalog)
    fields: tuple[FieldProposal, ...] = ()
    value: FieldProposal | None = None
    json_paths: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Default:
    """A `stored: defaults:` entry: the value is the column's DEFAULT (the catalog), never a sample's."""

    path: str
    value: Any
    reason: str


@dataclass(frozen=True, slots=True)
class RouteProposal:
    method: str
    template: str
    confidence: float
    reason: str
    is_list: bool = False
    at: str | None = None
    key: str | None = None  # None: the default (`{id}`); "body" for the document's id
    where: tuple[tuple[str, str, str], ...] = ()  # (column, path param, id_map collection)
    complete: bool = False


@dataclass(frozen=True, slots=True)
class EntityProposal:
    name: str
    collection: str
    table: str
    confidence: float
    reason: str
    key: str = "legacy_object_id"
    fields: tuple[FieldProposal, ...] = ()
    version_key: str | None = None
    version_reason: str = ""
    defaults: tuple[Default, ...] = ()
    routes: tuple[RouteProposal, ...] = ()
    unverifiable: tuple[tuple[str, str], ...] = ()  # (API path, reason)
    todos: tuple[str, ...] = ()
    view: bool = False  # a view model seen in recorded answers (documents keyed by `id`)
    key_type: str = "objectid"  # string when the sampled _ids are strings
    set_candidates: tuple[str, ...] = ()  # `verify: sets:` items from unique indexes, written as comments
    id_field: str = "_id"


@dataclass(frozen=True, slots=True)
class Draft:
    entities: tuple[EntityProposal, ...]
    todos: tuple[str, ...] = ()  # what belongs to no entity: collections and tables left unmatched
