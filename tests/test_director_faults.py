"""The director's own faults: paused, its clock jumped, its own work failing.

Each one must be survived or shouted about: a director that looks alive and
judges nothing is the failure that leaves a black screen.
"""

from __future__ import annotations

import asyncio
import glob
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pxcontrol.detection import ClientState, Detector
from pxcontrol.director import Director, run_director
from pxcontrol.loading import load_show
from pxcontrol.testing import Rig

from .conftest import async_wait_for, free_port

OFFLINE_AFTER = 0.4

PAIR = f"""
[director]
heartbeat_port = {{heartbeat_port}}

[detection]
heartbeat_interval = 0.05
offline_after = {OFFLINE_AFTER}
online_after = 0.6

[[clients]]
name = "Playout1"
ip = "127.0.0.11"
outputs = ["Output 1"]

[[clients]]
name = "Playout2"
ip = "127.0.0.12"
outputs = ["Output 1"]

[[clients]]
name = "Backup1"
ip = "127.0.0.21"
outputs = ["Output 1"]
backup_for = ["127.0.0.11"]
auto_backup = true
"""

CLIENTS = {"Playout1": "127.0.0.11", "Playout2": "127.0.0.12", "Backup1": "127.0.0.21"}


@pytest.fixture
def rig(tmp_path) -> Iterator[Rig]:
    rig = Rig(tmp_path, PAIR)
    yield rig
    rig.close()


def kill_and_time_detection(rig: Rig) -> float:
    """Kill Playout1's agent; seconds from the kill to the director's client.offline."""
    director = rig.director
    assert director is not None
    after = len(director.events)
    killed = time.time()
    rig.agents["Playout1"].kill()
    offline = director.wait_event("client.offline", after=after, client="Playout1")
    director.wait_event("backup.activated", after=after, client="Playout1", backup="Backup1")
    return offline["time"] - killed


def test_a_director_paused_for_1_5_s_declares_nobody_offline_then_detects_a_kill_on_time(rig):
    director = rig.start_director()
    rig.start_clients(**CLIENTS)
    before = len(director.events)

    director.signal(signal.SIGSTOP)  # a VM hiccup, a laptop lid
    time.sleep(1.5)  # the fault itself: the director is stopped this long
    director.signal(signal.SIGCONT)

    alarm = director.wait_event("alarm", after=before, alarm="director stalled")
    assert "stopped for 1." in alarm["message"] and "offline_after" in alarm["message"]
    assert director.of_kind("client.offline", after=before) == []
    assert director.of_kind("alarm", after=before, alarm="mass failure") == []

    took = kill_and_time_detection(rig)
    assert took <= OFFLINE_AFTER + 0.1, f"detected {took:.3f} s after the kill"


def _faketime_library() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    if not found:
        raise RuntimeError("libfaketime is missing: apt-get install faketime")
    return found[0]


@pytest.mark.parametrize(
    ("jump", "monotonic"),
    [("+3600", True), ("-3600", True), ("+3600", False), ("-3600", False)],
    ids=["monotonic+1h", "monotonic-1h", "wall+1h", "wall-1h"],
)
def test_a_clock_jump_on_the_director_keeps_every_client_watched(rig, tmp_path, jump, monotonic):
    """libfaketime (Debian's faketime) moves the director's clock by an hour mid-show."""
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    agents_env = rig.env
    rig.env = {
        **agents_env,
        "LD_PRELOAD": _faketime_library(),
        "FAKETIME_TIMESTAMP_FILE": str(offset),
        "FAKETIME_NO_CACHE": "1",  # read the file at every call: the jump lands at once
    }
    if not monotonic:
        rig.env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"  # only the wall clock jumps
    director = rig.start_director()  # only the director lives on the fake clock
    rig.env = agents_env
    rig.start_clients(**CLIENTS)
    before = len(director.events)

    staged = tmp_path / "faketime.new"
    staged.write_text(f"{jump}\n")
    staged.replace(offset)  # atomically: a half-written file would be a jump of its own
    if monotonic:  # the detector sees its clock move: a stall, said once
        director.wait_event("alarm", after=before, alarm="director stalled")
    # Clients stay watched: none offline, all still online a while later.
    rig.agents["Playout2"].signal(signal.SIGSTOP)  # a marker: detection still works at all
    director.wait_event("client.offline", after=before, client="Playout2")
    offline = director.of_kind("client.offline", after=before)
    assert [e["client"] for e in offline] == ["Playout2"]

    after = len(director.events)
    killed = time.monotonic()
    rig.agents["Playout1"].kill()
    event = director.wait_event("client.offline", after=after, client="Playout1")
    took = event["_seen"] - killed  # this process's clock: the director's is the fake one
    assert took <= OFFLINE_AFTER + 0.2, f"detected {took:.3f} s after the kill"
    director.wait_event("backup.activated", after=after, client="Playout1")


