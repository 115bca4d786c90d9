"""The MongoDB shadow source (after a read flip the API reads PostgreSQL and Mongo
becomes the shadow): one `_id: {$in: [...]}` query per batch, documents through the
generic toJSON shape (shadow.replay.sources.apijson)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bson import ObjectId
from pymongo import AsyncMongoClient

from shadow.replay.sources.apijson import api_document
from shadow.rules.spec import Entity, Route

if TYPE_CHECKING:
    from shadow.replay.viewread import BoundReader

Document = dict[str, Any]


class MongoSource:
    name = "mongo"

    def __init__(self, client_or_uri: AsyncMongoClient[Document] | str, database: str, *, timeout: float = 2.0) -> None:
        if isinstance(client_or_uri, str):
            self.client: AsyncMongoClient[Document] = AsyncMongoClient(
                client_or_uri, tz_aware=True, serverSelectionTimeoutMS=int(timeout * 1000),
                timeoutMS=int(timeout * 1000))
            self._own_client = True
        else:
            self.client, self._own_client = client_or_uri, False
        self.database = self.client[database]
        self.round_trips = 0

    async def close(self) -> None:
        if self._own_client:
            await self.client.close()

    @staticmethod
    def _mongo_id(entity: Entity, key: str) -> Any:
        return ObjectId(key) if entity.key_type == "objectid" else key

    async def fetch(self, entity: Entity, keys: list[str], reader: BoundReader | None = None) -> dict[str, Any]:
        """key -> the stored document as the API shows it, or None when there is none."""
        if entity.view:
            raise ValueError(f"{entity.name} is a view model: no stored document to read; compare with --url")
        keys = list(dict.fromkeys(keys))
        if not keys:
            return {}
        self.round_trips += 1
        cursor = self.database[entity.collection].find({"_id": {"$in": [self._mongo_id(entity, key) for key in keys]}})
        found = {str(document["_id"]): api_document(entity, document) async for document in cursor}
        return {key: found.get(key) for key in keys}

    async def list_keys(self, entity: Entity, route: Route, params: Mapping[str, str]) -> set[str]:
        """The keys a complete list route's filter selects: each `where` column is mapped
        back to the API field that is rebuilt from it (refs as ObjectIds)."""
        by_column = {spec.column: spec for spec in entity.fields.values() if spec.kind in ("column", "ref")}
        query: dict[str, Any] = {}
        for condition in route.where:
            if condition.query is not None or condition.op != "eq" or condition.by is not None \
                    or condition.reader or condition.reader_set is not None or condition.through is not None:
                raise LookupError(f"{route.name}: the mongo source checks path-parameter and constant equality "
                                  f"filters only (where {condition.column!r})")
            spec = by_column.get(condition.column)
            if spec is None:
                raise LookupError(f"{route.name}: no field of {entity.name!r} is rebuilt from column "
                                  f"{condition.column!r}")
            value: Any = params.get(condition.param) if condition.param is not None else condition.value
            if spec.kind == "ref" and value is not None:
                value = ObjectId(str(value))
            query[spec.name] = value
        self.round_trips += 1
        cursor = self.database[entity.collection].find(query, {"_id": 1})
        return {str(document["_id"]) async for document in cursor}
