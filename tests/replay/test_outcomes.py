"""Outcomes of shadowed reads against a real PostgreSQL: match, mismatch with its paths,
transient (a late dual-write), missing, extra, invalid keys, sampling."""
from __future__ import annotations

import json
import time
from pathlib import Path

import aiohttp

from shadow.publish.redaction import is_mask


async def test_consistent_keys_match_and_planted_divergences_mismatch_with_their_paths(world, start, probe, tmp_path: Path) -> None:
    await world.sql("UPDATE widgets SET price = 99 WHERE legacy_object_id = 'w0003'")
    await world.sql("UPDATE widgets SET name = 'renamed', api_token = 'other' WHERE legacy_object_id = 'w0007'")
    sidecar = await start()
    answers = await probe.get_all(sidecar.proxy_url, [f"/quick/w{n:04d}" for n in range(1, 21)])
    assert all(status == 200 for status, _ in answers)
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"match": 18, "mismatch": 2}
    fields = {s.labels["field"]: s.value for m in sidecar.registry.collect() if m.name == "shadow_mismatch_fields"
              for s in m.samples if s.name.endswith("_total")}
    assert fields == {"price": 1.0, "name": 1.0, "apiToken": 1.0}
    recent = {entry.key: entry for entry in sidecar.sink.recent()}
    assert set(recent) == {"w0003", "w0007"}
    assert next((d.path, d.control, d.candidate) for d in recent["w0003"].diffs)[0] == "price"
    # the token is redacted by name, on the page and in the log
    token_diff = next(d for d in recent["w0007"].diffs if d.path == "apiToken")
    assert is_mask(token_diff.control) and is_mask(token_diff.candidate)
    assert token_diff.control != token_diff.candidate  # ... and the masks still show that they differ
    sidecar.sink.flush()
    lines = [json.loads(line) for line in (tmp_path / "mismatches.jsonl").read_text().splitlines()]
    assert {line["key"] for line in lines} == {"w0003", "w0007"}
    assert "tok-7" not in (tmp_path / "mismatches.jsonl").read_text()
    # deepdiff's explanation arrives later, off the loop, within the explain budget
    assert {d.path for d in recent["w0003"].explained} == {"price"}


async def test_a_write_that_lands_shortly_after_the_read_is_transient(world, start, probe) -> None:
    world.documents["w0005"] = {**world.documents["w0005"], "name": "new name"}  # Mongo written first

    async def dual_write(key: str) -> None:  # ... PostgreSQL after the first read, by the recheck
        await world.sql("UPDATE widgets SET name = 'new name' WHERE legacy_object_id = $1", key)

    world.on_replay = dual_write
    sidecar = await start()
    status, _ = (await probe.get_all(sidecar.proxy_url, ["/widgets/w0005"]))[0]
    assert status == 200
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"transient": 1}
    assert sidecar.registry.get_sample_value("shadow_transient_fields_total", {"entity": "widgets", "field": "name"}) == 1


async def test_a_divergence_that_persists_past_the_recheck_is_a_mismatch(world, start, probe) -> None:
    world.documents["w0006"] = {**world.documents["w0006"], "name": "never written to PG"}
    sidecar = await start()
    await probe.get_all(sidecar.proxy_url, ["/widgets/w0006"])
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"mismatch": 1}


async def test_a_row_missing_in_postgres_is_missing_and_is_rechecked(world, start, probe) -> None:
    world.documents["w0100"] = probe.widget(100)  # in Mongo (the API), not (yet) in PG
    world.documents["w0101"] = probe.widget(101)

    async def dual_write(key: str) -> None:  # w0101's row reaches PostgreSQL by its recheck; w0100's never
        if key == "w0101" and not any(path == "/widgets/w0101" for path, _ in world.replays[:-1]):
            await world.sql("INSERT INTO widgets (legacy_object_id, name, price, api_token) "
                            "VALUES ('w0101', 'widget 101', 101.5, 'tok-101')")

    world.on_replay = dual_write
    sidecar = await start()
    await probe.get_all(sidecar.proxy_url, ["/widgets/w0100", "/widgets/w0101"])
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"missing": 1, "transient": 1}


async def test_complete_list_reads_find_extra_rows(world, start, probe) -> None:
    await world.sql("INSERT INTO widgets (legacy_object_id, name, price) VALUES ('w9999', 'only in PG', 1)")
    sidecar = await start()
    status, body = (await probe.get_all(sidecar.proxy_url, ["/widgets"]))[0]
    assert status == 200 and len(json.loads(body)["items"]) == 40
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"match": 40, "extra": 1}
    assert [entry.key for entry in sidecar.sink.recent()] == ["w9999"]


