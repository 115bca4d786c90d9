"""With --otlp-endpoint, comparison spans reach an OTLP/HTTP collector (a real HTTP
server here, decoding the protobuf the way a collector does)."""
from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from shadow.config import Config
from shadow.sidecar import start_sidecar
from tests.widgets import widget_rules

RULES = widget_rules("  - route: GET /widgets/{id}\n    recheck: 0\n")


class _Collector(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, self.headers["Content-Type"], body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    received: list[tuple[str, str, bytes]] = []
    handler = type("Collector", (_Collector,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()
    thread.join(5)


class _Source:
    async def fetch(self, entity, keys):
        return {key: {"_id": key} for key in keys}

    async def list_keys(self, entity, route, params):
        return set()

    async def close(self) -> None:
        pass


async def test_comparison_spans_are_exported_over_otlp(collector, tmp_path: Path) -> None:
    endpoint, received = collector

    async def widget(request: web.Request) -> web.Response:
        return web.json_response({"_id": request.match_info["id"]})

    app = web.Application()
    app.router.add_get("/widgets/{id}", widget)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    (tmp_path / "widgets.yaml").write_text(RULES)
    config = Config(upstream=f"http://127.0.0.1:{runner.addresses[0][1]}", rules=tmp_path, listen="127.0.0.1:0",
                    admin_listen="127.0.0.1:0", reload="signal", otlp_endpoint=endpoint, mismatch_log=str(tmp_path / "log"))
    # the shadow source is a stand-in: this test is about the span export only
    sidecar = await start_sidecar(config, sources={"postgres": _Source()})
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(sidecar.proxy_url + "/widgets/w1",
                                   headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}) as response:
                assert response.status == 200
        assert await sidecar.pipeline.drain(120)  # a hang guard, not a bound: drain returns when done
    finally:
        await sidecar.stop()  # flushes the batch processor
        await runner.cleanup()
    assert received, "no OTLP export arrived"
    path, content_type, body = received[0]
    assert path == "/v1/traces" and content_type == "application/x-protobuf"
    export = ExportTraceServiceRequest()
    export.ParseFromString(body)
    spans = [span for resource in export.resource_spans for scope in resource.scope_spans for span in scope.spans]
    assert [span.name for span in spans] == ["shadow.compare"]
    assert spans[0].trace_id.hex() == "0af7651916cd43dd8448eb211c80319c"
    attributes = {attribute.key: attribute.value.string_value for attribute in spans[0].attributes}
    assert attributes["shadow.outcome"] == "match" and attributes["shadow.key"] == "w1"
