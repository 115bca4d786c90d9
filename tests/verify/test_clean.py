"""A consistent copy: every layer of every entity clean, exit 0, zero differences."""
from __future__ import annotations

import json

from tests.verify.conftest import Domain, differences, shadow_verify, valid_report


async def test_consistent_copy_is_clean_on_every_layer(domain: Domain) -> None:
    code, report, err = await shadow_verify(domain, "--json")
    assert differences(report) == [], json.dumps(differences(report)[:3])
    assert code == 0, err
    valid_report(report)
    assert report["format"] == "shadow-verify-report" and report["version"] == 2
    # every check performed is listed, and passed
    payments = report["entities"]["payments"]["layers"]
    assert {c["check"] for c in payments["counts"]["checks"]} >= {"count", "refs.buyerId", "dangling.buyerId"}
    assert {c["check"] for c in payments["sums"]["checks"]} == {
        "sums.amount_by_status_method", "sets.pending_idempotency", "sets.buyer_idempotency"}
    assert all(c["passed"] for e in report["entities"].values() for layer in e["layers"].values()
               for c in layer["checks"])
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
