"""Per id-range bucket (one UTC day of ObjectIds) an order-independent digest of each
side's documents, and the `--resume` file that records buckets verified clean.

A bucket digest is (count, sum of BLAKE2b-128 of key + canonical document mod 2^128):
the same whatever order the documents came in, and two partitions' digests of one bucket
add up. The document hashed is the CANONICAL form the comparison uses (both stores'
digests of a clean bucket are equal; a matching document is hashed once).
With `--resume FILE` the file is rewritten atomically (temporary file, fsync, rename)
each time a bucket is complete and clean, so an interrupted run loses at most the bucket
it was in; a rerun skips every bucket the file records as clean under the same rules
version and reports their counts and digests as if it had read them."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from shadow.verify.scope import DAY, BadFlag

_MOD = 1 << 128
MAX_RESUME_BYTES = 64 * 1024 * 1024


def _plain(value: Any) -> Any:
    """What orjson cannot write itself: a canonical boolean (Flag), a Decimal, …"""
    inner = getattr(value, "value", None)
    return inner if isinstance(inner, bool) else str(value)


_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def document_hash(key: str, document: Any) -> int:
    try:
        data = orjson.dumps(document, option=_OPTIONS, default=_plain)
    except TypeError:  # an integer beyond 64 bits (a large integral decimal): tagged text
        data = orjson.dumps(_big_ints(document), option=_OPTIONS, default=_plain)
    return int.from_bytes(hashlib.blake2b(key.encode() + b"\0" + data, digest_size=16).digest(), "big")


def _big_ints(value: Any) -> Any:
    if value.__class__ is int and not -(2**63) <= value < 2**64:
        return f"<int {value}>"
    if isinstance(value, dict):
        return {name: _big_ints(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_big_ints(item) for item in value]
    return value


@dataclass(slots=True)
class Bucket:
    mongo_count: int = 0
    mongo_digest: int = 0
    pg_count: int = 0
    pg_digest: int = 0
    differences: int = 0

    def add_mongo(self, key: str, document: Any) -> None:
        self.mongo_count += 1
        self.mongo_digest = (self.mongo_digest + document_hash(key, document)) % _MOD

    def add_both(self, key: str, document: Any) -> None:
        """A document both stores hold alike: hashed once, counted on each side."""
        hashed = document_hash(key, document)
        self.mongo_count += 1
        self.pg_count += 1
        self.mongo_digest = (self.mongo_digest + hashed) % _MOD
        self.pg_digest = (self.pg_digest + hashed) % _MOD

    def add_pg(self, key: str, document: Any) -> None:
        self.pg_count += 1
        self.pg_digest = (self.pg_digest + document_hash(key, document)) % _MOD

    def as_json(self) -> dict[str, Any]:
        return {"mongo": {"count": self.mongo_count, "digest": f"{self.mongo_digest:032x}"},
                "postgres": {"count": self.pg_count, "digest": f"{self.pg_digest:032x}"},
                "clean": self.differences == 0}


def bucket_end(bucket: str) -> str | None:
    """The first legacy id after a day bucket (None for keys that are not ObjectIds)."""
    if not bucket.startswith("d"):
        return None
    return f"{(int(bucket[1:]) + 1) * DAY:08x}" + "0" * 16


@dataclass
class ResumeFile:
    """Buckets verified clean, per entity, under one rules version."""

    path: Path | None
    rules_version: str
    clean: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def open(cls, path: str | None, rules_version: str) -> ResumeFile:
        if path is None:
            return cls(None, rules_version)
        target = Path(path)
        if not target.exists():
            return cls(target, rules_version)
        if not target.is_file():
            raise BadFlag(f"--resume {path!r}: not a regular file")
        if target.stat().st_size > MAX_RESUME_BYTES:
            raise BadFlag(f"--resume {path!r}: larger than {MAX_RESUME_BYTES} bytes")
        try:
            data = json.loads(target.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise BadFlag(f"--resume {path!r}: not a verify resume file ({type(error).__name__}: {error})") from None
        if not isinstance(data, dict) or not isinstance(data.get("entities"), dict):
            raise BadFlag(f"--resume {path!r}: not a verify resume file (no 'entities' object)")
        if data.get("rules_version") != rules_version:
            return cls(target, rules_version)  # other rules: nothing carries over
        clean: dict[str, dict[str, Any]] = {}
        for entity, buckets in data["entities"].items():
            if not isinstance(entity, str) or not isinstance(buckets, dict):
                raise BadFlag(f"--resume {path!r}: entity {entity!r} is not a bucket map")
            clean[entity] = {name: value for name, value in buckets.items()
                             if isinstance(name, str) and name.startswith("d") and name[1:].isdigit()
                             and isinstance(value, dict) and value.get("clean") is True}
        return cls(target, rules_version, clean)

    def recorded(self, entity: str, bucket: str) -> dict[str, Any] | None:
        """The bucket's counts and digests when the file records it clean (skip it)."""
        found = self.clean.get(entity, {}).get(bucket)
        if not isinstance(found, dict) or not bucket_end(bucket):
            return None
        try:
            return {"mongo": {"count": int(found["mongo"]["count"]), "digest": str(found["mongo"]["digest"])},
                    "postgres": {"count": int(found["postgres"]["count"]), "digest": str(found["postgres"]["digest"])},
                    "clean": True}
        except (KeyError, TypeError, ValueError):
            return None  # a hand-edited entry: verify the bucket again

    def record_bucket(self, entity: str, name: str, bucket: Bucket) -> None:
        """Checkpoint one complete bucket (only clean buckets are skipped later)."""
        if self.path is None:
            return
        kept = self.clean.setdefault(entity, {})
        if bucket.differences == 0 and name.startswith("d"):
            kept[name] = bucket.as_json()
        elif kept.pop(name, None) is None:
            return  # nothing changes on disk
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(temporary, "w", encoding="utf-8") as stream:
            json.dump({"rules_version": self.rules_version, "entities": self.clean}, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, self.path)
