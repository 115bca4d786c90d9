"""List reads through the whole sidecar (issue 20): a read with a query parameter its
route does not model is counted as skipped (`unmodeled_query`), never a finding, while
its members are still compared; `strict_query` makes it a finding that carries the
query; an empty answer PostgreSQL agrees with is a match; list-level findings are
rechecked like documents (dual-write lag -> transient; a lasting difference -> the
finding); which control statuses mean "gone" is the route's."""
from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from shadow.gate.criteria import parse_criteria
from shadow.gate.local import evaluate_local
from shadow.gate.report import render_table

LIST_ROUTE = """\
  - route: GET /widgets
    list: true
    complete: true
    at: items
    recheck: 0
"""


def with_list_route(world: Any, route: str) -> None:
    rules = world.rules / "widgets.yaml"
    text = rules.read_text()
    assert LIST_ROUTE in text
    rules.write_text(text.replace(LIST_ROUTE, route))


@pytest.mark.parametrize("engine", ["raw"])
async def test_an_unmodeled_query_parameter_is_skipped_not_a_finding(world, start, probe) -> None:
    await world.sql("INSERT INTO widgets (legacy_object_id, name) VALUES ('w0099', 'only in PG')")
    with_list_route(world, LIST_ROUTE.replace("    recheck: 0\n", "    recheck: 0\n    query: [pretty]\n"))
    sidecar = await start()
    await probe.get_all(sidecar.proxy_url, ["/widgets?color=red", "/widgets?color=red&pretty=1"])
    await probe.settle(sidecar)
    # not list-checked (no `extra` for w0099), members still compared one by one
    assert probe.outcomes(sidecar) == {"match": 80}
    assert probe.skipped(sidecar, "unmodeled_query") == 2
    report = evaluate_local(sidecar.registry, parse_criteria("window: 7d\nentities:\n  widgets: {}\n"))
    assert "widgets GET /widgets: 2 list read(s) not list-checked" in render_table(report)
    async with aiohttp.ClientSession() as session, \
            session.get(sidecar.admin_url + "/mismatches?format=html") as response:
        page = await response.text()
    row = page[page.index('<tr data-route="GET /widgets">'):]
    row = row[:row.index("</tr>")]
    assert "unmodeled_query 2" in row, row  # the route's row: skipped by reason
    await probe.get_all(sidecar.proxy_url, ["/widgets?pretty=1"])  # a modeled parameter: checked
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"match": 120, "extra": 1}
    extra = next(entry for entry in sidecar.sink.recent() if entry.outcome == "extra")
    assert extra.key == "w0099" and extra.reason == "list read ?pretty=1"


@pytest.mark.parametrize("engine", ["raw"])
async def test_strict_query_makes_an_unmodeled_parameter_a_finding_with_its_query(world, start, probe) -> None:
    with_list_route(world, LIST_ROUTE + "    strict_query: true\n")
    sidecar = await start()
    await probe.get_all(sidecar.proxy_url, ["/widgets?color=red&apiToken=s3cret&b=2"])
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"match": 40, "mismatch": 1}
    assert probe.skipped(sidecar, "unmodeled_query") == 0
    entry = next(entry for entry in sidecar.sink.recent() if entry.outcome == "mismatch")
    assert entry.key == "[list]" and entry.route == "GET /widgets"
    assert sorted(diff.path for diff in entry.diffs) == ["?apiToken", "?b", "?color"]
    # a secret-named value never shows: masked as the redaction masks a field of that name
    assert re.fullmatch(r"list read \?apiToken=%5Bsecret\+len%3D6\+h%3D[0-9a-f]+%5D&b=2&color=red", entry.reason or "")


@pytest.mark.parametrize("engine", ["raw"])
async def test_an_empty_answer_with_an_empty_selection_is_a_match(world, start, probe) -> None:
    world.documents.clear()
    await world.sql("DELETE FROM widgets")
    sidecar = await start()
    assert (await probe.get_all(sidecar.proxy_url, ["/widgets"]))[0] == (200, b'{"items": []}')
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"match": 1}


RECHECKED = LIST_ROUTE.replace("    recheck: 0\n", "    recheck: {after: [200ms, 400ms]}\n")


@pytest.mark.parametrize("engine", ["raw"])
async def test_a_list_difference_the_dual_write_closes_is_transient(world, start, probe) -> None:
    """PostgreSQL has a row the API's list does not show yet (the reverse lag); the
    API's write lands before the recheck re-reads the list: transient, not `extra`."""
    await world.sql("INSERT INTO widgets (legacy_object_id, name, price, api_token) VALUES ('w0041', 'widget 41', 41.5, 'tok-41')")
    with_list_route(world, RECHECKED)

    async def land(key: str) -> None:
        world.documents["w0041"] = {"_id": "w0041", "name": "widget 41", "price": "41.5", "apiToken": "tok-41"}

    world.on_replay = land
    sidecar = await start()
    await probe.get_all(sidecar.proxy_url, ["/widgets"])
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"match": 40, "transient": 1}
    entry = next(entry for entry in sidecar.sink.recent() if entry.outcome == "transient")
    assert entry.key == "[list]" and [diff.kind for diff in entry.diffs] == ["extra_in_candidate"]
    assert [path for path, _ in world.replays] == ["/widgets"]


