"""Request-path timeouts and the connection cap, on both engines (small flag values; the
tests wait for the proxy's answer or close, never for a time), plus what the proxy adds
to or logs about an answer."""
from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from shadow.config import RESERVED_FDS, Config, RequestLimits
from shadow.sidecar import Sidecar, start_sidecar
from tests.proxy.conftest import canned_upstream
from tests.proxy.test_hostile import connect, read_answer, socket_buffer_bytes, until_closed
from tests.proxy.wire_upstream import RecordingUpstream


def refusals(sidecar: Sidecar, code: str) -> float | None:
    """shadow_proxy_requests_total of the proxy's own refusals with this status."""
    return sidecar.registry.get_sample_value("shadow_proxy_requests_total", {"method": "other", "code": code})


GET = b"GET /v HTTP/1.1\r\nHost: api\r\n\r\n"
HOLD = b"GET /hold HTTP/1.1\r\nHost: api\r\n\r\n"


@pytest.fixture
async def proxy_with(recording: RecordingUpstream, widget_rules: Path,
                     make_config: Callable[..., Config]) -> AsyncIterator[Callable[..., Awaitable[Sidecar]]]:
    """Starts a proxy in front of the recording upstream with the given flag values."""
    sidecars: list[Sidecar] = []

    async def make(**overrides: object) -> Sidecar:
        sidecar = await start_sidecar(make_config(recording.url, widget_rules, shadow_process="inline", **overrides))
        sidecars.append(sidecar)
        return sidecar

    yield make
    for sidecar in sidecars:
        await sidecar.stop()


async def test_a_head_not_sent_in_time_gets_a_408_and_the_connection_closes(proxy_with, recording) -> None:
    sidecar = await proxy_with(header_timeout=0.3)
    reader, writer = await connect(sidecar)
    writer.write(b"GET /v HTTP/1.1\r\nHo")  # and nothing more
    await writer.drain()
    answer = await until_closed(reader)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"Connection: close\r\n" in answer
    assert recording.requests == []
    assert refusals(sidecar, "408") == 1


async def test_a_silent_connection_gets_a_408(proxy_with) -> None:
    sidecar = await proxy_with(header_timeout=0.3)
    reader, writer = await connect(sidecar)
    answer = await until_closed(reader)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")


async def test_an_idle_keep_alive_connection_is_closed(proxy_with) -> None:
    sidecar = await proxy_with(keepalive_timeout=0.3)
    reader, writer = await connect(sidecar)
    writer.write(GET)
    await writer.drain()
    answer = await read_answer(reader)
    assert answer is not None and answer[0] == 200
    assert await until_closed(reader) == b""  # closed without a word, like nginx
    writer.close()


async def test_the_head_timeout_does_not_cut_a_request_waiting_for_the_upstream(proxy_with, recording) -> None:
    sidecar = await proxy_with(header_timeout=0.3)
    reader, writer = await connect(sidecar)
    writer.write(HOLD)
    await writer.drain()
    await recording.wait_for(1)
    # a second connection's head timeout fires after the first one's would have
    late_reader, late_writer = await connect(sidecar)
    late_writer.write(b"GET /v HTTP/1.1\r\n")
    assert (await until_closed(late_reader)).startswith(b"HTTP/1.1 408 ")
    late_writer.close()
    recording.release.set()
    answer = await read_answer(reader)
    writer.close()
    assert answer is not None and answer[0] == 200 and answer[2] == b"GET /hold 0"


async def test_at_the_cap_the_longest_idle_connection_makes_room(proxy_with) -> None:
    sidecar = await proxy_with(max_connections=2)
    first = await connect(sidecar)
    second = await connect(sidecar)
    for reader, writer in (first, second):
        writer.write(GET)
        await writer.drain()
        assert (await read_answer(reader)) is not None
    third_reader, third_writer = await connect(sidecar)
    third_writer.write(GET)
    answer = await read_answer(third_reader)
    assert answer is not None and answer[0] == 200
    assert await until_closed(first[0]) == b""  # the one idle longest
    second[1].write(GET)  # the other one still works
    answer = await read_answer(second[0])
    assert answer is not None and answer[0] == 200
    for _, writer in (first, second, (third_reader, third_writer)):
        writer.close()


