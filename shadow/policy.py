"""What the operator lets rule files do: the largest rule file read, and which Python
modules `as: package.module:function` may import (rules are trusted configuration, but
an import runs code: by default only the built-in normalizers are allowed).

    RulesPolicy()                                            # 1 MiB files, built-ins only
    RulesPolicy(normalizer_modules=frozenset({"mycompany.norms"}))

Flags and env vars (`shadow proxy`, `shadow rules check|test`, `shadow compare`, `shadow verify`),
all resolved by `build_policy`:
``--rules-max-bytes / SHADOW_RULES_MAX_BYTES`` and
``--normalizer-modules / SHADOW_NORMALIZER_MODULES`` (comma-separated module names).
"""
from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_MAX_FILE_BYTES = 1024 * 1024
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class RulesPolicy:
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    normalizer_modules: frozenset[str] = frozenset()


def parse_modules(text: str) -> frozenset[str]:
    """`a.b, c` -> {"a.b", "c"}; raises ValueError naming a bad module name."""
    modules = {part.strip() for part in text.split(",") if part.strip()}
    for module in modules:
        if not _MODULE.match(module):
            raise ValueError(f"expected comma-separated Python module names, {module!r} is not one")
    return frozenset(modules)


def parse_max_bytes(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError("expected a whole number of bytes >= 1") from None
    if value < 1:
        raise ValueError("expected a whole number of bytes >= 1")
    return value


def add_policy_arguments(parser: argparse.ArgumentParser) -> None:
    """The two flags, for the offline commands (`shadow proxy` declares them in config.py)."""
    parser.add_argument("--normalizer-modules", dest="normalizer_modules", metavar="MODULES", default=None,
                        help="modules rules may import normalizers from, comma-separated (default: built-ins only) "
                             "[env SHADOW_NORMALIZER_MODULES]")
    parser.add_argument("--rules-max-bytes", dest="rules_max_bytes", metavar="N", default=None,
                        help=f"largest rule file read (default {DEFAULT_MAX_FILE_BYTES}) [env SHADOW_RULES_MAX_BYTES]")


def policy_from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> RulesPolicy:
    """The policy of an offline command (flags from `add_policy_arguments`)."""
    return build_policy(getattr(args, "normalizer_modules", None), getattr(args, "rules_max_bytes", None), environ)


def build_policy(modules_text: str | None, size_text: str | int | None,
                 environ: Mapping[str, str] | None = None) -> RulesPolicy:
    """THE rule-policy builder, shared by every command that loads rules (`shadow proxy`
    through its config, `shadow rules check|test`, `shadow compare`, `shadow verify`):
    flag value over env var over default; raises ValueError naming the flag / env var.
    Pass `environ={}` when the values were already merged with the environment."""
    environ = os.environ if environ is None else environ
    modules_origin = "--normalizer-modules"
    if modules_text is None:
        modules_text, modules_origin = environ.get("SHADOW_NORMALIZER_MODULES", ""), "SHADOW_NORMALIZER_MODULES"
    size_origin = "--rules-max-bytes"
    if size_text is None:
        size_origin = "SHADOW_RULES_MAX_BYTES"
        size_text = environ.get(size_origin, str(DEFAULT_MAX_FILE_BYTES))
    try:
        modules = parse_modules(modules_text)
    except ValueError as problem:
        raise ValueError(f"{modules_origin}: {problem}") from None
    try:
        size = parse_max_bytes(str(size_text))
    except ValueError as problem:
        raise ValueError(f"{size_origin}: {problem}, got {size_text!r}") from None
    return RulesPolicy(size, modules)
