"""A `Draft` as rule files: one `<entity>.yaml` per entity, each proposal followed by
its confidence and reason as a comment, the entity's TODO list at the top; the TODOs
of no entity (collections and tables left unmatched) in `TODO.txt`. Runs last; every
name is quoted where YAML would misread it, every comment is one printable line."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from shadow.ruletools.draft.proposal import Draft, EntityProposal, FieldProposal, RouteProposal

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: words YAML 1.1 reads as booleans or null when unquoted
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}
COMMENT_CHARS = 240


def quote(text: str) -> str:
    """A scalar YAML reads back as exactly `text` (a JSON string is a YAML double-quoted one)."""
    if _PLAIN.match(text) and text.lower() not in _RESERVED:
        return text
    return json.dumps(text)


def scalar(value: Any) -> str:
    if isinstance(value, str):
        return quote(value)
    return json.dumps(value)


def comment(text: str) -> str:
    """One printable line (names from outside may hold newlines or control characters)."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in text)
    return clean if len(clean) <= COMMENT_CHARS else clean[: COMMENT_CHARS - 1] + "…"


def _note(proposal: FieldProposal | RouteProposal) -> str:
    return f"  # {proposal.confidence:.2f} {comment(proposal.reason)}"


def _transforms(items: tuple[Any, ...]) -> str:
    names = [quote(item) if isinstance(item, str) else f"{{{quote(item[0])}: {scalar(item[1])}}}" for item in items]
    return names[0] if len(names) == 1 else "[" + ", ".join(names) + "]"


def _inline(spec: FieldProposal) -> str | None:
    """The one-line form of a leaf field, or None for fields with nested lines."""
    extra = f", as: {_transforms(spec.transforms)}" if spec.transforms else ""
    if spec.kind == "column":
        return quote(spec.column or "") if not extra else f"{{column: {quote(spec.column or '')}{extra}}}"
    if spec.kind in ("ref", "mixed"):
        return f"{{{spec.kind}: {quote(spec.column or '')}, to: {quote(spec.to or '')}{extra}}}"
    if spec.kind == "json":
        paths = ", ".join(f"{quote(path)}: {name}" for path, name in spec.json_paths)
        return f"{{json: {quote(spec.column or '')}{extra}" + (f", paths: {{{paths}}}}}" if paths else "}")
    return None


def field_lines(spec: FieldProposal, indent: int) -> list[str]:
    pad = " " * indent
    inline = _inline(spec)
    if inline is not None:
        return [f"{pad}{quote(spec.name)}: {inline}{_note(spec)}"]
    lines = [f"{pad}{quote(spec.name)}:{_note(spec)}"]
    inner = pad + "  "
    if spec.kind == "object":
        lines.append(f"{inner}object:")
        for sub in spec.fields:
            lines.extend(field_lines(sub, indent + 4))
        return lines
    lines += [f"{inner}{spec.kind}: {quote(spec.table or '')}", f"{inner}fk: {quote(spec.fk or '')}"]
    if spec.kind == "rows":
        lines.append(f"{inner}order_by: {quote(spec.order_by)}" if spec.order_by and not spec.unordered
                     else f"{inner}order: unordered")
        if spec.value is not None:
            lines.append(f"{inner}value: {_inline(spec.value)}")
            return lines
    lines.append(f"{inner}fields:")
    for sub in spec.fields:
        lines.extend(field_lines(sub, indent + 4))
    return lines


_ROUTE = re.compile(r"^[A-Z]+ /[A-Za-z0-9._~/{}-]*$")


def route_lines(route: RouteProposal) -> list[str]:
    name = f"{route.method} {route.template}"
    name = name if _ROUTE.match(name) else json.dumps(name)
    if not (route.is_list or route.at or route.key or route.where):
        return [f"  - {name}{_note(route)}"]
    lines = [f"  - route: {name}{_note(route)}"]
    if route.key:
        lines.append(f"    key: {route.key}")
    if route.is_list:
        lines.append("    list: true")
    if route.at:
        lines.append(f"    at: {quote(route.at)}")
    if route.is_list:
        lines.append("    complete: true" if route.complete else
                     "    # complete: true   # TODO: if the list shows every row of its filter (then extra rows count)")
    if route.where:
        lines.append("    where:")
        for column, param, to in route.where:
            lines.append(f"      {quote(column)}: {{param: {quote(param)}, to: {quote(to)}}}")
    return lines


def entity_text(entity: EntityProposal, sampled: int) -> str:
    source = (f"{sampled} sampled document(s)" if not entity.view else "recorded answers (a view model)")
    lines = [f"# Drafted by `shadow rules draft` from the PostgreSQL catalog and {source}",
             f"# of {comment(repr(entity.collection))}. After every proposal: its confidence (0..1) and why.",
             "# No sampled value is written here; review, then `shadow rules check` and `rules draft --check`."]
    if entity.todos:
        lines.append(f"# TODO ({len(entity.todos)}): not mapped — decide each (map, `hidden:`, `ignore:`, or drop)")
        lines.extend(f"#   - {comment(todo)}" for todo in entity.todos)
    else:
        lines.append("# TODO: nothing left unmapped")
    lines += [f"entity: {entity.name}",
              f"collection: {quote(entity.collection)}  # {entity.confidence:.2f} {comment(entity.reason)}",
              f"table: {entity.table}"]
    if entity.key != "legacy_object_id":
        lines.append(f"key: {quote(entity.key)}")
    if entity.key_type != "objectid":
        lines.append(f"key_type: {entity.key_type}  # the sampled _ids are strings")
    if entity.view:
        lines += [f"id_field: {quote(entity.id_field)}", "view: true  # computed per read: the API is the only control"]
    lines.append("fields:")
    for spec in entity.fields:
        lines.extend(field_lines(spec, 2))
    if entity.unverifiable:
        lines.append("unverifiable:  # shown by the API, rebuilt from no column")
        lines.extend(f"  - {quote(path)}  # {comment(why)}" for path, why in entity.unverifiable)
    if entity.routes:
        lines.append("routes:")
        for route in entity.routes:
            lines.extend(route_lines(route))
    if entity.version_key or entity.defaults:
        lines.append("stored:")
        if entity.version_key:
            lines.append(f"  version_key: {quote(entity.version_key)}  # {comment(entity.version_reason)}")
        if entity.defaults:
            lines.append("  defaults:")
            lines.extend(f"    {quote(default.path)}: {scalar(default.value)}  # {comment(default.reason)}"
                         for default in entity.defaults)
    if entity.set_candidates:
        lines += ["# `verify:` candidates from unique indexes (uncomment to digest them in `shadow verify`):",
                  "# verify:", "#   sets:"]
        lines.extend(f"#     {comment(item)}" for item in entity.set_candidates)
    return "\n".join(lines) + "\n"


def write_draft(draft: Draft, directory: Path, sampled: dict[str, int]) -> list[Path]:
    """The files written (existing files of the same names are replaced)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for entity in draft.entities:
        path = directory / f"{entity.name}.yaml"
        path.write_text(entity_text(entity, sampled.get(entity.collection, 0)), encoding="utf-8")
        written.append(path)
    todo = directory / "TODO.txt"
    all_todos = [*draft.todos, *(f"{e.name}: {t}" for e in draft.entities for t in e.todos)]
    todo.write_text("".join(f"- {comment(line)}\n" for line in all_todos) or "nothing left unmapped\n",
                    encoding="utf-8")
    written.append(todo)
    return written
