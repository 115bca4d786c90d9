"""--mongo-db has no domain default: a Mongo source without a database name is refused
at start, naming the flag, instead of reading some demo database."""
from __future__ import annotations

import pytest

from shadow.config import Config, ConfigError


def test_mongo_without_a_database_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="--mongo-db / SHADOW_MONGO_DB: required with --mongo"):
        Config.parse({"upstream": "http://127.0.0.1:1", "rules": ".", "mongo": "mongodb://127.0.0.1:1"}, environ={})


def test_no_mongo_needs_no_database_and_the_default_is_nothing_domain_specific() -> None:
    config = Config.parse({"upstream": "http://127.0.0.1:1", "rules": "."}, environ={})
    assert config.mongo_db is None
    given = Config.parse({"upstream": "http://127.0.0.1:1", "rules": ".", "mongo": "mongodb://127.0.0.1:1"},
                         environ={"SHADOW_MONGO_DB": "orders"})
    assert given.mongo_db == "orders"