# --- its own work failing (in this process: the fault is injected into a real director) ---


SHOW = """
[director]
heartbeat_port = {port}

[detection]
heartbeat_interval = 0.05
offline_after = 0.4
online_after = 0.6

[[clients]]
name = "Playout1"
ip = "127.0.0.11"
outputs = ["Output 1"]
"""


async def _director(folder: Path) -> Director:
    port = free_port()
    (folder / "show.toml").write_text(SHOW.replace("{port}", str(port)))
    return Director(load_show(folder / "show.toml"), folder / "state", osc_port=0, http_port=0)


async def test_a_detector_that_raises_is_an_alarm_and_is_started_again(tmp_path):
    director = await _director(tmp_path)
    await director.start()
    try:
        detector = director.live.detector
        real_check = detector.check
        failures = iter([RuntimeError("injected fault")])

        def failing_check(now: float):
            fault = next(failures, None)
            if fault is not None:
                raise fault
            return real_check(now)

        detector.check = failing_check  # type: ignore[method-assign]
        alarm = await async_wait_for(
            lambda: [e for e in director.app.events if e.fields.get("alarm") == "director fault"],
            what="the director fault alarm",
        )
        assert (
            "heartbeat reader failed (RuntimeError: injected fault)" in alarm[0].fields["message"]
        )
        # Started again: the detector ticks on.
        await async_wait_for(
            lambda: (age := director.live.tick_age()) is not None and age < 0.1,
            what="the detector to tick again",
        )
        assert director.health().restarts == 1
        assert director.supervisor.gave_up is None
    finally:
        await director.stop()


async def test_a_detector_that_keeps_failing_stops_the_director_not_silently(tmp_path, monkeypatch):
    director = await _director(tmp_path)

    def broken(self: Detector, now: float):
        raise OSError("injected: always")

    monkeypatch.setattr(Detector, "check", broken)
    stop = asyncio.Event()  # nobody sets it: the director must stop by itself
    ran = await asyncio.wait_for(
        run_director(director.loaded, stop, tmp_path / "state", watch=False), 20
    )
    assert ran.supervisor.gave_up is not None
    assert "heartbeat reader failed 5 times" in ran.supervisor.gave_up.message
    faults = [e for e in ran.app.events if e.fields.get("alarm") == "director fault"]
    assert len(faults) == 5


def test_health_is_in_the_status(tmp_path):
    async def main() -> None:
        director = await _director(tmp_path)
        await director.start()
        try:
            await async_wait_for(lambda: director.live.tick_age() is not None)
            health = director.status().director
            assert health.detector_tick_age_ms is not None
            assert health.detector_tick_age_ms < 5000
            assert health.kernel_stamps  # Linux stamps heartbeats as they arrive
            assert director.live.state("Playout1") is ClientState.DRY
        finally:
            await director.stop()

    asyncio.run(main())


async def test_a_web_page_server_that_stops_serving_is_an_alarm_and_serves_again(tmp_path):
    import httpx

    director = await _director(tmp_path)
    await director.start()
    try:
        url = f"http://127.0.0.1:{director.web.port}/api/status"
        async with httpx.AsyncClient(timeout=5) as http:
            assert (await http.get(url)).status_code == 200
            first = director.web._server
            assert first is not None
            first.should_exit = True  # the server ends while the director runs on
            alarm = await async_wait_for(
                lambda: [
                    e for e in director.app.events if e.fields.get("alarm") == "director fault"
                ],
                what="the director fault alarm",
            )
            assert (
                "web page failed (RuntimeError: the Live Systems page stopped serving)"
                in (alarm[0].fields["message"])
            )
            await async_wait_for(
                lambda: director.web._server is not first and director.web._server.started,
                what="the page to serve again",
            )
            assert (await http.get(url)).status_code == 200
    finally:
        await director.stop()


async def test_clients_coming_online_together_are_remembered_in_a_few_writes(tmp_path):
    """Each client seen online is remembered across restarts; 200 at once (a first start)
    used to be 200 fsynced writes of the whole set, queued before the next decision."""
    director = await _director(tmp_path)
    await director.start()
    try:
        writes: list[set[str]] = []
        real = director.store.remember_seen

        async def counted(names: set[str]) -> None:
            writes.append(set(names))
            await real(names)

        director.store.remember_seen = counted  # type: ignore[method-assign]
        names = [f"C{i:03d}" for i in range(200)]
        for name in names:
            director.app.emit("client.online", client=name, ip="127.0.0.1")
        await async_wait_for(lambda: director._saving_seen is None and writes, what="the writes")
        assert writes[-1] == set(names)
        assert len(writes) <= 3, f"{len(writes)} writes"
    finally:
        await director.stop()
