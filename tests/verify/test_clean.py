"""A consistent copy: every layer of every entity clean, exit 0, zero differences."""
from __future__ import annotations

import json

from tests.verify.conftest import Domain, differences, shadow_verify


async def test_consistent_copy_is_clean_on_every_layer(domain: Domain) -> None:
    code, report, err = await shadow_verify(domain, "--json")
    assert differences(report) == [], json.dumps(differences(report)[:3])
    assert code == 0, err
    views = {"purchase_request_views", "purchase_request_statuses"}  # computed per read: the API is the only control
    for name, entity in report["entities"].items():
        if name in views:
            assert not entity["verifiable"] and entity["reason"], name
            continue
        assert entity["verifiable"], name
        assert {layer: result["status"] for layer, result in entity["layers"].items()} == \
            {"counts": "clean", "sums": "clean", "docs": "clean"}, name
    payments = report["entities"]["payments"]["layers"]
    assert payments["docs"]["checked"] == len(domain.dataset.collections["payments"])
    assert payments["sums"]["checked"] >= 2  # groups of the amount sum + the idempotency set
