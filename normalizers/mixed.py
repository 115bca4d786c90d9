"""Mixed references: a Mongoose `Mixed` id is an ObjectId *or* a free string; PostgreSQL
stores it as three columns `<x>_ref_kind` (entity|template), `<x>_id` (uuid FK) and
`<x>_external_ref` (text), with a CHECK that they agree.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def resolve(kind: Any, new_id: Any, external_ref: Any, legacy_of: Mapping[str, str]) -> Any:
    """The one value the API shows for a mixed reference.

    entity -> the legacy ObjectId of `new_id` (through id_map); template -> the external
    string; no kind and no columns -> None. Columns that disagree with their
    discriminator give a descriptive string, so the comparison reports a mismatch on
    that field instead of crashing the batch."""
    kind = None if kind is None else str(kind)
    if kind is None and new_id is None and external_ref is None:
        return None
    if kind == "entity" and external_ref is None and new_id is not None:
        legacy = legacy_of.get(str(new_id))
        return legacy if legacy is not None else f"<unmapped uuid {new_id}>"
    if kind == "template" and new_id is None and external_ref is not None:
        return external_ref
    return f"<mixed ref disagrees: kind={kind}, id={new_id}, external_ref={external_ref!r}>"
