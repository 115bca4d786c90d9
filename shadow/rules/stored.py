"""`stored:` — what the API's serializer does to a stored Mongo document, so that a
document read straight from MongoDB (`shadow verify`, `shadow compare`, the mongo
source) becomes the API's shape without the API:

    stored:
      odm: mongoose                  # a preset: what the ODM's toJSON does (see below)
      version_key: __v               # dropped by toJSON (default __v; null keeps it)
      hidden: [password]             # fields toJSON deletes (added to the entity's `hidden`)
      defaults: {isEmailVerified: false, role: buyer}   # filled when absent (Mongoose defaults)
      rename: {_id: id}              # stored name -> API name
      unverifiable: "shows per-reader fields"            # the stored document cannot produce
                                                          # this view: verify reports it, not diffs

`odm: mongoose` is Mongoose's `toJSON()` without options: the version key `__v` is KEPT
(`version_key: null`), and every array field (`rows:`, at the top level or inside objects)
defaults to `[]` when absent (Mongoose gives array paths an empty array). Keys written
next to `odm` win over the preset (`version_key: __v` with `odm: mongoose` drops `__v`, a
`defaults:` entry replaces the array default). `odm: none` (the default) is the plain
behaviour above.

Parsed once at load into a frozen `StoredView` (sections.py); applying it is
`shadow.replay.sources.apijson`.
"""
from __future__ import annotations

from collections.abc import Iterable
from types import MappingProxyType
from typing import Any

from shadow.rules.reader import Reader, kind_of, show
from shadow.rules.sections import DEFAULT_VIEW, StoredView
from shadow.rules.spec import Field
from shadow.rules.yamltree import YList, YMap

STORED_KEYS = ("odm", "version_key", "hidden", "defaults", "rename", "unverifiable")
ODMS = ("none", "mongoose")


def array_paths(fields: Iterable[Field], prefix: str = "") -> list[str]:
    """API paths of the array fields (`rows:`), through objects: Mongoose's `[]` defaults."""
    found = []
    for spec in fields:
        if spec.kind == "rows":
            found.append(prefix + spec.name)
        elif spec.kind == "object":
            found.extend(array_paths(spec.fields, f"{prefix}{spec.name}."))
    return found


def parse_stored(reader: Reader, document: YMap, where: str, fields: Iterable[Field] = ()) -> StoredView:
    """The entity's `stored:` section (absent: drop `__v`, nothing else)."""
    if "stored" not in document:
        return DEFAULT_VIEW
    value, line = document["stored"], document.line_of("stored")
    if not isinstance(value, YMap):
        reader.error(line, f"{where}: 'stored' must be a mapping with {', '.join(STORED_KEYS)}; got {kind_of(value)}")
        return DEFAULT_VIEW
    here = f"{where} stored"
    reader.keys(value, STORED_KEYS, here)
    odm = "none"
    if "odm" in value:
        raw_odm = value["odm"]
        if raw_odm in ODMS:
            odm = str(raw_odm)
        else:
            reader.error(value.line_of("odm"), f"{here}: 'odm' must be one of {', '.join(ODMS)}, got {show(raw_odm)}")
    version_key: str | None = None if odm == "mongoose" else "__v"
    if "version_key" in value:
        raw = value["version_key"]
        if raw is None or raw is False:
            version_key = None
        elif isinstance(raw, str) and raw:
            version_key = raw
        else:
            reader.error(value.line_of("version_key"),
                         f"{here}: 'version_key' must be a field name or null, got {show(raw)}")
    defaults: dict[str, Any] = {path: [] for path in array_paths(fields)} if odm == "mongoose" else {}
    raw_defaults = value.get("defaults", YMap())
    if not isinstance(raw_defaults, YMap):
        reader.error(value.line_of("defaults"),
                     f"{here}: 'defaults' must map field -> value, got {kind_of(raw_defaults)}")
    else:
        for name, default in raw_defaults.items():
            if not isinstance(name, str) or not name or name.startswith("$"):
                reader.error(raw_defaults.line_of(name),
                             f"{here}: default field name must be a plain string, got {show(name)}")
                continue
            defaults[name] = plain_yaml(default)
    rename: dict[str, str] = {}
    raw_rename = value.get("rename", YMap())
    if not isinstance(raw_rename, YMap):
        reader.error(value.line_of("rename"),
                     f"{here}: 'rename' must map stored name -> API name, got {kind_of(raw_rename)}")
    else:
        for stored, api in raw_rename.items():
            if not isinstance(stored, str) or not isinstance(api, str) or not stored or not api:
                reader.error(raw_rename.line_of(stored),
                             f"{here}: rename {show(stored)}: {show(api)} must be two field names")
                continue
            if api in rename.values():
                reader.error(raw_rename.line_of(stored), f"{here}: two fields renamed to {api!r}")
                continue
            rename[stored] = api
    unverifiable = None
    if "unverifiable" in value:
        unverifiable = reader.string(value, "unverifiable", here)
    return StoredView(version_key, reader.strings(value, "hidden", here), MappingProxyType(defaults),
                      MappingProxyType(rename), unverifiable, odm)


def plain_yaml(value: Any) -> Any:
    """A YAML value as plain Python (YMap/YList -> dict/list), for defaults."""
    if isinstance(value, YMap):
        return {key: plain_yaml(item) for key, item in value.items()}
    if isinstance(value, YList):
        return [plain_yaml(item) for item in value]
    return value
