"""A raw-socket upstream for wire tests: it records the exact bytes each connection
receives and reads them with its own strict HTTP/1.1 parser (not the proxy's llhttp),
so anything ambiguous the proxy lets through shows up here as an error or an extra
request. Every request is answered `200` with `<method> <target> <body length>`;
`/hold` is answered only once `release` is set."""
from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

TOKEN = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


@dataclass(frozen=True)
class Received:
    method: bytes
    target: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    head: bytes  # the head exactly as it arrived

    def header(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


class Malformed(Exception):
    """What the upstream received could be read more than one way."""


@dataclass
class RecordingUpstream:
    requests: list[Received] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    raw: list[bytearray] = field(default_factory=list)  # every byte, per connection
    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    heads: int = 0  # request heads read (a body may still be arriving)
    url: str = ""
    _server: asyncio.AbstractServer | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def wait_for(self, count: int, timeout: float = 60.0) -> None:
        """Until `count` requests (or errors) have arrived."""
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: len(self.requests) + len(self.errors) >= count),
                                   timeout)

    async def arrived_heads(self, count: int, timeout: float = 60.0) -> None:
        """Until `count` request heads have arrived (their bodies may still be coming)."""
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: self.heads >= count), timeout)

    async def _head_read(self) -> None:
        async with self.arrived:
            self.heads += 1
            self.arrived.notify_all()

    async def _note(self, request: Received | None, error: str | None = None) -> None:
        async with self.arrived:
            if request is not None:
                self.requests.append(request)
            if error is not None:
                self.errors.append(error)
            self.arrived.notify_all()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        recorded = bytearray()
        self.raw.append(recorded)
        try:
            while True:
                try:
                    request = await read_request(reader, recorded, self._head_read)
                except asyncio.IncompleteReadError as cut:
                    if cut.partial:
                        await self._note(None, f"connection closed inside a request: {bytes(cut.partial[:200])!r}")
                    return
                except Malformed as problem:
                    await self._note(None, str(problem))
                    return
                await self._note(request)
                if request.target.endswith(b"/hold"):
                    await self.release.wait()
                text = b"%b %b %d" % (request.method, request.target, len(request.body))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%b"
                             % (len(text), text))
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()


async def _read(reader: asyncio.StreamReader, recorded: bytearray, separator: bytes) -> bytes:
    data = await reader.readuntil(separator)
    recorded += data
    return data


async def read_request(reader: asyncio.StreamReader, recorded: bytearray,
                       head_read: Callable[[], Awaitable[None]] | None = None) -> Received:
    """One request, strictly: CRLF only, no obs-fold, one Host, exactly one way to frame
    the body (one Content-Length of digits, or Transfer-Encoding: chunked alone)."""
    try:
        head = await _read(reader, recorded, b"\r\n\r\n")
    except asyncio.LimitOverrunError as too_long:
        raise Malformed(f"head over the reader's limit: {too_long}") from None
    if head_read is not None:
        await head_read()
    lines = head[:-4].split(b"\r\n")
    if any(b"\n" in line or b"\r" in line for line in lines):
        raise Malformed(f"bare CR or LF in head: {head[:200]!r}")
    request_line = lines[0].split(b" ")
    if len(request_line) != 3 or request_line[2] != b"HTTP/1.1":
        raise Malformed(f"bad request line: {lines[0][:200]!r}")
    method, target, _ = request_line
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not TOKEN.match(name):
            raise Malformed(f"bad header line: {line[:200]!r}")
        headers.append((name, value.strip(b" \t")))
    names = [name.lower() for name, _ in headers]
    if names.count(b"host") != 1:
        raise Malformed(f"{names.count(b'host')} Host headers")
    lengths = [value for name, value in headers if name.lower() == b"content-length"]
    encodings = [value for name, value in headers if name.lower() == b"transfer-encoding"]
    if (lengths and encodings) or len(lengths) > 1 or len(encodings) > 1:
        raise Malformed(f"ambiguous framing: Content-Length {lengths}, Transfer-Encoding {encodings}")
    if encodings:
        if encodings[0] != b"chunked":
            raise Malformed(f"Transfer-Encoding {encodings[0]!r}")
        body = await _read_chunked(reader, recorded)
    elif lengths:
        if not lengths[0].isdigit():
            raise Malformed(f"Content-Length {lengths[0]!r}")
        body = await reader.readexactly(int(lengths[0]))
        recorded += body
    else:
        body = b""
    return Received(method, target, tuple(headers), body, head)


async def _read_chunked(reader: asyncio.StreamReader, recorded: bytearray) -> bytes:
    body = bytearray()
    while True:
        size_line = (await _read(reader, recorded, b"\r\n"))[:-2]
        if not re.fullmatch(rb"[0-9a-fA-F]{1,8}", size_line):
            raise Malformed(f"chunk size {size_line[:50]!r}")
        size = int(size_line, 16)
        if size == 0:
            if await _read(reader, recorded, b"\r\n") != b"\r\n":
                raise Malformed("trailers after the last chunk")
            return bytes(body)
        chunk = await reader.readexactly(size + 2)
        recorded += chunk
        if not chunk.endswith(b"\r\n"):
            raise Malformed("chunk not followed by CRLF")
        body += chunk[:-2]
