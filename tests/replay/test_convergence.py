"""The pure recheck verdict (shadow/replay/convergence.py) and the bounded recheck heap:
a table of recheck histories and what they add up to."""
from __future__ import annotations

import pytest

from shadow.model import FieldDiff, Outcome, Verdict
from shadow.replay.convergence import Trail
from shadow.replay.recheck import RecheckHeap


def differs(*pairs: tuple[str, object, object]) -> Verdict:
    return Verdict(Outcome.MISMATCH, tuple(FieldDiff(path, path, control, candidate) for path, control, candidate in pairs))


MISSING = Verdict(Outcome.MISSING)


@pytest.mark.parametrize(("steps", "expected", "paths"), [
    # (verdict, moved control paths) per recheck
    ([(differs(("name", "a", "b")), ()), (differs(("name", "a", "b")), ())], Outcome.MISMATCH, ["name"]),
    ([(MISSING, ()), (MISSING, ())], Outcome.MISSING, []),
    # the price moved in the control every time; the name is the same difference each time
    ([(differs(("name", "a", "b"), ("price", 2, 1)), {"price"}),
      (differs(("name", "a", "b"), ("price", 3, 2)), {"price"})], Outcome.MISMATCH, ["name"]),
    # only moving differences: no verdict possible
    ([(differs(("price", 2, 1)), {"price"}), (differs(("price", 3, 2)), {"price"})], Outcome.UNSTABLE, ["price"]),
    # a generated field: the same values twice is impossible, and the noise check marked it
    ([(differs(("servedAt", "t1", None)), {"servedAt"})], Outcome.UNSTABLE, ["servedAt"]),
    # the control held still but the candidate kept changing without converging: still a mismatch
    ([(differs(("n", 5, 1)), ()), (differs(("n", 5, 2)), ())], Outcome.MISMATCH, ["n"]),
    # a difference under a moving object is not steady either
    ([(differs(("offers[0].status", "a", "b")), {"offers[0]"}),
      (differs(("offers[0].status", "a", "b")), ())], Outcome.UNSTABLE, ["offers[0].status"]),
])
def test_recheck_histories(steps: list[tuple[Verdict, set[str]]], expected: Outcome, paths: list[str]) -> None:
    trail = Trail(first=steps[0][0], first_candidate=None, control={}, started=0.0)
    for verdict, moved in steps:
        trail = trail.after(verdict, {}, {}, moved)
    outcome, diffs = trail.outcome()
    assert (outcome, [diff.path for diff in diffs]) == (expected, paths)


async def test_the_recheck_heap_is_bounded_by_count_and_bytes_and_says_why() -> None:
    heap: RecheckHeap[str] = RecheckHeap(capacity=2, capacity_bytes=100)
    assert heap.push("a", 0.0, 60) is None
    assert heap.push("b", 0.0, 60) == "recheck_bytes"
    assert heap.push("c", 0.0, 10) is None
    assert heap.push("d", 0.0, 1) == "recheck_full"
    due = await heap.due_batch(10)
    assert sorted(item for item, _ in due) == ["a", "c"] and heap.held_bytes == 0
