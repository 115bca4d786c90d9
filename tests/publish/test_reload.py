"""Hot reload: a good edit takes effect, a bad edit keeps the last good rules, says
where the problem is and is counted."""
from __future__ import annotations

import asyncio
import json

import aiohttp


async def post(url: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.post(url) as response:
            return response.status, json.loads(await response.text())


async def wait_for(condition, timeout: float = 60.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    assert condition()


async def test_a_bad_edit_keeps_the_last_good_rules(world, start, probe) -> None:
    sidecar = await start()
    good_version = sidecar.rules.current.version
    rules_file = world.rules / "widgets.yaml"
    rules_file.write_text(probe.rules_text.replace("  - route: GET /quick/{id}\n", "  - route: FETCH /quick/{id}\n"))
    status, result = await post(sidecar.admin_url + "/reload")
    assert status == 422 and result["ok"] is False
    assert any("widgets.yaml:" in problem and "FETCH" in problem for problem in result["problems"])
    assert sidecar.rules.current.version == good_version
    assert sidecar.registry.get_sample_value("shadow_rules_reloads_total", {"result": "error"}) == 1
    await probe.get_all(sidecar.proxy_url, ["/quick/w0001"])  # the old route still shadows
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"match": 1}


async def test_a_good_edit_is_picked_up_by_the_file_watch(world, start, probe) -> None:
    sidecar = await start(reload="watch")
    old_version = sidecar.rules.current.version
    rules_file = world.rules / "widgets.yaml"
    rules_file.write_text(probe.rules_text + "  - route: GET /plain/{id}\n    recheck: 0\n")
    await wait_for(lambda: sidecar.rules.current.version != old_version)
    assert sidecar.registry.get_sample_value("shadow_rules_info", {"version": sidecar.rules.current.version}) == 1
    await probe.get_all(sidecar.proxy_url, ["/plain/w0002"])  # now shadowed
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"match": 1}

    rules_file.write_text("entity: [unclosed\n")  # a broken save
    await wait_for(lambda: sidecar.registry.get_sample_value("shadow_rules_reloads_total", {"result": "error"}) == 1)
    assert sidecar.rules.current.version != old_version  # still the last good one
    assert sidecar.rules.last_result is not None and "widgets.yaml:" in sidecar.rules.last_result.problems[0]