async def test_at_the_cap_with_every_connection_busy_a_new_one_gets_a_503(proxy_with, recording) -> None:
    sidecar = await proxy_with(max_connections=2)
    busy = [await connect(sidecar) for _ in range(2)]
    for _, writer in busy:
        writer.write(HOLD)
        await writer.drain()
    await recording.wait_for(2)
    reader, writer = await connect(sidecar)
    assert (await until_closed(reader)).startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert refusals(sidecar, "503") == 1
    writer.close()
    recording.release.set()
    for reader, writer in busy:
        answer = await read_answer(reader)
        assert answer is not None and answer[0] == 200
        writer.close()


def test_the_connection_cap_fits_the_file_descriptor_limit() -> None:
    """Each client connection may hold an upstream one: the cap leaves room for both, so
    the process never runs out of descriptors (EMFILE) under a connection flood."""
    script = ("import resource; from shadow.config import RequestLimits; "
              "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]; "
              "resource.setrlimit(resource.RLIMIT_NOFILE, (400, hard)); print(RequestLimits().connection_cap())")
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert int(shown) == (400 - RESERVED_FDS - RequestLimits().admin_max_connections) // 2
    assert RequestLimits(max_connections=3).connection_cap() == 3


def test_limits_are_flags_and_env_vars_with_nginx_like_defaults(tmp_path: Path) -> None:
    base = {"upstream": "http://127.0.0.1:1", "rules": str(tmp_path)}
    defaults = Config.parse(base, {})
    assert (defaults.max_request_line, defaults.max_header_line, defaults.max_header_block, defaults.max_header_count,
            defaults.header_timeout, defaults.keepalive_timeout) == (8192, 8192, 32768, 100, 60.0, 75.0)
    env = {"SHADOW_HEADER_TIMEOUT": "5", "SHADOW_KEEPALIVE_TIMEOUT": "7", "SHADOW_MAX_CONNECTIONS": "9",
           "SHADOW_MAX_REQUEST_LINE": "4096", "SHADOW_MAX_HEADER_LINE": "1000", "SHADOW_MAX_HEADER_BLOCK": "2000",
           "SHADOW_MAX_HEADER_COUNT": "10"}
    parsed = Config.parse(base, env)
    assert (parsed.header_timeout, parsed.keepalive_timeout, parsed.max_connections, parsed.max_request_line,
            parsed.max_header_line, parsed.max_header_block, parsed.max_header_count) == (5.0, 7.0, 9, 4096, 1000, 2000, 10)
    assert Config.parse({**base, "header_timeout": "3"}, env).header_timeout == 3.0


# ---------------------------------------------------------------- what the proxy adds or logs

ETAG_ANSWER = b'HTTP/1.1 200 OK\r\nETag: "v1"\r\nX-CaSe: kept\r\nContent-Length: 2\r\n\r\nok'


@pytest.fixture
async def etag_upstream() -> AsyncIterator[str]:
    """Answers with an ETag, an oddly cased header, and no Server or Date."""
    async with canned_upstream(ETAG_ANSWER) as url:
        yield url


async def test_the_proxy_adds_no_server_header_and_keeps_header_case(etag_upstream: str, widget_rules: Path,
                                                                     make_config: Callable[..., Config]) -> None:
    sidecar = await start_sidecar(make_config(etag_upstream, widget_rules, shadow_process="inline"))
    try:
        reader, writer = await connect(sidecar)
        writer.write(GET)
        answer = await read_answer(reader)
        writer.close()
    finally:
        await sidecar.stop()
    assert answer is not None
    head = answer[1]
    assert b'\r\nETag: "v1"\r\n' in head and b"\r\nX-CaSe: kept\r\n" in head
    assert b"\r\nserver:" not in head.lower()
    assert b"\r\ndate:" not in head.lower()


