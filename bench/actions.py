"""Overhead of `app.call` for a no-op action: calls per second and latency percentiles.

    python bench/actions.py [--calls 20000]

Compares, in the same run, against awaiting the method directly and against the
least a careful caller would do (asyncio.wait_for with a timeout), so the figure
is what the runtime adds: lookup, validation, a task per call, the record.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import NOOP

from pxcontrol.app import App
from pxcontrol.loading import load_show


def percentiles(samples: list[float]) -> str:
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return f"p50 {q[49] * 1e6:7.1f} µs  p99 {q[98] * 1e6:7.1f} µs  max {max(samples) * 1e6:7.1f} µs"


async def measure(label: str, call, n: int) -> float:
    for _ in range(min(1000, n)):  # warm up
        await call()
    samples = []
    began = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - t)
    rate = n / (time.perf_counter() - began)
    print(f"{label:<34} {rate:10,.0f} calls/s  {percentiles(samples)}")
    return rate


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "modules").mkdir()
        (root / "modules" / "noop.py").write_text(NOOP)
        (root / "show.toml").write_text('[modules.Dev]\ntype = "noop"\n')
        app = App(load_show(root / "show.toml"))
        await app.start()
        try:
            module = app.modules["Dev"]
            await measure("direct await of the method", module.nothing, n)
            guarded = await measure(
                "asyncio.wait_for(method(), 5)", lambda: asyncio.wait_for(module.nothing(), 5), n
            )
            routed = await measure("app.call('Dev.Nothing')", lambda: app.call("Dev.Nothing"), n)
            await measure(
                "app.call('Dev.Route', 2 int args)",
                lambda: app.call("Dev.Route", output=1, input=5),
                n,
            )
            print(f"app.call rate / bare asyncio.wait_for rate: {routed / guarded:.2f}")
        finally:
            await app.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    asyncio.run(main(parser.parse_args().calls))
