"""`--mongo-dump`: a dump directory or archive (gzip or not, in `_id` order or not) gives
the same report as the live server it was taken from; a hostile dump is exit 2 naming
the file, never a crash or a huge read."""
from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bson
import pytest
from bson import ObjectId

from normalizers.values import iso_ms
from shadow.verify.dump import DumpMongo
from shadow.verify.dumpfile import MAGIC, MAX_DOCUMENT, TERMINATOR, DumpError
from shadow.verify.dumpquery import matches
from tests.verify.conftest import Domain, shadow_verify, valid_report
from tests.verify.dumps import raw_collections, write_archive, write_directory
from tests.verify.test_planted import plant


def findings(report: dict[str, Any]) -> dict[str, Any]:
    """What a run found, per entity and layer, without timings and the source."""
    return {name: {layer: {key: value for key, value in result.items() if key != "seconds"}
                   for layer, result in entity["layers"].items()} | {"verifiable": entity["verifiable"]}
            for name, entity in report["entities"].items()}


async def test_a_dump_gives_the_same_report_as_the_live_server(domain: Domain, tmp_path: Path) -> None:
    await plant(domain)
    # one redaction key for every run: masked values (the planted e-mail) compare across processes
    same_masks = {"SHADOW_REDACTION_KEY": "one-key-for-all-runs"}
    code, live, err = await shadow_verify(domain, "--json", env=same_masks)
    assert code == 1, err
    collections = await raw_collections(domain.mongo_uri, domain.mongo_db)
    dumps = {
        "directory": write_directory(collections, tmp_path / "dir", domain.mongo_db),
        "directory, gzip, not in _id order": write_directory(collections, tmp_path / "gz", domain.mongo_db,
                                                             gz=True, shuffle=True),
        "archive": write_archive(collections, tmp_path / "dump.archive", domain.mongo_db),
        "archive, gzip": write_archive(collections, tmp_path / "dump.archive.gz", domain.mongo_db, gz=True),
    }
    for layout, path in dumps.items():
        code, snapshot, err = await shadow_verify(domain, "--json", mongo=("--mongo-dump", str(path)), env=same_masks)
        assert code == 1, (layout, err)
        valid_report(snapshot)
        assert snapshot["source"].startswith("mongodump ")
        assert findings(snapshot) == findings(live), layout


def framed(*documents: bytes) -> bytes:
    return b"".join(documents)


GOOD = bson.encode({"_id": ObjectId("65a1b2c3d4e5f60718293a4b"), "name": "x"})
HEADER = bson.encode({"concurrent_collections": 1, "version": "0.1"})


HOSTILE_FILES = [
    ("truncated document", GOOD[:-3], "truncated"),
    ("truncated length", GOOD + b"\x10\x00", "truncated"),
    ("length below 5", b"\x04\x00\x00\x00" + GOOD, "bad document length 4"),
    ("negative length", b"\xff\xff\xff\x7f" + GOOD, "bad document length"),
    ("length above 16 MiB", (MAX_DOCUMENT + 1).to_bytes(4, "little") + b"\x00" * 64, "bad document length"),
    ("no terminating NUL", GOOD[:-1] + b"\x01", "no terminating NUL"),
    ("garbage inside", b"\x0d\x00\x00\x00\x7f_id\x00\x01\x02\x03\x04\x00", "not a BSON document"),
    ("gzip bomb-ish: a huge declared length", gzip.compress(b"\xff\xff\xff\x0f" + b"\x00" * 1_000_000),
     "bad document length"),
    ("gzip of zeros", gzip.compress(b"\x00" * 1_000_000), "bad document length 0"),
    ("truncated gzip", gzip.compress(GOOD * 50)[:-20], "EOFError"),
]


@pytest.mark.parametrize(("name", "content", "message"), HOSTILE_FILES, ids=[case[0] for case in HOSTILE_FILES])
async def test_hostile_dump_files_exit_2(domain: Domain, tmp_path: Path, name: str, content: bytes,
                                          message: str) -> None:
    folder = tmp_path / domain.mongo_db
    folder.mkdir()
    (folder / "users.bson").write_bytes(content)
    code, out, err = await shadow_verify(domain, "--entity", "users", "--layer", "docs",
                                         mongo=("--mongo-dump", str(tmp_path)))
    assert code == 2 and message in out + err and "users.bson" in out + err, (name, out, err)


NAMESPACE = bson.encode({"db": "shop", "collection": "users", "EOF": False, "CRC": bson.Int64(0)})


HOSTILE_ARCHIVES = [
    ("empty file", b"", "not a mongodump archive"),
    ("wrong magic", b"\x81\x99\xe2\x6d" + HEADER + TERMINATOR, "not a mongodump archive"),
    ("a .bson file, not an archive", GOOD, "not a mongodump archive"),
    ("no header", MAGIC, "archive header missing"),
    ("header without version", MAGIC + bson.encode({"x": 1}) + TERMINATOR, "without a format version"),
    ("prelude never ends", MAGIC + HEADER + bson.encode({"db": "shop", "collection": "users"}), "no terminator"),
    ("segment never ends", MAGIC + HEADER + bson.encode({"db": "shop", "collection": "users"}) + TERMINATOR
     + NAMESPACE + GOOD, "truncated inside shop.users"),
    ("namespace header without names", MAGIC + HEADER + bson.encode({"db": "shop", "collection": "users"})
     + TERMINATOR + bson.encode({"EOF": False}) + GOOD + TERMINATOR, "without db and collection"),
    ("bad length in a segment", MAGIC + HEADER + bson.encode({"db": "shop", "collection": "users"}) + TERMINATOR
     + NAMESPACE + b"\x02\x00\x00\x00", "bad document length 2"),
    ("a prelude of endless collections", MAGIC + HEADER + bson.encode({"db": "shop", "collection": "c"}) * 100_001
     + TERMINATOR, "more than 100000 collections"),
    ("database not in the archive", MAGIC + HEADER + bson.encode({"db": "other", "collection": "users"})
     + TERMINATOR, "does not exist in the archive"),
]


