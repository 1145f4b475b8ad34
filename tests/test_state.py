"""The show's state: one director at a time, damaged files refused, real disk faults met
with a refusal (never a takeover that was not saved), and an event log that never holds
up a decision."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from pxcontrol.backup import BackupManager
from pxcontrol.detection import ClientState
from pxcontrol.events import Event
from pxcontrol.show import ShowFile
from pxcontrol.state import StateInUse, StateStore


async def test_a_second_director_on_the_same_state_is_refused(tmp_path):
    first = StateStore(tmp_path / "state.sqlite")
    await first.open()
    second = StateStore(tmp_path / "state.sqlite")
    with pytest.raises(StateInUse, match=r"another director \(pid \d+\) is running this show"):
        await second.open()
    await second.close()
    await first.close()
    third = StateStore(tmp_path / "state.sqlite")
    await third.open()  # free again once the first has stopped
    await third.close()


# --- a takeover against the state ---

SHOW = ShowFile.model_validate(
    {
        "clients": [
            {"name": "Playout1", "ip": "10.0.0.11", "outputs": ["Output 1"]},
            {
                "name": "Backup1",
                "ip": "10.0.0.21",
                "outputs": ["Output 1"],
                "backup_for": ["10.0.0.11"],
            },
        ]
    }
)


class Manager:
    """A BackupManager on a real store, every client online, every emit and notice kept."""

    def __init__(self, store: StateStore, saved: Any) -> None:
        self.emitted: list[tuple[str, dict[str, Any]]] = []
        self.told: list[int] = []
        self.backup = BackupManager(
            SHOW, saved, store, lambda name: ClientState.ONLINE, self.emit, self.announce
        )

    def emit(self, kind: str, fields: dict | None = None, **more: Any) -> None:
        self.emitted.append((kind, {**(fields or {}), **more}))

    def announce(self, epoch: int, event: dict | None) -> None:
        self.told.append(epoch)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [f for k, f in self.emitted if k == kind]

    async def refused_not_saved(self, because: str) -> str:
        """A takeover now is refused as not saved, and nothing moved or was told."""
        decision = await self.backup.takeover("Playout1", "osc")
        assert not decision.ok and decision.reason == "state not saved"
        assert because in decision.message
        assert self.backup.epoch == 0 and decision.epoch == 0
        assert self.backup.plays_on("Playout1") == "Playout1"  # status: at home
        assert self.backup.carrying("Backup1") is None
        assert self.told == []  # agents were not told
        assert self.of("backup.activated") == []
        (failed,) = self.of("backup.failed")
        assert failed["reason"] == "state not saved" and failed["message"] == decision.message
        (alarm,) = self.of("alarm")
        assert alarm["alarm"] == "state not saved" and alarm["client"] == "Playout1"
        assert alarm["message"] == decision.message
        return decision.message


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real, small filesystem of our own, to fill up."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def fill_up(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


async def test_a_full_disk_refuses_the_takeover_and_rolls_it_back(tmpfs: Path):
    store = StateStore(tmpfs / "state" / "state.sqlite")
    alarms: list[tuple[str, str]] = []
    store.alarm = lambda alarm, message: alarms.append((alarm, message))
    manager = Manager(store, await store.open())
    try:
        filler = fill_up(tmpfs)
        message = await manager.refused_not_saved("disk is full")
        assert "Free space on its disk" in message
        # The event log cannot be written either: said once, counted as shed.
        for seq in range(1, 101):
            store.append(Event("log.entry", {"message": "x" * 1000}, 1.0, seq))
        await store.flush()
        store.append(Event("log.entry", {}, 1.0, 101))
        store.append(Event("log.entry", {}, 1.0, 102))
        await asyncio.sleep(0)
        assert [a for a, _ in alarms] == ["event log not written"]
        assert "full" in alarms[0][1] and store.shed >= 100
        filler.unlink()  # space again: the next takeover is saved and announced
        decision = await manager.backup.takeover("Playout1", "osc")
        assert decision.ok and decision.epoch == 1 and manager.told == [1]
    finally:
        await store.close()
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT plays_on FROM placement").fetchall() == [("Backup1",)]


async def test_a_deleted_state_folder_refuses_the_takeover_and_is_noticed_once(tmp_path: Path):
    store = StateStore(tmp_path / "state" / "state.sqlite")
    alarms: list[tuple[str, str]] = []
    store.alarm = lambda alarm, message: alarms.append((alarm, message))
    manager = Manager(store, await store.open())
    try:
        assert await store.check_files() == ""
        shutil.rmtree(tmp_path / "state")
        message = await manager.refused_not_saved("was deleted while the director runs")
        assert "Restore the state folder" in message
        assert await store.check_files() and await store.check_files()
        assert [a for a, _ in alarms] == ["state folder moved"]  # once, not at every check
        assert str(tmp_path / "state") in alarms[0][1]
    finally:
        await store.close()


async def test_a_replaced_lock_file_is_noticed(tmp_path: Path):
    store = StateStore(tmp_path / "state.sqlite")
    alarms: list[str] = []
    store.alarm = lambda alarm, message: alarms.append(message)
    await store.open()
    try:
        (tmp_path / "state.lock").unlink()
        (tmp_path / "state.lock").write_text("pid 1\n")  # another file by the same name
        assert "state.lock was replaced" in await store.check_files()
        assert len(alarms) == 1
    finally:
        await store.close()


@pytest.fixture
def ext4(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A real ext4 filesystem (a loop device) that turns read-only on an error, as a failing
    disk does; yields its mount point and the file that triggers the error."""
    image, mount = tmp_path / "disk.img", tmp_path / "ext4"
    mount.mkdir()
    subprocess.run(["truncate", "-s", "8M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(image), str(mount)], check=True)
    device = subprocess.run(
        ["findmnt", "-n", "-o", "SOURCE", str(mount)], capture_output=True, text=True, check=True
    ).stdout.strip()
    yield mount, Path("/sys/fs/ext4") / Path(device).name / "trigger_fs_error"
    subprocess.run(["umount", "-l", str(mount)], check=True)


async def test_a_state_folder_turned_read_only_refuses_the_takeover(ext4: tuple[Path, Path]):
    mount, trigger = ext4
    store = StateStore(mount / "state" / "state.sqlite")
    manager = Manager(store, await store.open())
    try:
        trigger.write_text("pxcontrol test\n")  # the kernel remounts it read-only
        await manager.refused_not_saved("could not write")
    finally:
        await store.close()


# --- damaged files are refused at start ---

SHOW_TOML = """
[director]
heartbeat_port = 0
osc_port = 0
http_port = 0
"""


def run_director(folder: Path) -> subprocess.CompletedProcess[str]:
    (folder / "show.toml").write_text(SHOW_TOML)
    return subprocess.run(
        [sys.executable, "-m", "pxcontrol", "run", str(folder), "--state", str(folder / "state")],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "COLUMNS": "400"},
    )


async def saved_state(folder: Path) -> Path:
    store = StateStore(folder / "state" / "state.sqlite")
    manager = Manager(store, await store.open())
    assert (await manager.backup.takeover("Playout1", "osc")).ok
    for seq in range(1, 2001):
        store.append(Event("log.entry", {"message": "x" * 100}, 1.0, seq))
    await store.close()
    return store.path


def truncate(path: Path, keep: float) -> None:
    """Cut a file short, as a crash of a copy or a full disk would."""
    with open(path, "r+b") as file:
        file.truncate(int(os.path.getsize(path) * keep) + 100)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
async def test_a_damaged_state_database_is_refused_at_start_with_the_way_out(tmp_path, damage):
    path = await saved_state(tmp_path)
    if damage == "garbage":
        path.write_bytes(b"this is not a database, it was overwritten " * 100)
    else:
        truncate(path, 0.5)
    finished = run_director(tmp_path)
    output = finished.stdout + finished.stderr
    assert finished.returncode == 1, output
    assert "Traceback" not in output
    assert f"the state file {path} is damaged" in output
    assert f"Move it aside (mv {path} {path}.damaged" in output
    assert "check where outputs really play" in output


async def test_a_damaged_event_log_is_refused_and_says_placement_is_kept(tmp_path):
    path = (await saved_state(tmp_path)).with_name("events.sqlite")
    truncate(path, 1 / 3)
    finished = run_director(tmp_path)
    output = finished.stdout + finished.stderr
    assert finished.returncode == 1 and "Traceback" not in output, output
    assert f"the state file {path} is damaged" in output
    assert "the event log is lost; where outputs play is kept" in output


# --- the event log never holds up a decision ---


@pytest.fixture
async def small_queue(tmp_path: Path) -> AsyncIterator[StateStore]:
    store = StateStore(tmp_path / "state.sqlite", event_limit=1000, event_batch=100)
    yield store
    await store.close()


async def test_a_flood_of_events_never_holds_up_a_takeover_and_is_shed_with_an_alarm(
    small_queue: StateStore,
):
    store = small_queue
    alarms: list[tuple[str, str]] = []
    store.alarm = lambda alarm, message: alarms.append((alarm, message))
    manager = Manager(store, await store.open())
    # Whoever writes the event log next waits: the test holds its file's write lock.
    blocker = sqlite3.connect(store.events_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        for seq in range(1, 50_001):
            store.append(Event("log.entry", {"n": seq}, 1.0, seq))
        assert 900 <= store.queue_depth <= 1000  # bounded (a batch may be stuck in the writer)
        shed = store.shed
        assert shed >= 48_900
        decision = await manager.backup.takeover("Playout1", "osc")
        # Saved and announced while every event queued before it still waits for the disk.
        assert decision.ok and manager.told == [1]
        assert store.queue_depth >= 900
        with sqlite3.connect(store.path) as db:
            assert db.execute("SELECT plays_on FROM placement").fetchall() == [("Backup1",)]
        await asyncio.sleep(0)  # the alarm is raised on the next round of the loop
        assert [a for a, _ in alarms] == ["event log shedding"]
        assert f"{shed} events were not written" in alarms[0][1]
        # What the operator must find in the log has room past the limit.
        for seq, (kind, fields) in enumerate(manager.emitted, 60_000):
            store.append(Event(kind, fields, 2.0, seq))
        assert store.shed == shed
    finally:
        blocker.rollback()
        blocker.close()
    await store.flush()
    assert store.queue_depth == 0
    # The writer caught up: a new flood is a new episode, with an alarm of its own.
    blocker = sqlite3.connect(store.events_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    for seq in range(70_000, 72_000):
        store.append(Event("log.entry", {}, 3.0, seq))
    blocker.rollback()
    blocker.close()
    await asyncio.sleep(0)
    assert [a for a, _ in alarms] == ["event log shedding"] * 2
    with sqlite3.connect(store.events_path) as db:
        kinds = dict(db.execute("SELECT kind, COUNT(*) FROM events GROUP BY kind"))
    assert kinds["backup.activated"] == 1


async def test_events_are_written_in_batches_off_the_decision_path(tmp_path: Path):
    store = StateStore(tmp_path / "state.sqlite")
    await store.open()
    for seq in range(1, 5001):
        store.append(Event("log.entry", {"n": seq}, 1.0, seq))
    await store.flush()
    assert store.queue_depth == 0 and store.shed == 0
    await store.close()
    with sqlite3.connect(tmp_path / "events.sqlite") as db:
        assert db.execute("SELECT COUNT(*), MAX(seq) FROM events").fetchone() == (5000, 5000)
