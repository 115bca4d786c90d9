"""`--mongo-dump PATH`: the Mongo side read from a mongodump snapshot instead of a live
server, so a team verifies against last night's backup without loading production.

Two layouts, as mongodump writes them (files gzip-compressed or not, `--gzip`):

    directory   PATH/<db>/<collection>.bson[.gz]    (or PATH is the <db> folder itself)
    archive     one file (`--archive`): magic 0x8199e26d (little-endian), a header
                document, collection-metadata documents, 0xFFFFFFFF; then segments
                `namespace header {db, collection, EOF, CRC}, documents…, 0xFFFFFFFF`
                of the collections interleaved, and one EOF header per collection

Every document is framed by its own int32 length, checked before it is read (5 bytes to
16 MiB + 16 KiB, ending in NUL), so a truncated file, a bad length or a decompression
bomb is an error naming the file, never a huge read; then decoded by pymongo's `bson`.

The layers read documents in `_id` order. A dump written in `_id` order (mongodump of a
collection of ObjectIds inserted over time usually is) is streamed in one pass, memory
flat; otherwise the collection is copied once to a temporary file and read back through
a sorted index of (`_id`, offset) — memory proportional to the number of documents.
Queries (`keep:` filters, set conditions) are evaluated here for the operators verify
uses; any other operator is refused (exit 2). `existing()` (reference targets) holds the
target collection's `_id`s in memory.
"""
from __future__ import annotations

import gzip
import itertools
import os
import re
import tempfile
import zlib
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from io import BufferedIOBase
from pathlib import Path
from typing import Any

import bson
from bson import Decimal128, ObjectId
from bson.codec_options import CodecOptions

from shadow.verify.scope import BadFlag

MAGIC = b"\x6d\xe2\x99\x81"  # 0x8199e26d, little-endian
TERMINATOR = b"\xff\xff\xff\xff"
GZIP_MAGIC = b"\x1f\x8b"
MAX_DOCUMENT = 16 * 1024 * 1024 + 16 * 1024  # BSON's 16 MiB and the server's headroom
MAX_COLLECTIONS = 100_000  # collection-metadata documents an archive prelude may hold
OPTIONS: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True)
_NAME = re.compile(r"^[^/\\\x00$.][^/\\\x00]{0,254}$")  # a database or collection name, never a path


class DumpError(BadFlag):
    """The dump cannot be read (exit 2)."""


def read_document(stream: BufferedIOBase, where: str, terminator: bool = False) -> bytes | None:
    """The next BSON document of `stream` as raw bytes; None at the end of the stream (or,
    when `terminator`, at a 0xFFFFFFFF terminator, returned as b"")."""
    head = _read(stream, 4, where)
    if not head:
        return None
    if len(head) < 4:
        raise DumpError(f"{where}: truncated (a document length cut off at the end)")
    if terminator and head == TERMINATOR:
        return b""
    size = int.from_bytes(head, "little", signed=True)
    if size < 5 or size > MAX_DOCUMENT:
        raise DumpError(f"{where}: bad document length {size} (a BSON document is 5 to {MAX_DOCUMENT} bytes)")
    body = _read(stream, size - 4, where)
    if len(body) < size - 4:
        raise DumpError(f"{where}: truncated (a {size}-byte document, {len(body) + 4} bytes left)")
    if body[-1:] != b"\x00":
        raise DumpError(f"{where}: not a BSON document (no terminating NUL)")
    return head + body


def _read(stream: BufferedIOBase, size: int, where: str) -> bytes:
    try:
        return stream.read(size)
    except (EOFError, OSError, zlib.error) as error:  # a cut or corrupt gzip stream
        raise DumpError(f"{where}: unreadable ({type(error).__name__}: {error})") from None


def decode(raw: bytes, where: str) -> dict[str, Any]:
    try:
        return bson.decode(raw, OPTIONS)
    except Exception as error:  # InvalidBSON and the codec's own errors on hostile bytes
        raise DumpError(f"{where}: not a BSON document ({type(error).__name__}: {error})") from None


def _open(path: Path) -> BufferedIOBase:
    stream: BufferedIOBase = open(path, "rb")  # noqa: SIM115 — the caller's `with` closes it
    if stream.read(2) == GZIP_MAGIC:
        stream.close()
        return gzip.open(path, "rb")
    stream.seek(0)
    return stream


# --------------------------------------------------------------------------- layouts

def archive_prelude(stream: BufferedIOBase, where: str) -> list[dict[str, Any]]:
    """The collection-metadata documents, after checking the magic and the header."""
    if _read(stream, 4, where) != MAGIC:
        raise DumpError(f"{where}: not a mongodump archive (no 0x8199e26d magic number)")
    header = read_document(stream, where)
    if not header:
        raise DumpError(f"{where}: archive header missing")
    if not isinstance(decode(header, where).get("version"), str):
        raise DumpError(f"{where}: archive header without a format version")
    collections: list[dict[str, Any]] = []
    while True:
        raw = read_document(stream, where, terminator=True)
        if raw is None:
            raise DumpError(f"{where}: truncated (no terminator after the collection metadata)")
        if raw == b"":
            return collections
        if len(collections) >= MAX_COLLECTIONS:
            raise DumpError(f"{where}: more than {MAX_COLLECTIONS} collections in the archive prelude")
        collections.append(decode(raw, where))


