"""`shadow proxy` configuration: flags and `SHADOW_*` env vars, parsed once into a
frozen `Config` and validated before anything starts.

A flag wins over its env var, which wins over the default. Every error names the flag,
the env var and the bad value, e.g.
``--queue-size / SHADOW_QUEUE_SIZE: expected a whole number >= 1, got 'lots'``.
"""
from __future__ import annotations

import argparse
import os
import resource
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from shadow.policy import RulesPolicy


class ConfigError(ValueError):
    """A flag or env var with a bad value; the message names both and the value."""


#: file descriptors kept back from the client-connection cap (listening sockets, the rules
#: watcher, the worker's pipes, logs)
RESERVED_FDS = 64


#: --trace-method / --dot-segments: refuse as nginx does, or forward as sent
Refusable = Literal["refuse", "forward"]
#: --forwarded-headers: what the upstream gets in X-Forwarded-* (docs/operations.md, "Forwarded headers")
ForwardedHeaders = Literal["overwrite", "append", "pass"]


@dataclass(frozen=True)
class RequestLimits:
    """The request-path limits (flags --max-request-line ... --max-connections), enforced
    by shadow/proxy/limits.py; defined here so that the defaults are defined once."""

    max_request_line: int = 8192
    max_header_line: int = 8192
    max_header_block: int = 32768
    max_header_count: int = 100
    header_timeout: float = 60.0
    keepalive_timeout: float = 75.0
    max_connections: int = 10000
    #: the admin server's own connection cap, kept out of the proxy's descriptor budget
    admin_max_connections: int = 16
    #: what the request path refuses or rewrites beyond framing (flags of the same names)
    trace_method: Refusable = "refuse"
    dot_segments: Refusable = "refuse"
    forwarded_headers: ForwardedHeaders = "overwrite"

    @property
    def max_head_bytes(self) -> int:
        """The most bytes a request head may take before it is refused."""
        return self.max_request_line + self.max_header_block

    def connection_cap(self) -> int:
        """`max_connections`, lowered so that each client connection and its upstream
        connection fit in the process's file-descriptor limit next to the admin
        server's connections (EMFILE never happens)."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self.max_connections
        return max(1, min(self.max_connections, (soft - RESERVED_FDS - self.admin_max_connections) // 2))


DEFAULT_LIMITS = RequestLimits()

#: the admin token (shadow/publish/admin_auth.py): long enough, printable ASCII only
MIN_TOKEN_LENGTH = 16
_TOKEN_CHARACTERS = frozenset(string.ascii_letters + string.digits + string.punctuation)


def check_token(token: str) -> str:
    """The token, or ValueError saying what is wrong (never echoing it)."""
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(f"the admin token must be at least {MIN_TOKEN_LENGTH} characters")
    if not set(token) <= _TOKEN_CHARACTERS:
        raise ValueError("the admin token may hold printable ASCII only (no spaces or control characters)")
    return token


@dataclass(frozen=True)
class Option:
    """One setting: its flag, env var, help text and parser (str -> value)."""

    field: str
    flag: str
    env: str
    help: str
    metavar: str
    parse: Callable[[str], Any]
    secret: bool = False  # never echoed in an error message

    @property
    def names(self) -> str:
        return f"{self.flag} / {self.env}"


# ----------------------------------------------------------------------------- parsers


def _url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL with a host")
    try:
        _ = parts.port  # urllib validates the port lazily, on access
    except ValueError as bad_port:
        raise ValueError(f"bad port ({bad_port})") from None
    return text.rstrip("/")


def _directory(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise ValueError("not a directory")
    return path


def _record_directory(text: str) -> Path:
    """A directory the proxy can write answer files to, probed by writing one (a
    read-only mount or a missing directory fails the start, not the first answer)."""
    path = _directory(text)
    probe = path / f".shadow-record-probe-{os.getpid()}"
    try:
        with open(probe, "w", encoding="ascii") as stream:
            stream.write("probe")
        probe.unlink()
    except OSError as problem:
        raise ValueError(f"not writable ({problem.strerror or type(problem).__name__})") from None
    return path


def _address(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected HOST:PORT with a port 0-65535, e.g. 127.0.0.1:9090")
    return text


def _whole(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"expected a whole number >= {minimum}") from None
        if value < minimum:
            raise ValueError(f"expected a whole number >= {minimum}")
        return value

    return parse


def _seconds(minimum: float, allow_zero: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError("expected a number of seconds") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("expected a finite number")
        if not (value >= minimum or (allow_zero and value == 0)):
            raise ValueError(f"expected a number > {minimum}" if not allow_zero else "expected a number >= 0")
        return value

    return parse


def _file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise ValueError("not a file")
    return path


#: the modes a flag picks from (the parser checks the value against the same list)
ReloadMode = Literal["watch", "signal"]
LogLevel = Literal["debug", "info", "warning", "error"]
ShadowProcess = Literal["worker", "inline"]  # worker = comparisons in a child process
Engine = Literal["aiohttp", "raw"]  # the request path


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.lower() not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return text.lower()

    return parse


def _nice(text: str) -> int:
    value = _whole(0)(text)
    if value > 19:
        raise ValueError("expected a whole number 0-19")
    return value


def _text(text: str) -> str:
    if not text.strip():
        raise ValueError("expected a non-empty value")
    return text


def _postgres_dsn(text: str) -> str:
    if urlsplit(text).scheme not in ("postgres", "postgresql"):
        raise ValueError("expected a postgresql:// DSN")
    return text


def _modules(text: str) -> str:
    from shadow.policy import parse_modules

    return ",".join(sorted(parse_modules(text)))


def _admin_token(text: str) -> str:
    return check_token(text)


def _redaction_key(text: str) -> str:
    if len(text) < 16:
        raise ValueError(f"expected at least 16 characters, got {len(text)}")
    return text


def _admin_token_file(text: str) -> Path:
    path = _file(text)
    try:
        _admin_token(path.read_text("utf-8").strip())
    except (OSError, UnicodeDecodeError) as problem:
        raise ValueError(f"cannot read the token: {problem}") from None
    return path


OPTIONS: tuple[Option, ...] = (
    Option("upstream", "--upstream", "SHADOW_UPSTREAM", "the API the proxy forwards to (required)", "URL", _url),
    Option("rules", "--rules", "SHADOW_RULES", "directory of rule YAML files (required)", "DIR", _directory),
    Option("pg", "--pg", "SHADOW_PG", "PostgreSQL DSN of the shadow source (postgres routes count `error` without it)",
           "DSN", _text),
    Option("mongo", "--mongo", "SHADOW_MONGO", "MongoDB URL of the shadow source for routes with `source: mongo`",
           "URL", _text),
    Option("mongo_db", "--mongo-db", "SHADOW_MONGO_DB", "MongoDB database name (required with --mongo)", "NAME", _text),
    Option("listen", "--listen", "SHADOW_LISTEN", "proxy address (default 0.0.0.0:8080)", "HOST:PORT", _address),
    Option("admin_listen", "--admin-listen", "SHADOW_ADMIN_LISTEN", "admin address (default 127.0.0.1:9090)",
           "HOST:PORT", _address),
    Option("queue_size", "--queue-size", "SHADOW_QUEUE_SIZE", "shadow queue capacity; full -> dropped (default 10000)",
           "N", _whole(1)),
    Option("workers", "--workers", "SHADOW_WORKERS", "shadow workers (default 4)", "N", _whole(1)),
    Option("batch_size", "--batch-size", "SHADOW_BATCH_SIZE",
           "reads a worker takes at once; keys per source call (default 50)", "N", _whole(1)),
    Option("max_body_bytes", "--max-body-bytes", "SHADOW_MAX_BODY_BYTES",
           "largest response body copied for shadowing (default 1048576)", "N", _whole(0)),
    Option("source_timeout", "--source-timeout", "SHADOW_SOURCE_TIMEOUT",
           "timeout of every shadow source call (default 2.0)", "SECONDS", _seconds(0.0)),
    Option("rate_limit", "--rate-limit", "SHADOW_RATE_LIMIT", "shadowed reads per second, 0 = unlimited (default 0)",
           "PER_SECOND", _seconds(0.0, allow_zero=True)),
    Option("reload", "--reload", "SHADOW_RELOAD",
           "watch = file changes + SIGHUP + POST /reload; signal = SIGHUP + POST /reload", "MODE",
           _choice(*get_args(ReloadMode))),
    Option("otlp_endpoint", "--otlp-endpoint", "SHADOW_OTLP_ENDPOINT", "OTLP/HTTP traces endpoint (default off)", "URL",
           _url),
    Option("mismatch_log", "--mismatch-log", "SHADOW_MISMATCH_LOG",
           "JSON-lines mismatch log file, - = stderr (default -)", "PATH", _text),
    Option("log_level", "--log-level", "SHADOW_LOG_LEVEL", "debug, info, warning or error (default info)", "LEVEL",
           _choice(*get_args(LogLevel))),
    Option("upstream_timeout", "--upstream-timeout", "SHADOW_UPSTREAM_TIMEOUT",
           "upstream connect / read inactivity timeout -> 504 (default 30)", "SECONDS", _seconds(0.0)),
    Option("drain_timeout", "--drain-timeout", "SHADOW_DRAIN_TIMEOUT",
           "on shutdown, how long in-flight requests may finish (default 15)", "SECONDS",
           _seconds(0.0, allow_zero=True)),
    Option("recent_mismatches", "--recent-mismatches", "SHADOW_RECENT_MISMATCHES",
           "mismatches kept in memory for /mismatches (default 200)", "N", _whole(1)),
    Option("gate_criteria", "--gate-criteria", "SHADOW_GATE_CRITERIA",
           "gate criteria YAML for the admin /gate verdict (default: /gate answers 501)", "FILE", _file),
    Option("shadow_process", "--shadow-process", "SHADOW_SHADOW_PROCESS",
           "worker = shadow comparisons in a child process (default); inline = in the proxy's process", "MODE",
           _choice(*get_args(ShadowProcess))),
    Option("shadow_nice", "--shadow-nice", "SHADOW_SHADOW_NICE",
           "niceness added to the shadow worker process, 0-19 (default 19: the proxy always goes first)", "N", _nice),
    Option("shadow_workers", "--shadow-workers", "SHADOW_SHADOW_WORKERS",
           "shadow worker processes, reads sharded by key; 0 = from the CPU quota: one per CPU beyond the proxy's, at "
           "least 1 (default 0)", "N", _whole(0)),
    Option("engine", "--engine", "SHADOW_ENGINE",
           "request path: raw = asyncio + httptools (default; about half the CPU per request); aiohttp = the aiohttp "
           "client and server", "ENGINE", _choice(*get_args(Engine))),
    Option("rules_max_bytes", "--rules-max-bytes", "SHADOW_RULES_MAX_BYTES",
           "largest rule file read; larger ones are refused before parsing (default 1048576)", "N", _whole(1)),
    Option("normalizer_modules", "--normalizer-modules", "SHADOW_NORMALIZER_MODULES",
           "Python modules rules may import normalizers from, comma-separated (default: none, built-ins only)",
           "MODULES", _modules),
    Option("admin_token", "--admin-token", "SHADOW_ADMIN_TOKEN",
           "bearer token for /mismatches, /rules, POST /reload (prefer the env var or --admin-token-file: a flag shows "
           "in ps)", "TOKEN", _admin_token, secret=True),
    Option("admin_token_file", "--admin-token-file", "SHADOW_ADMIN_TOKEN_FILE",
           "file holding the admin token (read at start), e.g. a mounted Secret", "FILE", _admin_token_file),
    Option("redaction_key", "--redaction-key", "SHADOW_REDACTION_KEY",
           "key of the hashes in masked values (at least 16 characters); the same on every pod makes their "
           "masks comparable (default: random per process; prefer the env var)", "KEY", _redaction_key,
           secret=True),
    Option("explain_rate", "--explain-rate", "SHADOW_EXPLAIN_RATE",
           "deepdiff explanations per second, beyond -> dropped (default 20)", "PER_SECOND",
           _seconds(0.0, allow_zero=True)),
    Option("max_request_line", "--max-request-line", "SHADOW_MAX_REQUEST_LINE",
           "longest request line (method, target, version) in bytes; longer -> 414 (default 8192)", "BYTES",
           _whole(64)),
    Option("max_header_line", "--max-header-line", "SHADOW_MAX_HEADER_LINE",
           "longest single request header (name + value) in bytes; longer -> 431 (default 8192)", "BYTES", _whole(64)),
    Option("max_header_block", "--max-header-block", "SHADOW_MAX_HEADER_BLOCK",
           "most bytes of request headers in all; more -> 431 (default 32768)", "BYTES", _whole(64)),
    Option("max_header_count", "--max-header-count", "SHADOW_MAX_HEADER_COUNT",
           "most request headers; more -> 431 (default 100)", "N", _whole(1)),
    Option("header_timeout", "--header-timeout", "SHADOW_HEADER_TIMEOUT",
           "time a client has to send a whole request head -> 408 and close (default 60)", "SECONDS", _seconds(0.0)),
    Option("keepalive_timeout", "--keepalive-timeout", "SHADOW_KEEPALIVE_TIMEOUT",
           "an idle keep-alive client connection is closed after this (default 75)", "SECONDS", _seconds(0.0)),
    Option("max_connections", "--max-connections", "SHADOW_MAX_CONNECTIONS",
           "client connections at once (lowered to fit the fd limit); beyond, the longest-waiting idle or slow one is "
           "closed, or 503 when all are busy (default 10000)", "N", _whole(1)),
    Option("admin_max_connections", "--admin-max-connections", "SHADOW_ADMIN_MAX_CONNECTIONS",
           "admin server connections at once, outside the proxy's; beyond, the longest-idle one is closed, or 503 when "
           "all are busy (default 16)", "N", _whole(1)),
    Option("trace_method", "--trace-method", "SHADOW_TRACE_METHOD",
           "refuse = TRACE gets a 405 as with nginx (default: it echoes the request, cookies included); forward = sent "
           "upstream", "MODE", _choice(*get_args(Refusable))),
    Option("dot_segments", "--dot-segments", "SHADOW_DOT_SEGMENTS",
           "refuse = 400 for a path whose dot segments (percent-decoded) climb above the root, as nginx does "
           "(default); forward = sent as received", "MODE", _choice(*get_args(Refusable))),
    Option("forwarded_headers", "--forwarded-headers", "SHADOW_FORWARDED_HEADERS",
           "overwrite = drop the client's X-Forwarded-* and Forwarded, set X-Forwarded-For/-Host/-Proto from what the "
           "proxy saw (default); append = add the peer to the client's X-Forwarded-For and keep its "
           "X-Forwarded-Host/-Proto (behind a trusted proxy that sets them); pass = forward them as received, add none",
           "MODE", _choice(*get_args(ForwardedHeaders))),
    Option("evidence", "--evidence", "SHADOW_EVIDENCE",
           "PostgreSQL DSN of the evidence store (findings, examples; may differ from --pg; default off)",
           "DSN", _postgres_dsn, secret=True),
    Option("evidence_retention", "--evidence-retention", "SHADOW_EVIDENCE_RETENTION",
           "days of findings and examples the evidence store keeps (default 14)", "DAYS", _seconds(0.0)),
    Option("evidence_pod", "--evidence-pod", "SHADOW_EVIDENCE_POD",
           "this sidecar's name in the evidence store (default $POD_NAME, else the host name)", "NAME", _text),
    Option("record", "--record", "SHADOW_RECORD",
           "record a bounded, redacted sample of GET 200 JSON answers into DIR, one file each, for `shadow rules "
           "draft --answers DIR` (default off)", "DIR", _record_directory),
    Option("record_max_body", "--record-max-body", "SHADOW_RECORD_MAX_BODY",
           "largest answer body recorded; larger ones are skipped (default 262144)", "BYTES", _whole(1)),
    Option("record_per_route", "--record-per-route", "SHADOW_RECORD_PER_ROUTE",
           "answers recorded per path shape (ids, uuids and numbers collapsed; default 20)", "N", _whole(1)),
    Option("record_max", "--record-max", "SHADOW_RECORD_MAX",
           "answers recorded in all; then recording stops (default 1000)", "N", _whole(1)),
    Option("explain_concurrency", "--explain-concurrency", "SHADOW_EXPLAIN_CONCURRENCY",
           "explanations in flight at once (queued for a thread), beyond -> dropped{explain_budget} (default 16)", "N",
           _whole(1)),
)
OPTION_BY_FIELD: dict[str, Option] = {option.field: option for option in OPTIONS}


@dataclass(frozen=True)
class Config:
    """Everything `shadow proxy` needs, validated. Build it with `Config.parse(args,
    environ)` from the CLI, or directly in Python (tests, demo, benchmarks)."""

    upstream: str
    rules: Path
    pg: str | None = None
    mongo: str | None = None
    mongo_db: str | None = None
    listen: str = "0.0.0.0:8080"
    admin_listen: str = "127.0.0.1:9090"
    queue_size: int = 10000
    workers: int = 4
    batch_size: int = 50
    max_body_bytes: int = 1048576
    source_timeout: float = 2.0
    rate_limit: float = 0.0
    reload: ReloadMode = "watch"
    otlp_endpoint: str | None = None
    mismatch_log: str = "-"
    log_level: LogLevel = "info"
    upstream_timeout: float = 30.0
    drain_timeout: float = 15.0
    recent_mismatches: int = 200
    explain_rate: float = 20.0
    explain_concurrency: int = 16
    shadow_process: ShadowProcess = "worker"
    shadow_nice: int = 19
    gate_criteria: Path | None = None
    engine: Engine = "raw"
    rules_max_bytes: int = 1048576
    normalizer_modules: str = ""  # comma-separated; see rules_policy
    admin_token: str | None = field(default=None, repr=False)
    admin_token_file: Path | None = None
    redaction_key: str | None = field(default=None, repr=False)
    shadow_workers: int = 0
    evidence: str | None = field(default=None, repr=False)
    evidence_retention: float = 14.0
    evidence_pod: str | None = None
    record: Path | None = None
    record_max_body: int = 262144
    record_per_route: int = 20
    record_max: int = 1000
    # not a flag: every outcome crosses from the worker one by one (not only as counts), for
    # an in-process observer of each comparison (the demo's per-key findings); one message per read
    report_every_outcome: bool = False
    # the request-path limits: defaults defined once, in RequestLimits above
    max_request_line: int = DEFAULT_LIMITS.max_request_line
    max_header_line: int = DEFAULT_LIMITS.max_header_line
    max_header_block: int = DEFAULT_LIMITS.max_header_block
    max_header_count: int = DEFAULT_LIMITS.max_header_count
    header_timeout: float = DEFAULT_LIMITS.header_timeout
    keepalive_timeout: float = DEFAULT_LIMITS.keepalive_timeout
    max_connections: int = DEFAULT_LIMITS.max_connections
    admin_max_connections: int = DEFAULT_LIMITS.admin_max_connections
    trace_method: Refusable = DEFAULT_LIMITS.trace_method
    dot_segments: Refusable = DEFAULT_LIMITS.dot_segments
    forwarded_headers: ForwardedHeaders = DEFAULT_LIMITS.forwarded_headers

    def __post_init__(self) -> None:
        # Values built in Python go through the same parsers as flags, so a bad value
        # fails here with the flag's name rather than deep inside the proxy.
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value is None or spec.name not in OPTION_BY_FIELD:  # not a flag: set in Python only
                continue
            option = OPTION_BY_FIELD[spec.name]
            object.__setattr__(self, spec.name, _checked(option, str(value), "value"))
        if self.mongo is not None and not self.mongo_db:
            raise ConfigError("--mongo-db / SHADOW_MONGO_DB: required with --mongo (the database the API reads)")
        if self.admin_token is not None and self.admin_token_file is not None:
            raise ConfigError("--admin-token / SHADOW_ADMIN_TOKEN and --admin-token-file / SHADOW_ADMIN_TOKEN_FILE: "
                              "give one of them, not both")

    @classmethod
    def parse(cls, args: argparse.Namespace | Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
        """Flags (argparse namespace or mapping field -> str) over env over defaults."""
        environ = os.environ if environ is None else environ
        given = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
        values: dict[str, Any] = {}
        for option in OPTIONS:
            flag_value = given.get(option.field)
            if flag_value is not None:
                values[option.field] = _checked(option, str(flag_value), "flag")
            elif option.env in environ:
                values[option.field] = _checked(option, environ[option.env], "env")
        for required in ("upstream", "rules"):
            if required not in values:
                option = OPTION_BY_FIELD[required]
                raise ConfigError(f"{option.names}: required, not given")
        return cls(**values)

    @property
    def admin_token_value(self) -> str | None:
        """The admin token, from SHADOW_ADMIN_TOKEN or the token file (read now)."""
        if self.admin_token_file is not None:
            return self.admin_token_file.read_text("utf-8").strip()
        return self.admin_token

    @property
    def rules_policy(self) -> RulesPolicy:
        """What the rule files may do: their size cap and the normalizer modules."""
        from shadow.policy import build_policy

        return build_policy(self.normalizer_modules, self.rules_max_bytes, environ={})  # env merged already

    @staticmethod
    def host_port(address: str) -> tuple[str, int]:
        host, _, port = address.rpartition(":")
        return host.strip("[]"), int(port)


def _checked(option: Option, text: str, origin: str) -> Any:
    try:
        return option.parse(text)
    except ValueError as problem:
        where = {"flag": option.flag, "env": option.env}.get(origin, option.names)
        shown = "(value not shown)" if option.secret else repr(text)
        raise ConfigError(f"{where}: {problem}, got {shown}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare every option as a flag whose default is None (so env and defaults apply)."""
    for option in OPTIONS:
        parser.add_argument(option.flag, dest=option.field, metavar=option.metavar, default=None,
                            help=f"{option.help} [env {option.env}]")
