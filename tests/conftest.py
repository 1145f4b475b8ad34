"""Shared test fixtures: real sockets on loopback, real subprocesses, real OSC peers."""

from __future__ import annotations

import os

# Installed plugins must never change a test result: load none unless a test asks.
os.environ["PXCONTROL_LOAD_PLUGINS"] = ""

import asyncio
import shutil
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

    def __init__(self, url: str) -> None:
        if shutil.which("oscdump") is None:
            raise RuntimeError("oscdump is missing: apt-get install liblo-tools")
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

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


@pytest.fixture
def oscdump_udp() -> Iterator[tuple[OscDump, int]]:
    port = free_port()
    dump = OscDump(str(port))
    client = SimpleUDPClient("127.0.0.1", port)
    # oscdump prints nothing when it is ready: knock until it hears us.
    wait_for(
        lambda: client.send_message("/ready", 1) or any("/ready" in x for x in dump.lines),
        what="oscdump to start",
    )
    yield dump, port
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
