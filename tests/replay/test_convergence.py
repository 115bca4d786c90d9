"""The pure recheck verdict (shadow/replay/convergence.py) and the bounded recheck heap:
a table of recheck histories and what they add up to."""
from __future__ import annotations

import pytest

from shadow.model import MAX_RECHECK_STEPS, FieldDiff, Outcome, Verdict
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


def gone() -> Verdict:
    return Verdict(Outcome.MISMATCH, (FieldDiff("", "", None, "(still present)", "control_gone"),))


@pytest.mark.parametrize(("steps", "seen"), [
    # (verdict, moved control paths) per recheck -> what each step shows: saw, paths
    ([(differs(("name", "a", "b"), ("price", 1, 2)), ())], [("differs", ("name", "price"))]),
    ([(differs(("price", 2, 1)), {"price"})], [("control_changed", ("price",))]),
    ([(MISSING, ())], [("missing", ())]),
    ([(differs(("name", "a", "b")), ()), (gone(), {""})], [("differs", ("name",)), ("gone", ())]),
    # list indices collapsed: the path, never the location or a value
    ([(Verdict(Outcome.MISMATCH, (FieldDiff("offers[*].status", "offers[2].status", "a", "b"),)), ())],
     [("differs", ("offers[*].status",))]),
])
def test_each_recheck_step_is_kept_with_paths_only(steps: list[tuple[Verdict, set[str]]],
                                                   seen: list[tuple[str, tuple[str, ...]]]) -> None:
    trail = Trail(first=steps[0][0], first_candidate=None, control={}, started=100.0)
    for index, (verdict, moved) in enumerate(steps):
        trail = trail.after(verdict, {}, {}, moved, at=1000.0 + index, now=100.5 + index)
    assert [(step.saw, step.paths) for step in trail.steps] == seen
    assert [(step.at, step.after) for step in trail.steps] == [(1000.0 + n, 0.5 + n) for n in range(len(steps))]
    ended = trail.converged(at=2000.0, now=110.0)
    assert ended.step == len(steps) + 1 and ended.steps[-1].saw == "converged" and ended.steps[-1].after == 10.0


def test_the_recheck_history_is_bounded_and_keeps_how_it_ended() -> None:
    trail = Trail(first=MISSING, first_candidate=None, control={}, started=0.0)
    for n in range(MAX_RECHECK_STEPS + 5):
        trail = trail.after(differs((f"p{n}", 1, 2)), {}, {}, (), at=float(n), now=float(n))
    trail = trail.converged(at=99.0, now=99.0)
    assert trail.step == MAX_RECHECK_STEPS + 6  # the count stays exact
    assert len(trail.steps) == MAX_RECHECK_STEPS
    assert [step.paths for step in trail.steps[:3]] == [("p0",), ("p1",), ("p2",)]
    assert trail.steps[-1].saw == "converged"


async def test_the_recheck_heap_is_bounded_by_count_and_bytes_and_says_why() -> None:
    heap: RecheckHeap[str] = RecheckHeap(capacity=2, capacity_bytes=100)
    assert heap.push("a", 0.0, 60) is None
    assert heap.push("b", 0.0, 60) == "recheck_bytes"
    assert heap.push("c", 0.0, 10) is None
    assert heap.push("d", 0.0, 1) == "recheck_full"
    due = await heap.due_batch(10)
    assert sorted(item for item, _ in due) == ["a", "c"] and heap.held_bytes == 0
