"""Printing never stops the director: a paused terminal or an unread pipe loses lines, not takeovers."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import IO

from pxcontrol.output import Output
from pxcontrol.testing import Rig, wait_for

from .conftest import async_wait_for
from .test_osc_bridge import Console

PIPE_CAPACITY = 65_536  # Linux's default


def _unread(fd: int) -> int:
    """Bytes written into a pipe and not read yet."""
    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), sys.byteorder)


def _writing_to_a_pipe(pid: int) -> bool:
    """Some thread of the process is blocked writing to a full pipe."""
    tasks = Path(f"/proc/{pid}/task")
    return any("pipe_write" in (task / "wchan").read_text() for task in tasks.iterdir())


def _fill(fd: int) -> None:
    os.set_blocking(fd, False)
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(fd, True)


def test_an_output_whose_reader_is_gone_counts_what_it_cannot_print():
    """The writer thread once ended at the first EPIPE: nothing logged, nothing counted,
    every later warning lost. Now what it cannot print is counted for the director's health."""
    from pxcontrol.output import lines_lost

    read_end, write_end = os.pipe()
    os.close(read_end)  # the terminal or journald went away
    before = lines_lost()
    output = Output(write_end, limit=10)
    try:
        output.write("one\n")
        wait_for(lambda: output.failed is not None, what="the write to fail")
        output.write("two\n")
        output.write("three\n")
        wait_for(lambda: output.lost == 3, what="every line counted")
        assert isinstance(output.failed, BrokenPipeError)
        assert lines_lost() - before == 3
    finally:
        output.close(1)
        os.close(write_end)


def test_a_full_pipe_drops_lines_counted_and_says_so_when_it_moves_again():
    read_end, write_end = os.pipe()
    _fill(write_end)  # nobody reads: the next write() would block
    output = Output(write_end, limit=10)
    try:
        output.write("first\n")
        wait_for(lambda: output.waiting == 0, what="the writer to take the first line")
        done = threading.Event()

        def write_many() -> None:
            for i in range(17):
                output.write(f"line {i}\n")
            done.set()

        threading.Thread(target=write_many, daemon=True).start()
        assert done.wait(5), "write() blocked"
        assert (output.waiting, output.dropped) == (10, 7)

        received = bytearray()

        def read_all() -> None:
            while chunk := os.read(read_end, 65536):
                received.extend(chunk)

        reader = threading.Thread(target=read_all, daemon=True)
        reader.start()
        assert output.close(5)
        os.close(write_end)
        reader.join(5)
        lines = bytes(received).lstrip(b"x").decode().splitlines()
        assert lines == [
            "first",
            *(f"line {i}" for i in range(10)),
            "… 7 line(s) not printed: the output was not being read",
        ]
        assert output.lost == 7
    finally:
        os.close(read_end)


SHOW = """
[director]
heartbeat_port = {heartbeat_port}

[detection]
heartbeat_interval = 0.05
offline_after = 0.3
online_after = 0.3

[[clients]]
name = "Playout1"
ip = "127.0.0.11"
outputs = ["Output 1"]

[[clients]]
name = "Backup1"
ip = "127.0.0.21"
outputs = ["Output 1"]
backup_for = ["127.0.0.11"]
auto_backup = true

[modules.Log]
type = "log"
"""


def _director_nobody_reads(rig: Rig, log: IO[str]) -> subprocess.Popen[bytes]:
    """`pxcontrol run --json-events` with its stdout a pipe that this test never reads."""
    run = ["run", str(rig.folder), "--state", str(rig.state), "--json-events"]
    return subprocess.Popen(
        [sys.executable, "-m", "pxcontrol", *run], stdout=subprocess.PIPE, stderr=log, env=rig.env
    )


async def _until(condition, timeout: float, what: str) -> None:
    """Await an async condition until it holds."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def _status(console: Console) -> dict[str, list]:
    console.received.clear()
    console.command("/pxcontrol/status")
    await console.wait("/pxcontrol/status/end")
    return {m.params[0]: m.params for m in console.received if m.address.endswith("/client")}


async def test_a_director_whose_stdout_nobody_reads_still_takes_over(tmp_path: Path, osc_receiver):
    rig = Rig(tmp_path, SHOW)
    playout = rig.start_agent("Playout1", "127.0.0.11")
    rig.start_agent("Backup1", "127.0.0.21")
    log = (tmp_path / "director.log").open("w")
    director = _director_nobody_reads(rig, log)
    console = Console(rig.osc_port)
    try:

        async def pong() -> bool:
            console.command("/pxcontrol/ping")
            try:
                await console.wait("/pxcontrol/pong", 0.2)
            except AssertionError:
                assert director.poll() is None, (tmp_path / "director.log").read_text()
                return False
            return True

        await _until(pong, 30, "the director to answer a ping")

        async def online() -> bool:
            status = await _status(console)
            return all(status.get(c, [None, None])[1] == "online" for c in ("Playout1", "Backup1"))

        await _until(online, 20, "both clients online")
        dump = osc_receiver()
        console.command("/pxcontrol/subscribe", dump.port)
        await console.wait("/pxcontrol/reply/pxcontrol/subscribe")

        # 200 events of ~1.1 KB each: four times what the pipe holds.
        console.received.clear()
        for i in range(200):
            console.command("/pxcontrol/action", "Log.Entry", f"{i:04d} " + "x" * 1000)
        await async_wait_for(
            lambda: len([m for m in console.drain() if m.address.endswith("/action")]) == 200,
            20,
            "an answer to every action",
        )
        # The director's stdout is full: a thread of it waits in write() on the pipe.
        wait_for(lambda: _writing_to_a_pipe(director.pid), 10, "the director blocked on stdout")
        assert _unread(director.stdout.fileno()) > PIPE_CAPACITY // 2

        playout.proc.send_signal(signal.SIGKILL)
        dump.wait_line('/pxcontrol/backup/Playout1/active is 1 "Backup1"', 10)
        assert (await _status(console))["Playout1"][2] == "Backup1"
        assert director.poll() is None
    finally:
        console.close()
        rig.close()
        director.kill()
        director.wait(10)
        log.close()
