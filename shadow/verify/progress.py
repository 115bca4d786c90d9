"""Progress of the docs scan: a bar with rate and ETA on a terminal, plain lines
(at most one per `every` seconds) otherwise. Writes to stderr; never to stdout, which
carries the report."""
from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO | None = None, every: float = 10.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = every
        self.entity, self.total, self.done = "", 0, 0
        self.started = self.last = time.monotonic()

    def begin(self, entity: str, total: int) -> None:
        self.entity, self.total, self.done = entity, total, 0
        self.started = self.last = time.monotonic()

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if not self.tty and now - self.last < self.every:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-6)
        rate = self.done / elapsed
        left = max(self.total - self.done, 0)
        eta = f"{left / rate:,.0f}s" if rate > 0 else "?"
        if self.tty:
            share = min(self.done / self.total, 1.0) if self.total else 1.0
            bar = "#" * int(share * 30)
            self.stream.write(f"\r{self.entity:24} [{bar:30}] {self.done:>10,}/{self.total:,} "
                              f"{rate:,.0f} docs/s ETA {eta}  ")
        else:
            self.stream.write(f"verify {self.entity}: {self.done}/{self.total} documents, "
                              f"{rate:.0f} docs/s, ETA {eta}\n")
        self.stream.flush()

    def bucket_done(self, entity: str, bucket: str) -> None:
        """A bucket of the docs scan is complete (and checkpointed with --resume)."""

    def end(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
