"""Checks run by the agent: rise and fall, each built-in kind against real processes and sockets."""

from __future__ import annotations

import asyncio
import http.server
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import aiosc
import psutil
import pytest

from pxcontrol.checks import Check, CheckFailed, CheckSettings
from pxcontrol.checks.kinds import BUILTIN, CheckKinds, builtin_kinds
from pxcontrol.checks.risefall import RiseFall
from pxcontrol.checks.runner import Checks

from .conftest import async_wait_for

# --- rise and fall ---


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_check_fails_only_after_fall_failures_in_a_row():
    clock = Clock()
    state = RiseFall(fall=3, rise=2, clock=clock)
    assert [state.failed("slow"), state.failed("slow")] == [None, None]
    assert state.passed() is None  # a success in between starts the count again
    assert [state.failed("a"), state.failed("b")] == [None, None]
    clock.now = 101.5
    assert state.failed("c") == "failed"
    assert (state.healthy, state.message, state.since) == (False, "c", 101.5)
    assert state.failed("d") is None  # failed stays failed; the message is the latest
    assert state.message == "d"


def test_a_check_recovers_only_after_rise_successes_in_a_row():
    clock = Clock()
    state = RiseFall(fall=1, rise=3, clock=clock)
    assert state.failed("down") == "failed"
    assert [state.passed(), state.passed()] == [None, None]
    assert state.failed("down again") is None  # one failure starts the rise again
    assert [state.passed(), state.passed()] == [None, None]
    clock.now = 102.0
    assert state.passed() == "recovered"
    assert (state.healthy, state.message, state.since) == (True, "", 102.0)


def test_an_exit_fails_at_once_without_waiting_for_fall():
    state = RiseFall(fall=5, rise=1)
    assert state.failed_now("process exited") == "failed"
    assert state.failed_now("again") is None
    assert state.passed() == "recovered"


# --- the runner, with each kind ---


def kinds(*extra: type[Check]) -> CheckKinds:
    found = CheckKinds()
    for cls in [*builtin_kinds(), *extra]:
        found.register(cls, BUILTIN if cls in builtin_kinds() else "test")
    return found


class Recorder:
    def __init__(self) -> None:
        self.changes: list[tuple[str, str, str]] = []

    def __call__(self, name: str, change: str, message: str) -> None:
        self.changes.append((name, change, message))


async def run_checks(declared: list[dict[str, Any]], *extra: type[Check], figures=dict):
    recorder = Recorder()
    checks = Checks(kinds(*extra), recorder, figures)
    await checks.update(declared)
    return checks, recorder


FAST = {"interval": 0.01, "fall": 2, "rise": 2}


async def test_tcp_fails_when_nothing_listens_and_recovers_when_something_does():
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    checks, told = await run_checks([{"tcp": f"127.0.0.1:{port}", **FAST}])
    try:
        await async_wait_for(lambda: told.changes, what="tcp check to fail")
        assert told.changes[0][:2] == (f"tcp 127.0.0.1:{port}", "failed")
        assert "refused" in told.changes[0][2]
        assert checks.failed is not None and checks.failed.check == f"tcp 127.0.0.1:{port}"
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
        await async_wait_for(lambda: len(told.changes) == 2, what="tcp check to recover")
        assert told.changes[1][1] == "recovered" and checks.failed is None
    finally:
        await checks.close()
        server.close()


async def http_server(statuses: list[int]) -> asyncio.Server:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        status = statuses[0]
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0)


async def test_http_fails_on_an_unexpected_status():
    statuses = [200]
    server = await http_server(statuses)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/health"
    checks, told = await run_checks([{"http": url, "name": "player page", **FAST}])
    try:
        await async_wait_for(lambda: checks.running[0].probes >= 3, what="three probes")
        assert told.changes == []
        statuses[0] = 503
        await async_wait_for(lambda: told.changes, what="http check to fail")
        assert told.changes[0] == ("player page", "failed", f"{url} answered 503, expected 200")
    finally:
        await checks.close()
        server.close()


class _Page(http.server.BaseHTTPRequestHandler):
    """Python's own HTTP/1.1 server: keeps connections, answers in chunks when told to."""

    protocol_version = "HTTP/1.1"
    connections: list[int] = []
    status = 200

    def setup(self) -> None:
        super().setup()
        self.connections.append(1)

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for _ in range(3):
            self.wfile.write(b"5\r\nhello\r\n")
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args: Any) -> None:
        pass


