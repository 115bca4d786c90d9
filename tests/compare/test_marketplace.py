"""The shipped marketplace rules against the domain's real data (PostgreSQL rebuilt
through id_map, Mongo documents in the API's toJSON shape): consistent documents
match, each planted divergence is found at exactly its path, the "not a divergence"
plants (decimal scale, µs) match."""
from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pymongo import AsyncMongoClient

from shadow.compare.diff import compare
from shadow.compare.explain import explain
from shadow.demo.marketplace.tojson import to_api
from shadow.model import Outcome, Verdict
from shadow.replay.sources.mongo import MongoSource
from shadow.replay.sources.postgres import PostgresSource
from shadow.rules import RuleSet, load_rules

RULES = Path(__file__).resolve().parents[2] / "rules" / "marketplace"
TODAY = date(2026, 11, 22)


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules(RULES)


def under(path: str, plant: str) -> bool:
    return path == plant or path.startswith(plant + ".") or path.startswith(plant + "[")


async def verdicts(rules: RuleSet, marketplace: Any) -> dict[tuple[str, str], Verdict]:
    """Every document of every entity: control = its toJSON shape, candidate = the PG
    rebuild, fetched in batches of 50 keys."""
    source = await PostgresSource.create(marketplace.pg_dsn)
    found: dict[tuple[str, str], Verdict] = {}
    try:
        for entity in (e for e in rules.entities.values() if not e.view):  # views: no stored document
            controls = {str(doc["_id"]): to_api(entity.collection, doc)
                        for doc in marketplace.dataset.collections[entity.collection]}
            keys = list(controls)
            assert keys, entity.name
            for start in range(0, len(keys), 50):
                candidates = await source.fetch(entity, keys[start:start + 50])
                for key, candidate in candidates.items():
                    found[(entity.name, key)] = compare(entity, controls[key], candidate, TODAY)
    finally:
        await source.close()
    return found


async def test_consistent_documents_match_and_every_plant_is_found_at_its_path(rules: RuleSet, marketplace: Any) -> None:
    found = await verdicts(rules, marketplace)
    plants = {(plant.entity, plant.legacy_id): plant for plant in marketplace.drifts}
    assert {plant.entity for plant in plants.values()} <= set(rules.entities)
    assert len(plants) == 12 and all(key in found for key in plants)
    unexpected = {key: verdict for key, verdict in found.items()
                  if key not in plants and verdict.outcome is not Outcome.MATCH}
    assert unexpected == {}
    for key, plant in plants.items():
        verdict = found[key]
        if not plant.divergent:
            assert verdict.outcome is Outcome.MATCH, (plant, verdict)
        elif plant.path == "":
            assert verdict.outcome is Outcome.MISSING, (plant, verdict)
        else:
            assert verdict.outcome is Outcome.MISMATCH, (plant, verdict)
            assert verdict.diffs and all(under(diff.path, plant.path) for diff in verdict.diffs), (plant, verdict)
    assert len(found) > 100  # every entity, every document


async def test_explain_agrees_on_the_planted_paths(rules: RuleSet, marketplace: Any) -> None:
    source = await PostgresSource.create(marketplace.pg_dsn)
    try:
        for plant in marketplace.drifts:
            if not plant.divergent or not plant.path:
                continue
            entity = rules.entities[plant.entity]
            control = to_api(entity.collection, marketplace.dataset.by_id(entity.collection)[plant.legacy_id])
            candidate = (await source.fetch(entity, [plant.legacy_id]))[plant.legacy_id]
            paths = {diff.path for diff in explain(entity, control, candidate)}
            assert paths and all(under(path, plant.path) for path in paths), (plant, paths)
    finally:
        await source.close()


async def test_through_the_sample_api_and_the_mongo_source(rules: RuleSet, marketplace: Any, sample_api: str) -> None:
    """The control as the HTTP API serves it, routed by the rules; and the reverse
    direction (mongo source) rebuilds the same documents."""
    pg = await PostgresSource.create(marketplace.pg_dsn)
    client: AsyncMongoClient = AsyncMongoClient(marketplace.mongo_uri, tz_aware=True)
    mongo = MongoSource(client, marketplace.mongo_db)
    plants = {plant.legacy_id for plant in marketplace.drifts}
    try:
        async with aiohttp.ClientSession() as session:
            for entity in (e for e in rules.entities.values() if not e.view):
                route = next(route for route in rules.routes
                             if route.entity == entity.name and route.method == "GET" and not route.is_list)
                key = next(str(doc["_id"]) for doc in marketplace.dataset.collections[entity.collection]
                           if str(doc["_id"]) not in plants)
                path = route.template.replace("{id}", key)
                async with session.get(sample_api + path) as response:
                    body = await response.json()
                match = rules.match("GET", path)
                assert match is not None and match.route is route
                controls = route.controls(match, {}, {}, body)
                candidate = (await pg.fetch(entity, [key]))[key]
                assert compare(entity, controls[key], candidate, TODAY).outcome is Outcome.MATCH, entity.name
                from_mongo = (await mongo.fetch(entity, [key]))[key]
                assert compare(entity, from_mongo, candidate, TODAY).outcome is Outcome.MATCH, entity.name
    finally:
        await pg.close()
        await client.close()


async def test_complete_list_routes_list_the_same_keys(rules: RuleSet, marketplace: Any, sample_api: str) -> None:
    pg = await PostgresSource.create(marketplace.pg_dsn)
    client: AsyncMongoClient = AsyncMongoClient(marketplace.mongo_uri, tz_aware=True)
    mongo = MongoSource(client, marketplace.mongo_db)
    user = str(marketplace.dataset.collections["users"][0]["_id"])
    try:
        async with aiohttp.ClientSession() as session:
            for route in (route for route in rules.routes if route.complete and not rules.entities[route.entity].view):
                path = route.template.replace("{id}", user)
                async with session.get(sample_api + path) as response:
                    body = await response.json()
                match = rules.match("GET", path)
                assert match is not None
                shown = set(route.controls(match, {}, {}, body))
                entity = rules.entities[route.entity]
                assert await pg.list_keys(entity, route, match.params) == shown, route.name
                assert await mongo.list_keys(entity, route, match.params) == shown, route.name
    finally:
        await pg.close()
        await client.close()
