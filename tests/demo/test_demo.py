"""`shadow demo` as a user runs it: a real subprocess with embedded PostgreSQL, the Mongo
wire server, the sample API, the sidecar and traffic. It must find exactly what was
planted, show transients from the dual-write lag, and leave no process behind."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

PIDS = re.compile(r"PostgreSQL pid (\d+), Mongo wire server pid (\d+)")
PLANT = re.compile(r"^\s+(ok |BAD|\.\. ) (\S+)\s+([0-9a-f]{24}) (\S+)\s+(\S+(?: document\))?)\s+\[(divergent|not a divergence)\] -> (.*)$")


def demo_command(tmp_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "shadow", "demo", "--scale", "40", "--seed", "3",
            "--mismatch-log", str(tmp_path / "mismatches.jsonl"), *args]


def final_summary(out: str) -> str:
    assert "FINAL SUMMARY" in out, out
    return out[out.index("FINAL SUMMARY"):]


def plants(summary: str) -> list[tuple[str, ...]]:
    return [match.groups() for line in summary.splitlines() if (match := PLANT.match(line))]


def assert_gone(out: str) -> None:
    """The embedded postmaster and the Mongo wire server the demo reported have exited."""
    match = PIDS.search(out)
    assert match, out
    pids = [int(pid) for pid in match.groups()]
    deadline = time.monotonic() + 120  # a hang guard, not a bound
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in pids if _alive(pid)]
        time.sleep(0.1)
    assert alive == [], f"left running: {alive}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is gone for our purposes
        return stat.read().split()[2] != "Z"


@pytest.mark.slow
def test_demo_finds_exactly_the_planted_divergences_and_stops_cleanly(tmp_path: Path) -> None:
    result = subprocess.run(demo_command(tmp_path, "--duration", "12"), capture_output=True, text=True,
                            timeout=600)  # a hang guard: on a saturated CPU the demo just takes longer
    out = result.stdout
    summary = final_summary(out)
    assert result.returncode == 0, out + result.stderr
    assert "RESULT: exactly the planted divergences were found at their paths" in summary
    rows = plants(summary)
    divergent = [row for row in rows if row[5] == "divergent"]
    harmless = [row for row in rows if row[5] == "not a divergence"]
    assert len(divergent) == 11 and len(harmless) == 2, summary  # 10 + the count shown on the view route
    assert "planted divergences found at their path: 11/11" in summary
    assert all(row[0] == "ok " and row[6].startswith("found (") for row in divergent), summary
    assert {row[3] for row in harmless} == {"timestamp_us_truncation", "decimal_scale_only"}
    assert all(row[0] == "ok " and row[6] == "match" for row in harmless), summary
    assert {(row[3], row[4]) for row in divergent} >= {("wrong_ref", "buyerId"), ("missing_row", "(whole document)"),
                                                      ("reordered_timeline", "timeline[*]")}
    comparisons = re.search(r"^comparisons: (.*)$", summary, re.M)
    assert comparisons, summary
    transient = re.search(r"transient (\d+)", comparisons.group(1))
    assert transient and int(transient.group(1)) > 0, comparisons.group(0)
    assert "unexpected persistent differences" not in summary
    # the cold plants: never read by the traffic, found by shadow verify only
    cold = [line for line in summary.splitlines() if "shadow reads: " in line]
    assert len(cold) == 2 and all(line.startswith("  ok ") and "0 comparisons -> missed" in line for line in cold), summary
    assert any("cold_changed_field" in line and "verify: docs mismatch at name" in line for line in cold), summary
    assert any("cold_dropped_child_row" in line and "counts rows.offers names it" in line
               and "docs mismatch at offers[*]" in line for line in cold), summary
    assert "/mismatches" in out and "/gate" in out and "/metrics" in out
    assert re.search(r"^  console     http://127\.0\.0\.1:\d+/ ", out, re.M), out  # the console's URL
    assert "Traceback" not in result.stderr, result.stderr
    assert_gone(out)


@pytest.mark.slow
def test_ctrl_c_prints_the_final_summary_and_leaves_nothing_running(tmp_path: Path) -> None:
    process = subprocess.Popen(demo_command(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    watchdog = threading.Timer(600, process.send_signal, [signal.SIGINT])  # never hang if a plant stays unfound
    watchdog.start()
    try:
        assert process.stdout is not None
        for line in process.stdout:  # wait for a live summary that has found every plant
            lines.append(line)
            if "found at their path: 11/11" in line:
                break
        process.send_signal(signal.SIGINT)
        rest, errors = process.communicate(timeout=600)
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
    out = "".join(lines) + rest
    assert process.returncode == 0, out + errors
    assert "11/11" in final_summary(out)
    assert "Traceback" not in errors, errors
    assert_gone(out)


def test_a_missing_rules_directory_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "shadow", "demo", "--rules", str(tmp_path / "nope")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert f"--rules {tmp_path / 'nope'}: no such directory" in result.stderr
