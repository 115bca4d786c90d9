"""The `widgets` rules the tests of several folders load: one factory instead of a pasted
copy per file. A widget is a row of `widgets` keyed by `legacy_object_id` (a string)."""
from __future__ import annotations

#: the document fields most tests map (the pipeline world's widget API serves them)
FULL_FIELDS = {"_id": "legacy_object_id", "name": "name", "price": "{column: price, as: decimal}",
               "apiToken": "api_token"}


def widget_rules(*routes: str, fields: dict[str, str] | None = None, extra: str = "") -> str:
    """The YAML of the `widgets` entity with these fields (default: only `_id`), any extra
    top-level lines (e.g. `redact: [apiToken]\\n`) and these routes, each a YAML list item
    (`"  - route: GET /w/{id}\\n    recheck: 0\\n"`); no routes gives a file ending in
    `routes:` for a test to append its own to."""
    fields = {"_id": "legacy_object_id"} if fields is None else fields
    return ("entity: widgets\ncollection: widgets\ntable: widgets\nkey_type: string\nfields:\n"
            + "".join(f"  {name}: {column}\n" for name, column in fields.items())
            + extra + "routes:\n" + "".join(routes))
