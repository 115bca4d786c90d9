"""An entity's `redaction:` section: what it hides beyond the built-ins, and what it
shows (publish/redaction.py applies it). Parsed with file:line errors like the rest.

    redaction:
      names: [taxId, mothers.maidenName]   # more secret names (as `redact_names:`)
      pii: [nickname]                      # more PII names
      patterns: ['ORD-[0-9]{4}-(SECRET[0-9]+)']  # RE2; the match (or group 1) is masked
      show: [address, cacheKey]            # names that stay visible
      show_patterns: [card]                # built-in value patterns turned off
      show_pii: false                      # true: PII shown as it is (test data)

Patterns are RE2 syntax (google-re2): matching is linear in the input by
construction, so a pattern cannot stall the sidecar on a hostile value; a pattern
is at most MAX_PATTERN_CHARS long, at most MAX_PATTERNS per entity, and must not
match the empty string (it would mask nothing, everywhere).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2  # type: ignore[import-untyped]  # google-re2 ships no type hints

from shadow.rules.reader import REDACT_NAME, Reader, kind_of, show
from shadow.rules.sections import NO_REDACTION_RULES, RedactionRules
from shadow.rules.yamltree import YList, YMap

REDACTION_KEYS = ("names", "pii", "patterns", "show", "show_patterns", "show_pii")
#: the built-in value patterns (publish/secretvalues.py BUILTIN_PATTERNS)
BUILTIN_PATTERNS = ("pem", "jwt", "bearer", "url", "query", "card", "email")
MAX_PATTERN_CHARS = 200
MAX_PATTERNS = 20
_MAX_PROGRAM = 1000  # RE2's program size: `[a-z]{1000}` is short but big (`ORD-[0-9]{4}-(S[0-9]+)`: 18)


@lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> Any:
    """The compiled RE2 pattern; ValueError with the reason when it is refused."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"longer than {MAX_PATTERN_CHARS} characters")
    options = re2.Options()
    options.max_mem = 1 << 20  # a pattern that needs more than 1 MiB of automaton is refused
    options.log_errors = False
    try:
        compiled = re2.compile(pattern, options)
    except re2.error as problem:
        reason = problem.args[0] if problem.args else problem
        reason = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        raise ValueError(f"not a valid RE2 pattern: {reason}") from None
    if compiled.programsize > _MAX_PROGRAM:
        raise ValueError(f"too complex (RE2 program size {compiled.programsize} > {_MAX_PROGRAM})")
    if compiled.fullmatch("") is not None:
        raise ValueError("matches the empty string")
    return compiled


def parse_redaction(reader: Reader, document: YMap, where: str) -> RedactionRules:
    if "redaction" not in document:
        return NO_REDACTION_RULES
    value = document["redaction"]
    if not isinstance(value, YMap):
        reader.error(document.line_of("redaction"), f"{where}: 'redaction' must be a mapping "
                                                    f"({', '.join(REDACTION_KEYS)}), got {kind_of(value)}")
        return NO_REDACTION_RULES
    section = f"{where} redaction"
    reader.keys(value, REDACTION_KEYS, section)
    patterns = reader.strings(value, "patterns", section)
    if len(patterns) > MAX_PATTERNS:
        reader.error(value.line_of("patterns"), f"{section}: at most {MAX_PATTERNS} patterns, got {len(patterns)}")
        patterns = ()
    raw = value.get("patterns")
    lines: dict[str, int] = {}
    if isinstance(raw, YList):
        for index, item in enumerate(raw):
            if isinstance(item, str):
                lines.setdefault(item, raw.line_of(index))
    good = []
    for pattern in patterns:
        try:
            compile_pattern(pattern)
        except ValueError as problem:
            line = lines.get(pattern, value.line_of("patterns"))
            reader.error(line, f"{section}: pattern {show(pattern)} refused: {problem}")
            continue
        good.append(pattern)
    show_patterns = reader.strings(value, "show_patterns", section)
    for name in show_patterns:
        if name not in BUILTIN_PATTERNS:
            reader.error(value.line_of("show_patterns"),
                         f"{section}: unknown value pattern {show(name)} in 'show_patterns' "
                         f"(built-in: {', '.join(BUILTIN_PATTERNS)})")
    return RedactionRules(
        names=reader.strings(value, "names", section, pattern=REDACT_NAME),
        pii=reader.strings(value, "pii", section, pattern=REDACT_NAME),
        patterns=tuple(good),
        show=reader.strings(value, "show", section, pattern=REDACT_NAME),
        show_patterns=tuple(name for name in show_patterns if name in BUILTIN_PATTERNS),
        show_pii=reader.boolean(value, "show_pii", section, False),
    )
