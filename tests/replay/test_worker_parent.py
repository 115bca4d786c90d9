"""The shadow worker never outlives the process that started it: it asks the kernel for
SIGTERM when its parent dies (prctl in the worker itself, no preexec_fn) and also
watches its parent pid, and it refuses to start when the parent is already gone."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

# An intermediate parent: starts the worker, hands the other end of the socket to a
# sleeper (so the socket stays open and only the parent's death can stop the worker),
# prints both pids, then waits to be killed.
PARENT = """
import os, socket, subprocess, sys
ours, theirs = socket.socketpair()
worker = subprocess.Popen([sys.executable, "-m", "shadow.replay.worker", "--fd", str(theirs.fileno()),
                           "--parent", str(os.getpid())], pass_fds=(theirs.fileno(),))
keeper = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"], pass_fds=(ours.fileno(),),
                          stdin=subprocess.DEVNULL)
print(worker.pid, keeper.pid, flush=True)
sys.stdin.read()
"""


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"


def _serving(pid: int) -> bool:
    """The worker runs its event loop (an epoll fd is open): it is past its startup prctl."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[eventpoll]" for fd in fds)
    except OSError:
        return False


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30  # a bound on the test, not a timing assertion
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_the_worker_stops_when_its_parent_is_killed() -> None:
    argv = [sys.executable, "-c", PARENT]
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as parent:
        assert parent.stdout is not None
        worker, keeper = (int(pid) for pid in parent.stdout.readline().split())
        try:
            _wait_for(lambda: _serving(worker), "the worker did not start its event loop")
            parent.kill()
            parent.wait(10)
            _wait_for(lambda: _gone(worker), "the worker outlived its parent")
        finally:
            for pid in (worker, keeper):
                if not _gone(pid):
                    os.kill(pid, signal.SIGKILL)


def test_the_worker_does_not_start_when_its_parent_is_already_gone() -> None:
    # pid 1 is never our parent: as if the parent had died before the worker's first line
    result = subprocess.run([sys.executable, "-m", "shadow.replay.worker", "--fd", "0", "--parent", "1"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "was gone before the worker started" in result.stderr
