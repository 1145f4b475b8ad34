"""Wrong passcodes (OSC) and wrong tokens (web) per host: a few are free, then a growing wait.

After FREE wrong attempts a host is refused for WAIT seconds, doubled with every
further wrong attempt up to LONGEST. While it waits, every attempt is refused
unheard, the right one too, so guessing is bounded to about one try per LONGEST.
The right passcode after the wait clears the host's record; so does an hour
without a wrong attempt.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from pxcontrol.budgets import HOSTS

FREE = 5  # wrong attempts before a host has to wait
WAIT = 2.0  # seconds, the first wait
LONGEST = 300.0  # seconds, the longest wait
FORGET = 3600.0  # seconds without a wrong attempt: the record is dropped


@dataclass
class _Record:
    wrong: int = 0
    last: float = 0.0
    until: float = 0.0  # refused before this time


class Attempts:
    """Per host: may it try now, and what happened when it did."""

    def __init__(
        self, what: str, log: logging.Logger, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.what = what  # "passcode", "token": said in the log and the refusal
        self.log = log
        self._clock = clock
        self._records: dict[str, _Record] = {}
        self.refused = 0  # attempts refused unheard while a host waited
        self.wrong = 0  # wrong attempts heard

    def wait(self, host: str) -> float:
        """Seconds this host must still wait before an attempt is heard (0: now)."""
        record = self._records.get(host)
        if record is None:
            return 0.0
        now = self._clock()
        if now - record.last > FORGET:
            del self._records[host]
            return 0.0
        return max(0.0, record.until - now)

    def refusal(self, host: str) -> str | None:
        """The message for an attempt made while the host must wait, or None."""
        wait = self.wait(host)
        if wait <= 0:
            return None
        self.refused += 1
        return f"too many wrong {self.what}s from {host}: try again in {math.ceil(wait)} s"

    def failed(self, host: str) -> None:
        now = self._clock()
        record = self._records.get(host)
        if record is None:
            if len(self._records) >= HOSTS:
                self._records.clear()
            record = self._records[host] = _Record()
        record.wrong += 1
        record.last = now
        self.wrong += 1
        if record.wrong >= FREE:
            wait = min(LONGEST, WAIT * 2 ** (record.wrong - FREE))
            record.until = now + wait
            self.log.warning(
                "wrong %s from %s (%d in a row): it is refused for %g s",
                self.what,
                host,
                record.wrong,
                wait,
            )
        else:
            self.log.warning("wrong %s from %s (%d in a row)", self.what, host, record.wrong)

    def succeeded(self, host: str) -> None:
        self._records.pop(host, None)