async def test_keys_that_are_not_what_the_route_expects_are_skipped_not_errors(world, start, probe) -> None:
    world.documents["w\x00x"] = {"_id": "w\x00x", "name": "nul"}
    long_key = "k" * 5000
    world.documents[long_key] = {"_id": long_key, "name": "long"}
    sidecar = await start()
    answers = await probe.get_all(sidecar.proxy_url, ["/quick/w%00x", f"/quick/{long_key}", "/quick/%FF%FE?echo=1"])
    assert [status for status, _ in answers] == [200, 200, 200]
    await probe.settle(sidecar)
    assert probe.skipped(sidecar, "invalid_key") == 3
    assert probe.outcomes(sidecar) == {}
    assert sidecar.registry.get_sample_value("shadow_errors_total", {"stage": "fetch"}) is None


async def test_bodies_over_the_limit_are_skipped_whether_sized_or_streamed(world, start, probe) -> None:
    sidecar = await start(max_body_bytes=60)  # a widget document is ~90 bytes
    answers = await probe.get_all(sidecar.proxy_url, ["/quick/w0001", "/quick/w0002?chunked=1"])
    assert [status for status, _ in answers] == [200, 200]
    assert answers == await probe.get_all(world.api_url, ["/quick/w0001", "/quick/w0002?chunked=1"])
    await probe.settle(sidecar)
    assert probe.skipped(sidecar, "body_too_large") == 2
    assert probe.outcomes(sidecar) == {}
    sidecar = await start()  # with the default limit the streamed one is compared
    await probe.get_all(sidecar.proxy_url, ["/quick/w0002?chunked=1"])
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"match": 1}


async def test_non_2xx_and_non_json_answers_are_skipped(world, start, probe) -> None:
    sidecar = await start()
    answers = await probe.get_all(sidecar.proxy_url, ["/quick/nope", "/quick/w0001?text=1"])
    assert [status for status, _ in answers] == [404, 200]
    await probe.settle(sidecar)
    assert probe.skipped(sidecar, "non_2xx") == 1
    assert probe.skipped(sidecar, "not_json") == 1
    assert probe.outcomes(sidecar) == {}


async def test_sampling_by_key_hash_is_deterministic(world, start, probe) -> None:
    sidecar = await start()
    paths = [f"/hashed/w{n:04d}" for n in range(1, 41)]
    await probe.get_all(sidecar.proxy_url, paths)
    await probe.settle(sidecar)
    first = sum(probe.outcomes(sidecar).values())
    assert 5 < first < 35  # about half of 40
    await probe.get_all(sidecar.proxy_url, paths)
    await probe.settle(sidecar)
    assert sum(probe.outcomes(sidecar).values()) == 2 * first  # the very same keys again
    assert probe.skipped(sidecar, "not_sampled") == 2 * (40 - first)


async def test_the_rate_limit_drops_and_counts(world, start, probe) -> None:
    sidecar = await start(rate_limit=5)
    started = time.monotonic()
    answers = await probe.get_all(sidecar.proxy_url, [f"/quick/w{n:04d}" for n in range(1, 41)])
    elapsed = time.monotonic() - started
    assert all(status == 200 for status, _ in answers)
    await probe.settle(sidecar)
    compared = sum(probe.outcomes(sidecar).values())
    limited = sidecar.registry.get_sample_value("shadow_dropped_total", {"reason": "rate_limited"})
    assert compared + limited == 40
    assert 5 <= compared <= 5 + 5 * elapsed + 1  # a burst of one second's worth, then 5 per second


async def test_gzip_answers_are_inflated_for_the_comparison(world, start, probe) -> None:
    import gzip

    from aiohttp import web

    async def zipped(request: web.Request) -> web.Response:
        body = gzip.compress(json.dumps(world.documents[request.match_info["id"]]).encode())
        return web.Response(body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})

    app = web.Application()
    app.router.add_get("/quick/{id}", zipped)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        sidecar = await start(upstream=f"http://127.0.0.1:{runner.addresses[0][1]}")
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            async with session.get(sidecar.proxy_url + "/quick/w0002") as response:
                assert response.headers["Content-Encoding"] == "gzip"
                assert json.loads(gzip.decompress(await response.read()))["_id"] == "w0002"
        await probe.settle(sidecar)
        assert probe.outcomes(sidecar) == {"match": 1}
    finally:
        await runner.cleanup()


async def test_a_comparison_span_joins_the_client_trace(world, start, probe) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    sidecar = await start(_span_exporter=exporter)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    async with aiohttp.ClientSession() as session:
        async with session.get(sidecar.proxy_url + "/quick/w0001",
                               headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}) as response:
            await response.read()
    await probe.settle(sidecar)
    spans = exporter.get_finished_spans()
    assert len(spans) == 1
    assert format(spans[0].context.trace_id, "032x") == trace_id
    assert spans[0].parent is not None and format(spans[0].parent.span_id, "016x") == "00f067aa0ba902b7"
    assert spans[0].attributes["shadow.outcome"] == "match"