async def test_http_keeps_one_connection_to_a_real_server_and_reads_chunked_answers():
    _Page.connections = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/status?full=1"
    # A time limit a loaded machine never reaches: a probe cut off would close the connection.
    checks, told = await run_checks([{"http": url, **FAST, "timeout": 5.0}])
    try:
        await async_wait_for(lambda: checks.running[0].probes >= 10, what="ten probes")
        assert told.changes == [] and len(_Page.connections) == 1
        _Page.status = 500
        await async_wait_for(lambda: told.changes, what="http check to fail")
        assert told.changes[0][2] == f"{url} answered 500, expected 200"
    finally:
        _Page.status = 200
        await checks.close()
        server.shutdown()
        server.server_close()


async def test_osc_needs_the_expected_answer_from_a_real_peer():
    answering = [True]

    def ping(addr, path, *args):
        if answering[0]:
            peer.send("/pong", 1, addr=addr)

    loop = asyncio.get_running_loop()
    _, peer = await loop.create_datagram_endpoint(
        lambda: aiosc.OSCProtocol({"/ping": ping}), local_addr=("127.0.0.1", 0)
    )
    port = peer.transport.get_extra_info("sockname")[1]
    declared = [{"osc": f"127.0.0.1:{port}", "address": "/ping", "expect": "/pong", **FAST}]
    checks, told = await run_checks(declared)
    try:
        await async_wait_for(lambda: checks.running[0].probes >= 3, what="three probes")
        assert told.changes == []
        answering[0] = False
        await async_wait_for(lambda: told.changes, what="osc check to fail")
        assert told.changes[0][1:] == ("failed", "timed out after 0.05 s")
    finally:
        await checks.close()
        peer.close()


async def test_command_exit_status_and_its_last_words():
    script = "import sys; print('output 2 is black'); sys.exit(3)"
    checks, told = await run_checks([{"command": [sys.executable, "-c", script], **FAST}])
    try:
        await async_wait_for(lambda: told.changes, what="command check to fail")
        assert told.changes[0][2] == "exited with 3: output 2 is black"
    finally:
        await checks.close()


@pytest.mark.parametrize(
    "script",
    [
        "import time; time.sleep(60)",  # never exits
        "import sys\nwhile True: sys.stdout.write('x' * 65536)",  # floods its output
    ],
    ids=["never exits", "floods"],
)
async def test_a_command_cut_off_at_its_time_limit_is_killed(script: str):
    declared = [
        {"command": [sys.executable, "-c", script], "timeout": 0.3, "interval": 3600, "fall": 1}
    ]
    me = psutil.Process()
    # From Python 3.12 a child is reaped by its own event loop: a command that an earlier
    # test's checks.close() cut off stays a zombie once that test's loop is closed.
    earlier = {child.pid for child in me.children()}

    def ours() -> set[int]:
        return {child.pid for child in me.children()} - earlier

    checks, told = await run_checks(declared)
    try:
        await async_wait_for(ours, what="the command to start")
        await async_wait_for(lambda: told.changes, what="command check to fail")
        assert told.changes[0][2] == "timed out after 0.3 s"
        await async_wait_for(lambda: not ours(), what="the command cut off to be killed")
    finally:
        await checks.close()


async def test_figure_in_bounds():
    figures = {"fps": 60.0}
    declared = [{"figure": "fps", "min": 50, **FAST}, {"figure": "temp", "max": 80, **FAST}]
    checks, told = await run_checks(declared, figures=lambda: figures)
    try:
        await async_wait_for(lambda: told.changes, what="the missing figure to fail")
        assert told.changes == [
            ("figure temp <= 80", "failed", "no figure 'temp' (plugins report: fps)")
        ]
        figures.update(fps=12.5, temp=40)
        await async_wait_for(lambda: len(told.changes) == 3, what="fps to fail, temp to recover")
        assert ("figure fps >= 50", "failed", "fps 12.5 is below 50") in told.changes
        assert checks.failed is not None and checks.failed.message == "fps 12.5 is below 50"
    finally:
        await checks.close()


class Hangs(Check):
    """A plugin kind whose probe never returns and swallows its cancellation."""

    kind = "hangs"

    class Settings(CheckSettings):
        hangs: bool

    async def probe(self) -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue


async def test_a_probe_that_hangs_is_cut_off_and_fails_and_holds_nothing_up():
    declared = [{"hangs": True, "timeout": 0.05, **FAST}, {"figure": "fps", "min": 1, **FAST}]
    figures = {"fps": 0}
    checks, told = await run_checks(declared, Hangs, figures=lambda: figures)
    try:
        await async_wait_for(lambda: len(told.changes) == 2, what="both checks to fail")
        assert ("hangs True", "failed", "timed out after 0.05 s") in told.changes
        figures["fps"] = 30  # the other check goes on being probed
        await async_wait_for(lambda: len(told.changes) == 3, what="fps to recover")
        assert checks.running[0].probes >= 2  # each hung probe cut off, the next one started
    finally:
        await checks.close()


class Raises(Check):
    kind = "raises"

    class Settings(CheckSettings):
        raises: str

    async def probe(self) -> None:
        raise KeyError(self.target)


async def test_a_plugin_probe_that_raises_is_a_failure_with_its_words():
    checks, told = await run_checks([{"raises": "boom", **FAST}], Raises)
    try:
        await async_wait_for(lambda: told.changes, what="the check to fail")
        assert told.changes[0][2] == "KeyError: 'boom'"
    finally:
        await checks.close()


class Watched(Check):
    """A check whose probe waits to be let go, and whose watched thing the test can end."""

    kind = "watched"
    gate: asyncio.Event
    probing: asyncio.Event
    alive = True

    class Settings(CheckSettings):
        watched: str

    async def probe(self) -> None:
        alive = Watched.alive  # what the probe saw as it began
        Watched.probing.set()
        await Watched.gate.wait()
        if not alive:
            raise CheckFailed("gone")


async def test_a_probe_that_began_before_an_exit_never_counts_as_a_recovery():
    Watched.gate, Watched.probing = asyncio.Event(), asyncio.Event()
    checks, told = await run_checks(
        [{"watched": "player", "interval": 0.01, "fall": 1, "rise": 1, "timeout": 5.0}], Watched
    )
    try:
        await Watched.probing.wait()  # a probe under way, begun while it ran: "healthy"
        Watched.alive = False
        checks.running[0].check.context.ended("process 'player' (pid 1) exited")
        exited = ("watched player", "failed", "process 'player' (pid 1) exited")
        assert told.changes == [exited]
        Watched.gate.set()  # the probe from before the exit answers "healthy" now
        await async_wait_for(lambda: checks.running[0].probes >= 3, what="later probes")
        # With rise 1 that stale answer would have been a recovery; it is not one.
        assert told.changes == [exited]
    finally:
        Watched.alive = True
        Watched.gate.set()
        await checks.close()


@pytest.fixture
def player(tmp_path: Path):
    """A process with a name no other process here has: a copy of sleep."""
    # Unique on the machine (another suite or a bench may run its own players), and under
    # 16 characters: the kernel's name for a process.
    binary = tmp_path / f"pxp{os.getpid() % 100000}"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", binary)
    procs: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        procs.append(subprocess.Popen([str(binary), "600"]))
        return procs[-1]

    yield binary, start
    for proc in procs:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(
    ("by", "watcher"), [("name", "pidfd"), ("path", "pidfd"), ("name", "thread")]
)
async def test_a_process_exit_is_noticed_at_once_not_at_the_next_probe(
    player, by, watcher, monkeypatch
):
    binary, start = player
    if watcher == "thread":  # as where os.pidfd_open is missing (macOS, Windows, old kernels)
        monkeypatch.delattr(os, "pidfd_open", raising=False)
    proc = start()
    # Probes an hour apart: only the exit notice can tell the check in time.
    target = binary.name if by == "name" else str(binary)
    checks, told = await run_checks([{"process": target, "interval": 3600, "fall": 3, "rise": 1}])
    try:
        run = checks.running[0]
        await async_wait_for(lambda: run.check.pid == proc.pid, what="the process to be found")
        if sys.platform == "linux" or watcher == "thread":
            assert run.check.watcher == watcher
        proc.send_signal(signal.SIGKILL)
        await async_wait_for(lambda: told.changes, 5.0, "the exit to fail the check")
        assert told.changes[0] == (
            f"process {target}",
            "failed",
            f"process {target!r} (pid {proc.pid}) exited",
        )
        assert run.probes == 1
    finally:
        await checks.close()


