"""Datagrams read with the time they arrived, not the time the reader got round to them."""

from __future__ import annotations

import socket
import sys
import threading
import time

import pytest

from pxcontrol.arrivals import ArrivalReader, Datagram


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
