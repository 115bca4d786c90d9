"""What a verify run finds: frozen differences and per-layer results (pure data)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Layer = Literal["counts", "sums", "docs"]
LAYERS: tuple[Layer, ...] = ("counts", "sums", "docs")
Status = Literal["clean", "differences", "error", "skipped"]


@dataclass(frozen=True, slots=True)
class Difference:
    """One thing the two stores disagree on.

    layer   counts | sums | docs
    check   what was checked: `count`, `rows.offers`, `refs.buyerId`, `sums.amount_by_type`,
            `sets.pending_idempotency`, or `document`
    kind    count | dangling_in_mongo | dangling_in_postgres | sum | cross_check |
            missing_in_postgres | extra_in_postgres | missing | extra | mismatch
    key     the legacy id (docs layer; "" elsewhere)
    group   sums: the group, API path -> value (null is null, not "None"); sets: the member
    path    the API field path, exactly as the proxy reports it (docs mismatches)
    count   counts: the exact number of documents concerned (`documents` is a sample)
    documents  counts: up to SAMPLE named documents, {key, path?, mongo?, postgres?, ref?}
    """

    layer: Layer
    check: str
    kind: str
    key: str = ""
    path: str = ""
    mongo: Any = None
    postgres: Any = None
    explained: str = ""
    group: Mapping[str, Any] | None = None
    count: int | None = None
    documents: tuple[Mapping[str, Any], ...] = ()

    def as_json(self) -> dict[str, Any]:
        found = {"layer": self.layer, "check": self.check, "kind": self.kind, "key": self.key,
                 "path": self.path, "mongo": self.mongo, "postgres": self.postgres}
        if self.explained:
            found["explained"] = self.explained
        if self.group is not None:
            found["group"] = dict(self.group)
        if self.count is not None:
            found["count"] = self.count
            found["documents"] = [dict(document) for document in self.documents]
        return found


@dataclass(frozen=True, slots=True)
class LayerResult:
    layer: Layer
    status: Status
    checked: int = 0  # documents, groups or relationships looked at
    differences: tuple[Difference, ...] = ()
    truncated: int = 0  # differences found beyond the report cap
    error: str = ""
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # bucket digests, skipped buckets


MAX_REPORTED = 1000  # differences kept per layer and entity; the rest are counted


def layer_result(layer: Layer, differences: list[Difference], checked: int, seconds: float,
                 dropped: int = 0, **extra: Any) -> LayerResult:
    status: Status = "differences" if differences or dropped else "clean"
    return LayerResult(layer, status, checked, tuple(differences[:MAX_REPORTED]),
                       dropped + max(0, len(differences) - MAX_REPORTED), seconds=seconds, extra=extra)
