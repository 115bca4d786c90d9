"""`--record DIR` (shadow/proxy/recording.py) on both engines against a real upstream:
the files load with `shadow rules draft`'s answers reader, nothing secret reaches the
disk, the caps hold, the client's answer is the upstream's byte for byte, and a disk
that fails is counted, never felt by the client."""
from __future__ import annotations

import asyncio
import gzip
import json
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from shadow.config import Config, ConfigError
from shadow.proxy.recordfiles import file_name, path_template, record_text
from shadow.proxy.recording import Recorder, RecordSettings
from shadow.publish.metrics import Metrics
from shadow.ruletools.draft.answers import documents, read_answers
from shadow.sidecar import Sidecar, start_sidecar
from tests.proxy.conftest import serve_app

USERS = [f"65a1f0c2e4b0a1b2c3d4e5{index:02x}" for index in range(12)]
PASSWORD = "hunter2-correct-horse"
EMAIL = "bob.builder@example.com"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
QUERY_TOKEN = "qtok-7f3a9c2b1e5d4f60"
SECRETS = (PASSWORD, EMAIL, JWT, QUERY_TOKEN)
SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*\.json")


def _user(user_id: str) -> dict[str, Any]:
    return {"_id": user_id, "name": "Bob", "password": PASSWORD, "email": EMAIL, "note": f"Bearer {JWT}",
            "orders": 3}


async def _get_user(request: web.Request) -> web.Response:
    # a fixed body with no Date-dependent parts: byte-for-byte comparisons are meaningful
    return web.Response(body=json.dumps(_user(request.match_info["id"])).encode(),
                        content_type="application/json", headers={"X-Upstream": "1"})


async def _list_users(request: web.Request) -> web.Response:
    return web.json_response({"data": [_user(user) for user in USERS[:3]], "count": 3})


async def _big(request: web.Request) -> web.Response:
    return web.json_response({"_id": USERS[0], "blob": "x" * 5000})


async def _gzipped(request: web.Request) -> web.Response:
    body = gzip.compress(json.dumps(_user(USERS[1])).encode(), mtime=0)
    return web.Response(body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})