async def test_a_mid_body_break_logs_the_path_without_the_query(raw_upstream: str, widget_rules: Path,
                                                                make_config: Callable[..., Config],
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    sidecar = await start_sidecar(make_config(raw_upstream, widget_rules, shadow_process="inline"))
    try:
        reader, writer = await connect(sidecar)
        writer.write(b"GET /raw/truncated?token=s3cret HTTP/1.1\r\nHost: api\r\n\r\n")
        await until_closed(reader)
        writer.close()
    finally:
        await sidecar.stop()
    broke = [record.getMessage() for record in caplog.records if "mid-body" in record.getMessage()]
    assert broke and "/raw/truncated" in broke[0]
    assert "s3cret" not in caplog.text


@pytest.mark.parametrize(("start", "piece", "status"), [
    (b"GET /", b"a" * 1024, b"414"),  # a request line that never ends
    (b"GET /v HTTP/1.1\r\nHost: api\r\nX-Long: ", b"a" * 1024, b"431"),  # one header that never ends
    (b"GET /v HTTP/1.1\r\nHost: api\r\n", b"X-Some: " + b"a" * 1000 + b"\r\n", b"431"),  # headers without end
], ids=["request-line", "one-header", "many-headers"])
async def test_a_head_sent_piece_by_piece_is_refused_at_its_limit(proxy_with, recording, start: bytes, piece: bytes,
                                                                  status: bytes) -> None:
    """The limits hold when the head comes in many reads (the proxy buffers at most
    about one read past them), not only when it comes in one."""
    sidecar = await proxy_with()
    reader, writer = await connect(sidecar)
    writer.write(start)
    try:
        for _ in range(512):  # more than the limit plus one read of the proxy's (256 KiB)
            writer.write(piece)
            await writer.drain()
    except ConnectionError:
        pass  # refused and closed before the client was done
    answer = await until_closed(reader)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 " + status + b" ")
    assert recording.requests == []
    assert refusals(sidecar, status.decode()) == 1


async def test_an_upstream_base_path_prefixes_paths_but_not_the_asterisk(recording, widget_rules: Path,
                                                                       make_config: Callable[..., Config],
                                                                       engine: str) -> None:
    sidecar = await start_sidecar(make_config(recording.url + "/base", widget_rules, shadow_process="inline"))
    try:
        reader, writer = await connect(sidecar)
        writer.write(GET + b"OPTIONS * HTTP/1.1\r\nHost: api\r\n\r\n")
        first = await read_answer(reader)
        second = await read_answer(reader)
        writer.close()
    finally:
        await sidecar.stop()
    assert first is not None and first[2] == b"GET /base/v 0"
    assert second is not None
    if engine == "raw":
        assert second[2] == b"OPTIONS * 0"
    else:  # aiohttp's client cannot send an asterisk-form target: refused
        assert second[0] == 400


async def test_an_upload_that_stalls_gets_a_408_and_the_connection_closes(proxy_with, recording) -> None:
    """A client that sends a head and part of its body, then nothing (slowloris on the
    body): after --upstream-timeout without a body byte the proxy answers 408 and closes,
    as nginx does after client_body_timeout; the connection is not held for ever."""
    sidecar = await proxy_with(upstream_timeout=0.5, header_timeout=60)
    reader, writer = await connect(sidecar)
    writer.write(b"POST /v HTTP/1.1\r\nHost: api\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
    await writer.drain()
    answer = await read_answer(reader)
    assert answer is not None and answer[0] == 408 and b"request body stopped arriving" in answer[2]
    assert b"\r\nConnection: close\r\n" in answer[1]
    # then closed: at once (raw), or once aiohttp's lingering close has dropped what may still come (<= 10 s)
    assert await asyncio.wait_for(reader.read(-1), 60) == b""  # a hang guard, not a bound
    writer.close()
    assert recording.requests == []  # the upstream never saw a whole request
    assert refusals(sidecar, "408") is None  # a proxied request's answer, counted under its method
    assert sidecar.registry.get_sample_value("shadow_proxy_requests_total", {"method": "POST", "code": "408"}) == 1


async def test_a_slow_upload_that_keeps_coming_is_not_cut(proxy_with, recording) -> None:
    """The timeout counts silence between two pieces of the body (nginx's
    client_body_timeout), not the whole upload: a body trickling in for longer than
    --upstream-timeout, a piece far more often than that, is forwarded whole."""
    sidecar = await proxy_with(upstream_timeout=2.0)
    reader, writer = await connect(sidecar)
    pieces = 60
    writer.write(b"POST /v HTTP/1.1\r\nHost: api\r\nContent-Length: %d\r\n\r\n" % pieces)
    for _ in range(pieces):  # 60 x 50 ms: about 3 s in all, 40 times more often than the timeout
        writer.write(b"x")
        await writer.drain()
        await asyncio.sleep(0.05)
    answer = await read_answer(reader)
    writer.close()
    assert answer is not None and answer[0] == 200 and answer[2] == b"POST /v %d" % pieces


async def test_at_the_cap_with_every_connection_trickling_an_upload_a_new_one_gets_a_503(proxy_with, recording) -> None:
    """Connections sending a request body count as busy on both engines: with every slot
    taken by an upload still arriving, a new client is refused (503), not served beyond
    the cap."""
    sidecar = await proxy_with(max_connections=2)
    uploads = [await connect(sidecar) for _ in range(2)]
    for _, writer in uploads:
        writer.write(b"POST /v HTTP/1.1\r\nHost: api\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        await writer.drain()
    await recording.arrived_heads(2)
    reader, writer = await connect(sidecar)
    writer.write(GET)
    assert (await until_closed(reader)).startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    writer.close()
    for reader, writer in uploads:
        writer.write(b"x" * 90)
        answer = await read_answer(reader)
        assert answer is not None and answer[0] == 200 and answer[2] == b"POST /v 100"
        writer.close()


# ---------------------------------------------------------------- the admin server's own limits (issue 18, finding 5)

async def connect_admin(sidecar: Sidecar) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = sidecar.admin_url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def test_idle_admin_connections_cannot_pile_up_and_probes_still_get_in(proxy_with) -> None:
    """The admin port has its own small cap (--admin-max-connections), outside the
    proxy's descriptor budget: idle connections to it make room for new ones (the
    kubelet's probe), so they can neither pile up nor starve the proxy of descriptors."""
    sidecar = await proxy_with(admin_max_connections=2)
    idle = [await connect_admin(sidecar) for _ in range(2)]
    reader, writer = await connect_admin(sidecar)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    answer = await read_answer(reader)
    assert answer is not None and (answer[0], answer[2]) == (200, b"ok\n")
    assert await until_closed(idle[0][0]) == b""  # the one idle longest made room
    for _, idle_writer in (*idle, (reader, writer)):
        idle_writer.close()


async def test_a_silent_admin_connection_gets_a_408(proxy_with) -> None:
    sidecar = await proxy_with(header_timeout=0.3)
    reader, writer = await connect_admin(sidecar)
    assert (await until_closed(reader)).startswith(b"HTTP/1.1 408 ")
    writer.close()


def test_the_admin_cap_is_a_flag_and_an_env_var(tmp_path: Path) -> None:
    base = {"upstream": "http://127.0.0.1:1", "rules": str(tmp_path)}
    assert Config.parse(base, {}).admin_max_connections == 16
    assert Config.parse(base, {"SHADOW_ADMIN_MAX_CONNECTIONS": "4"}).admin_max_connections == 4


async def test_a_client_that_stops_reading_its_answer_is_cut_after_the_timeout(
        widget_rules: Path, make_config: Callable[..., Config]) -> None:
    """A client that reads nothing of an answer (its socket full) for --upstream-timeout is
    cut (nginx: send_timeout), so it holds neither a connection slot nor the upstream
    connection for ever: the upstream sees its connection closed."""
    body = b"x" * (4 * socket_buffer_bytes())  # more than the kernel's buffers hold: the proxy's fills
    closed = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
            writer.write(body)
            await writer.drain()
            await reader.read()  # until the proxy closes the connection
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            closed.set()
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    sidecar = await start_sidecar(make_config(url, widget_rules, shadow_process="inline", upstream_timeout=0.5))
    try:
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        host, port = sidecar.proxy_url.removeprefix("http://").split(":")
        client.connect((host, int(port)))
        _, writer = await asyncio.open_connection(sock=client)
        writer.write(b"GET /big HTTP/1.1\r\nHost: api\r\n\r\n")
        await asyncio.wait_for(closed.wait(), 60)  # a hang guard, not a bound
        writer.close()
    finally:
        await sidecar.stop()
        server.close()
        await server.wait_closed()
