"""What `--record DIR` writes, decided off the event loop: the path shape an answer counts
against (`path_template`), its safe file name (`file_name`), and the redacted record in
the format `shadow rules draft --answers DIR` reads (shadow/ruletools/draft/answers.py):

    {"method": "GET", "path": "/api/users/65a1…?page=2", "status": 200, "body": {…}}

Nothing of the request reaches the file system as given: a file name is built from the
path's template (letters-only segments, the rest collapsed), cut to a fixed length,
with a hash of the template and a sequence number; bodies and query strings are
redacted (shadow/publish/redaction.py) before they are written.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from shadow.publish.redaction import Redaction, redact_document, redact_text

_HEX24 = re.compile(r"[0-9a-fA-F]{24}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")
_NUMBER = re.compile(r"[0-9]+")
_VERSION = re.compile(r"v[0-9]{1,2}")
#: a segment kept in a template (and so in a file name): a short word, no digits
_WORD = re.compile(r"[A-Za-z][A-Za-z_-]{0,31}")
#: segments of a template past this are one `{rest}` (a path of a thousand `/a`s is one shape)
MAX_SEGMENTS = 12
#: the readable part of a file name; the template's hash keeps names distinct beyond it
MAX_STEM = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
#: the built-in names and patterns, with caches of its own (the writer thread's, not the sink's)
REDACTION = Redaction()


def path_template(path: str) -> str:
    """The shape of a request path (without its query): ObjectIds -> `{id}`, uuids ->
    `{uuid}`, numbers -> `{n}`, any other segment but a short word (digits, `@`, `%`,
    dots, non-ASCII, over 32 characters) -> `{value}`; so that one route is not recorded
    10,000 times under 10,000 ids. Cheap: it runs on the loop for each GET 200 JSON
    answer while recording is on."""
    segments = path.split("?", 1)[0].split("/")[1:]
    shaped: list[str] = []
    for index, segment in enumerate(segments):
        if index == MAX_SEGMENTS:
            shaped.append("{rest}")
            break
        if not segment or _WORD.fullmatch(segment) or _VERSION.fullmatch(segment):
            shaped.append(segment)
        elif _HEX24.fullmatch(segment):
            shaped.append("{id}")
        elif _UUID.fullmatch(segment):
            shaped.append("{uuid}")
        elif _NUMBER.fullmatch(segment):
            shaped.append("{n}")
        else:
            shaped.append("{value}")
    return "/" + "/".join(shaped)


def file_name(template: str, run: str, sequence: int) -> str:
    """`<readable stem>.<template hash>.<run>.<n>.json`: ASCII letters, digits, `_`, `-`
    and dots only, never starting with a dot, at most about 120 characters."""
    stem = _UNSAFE.sub("_", template.replace("{", "").replace("}", "")).strip("_-")[:MAX_STEM] or "root"
    digest = hashlib.sha256(template.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{stem}.{digest}.{_UNSAFE.sub('', run)[:16]}.{sequence:05d}.json"


def redacted_query(query: str) -> str:
    """A query string with each parameter whose name says secret or PII masked, and
    value patterns (tokens, e-mails, card numbers) masked in the rest."""
    pairs = []
    for pair in query.split("&"):
        name, equals, value = pair.partition("=")
        kind = REDACTION.kind(unquote_plus(name)[:64]) if name else None
        pairs.append(f"{name}{equals}{REDACTION.value(unquote_plus(value), unquote_plus(name)[:64])}"
                     if kind is not None and equals else pair)
    return redact_text("&".join(pairs), REDACTION)


class NotRecordable(Exception):
    """A body the recorder cannot keep; `reason` is the label it is counted under."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decoded(body: bytes, content_encoding: str, limit: int) -> bytes:
    """The body without its Content-Encoding (identity, gzip, deflate), at most `limit`
    bytes decompressed (a small zip bomb stays small)."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise NotRecordable("encoding")
    window = 16 + zlib.MAX_WBITS if encoding != "deflate" else zlib.MAX_WBITS
    try:
        inflater = zlib.decompressobj(window)
        plain = inflater.decompress(body, limit + 1)
    except zlib.error:
        if encoding != "deflate":
            raise NotRecordable("not_json") from None
        try:  # a raw deflate stream (what some servers send as `deflate`)
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            plain = inflater.decompress(body, limit + 1)
        except zlib.error:
            raise NotRecordable("not_json") from None
    if len(plain) > limit or inflater.unconsumed_tail:
        raise NotRecordable("too_large")
    return plain


def record_text(method: str, path: str, query: str, status: int, body: bytes, content_encoding: str,
                limit: int) -> str:
    """The JSON text of one recorded answer, redacted. NotRecordable when the body is
    not JSON (or too large once decompressed)."""
    try:
        document: Any = json.loads(decoded(body, content_encoding, limit))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise NotRecordable("not_json") from None
    shown = redact_text(path, REDACTION) + (f"?{redacted_query(query)}" if query else "")
    record = {"method": method, "path": shown, "status": status, "body": redact_document(document, REDACTION)}
    return json.dumps(record, ensure_ascii=True, indent=1)


def write_record(directory: Path, name: str, text: str) -> None:
    """Write one file whole or not at all: to a hidden temporary name first (the draft
    reads `*.json` only), then renamed; an existing file is never replaced."""
    target = directory / name
    temporary = directory / f".{name}.part"
    with open(temporary, "x", encoding="ascii") as stream:
        stream.write(text)
    try:
        if target.exists():
            raise FileExistsError(f"{name} exists")
        os.replace(temporary, target)
    finally:
        if temporary.exists():
            temporary.unlink()

