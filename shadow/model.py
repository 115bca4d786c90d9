"""The frozen values that flow between the stages of the shadow pipeline.

proxy → rule match (RouteMatch) → job (ShadowJob) → source fetch (Candidate docs)
→ rebuild → normalize → compare (Verdict) → outcome (Comparison) → publish (Sink, told
the job's JobInfo).

Every stage takes values and returns values; nothing here does I/O.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

#: where the migrated copy is read from
SourceKind = Literal["postgres", "mongo"]
#: how a field differs: changed value, present on one side only, a different JSON type;
#: in lists also out of order or a duplicate; on a recheck, a control that disappeared
DiffKind = Literal["changed", "missing_in_candidate", "extra_in_candidate", "type", "order", "duplicate",
                   "control_gone", "unmodeled_query"]


class Outcome(str, enum.Enum):
    """The result of shadowing one key (DESIGN §2)."""

    MATCH = "match"
    MISMATCH = "mismatch"  # persistent: the same difference on every recheck, both sides re-read
    TRANSIENT = "transient"  # differed, then converged on recheck (dual-write lag)
    UNSTABLE = "unstable"  # the control itself kept changing between reads: no verdict possible
    MISSING = "missing"  # the shadow source has no row for a key the API returned
    EXTRA = "extra"  # list read: the source has rows the API did not return
    ERROR = "error"  # the source failed or timed out
    SKIPPED = "skipped"  # not compared; see SkipReason


class SkipReason(str, enum.Enum):
    NOT_SAMPLED = "not_sampled"
    BODY_TOO_LARGE = "body_too_large"
    NOT_JSON = "not_json"
    NON_2XX = "non_2xx"
    QUEUE_FULL = "queue_full"
    RATE_LIMITED = "rate_limited"
    INVALID_KEY = "invalid_key"
    NO_DOCUMENT = "no_document"  # the body had nothing where the route says the document is
    UNMODELED_QUERY = "unmodeled_query"  # a list read with a query parameter its route does not model
    SHUTDOWN = "shutdown"


class DropReason(str, enum.Enum):
    """Why shadow work was given up to protect the user path: the `reason` label of
    shadow_dropped_total. Three of them also count the read as SKIPPED (see `skip`)."""

    QUEUE_FULL = "queue_full"
    RATE_LIMITED = "rate_limited"
    SHUTDOWN = "shutdown"
    WORKER_DOWN = "worker_down"  # the shadow worker process is down or its pipe is full
    EXPLAIN_BUDGET = "explain_budget"  # deepdiff explanation rate-limited (counts stay exact)
    RECHECK_FULL = "recheck_full"  # no room to wait for a recheck: the first verdict stands
    RECHECK_BYTES = "recheck_bytes"  # the recheck heap's byte bound reached
    LOG_BACKLOG = "log_backlog"  # mismatch log lines beyond the in-memory backlog

    @property
    def skip(self) -> SkipReason | None:
        """The skip reason a dropped read (one with an entity and route) is counted under."""
        return _SKIP_OF_DROP.get(self)


_SKIP_OF_DROP = {
    DropReason.QUEUE_FULL: SkipReason.QUEUE_FULL,
    DropReason.RATE_LIMITED: SkipReason.RATE_LIMITED,
    DropReason.SHUTDOWN: SkipReason.SHUTDOWN,
}


class Stage(str, enum.Enum):
    """Where on the shadow side something failed: the `stage` label of shadow_errors_total."""

    PREPARE = "prepare"  # parsing a captured read, taking its keys
    FETCH = "fetch"  # reading the candidate from the shadow source
    LIST_KEYS = "list_keys"  # the keys a list read selects (extra / list checks)
    COMPARE = "compare"
    EXPLAIN = "explain"  # deepdiff's explanation of a mismatch
    RECHECK = "recheck"  # the recheck loop itself
    RECHECK_CONTROL = "recheck_control"  # re-reading the control (upstream replay or Mongo)
    LOG = "log"  # writing the mismatch log
    WORKER = "worker"  # a worker process went away, or a pipeline task failed
    HANDOFF = "handoff"  # a message between the proxy process and a worker


@dataclass(frozen=True, slots=True)
class Failure:
    """One shadow-side failure, reported once (`Sink.raised`): where, what kind, what it
    said. `error`, the exception itself, is kept for the traceback in the log of the
    process where it happened; it never crosses to another process."""

    stage: Stage
    kind: str  # the exception type's name, e.g. "TimeoutError"
    message: str
    error: BaseException | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, stage: Stage, error: BaseException) -> Failure:
        return cls(stage, type(error).__name__, str(error), error)

    @property
    def reason(self) -> str:
        """The reason of the `error` outcomes it caused: `fetch: TimeoutError: after 2s`."""
        head = f"{self.stage.value}: {self.kind}"
        return f"{head}: {self.message}" if self.message else head


@dataclass(frozen=True, slots=True)
class FieldDiff:
    """One differing field. `path` has list indices collapsed (`offers[*].status`),
    `at` is the exact location (`offers[2].status`); values are canonical, unredacted
    (redaction happens at publish)."""

    path: str
    at: str
    control: Any
    candidate: Any
    kind: DiffKind = "changed"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What compare() says about one control/candidate pair."""

    outcome: Outcome  # MATCH, MISMATCH or MISSING
    diffs: tuple[FieldDiff, ...] = ()  # unsuppressed differences
    suppressed: tuple[FieldDiff, ...] = ()  # differences covered by a known divergence


