"""The library of pure, named value transforms the rules refer to (`as: decimal`).

A rule's `as:` list canonicalizes *both* sides of a comparison (the API's document and
the rebuilt candidate) at that field before they are compared. Each normalizer is a
plain function `value -> value` (or `(value, argument) -> value` for the ones that take
an argument, written `{enum: {usd: USD}}` in YAML). None passes through unless the
normalizer is about None (`default`, `null_is_missing`).

    normalizers.get("decimal")                 # a built-in
    normalizers.get("mycompany.norms:sku", allowed={"mycompany.norms"})  # a user normalizer
    normalizers.bind("enum", {"usd": "USD"})   # -> value -> value

Users add their own without forking: a `package.module:function` from a module the
operator allows (`--normalizer-modules` / `SHADOW_NORMALIZER_MODULES`). Importing runs
the module's code, so nothing else is imported: not `os:system`, not a module the
allow-list does not name (checked before the import), and not a function that the
allowed module merely imported from elsewhere.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from normalizers import values as _values

__all__ = ["Normalizer", "UnknownNormalizer", "bind", "get", "names", "register"]


class UnknownNormalizer(LookupError):
    """The name is neither a built-in nor an importable `package.module:function`."""


@dataclass(frozen=True, slots=True)
class Normalizer:
    name: str
    function: Callable[..., Any]
    takes_argument: bool = False
    help: str = ""

    def bind(self, argument: Any = None) -> Callable[[Any], Any]:
        """The transform as a one-argument function."""
        if not self.takes_argument:
            return self.function
        function = self.function
        return lambda value: function(value, argument)


_REGISTRY: dict[str, Normalizer] = {}


def register(name: str, function: Callable[..., Any], takes_argument: bool = False) -> Normalizer:
    """Add a named normalizer (built-ins call this at import; users may too)."""
    doc = (function.__doc__ or "").strip().splitlines()
    normalizer = Normalizer(name, function, takes_argument, doc[0] if doc else "")
    _REGISTRY[name] = normalizer
    return normalizer


def names() -> list[str]:
    """The built-in and registered normalizer names."""
    return sorted(_REGISTRY)


def get(name: str, allowed: Collection[str] = ()) -> Normalizer:
    """A normalizer by registered name or by dotted path `package.module:function`,
    the module being one of `allowed` (exact module names; default: none).

    A user function takes an argument when it has a second positional parameter.
    Raises UnknownNormalizer naming what was tried."""
    found = _REGISTRY.get(name)
    if found is not None:
        return found
    if ":" not in name:
        raise UnknownNormalizer(f"unknown normalizer {name!r} (built-ins: {', '.join(names())}; "
                                "or package.module:function from a module allowed by --normalizer-modules)")
    module_name, _, attribute = name.partition(":")
    if module_name not in allowed:
        allowed_text = ", ".join(sorted(allowed)) or "none"
        raise UnknownNormalizer(f"normalizer {name!r}: module {module_name!r} is not allowed (allowed modules: "
                                f"{allowed_text}; add it with --normalizer-modules / SHADOW_NORMALIZER_MODULES)")
    if not attribute.isidentifier() or attribute.startswith("_"):
        raise UnknownNormalizer(f"normalizer {name!r}: {attribute!r} is not a public function name")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise UnknownNormalizer(f"cannot import normalizer {name!r}: {error}") from None
    if not callable(function):
        raise UnknownNormalizer(f"normalizer {name!r} is not callable")
    if getattr(function, "__module__", None) != module_name:
        raise UnknownNormalizer(f"normalizer {name!r} is defined in {getattr(function, '__module__', '?')!r}, "
                                f"not in the allowed module {module_name!r}")
    code = getattr(function, "__code__", None)
    takes_argument = bool(code and code.co_argcount >= 2)
    return Normalizer(name, function, takes_argument)


def bind(name: str, argument: Any = None) -> Callable[[Any], Any]:
    """Shortcut: get(name).bind(argument)."""
    return get(name).bind(argument)


for _name, _function, _takes in _values.BUILTINS:
    register(_name, _function, _takes)
