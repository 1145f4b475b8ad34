"""Issue 15's proof at 500 clients: pages never make healthy clients look dead.

A real director (pxcontrol.testing.Rig) watches 500 simulated clients
(bench/_heartbeat_sim.py, a subprocess sending 10 Hz heartbeats from 127.0.X.Y),
every 5th backing up the 4 before it with automatic backup on. Before issue 15,
one open Live Systems page turned one stopped client into 308–500 offline
clients and 3–7 false takeovers, and five pages connecting at once into ~400
false offline: building the status for pages starved the loop that read
heartbeats. These tests hold the director to what the issue asked instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright
from websockets.sync.client import connect

from pxcontrol.testing import Rig, wait_for

BENCH = Path(__file__).resolve().parent.parent / "bench"
_spec = importlib.util.spec_from_file_location("_heartbeat_sim", BENCH / "_heartbeat_sim.py")
assert _spec is not None and _spec.loader is not None
heartbeat_sim = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(heartbeat_sim)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]

CLIENTS = 500
PAGES = 10  # the goal ("no false offline with 10 pages connecting at once")
# The show's default detection timing: heartbeats every 0.1 s, offline_after 0.5 s (late at
# 0.35 s), mass_failure_guard 0.5; only online_after is shortened (0.5 s), which changes how
# long startup takes and nothing that is judged afterwards. offline_after stays at the
# default, the timing the issue measured its failures with: at 1.0 s the code before issue
# 15 failed the one-page test only 1 time in 3 here, at 0.5 s every time. Its stability in
# CI rests on the simulator, not the director: the director judges by kernel arrival stamps
# and counts its own stalls out, but a pause of the simulator (one Python process sending
# 5000 heartbeats a second) is real silence. Its worst lag during these tests was 0.02-0.19 s
# with the 2-core machine at load 4-6; a failure message prints it, so a simulator that
# stalled past offline_after is told apart from a director that judged wrongly.
OFFLINE_AFTER = 0.5
WATCH = 3 * OFFLINE_AFTER  # how long after the change false offline are looked for


class Simulator:
    """The heartbeat simulator as a subprocess: stops clients on command, reports its lag."""

    def __init__(self, port: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH / "_heartbeat_sim.py"), "--director",
             f"127.0.0.1:{port}", "--clients", str(CLIENTS), "--seconds", "300", "--control"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.reports: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.reports.append(json.loads(line))

    def stop(self, *names: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("".join(f"stop {n}\n" for n in names))
        self.proc.stdin.flush()
        wait_for(
            lambda: {r.get("stopped") for r in self.reports} >= set(names), 5, f"{names} stopped"
        )

    def lag(self, after: float) -> float:
        """Its worst lag behind its sending schedule (seconds) in the seconds reported
        since `after` (time.monotonic(), the same clock as its reports')."""
        return max(
            (r["lag"] for r in list(self.reports) if "lag" in r and r["t"] > after), default=0.0
        )

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def rig500(tmp_path_factory) -> Iterator[tuple[Rig, Simulator]]:
    show = heartbeat_sim.show_toml(
        CLIENTS, 5, online_after=0.5, auto=True, offline_after=OFFLINE_AFTER
    )
    rig = Rig(tmp_path_factory.mktemp("rig500"), show)
    simulator = None
    try:
        director = rig.start_director()
        simulator = Simulator(rig.heartbeat_port)
        wait_for(lambda: len(director.of_kind("client.online")) >= CLIENTS, 30, "500 online")
        yield rig, simulator
    finally:
        if simulator is not None:
            simulator.close()
        rig.close()


def newest_seq(rig: Rig) -> int:
    assert rig.director is not None
    return max((e.get("seq", 0) for e in list(rig.director.events)), default=0)


def since(rig: Rig, seq: int, kind: str, **fields: Any) -> list[dict[str, Any]]:
    assert rig.director is not None
    return rig.director.of_kind(kind, after=seq, **fields)


def what_happened(rig: Rig, seq: int, simulator: Simulator, began: float) -> str:
    """For a failure message: what the director raised since `seq`, and the simulator's lag."""
    kinds: dict[str, int] = {}
    for event in since(rig, seq, "client.offline") + since(rig, seq, "alarm"):
        key = event["kind"] + (f" {event['alarm']}" if "alarm" in event else "")
        kinds[key] = kinds.get(key, 0) + 1
    late = len([e for e in since(rig, seq, "client.late") if e.get("late")])
    return f"{kinds}, {late} late; the simulator's worst lag meanwhile {simulator.lag(began):.3f} s"


def watch(since_time: float, seconds: float = WATCH) -> None:
    """Look for false offline until `seconds` after `since_time` (wall clock, as the
    director's event times): a negative needs a window, and a silence of offline_after
    started at `since_time` is judged within it."""
    wait_for(lambda: time.time() - since_time >= seconds, seconds + 5, "the watch window")


@pytest.fixture(scope="module")
def chromium():
    if not os.access(CHROMIUM, os.X_OK) and shutil.which("chromium") is None:
        raise RuntimeError("chromium is missing: apt-get install chromium (scripts/test does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_one_page_open_one_client_stopped_is_one_offline_and_one_takeover(rig500, chromium):
    rig, simulator = rig500
    director = rig.director
    assert director is not None
    context = chromium.new_context(viewport={"width": 1500, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto(f"http://127.0.0.1:{rig.http_port}/")
        expect(page.locator("#link")).to_have_class("link live")
        expect(page.locator('tr[data-client="C000"]')).to_have_attribute("data-state", "online")
        seq, began = newest_seq(rig), time.monotonic()

        simulator.stop("C007")  # a playout; C009 backs up C005–C008, automatically
        try:
            offline = director.wait_event("client.offline", after=seq, client="C007")
            activated = director.wait_event("backup.activated", after=seq, client="C007")
        except AssertionError as exc:
            pytest.fail(f"{exc}\n{what_happened(rig, seq, simulator, began)}")
        assert activated["backup"] == "C009" and activated["reason"] == "auto"
        # The page shows it (offline clients come first, so its row is in the document).
        row = page.locator('tr[data-client="C007"]')
        expect(row).to_have_attribute("data-state", "offline")
        expect(row).to_have_attribute("data-plays-on", "C009")
        watch(offline["time"])

        happened = what_happened(rig, seq, simulator, began)
        assert [e["client"] for e in since(rig, seq, "client.offline")] == ["C007"], happened
        assert since(rig, seq, "backup.activated") == [activated], happened
        assert since(rig, seq, "alarm", alarm="mass failure") == [], happened
    finally:
        context.close()


def _page(
    port: int, start: threading.Barrier, got: dict[int, int], i: int, done: threading.Event
) -> None:
    """One page: connect when all the others do, read the whole state and the log, then
    read every update until `done`, as an open page does."""
    start.wait(10)
    with connect(f"ws://127.0.0.1:{port}/ws", max_size=None, open_timeout=10) as ws:
        first = json.loads(ws.recv(timeout=10))
        assert first["type"] == "status"
        got[i] = len(first["status"]["clients"])
        assert json.loads(ws.recv(timeout=10))["type"] == "log"
        while not done.is_set():
            try:
                ws.recv(timeout=0.1)
            except TimeoutError:
                pass


def test_ten_pages_connecting_at_once_make_no_client_offline(rig500):
    rig, simulator = rig500
    seq, began = newest_seq(rig), time.monotonic()
    # As after a director restart: every page connects at the same moment, and stays open.
    # Three rounds, as a director restarted three times would see.
    for round in range(3):
        got: dict[int, int] = {}
        start, done = threading.Barrier(PAGES), threading.Event()
        pages = [
            threading.Thread(target=_page, args=(rig.http_port, start, got, i, done), daemon=True)
            for i in range(PAGES)
        ]
        for page in pages:
            page.start()
        try:
            wait_for(lambda got=got: len(got) == PAGES, 30, f"{PAGES} pages to get the whole state")
            assert got == {i: CLIENTS for i in range(PAGES)}, f"pages that got the state: {got}"
            watch(time.time(), WATCH if round == 2 else 2 * OFFLINE_AFTER)
        finally:
            done.set()
            for page in pages:
                page.join(10)

    happened = what_happened(rig, seq, simulator, began)
    assert since(rig, seq, "client.offline") == [], happened
    assert since(rig, seq, "alarm", alarm="mass failure") == [], happened
    assert since(rig, seq, "backup.activated") == [], happened
