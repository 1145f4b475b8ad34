"""The Live Systems page at 50 and 500 clients: change → page latency, director CPU with pages
open, and chromium's main-thread work at 500 rows.

    python bench/page500.py                       # 50 and 500 clients, about 2 minutes
    python bench/page500.py --clients 500 --changes 30 --cpu-seconds 20

Per client count: a director (`pxcontrol run`, a real subprocess) with a show of N clients
(every 5th backs up the 4 before it, default detection) and bench/_heartbeat_sim.py sending
their heartbeats at 10 Hz from 127.0.X.Y, cpu figures wandering ±3 points per beat.

- change → page: one websocket page open; one client at a time is stopped in the simulator.
  Figure: from the director's `client.offline` event (its `time`, wall clock) to the arrival
  of that client's offline row on the websocket (wall clock, same machine). Also printed:
  from the stop to the row (includes detection, offline_after = 0.5 s).
- director CPU: psutil over --cpu-seconds with 0, 1 and 5 websocket pages open (each read to
  the end of every message), one client stopped every 2 s during the window.
- chromium (500 clients only): the page in headless chromium via Playwright; main-thread
  work per second from CDP Performance.getMetrics (TaskDuration) over --cpu-seconds, and
  how many client rows are in the document.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _trace
import httpx
import psutil
from _common import interrupt_on_term, ms, quantiles
from websockets.sync.client import connect

from pxcontrol.testing import Rig, wait_for

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("_heartbeat_sim", HERE / "_heartbeat_sim.py")
assert _spec is not None and _spec.loader is not None
sim = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sim)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


class Page:
    """A websocket page: reads every message, notes when each client's offline row arrived."""

    def __init__(self, port: int) -> None:
        self._connection = connect(f"ws://127.0.0.1:{port}/ws", max_size=None)
        self.ws = self._connection.__enter__()
        self.offline_at: dict[str, float] = {}
        self.bytes = 0
        self.messages = 0
        self.closed = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while not self.closed:
                text = self.ws.recv()
                now = time.time()
                self.bytes += len(text)
                self.messages += 1
                message = json.loads(text)
                rows = message.get("clients") or message.get("status", {}).get("clients", [])
                for row in rows:
                    if row["state"] == "offline":
                        self.offline_at.setdefault(row["name"], now)
                    else:
                        self.offline_at.pop(row["name"], None)
        except Exception:
            pass

    def close(self) -> None:
        self.closed = True
        self._connection.__exit__(None, None, None)


