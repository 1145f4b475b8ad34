"""Hot reload: time from saving the show file to the new mapping being live; a big show's load.

    python bench/reload.py [--saves 100] [--clients 10000] [--only saves|big]

A director runs in this process with its real watcher. Each save changes one
mapping's text; the clock stops when the director has swapped the new show in
(its show.reloaded event, raised right after the swap). Two ways of saving:
writing the file in place, and writing a temporary file then renaming it over
the show (what most editors do). Goal: p95 ≤ 100 ms.

Then a big show (`--clients`, 10,000 by default: four playouts to each
backup): the time to load it (read, parse, check, as `pxcontrol check`), to
start a director on it, and to reload it after a saved edit; and the longest
stall of the director's event loop during that reload, measured by a ticker
task on the loop that wakes every millisecond (the gap between two of its
wake-ups), and in the second after it. Also the time of one status snapshot (what the page, OSC and
`pxcontrol status` read). Goal: no stall longer than 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from pxcontrol.director import Director
from pxcontrol.loading import load_show
from pxcontrol.reload import DEBOUNCE_MS, STEP_MS

SHOW = """
[director]
heartbeat_port = 0

[modules.Log]
type = "log"

[[clients]]
name = "Playout1"
ip = "127.0.0.11"
outputs = ["Output 1"]

[[clients]]
name = "Backup1"
ip = "127.0.0.21"
outputs = ["Output 1"]
backup_for = ["127.0.0.11"]

[[mappings]]
on = "backup.activated"
do = [{{ action = "Log.Entry", args = {{ message = "save {n}" }} }}]
"""


def big_show(clients: int, message: str = "big", per_backup: int = 4) -> str:
    """A show of `clients` clients: `per_backup` playouts to each backup, two outputs each."""
    parts = ['[director]\nheartbeat_port = 0\n\n[modules.Log]\ntype = "log"\n']
    playouts = clients * per_backup // (per_backup + 1)

    def ip(i: int) -> str:
        return f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"

    for i in range(playouts):
        parts.append(
            f'[[clients]]\nname = "Playout{i}"\nip = "{ip(i)}"\ngpu = "RTX A6000"\n'
            'outputs = ["Output 1", "Output 2"]\n'
        )
    for j in range(clients - playouts):
        covered = ", ".join(
            f'"{ip(i)}"' for i in range(j * per_backup, min(playouts, (j + 1) * per_backup))
        )
        parts.append(
            f'[[clients]]\nname = "Backup{j}"\nip = "11.{j // 65536 % 256}.{j // 256 % 256}.'
            f'{j % 256}"\ngpu = "RTX A6000"\noutputs = ["Output 1", "Output 2"]\n'
            f'backup_for = [{covered}]\non_backup = ["Log.Entry"]\n'
        )
    parts.append(
        f'[[mappings]]\non = "backup.activated"\n'
        f'do = [{{ action = "Log.Entry", args = {{ message = "{message}" }} }}]\n'
    )
    return "\n".join(parts)


class Ticker:
    """A task on the loop that wakes every millisecond and keeps the longest gap it saw."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last)
            self.ticks += 1
            last = now

    def __enter__(self) -> Ticker:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def big(clients: int) -> None:
    print(f"\nbig show: {clients} clients")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "show.toml"
        path.write_text(big_show(clients))
        began = time.perf_counter()
        loaded = load_show(path)
        print(f"  load (read, parse, check)    {(time.perf_counter() - began) * 1000:8.0f} ms")
        director = Director(loaded, Path(folder) / "state", osc_port=0, http_port=0)
        began = time.perf_counter()
        await director.start()
        print(f"  director start               {(time.perf_counter() - began) * 1000:8.0f} ms")
        try:
            began = time.perf_counter()
            director.status()
            print(f"  status snapshot              {(time.perf_counter() - began) * 1000:8.0f} ms")
            reloaded = asyncio.Event()
            stop_listening = director.app.events.listen(
                lambda e: reloaded.set() if e.kind in ("show.reloaded", "show.error") else None
            )
            watcher = director.watch()
            await watcher.ready.wait()
            with Ticker() as ticker:
                began = time.perf_counter()
                path.write_text(big_show(clients, message="edited"))
                await asyncio.wait_for(reloaded.wait(), 300)
                took = time.perf_counter() - began
            with Ticker() as after:  # a collection put off by the reload would show here
                await asyncio.sleep(1.0)
            stop_listening()
            errors = [e for e in director.app.events if e.kind == "show.error"]
            assert not errors, errors[-1].fields["message"]
            assert director.show.mappings[0].do[0].args["message"] == "edited"
            print(f"  save → reloaded              {took * 1000:8.0f} ms")
            goal = "" if ticker.longest <= 0.050 else "   (goal 50 ms: missed)"
            print(
                f"  longest loop stall           {ticker.longest * 1000:8.1f} ms"
                f"  ({ticker.ticks} ticks){goal}"
            )
            print(f"  longest stall in the 1 s after {after.longest * 1000:8.1f} ms")
        finally:
            await director.stop()


def plain(path: Path, text: str) -> None:
    path.write_text(text)


def rename(path: Path, text: str) -> None:
    temp = path.with_name(".show.toml.tmp")
    temp.write_text(text)
    os.replace(temp, path)


async def measure(director: Director, path: Path, save, saves: int, start: int) -> list[float]:
    reloaded: asyncio.Queue[float] = asyncio.Queue()
    stop_listening = director.app.events.listen(
        lambda e: reloaded.put_nowait(time.perf_counter()) if e.kind == "show.reloaded" else None
    )
    samples = []
    try:
        for n in range(start, start + saves):
            began = time.perf_counter()
            save(path, SHOW.format(n=n))
            done = await asyncio.wait_for(reloaded.get(), 5)
            message = director.show.mappings[0].do[0].args["message"]
            assert message == f"save {n}", f"the live mapping says {message!r}"
            samples.append(done - began)
            await asyncio.sleep(0.02)  # let the folder settle, as between real saves
    finally:
        stop_listening()
    return samples


def report(label: str, samples: list[float]) -> None:
    q = statistics.quantiles(samples, n=100, method="inclusive")
    print(
        f"{label:<28} n={len(samples):<4} p50 {q[49] * 1000:6.1f} ms  "
        f"p95 {q[94] * 1000:6.1f} ms  max {max(samples) * 1000:6.1f} ms"
    )


async def main(saves: int, clients: int, only: str | None) -> None:
    if only != "big":
        await small(saves)
    if only != "saves":
        await big(clients)


async def small(saves: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "show.toml"
        path.write_text(SHOW.format(n=0))
        director = Director(load_show(path), Path(folder) / "state", osc_port=0, http_port=0)
        await director.start()
        watcher = director.watch()
        await watcher.ready.wait()
        try:
            print(f"watchfiles step {STEP_MS} ms, debounce {DEBOUNCE_MS} ms")
            report("write in place", await measure(director, path, plain, saves, 1))
            report("write temp, rename", await measure(director, path, rename, saves, 10_000))
        finally:
            await director.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=100)
    parser.add_argument("--clients", type=int, default=10_000, help="clients in the big show")
    parser.add_argument("--only", choices=("saves", "big"), help="run one part only")
    args = parser.parse_args()
    asyncio.run(main(args.saves, args.clients, args.only))
