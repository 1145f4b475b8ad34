"""Hot reload of a running director: real files, the real watcher, real sockets."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from pxcontrol import app as app_module
from pxcontrol import loading as loading_module
from pxcontrol import plugins, reload
from pxcontrol.app import App
from pxcontrol.detection import ClientState
from pxcontrol.director import Director
from pxcontrol.loading import load_show

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
    assert (await app.run_action("Probe.Say")).result == "v1"
    before = len(running.events("show.reloaded"))
    (running.folder / "modules" / "probe.py").write_text(PROBE.replace('"v1"', '"v2"'))
    await async_wait_for(lambda: len(running.events("show.reloaded")) > before, what="reload")
    assert "restarted: Probe" in running.events("show.reloaded")[-1].fields["message"]
    assert (await app.run_action("Probe.Say")).result == "v2"

    (running.folder / "modules" / "probe.py").write_text("def broken(:\n")
    error = await async_wait_for(lambda: running.events("show.error"), what="show.error")
    assert "unknown module type 'probe'" in error[0].fields["message"]
    assert (await app.run_action("Probe.Say")).result == "v2", "the running module is untouched"

    (running.folder / "modules" / "probe.py").write_text(PROBE.replace('"v1"', '"v3"'))
    await async_wait_for(lambda: running.events("show.reloaded")[-1].seq > error[0].seq)
    assert (await app.run_action("Probe.Say")).result == "v3"


async def test_a_file_written_in_two_steps_is_never_reported_as_broken(
    running: Running, monkeypatch
):
    # Room for a loaded machine between the two writes; the mechanism is what is tested.
    monkeypatch.setattr(reload, "GRACE", 1.0)
    text = show_text("v2", running.port)
    before = len(running.events("show.reloaded"))
    watcher = running.director.watcher
    with open(running.show_file, "w") as f:  # noqa: ASYNC230 - an editor that truncates, then writes
        f.write(text[: len(text) // 2])
        f.flush()
        os.fsync(f.fileno())
        # The half-written file was read and refused; its error is held back, not raised.
        await async_wait_for(lambda: watcher.holding_error, what="the half file's error held")
        f.write(text[len(text) // 2 :])
    await async_wait_for(lambda: len(running.events("show.reloaded")) > before, what="reload")
    assert not watcher.holding_error  # the mended file took its place: nothing to report
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

    # No longer its backup: the refusal names the line of the client that changed.
    unbacked = show_text("v2", running.port).replace('backup_for = ["127.0.0.11"]', "")
    running.show_file.write_text(unbacked)
    error = await async_wait_for(
        lambda: running.events("show.error")[1:], what="the second show.error"
    )
    rows = unbacked.splitlines()
    line = next(n for n, row in enumerate(rows, 1) if row == 'name = "Backup1"') - 1
    assert error[0].fields["message"].startswith(f"{running.show_file}:{line}: error: ")
    assert "the edit makes Backup1 no longer a backup of Playout1" in error[0].fields["message"]


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


# --- a reload cannot hang or die ---


async def saved_and_refused(running: Running, write: Callable[[], None]) -> str:
    """Make a bad edit; the message of the show.error it raises."""
    before = len(running.events("show.error"))
    write()
    await async_wait_for(lambda: len(running.events("show.error")) > before, what="show.error")
    return running.events("show.error")[-1].fields["message"]


async def saved_and_reloaded(running: Running, write: Callable[[], None]) -> str:
    before = len(running.events("show.reloaded"))
    write()
    await async_wait_for(lambda: len(running.events("show.reloaded")) > before, what="reload")
    return running.events("show.reloaded")[-1].fields["message"]


REGISTER_RAISES = """
from pxcontrol import hookimpl

@hookimpl
def register_module_types(register):
    raise SystemExit(0)
