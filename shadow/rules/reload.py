"""Hot reload of the rules: on a file change (mtime poll every second), SIGHUP, or
POST /reload. A bad edit keeps the last good rules, logs every problem as file:line,
and counts `shadow_rules_reloads_total{result="error"}`.

`RulesHolder.current` is read on every request (an attribute read); a reload swaps it
atomically, so a request sees either the old or the new rules, never a mix.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shadow.tasks import TaskSet

if TYPE_CHECKING:
    from shadow.policy import RulesPolicy
    from shadow.rules.load import RuleSet

log = logging.getLogger("shadow.rules.reload")

POLL_SECONDS = 1.0
RULE_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class ReloadResult:
    """What one (re)load did; the body of POST /reload."""

    ok: bool
    version: str | None  # the version now in force
    changed: bool
    problems: tuple[str, ...] = ()  # "file:line: message"

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "version": self.version, "changed": self.changed, "problems": list(self.problems)}


def default_loader(directory: Path, policy: RulesPolicy | None = None) -> RuleSet:
    """load_rules with the operator's RulesPolicy (size cap, normalizer modules)."""
    from shadow.rules import load_rules

    return load_rules(directory, policy)


def describe_problems(error: BaseException) -> tuple[str, ...]:
    """file:line: message for each issue of a RulesError; str(error) otherwise."""
    issues = getattr(error, "issues", None)
    if issues:
        lines = []
        for issue in issues:
            where = f"{getattr(issue, 'file', '?')}:{getattr(issue, 'line', '?')}"
            lines.append(f"{where}: {getattr(issue, 'message', issue)}")
        return tuple(lines)
    return (f"{type(error).__name__}: {error}",)


def rule_files(directory: Path) -> list[Path]:
    """The files a reload reads (as load_rules does): YAML under `directory`, minus
    `tests/` and dot-folders."""
    found = []
    for path in directory.rglob("*"):
        parts = path.relative_to(directory).parts
        if path.suffix not in RULE_SUFFIXES or not path.is_file():
            continue
        if any(part.startswith(".") for part in parts) or "tests" in parts[:-1]:
            continue  # dot-folders: a Kubernetes ConfigMap's ..data symlink farm
        found.append(path)
    return sorted(found)


def _fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...]:
    found = []
    for path in rule_files(directory):
        try:
            stat = path.stat()
        except OSError:
            continue
        found.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(found)


class RulesHolder:
    """The rules in force, and the ways to replace them."""

    def __init__(self, directory: Path, loader: Callable[[Path], RuleSet] = default_loader,
                 on_change: Callable[[RuleSet], None] | None = None,
                 on_result: Callable[[ReloadResult], None] | None = None) -> None:
        """`on_change(rules)` runs when rules are put in force; `on_result(result)` after
        every (re)load, good or refused (the sidecar counts them in its metrics)."""
        self.directory = Path(directory)
        self._on_result = on_result
        self._loader = loader
        self._on_change = on_change
        self.current: RuleSet | None = None
        self.last_result: ReloadResult | None = None
        self._fingerprint: tuple[tuple[str, int, int], ...] = ()
        self._tasks = TaskSet("reload")
        self._lock = asyncio.Lock()

    def load(self) -> ReloadResult:
        """Load now, synchronously (at start)."""
        return self._apply(*self._parse())

    async def reload(self, why: str) -> ReloadResult:
        """Parse off the event loop (a big rule set takes a while), swap on it."""
        async with self._lock:
            log.info("reloading rules (%s)", why)
            return self._apply(*await asyncio.to_thread(self._parse))

    def _parse(self) -> tuple[tuple[tuple[str, int, int], ...], RuleSet | None, BaseException | None]:
        fingerprint = _fingerprint(self.directory)
        try:
            return fingerprint, self._loader(self.directory), None
        except Exception as problem:
            return fingerprint, None, problem

    def _apply(self, fingerprint: tuple[tuple[str, int, int], ...], rules: RuleSet | None,
               problem: BaseException | None) -> ReloadResult:
        self._fingerprint = fingerprint  # a bad edit is not retried until the files change again
        if problem is not None:
            problems = describe_problems(problem)
            kept = getattr(self.current, "version", None)
            log.error("rules in %s rejected; %s:\n  %s", self.directory,
                      f"keeping version {kept}" if kept else "no rules loaded", "\n  ".join(problems))
            return self._result(ReloadResult(False, kept, False, problems))
        assert rules is not None  # _parse returns rules or the problem
        previous = getattr(self.current, "version", None)
        self.current = rules
        if self._on_change is not None:
            self._on_change(rules)
        changed = previous != rules.version
        if changed:
            log.info("rules version %s loaded from %s (%d routes)", rules.version, self.directory, len(rules.routes))
        return self._result(ReloadResult(True, rules.version, changed))

    def _result(self, result: ReloadResult) -> ReloadResult:
        self.last_result = result
        if self._on_result is not None:
            self._on_result(result)
        return result

    # ------------------------------------------------------------------ triggers

    def watch(self) -> None:
        """Poll the files' mtimes and sizes every second; reload when they change."""
        self._tasks.spawn(self._poll(), "watch")

    def on_sighup(self) -> None:
        """Reload on SIGHUP (only from the main thread's loop)."""
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._sighup)

    def _sighup(self) -> None:
        self._tasks.spawn(self.reload("SIGHUP"), "sighup")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                fingerprint = await asyncio.to_thread(_fingerprint, self.directory)
                if fingerprint != self._fingerprint:
                    await self.reload("files changed")
            except Exception as problem:  # the watcher must survive a vanished directory
                log.warning("watching %s failed: %s", self.directory, problem)

    async def close(self) -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        await self._tasks.close()
