"""The state writer: what an event costs the loop, how fast the log drains, and a
takeover's save alone and while 50,000 events flood the log.

    .venv/bin/python bench/state.py [--saves N] [--flood N]

Prints figures; asserts nothing. Uses a temporary folder on the default disk.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from _common import ms, quantiles

from pxcontrol.events import Event
from pxcontrol.state import StateStore


async def saves(store: StateStore, n: int) -> list[float]:
    took = []
    for epoch in range(n):
        began = time.perf_counter()
        await store.save(epoch, {"Playout1": "Backup1"}, {})
        took.append(time.perf_counter() - began)
    return took


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = StateStore(Path(folder) / "state.sqlite", event_limit=args.flood)
        await store.open()
        quiet = await saves(store, args.saves)

        began = time.perf_counter()
        for seq in range(1, args.flood + 1):
            store.append(Event("log.entry", {"message": "x" * 80, "n": seq}, 1.0, seq))
        queued = time.perf_counter() - began
        loud = await saves(store, args.saves)
        depth = store.queue_depth
        await store.flush()
        drained = time.perf_counter() - began
        await store.close()

    print(f"event append on the loop: {queued / args.flood * 1e6:.2f} µs per event")
    print(f"event log drained: {args.flood / drained:,.0f} events/s ({args.flood} events)")
    print(f"takeover save, quiet (ms):   {ms(quantiles(quiet))}")
    print(f"takeover save, flooded (ms): {ms(quantiles(loud))}  ({depth} events still queued)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=50, help="saves measured each way")
    parser.add_argument("--flood", type=int, default=50_000, help="events in the flood")
    asyncio.run(main(parser.parse_args()))
