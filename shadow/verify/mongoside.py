"""The Mongo side of a verify run: the few reads the layers make, from a live server
(`LiveMongo`) or from a mongodump snapshot (`shadow.verify.dump.DumpMongo`), so every
layer reads both the same way.

    documents(collection, query, projection)   every matching document, in `_id` order
    page(collection, query, after, size, ...)  a keyset page of them (the docs layer)
    sorted_by(collection, query, paths)        projected documents sorted by `paths` (sets)
    count(collection, query) / key_bounds(collection) / existing(collection, ids)
    native_sums(...)                           the server's own `$sum` (None: no server)
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any, Protocol

from bson import ObjectId


class MongoSide(Protocol):
    name: str  # what the report says was read: the database, or the dump path

    async def problems(self, collections: Iterable[str]) -> dict[str, str]:
        """Collection -> why it cannot be read (absent); "" key: the database itself."""
        ...

    def documents(self, collection: str, query: dict[str, Any],
                  projection: dict[str, Any] | None = None) -> AsyncIterator[dict[str, Any]]: ...

    async def page(self, collection: str, query: dict[str, Any], after: Any, size: int,
                   inclusive: bool) -> list[dict[str, Any]]: ...

    def sorted_by(self, collection: str, query: dict[str, Any], paths: list[str]) -> AsyncIterator[dict[str, Any]]: ...

    async def count(self, collection: str, query: dict[str, Any]) -> int: ...

    async def key_bounds(self, collection: str) -> tuple[str | None, str | None]: ...

    async def existing(self, collection: str, ids: list[Any]) -> set[Any]: ...

    async def native_sums(self, collection: str, query: dict[str, Any], value_path: str,
                          by_paths: list[str]) -> list[tuple[tuple[Any, ...], Any, int]] | None: ...


def lookup_ids(value: Any) -> list[Any]:
    """The `_id` values a stored reference may name: the value itself and, whatever its
    stored type, the other spelling of an ObjectId (an ObjectId as its hex string, a
    24-hex string as an ObjectId). Whether it resolves is then decided by the target."""
    if isinstance(value, ObjectId):
        return [value, str(value)]
    if isinstance(value, str) and ObjectId.is_valid(value) and len(value) == 24:
        return [value, ObjectId(value)]
    if isinstance(value, dict | list):
        return []  # a subdocument names no document
    return [value]


class LiveMongo:
    """A live server: queries pushed down, keyset pages by `_id`."""

    def __init__(self, client: Any, database: str) -> None:
        self.client, self.name = client, database
        self.db = client[database]

    async def problems(self, collections: Iterable[str]) -> dict[str, str]:
        # listCollections only (the `read` role has it; listDatabases needs more): Mongo
        # keeps no empty database, so a database without collections does not exist
        present = set(await self.db.list_collection_names())
        if not present:
            return {"": f"Mongo database {self.name!r} does not exist on the server (no collections)"}
        return {name: f"collection {name!r} does not exist in Mongo database {self.name!r}"
                for name in collections if name not in present}

    async def documents(self, collection: str, query: dict[str, Any],
                        projection: dict[str, Any] | None = None) -> AsyncIterator[dict[str, Any]]:
        async for document in self.db[collection].find(query, projection).sort("_id", 1).batch_size(2000):
            yield document

    async def page(self, collection: str, query: dict[str, Any], after: Any, size: int,
                   inclusive: bool) -> list[dict[str, Any]]:
        bound = {} if after is None else {"_id": {"$gte" if inclusive else "$gt": after}}
        wanted = {"$and": [query, bound]} if bound and query else (bound or query)
        return [document async for document in self.db[collection].find(wanted).sort("_id", 1).limit(size)]

    async def sorted_by(self, collection: str, query: dict[str, Any],
                        paths: list[str]) -> AsyncIterator[dict[str, Any]]:
        async for document in self.db[collection].find(query, dict.fromkeys(paths, 1)).sort([(p, 1) for p in paths]):
            yield document

    async def count(self, collection: str, query: dict[str, Any]) -> int:
        return int(await self.db[collection].count_documents(query))

    async def key_bounds(self, collection: str) -> tuple[str | None, str | None]:
        first = await self.db[collection].find_one({}, {"_id": 1}, sort=[("_id", 1)])
        last = await self.db[collection].find_one({}, {"_id": 1}, sort=[("_id", -1)])
        return (str(first["_id"]) if first else None), (str(last["_id"]) if last else None)

    async def existing(self, collection: str, ids: list[Any]) -> set[Any]:
        found: set[Any] = set()
        for start in range(0, len(ids), 1000):
            async for document in self.db[collection].find({"_id": {"$in": ids[start:start + 1000]}}, {"_id": 1}):
                found.add(document["_id"])
        return found

    async def native_sums(self, collection: str, query: dict[str, Any], value_path: str,
                          by_paths: list[str]) -> list[tuple[tuple[Any, ...], Any, int]] | None:
        group_id = {f"k{index}": f"${path}" for index, path in enumerate(by_paths)} or None
        rows = []
        async for row in await self.db[collection].aggregate([
                {"$match": query}, {"$group": {"_id": group_id, "t": {"$sum": f"${value_path}"}, "n": {"$sum": 1}}}]):
            key = row["_id"] or {}
            rows.append((tuple(key.get(f"k{index}") for index in range(len(by_paths))), row["t"], int(row["n"])))
        return rows