class JobInfo(NamedTuple):
    """What the sink needs of a job, and all of it that crosses back from a worker: its
    route, its queueing time, its trace (the client's W3C headers as captured: a span's
    parent is parsed from them only where a span is started), and for an evidence
    example its route parameters and a list read's query (name, [values]).

    A NamedTuple rather than a frozen dataclass: it is pickled with every outcome a
    worker sends one by one (see replay/messages.py)."""

    entity: str
    route: str  # the route's name, e.g. "GET /api/payments/{id}"
    source: SourceKind
    enqueued_at: float = 0.0  # time.monotonic() when the proxy queued the read
    trace: tuple[tuple[str, str], ...] = ()
    params: tuple[tuple[str, str], ...] = ()
    query: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class ShadowJob:
    """One matched read, taken off the request path: the control documents by key, and
    what the sink is told of it (`info`: its entity, route, source, ...; built once per
    read and published as is)."""

    info: JobInfo
    controls: Mapping[str, Any]  # key (legacy id) -> the API's document (parsed JSON)
    attempt: int = 0  # 0 = first read, n = the n-th recheck
    reader: Any = None  # viewread.BoundReader: who read (fields bound to the reader); never logged
    listing: Any = None  # viewread.Listing of a list answer (order, duplicates, total, query)

    @property
    def params(self) -> Mapping[str, str]:
        """The path parameters (for list checks and an upstream replay)."""
        return dict(self.info.params)


@dataclass(frozen=True, slots=True)
class ListContext:
    """Which list read a list-level outcome is about: the read's query parameters, the
    conditions (column, op, value) that selected PostgreSQL's rows, and why it was not
    checked. Values are raw here: the sink renders it as the outcome's reason, hiding
    secret-named values (publish/listreason.py)."""

    query: tuple[tuple[str, str], ...] = ()
    selected_by: tuple[tuple[str, str, str], ...] = ()  # (column, op, value); op "" = a note
    note: str = ""


#: what one recheck saw: both sides agreed; they still differ (the same or other paths);
#: the source still has no row; the control itself changed since the last read; the
#: control is gone (the API no longer answers it) while the source still has it
RecheckSaw = Literal["converged", "differs", "missing", "control_changed", "gone"]
#: recheck steps kept per outcome (the schedule is short; this bounds a hostile rules file)
MAX_RECHECK_STEPS = 10
#: differing paths kept per recheck step (a list read can differ in many places)
MAX_RECHECK_PATHS = 20


