"""The director's UDP socket: batched reads that give the loop back, sends that never block."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from pxcontrol import datagrams
from pxcontrol.datagrams import DatagramSocket

from .conftest import async_wait_for


@pytest.fixture(params=[False, True], ids=["readiness", "completions"])
def completions(request) -> bool:
    """Both ways to read: readiness callbacks (Linux, macOS) and awaited completions, the only
    way on Windows' Proactor loop (which has no add_reader), run here on the same sockets."""
    return request.param


def udp_pair() -> tuple[socket.socket, socket.socket]:
    ours = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ours.bind(("127.0.0.1", 0))
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    theirs = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    theirs.bind(("127.0.0.1", 0))
    return ours, theirs


async def test_a_burst_is_read_in_batches_and_the_loop_gets_its_turn_between_them(completions):
    ours, theirs = udp_pair()
    burst = 3 * datagrams.BATCH + 10
    for i in range(burst):  # all queued in the kernel before the loop looks
        theirs.sendto(i.to_bytes(4, "big"), ours.getsockname())
    got: list[int] = []
    seen_by_the_loop: list[int] = []

    def received(data: bytes, address) -> None:
        if not got:  # runs once the current batch has given the loop back
            asyncio.get_running_loop().call_soon(lambda: seen_by_the_loop.append(len(got)))
        got.append(int.from_bytes(data, "big"))

    endpoint = DatagramSocket(ours, received, completions)
    endpoint.start()
    try:
        await async_wait_for(lambda: len(got) == burst, 5, "the whole burst")
        assert got == list(range(burst)), "in order, none lost"
        assert seen_by_the_loop == [datagrams.BATCH]
    finally:
        endpoint.close()
        theirs.close()


async def test_a_datagram_whose_handler_fails_is_logged_and_the_next_ones_are_handled(
    caplog, completions
):
    ours, theirs = udp_pair()
    got: list[bytes] = []

    def received(data: bytes, address) -> None:
        if data == b"bad":
            raise ValueError("a bug in a handler")
        got.append(data)

    endpoint = DatagramSocket(ours, received, completions)
    endpoint.start()
    try:
        with caplog.at_level(logging.ERROR, logger="pxcontrol"):
            for data in (b"one", b"bad", b"two"):
                theirs.sendto(data, ours.getsockname())
            await async_wait_for(lambda: got == [b"one", b"two"], 5, "both good datagrams")
        assert "handling a datagram from" in caplog.text
    finally:
        endpoint.close()
        theirs.close()


async def test_what_the_kernel_cannot_take_waits_in_a_bounded_queue_then_goes_in_order(
    tmp_path, completions
):
    """A real kernel refusal: a Unix datagram peer that stops reading fills up, sends get EAGAIN."""
    path = str(tmp_path / "console.sock")
    console = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    console.bind(path)
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.connect(path)  # so the loop hears when the console has room again
    endpoint = DatagramSocket(sender, lambda data, address: None, completions)
    endpoint.start()
    total = datagrams.QUEUE * 3
    try:
        for i in range(total):
            endpoint.sendto(i.to_bytes(4, "big") + b"." * 1000, path)
        assert endpoint.dropped > 0, "the console's queue and ours are both full"
        queued = total - endpoint.dropped
        console.setblocking(False)
        got: list[int] = []

        def read() -> bool:
            while True:
                try:
                    got.append(int.from_bytes(console.recv(2048)[:4], "big"))
                except BlockingIOError:
                    return len(got) == queued

        await async_wait_for(read, 10, f"{queued} datagrams at the console")
        assert got == list(range(queued)), "what was queued went in order; the rest was dropped"
    finally:
        endpoint.close()
        console.close()


async def test_close_is_final_and_sending_after_it_is_harmless(completions):
    ours, theirs = udp_pair()
    endpoint = DatagramSocket(ours, lambda data, address: None, completions)
    endpoint.start()
    endpoint.close()
    endpoint.close()
    endpoint.sendto(b"late", theirs.getsockname())  # a reply after shutdown: dropped quietly
    assert ours.fileno() == -1
    theirs.close()
