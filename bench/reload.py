"""Hot reload: time from saving the show file to the new mapping being live.

    python bench/reload.py [--saves 100]

A director runs in this process with its real watcher. Each save changes one
mapping's text; the clock stops when the director has swapped the new show in
(its show.reloaded event, raised right after the swap). Two ways of saving:
writing the file in place, and writing a temporary file then renaming it over
the show (what most editors do). Goal: p95 ≤ 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from pxcontrol.app import load_show
from pxcontrol.director import Director
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


async def main(saves: int) -> None:
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
    asyncio.run(main(parser.parse_args().saves))