"""


async def test_anything_raised_while_loading_is_a_show_error_and_the_watch_goes_on(
    running: Running,
):
    show, probe = running.show_file, running.folder / "modules" / "probe.py"
    good_show = show_text("v1", running.port)

    def deep() -> None:
        show.write_text(good_show + "\n[extra]\nx = " + "[" * 1000 + "]" * 1000 + "\n")

    message = await saved_and_refused(running, deep)
    line = good_show.count("\n") + 3
    assert f"show.toml:{line}: error: arrays or inline tables are nested too deep" in message

    def not_utf8() -> None:
        show.write_bytes(good_show.replace("v1", "Café").encode("latin-1"))

    message = await saved_and_refused(running, not_utf8)
    line = good_show[: good_show.index("v1")].count("\n") + 1
    assert f"show.toml:{line}: error: not UTF-8 text: byte 0xe9" in message

    def folder() -> None:
        show.unlink()
        show.mkdir()

    assert "error: this is a folder, not a show file" in await saved_and_refused(running, folder)
    await saved_and_reloaded(running, lambda: (show.rmdir(), show.write_text(good_show)))

    for raises in ("SystemExit(0)", "KeyboardInterrupt()", "ValueError('no SDK')"):
        message = await saved_and_refused(running, lambda r=raises: probe.write_text(f"raise {r}"))
        assert f"probe.py:1: warning: could not be loaded: {raises.split('(')[0]}" in message
        assert "unknown module type 'probe'" in message
    message = await saved_and_refused(running, lambda: probe.write_text(REGISTER_RAISES))
    assert "probe.py:6: error: plugin" in message
    assert "failed to register its module types: SystemExit" in message
    init_raises = PROBE.replace(
        "class Probe(Module):\n",
        "class Probe(Module):\n    def __init__(self, *args, **kwargs):\n        raise SystemExit(5)\n\n",
    )
    message = await saved_and_refused(running, lambda: probe.write_text(init_raises))
    assert f"modules.Probe: Probe(...) could not be made ({probe}:6): SystemExit: 5" in message

    assert await running.last_log_after_event() == "v1 Playout1", "the show ran on untouched"
    assert (await running.director.app.run_action("Probe.Say")).result == "v1"
    await saved_and_reloaded(running, lambda: probe.write_text(PROBE.replace('"v1"', '"v2"')))
    await running.edit(show_text("v2", running.port))
    assert await running.last_log_after_event() == "v2 Playout1"
    assert (await running.director.app.run_action("Probe.Say")).result == "v2"


class Ticker:
    """A task on the director's loop that counts its wake-ups: a blocked loop counts none."""

    def __init__(self) -> None:
        self.ticks = 0
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(0.001)
            self.ticks += 1


async def test_a_dropin_that_hangs_at_import_is_cut_off_and_a_fixed_save_works(
    running: Running, monkeypatch
):
    monkeypatch.setattr(plugins, "DROPIN_IMPORT_TIMEOUT", 0.3)
    probe = running.folder / "modules" / "probe.py"
    text_v2 = show_text("v2", running.port)
    ticker = Ticker()
    hang = "import time\n\ntime.sleep(3600)\n"
    message = await saved_and_refused(running, lambda: probe.write_text(hang))
    assert "probe.py:3: warning: did not finish importing within 0.3 s" in message
    assert "(it was at line 3: time.sleep(3600))" in message
    assert "restart the director to end it" in message
    assert ticker.ticks >= 10, "the loop ran on while the import hung"
    ticker.task.cancel()

    threads = [t for t in threading.enumerate() if t.name == "import probe.py"]
    message = await saved_and_refused(running, lambda: running.show_file.write_text(text_v2))
    assert "probe.py:3: warning: did not finish importing" in message, "said again"
    assert [t for t in threading.enumerate() if t.name == "import probe.py"] == threads, (
        "the same file is not imported again: no second thread that never ends"
    )
    await saved_and_reloaded(running, lambda: probe.write_text(PROBE.replace('"v1"', '"v3"')))
    assert (await running.director.app.run_action("Probe.Say")).result == "v3"
    assert await running.last_log_after_event() == "v2 Playout1"


def probe_starting(body: str) -> str:
    """PROBE whose start() runs `body` (its lines indented by 8)."""
    return PROBE.replace(
        "class Probe(Module):\n",
        f"import asyncio, time\n\nclass Probe(Module):\n    async def start(self) -> None:\n"
        f"        {body}\n\n",
    )


