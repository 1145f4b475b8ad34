"""Datagrams read with the time they arrived, not the time the reader got round to them."""

from __future__ import annotations

import socket
import sys
import threading
import time

import pytest

from pxcontrol.arrivals import ArrivalReader, Datagram
from pxcontrol.detection import Guard
from pxcontrol.live import LiveSystems
from pxcontrol.loading import load_show


@pytest.fixture
def pair():
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    yield receiver, sender
    receiver.close()
    sender.close()


def test_a_datagram_read_late_keeps_its_arrival_time(pair):
    receiver, sender = pair
    batches: list[tuple[list[Datagram], float]] = []
    first = threading.Event()
    release = threading.Event()

    def received(batch: list[Datagram], now: float) -> None:
        if batch:
            batches.append((batch, now))
            if len(batches) == 1:
                first.set()
                release.wait(5)  # the reader is held up (the GIL, a stopped process …)

    reader = ArrivalReader(receiver, received, every=lambda: 0.01)
    thread = threading.Thread(target=reader.run, daemon=True)
    thread.start()
    try:
        sender.sendto(b"one", receiver.getsockname())
        assert first.wait(5)
        sent = time.monotonic()
        sender.sendto(b"two", receiver.getsockname())
        time.sleep(0.3)  # the fault: nothing reads for 0.3 s
        release.set()
        deadline = time.monotonic() + 5
        while len(batches) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        reader.stop()
        thread.join(2)
    (data, _, arrived), read_at = batches[1][0][0], batches[1][1]
    assert data == b"two"
    if sys.platform == "linux":
        assert reader.stamped and reader.kernel_stamped >= 2
        assert arrived - sent < 0.05, "stamped as it arrived"
        assert read_at - arrived >= 0.25, "though read 0.3 s later"
    else:  # stamped by the reading thread: as it read it
        assert read_at - arrived < 0.05


def test_the_reader_ticks_when_nothing_arrives(pair):
    receiver, _ = pair
    ticks: list[float] = []
    reader = ArrivalReader(receiver, lambda batch, now: ticks.append(now), every=lambda: 0.01)
    thread = threading.Thread(target=reader.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while len(ticks) < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    reader.stop()
    thread.join(2)
    assert len(ticks) >= 5 and not thread.is_alive()
    assert reader.last_tick == ticks[-1]


SHOW = """
[[clients]]
name = "A"
ip = "127.0.0.11"

[[clients]]
name = "B"
ip = "127.0.0.12"
"""


def test_every_silence_is_looked_at_once_a_tick_however_often_batches_come(write_show):
    # At 500 clients × 10 Hz the reader's batches are mostly one heartbeat each: looking at
    # all 500 silences after each one tripled the director's CPU for heartbeats.
    now = [100.0]
    live = LiveSystems(
        load_show(write_show(SHOW)).show, lambda *a, **k: None, _never, clock=lambda: now[0]
    )
    tick = live.detector.check_every
    live._batch([], 100.0)
    for ms in range(1, 25):  # a batch every millisecond, within one tick
        now[0] = 100.0 + ms / 1000
        live._batch([], now[0])
        assert live.detector.last_check == 100.0
        # The reader waits no longer than until the next look is due.
        assert live._every() == pytest.approx(100.0 + tick - now[0])
    now[0] = 100.0 + tick
    assert live._every() == 0.0
    live._batch([], now[0])
    assert live.detector.last_check == now[0]
    # A clock that went back is looked at at once (the detector reports it as a stall).
    live._batch([], 99.0)
    assert live.detector.last_check == 99.0


async def _never(name: str, guard: Guard | None) -> None:
    raise AssertionError("nobody goes offline here")
