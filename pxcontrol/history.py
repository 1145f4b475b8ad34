"""The last ten minutes of every client's performance, kept by the director.

A page opened after an incident shows what led to it: CPU, memory, GPU load and frame
rate of each client, one sample every two seconds, ten minutes back. Memory is fixed
when a client is first sampled: four rings of 32-bit floats (300 samples each, NaN for
"not reported"), 4.8 KB a client, 2.4 MB for 500.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

EVERY = 2.0  # seconds between samples
SPAN = 600.0  # seconds kept
SAMPLES = int(SPAN / EVERY)
METRICS = ("cpu", "memory", "gpu", "fps")

#: One client's figures now: cpu %, memory %, GPU load %, frames per second (None: unknown).
Figures = tuple[float | None, float | None, float | None, float | None]


@dataclass
class _Ring:
    values: dict[str, array] = field(
        default_factory=lambda: {m: array("f", [math.nan]) * SAMPLES for m in METRICS}
    )
    filled: int = 0  # samples written so far (the newest is at (filled - 1) % SAMPLES)


class PerformanceHistory:
    def __init__(self) -> None:
        self._rings: dict[str, _Ring] = {}
        self.last: float | None = None  # wall-clock time of the newest sample

    def sample(self, now: float, figures: Iterable[tuple[str, Figures]]) -> None:
        """One sample of every client given (a client not given is left as it was)."""
        self.last = now
        for name, values in figures:
            ring = self._rings.get(name)
            if ring is None:
                ring = self._rings[name] = _Ring()
            at = ring.filled % SAMPLES
            for metric, value in zip(METRICS, values, strict=True):
                ring.values[metric][at] = math.nan if value is None else float(value)
            ring.filled += 1

    def keep_only(self, names: set[str]) -> None:
        """Forget clients a reload removed."""
        for name in [n for n in self._rings if n not in names]:
            del self._rings[name]

    def of(self, name: str) -> dict[str, Any] | None:
        """The client's samples, oldest first, as JSON-ready lists (None where unknown);
        with `every` (seconds between them) and `last` (the newest one's time)."""
        ring = self._rings.get(name)
        if ring is None:
            return None
        count = min(ring.filled, SAMPLES)
        start = ring.filled - count
        series = {}
        for metric in METRICS:
            values = ring.values[metric]
            ordered = [values[(start + i) % SAMPLES] for i in range(count)]
            series[metric] = [None if math.isnan(v) else round(v, 2) for v in ordered]
        return {"every": EVERY, "last": self.last, **series}
