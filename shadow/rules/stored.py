"""`stored:` — what the API's serializer does to a stored Mongo document, so that a
document read straight from MongoDB (`shadow verify`, `shadow compare`, the mongo
source) becomes the API's shape without the API:

    stored:
      version_key: __v               # dropped by toJSON (default __v; null keeps it)
      hidden: [password]             # fields toJSON deletes (added to the entity's `hidden`)
      defaults: {isEmailVerified: false, role: buyer}   # filled when absent (Mongoose defaults)
      rename: {_id: id}              # stored name -> API name
      unverifiable: "shows per-reader fields"            # the stored document cannot produce
                                                          # this view: verify reports it, not diffs

Parsed once at load into a frozen `StoredView`; applying it is `shadow.replay.sources.apijson`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from shadow.rules.yamltree import YList, YMap

if TYPE_CHECKING:  # reader -> spec -> this module: the parser imports reader when it runs
    from shadow.rules.reader import Reader

STORED_KEYS = ("version_key", "hidden", "defaults", "rename", "unverifiable")


@dataclass(frozen=True, slots=True)
class StoredView:
    """Stored Mongo document -> API document (see the module docstring)."""

    version_key: str | None = "__v"
    hidden: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    rename: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    unverifiable: str | None = None

    def stored_name(self, api_name: str) -> str:
        """The stored field an API top-level field comes from (renames undone)."""
        for stored, api in self.rename.items():
            if api == api_name:
                return stored
        return api_name


DEFAULT_VIEW = StoredView()


def parse_stored(reader: Reader, document: YMap, where: str) -> StoredView:
    """The entity's `stored:` section (absent: drop `__v`, nothing else)."""
    from shadow.rules.reader import kind_of, show

    if "stored" not in document:
        return DEFAULT_VIEW
    value, line = document["stored"], document.line_of("stored")
    if not isinstance(value, YMap):
        reader.error(line, f"{where}: 'stored' must be a mapping with {', '.join(STORED_KEYS)}; got {kind_of(value)}")
        return DEFAULT_VIEW
    here = f"{where} stored"
    reader.keys(value, STORED_KEYS, here)
    version_key: str | None = "__v"
    if "version_key" in value:
        raw = value["version_key"]
        if raw is None or raw is False:
            version_key = None
        elif isinstance(raw, str) and raw:
            version_key = raw
        else:
            reader.error(value.line_of("version_key"),
                         f"{here}: 'version_key' must be a field name or null, got {show(raw)}")
    defaults: dict[str, Any] = {}
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
                      MappingProxyType(rename), unverifiable)


def plain_yaml(value: Any) -> Any:
    """A YAML value as plain Python (YMap/YList -> dict/list), for defaults."""
    if isinstance(value, YMap):
        return {key: plain_yaml(item) for key, item in value.items()}
    if isinstance(value, YList):
        return [plain_yaml(item) for item in value]
    return value
