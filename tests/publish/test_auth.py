"""Admin auth against the real admin server: the token guards /mismatches, /rules and
POST /reload (probes, /metrics and /gate stay open); beyond loopback without a token
those endpoints are refused; POST /reload refuses what a browser sends cross-site."""
from __future__ import annotations

import base64
from pathlib import Path

import aiohttp
import pytest

from shadow.config import Config, ConfigError
from shadow.publish.admin_auth import _hostname, is_loopback

TOKEN = "s3cret-Token-0123456789"
OPEN = ("/healthz", "/readyz", "/metrics")
GUARDED = (("GET", "/mismatches"), ("GET", "/mismatches?format=html"), ("GET", "/rules"), ("POST", "/reload"),
           ("HEAD", "/mismatches"), ("GET", "/%6Dismatches"), ("GET", "/"))


async def call(method: str, url: str, headers: dict[str, str] | None = None, data: bytes | None = None) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession(auto_decompress=False) as session, \
            session.request(method, url, headers=headers or {}, data=data, allow_redirects=False) as response:
        return response.status, dict(response.headers), await response.text()


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_beyond_loopback_without_a_token_the_data_endpoints_are_refused(world, start) -> None:
    sidecar = await start(admin_listen="0.0.0.0:0")
    for path in OPEN:
        assert (await call("GET", sidecar.admin_url + path))[0] == 200, path
    assert (await call("GET", sidecar.admin_url + "/gate"))[0] == 501  # open; no criteria here
    for method, path in GUARDED:
        status, _, body = await call(method, sidecar.admin_url + path, bearer())
        assert status == 403, (method, path)
        if method != "HEAD":
            assert "SHADOW_ADMIN_TOKEN" in body
    assert sidecar.rules.last_result is not None and sidecar.registry.get_sample_value(
        "shadow_rules_reloads_total", {"result": "success"}) == 1  # the refused POST did not reload


#: Authorization header -> allowed?
CREDENTIALS: list[tuple[str | None, bool]] = [
    (None, False), ("", False), (f"Bearer {TOKEN}", True), (f"bearer {TOKEN}", True), (f"Bearer   {TOKEN}  ", True),
    ("Basic " + base64.b64encode(f"anyone:{TOKEN}".encode()).decode(), True),
    ("Basic " + base64.b64encode(f":{TOKEN}".encode()).decode(), True),
    ("Basic " + base64.b64encode(f"{TOKEN}:".encode()).decode(), False),
    ("Basic " + base64.b64encode(TOKEN.encode()).decode(), False),
    ("Basic !!!notbase64", False), ("Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(), False),
    ("Bearer wrong", False), (f"Bearer {TOKEN}x", False), (f"Bearer {TOKEN[:-1]}", False), (f"Bearer {TOKEN.upper()}", False),
    (f"Token {TOKEN}", False), (TOKEN, False), ("Bearer", False), ("Bearer ", False), (f"Bearer {TOKEN}\t{TOKEN}", False),
    ("Bearer " + "x" * 8000, False),
]


async def test_the_token_is_required_and_checked(world, start) -> None:
    sidecar = await start(admin_listen="0.0.0.0:0", admin_token=TOKEN)
    url = sidecar.admin_url + "/rules"
    for header, allowed in CREDENTIALS:
        status, headers, _ = await call("GET", url, {"Authorization": header} if header is not None else {})
        assert status == (200 if allowed else 401), header
        if not allowed:
            assert "Bearer" in headers["WWW-Authenticate"] and "Basic" in headers["WWW-Authenticate"]
    for path in OPEN:
        assert (await call("GET", sidecar.admin_url + path))[0] == 200, path
    for method, path in GUARDED:
        assert (await call(method, sidecar.admin_url + path))[0] == 401, (method, path)
    assert (await call("GET", sidecar.admin_url + "/mismatches", bearer()))[0] == 200
    assert (await call("GET", sidecar.admin_url + "/", bearer()))[0] == 302
    assert (await call("POST", sidecar.admin_url + "/reload", bearer()))[0] == 200


#: headers of a POST /reload (with a valid token) -> accepted?
RELOAD_REQUESTS: list[tuple[dict[str, str], bytes | None, bool]] = [
    ({}, None, True),
    ({"Content-Type": "application/json"}, b"{}", True),
    ({"Content-Type": "text/plain"}, b"x", False),
    ({"Content-Type": "TEXT/PLAIN; charset=utf-8"}, b"x", False),
    ({"Content-Type": "application/x-www-form-urlencoded"}, b"a=1", False),
    ({"Content-Type": "multipart/form-data; boundary=x"}, b"--x--", False),
    ({"Content-Type": ""}, b"x", False),
    ({"Origin": "https://evil.example"}, None, False),
    ({"Origin": "null"}, None, False),
    ({"Sec-Fetch-Site": "cross-site"}, None, False),
    ({"Sec-Fetch-Site": "same-site"}, None, False),
    ({"Sec-Fetch-Site": "same-origin"}, None, True),
    ({"Sec-Fetch-Site": "none"}, None, True),
]


async def test_reload_refuses_cross_site_requests(world, start) -> None:
    sidecar = await start(admin_listen="0.0.0.0:0", admin_token=TOKEN)
    url = sidecar.admin_url + "/reload"
    for headers, body, accepted in RELOAD_REQUESTS:
        status, _, text = await call("POST", url, {**bearer(), **headers}, body)
        assert status == (200 if accepted else 403), (headers, text)
    own_origin = sidecar.admin_url  # a page served by the admin itself
    assert (await call("POST", url, {**bearer(), "Origin": own_origin}))[0] == 200
    successes = sidecar.registry.get_sample_value("shadow_rules_reloads_total", {"result": "success"})
    assert successes == 1 + sum(accepted for _, _, accepted in RELOAD_REQUESTS) + 1


async def test_on_loopback_without_a_token_only_loopback_hosts_are_served(world, start) -> None:
    sidecar = await start()  # 127.0.0.1, no token: as before, for a loopback Host
    assert (await call("GET", sidecar.admin_url + "/rules"))[0] == 200
    port = sidecar.admin_url.rsplit(":", 1)[1]
    assert (await call("GET", sidecar.admin_url + "/rules", {"Host": f"localhost:{port}"}))[0] == 200
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}", ""):
        assert (await call("GET", sidecar.admin_url + "/mismatches", {"Host": host}))[0] == 403, host  # DNS rebinding
    assert (await call("POST", sidecar.admin_url + "/reload", {"Content-Type": "text/plain"}, b"x"))[0] == 403


