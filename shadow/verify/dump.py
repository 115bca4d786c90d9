"""`--mongo-dump PATH`: the Mongo side read from a mongodump snapshot instead of a live
server, so a team verifies against last night's backup without loading production.

The dump is a directory or an archive, gzip-compressed or not (`shadow.verify.dumpfile`
reads the bytes, `shadow.verify.dumpquery` orders and filters documents).

The layers read documents in `_id` order. A dump written in `_id` order (mongodump of a
collection of ObjectIds inserted over time usually is) is streamed in one pass, memory
flat; otherwise the collection is copied once to a temporary file and read back through
a sorted index of (`_id`, offset) — memory proportional to the number of documents.
Queries (`keep:` filters, set conditions) are evaluated here for the operators verify
uses; any other operator is refused (exit 2). `existing()` (reference targets) holds the
target collection's `_id`s in memory.
"""
from __future__ import annotations

import itertools
import os
import re
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import bson
from bson import ObjectId
from bson.codec_options import CodecOptions

from shadow.verify.dumpfile import (
    OPTIONS,
    DumpError,
    archive_documents,
    archive_prelude,
    directory_batches,
    joined_run,
    open_dump_file,
)
from shadow.verify.dumpquery import first_id, first_key, matches, sort_key

_NAME = re.compile(r"^[^/\\\x00$.][^/\\\x00]{0,254}$")  # a database or collection name, never a path


@dataclass
class _Index:
    count: int = 0
    low: Any = None
    high: Any = None
    ordered: bool = True
    spill: Path | None = None  # the copy read back in `_id` order when the dump is not
    offsets: list[tuple[tuple[int, Any], int, int]] = field(default_factory=list)


#: the docs layer's dates: naive UTC (see `_matching`); `_id`s of these types are decoded aware
NAIVE: CodecOptions[dict[str, Any]] = CodecOptions()
_AWARE_IDS = frozenset({datetime, dict, list})