@pytest.mark.parametrize("engine", ["raw"])
async def test_a_lasting_list_difference_is_found_after_its_rechecks(world, start, probe) -> None:
    await world.sql("INSERT INTO widgets (legacy_object_id, name) VALUES ('w0099', 'only in PG')")
    with_list_route(world, RECHECKED)
    sidecar = await start()
    await probe.get_all(sidecar.proxy_url, ["/widgets"])
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"match": 40, "extra": 1}
    assert len(world.replays) == 2  # both steps re-read the list


@pytest.mark.parametrize("engine", ["raw"])
async def test_which_control_statuses_mean_gone_is_the_routes(world, start, probe) -> None:
    """The API answers 401 on the recheck (the token's user was deleted meanwhile) and
    PostgreSQL deleted the row too: with `gone: [401, 404, 410]` that converges; with the
    default (404, 410) a 401 is a failed control read and the row stays missing."""
    async def delete_user(key: str) -> None:
        raise web.HTTPUnauthorized()

    rules = world.rules / "widgets.yaml"
    rules.write_text(rules.read_text().replace("    recheck: 300ms\n",
                                               "    recheck: {after: [300ms], gone: [401, 404, 410]}\n"))
    await world.sql("DELETE FROM widgets WHERE legacy_object_id = 'w0001'")
    world.on_replay = delete_user
    sidecar = await start()
    await probe.get_all(sidecar.proxy_url, ["/widgets/w0001"])
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"transient": 1}


@pytest.mark.parametrize("engine", ["raw"])
async def test_a_401_is_not_gone_by_default(world, start, probe) -> None:
    async def delete_user(key: str) -> None:
        raise web.HTTPUnauthorized()

    await world.sql("DELETE FROM widgets WHERE legacy_object_id = 'w0001'")
    world.on_replay = delete_user
    sidecar = await start()
    await probe.get_all(sidecar.proxy_url, ["/widgets/w0001"])
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"missing": 1}


@pytest.mark.parametrize("engine", ["raw"])
async def test_a_sort_value_outside_the_allow_list_is_named_by_its_parameter(world, start, probe) -> None:
    with_list_route(world, LIST_ROUTE + "    sort: {query: sortBy, allow: {name: name}}\n    order_by: [legacy_object_id]\n"
                                        "    strict_query: true\n")
    sidecar = await start()
    await probe.get_all(sidecar.proxy_url, ["/widgets?sortBy=apiToken:asc", "/widgets?sortBy=name"])
    await probe.settle(sidecar)
    entry = next(entry for entry in sidecar.sink.recent() if entry.outcome == "mismatch"
                 and entry.diffs[0].kind == "unmodeled_query")
    assert [diff.path for diff in entry.diffs] == ["?sortBy"]
    # (the redaction masks what follows `apiToken:` wherever it appears)
    assert (entry.reason or "").startswith("list read ?sortBy=apiToken%3A")
    assert (entry.reason or "").endswith("; sort field 'apiToken' is not in the route's sort allow-list")
    # ?sortBy=name is modeled: the API's order (by _id) is not PostgreSQL's order by name
    orders = [entry for entry in sidecar.sink.recent() if any(diff.kind == "order" for diff in entry.diffs)]
    assert len(orders) == 1 and orders[0].reason is not None and orders[0].reason.startswith("list read ?sortBy=name")


@pytest.mark.parametrize("engine", ["raw"])
async def test_a_list_finding_never_shows_a_secret_filter_value(world, start, probe) -> None:
    with_list_route(world, LIST_ROUTE + "    where: {api_token: {query: apiToken}}\n")
    sidecar = await start()
    await probe.get_all(sidecar.proxy_url, ["/widgets?apiToken=tok-1"])  # the API ignores it: 39 rows too many
    await probe.settle(sidecar)
    entry = next(entry for entry in sidecar.sink.recent() if entry.key == "[list]")
    assert re.fullmatch(r"list read \?apiToken=%5Bsecret\+len%3D5\+h%3D[0-9a-f]+%5D; "
                        r"selected by api_token eq \[secret len=5 h=[0-9a-f]+\]", entry.reason or ""), entry.reason
    assert "tok-1" not in str(entry.as_json())
