"""Placeholder (replaced below)."""
from __future__ import annotations

from typing import Any


class DumpMongo:
    name = ""

    @classmethod
    def open(cls, path: str, database: str | None) -> Any:
        raise NotImplementedError
