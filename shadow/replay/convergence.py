"""What a key's rechecks add up to, pure: after each recheck (control and candidate
both re-read) the Trail remembers which differences were seen every time and which
paths the *control* itself moved on; at the end of the route's schedule it says
transient, mismatch / missing, or unstable.

    converged on any recheck                          -> transient
    a difference identical on every recheck, on a
    path the control never moved on                   -> mismatch (those differences) / missing
    no such difference, the control moved             -> unstable (no verdict possible)
    no such difference, the control held still        -> mismatch (the last differences)

Nothing here does I/O; the pipeline feeds it verdicts from compare().
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from shadow.model import MAX_RECHECK_PATHS, MAX_RECHECK_STEPS, FieldDiff, Outcome, RecheckSaw, RecheckStep, Verdict

#: the signature of "the source has no row for this key"
MISSING_SIGNATURE = ("", "missing", b"", b"")
WHOLE_DOCUMENT = ""

Signature = tuple[str, str, bytes, bytes]


def _frozen(value: Any) -> bytes:
    return orjson.dumps(value, default=str, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def signatures(verdict: Verdict) -> frozenset[Signature]:
    """The exact differences of one comparison: where, what kind, both values."""
    if verdict.outcome is Outcome.MISSING:
        return frozenset({MISSING_SIGNATURE})
    return frozenset((diff.at, diff.kind, _frozen(diff.control), _frozen(diff.candidate)) for diff in verdict.diffs)


def covered(at: str, moving: Iterable[str]) -> bool:
    """Is location `at` at or under a path where the control moved?"""
    return any(path == WHOLE_DOCUMENT or at == path or at.startswith((path + ".", path + "["))
               for path in moving)


def moved_paths(verdict: Verdict) -> frozenset[str]:
    """Locations that differ between two reads of the control."""
    return frozenset(diff.at for diff in (*verdict.diffs, *verdict.suppressed))


def step_of(verdict: Verdict, moved: Iterable[str], at: float, after: float) -> RecheckStep:
    """What one recheck that did not converge saw: the control gone, the control changed
    since the last read, the source still without a row, or the same or other paths
    still differing; with the collapsed paths still differing (names, never values)."""
    saw: RecheckSaw
    if any(diff.kind == "control_gone" for diff in verdict.diffs):
        saw = "gone"
    elif any(True for _ in moved):
        saw = "control_changed"
    elif verdict.outcome is Outcome.MISSING:
        saw = "missing"
    else:
        saw = "differs"
    paths = sorted({diff.path for diff in verdict.diffs if diff.path})
    return RecheckStep(at=at, after=after, saw=saw, paths=tuple(paths[:MAX_RECHECK_PATHS]))


def kept(steps: tuple[RecheckStep, ...], step: RecheckStep) -> tuple[RecheckStep, ...]:
    """`steps` with `step` added, bounded to the first MAX_RECHECK_STEPS - 1 and the last
    (how it ended always shows)."""
    if len(steps) < MAX_RECHECK_STEPS:
        return (*steps, step)
    return (*steps[:MAX_RECHECK_STEPS - 1], step)


@dataclass(frozen=True, slots=True)
class Trail:
    """One key's recheck history (held by the recheck heap between steps)."""

    first: Verdict  # what the first read said (published with transient)
    first_candidate: Any
    control: Any  # the latest control read (the API's original answer at first)
    started: float  # time.monotonic() of the first comparison
    step: int = 0  # rechecks done
    persistent: frozenset[Signature] | None = None  # differences seen on every recheck so far
    moving: frozenset[str] = frozenset()  # locations where the control changed between reads
    last: Verdict | None = None
    last_candidate: Any = None
    noise_checked: bool = False
    steps: tuple[RecheckStep, ...] = ()  # what each recheck saw, for the evidence (bounded)

    def after(self, verdict: Verdict, candidate: Any, control: Any, moved: Iterable[str] = (),
              at: float = 0.0, now: float | None = None) -> Trail:
        """The trail with one more recheck's verdict folded in (`at`: its wall-clock
        time; `now`: its monotonic time, for how long after the first read)."""
        moved = frozenset(moved)
        seen = signatures(verdict)
        persistent = seen if self.persistent is None else self.persistent & seen
        step = step_of(verdict, moved, at, (self.started if now is None else now) - self.started)
        return replace(self, step=self.step + 1, persistent=persistent, moving=self.moving | moved,
                       last=verdict, last_candidate=candidate, control=control, steps=kept(self.steps, step))

    def converged(self, at: float, now: float) -> Trail:
        """The trail ended by a recheck where both sides agreed."""
        step = RecheckStep(at=at, after=now - self.started, saw="converged")
        return replace(self, step=self.step + 1, steps=kept(self.steps, step))

    def outcome(self) -> tuple[Outcome, tuple[FieldDiff, ...]]:
        """The final outcome once the schedule is done (never converged), and the
        differences to publish with it."""
        last = self.last if self.last is not None else self.first
        steady = {sig for sig in (self.persistent or frozenset()) if not covered(sig[0], self.moving)}
        if MISSING_SIGNATURE in steady:
            return Outcome.MISSING, ()
        if steady:
            diffs = tuple(diff for diff in last.diffs
                          if (diff.at, diff.kind, _frozen(diff.control), _frozen(diff.candidate)) in steady)
            return Outcome.MISMATCH, diffs
        if self.moving:
            return Outcome.UNSTABLE, last.diffs
        if last.outcome is Outcome.MISSING:
            return Outcome.MISSING, ()
        return Outcome.MISMATCH, last.diffs