def _holds_dates(value: Any) -> bool:
    """Whether a query compares with a date (then the documents' dates stay aware)."""
    if isinstance(value, datetime):
        return True
    if isinstance(value, dict):
        return any(_holds_dates(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_holds_dates(item) for item in value)
    return False


@dataclass
class _Cursor:
    query: dict[str, Any]
    documents: Iterator[dict[str, Any]]
    last: tuple[int, Any] | None = None  # the sort key of the last document returned


def _chosen(path: Path, database: str | None, held: Iterable[str], kind: str) -> str:
    """The database of a dump (`kind`: dump or archive) to read: the one named with
    --mongo-db, or the only one the dump holds."""
    names = sorted(held)
    listed = ", ".join(names) or "none"
    if database is None:
        if len(names) != 1:
            raise DumpError(f"--mongo-dump {str(path)!r} holds databases {listed}: name one with --mongo-db")
        return names[0]
    if database not in names:
        raise DumpError(f"Mongo database {database!r} does not exist in the {kind} {str(path)!r} (it holds: {listed})")
    return database


class DumpMongo:
    """A mongodump snapshot as the Mongo side (see the module docstring)."""

    def __init__(self, path: Path, database: str, archive: bool, collections: dict[str, Path | None]) -> None:
        self.path, self.database, self.archive = path, database, archive
        self.name = f"{path} ({database})"
        self.collections = collections  # name -> file (directory) or None (archive)
        self.indexes: dict[str, _Index] = {}
        self.cursors: dict[str, _Cursor] = {}
        self.ids: dict[str, set[Any]] = {}

    @classmethod
    def open(cls, path_text: str, database: str | None) -> DumpMongo:
        path = Path(path_text)
        if database is not None and not _NAME.match(database):
            raise DumpError(f"--mongo-db {database!r:.80}: not a database name")
        if path.is_dir():
            return cls._directory(path, database)
        if path.is_file():
            return cls._archive(path, database)
        raise DumpError(f"--mongo-dump {path_text!r}: no such directory or file")

    @classmethod
    def _directory(cls, path: Path, database: str | None) -> DumpMongo:
        def collections(folder: Path) -> dict[str, Path | None]:
            found: dict[str, Path | None] = {}
            for entry in sorted(folder.iterdir()):
                for suffix in (".bson.gz", ".bson"):
                    if entry.is_file() and entry.name.endswith(suffix) and not entry.name.endswith(".metadata.json"):
                        found.setdefault(entry.name[:-len(suffix)], entry)
                        break
            return found

        databases = {entry.name: entry for entry in sorted(path.iterdir()) if entry.is_dir() and collections(entry)}
        if collections(path) and (database is None or database == path.name) and not databases:
            return cls(path, path.name, False, collections(path))
        database = _chosen(path, database, databases, "dump")
        return cls(path, database, False, collections(databases[database]))

    @classmethod
    def _archive(cls, path: Path, database: str | None) -> DumpMongo:
        with open_dump_file(path) as stream:
            prelude = archive_prelude(stream, str(path))
        names: dict[str, set[str]] = {}
        for metadata in prelude:
            if isinstance(metadata.get("db"), str) and isinstance(metadata.get("collection"), str):
                names.setdefault(metadata["db"], set()).add(metadata["collection"])
        database = _chosen(path, database, names, "archive")
        return cls(path, database, True, dict.fromkeys(sorted(names[database])))

    # ----------------------------------------------------------------- reading

    def _raw(self, collection: str) -> Iterator[bytes]:
        for buffer, starts in self._batches(collection):
            for start, end in zip(starts, [*starts[1:], len(buffer)], strict=True):
                yield buffer[start:end]

    def _batches(self, collection: str) -> Iterator[tuple[bytes, list[int]]]:
        """The collection's documents in dump order, in runs: (buffer, starts)."""
        if collection not in self.collections or not _NAME.match(collection):
            return
        file = self.collections[collection]
        if not self.archive and file is not None:
            yield from directory_batches(file)
            return
        run: list[bytes] = []
        for raw in archive_documents(self.path, self.database, collection):
            run.append(raw)
            if len(run) >= 1000:
                yield joined_run(run)
                run = []
        if run:
            yield joined_run(run)

    def _where(self, collection: str) -> str:
        return f"{self.path}: {self.database}.{collection}"

    def _index(self, collection: str) -> _Index:
        """One pass: count, lowest and highest `_id`, and whether the dump is in `_id`
        order; if not, a second pass copies it to a temporary file with a sorted index."""
        index = self.indexes.get(collection)
        if index is not None:
            return index
        index = _Index()
        previous: tuple[int, Any] | None = None
        where = self._where(collection)
        for buffer, starts in self._batches(collection):
            for start in starts:
                key = first_key(buffer, where, start)
                if previous is not None and key <= previous:
                    index.ordered = False
                if index.low is None or key < index.low:
                    index.low = key
                if index.high is None or key > index.high:
                    index.high = key
                previous = key
            index.count += len(starts)
        if not index.ordered:
            descriptor, name = tempfile.mkstemp(prefix="shadow-verify-", suffix=".bson")
            index.spill = Path(name)
            with os.fdopen(descriptor, "wb") as spill:
                offset = 0
                for raw in self._raw(collection):
                    index.offsets.append((first_key(raw, where), offset, len(raw)))
                    spill.write(raw)
                    offset += len(raw)
            index.offsets.sort(key=lambda entry: entry[0])
        self.indexes[collection] = index
        return index

    def _ordered(self, collection: str) -> Iterator[bytes]:
        """Runs of raw documents (concatenated) in `_id` order."""
        index = self._index(collection)
        if index.spill is None:
            for buffer, _ in self._batches(collection):
                yield buffer
            return
        with open(index.spill, "rb") as spill:
            for first in range(0, len(index.offsets), 1000):
                run = []
                for _, offset, size in index.offsets[first:first + 1000]:
                    spill.seek(offset)
                    run.append(spill.read(size))
                yield b"".join(run)

    def _matching(self, collection: str, query: dict[str, Any], naive: bool = False) -> Iterator[dict[str, Any]]:
        """`naive`: dates without a time zone (UTC all the same), for readers that only
        turn them into `toISOString()` text: bson makes an aware date at about three
        times the cost of a naive one. A run whose `_id`s hold dates (its key text would
        change) is decoded aware."""
        where = self._where(collection)
        for buffer in self._ordered(collection):
            try:
                documents = bson.decode_all(buffer, NAIVE if naive else OPTIONS)
                if naive and any(document["_id"].__class__ in _AWARE_IDS for document in documents):
                    documents = bson.decode_all(buffer, OPTIONS)
            except Exception as error:  # framing was checked: this is a bad document inside
                raise DumpError(f"{where}: not a BSON document ({type(error).__name__}: {error})") from None
            if query:
                documents = [document for document in documents if matches(document, query)]
            yield from documents

    def close(self) -> None:
        for index in self.indexes.values():
            if index.spill is not None:
                index.spill.unlink(missing_ok=True)

    # ----------------------------------------------------------------- MongoSide

    async def problems(self, collections: Iterable[str]) -> dict[str, str]:
        return {name: f"collection {name!r} does not exist in the dump of {self.database!r}"
                for name in collections if name not in self.collections}

    async def documents(self, collection: str, query: dict[str, Any],
                        projection: dict[str, Any] | None = None) -> AsyncIterator[dict[str, Any]]:
        for document in self._matching(collection, query):
            yield document

    async def page(self, collection: str, query: dict[str, Any], after: Any, size: int,
                   inclusive: bool) -> list[dict[str, Any]]:
        """The next `size` documents after `after`: the layers page forwards, so one
        pass serves every page (a page that goes back starts a new pass). Their dates
        are naive (UTC): the docs layer only writes them as `toISOString()` text."""
        cursor = self.cursors.get(collection)
        bound = None if after is None else sort_key(after)
        if cursor is None or cursor.query != query or bound is None or cursor.last is None or bound < cursor.last:
            cursor = _Cursor(query, self._matching(collection, query, naive=not _holds_dates(query)))
            self.cursors[collection] = cursor
        found: list[dict[str, Any]] = []
        if bound is not None and bound == cursor.last and not inclusive:  # the next page: no key to compare
            found.extend(itertools.islice(cursor.documents, size))
        else:
            for document in cursor.documents:
                key = sort_key(document["_id"])
                if bound is not None and (key < bound or (key == bound and not inclusive)):
                    continue
                found.append(document)
                if len(found) >= size:
                    break
        if found:
            cursor.last = sort_key(found[-1]["_id"])
        return found

    async def sorted_by(self, collection: str, query: dict[str, Any],
                        paths: list[str]) -> AsyncIterator[dict[str, Any]]:
        def dig(document: Any, path: str) -> Any:
            for step in path.split("."):
                document = document.get(step) if isinstance(document, dict) else None
            return document

        chosen = [{path: dig(document, path) for path in paths} for document in self._matching(collection, query)]
        chosen.sort(key=lambda member: tuple(sort_key(member[path]) for path in paths))
        for member in chosen:
            yield _nest(member)

    async def count(self, collection: str, query: dict[str, Any]) -> int:
        if not query:
            return self._index(collection).count
        return sum(1 for _ in self._matching(collection, query))

    async def key_bounds(self, collection: str) -> tuple[str | None, str | None]:
        index = self._index(collection)
        return _shown_key(index.low), _shown_key(index.high)

    async def existing(self, collection: str, ids: list[Any]) -> set[Any]:
        known = self.ids.get(collection)
        if known is None:
            where = self._where(collection)
            known = set()
            for raw in self._raw(collection):
                try:
                    known.add(first_id(raw, where))
                except TypeError:  # an unhashable _id (a subdocument) names nothing we look up
                    continue
            self.ids[collection] = known
        found = set()
        for value in ids:
            try:
                if value in known:
                    found.add(value)
            except TypeError:
                continue
        return found

    async def native_sums(self, collection: str, query: dict[str, Any], value_path: str,
                          by_paths: list[str]) -> None:
        return None  # no server: the streamed sum is the Mongo side


def _shown_key(key: tuple[int, Any] | None) -> str | None:
    if key is None:
        return None
    return str(ObjectId(key[1])) if key[0] == 8 else str(key[1])


def _nest(member: dict[str, Any]) -> dict[str, Any]:
    """{"a.b": 1} -> {"a": {"b": 1}}: the projected shape the layers dig into."""
    nested: dict[str, Any] = {}
    for path, value in member.items():
        target = nested
        steps = path.split(".")
        for step in steps[:-1]:
            target = target.setdefault(step, {})
        target[steps[-1]] = value
    return nested