@pytest.mark.parametrize(("name", "content", "message"), HOSTILE_ARCHIVES, ids=[case[0] for case in HOSTILE_ARCHIVES])
async def test_hostile_archives_exit_2(domain: Domain, tmp_path: Path, name: str, content: bytes,
                                       message: str) -> None:
    archive = tmp_path / "dump.archive"
    archive.write_bytes(content)
    code, out, err = await shadow_verify(domain, "--entity", "users", "--layer", "docs",
                                         mongo=("--mongo-dump", str(archive), "--mongo-db", "shop"))
    assert code == 2 and message in out + err, (name, out, err)


async def test_a_dump_without_the_database_or_collection_is_exit_2(domain: Domain, tmp_path: Path) -> None:
    collections = await raw_collections(domain.mongo_uri, domain.mongo_db)
    path = write_directory({"users": collections["users"]}, tmp_path, domain.mongo_db)
    code, out, _ = await shadow_verify(domain, "--entity", "users", mongo=("--mongo-dump", str(path),
                                                                          "--mongo-db", "nope"))
    assert code == 2 and "Mongo database 'nope' does not exist in the dump" in out
    code, out, _ = await shadow_verify(domain, "--entity", "addresses", "--layer", "counts",
                                       mongo=("--mongo-dump", str(path)))
    assert code == 2 and "collection 'addresses' does not exist in the dump" in out
    code, _, err = await shadow_verify(domain, "--entity", "users", mongo=("--mongo-dump", str(tmp_path / "none")))
    assert code == 2 and "no such directory or file" in err + _
    code, out, _ = await shadow_verify(domain, "--entity", "users", mongo=("--mongo-dump", str(path),
                                                                          "--mongo-db", "../etc"))
    assert code == 2 and "not a database name" in out


@pytest.mark.parametrize(("query", "document", "expected"), [
    ({"deletedAt": None}, {"a": 1}, True),
    ({"deletedAt": None}, {"deletedAt": None}, True),
    ({"deletedAt": None}, {"deletedAt": 5}, False),
    ({"status": "pending"}, {"status": "pending"}, True),
    ({"flag": True}, {"flag": 1}, False),
    ({"n": {"$gte": 2, "$lt": 5}}, {"n": 3}, True),
    ({"n": {"$gte": 2}}, {"n": "3"}, False),  # types compare within their class
    ({"tags": "a"}, {"tags": ["b", "a"]}, True),
    ({"a.b": {"$ne": None}}, {"a": {"b": 0}}, True),
    ({"$or": [{"x": 1}, {"y": 2}]}, {"y": 2}, True),
    ({"$and": [{"x": 1}, {"y": 2}]}, {"y": 2}, False),
    ({"s": {"$in": ["a", "b"]}}, {"s": "b"}, True),
    ({"s": {"$exists": False}}, {}, True),
])
def test_dump_queries_match_as_mongo_does(query: dict[str, Any], document: dict[str, Any], expected: bool) -> None:
    assert matches(document, query) is expected


@pytest.mark.parametrize("query", [{"$where": "1"}, {"a": {"$regex": "x"}}, {"a": {"$type": "string"}}])
def test_dump_refuses_operators_it_cannot_evaluate(query: dict[str, Any]) -> None:
    with pytest.raises(DumpError, match="not supported with --mongo-dump"):
        matches({"a": 1}, query)


def test_open_refuses_what_is_not_a_dump(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.bson").write_bytes(GOOD)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "y.bson").write_bytes(GOOD)
    with pytest.raises(DumpError, match="name one with --mongo-db"):
        DumpMongo.open(str(tmp_path), None)
    assert DumpMongo.open(str(tmp_path), "b").collections.keys() == {"y"}


@pytest.mark.parametrize("ids", [
    [datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)],
    [{"day": datetime(2024, 1, 1, tzinfo=UTC), "n": 1}, {"day": datetime(2024, 1, 1, tzinfo=UTC), "n": 2}],
])
async def test_a_dump_page_keys_dates_as_the_live_server_does(tmp_path: Path, ids: list[Any]) -> None:
    """The docs layer's pages decode dates naive (cheaper; they only become
    toISOString() text), except where the key text would change: `_id`s that are or hold
    dates, and a query comparing with a date, read as a live server gives them (UTC)."""
    at = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "c.bson").write_bytes(b"".join(bson.encode({"_id": key, "at": at}) for key in ids))
    dump = DumpMongo.open(str(tmp_path), "db")
    page = await dump.page("c", {}, None, 10, False)
    assert [str(document["_id"]) for document in page] == [str(key) for key in ids]

    (tmp_path / "db" / "c.bson").write_bytes(bson.encode({"_id": ObjectId("5f0000000000000000000001"), "at": at}))
    plain = await DumpMongo.open(str(tmp_path), "db").page("c", {}, None, 10, False)
    assert iso_ms(plain[0]["at"]) == iso_ms(at) == "2024-05-06T07:08:09.123Z"
    by_date = await DumpMongo.open(str(tmp_path), "db").page("c", {"at": {"$gte": at}}, None, 10, False)
    assert [document["at"] for document in by_date] == [at]
