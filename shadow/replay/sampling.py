"""Which reads get shadowed: per-route sampling and token-bucket rate limits. Pure and
cheap (a few hundred ns): sampling and the rate limit run on the request path so
that reads we will not compare are never copied or queued."""
from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable


def sampled_by_chance(rate: float) -> bool:
    """Random sampling: True for about `rate` of the calls (1.0 = always)."""
    return rate >= 1.0 or (rate > 0.0 and random.random() < rate)


def sampled_by_key(key: str, rate: float) -> bool:
    """Deterministic sampling: the same key is always in or always out, so a sampled
    key can be followed over time (and across replicas)."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate


class TokenBucket:
    """`rate` tokens per second, bursts up to `burst` (default: one second's worth).
    rate 0 means unlimited."""

    __slots__ = ("_clock", "_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(rate, 1.0)
        self._tokens = self.burst
        self._clock = clock
        self._stamp = clock()

    def take(self) -> bool:
        """Take one token if there is one; never waits."""
        if self.rate <= 0:
            return True
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