class Show:
    def __init__(self, clients: int) -> None:
        self.clients = clients
        show = sim.show_toml(clients, 5, online_after=0.5)
        self.rig = Rig(Path(tempfile.mkdtemp(prefix="page500-")), show)
        self.director = self.rig.start_director()
        self.sim = subprocess.Popen(
            [sys.executable, str(HERE / "_heartbeat_sim.py"), "--director",
             f"127.0.0.1:{self.rig.heartbeat_port}", "--clients", str(clients),
             "--seconds", "3600", "--control", "--wobble", "3"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        wait_for(
            lambda: len(self.director.of_kind("client.online")) >= clients, 60, "clients online"
        )
        self.next = 0  # playouts stopped so far
        self.stopped: list[tuple[str, float]] = []

    def stop_one(self) -> tuple[str, float]:
        """Stop a playout of the next backup group; start again those stopped 1.5 s ago."""
        groups = self.clients // 5
        i = (self.next % groups) * 5 + (self.next // groups) % 4
        self.next += 1
        name = f"C{i:03d}"
        assert self.sim.stdin is not None
        now = time.time()
        for old, at in [s for s in self.stopped if now - s[1] > 1.5]:
            self.sim.stdin.write(f"start {old}\n")
            self.stopped.remove((old, at))
        self.sim.stdin.write(f"stop {name}\n")
        self.sim.stdin.flush()
        self.stopped.append((name, now))
        return name, now

    def close(self) -> None:
        self.sim.terminate()
        self.sim.wait(10)
        self.rig.close()
        shutil.rmtree(self.rig.folder, ignore_errors=True)  # the show and its state


def change_to_page(show: Show, changes: int) -> None:
    page = Page(show.rig.http_port)
    wait_for(lambda: page.messages >= 2, 10, "the first state")
    event_to_page, stop_to_page = [], []
    try:
        for _ in range(changes):
            seq = max((e.get("seq", 0) for e in list(show.director.events)), default=0)
            name, stopped = show.stop_one()
            event = show.director.wait_event("client.offline", after=seq, client=name)
            wait_for(lambda n=name: n in page.offline_at, 10, f"{name}'s row on the page")
            event_to_page.append(page.offline_at[name] - event["time"])
            stop_to_page.append(page.offline_at[name] - stopped)
            time.sleep(0.3)
    finally:
        page.close()
    print(f"  change → page, {changes} changes (ms):")
    print(f"    event → page   {ms(quantiles(event_to_page))}")
    print(f"    stop → page    {ms(quantiles(stop_to_page))}  (detection included)")


def director_cpu(show: Show, pages: int, seconds: float) -> None:
    open_pages = [Page(show.rig.http_port) for _ in range(pages)]
    proc = psutil.Process(show.director.proc.pid)
    try:
        wait_for(lambda: all(p.messages >= 2 for p in open_pages), 20, "first states")
        time.sleep(1.0)
        before = proc.cpu_times()
        bytes_before = sum(p.bytes for p in open_pages)
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            show.stop_one()
            time.sleep(2.0)
        spent = time.monotonic() - start
        after = proc.cpu_times()
        cpu = (after.user + after.system - before.user - before.system) / spent
        traffic = (sum(p.bytes for p in open_pages) - bytes_before) / spent / max(1, pages)
    finally:
        for p in open_pages:
            p.close()
    print(f"  director CPU, {pages} page(s): {cpu * 100:5.1f} % of a core"
          + (f"  ({traffic / 1024:.1f} KB/s to each page)" if pages else ""))  # fmt: skip


def chromium_main_thread(show: Show, seconds: float, trace: bool = False) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1500, "height": 900}).new_page()
            page.goto(f"http://127.0.0.1:{show.rig.http_port}/")
            page.wait_for_selector("#link.live")
            page.wait_for_selector("tr.client")
            time.sleep(2.0)
            cdp = page.context.new_cdp_session(page)
            cdp.send("Performance.enable")

            kinds = ("TaskDuration", "ScriptDuration", "LayoutDuration", "RecalcStyleDuration")

            def task() -> dict[str, float]:
                metrics = cdp.send("Performance.getMetrics")["metrics"]
                return {m["name"]: m["value"] for m in metrics if m["name"] in kinds}

            def window(label: str, changes: bool) -> None:
                if trace:
                    browser.start_tracing(page=page, categories=_trace.CATEGORIES)
                first, cpu_first, start = task(), renderer_cpu(), time.monotonic()
                while time.monotonic() - start < seconds:
                    if changes:
                        show.stop_one()
                    time.sleep(2.0)
                spent = time.monotonic() - start
                last, cpu_last = task(), renderer_cpu()
                traced = _trace.main_thread(browser.stop_tracing(), spent) if trace else {}
                rows = page.locator("tr.client").count()
                busy = {k: (last[k] - first[k]) / spent for k in kinds}
                cpu = tuple((b - a) / spent for a, b in zip(cpu_first, cpu_last, strict=True))
                report(label, busy, cpu, rows, traced)

            window("a client stopped every 2 s", changes=True)
            # An alarm open: C004 takes over C000 from the page's API, then goes silent.
            answer = httpx.post(
                f"http://127.0.0.1:{show.rig.http_port}/api/backup/switch",
                json={"client": "C000"},
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
            assert show.sim.stdin is not None
            show.sim.stdin.write("stop C004\n")
            show.sim.stdin.flush()
            page.wait_for_selector("#alarms:not([hidden])", timeout=10_000)
            window("an alarm open, nothing changing", changes=False)
        finally:
            browser.close()


def renderer_cpu() -> tuple[float, float]:
    """CPU seconds so far of chromium's renderers (ours: below this process), main threads
    and whole processes. Unlike the page's task durations, a busy machine does not inflate
    these: time spent waiting for a core is not counted."""
    main = whole = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            if "--type=renderer" not in child.cmdline():
                continue
            times = child.cpu_times()
            whole += times.user + times.system
            main += sum(t.user_time + t.system_time for t in child.threads() if t.id == child.pid)
        except psutil.Error:
            continue
    return main, whole


def report(
    label: str, busy: dict[str, float], cpu: tuple[float, ...], rows: int, traced: dict
) -> None:
    parts = ", ".join(
        f"{k.removesuffix('Duration').lower()} {v * 1000:.1f}" for k, v in busy.items()
    )
    print(f"  chromium, {label} ({rows} rows in the document):")
    print(f"    CPU, ms per second: renderer main thread {cpu[0] * 1000:.1f}, "
          f"renderer process {cpu[1] * 1000:.1f}")  # fmt: skip
    print(f"    main-thread task time (CDP, wall clock), ms per second: {parts}")
    if traced:
        top = sorted(traced.items(), key=lambda kv: -kv[1][0])
        print("  traced, per second: self time in ms (events); tracing adds its own cost")
        for name, (spent_ms, count) in top[:12]:
            print(f"    {spent_ms:7.1f} ms ({count:5.1f})  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--cpu-seconds", type=float, default=10.0)
    parser.add_argument("--only", choices=["change", "cpu", "chromium"], help="one part only")
    parser.add_argument(
        "--trace", action="store_true", help="chromium: also trace where main-thread time goes"
    )
    args = parser.parse_args()
    interrupt_on_term()
    for clients in args.clients:
        print(f"{clients} clients")
        show = Show(clients)
        try:
            if args.only in (None, "change"):
                change_to_page(show, args.changes)
            for pages in (0, 1, 5) if args.only in (None, "cpu") else ():
                director_cpu(show, pages, args.cpu_seconds)
            if args.only == "chromium" or (args.only is None and clients >= 500):
                chromium_main_thread(show, args.cpu_seconds, args.trace)
        finally:
            show.close()


if __name__ == "__main__":
    main()
