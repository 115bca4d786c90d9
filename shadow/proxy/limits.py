"""What a client may ask of the request path, shared by both engines: the size limits on a
request head, the header-read and keep-alive timeouts, the cap on client connections,
and the checks that refuse a request nginx would refuse (the target, Host, framing).

Clients are untrusted: every request is bounded here before anything is forwarded.
Defaults follow nginx (8 KiB request line, 8 KiB per header, 32 KiB of headers, 60 s to
send a head, 75 s idle keep-alive).
"""
from __future__ import annotations

import collections
import re
from email.utils import formatdate
from typing import Protocol
from urllib.parse import unquote_to_bytes

from shadow.config import DEFAULT_LIMITS, RequestLimits

#: after refusing a request, the proxy reads (and drops) what the client still sends for
#: up to this long before closing: closing with unread input makes the kernel send a
#: reset, which can destroy the refusal before the client reads it (nginx: lingering_close)
LINGER_SECONDS = 2.0

REASONS = {400: "Bad Request", 405: "Method Not Allowed", 408: "Request Timeout", 414: "URI Too Long",
           431: "Request Header Fields Too Large", 503: "Service Unavailable"}


class Refused(Exception):
    """A request the proxy answers itself with a 4xx and a closed connection."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(f"{status} {why}")
        self.status = status
        self.why = why


def refusal(status: int, head_only: bool = False) -> bytes:
    """The proxy's own answer to a refused request (the connection closes after it)."""
    reason = REASONS.get(status, "Bad Request")
    body = f"{status} {reason}\n".encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nDate: {formatdate(usegmt=True)}\r\n"
            "Connection: close\r\n\r\n").encode("latin-1")
    return head if head_only else head + body


def check_target(method: bytes, target: bytes) -> None:
    """Refuses (400) a request target that is not origin-form or an http(s) absolute-form
    URI; `*` only for OPTIONS; CONNECT never (no tunnels)."""
    if method == b"CONNECT":
        raise Refused(400, "CONNECT is not proxied")
    if target == b"*":
        if method != b"OPTIONS":
            raise Refused(400, "asterisk-form only with OPTIONS")
        return
    if target.startswith(b"/"):
        if target.startswith(b"//"):
            raise Refused(400, "target starts with //")
        return
    lowered = target.lower()
    for scheme in (b"http://", b"https://"):
        if lowered.startswith(scheme):
            rest = target[len(scheme):]
            end = authority_end(rest)
            authority = rest[:end]
            if rest[end:end + 1] == b"#":
                raise Refused(400, "fragment in an absolute-form target")
            if authority and b"@" not in authority:
                check_host(authority)
                return
    raise Refused(400, "request target is neither a path nor an http(s) URL")


def authority_end(rest: bytes) -> int:
    """Where the authority of an absolute-form target (after `scheme://`) ends: at the
    first `/`, `?` or `#` (RFC 3986 §3.2). Ending it at the first `/` only would read
    `http://evil.example?x=/admin` as the path `/admin` (issue 18)."""
    end = len(rest)
    for delimiter in (b"/", b"?", b"#"):
        found = rest.find(delimiter, 0, end)
        if found >= 0:
            end = found
    return end


def origin_form(target: bytes) -> bytes:
    """The path and query of a request target (an absolute-form target loses scheme and
    host, and gets the path `/` when it has none; `*` stays `*`)."""
    if target.startswith(b"/") or target == b"*":
        return target
    if b"://" in target:
        rest = target.split(b"://", 1)[1]
        path = rest[authority_end(rest):]
        return path if path.startswith(b"/") else b"/" + path
    return b"/" + target


#: a plain host name or address with an optional port: accepted without the byte walk
_PLAIN_HOST = re.compile(rb"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?(?::[0-9]{0,5})?")


def check_host(host: bytes) -> None:
    """Refuses (400) a Host (or absolute-form authority) nginx refuses
    (ngx_http_validate_host): empty, `..`, a `/`, a space or control byte."""
    if _PLAIN_HOST.fullmatch(host):
        return
    dot = length = len(host)
    state = "name"
    for index, byte in enumerate(host):
        if byte == 0x2E:  # .
            if dot == index - 1:
                raise Refused(400, "Host with an empty label")
            dot = index
        elif byte == 0x3A:  # :
            if state == "name":
                length, state = index, "port"
        elif byte == 0x5B:  # [
            if index == 0:
                state = "literal"
        elif byte == 0x5D:  # ]
            if state == "literal":
                length, state = index + 1, "port"
        elif byte == 0x2F or byte <= 0x20 or byte == 0x7F:
            raise Refused(400, "Host with a slash, space or control byte")
    if dot == length - 1:
        length -= 1
    if length <= 0:
        raise Refused(400, "empty Host")


