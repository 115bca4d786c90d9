"""JSON Schema of the rule format (`shadow rules schema`), for editors (e.g. the YAML
language server: `# yaml-language-server: $schema=rules.schema.json`). The loader
does its own checks with file:line messages; a test keeps the two in agreement."""
from __future__ import annotations

from typing import Any

from shadow.rules.reader import REDACT_NAME
from shadow.rules.redaction import BUILTIN_PATTERNS, MAX_PATTERN_CHARS, MAX_PATTERNS
from shadow.rules.spec import AGGREGATES, FIELD_KINDS

_NAME = {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"}
_TABLE = {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$"}
_DURATION = {"oneOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": r"^\d+(\.\d+)?\s*(ms|s|m)$"}]}
_PATH = {"type": "string", "pattern": r"^[^.\[\]\s]+(\[\*\])*(\.[^.\[\]\s]+(\[\*\])*)*$",
         "description": "document path: amount.value, offers[*].status"}
_TRANSFORM = {"oneOf": [{"type": "string", "description": "normalizer name or package.module:function"},
                        {"type": "object", "minProperties": 1, "maxProperties": 1,
                         "description": "normalizer with an argument: {enum: {usd: USD}}"}]}
_AS = {"description": "normalizers applied to both sides before comparing",
       "oneOf": [_TRANSFORM, {"type": "array", "items": _TRANSFORM}]}


_ABSENT = {"description": "the value an absent field stands for (both sides)"}
_AGGREGATE = {"fk": _NAME, "parent": _NAME, "of": _NAME, "as": _AS, "absent": _ABSENT,
              "where": {"type": "object", "description": "column: key | reader | constant | {in: [..]} | {value: v}"}}
_WHOLE = {"type": "integer", "minimum": 0}
_STRINGS = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
_PAGE_OPTIONS = {"query": {"type": "string"}, "default": _WHOLE, "min": _WHOLE, "max": _WHOLE,
                 "out_of_range": {"enum": ["default", "clamp", "error"],
                                  "description": "what the API does with a value outside [min, max]"}}
_ECHO = {**_PATH, "description": "body path echoing the value the API applied (checked)"}
_QUERY_PARAM = {"oneOf": [{"type": "string"}, {"type": "object", "required": ["query"], "additionalProperties": False,
                                                "properties": _PAGE_OPTIONS}]}
_LIMIT = {"oneOf": [{"type": "string"}, {"type": "object", "required": ["query"], "additionalProperties": False,
                                          "properties": {**_PAGE_OPTIONS, "at": _ECHO}}]}
_PAGE_NUMBER = {"oneOf": [{"type": "string"}, {"type": "object", "required": ["query"], "additionalProperties": False,
                                                "properties": {**_PAGE_OPTIONS, "first": _WHOLE, "at": _ECHO}}]}
_NORMALIZE = {"description": "lower, trim, or normalizers of the `as:` library, applied to the parameter",
              "oneOf": [_TRANSFORM, {"type": "array", "items": _TRANSFORM}]}
_WHERE = {"type": "object", "additionalProperties": False, "properties": {
    "param": {"type": "string"}, "query": {"type": "string"}, "value": {},
    "reader": {"oneOf": [{"const": True}, {
        "type": "object", "required": ["in", "select", "by"], "additionalProperties": False,
        "properties": {"in": _TABLE, "select": _NAME, "by": _NAME}}]},
    "op": {"enum": ["eq", "in", "gt", "gte", "lt", "lte"]}, "to": _TABLE, "by": _NAME,
    "normalize": _NORMALIZE, "on_miss": {"enum": ["empty", "drop"]},
    "through": _TABLE, "fk": _NAME, "parent": _NAME}}


def _kind(kind: str, required: dict[str, Any], optional: dict[str, Any], description: str) -> dict[str, Any]:
    properties = {**required, **optional}
    return {"type": "object", "description": description, "properties": properties,
            "required": list(required), "additionalProperties": False}