def archive_documents(path: Path, database: str, collection: str) -> Iterator[bytes]:
    """One collection's documents, in archive order (one pass over the archive)."""
    where = str(path)
    with _open(path) as stream:
        archive_prelude(stream, where)
        while True:
            raw = read_document(stream, where)
            if raw is None:
                return
            header = decode(raw, where)
            ours = header.get("db") == database and header.get("collection") == collection
            if not isinstance(header.get("db"), str) or not isinstance(header.get("collection"), str):
                raise DumpError(f"{where}: a namespace header without db and collection")
            if header.get("EOF") is True:
                if read_document(stream, where, terminator=True) != b"":
                    raise DumpError(f"{where}: no terminator after the end of {header['db']}.{header['collection']}")
                continue
            while True:
                raw = read_document(stream, where, terminator=True)
                if raw is None:
                    raise DumpError(f"{where}: truncated inside {header['db']}.{header['collection']}")
                if raw == b"":
                    break
                if ours:
                    yield raw


def directory_documents(path: Path) -> Iterator[bytes]:
    for buffer, starts in directory_batches(path):
        ends = [*starts[1:], len(buffer)]
        for start, end in zip(starts, ends, strict=True):
            yield buffer[start:end]


def directory_batches(path: Path, chunk: int = 1 << 20) -> Iterator[tuple[bytes, list[int]]]:
    """Runs of whole documents read a megabyte at a time: (buffer, where each document
    starts). Each length is checked before anything more is read for it."""
    where = str(path)
    with _open(path) as stream:
        pending = b""
        need = chunk
        while True:
            data = _read(stream, need, where)
            buffer = pending + data if pending else data
            size, position, starts, end = len(buffer), 0, [], len(buffer)
            need = chunk
            while end - position >= 4:
                size = int.from_bytes(buffer[position:position + 4], "little", signed=True)
                if size < 5 or size > MAX_DOCUMENT:
                    raise DumpError(f"{where}: bad document length {size} "
                                    f"(a BSON document is 5 to {MAX_DOCUMENT} bytes)")
                if end - position < size:
                    need = max(chunk, size - (end - position))
                    break
                if buffer[position + size - 1] != 0:
                    raise DumpError(f"{where}: not a BSON document (no terminating NUL)")
                starts.append(position)
                position += size
            if not data:
                if position < end:
                    raise DumpError(f"{where}: truncated ({end - position} bytes of a document at the end)")
                return
            if starts:
                yield buffer[:position], starts
            pending = buffer[position:]


# --------------------------------------------------------------------------- order

_RANK = {type(None): 1, int: 3, float: 3, Decimal128: 3, str: 4, dict: 5, list: 6, bytes: 7,
         ObjectId: 8, bool: 9, datetime: 10}


def sort_key(value: Any) -> tuple[int, Any]:
    """BSON's comparison order across types (numbers < strings < objects < … < ObjectId);
    an ObjectId by its 12 bytes (the index reads them in place)."""
    if value.__class__ is ObjectId:
        return 8, value.binary
    rank = _RANK.get(type(value), 20)
    if rank == 3:
        return rank, value.to_decimal() if isinstance(value, Decimal128) else Decimal(repr(value)) \
            if isinstance(value, float) else value
    if rank in (1, 5, 6) or rank == 20:
        return rank, repr(value)
    return rank, value


def first_id(raw: bytes, where: str, start: int = 0) -> Any:
    """The `_id` of a raw document: read in place when it is the first field (mongodump
    writes it first), else by decoding the document."""
    if raw[start + 4] == 0x07 and raw[start + 5:start + 9] == b"_id\x00":
        return ObjectId(raw[start + 9:start + 21])
    size = int.from_bytes(raw[start:start + 4], "little")
    return decode(raw[start:start + size], where).get("_id")


def first_key(raw: bytes, where: str, start: int = 0) -> tuple[int, Any]:
    """sort_key(first_id(...)) without making an ObjectId."""
    if raw[start + 4] == 0x07 and raw[start + 5:start + 9] == b"_id\x00":
        return 8, raw[start + 9:start + 21]
    return sort_key(first_id(raw, where, start))


@dataclass
class _Index:
    count: int = 0
    low: Any = None
    high: Any = None
    ordered: bool = True
    spill: Path | None = None  # the copy read back in `_id` order when the dump is not
    offsets: list[tuple[tuple[int, Any], int, int]] = field(default_factory=list)


# --------------------------------------------------------------------------- queries

_OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$type")


