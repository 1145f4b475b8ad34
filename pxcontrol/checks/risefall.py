"""Rise and fall: a check fails after `fall` failures in a row, recovers after `rise` successes.

One slow probe never fails a check; one lucky probe never recovers it. A check
starts healthy: an agent that just started says nothing until `fall` probes failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

Change = Literal["failed", "recovered"]


class RiseFall:
    def __init__(self, fall: int, rise: int, clock: Callable[[], float] = time.monotonic) -> None:
        if fall < 1 or rise < 1:
            raise ValueError("fall and rise are at least 1")
        self.fall, self.rise = fall, rise
        self.clock = clock
        self.healthy = True
        self.message = ""  # why it failed (the latest failure while failed)
        self.since = clock()  # when `healthy` last changed
        self._run = 0  # failures in a row while healthy, successes in a row while failed

    def passed(self) -> Change | None:
        if self.healthy:
            self._run = 0
            return None
        self._run += 1
        if self._run < self.rise:
            return None
        return self._change(True, "")

    def failed(self, message: str) -> Change | None:
        if not self.healthy:
            self._run = 0
            self.message = message
            return None
        self._run += 1
        if self._run < self.fall:
            return None
        return self._change(False, message)

    def failed_now(self, message: str) -> Change | None:
        """A failure that is certain (the watched process exited): failed at once."""
        if not self.healthy:
            self._run = 0
            self.message = message
            return None
        return self._change(False, message)

    def _change(self, healthy: bool, message: str) -> Change:
        self.healthy, self.message = healthy, message
        self.since = self.clock()
        self._run = 0
        return "recovered" if healthy else "failed"
