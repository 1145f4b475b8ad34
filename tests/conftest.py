"""Shared test fixtures: real sockets on loopback, real subprocesses, real OSC peers."""

from __future__ import annotations

import os

# Installed plugins must never change a test result: load none unless a test asks.
os.environ["PXCONTROL_LOAD_PLUGINS"] = ""

import asyncio
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pythonosc.udp_client import SimpleUDPClient

from pxcontrol.testing import free_port, wait_for

REPO = Path(__file__).resolve().parent.parent


async def async_wait_for(
    condition: Callable[[], object], timeout: float = 10.0, what: str = ""
) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        await asyncio.sleep(0.005)


class OscDump:
    """liblo's `oscdump`, a real OSC receiver we did not write, with its output as lines."""

    def __init__(self, port: int, tcp: bool = False) -> None:
        if shutil.which("oscdump") is None:
            raise RuntimeError("oscdump is missing: apt-get install liblo-tools")
        self.port, self.tcp = port, tcp
        url = f"osc.tcp://:{port}" if tcp else str(port)
        self.proc = subprocess.Popen(
            ["oscdump", "-L", url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, text: str, timeout: float = 10.0) -> str:
        found = wait_for(
            lambda: next((line for line in self.lines if text in line), None),
            timeout,
            f"oscdump to print {text!r}; it printed {self.lines[-5:]}",
        )
        return str(found)

    def wait_ready(self) -> None:
        """oscdump prints nothing when it is ready: knock until it answers."""
        if self.tcp:
            ready = wait_for(
                lambda: self.proc.poll() is not None or _accepts(self.port),
                what=f"oscdump to listen on TCP {self.port}",
            )
        else:
            client = SimpleUDPClient("127.0.0.1", self.port)
            ready = wait_for(
                lambda: (
                    self.proc.poll() is not None
                    or client.send_message("/ready", 1)
                    or any("/ready" in x for x in self.lines)
                ),
                what="oscdump to start",
            )
        if self.proc.poll() is not None:  # it could not start: say why, at once
            raise AssertionError(f"oscdump on port {self.port} exited: {self.lines[-3:]}")
        assert ready

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(5)


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def osc_receiver() -> Iterator[Callable[..., OscDump]]:
    """Real OSC receivers we did not write (liblo's oscdump), ready before they are used."""
    made: list[OscDump] = []

    def make(tcp: bool = False) -> OscDump:
        # A port picked free can be taken before oscdump binds it (another suite on the
        # machine): oscdump then exits ("cannot find free port"); pick again, twice at most.
        for attempt in range(3):
            dump = OscDump(free_port(socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM), tcp)
            made.append(dump)
            try:
                dump.wait_ready()
                return dump
            except AssertionError:
                if attempt == 2 or dump.proc.poll() is None:
                    raise  # it runs and does not answer: that is the failure to see
        raise AssertionError("unreachable")

    yield make
    for dump in made:
        dump.close()


@pytest.fixture
def write_show(tmp_path: Path) -> Callable[..., Path]:
    """Write a show folder: show.toml and optional drop-in module files."""

    def write(text: str, modules: dict[str, str] | None = None) -> Path:
        (tmp_path / "show.toml").write_text(text)
        if modules:
            folder = tmp_path / "modules"
            folder.mkdir(exist_ok=True)
            for name, source in modules.items():
                (folder / name).write_text(source)
        return tmp_path / "show.toml"

    return write


def pxcontrol(*args: str, timeout: float = 30, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run the real `pxcontrol` command in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "pxcontrol", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )
