"""The byte layouts mongodump writes, read with every length checked first (the
`--mongo-dump` reader; `shadow.verify.dump` is the Mongo side built on it).

    directory   PATH/<db>/<collection>.bson[.gz]    (or PATH is the <db> folder itself)
    archive     one file (`--archive`): magic 0x8199e26d (little-endian), a header
                document, collection-metadata documents, 0xFFFFFFFF; then segments
                `namespace header {db, collection, EOF, CRC}, documents…, 0xFFFFFFFF`
                of the collections interleaved, and one EOF header per collection

Every document is framed by its own int32 length, checked before it is read (5 bytes to
16 MiB + 16 KiB, ending in NUL), so a truncated file, a bad length or a decompression
bomb is an error naming the file, never a huge read; then decoded by pymongo's `bson`.
"""
from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from datetime import UTC
from io import BufferedIOBase
from pathlib import Path
from typing import Any

import bson
from bson.codec_options import CodecOptions

from shadow.verify.scope import BadFlag

MAGIC = b"\x6d\xe2\x99\x81"  # 0x8199e26d, little-endian
TERMINATOR = b"\xff\xff\xff\xff"
GZIP_MAGIC = b"\x1f\x8b"
MAX_DOCUMENT = 16 * 1024 * 1024 + 16 * 1024  # BSON's 16 MiB and the server's headroom
MAX_COLLECTIONS = 100_000  # collection-metadata documents an archive prelude may hold
#: dates carry datetime's own UTC (bson's default is its own FixedOffset, whose Python
#: utcoffset() every toISOString() conversion would call: a tenth of the docs layer)
OPTIONS: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True, tzinfo=UTC)



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


def open_dump_file(path: Path) -> BufferedIOBase:
    stream: BufferedIOBase = open(path, "rb")  # noqa: SIM115 — the caller's `with` closes it
    if stream.read(2) == GZIP_MAGIC:
        stream.close()
        return gzip.open(path, "rb")
    stream.seek(0)
    return stream


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
    with open_dump_file(path) as stream:
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


def directory_batches(path: Path, chunk: int = 1 << 20) -> Iterator[tuple[bytes, list[int]]]:
    """Runs of whole documents read a megabyte at a time: (buffer, where each document
    starts). Each length is checked before anything more is read for it."""
    where = str(path)
    with open_dump_file(path) as stream:
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


def joined_run(run: list[bytes]) -> tuple[bytes, list[int]]:
    starts, position = [], 0
    for raw in run:
        starts.append(position)
        position += len(raw)
    return b"".join(run), starts