def _values(document: Any, path: str) -> list[Any]:
    """What a dotted path holds, arrays traversed as Mongo does (empty: absent)."""
    current = [document]
    for step in path.split("."):
        following = []
        for value in current:
            if isinstance(value, dict) and step in value:
                following.append(value[step])
            elif isinstance(value, list):
                following.extend(item[step] for item in value if isinstance(item, dict) and step in item)
        current = following
    flat = []
    for value in current:
        flat.append(value)
        if isinstance(value, list):
            flat.extend(value)
    return flat


def _same(value: Any, wanted: Any) -> bool:
    if isinstance(value, bool) or isinstance(wanted, bool):  # true is not 1 in a query
        return type(value) is type(wanted) and value == wanted
    return bool(value == wanted)


def _equal(found: list[Any], wanted: Any) -> bool:
    if wanted is None:  # null matches an absent field too
        return not found or any(value is None for value in found)
    return any(_same(value, wanted) for value in found)


def _compare(found: list[Any], operator: str, bound: Any) -> bool:
    key = sort_key(bound)
    for value in found:
        mine = sort_key(value)
        if mine[0] != key[0]:
            continue  # Mongo compares within one type class
        if (operator == "$gt" and mine > key) or (operator == "$gte" and mine >= key) \
                or (operator == "$lt" and mine < key) or (operator == "$lte" and mine <= key):
            return True
    return False


def matches(document: dict[str, Any], query: dict[str, Any]) -> bool:
    """Whether a document matches a query of the operators verify uses (see _OPERATORS,
    `$and`, `$or`); raises DumpError for anything else."""
    for name, condition in query.items():
        if name == "$and":
            if not all(matches(document, part) for part in condition):
                return False
            continue
        if name == "$or":
            if not any(matches(document, part) for part in condition):
                return False
            continue
        if name.startswith("$"):
            raise DumpError(f"query operator {name!r} is not supported with --mongo-dump")
        found = _values(document, name)
        if isinstance(condition, dict) and condition and all(str(key).startswith("$") for key in condition):
            for operator, argument in condition.items():
                if operator not in _OPERATORS:
                    raise DumpError(f"query operator {operator!r} is not supported with --mongo-dump")
                if operator == "$eq" and not _equal(found, argument):
                    return False
                if operator == "$ne" and _equal(found, argument):
                    return False
                if operator == "$in" and not any(_equal(found, item) for item in argument):
                    return False
                if operator == "$nin" and any(_equal(found, item) for item in argument):
                    return False
                if operator == "$exists" and bool(found) != bool(argument):
                    return False
                if operator == "$type":
                    if argument != "objectId":
                        raise DumpError(f"$type {argument!r} is not supported with --mongo-dump")
                    if not any(isinstance(value, ObjectId) for value in found):
                        return False
                if operator in ("$gt", "$gte", "$lt", "$lte") and not _compare(found, operator, argument):
                    return False
        elif not _equal(found, condition):
            return False
    return True


# --------------------------------------------------------------------------- the side

@dataclass
class _Cursor:
    query: dict[str, Any]
    documents: Iterator[dict[str, Any]]
    last: tuple[int, Any] | None = None  # the sort key of the last document returned


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
        if database is None:
            if len(databases) != 1:
                raise DumpError(f"--mongo-dump {str(path)!r} holds databases {', '.join(databases) or 'none'}: "
                                "name one with --mongo-db")
            database = next(iter(databases))
        if database not in databases:
            raise DumpError(f"Mongo database {database!r} does not exist in the dump {str(path)!r} "
                            f"(it holds: {', '.join(databases) or 'none'})")
        return cls(path, database, False, collections(databases[database]))

    @classmethod
    def _archive(cls, path: Path, database: str | None) -> DumpMongo:
        with _open(path) as stream:
            prelude = archive_prelude(stream, str(path))
        names: dict[str, set[str]] = {}
        for metadata in prelude:
            if isinstance(metadata.get("db"), str) and isinstance(metadata.get("collection"), str):
                names.setdefault(metadata["db"], set()).add(metadata["collection"])
        if database is None:
            if len(names) != 1:
                raise DumpError(f"--mongo-dump {str(path)!r} holds databases {', '.join(sorted(names)) or 'none'}: "
                                "name one with --mongo-db")
            database = next(iter(names))
        if database not in names:
            raise DumpError(f"Mongo database {database!r} does not exist in the archive {str(path)!r} "
                            f"(it holds: {', '.join(sorted(names)) or 'none'})")
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
                yield _joined(run)
                run = []
        if run:
            yield _joined(run)

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

    def _matching(self, collection: str, query: dict[str, Any]) -> Iterator[dict[str, Any]]:
        where = self._where(collection)
        for buffer in self._ordered(collection):
            try:
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
        pass serves every page (a page that goes back starts a new pass)."""
        cursor = self.cursors.get(collection)
        bound = None if after is None else sort_key(after)
        if cursor is None or cursor.query != query or bound is None or cursor.last is None or bound < cursor.last:
            cursor = _Cursor(query, self._matching(collection, query))
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


def _joined(run: list[bytes]) -> tuple[bytes, list[int]]:
    starts, position = [], 0
    for raw in run:
        starts.append(position)
        position += len(raw)
    return b"".join(run), starts


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