async def test_a_start_that_hangs_is_cut_off_naming_its_file_and_line(
    running: Running, monkeypatch
):
    monkeypatch.setattr(app_module, "MODULE_START_TIMEOUT", 0.3)
    probe = running.folder / "modules" / "probe.py"
    hang = probe_starting("await asyncio.sleep(3600)")
    line = hang.splitlines().index("        await asyncio.sleep(3600)") + 1
    message = await saved_and_reloaded(running, lambda: probe.write_text(hang))
    assert "restarted: Probe" in message
    status = await async_wait_for(
        lambda: [e for e in running.events("module.status") if e.fields["module"] == "Probe"],
        what="Probe's status",
    )
    assert status[-1].fields["status"] == "connection_failure"
    assert status[-1].fields["message"] == (
        f"start() did not finish within 0.3 s ({probe}:{line}: await asyncio.sleep(3600))"
    )
    assert await running.last_log_after_event() == "v1 Playout1", "the director runs on"
    await saved_and_reloaded(running, lambda: probe.write_text(PROBE.replace('"v1"', '"v2"')))
    assert (await running.director.app.run_action("Probe.Say")).result == "v2"


async def test_a_start_that_swallows_its_cancellation_holds_nobody(write_show, monkeypatch):
    monkeypatch.setattr(app_module, "MODULE_START_TIMEOUT", 0.2)
    stubborn = "\n        ".join(
        [
            "while True:",
            "    try:",
            "        await asyncio.sleep(3600)",
            "    except asyncio.CancelledError:",
            "        pass  # carries on",
        ]
    )
    source = probe_starting(stubborn)
    line = source.splitlines().index("                await asyncio.sleep(3600)") + 1
    path = write_show('[modules.P]\ntype = "probe"\n', {"probe.py": source})
    app = App(load_show(path))
    await asyncio.wait_for(app.start(), 5)  # at start too: the show comes up without it
    assert "did not finish within 0.2 s" in app.modules["P"].status_message
    assert f"probe.py:{line}: await asyncio.sleep(3600)" in app.modules["P"].status_message
    await asyncio.wait_for(app.stop(), 5)


async def test_a_start_that_blocks_the_loop_raises_an_alarm_naming_its_file(
    running: Running, monkeypatch
):
    monkeypatch.setattr(app_module, "BLOCKING_STEP", 0.1)
    probe = running.folder / "modules" / "probe.py"
    blocking = probe_starting("time.sleep(0.3)  # blocks the whole director")
    await saved_and_reloaded(running, lambda: probe.write_text(blocking))
    (alarm,) = [e for e in running.events("alarm") if e.fields["alarm"] == "blocked loop"]
    assert alarm.fields["module"] == "Probe"
    assert f"start() of Probe ({probe}) held the event loop for 0.3" in alarm.fields["message"]
    assert "asyncio.to_thread" in alarm.fields["message"]


def many_clients(playouts: int, message: str) -> str:
    """A show of `playouts` playout clients and one backup for every four."""
    parts = ['[director]\nheartbeat_port = 0\n\n[modules.Log]\ntype = "log"\n']
    for i in range(playouts):
        parts.append(f'[[clients]]\nname = "P{i}"\nip = "10.1.{i // 256}.{i % 256}"\n')
        parts.append('outputs = ["Output 1"]\n')
    for j in range(0, playouts, 4):
        covered = ", ".join(f'"10.1.{i // 256}.{i % 256}"' for i in range(j, min(playouts, j + 4)))
        parts.append(f'[[clients]]\nname = "B{j}"\nip = "10.2.{j // 256}.{j % 256}"\n')
        parts.append(f'outputs = ["Output 1"]\nbackup_for = [{covered}]\n')
    parts.append('[[mappings]]\non = "backup.activated"\ndo = [{ action = "Log.Entry", ')
    parts.append(f'args = {{ message = "{message}" }} }}]\n')
    return "".join(parts)


class CountedClients(list):
    """A show's client list that counts how often the director walks it."""

    walks = 0

    def __iter__(self):
        CountedClients.walks += 1
        return super().__iter__()