async def _chunked(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json; charset=utf-8"})
    await response.prepare(request)
    for part in (b'{"_id": "', USERS[2].encode(), b'", "password": "', PASSWORD.encode(), b'"}'):
        await response.write(part)
    await response.write_eof()
    return response


async def _anything(request: web.Request) -> web.Response:
    return web.json_response({"_id": USERS[3], "at": request.raw_path})


async def _text(request: web.Request) -> web.Response:
    return web.Response(text='{"_id": "not recorded"}', content_type="text/plain")


def record_upstream() -> web.Application:
    app = web.Application()
    app.router.add_get("/api/users", _list_users)
    app.router.add_get("/api/users/{id}", _get_user)
    app.router.add_post("/api/users/{id}", _get_user)
    app.router.add_get("/api/big", _big)
    app.router.add_get("/api/gzipped", _gzipped)
    app.router.add_get("/api/chunked", _chunked)
    app.router.add_get("/api/text", _text)
    app.router.add_get("/any/{tail:.*}", _anything)
    return app


@pytest.fixture
async def api() -> AsyncIterator[str]:
    runner, url = await serve_app(record_upstream())
    yield url
    await runner.cleanup()


@pytest.fixture
def answers(tmp_path: Path) -> Path:
    folder = tmp_path / "answers"
    folder.mkdir()
    return folder


async def recording_sidecar(make_config: Callable[..., Config], api: str, rules: Path, answers: Path,
                            **overrides: Any) -> Sidecar:
    return await start_sidecar(make_config(api, rules, record=str(answers), drain_timeout=5, **overrides))


def counted(sidecar: Sidecar, reason: str | None = None) -> float:
    if reason is None:
        return sidecar.registry.get_sample_value("shadow_record_written_total") or 0.0
    return sidecar.registry.get_sample_value("shadow_record_dropped_total", {"reason": reason}) or 0.0


def settled(sidecar: Sidecar) -> float:
    """Answers the recorder finished with: written or dropped, whatever the reason."""
    return counted(sidecar) + sum(counted(sidecar, reason) for reason in
                                  ("too_large", "encoding", "not_json", "queue_full", "write_error"))


async def until(condition: Callable[[], bool], guard: float = 60.0) -> None:
    """Until `condition` holds (checked as the loop runs; `guard` only bounds a hang)."""
    async with asyncio.timeout(guard):
        while not condition():
            await asyncio.sleep(0.005)


async def fetch(session: aiohttp.ClientSession, url: str, method: str = "GET") -> tuple[int, bytes]:
    async with session.request(method, url, headers={"Accept-Encoding": "identity"}) as response:
        return response.status, await response.read()


async def test_recorded_answers_load_with_the_drafts_reader_and_hold_no_secret(
        make_config: Callable[..., Config], api: str, widget_rules: Path, answers: Path) -> None:
    sidecar = await recording_sidecar(make_config, api, widget_rules, answers, record_max_body=4096)
    try:
        async with aiohttp.ClientSession() as session:
            for user in USERS[:3]:
                assert (await fetch(session, f"{sidecar.proxy_url}/api/users/{user}"))[0] == 200
            await fetch(session, f"{sidecar.proxy_url}/api/users?page=2&token={QUERY_TOKEN}")
            await fetch(session, f"{sidecar.proxy_url}/api/gzipped")
            await fetch(session, f"{sidecar.proxy_url}/api/chunked")
            # not recorded: a POST, a non-JSON answer, a body over --record-max-body
            await fetch(session, f"{sidecar.proxy_url}/api/users/{USERS[0]}", method="POST")
            await fetch(session, f"{sidecar.proxy_url}/api/text")
            await fetch(session, f"{sidecar.proxy_url}/api/big")
            await until(lambda: settled(sidecar) == 7)
    finally:
        await sidecar.stop()
    assert counted(sidecar) == 6
    assert counted(sidecar, "too_large") == 1
    read, problems = read_answers(answers)
    assert problems == []
    by_path = {answer.path: answer for answer in read}
    assert sorted(by_path) == sorted([f"/api/users/{user}" for user in USERS[:3]]
                                     + ["/api/users", "/api/gzipped", "/api/chunked"])
    single = by_path[f"/api/users/{USERS[0]}"]
    assert (single.method, single.status) == ("GET", 200)
    assert documents(single.body)[:2] == (None, False)  # the draft sees one document keyed by its _id
    assert documents(by_path["/api/users"].body)[:2] == ("data", True)
    assert single.body["name"] == "Bob" and single.body["orders"] == 3  # what is not secret stays readable
    assert single.body["password"].startswith("[secret ")  # masked by name
    assert single.body["email"].startswith("[pii ")
    assert by_path["/api/gzipped"].body["password"].startswith("[secret ")  # decompressed, then masked
    raw = [json.loads(file.read_text()) for file in answers.glob("*.json")]
    query = next(record["path"] for record in raw if record["path"].startswith("/api/users?"))
    assert "page=2" in query and "token=[secret " in query
    on_disk = b"".join(file.read_bytes() for file in answers.iterdir())
    for secret in SECRETS:
        assert secret.encode() not in on_disk
    assert [file.name for file in answers.iterdir() if not SAFE_NAME.fullmatch(file.name)] == []


async def test_the_caps_hold_per_path_shape_and_in_all(
        make_config: Callable[..., Config], api: str, widget_rules: Path, answers: Path) -> None:
    sidecar = await recording_sidecar(make_config, api, widget_rules, answers, record_per_route=3, record_max=5)
    try:
        async with aiohttp.ClientSession() as session:
            for user in USERS:  # twelve ids, one shape
                await fetch(session, f"{sidecar.proxy_url}/api/users/{user}")
            await until(lambda: settled(sidecar) == 3)
            for number in range(6):  # numbers and uuids collapse too
                await fetch(session, f"{sidecar.proxy_url}/any/orders/{number}")
                await fetch(session, f"{sidecar.proxy_url}/any/items/1b4e28ba-2fa1-11d2-883f-0016d3cca42{number}")
            await until(lambda: settled(sidecar) == 5)
            await fetch(session, f"{sidecar.proxy_url}/api/users")  # full: not even copied
            assert sidecar.recorder is not None and sidecar.recorder.full
    finally:
        await sidecar.stop()
    templates = sorted(path_template(answer.path) for answer in read_answers(answers)[0])
    assert len(templates) == 5
    assert templates.count("/api/users/{id}") == 3
    assert set(templates) <= {"/api/users/{id}", "/any/orders/{n}", "/any/items/{uuid}"}
    assert counted(sidecar) == 5


async def test_a_client_answer_is_byte_identical_with_recording_on(
        make_config: Callable[..., Config], api: str, widget_rules: Path, answers: Path) -> None:
    sidecar = await recording_sidecar(make_config, api, widget_rules, answers)
    paths = [f"/api/users/{USERS[5]}", "/api/gzipped", "/api/chunked", "/api/users?token=x"]
    try:
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            for path in paths:
                direct = await fetch(session, f"{api}{path}")
                proxied = await fetch(session, f"{sidecar.proxy_url}{path}")
                assert proxied == direct
            await until(lambda: settled(sidecar) == len(paths))
    finally:
        await sidecar.stop()
    assert counted(sidecar) == len(paths)


async def test_a_directory_that_goes_away_is_counted_never_felt_by_the_client(
        make_config: Callable[..., Config], api: str, widget_rules: Path, answers: Path) -> None:
    sidecar = await recording_sidecar(make_config, api, widget_rules, answers)
    try:
        shutil.rmtree(answers)
        async with aiohttp.ClientSession() as session:
            for user in USERS[:3]:
                status, body = await fetch(session, f"{sidecar.proxy_url}/api/users/{user}")
                assert status == 200 and json.loads(body) == _user(user)
            await until(lambda: counted(sidecar, "write_error") == 3)
            answers.mkdir()  # back: recording goes on
            await fetch(session, f"{sidecar.proxy_url}/api/users/{USERS[4]}")
            await until(lambda: counted(sidecar) == 1)
    finally:
        await sidecar.stop()
    assert [answer.path for answer in read_answers(answers)[0]] == [f"/api/users/{USERS[4]}"]


#: request targets a hostile client may send; the upstream answers each with JSON 200
HOSTILE_TARGETS = [
    "/any/..%2f..%2f..%2fetc%2fpasswd",
    "/any/%2e%2e/%2e%2e/x",
    "/any/a%00b/c",
    "/any/" + "a" * 3000,
    "/any/" + "/".join(["seg"] * 200),
    "/any/caf%C3%A9/%E2%80%AE/name",
    "/any/..\\..\\windows",
    "/any/.hidden/x",
    "/any/CON/aux",
    "/any/a:b/c|d/e*f",
]

RAW_HOSTILE_TARGETS = [b"/any/../../../etc/passwd", b"/any/caf\xc3\xa9/\xe2\x80\xae", b"http://evil/any/x/../../y"]


async def test_hostile_paths_never_reach_the_file_system(
        make_config: Callable[..., Config], api: str, widget_rules: Path, answers: Path, tmp_path: Path) -> None:
    sidecar = await recording_sidecar(make_config, api, widget_rules, answers, dot_segments="forward")
    statuses = []
    try:
        async with aiohttp.ClientSession() as session:
            for target in HOSTILE_TARGETS:
                url = URL(f"{sidecar.proxy_url}{target}", encoded=True)
                async with session.get(url) as response:
                    statuses.append(response.status)
                    await response.read()
        host, port = Config.host_port(sidecar.proxy_url.removeprefix("http://"))
        for raw in RAW_HOSTILE_TARGETS:  # bytes no HTTP client library would send as they are
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"GET " + raw + b" HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
            answer = await reader.read()
            writer.close()
            statuses.append(int(answer.split(b" ", 2)[1]))
        await until(lambda: settled(sidecar) == statuses.count(200))
    finally:
        await sidecar.stop()
    assert statuses.count(200) >= len(HOSTILE_TARGETS)  # the raw ones may be refused (400) by an engine
    names = [file.name for file in answers.iterdir()]
    assert len(names) == counted(sidecar) > 0
    for name in names:
        assert SAFE_NAME.fullmatch(name) and len(name) <= 130 and ".." not in name, name
    assert sorted(path.name for path in tmp_path.iterdir()) == ["answers", "rules"]  # nothing beside DIR
    assert read_answers(answers)[0]  # the reader takes them (paths it cannot template are its TODOs)


@pytest.mark.parametrize(("path", "template"), [
    ("/api/users/65a1f0c2e4b0a1b2c3d4e5f6", "/api/users/{id}"),
    ("/api/v2/orders/123/items", "/api/v2/orders/{n}/items"),
    ("/api/items/1b4e28ba-2fa1-11d2-883f-0016d3cca427", "/api/items/{uuid}"),
    ("/api/users/bob@example.com", "/api/users/{value}"),
    ("/api/../../etc/passwd", "/api/{value}/{value}/etc/passwd"),
    ("/api/a%00b", "/api/{value}"),
    ("/api/caf\u00e9", "/api/{value}"),
    ("/api/" + "x" * 40, "/api/{value}"),
    ("/" + "/".join(["a"] * 30), "/" + "/".join(["a"] * 12) + "/{rest}"),
    ("/", "/"),
])
def test_path_templates(path: str, template: str) -> None:
    assert path_template(path) == template


@pytest.mark.parametrize("template", [
    "/", "/../../etc/passwd", "/a\x00b", "/" + "x" * 5000, "/caf\u00e9/\u202e", "/.hidden", "/a\\b", "/{id}/{n}",
])
def test_file_names_are_safe_whatever_the_template(template: str) -> None:
    name = file_name(template, "ab12cd34/../", 7)
    assert SAFE_NAME.fullmatch(name) and len(name) <= 130 and ".." not in name and "/" not in name


def test_a_body_that_is_not_json_or_a_zip_bomb_is_refused_by_reason() -> None:
    from shadow.proxy.recordfiles import NotRecordable

    bomb = gzip.compress(b"[" + b"0," * 1_000_000 + b"0]")
    for body, encoding, reason in [(b"<html>", "", "not_json"), (bomb, "gzip", "too_large"),
                                   (b"\xff\xfe", "", "not_json"), (b"not gzip", "gzip", "not_json"),
                                   (b"{}", "br", "encoding")]:
        with pytest.raises(NotRecordable) as refused:
            record_text("GET", "/x", "", 200, body, encoding, 4096)
        assert refused.value.reason == reason


async def test_a_full_queue_drops_and_counts(tmp_path: Path) -> None:
    metrics = Metrics()
    recorder = Recorder(RecordSettings(tmp_path, queue_size=1), metrics)  # not started: nothing drains it
    for user in USERS[:3]:
        copy = recorder.begin("GET", f"/api/users/{user}", 200, "application/json", "", 10)
        assert copy is not None
        copy.add(b'{"_id": 1}')
        recorder.offer(copy)
    assert metrics.registry.get_sample_value("shadow_record_dropped_total", {"reason": "queue_full"}) == 2
    await recorder.close(timeout=0)
    assert metrics.registry.get_sample_value("shadow_record_dropped_total", {"reason": "shutdown"}) == 1


@pytest.mark.parametrize("kind", ["a file", "missing", "read-only"])
def test_a_directory_the_proxy_cannot_write_fails_the_start(tmp_path: Path, kind: str) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    target = tmp_path / "answers"
    if kind == "a file":
        target.write_text("x")
    elif kind == "read-only":
        # root writes through a directory's mode bits: a read-only file system then
        target = Path("/sys") if sys.platform == "linux" and _root() else target
        if target != Path("/sys"):
            target.mkdir(mode=0o555)
    with pytest.raises(ConfigError, match="--record / SHADOW_RECORD"):
        Config(upstream="http://127.0.0.1:1", rules=rules, record=target)
    done = subprocess.run([sys.executable, "-m", "shadow", "proxy", "--upstream", "http://127.0.0.1:1",
                           "--rules", str(rules), "--record", str(target)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert "--record:" in done.stderr and ("not a directory" in done.stderr or "not writable" in done.stderr)


def _root() -> bool:
    import os

    return os.geteuid() == 0