async def test_on_loopback_a_configured_token_is_required_too(world, start, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")  # as a mounted Secret may end
    sidecar = await start(admin_token_file=token_file)
    assert (await call("GET", sidecar.admin_url + "/rules"))[0] == 401
    assert (await call("GET", sidecar.admin_url + "/rules", bearer()))[0] == 200


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("", False), ("localhost.evil", False),
    ("admin.svc", False), ("::ffff:127.0.0.1", False),
])
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(("header", "name"), [
    ("localhost:9090", "localhost"), ("[::1]:9090", "::1"), ("[::1]", "::1"), ("127.0.0.1", "127.0.0.1"),
    ("::1", "::1"), ("evil:1:2", "evil:1:2"), ("", ""),
])
def test_host_header_names(header: str, name: str) -> None:
    assert _hostname(header) == name


@pytest.mark.parametrize(("token", "problem"), [
    ("short", "at least 16"), ("with a space 0123456789", "printable ASCII"), ("tab\there-0123456789", "printable ASCII"),
    ("nul\x00here-0123456789", "printable ASCII"), ("é" * 20, "printable ASCII"), ("new\nline-0123456789", "printable ASCII"),
])
def test_bad_tokens_are_refused_without_echoing_them(token: str, problem: str, tmp_path: Path) -> None:
    base = {"upstream": "http://127.0.0.1:1", "rules": str(tmp_path)}
    with pytest.raises(ConfigError, match=problem) as refused:
        Config.parse(base, {"SHADOW_ADMIN_TOKEN": token})
    assert token not in str(refused.value) and "SHADOW_ADMIN_TOKEN" in str(refused.value)
    token_file = tmp_path / "token"
    token_file.write_text(token)
    with pytest.raises(ConfigError, match=problem) as refused:
        Config.parse(base, {"SHADOW_ADMIN_TOKEN_FILE": str(token_file)})
    assert token not in str(refused.value)
    assert TOKEN not in repr(Config.parse(base, {"SHADOW_ADMIN_TOKEN": TOKEN}))
    token_file.write_text(TOKEN)
    with pytest.raises(ConfigError, match="not both"):
        Config.parse(base, {"SHADOW_ADMIN_TOKEN": TOKEN, "SHADOW_ADMIN_TOKEN_FILE": str(token_file)})