def rule_schema() -> dict[str, Any]:
    field_ref = {"$ref": "#/$defs/field"}
    fields_ref = {"$ref": "#/$defs/fields"}
    table_common = {"fk": _NAME, "parent": _NAME, "as": _AS}
    field_kinds = [
        _kind("column", {"column": _NAME}, {"as": _AS, "default": {}, "absent": _ABSENT}, "a column of the row"),
        _kind("ref", {"ref": _NAME, "to": _TABLE}, {"as": _AS, "default": {}, "absent": _ABSENT},
              "uuid FK shown as the legacy ObjectId of collection `to` (via id_map)"),
        _kind("mixed", {"mixed": _NAME, "to": _TABLE}, {"as": _AS, "default": {}, "absent": _ABSENT},
              "Mixed id from <x>_ref_kind, <x>_id, <x>_external_ref"),
        _kind("object", {"object": fields_ref}, {"as": _AS}, "nested object from columns of the same row"),
        _kind("json", {"json": _NAME}, {"as": _AS, "default": {}, "absent": _ABSENT,
                                        "paths": {"type": "object", "additionalProperties": _AS}}, "jsonb blob"),
        _kind("rows", {"rows": _TABLE, "fk": _NAME}, {
            **table_common, "fields": fields_ref, "value": field_ref,
            "order_by": {"oneOf": [_NAME, {"type": "array", "items": _NAME}]},
            "order": {"enum": ["ordered", "unordered"]}, "key": {"type": "string"}},
            "embedded array from a child table: fields (objects) or value (single values)"),
        _kind("child", {"child": _TABLE, "fk": _NAME, "fields": fields_ref}, table_common,
              "subdocument from a 1:1 child table"),
        _kind("const", {"const": {}}, {"as": _AS}, "a constant"),
        *[_kind(kind, {kind: _TABLE}, _AGGREGATE, f"{kind} over child/junction rows") for kind in AGGREGATES],
    ]
    assert len(field_kinds) == len(FIELD_KINDS)
    route = {"oneOf": [
        {"type": "string", "pattern": r"^[A-Z]+ /", "description": "METHOD /path/{param}"},
        {"type": "object", "required": ["route"], "additionalProperties": False, "properties": {
            "route": {"type": "string", "pattern": r"^[A-Z]+ /"},
            "list": {"type": "boolean"}, "complete": {"type": "boolean"},
            "at": {"type": "string", "description": "dotted path of the document/list in the body"},
            "key": {"oneOf": [{"const": "body"}, {"type": "object", "minProperties": 1, "maxProperties": 2,
                                                  "properties": {"path": {"type": "string"},
                                                                 "query": {"type": "string"},
                                                                 "header": {"type": "string"},
                                                                 "const": {"type": "string"},
                                                                 "jwt_claim": {"type": "string"},
                                                                 "normalize": {}},
                                                  "additionalProperties": False}]},
            "where": {"type": "object", "additionalProperties": {"oneOf": [{"type": "string"}, _WHERE]}},
            "reader": {"type": "object", "required": ["header", "jwt_claim", "to"], "additionalProperties": False,
                       "properties": {"header": {"type": "string"}, "jwt_claim": {"type": "string"},
                                      "to": _TABLE, "by": _NAME,
                                      "scheme": {**_STRINGS,
                                                 "description": "Bearer, Token, bare (default: all three)"}}},
            "order_by": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
            "limit": _LIMIT, "offset": _QUERY_PARAM, "page": _PAGE_NUMBER, "total": _PATH, "pages": _PATH,
            "sort": {"type": "object", "required": ["query", "allow"], "additionalProperties": False,
                     "properties": {"query": {"type": "string"},
                                    "allow": {"type": "object", "additionalProperties": _NAME},
                                    "style": {"enum": ["field:dir", "-field"]}}},
            "query": {**_STRINGS, "description": "query parameters the list models beyond where / page (e.g. fields)"},
            "strict_query": {"type": "boolean"},
            "sample": {"type": "number", "minimum": 0, "maximum": 1},
            "sample_by": {"enum": ["random", "key"]},
            "recheck": {"oneOf": [_DURATION, {
                "type": "object", "additionalProperties": False,
                "properties": {"after": {"oneOf": [_DURATION, {"type": "array", "items": _DURATION, "maxItems": 8}]},
                               "control": {"enum": ["upstream", "mongo", "none"]},
                               "headers": {"type": "array", "items": {"type": "string"}},
                               "gone": {"type": "array",
                                        "items": {"type": "integer", "minimum": 300, "maximum": 599}}}}]},
            "source": {"enum": ["postgres", "mongo"]}}}]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://shadow.invalid/rules.schema.json",
        "title": "shadow rule file (one entity per YAML document)",
        "type": "object",
        "required": ["entity", "collection", "table"],
        "additionalProperties": False,
        "properties": {
            "entity": _NAME, "collection": {"type": "string"}, "table": _TABLE,
            "key": _NAME, "id": _NAME, "key_type": {"enum": ["objectid", "string"]},
            "id_field": {"type": "string"}, "fields": fields_ref,
            "routes": {"type": "array", "items": route},
            "ignore": {"type": "array", "items": _PATH}, "redact": {"type": "array", "items": _PATH},
            "redact_names": {"type": "array", "items": {"type": "string", "pattern": REDACT_NAME.pattern}},
            "redaction": {"type": "object", "additionalProperties": False, "properties": {
                "names": {"type": "array", "items": {"type": "string", "pattern": REDACT_NAME.pattern}},
                "pii": {"type": "array", "items": {"type": "string", "pattern": REDACT_NAME.pattern}},
                "show": {"type": "array", "items": {"type": "string", "pattern": REDACT_NAME.pattern}},
                "patterns": {"type": "array", "maxItems": MAX_PATTERNS,
                             "items": {"type": "string", "minLength": 1, "maxLength": MAX_PATTERN_CHARS}},
                "show_patterns": {"type": "array", "items": {"enum": list(BUILTIN_PATTERNS)}},
                "show_pii": {"type": "boolean"}}},
            "hidden": {"type": "array", "items": {"type": "string"}},
            "known": {"type": "array", "items": {
                "type": "object", "required": ["path", "reason", "expires"], "additionalProperties": False,
                "properties": {"path": _PATH, "reason": {"type": "string"},
                               "expires": {"type": "string", "format": "date"}}}},
            "null_is_missing": {"type": "boolean"},
            "stored": {"type": "object", "additionalProperties": False, "properties": {
                "version_key": {"type": ["string", "null"]},
                "hidden": {"type": "array", "items": {"type": "string"}},
                "defaults": {"type": "object"},
                "rename": {"type": "object", "additionalProperties": {"type": "string"}},
                "unverifiable": {"type": "string"}}},
            "verify": {"type": "object", "additionalProperties": False, "properties": {
                "keep": {"type": "object", "additionalProperties": False,
                         "properties": {"mongo": {"type": "object"}, "postgres": {"type": "object"}}},
                "sums": {"type": "array", "items": {
                    "type": "object", "required": ["sum"], "additionalProperties": False,
                    "properties": {"sum": {"type": "string"}, "name": _NAME,
                                   "by": {"type": "array", "items": {"type": "string"}}}}},
                "sets": {"type": "array", "items": {
                    "type": "object", "required": ["name", "of"], "additionalProperties": False,
                    "properties": {"name": _NAME, "of": {"type": "array", "items": {"type": "string"}},
                                   "where": {"type": "object"}}}}}},
            "unverifiable": {"type": "array", "items": _PATH}, "distinct": _NAME, "view": {"type": "boolean"},
        },
        "$defs": {
            "fields": {"type": "object", "additionalProperties": field_ref},
            "field": {"oneOf": [{**_NAME, "description": "a column name"}, *field_kinds]},
        },
    }
