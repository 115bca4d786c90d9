"""A user normalizer module, imported by dotted path in the tests (no registration)."""


def strip_sku_prefix(value):  # type: ignore[no-untyped-def]
    return value.removeprefix("SKU-") if isinstance(value, str) else value


def truncate(value, length):  # type: ignore[no-untyped-def]
    return value[:length] if isinstance(value, str) else value