async def walks_of_the_client_list(folder: Path, playouts: int, monkeypatch) -> tuple[int, int]:
    """How often starting a director, reloading the show and taking a status walk the
    clients; and how often a ticker on the loop woke while the show reloaded."""
    from pxcontrol import director as director_module

    def counted(loaded):
        loaded.show.clients = CountedClients(loaded.show.clients)
        return loaded

    load = loading_module.load_show_async
    monkeypatch.setattr(director_module, "load_show_async", lambda *a: _then(load(*a), counted))
    path = folder / "show.toml"
    path.write_text(many_clients(playouts, "v1"))
    director = Director(counted(load_show(path)), folder / "state", osc_port=0, http_port=0)
    CountedClients.walks = 0
    await director.start()
    try:
        path.write_text(many_clients(playouts, "v2"))
        ticker = Ticker()
        assert await director.reload()
        ticker.task.cancel()
        director.status()
        return CountedClients.walks, ticker.ticks
    finally:
        await director.stop()


async def _then(awaitable, then):
    return then(await awaitable)


async def test_the_director_walks_its_clients_a_fixed_number_of_times_however_many(
    tmp_path, monkeypatch
):
    """Starting, reloading and a status are linear in the clients: the list is walked the
    same number of times for 40 or 400 clients (a lookup per client, not a scan)."""
    (tmp_path / "small").mkdir()
    (tmp_path / "big").mkdir()
    small, _ = await walks_of_the_client_list(tmp_path / "small", 40, monkeypatch)
    big, ticks = await walks_of_the_client_list(tmp_path / "big", 400, monkeypatch)
    assert small == big, f"{small} walks for 40 playouts, {big} for 400"
    assert ticks > 0, "the loop ran on while the big show loaded"


async def test_a_failure_while_the_new_version_is_applied_is_a_show_error(running: Running):
    """A module type made once at check and failing when the director makes it for real
    (a vendor SDK that allows one instance): said as a show.error; the watch goes on."""
    probe = running.folder / "modules" / "probe.py"
    once = PROBE.replace(
        "class Probe(Module):\n",
        "class Probe(Module):\n    made = 0\n\n    def __init__(self, *args, **kwargs):\n"
        "        super().__init__(*args, **kwargs)\n        Probe.made += 1\n"
        "        if Probe.made > 1:\n            raise RuntimeError('one instance only')\n\n",
    )
    message = await saved_and_refused(running, lambda: probe.write_text(once))
    assert "error: applying the new version failed: RuntimeError: one instance only" in message
    await saved_and_reloaded(running, lambda: probe.write_text(PROBE.replace('"v1"', '"v2"')))
    assert (await running.director.app.run_action("Probe.Say")).result == "v2"


async def test_a_watch_that_fails_is_an_alarm_and_is_tried_again(tmp_path, monkeypatch):
    """The system refuses the watch (out of inotify watches, the folder unmounted): said once,
    tried again every second, and edits are live again as soon as it works."""
    from pxcontrol import reload as reload_module

    real = reload_module.awatch
    refusals = iter([OSError(28, "inotify watch limit reached")])

    def flaky_awatch(*args, **kwargs):
        refusal = next(refusals, None)
        if refusal is not None:
            raise refusal
        return real(*args, **kwargs)

    monkeypatch.setattr(reload_module, "awatch", flaky_awatch)
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "probe.py").write_text(PROBE)
    (tmp_path / "show.toml").write_text(show_text("v1", 9))
    director = Director(
        load_show(tmp_path / "show.toml"), tmp_path / "state", osc_port=0, http_port=0
    )
    await director.start()
    try:
        watcher = director.watch()
        alarm = await async_wait_for(
            lambda: [e for e in director.app.events if e.fields.get("alarm") == "director fault"],
            what="the alarm",
        )
        assert "cannot watch" in alarm[0].fields["message"]
        assert "inotify watch limit reached" in alarm[0].fields["message"]
        await asyncio.wait_for(watcher.ready.wait(), 10)  # tried again, and watching
        (tmp_path / "show.toml").write_text(show_text("v2", 9))
        await async_wait_for(
            lambda: [e for e in director.app.events if e.kind == "show.reloaded"],
            what="the edit picked up",
        )
    finally:
        await director.stop()
