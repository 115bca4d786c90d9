"""A body without its content coding (gzip, deflate), bounded: for the captured read's
body copy (replay/prepare.py) and a recheck's replayed answer (replay/control.py)."""
from __future__ import annotations

import zlib

MAX_INFLATED_BYTES = 16 * 1024 * 1024  # a gzip body may not inflate past this (zip bombs)


def decoded_body(body: bytes, content_encoding: str, limit: int) -> bytes | None:
    """The body without its content coding (gzip/deflate), at most `limit` bytes; None
    when the coding is unknown or the body is corrupt or would inflate past the limit."""
    coding = content_encoding.strip().lower()
    if coding in ("", "identity"):
        return body
    if coding not in ("gzip", "x-gzip", "deflate"):
        return None
    try:
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 32 if coding != "deflate" else zlib.MAX_WBITS)
        plain = inflater.decompress(body, limit)
    except zlib.error:
        if coding != "deflate":
            return None
        try:  # raw deflate, as some servers send it
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            plain = inflater.decompress(body, limit)
        except zlib.error:
            return None
    return None if inflater.unconsumed_tail else plain