@dataclass(frozen=True, slots=True)
class RecheckStep:
    """One step of a key's recheck history: when it ran, how long after the first read,
    what it saw, and the collapsed paths still differing (names only, never values)."""

    at: float  # wall-clock time.time()
    after: float  # seconds since the first read
    saw: RecheckSaw
    paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Comparison:
    """The published outcome for one key (or one skip/drop). The one thing the sink eats."""

    entity: str
    route: str
    key: str | None
    outcome: Outcome
    reason: str | None = None  # skip reason, or "<stage>: <error>" for ERROR
    diffs: tuple[FieldDiff, ...] = ()
    suppressed: tuple[FieldDiff, ...] = ()
    source: str = "postgres"
    control: Any = None  # for the mismatch view / log (redacted before it leaves the process)
    candidate: Any = None
    at: float = 0.0  # wall-clock time.time()
    unverified: tuple[str, ...] = ()  # declared `unverifiable` paths the API showed in this document
    rechecks: int = 0  # rechecks (both sides re-read) before this verdict
    recheck_seconds: float = 0.0  # from the first read to this verdict, when there were rechecks
    recheck_steps: tuple[RecheckStep, ...] = ()  # each recheck's finding, oldest first (at most MAX_RECHECK_STEPS)
    listing: ListContext | None = None  # a list-level outcome: which read (rendered, redacted, as its reason)


#: outcomes shown on /mismatches and written to the mismatch log
NOTEWORTHY = frozenset({Outcome.MISMATCH, Outcome.MISSING, Outcome.EXTRA, Outcome.TRANSIENT, Outcome.UNSTABLE})
#: stage latencies range from µs (compare) to the source timeout and recheck delays (the
#: worker aggregates its stage timings in these buckets; the proxy's histograms use them)
STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass(frozen=True, slots=True)
class WorkerState:
    """One shadow worker process as the main process sees it (on /readyz and /metrics):
    a worker that keeps dying shows here with why, not only in stderr tracebacks."""

    index: int
    pid: int | None  # None while it is down
    ready: bool  # said Ready (rules loaded, sources warmed) since it last started
    restarts: int  # times it went away and was restarted
    last_error: str | None  # why it last went away: its exit and last line on stderr


@dataclass(frozen=True, slots=True)
class RedactedDiff:
    """One differing field as it may leave the process: names and values already
    redacted (a secret value masked, a secret-named path shown by its rule name)."""

    path: str
    at: str
    kind: str
    control: Any  # a JSON value, redacted
    candidate: Any

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "at": self.at, "kind": self.kind, "control": self.control,
                "candidate": self.candidate}


@dataclass(frozen=True, slots=True)
class RecentMismatch:
    """One entry of the recent-mismatch ring, already redacted. Frozen: deepdiff's
    explanation, which arrives later, makes a new entry that replaces this one in the
    ring (Sink.explained); `as_json` is the shape /mismatches and the mismatch log show."""

    id: int
    at: float
    entity: str
    route: str
    key: str | None
    outcome: str
    source: str
    reason: str | None
    diffs: tuple[RedactedDiff, ...]
    suppressed: tuple[str, ...]
    trace_id: str | None = None
    explained: tuple[RedactedDiff, ...] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "at": self.at, "entity": self.entity, "route": self.route, "key": self.key,
            "outcome": self.outcome, "source": self.source, "reason": self.reason,
            "diffs": [diff.as_json() for diff in self.diffs], "suppressed": list(self.suppressed),
            "trace_id": self.trace_id,
            "explained": None if self.explained is None else [diff.as_json() for diff in self.explained],
        }


@dataclass(frozen=True, slots=True)
class RecentError:
    """One entry of the recent-error ring: why the shadow side failed a key, redacted."""

    at: float
    entity: str
    route: str
    key: str | None
    reason: str | None

    def as_json(self) -> dict[str, Any]:
        return {"at": self.at, "entity": self.entity, "route": self.route, "key": self.key, "reason": self.reason}