def check_dot_segments(target: bytes) -> None:
    """Refuses (400) a path whose dot segments, once percent-decoded, climb above the
    root (`/../admin`, `/%2e%2e/admin`, `/..%2fadmin`), as nginx does; a `..` that stays
    inside (`/a/../b`) is forwarded as sent."""
    if b"." not in target and b"%" not in target:  # the common case, on every request
        return
    path = origin_form(target).split(b"?", 1)[0]
    if b"%" in path:
        path = unquote_to_bytes(path)
    depth = 0
    for segment in path.split(b"/"):
        if segment == b"..":
            depth -= 1
            if depth < 0:
                raise Refused(400, "dot segments above the root")
        elif segment and segment != b".":
            depth += 1


def check_head(method: bytes, target: bytes, http_version: str, headers: list[tuple[bytes, bytes]],
               policy: RequestLimits = DEFAULT_LIMITS) -> int | None:
    """Checks a complete request head; returns the body's Content-Length (None: none or
    chunked). Refuses (400) what could be read two ways: HTTP other than 1.0/1.1, a
    missing (HTTP/1.1), repeated or invalid Host, Transfer-Encoding other than exactly
    `chunked` (or on HTTP/1.0), Transfer-Encoding with Content-Length, differing
    Content-Lengths; and, unless `policy` forwards them, TRACE (405) and dot segments
    above the root (400)."""
    if http_version not in ("1.0", "1.1"):
        raise Refused(400, f"HTTP/{http_version} is not HTTP/1.x")
    check_target(method, target)
    if method == b"TRACE" and policy.trace_method == "refuse":
        raise Refused(405, "TRACE is refused (--trace-method)")
    if (b"." in target or b"%" in target) and policy.dot_segments == "refuse":
        check_dot_segments(target)
    hosts = 0
    lengths: set[bytes] = set()
    encodings: list[bytes] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"host":
            hosts += 1
            check_host(value)
        elif lowered == b"content-length":
            lengths.add(value.strip())
        elif lowered == b"transfer-encoding":
            encodings.append(value.strip().lower())
    if hosts > 1:
        raise Refused(400, "more than one Host")
    if hosts == 0 and http_version == "1.1":
        raise Refused(400, "HTTP/1.1 without Host")
    if encodings:
        if http_version != "1.1" or encodings != [b"chunked"]:
            raise Refused(400, "Transfer-Encoding other than chunked")
        if lengths:
            raise Refused(400, "Transfer-Encoding with Content-Length")
        return None
    if len(lengths) > 1:
        raise Refused(400, "differing Content-Length values")
    if lengths:
        (length,) = lengths
        if not length.isdigit():
            raise Refused(400, "Content-Length is not a number")
        return int(length)
    return None


class Evictable(Protocol):
    def evict(self) -> None:
        """Close this connection: it is waiting for a head and room is needed."""


class ConnectionSlots:
    """The cap on client connections. A connection is `waiting` (no request head in yet:
    just accepted, idle keep-alive, or a head still arriving) or busy (a request in
    flight). At the cap, a new connection takes the place of the one that has been waiting
    longest (closed: slow and idle clients cannot starve fresh ones); when every
    connection is busy it is refused with a 503."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._holders: set[Evictable] = set()
        self._waiting: collections.OrderedDict[Evictable, None] = collections.OrderedDict()

    @property
    def count(self) -> int:
        return len(self._holders)

    def admit(self, connection: Evictable) -> bool:
        """Whether `connection` may stay open (it then holds a slot, waiting)."""
        while len(self._holders) >= self.cap:
            if not self._waiting:
                return False
            oldest, _ = self._waiting.popitem(last=False)
            self._holders.discard(oldest)
            oldest.evict()
        self._holders.add(connection)
        self._waiting[connection] = None
        return True

    def waiting(self, connection: Evictable) -> None:
        """`connection` waits for a request head again (to the back of the line)."""
        if connection in self._holders:
            self._waiting.pop(connection, None)
            self._waiting[connection] = None

    def busy(self, connection: Evictable) -> None:
        """`connection` has a request head in: never evicted while it is busy."""
        self._waiting.pop(connection, None)

    def release(self, connection: Evictable) -> None:
        """`connection` is closed: its slot is free (no-op when it held none)."""
        self._holders.discard(connection)
        self._waiting.pop(connection, None)
