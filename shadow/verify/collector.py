"""The cyclic garbage collector while a layer streams documents.

A docs layer allocates a dozen dicts per document and keeps two pages of them alive, so
the collector's default young-generation threshold (700 allocations) runs a collection
every few documents and promotes whole pages to the old generations, whose full scans
then walk every object in the process: about an eighth of the layer's CPU, to find no
cycles (documents hold none; reference counting frees each one as its page goes).
`fewer_collections()` raises the thresholds while a layer runs and restores them after
(nested or concurrent layers: the outermost restores)."""
from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

THRESHOLDS = (100_000, 50, 1000)  # young generation: ~100 documents' worth of allocations
_depth = 0
_saved: tuple[int, int, int] = gc.get_threshold()


@contextmanager
def fewer_collections() -> Iterator[None]:
    global _depth, _saved
    if _depth == 0:
        _saved = gc.get_threshold()
        gc.set_threshold(*THRESHOLDS)
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            gc.set_threshold(*_saved)
