"""Hot reload of a running director: real files, the real watcher, real sockets."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pxcontrol.app import load_show
from pxcontrol.detection import ClientState
from pxcontrol.director import Director
from pxcontrol.reload import GRACE

from .conftest import async_wait_for

CLIENTS = """
[[clients]]
name = "Playout1"
ip = "127.0.0.11"
outputs = ["Output 1"]

[[clients]]
name = "Backup1"
ip = "127.0.0.21"
outputs = ["Output 1"]
backup_for = ["127.0.0.11"]
"""

PROBE = """
from pxcontrol import Module, action, hookimpl

class Probe(Module):
    @action
    async def say(self) -> str:
        return "v1"

@hookimpl
def register_module_types(register):
    register(Probe)
"""


def show_text(message: str, device_port: int, timeout: float = 1.0, extra: str = "") -> str:
    return f"""
[director]
heartbeat_port = 0

[modules.Log]
type = "log"

[modules.Dev]
type = "tcp"
port = {device_port}
timeout = {timeout}

[modules.Probe]
type = "probe"

[[mappings]]
on = "backup.failed"
do = [{{ action = "Log.Entry", args = {{ message = "{message} {{client}}" }} }}]
{CLIENTS}
{extra}
"""


class Device:
    """A TCP device that counts the connections made to it."""

    def __init__(self) -> None:
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        while await reader.read(1024):
            pass
        writer.close()


class Running:
    def __init__(self, director: Director, folder: Path, device: Device, port: int) -> None:
        self.director = director
        self.folder = folder
        self.device = device
        self.port = port

    @property
    def show_file(self) -> Path:
        return self.folder / "show.toml"

    def events(self, kind: str) -> list:
        return [e for e in self.director.app.events if e.kind == kind]

    async def edit(self, text: str) -> None:
        """Save the show as an editor does: a new file renamed over the old one."""
        before = len(self.events("show.reloaded"))
        temp = self.folder / ".show.toml.swp"
        temp.write_text(text)
        os.replace(temp, self.show_file)
        await async_wait_for(lambda: len(self.events("show.reloaded")) > before, what="reload")

    async def last_log_after_event(self) -> str:
        """Raise backup.failed (the backup is offline) and return what the mapping logged."""
        before = len(self.events("log.entry"))
        await self.director.backup.takeover("Playout1", "manual")
        await async_wait_for(lambda: len(self.events("log.entry")) > before, what="log entry")
        return self.events("log.entry")[-1].fields["message"]


@pytest.fixture
async def running(tmp_path) -> AsyncIterator[Running]:
    device = Device()
    server = await asyncio.start_server(device.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "probe.py").write_text(PROBE)
    (tmp_path / "show.toml").write_text(show_text("v1", port))
    director = Director(
        load_show(tmp_path / "show.toml"), tmp_path / "state", osc_port=0, http_port=0
    )
    await director.start()
    await director.watch().ready.wait()
    await async_wait_for(lambda: device.connections == 1, what="the device connection")
    yield Running(director, tmp_path, device, port)
    await director.stop()
    server.close()


async def test_a_new_mapping_is_live_for_the_next_event(running: Running):
    assert await running.last_log_after_event() == "v1 Playout1"
    await running.edit(show_text("v2", running.port))
    assert await running.last_log_after_event() == "v2 Playout1"
    (reloaded,) = running.events("show.reloaded")
    assert "modules kept: Log, Dev, Probe, Show" in reloaded.fields["message"]


async def test_an_unchanged_module_keeps_its_connection_across_a_reload(running: Running):
    dev = running.director.app.modules["Dev"]
    await running.edit(show_text("v2", running.port))
    assert running.director.app.modules["Dev"] is dev, "the same module, the same socket"
    assert running.device.connections == 1
    await running.edit(show_text("v2", running.port, timeout=2.0))  # its settings change
    assert running.director.app.modules["Dev"] is not dev
    assert "restarted: Dev" in running.events("show.reloaded")[-1].fields["message"]
    await async_wait_for(lambda: running.device.connections == 2, what="a new connection")


async def test_a_broken_edit_is_refused_and_the_old_show_runs_on_until_it_is_fixed(
    running: Running,
):
    running.show_file.write_text(show_text("v2", running.port).replace("[director]", "[director"))
    error = await async_wait_for(lambda: running.events("show.error"), what="show.error")
    assert "show.toml:2: error: TOML syntax error" in error[0].fields["message"]
    assert await running.last_log_after_event() == "v1 Playout1", "the old mapping runs"
    await running.edit(show_text("v3", running.port))
    assert await running.last_log_after_event() == "v3 Playout1"


async def test_an_action_that_no_longer_resolves_is_refused(running: Running):
    running.show_file.write_text(
        show_text("v2", running.port).replace('"Log.Entry"', '"Log.Entri"')
    )
    error = await async_wait_for(lambda: running.events("show.error"), what="show.error")
    assert "has no action 'Entri'" in error[0].fields["message"]
    assert "did you mean 'Entry'?" in error[0].fields["message"]
    assert await running.last_log_after_event() == "v1 Playout1"


async def test_changed_dropin_code_is_imported_again_and_broken_code_refused(running: Running):
    app = running.director.app
    assert (await app.call("Probe.Say")).result == "v1"
    before = len(running.events("show.reloaded"))
    (running.folder / "modules" / "probe.py").write_text(PROBE.replace('"v1"', '"v2"'))
    await async_wait_for(lambda: len(running.events("show.reloaded")) > before, what="reload")
    assert "restarted: Probe" in running.events("show.reloaded")[-1].fields["message"]
    assert (await app.call("Probe.Say")).result == "v2"

    (running.folder / "modules" / "probe.py").write_text("def broken(:\n")
    error = await async_wait_for(lambda: running.events("show.error"), what="show.error")
    assert "unknown module type 'probe'" in error[0].fields["message"]
    assert (await app.call("Probe.Say")).result == "v2", "the running module is untouched"

    (running.folder / "modules" / "probe.py").write_text(PROBE.replace('"v1"', '"v3"'))
    await async_wait_for(lambda: running.events("show.reloaded")[-1].seq > error[0].seq)
    assert (await app.call("Probe.Say")).result == "v3"


async def test_a_file_written_in_two_steps_is_never_reported_as_broken(running: Running):
    text = show_text("v2", running.port)
    before = len(running.events("show.reloaded"))
    with open(running.show_file, "w") as f:  # noqa: ASYNC230 - an editor that truncates, then writes
        f.write(text[: len(text) // 2])
        f.flush()
        os.fsync(f.fileno())
        f.write(text[len(text) // 2 :])
    await async_wait_for(lambda: len(running.events("show.reloaded")) > before, what="reload")
    await asyncio.sleep(GRACE * 2)  # the window in which a spurious error would be raised
    assert running.events("show.error") == []
    assert await running.last_log_after_event() == "v2 Playout1"


async def test_a_show_file_deleted_and_recreated_carries_on(running: Running):
    text = show_text("v2", running.port)
    before = len(running.events("show.reloaded"))
    running.show_file.unlink()
    running.show_file.write_text(text)
    await async_wait_for(lambda: len(running.events("show.reloaded")) > before, what="reload")
    assert running.events("show.error") == []
    assert await running.last_log_after_event() == "v2 Playout1"


async def test_a_deleted_show_file_is_reported_and_the_show_runs_on(running: Running):
    running.show_file.unlink()
    error = await async_wait_for(lambda: running.events("show.error"), what="show.error")
    assert "no show file here" in error[0].fields["message"]
    assert await running.last_log_after_event() == "v1 Playout1"


async def test_a_reload_never_loses_or_changes_a_takeover(running: Running):
    director = running.director
    director.live.detector.clients["Backup1"].state = ClientState.ONLINE  # as if its agent ran
    assert (await director.backup.takeover("Playout1", "manual")).ok
    await running.edit(show_text("v2", running.port))
    assert director.backup.plays_on("Playout1") == "Backup1" and director.backup.epoch == 1

    backup_only = '[[clients]]\nname = "Backup1"\nip = "127.0.0.21"\noutputs = ["Output 1"]\n'
    without_playout = show_text("v2", running.port).replace(CLIENTS, backup_only)
    running.show_file.write_text(without_playout)
    error = await async_wait_for(lambda: running.events("show.error"), what="show.error")
    assert (
        "Playout1's outputs play on Backup1 now: the edit removes Playout1. "
        "Move Playout1's outputs home first, then remove it"
    ) in error[0].fields["message"]
    assert director.backup.plays_on("Playout1") == "Backup1" and director.backup.epoch == 1
    assert director.show.client("Playout1") is not None


async def test_detection_timing_changes_apply_at_once(running: Running):
    await running.edit(show_text("v1", running.port, extra="[detection]\noffline_after = 1.0\n"))
    assert running.director.live.timing.offline_after == 1.0


async def test_the_reload_message_names_every_kind_of_change(running: Running):
    text = (
        show_text("v1", running.port, extra="[detection]\noffline_after = 1.0\n")
        .replace("heartbeat_port = 0", 'heartbeat_port = 0\npasscode = "4711"\nosc_port = 9')
        .replace('backup_for = ["127.0.0.11"]', 'backup_for = ["127.0.0.11"]\nauto_backup = true')
    )
    await running.edit(text)
    message = running.events("show.reloaded")[-1].fields["message"]
    assert "clients changed: Backup1 (auto_backup)" in message
    assert "detection: offline_after" in message
    assert "applied: director.passcode" in message
    assert "restart the director to apply: director.osc_port" in message
    assert "4711" not in message, "a passcode is never written into the log"


async def test_a_reload_says_what_check_would_warn_about(running: Running, caplog):
    lonely = '\n[[clients]]\nname = "Playout9"\nip = "127.0.0.19"\noutputs = ["Output 9"]\n'
    with caplog.at_level(logging.WARNING, logger="pxcontrol"):
        text = show_text("v1", running.port, extra=lonely)
        text = text.replace(
            'backup_for = ["127.0.0.11"]', 'backup_for = ["127.0.0.11", "127.0.0.19"]'
        )
        await running.edit(text)  # Output 9 has no counterpart on Backup1: a warning
    message = running.events("show.reloaded")[-1].fields["message"]
    assert "clients added: Playout9" in message and "warning(s), see the director's log" in message
    assert "Playout9" in caplog.text
