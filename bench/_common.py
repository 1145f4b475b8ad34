"""Small helpers shared by the benchmarks: percentiles, signals, processes with a command prefix."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from pxcontrol.processes import Process

PYTHON = sys.executable
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


# A drop-in module with no-op actions: what the benchmarks call, so the figure is the runtime's.
NOOP = """
from pxcontrol import Module, action, hookimpl

class Noop(Module):
    @action
    async def nothing(self) -> None:
        pass

    @action
    async def route(self, output: int, input: int) -> None:
        pass

@hookimpl
def register_module_types(register):
    register(Noop)
"""


def quantiles(samples: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99 and max of `samples` (inclusive method: p99 of 30 samples is near the max)."""
    if not samples:
        return {}
    if len(samples) == 1:
        only = samples[0]
        return {"p50": only, "p90": only, "p99": only, "max": only, "min": only}
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return {"min": min(samples), "p50": q[49], "p90": q[89], "p99": q[98], "max": max(samples)}


def ms(figures: dict[str, float], keys: Sequence[str] = ("p50", "p90", "p99", "max")) -> str:
    return "  ".join(f"{k} {figures[k] * 1000:7.1f}" for k in keys if k in figures)


def interrupt_on_term() -> None:
    """SIGTERM (and SIGHUP, unless nohup ignores it) end the benchmark like Ctrl-C, so every
    `finally` cleans up. A background job started without job control ignores SIGINT: stop it
    with SIGTERM."""

    def raise_interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, raise_interrupt)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, raise_interrupt)


class PrefixedProcess(Process):
    """A pxcontrol subprocess started under a command prefix (e.g. `ip netns exec NS`).

    Same event collection as pxcontrol.processes.Process; only the command line differs.
    `ip netns exec` execs the command, so the pid is the python process itself.
    """

    def __init__(self, prefix: list[str], args: list[str], env: dict[str, str] | None = None):
        self.args = args
        self.events = []
        self.output = []
        self.proc = subprocess.Popen(
            [*prefix, PYTHON, "-m", "pxcontrol", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,  # Ctrl-C reaches the benchmark, which stops them in order
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()


def started(director: Process, timeout: float) -> dict:
    """The director's show.loaded event; fails at once, with its output, if it exits instead."""
    from pxcontrol.processes import wait_for

    wait_for(
        lambda: director.of_kind("show.loaded") or director.proc.poll() is not None,
        timeout,
        "show.loaded from the director",
    )
    loaded = director.of_kind("show.loaded")
    if not loaded:
        time.sleep(0.2)  # let the reader thread collect the last lines
        raise AssertionError(
            "the director exited instead of starting:\n  " + "\n  ".join(director.output[-15:])
        )
    return loaded[0]
