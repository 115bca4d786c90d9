"""Our own mongodump writer for the tests (no mongodump binary here): a dump directory
(<db>/<collection>.bson[.gz]) or an --archive file, from the test Mongo server, in the
byte layout mongodump writes (see shadow/verify/dump.py)."""
from __future__ import annotations

import gzip
import random
from pathlib import Path
from typing import Any

import bson
from bson import Int64
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient

from shadow.verify.dumpfile import MAGIC, TERMINATOR

RAW: CodecOptions[RawBSONDocument] = CodecOptions(document_class=RawBSONDocument)


async def raw_collections(uri: str, database: str) -> dict[str, list[bytes]]:
    """Every collection's documents as the server stores them (raw BSON), natural order."""
    client: AsyncMongoClient[Any] = AsyncMongoClient(uri)
    try:
        db = client[database]
        found = {}
        for name in sorted(await db.list_collection_names()):
            collection = db.get_collection(name, codec_options=RAW)
            found[name] = [document.raw async for document in collection.find({})]
        return found
    finally:
        await client.close()


def write_directory(collections: dict[str, list[bytes]], folder: Path, database: str, *,
                    gz: bool = False, shuffle: bool = False) -> Path:
    target = folder / database
    target.mkdir(parents=True)
    for name, documents in collections.items():
        documents = list(documents)
        if shuffle:  # not in _id order: the reader must sort
            random.Random(7).shuffle(documents)
        data = b"".join(documents)
        if gz:
            (target / f"{name}.bson.gz").write_bytes(gzip.compress(data))
        else:
            (target / f"{name}.bson").write_bytes(data)
        (target / f"{name}.metadata.json").write_text('{"indexes": []}')
    return folder


def write_archive(collections: dict[str, list[bytes]], path: Path, database: str, *, gz: bool = False,
                  segment: int = 5) -> Path:
    """An archive with the collections' documents interleaved in segments."""
    parts = [MAGIC, bson.encode({"concurrent_collections": 4, "version": "0.1", "server_version": "7.0.0",
                                 "tool_version": "shadow-tests"})]
    for name, documents in collections.items():
        parts.append(bson.encode({"db": database, "collection": name, "metadata": '{"indexes": []}',
                                  "size": sum(len(d) for d in documents)}))
    parts.append(TERMINATOR)
    queues = {name: [documents[i:i + segment] for i in range(0, len(documents), segment)]
              for name, documents in collections.items()}
    while any(queues.values()):
        for name, queue in queues.items():
            if queue:
                parts.append(bson.encode({"db": database, "collection": name, "EOF": False, "CRC": Int64(0)}))
                parts.extend(queue.pop(0))
                parts.append(TERMINATOR)
    for name in collections:
        parts.append(bson.encode({"db": database, "collection": name, "EOF": True, "CRC": Int64(0)}))
        parts.append(TERMINATOR)
    data = b"".join(parts)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path
