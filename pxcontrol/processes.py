"""pxcontrol subprocesses watched from outside, for the demo, tests and benchmarks.

Each process prints its events as JSON lines (`--json-events`); a reader thread
collects them so the caller can wait for conditions instead of sleeping.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll until `condition()` is truthy and return it; fail saying `what` if it never is."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(0.005)


class Process:
    """A pxcontrol subprocess whose JSON events (and other output) are collected as they come."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str] | None = None,
        module: str = "pxcontrol",
        python: list[str] | None = None,
    ) -> None:
        """`python`: the interpreter's command, if not this one (Windows Python under Wine)."""
        self.args = args
        self.events: list[dict[str, Any]] = []
        self.output: list[str] = []
        self.proc = subprocess.Popen(
            [*(python or [sys.executable]), "-m", module, *args],
            stdin=subprocess.DEVNULL if python else None,  # Wine's Python needs a valid one
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.output.append(line)
            if line.startswith("{"):
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                event["_seen"] = time.monotonic()
                self.events.append(event)

    def wait_line(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """The first output line matching a regular expression."""
        return wait_for(
            lambda: next(
                (m for line in list(self.output) if (m := re.search(pattern, line))), None
            ),
            timeout,
            f"{pattern!r} from {self.args}; last output: {self.output[-8:]}",
        )

    def of_kind(self, kind: str, after: int = 0, **fields: Any) -> list[dict[str, Any]]:
        """Events of `kind` with these fields, and a sequence number above `after`."""
        return [
            e
            for e in list(self.events)
            if e["kind"] == kind
            and e.get("seq", 0) > after
            and all(e.get(k) == v for k, v in fields.items())
        ]

    def wait_event(
        self, kind: str, timeout: float = 10.0, after: int = 0, **fields: Any
    ) -> dict[str, Any]:
        found = wait_for(
            lambda: self.of_kind(kind, after, **fields),
            timeout,
            f"{kind} {fields} from {self.args[0]}; last output: {self.output[-8:]}",
        )
        return found[0]

    def wait_exit(self, timeout: float = 10.0) -> int:
        """The exit code, once the process has ended and all its output is read."""
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        return code

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a stopped process cannot die cleanly
            self.proc.kill()
        self.proc.wait(10)

    def stop(self, timeout: float = 10.0) -> int:
        """Ctrl-C, as an operator would; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
