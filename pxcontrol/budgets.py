"""How much one sender may ask of the director: a token bucket per host, and its flood episodes.

A console that sends faster than a bucket refills is "flooding"; a flood episode
starts with the first refused message and ends after `quiet` seconds without one.
The caller raises one alarm per episode and logs at powers of two of what was refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

HOSTS = 4096  # a bound on remembered hosts; only allowed senders reach a budget anyway


@dataclass(frozen=True)
class Rate:
    burst: float  # messages a sender may send at once
    per_second: float  # and then, sustained


@dataclass
class _Bucket:
    tokens: float
    at: float


class Budget:
    """A token bucket per host: `take(host)` is True while the host is within its rate."""

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, host: str) -> bool:
        now = self._clock()
        bucket = self._buckets.get(host)
        if bucket is None:
            if len(self._buckets) >= HOSTS:
                self._buckets.clear()
            bucket = self._buckets[host] = _Bucket(self.rate.burst, now)
        else:
            refill = (now - bucket.at) * self.rate.per_second
            bucket.tokens = min(self.rate.burst, bucket.tokens + refill)
            bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        return False

    def spent(self, host: str) -> bool:
        """Would `take(host)` refuse now? Takes nothing: for shedding a flood before it costs."""
        bucket = self._buckets.get(host)
        if bucket is None:
            return False
        refill = (self._clock() - bucket.at) * self.rate.per_second
        return bucket.tokens + refill < 1.0


@dataclass
class Episode:
    host: str
    began: float
    last: float
    refused: int = 0


class Floods:
    """Flood episodes per host: `refused(host)` says whether this refusal began a new one."""

    def __init__(self, quiet: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.quiet = quiet
        self._clock = clock
        self.episodes: dict[str, Episode] = {}

    def refused(self, host: str) -> tuple[Episode, bool]:
        now = self._clock()
        episode = self.episodes.get(host)
        new = episode is None or now - episode.last > self.quiet
        if new:
            if len(self.episodes) >= HOSTS:
                self.episodes.clear()
            episode = self.episodes[host] = Episode(host, now, now)
        assert episode is not None
        episode.last = now
        episode.refused += 1
        return episode, new


def power_of_two(count: int) -> bool:
    """1, 2, 4, 8 …: when a repeated thing is worth a log line."""
    return count > 0 and count & (count - 1) == 0
