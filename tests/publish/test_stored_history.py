"""An example's recheck history and differences as read back from the evidence store
(shadow/publish/views.py `history_of`, `diffs_of`): the store is shared by every pod
and may hold rows from older versions or a hand edit, so whatever it holds becomes a
bounded, typed value or is left out — never an exception on the example view."""
from __future__ import annotations

from typing import Any

import pytest

from shadow.model import MAX_RECHECK_PATHS, MAX_RECHECK_STEPS, RecheckStep, RedactedDiff
from shadow.publish.views import RecheckHistory, diffs_of, history_of

STEP = {"at": 1.5, "after": 0.25, "saw": "differs", "paths": ["name"]}


@pytest.mark.parametrize(("stored", "expected"), [
    (None, RecheckHistory()),
    ("steps", RecheckHistory()),
    ([STEP], RecheckHistory()),
    ({}, RecheckHistory()),  # an example written before the steps were kept
    ({"schedule_seconds": [1, 5], "done": 2, "seconds": 6.1, "ended": "x", "steps": [STEP]},
     RecheckHistory((1.0, 5.0), 2, 6.1, "x", (RecheckStep(1.5, 0.25, "differs", ("name",)),))),
    ({"schedule_seconds": "1,5", "done": "2", "seconds": None, "steps": {"a": 1}}, RecheckHistory()),
    ({"done": True, "schedule_seconds": [True, "x", 2]}, RecheckHistory(schedule_seconds=(0.0, 0.0, 2.0))),
    ({"steps": [{**STEP, "saw": "exploded"}, {**STEP, "saw": None}, "differs", 7]}, RecheckHistory()),
    ({"steps": [{"saw": "gone"}]}, RecheckHistory(steps=(RecheckStep(0.0, 0.0, "gone"),))),
    ({"steps": [{**STEP, "paths": ["a", 1, None, {"b": 2}], "at": "soon"}]},
     RecheckHistory(steps=(RecheckStep(0.0, 0.25, "differs", ("a",)),))),
    ({"steps": [{**STEP, "paths": "name"}]}, RecheckHistory(steps=(RecheckStep(1.5, 0.25, "differs"),))),
    ({"steps": [{**STEP, "paths": ["p"] * 1000}]},
     RecheckHistory(steps=(RecheckStep(1.5, 0.25, "differs", ("p",) * MAX_RECHECK_PATHS),))),
    ({"steps": [STEP] * 1000}, RecheckHistory(steps=(RecheckStep(1.5, 0.25, "differs", ("name",)),) * MAX_RECHECK_STEPS)),
])
def test_a_stored_recheck_history_becomes_a_bounded_typed_value(stored: Any, expected: RecheckHistory) -> None:
    assert history_of(stored) == expected


@pytest.mark.parametrize(("stored", "expected"), [
    (None, ()),
    ({"path": "a"}, ()),
    (["a", 1, None], ()),
    ([{"path": "name", "at": "name", "kind": "changed", "control": "A", "candidate": "B"}],
     (RedactedDiff("name", "name", "changed", "A", "B"),)),
    ([{"path": None, "kind": 3}], (RedactedDiff("", "", "3", None, None),)),
])
def test_stored_differences_become_typed_values(stored: Any, expected: tuple[RedactedDiff, ...]) -> None:
    assert diffs_of(stored) == expected