async def test_a_process_that_is_not_running_fails_after_fall_and_recovers_when_it_starts(player):
    binary, start = player
    checks, told = await run_checks([{"process": binary.name, **FAST}])
    try:
        await async_wait_for(lambda: told.changes, what="the check to fail")
        assert told.changes[0][2] == f"no process {binary.name!r} is running"
        start()
        await async_wait_for(lambda: len(told.changes) == 2, what="the check to recover")
    finally:
        await checks.close()


async def test_new_checks_replace_the_old_ones_and_the_same_list_changes_nothing():
    figures = {"fps": 0}
    checks, told = await run_checks([{"figure": "fps", "min": 1, **FAST}], figures=lambda: figures)
    try:
        await async_wait_for(lambda: told.changes, what="the check to fail")
        first = checks.running[0]
        await checks.update([{"figure": "fps", "min": 1, **FAST}])
        assert checks.running[0] is first
        await checks.update([{"figure": "fps", "max": 5, **FAST}])
        assert checks.running[0] is not first and first.task is not None and first.task.done()
        assert checks.failed is None  # a new check starts healthy
        await checks.update([])
        assert checks.running == [] and checks.failed is None
    finally:
        await checks.close()


async def test_a_check_this_agent_cannot_run_fails_saying_why():
    declared = [{"fans": 2, "name": "fans", **FAST}, {"tcp": "127.0.0.1:1", "fal": 2}]
    checks, told = await run_checks(declared)
    try:
        await async_wait_for(lambda: len(told.changes) == 2, what="both checks to fail")
        assert told.changes[0][:2] == ("fans", "failed")
        assert (
            "this agent knows no check kind in ['fall', 'fans', 'interval', 'name', 'rise']"
            in told.changes[0][2]
        )
        assert "install the plugin that provides it on this client" in told.changes[0][2]
        assert told.changes[1][:2] == ("check 2", "failed")
        assert (
            "not valid for this agent's 'tcp': fal: Extra inputs are not permitted"
            in told.changes[1][2]
        )
    finally:
        await checks.close()


class BrokenAtStart(Check):
    kind = "broken"

    class Settings(CheckSettings):
        broken: str

    def __init__(self, settings, context) -> None:
        raise RuntimeError("no capture card")


async def test_a_plugin_check_that_cannot_start_fails_alone_and_the_others_run():
    """A check whose constructor raises once stopped every check after it, silently: the
    client then read as healthy for ever."""
    figures = {"fps": 60}
    checks, told = await run_checks(
        [{"broken": "x", **FAST}, {"figure": "fps", "min": 50, **FAST}],
        BrokenAtStart,
        figures=lambda: figures,
    )
    try:
        assert [run.name for run in checks.running] == ["check 1", "figure fps >= 50"]
        await async_wait_for(lambda: told.changes, what="the broken check to fail")
        assert told.changes[0][1] == "failed"
        assert "'broken' could not start: RuntimeError: no capture card" in told.changes[0][2]
        figures["fps"] = 30  # the check after it is probed all the same
        await async_wait_for(lambda: len(told.changes) == 2, what="fps to fail")
        assert told.changes[1][:2] == ("figure fps >= 50", "failed")
    finally:
        await checks.close()


async def test_a_process_that_cannot_be_waited_for_is_looked_for_not_called_exited(
    player, monkeypatch, caplog
):
    """psutil's wait() refused (AccessDenied: an elevated process on Windows) once counted
    as an exit: the check failed at once, again after every probe, with nothing in the log."""
    import psutil

    binary, start = player
    monkeypatch.delattr(os, "pidfd_open", raising=False)  # the waiter thread, as on Windows

    def refused(self, timeout=None):
        raise psutil.AccessDenied(self.pid)

    monkeypatch.setattr(psutil.Process, "wait", refused)
    proc = start()
    checks, told = await run_checks(
        [{"process": binary.name, "interval": 3600, "fall": 3, "rise": 1}]
    )
    try:
        await async_wait_for(lambda: "cannot wait for" in caplog.text, what="the fallback")
        assert told.changes == []  # it runs: not called exited
        proc.send_signal(signal.SIGKILL)
        await async_wait_for(lambda: told.changes, 5.0, "the exit to fail the check")
        assert told.changes[0][1] == "failed" and "exited" in told.changes[0][2]
    finally:
        await checks.close()
