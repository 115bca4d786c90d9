"""What of a captured read crosses to a shadow worker: only the request headers its
route reads (a header key, the reader's token, the recheck's replay headers), so the
client's cookies and other credentials never leave the proxy process."""
from __future__ import annotations

from pathlib import Path

import pytest
from multidict import CIMultiDict, MultiDict

from shadow.replay.messages import read_message
from shadow.rules import RouteMatch, load_rules
from shadow.shadowside import CapturedRead
from tests.widgets import widget_rules

HEAD = widget_rules()
CLIENT_HEADERS = CIMultiDict([("Host", "api"), ("Cookie", "session=s3cret"), ("Authorization", "Bearer t0k"),
                              ("X-Widget", "w7"), ("User-Agent", "curl"), ("traceparent", "00-ab-cd-01")])


@pytest.mark.parametrize(("route", "crossing"), [
    ("  - GET /w/{id}\n", []),
    ("  - route: GET /w/{id}\n    recheck: {control: upstream, headers: [Authorization]}\n",
     [("Authorization", "Bearer t0k")]),
    ("  - route: GET /w\n    key: {header: X-Widget}\n", [("X-Widget", "w7")]),
])
def test_only_the_headers_the_route_reads_cross(tmp_path: Path, route: str, crossing: list[tuple[str, str]]) -> None:
    (tmp_path / "w.yaml").write_text(HEAD + route)
    [rule] = load_rules(tmp_path).routes
    read = CapturedRead(match=RouteMatch(rule, {"id": "w7"}), query=MultiDict([("a", "1"), ("a", "2")]),
                        headers=CLIENT_HEADERS, body=b"{}", content_type="application/json", content_encoding="",
                        trace_headers=(("traceparent", "00-ab-cd-01"),), enqueued_at=1.0)
    message = read_message(read)
    assert list(message.headers) == crossing
    assert "s3cret" not in repr(message)
    assert message.query == (("a", "1"), ("a", "2")) and message.trace == (("traceparent", "00-ab-cd-01"),)
