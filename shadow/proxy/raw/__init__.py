"""The raw reverse proxy engine (`--engine raw`): the same contract as the aiohttp engine,
built on asyncio Protocols and httptools (llhttp) instead of aiohttp's client and server.

One `ClientConnection` per client connection parses requests; each request becomes an
`Exchange` that is written to a pooled keep-alive `UpstreamConnection` (per-upstream
pool, LIFO, idle ones closed after 4 s). Both directions are streamed as they arrive,
with flow control: a full write buffer on one side pauses reading on the other. The
response goes back with the upstream's status line reason and end-to-end headers as
received (names and values byte for byte, repeats in order); the body bytes are
written on unchanged for a Content-Length body, re-framed as chunks (same bytes
inside) for a chunked or close-delimited body to an HTTP/1.1 client, and sent
close-delimited to an HTTP/1.0 client. Shadow capture, own 502/504 answers and the
metrics are the shared helpers of shadow/proxy/forwarding.py; the request-head limits,
timeouts and connection cap are shadow/proxy/limits.py.

Runs on the request path: no awaits per request when a pooled connection is free (a
task only to open a new upstream connection); per request a handful of list appends
and one write per upstream read.

Not done: Upgrade / CONNECT (the Upgrade header is hop-by-hop, so the upstream sees a
plain request; the client connection is closed after the answer), trailers of a
chunked body (dropped). An https upstream works (TLS via the loop) but is not tested.

Modules: exchange (one request and its answer: its `Stage`, how both heads are framed,
and the Protocols each part needs of the others), upstream (the upstream connection and
its keep-alive pool), engine (RawProxy: dispatch, answers, failures), client (the
client connection), server (serve, RawServer). Each imports only the ones before it
(tests/proxy/test_raw_layout.py).
"""
from shadow.proxy.raw.engine import RawProxy
from shadow.proxy.raw.server import RawServer, serve

__all__ = ["RawProxy", "RawServer", "serve"]
