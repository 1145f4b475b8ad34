"""The backup manager driven directly: client states we set, events we record, a real sqlite file."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pxcontrol.backup import BackupManager, Decision
from pxcontrol.detection import ClientState, Detector, Guard, Timing
from pxcontrol.events import Event
from pxcontrol.heartbeat import FailedCheck
from pxcontrol.show import ShowFile
from pxcontrol.state import SavedState, StateStore

PLAYOUT1 = {
    "name": "Playout1",
    "ip": "10.0.0.11",
    "outputs": ["Output 1", "Output 2", "Output 3"],  # Output 3 has no counterpart on Backup1
    "live_inputs": ["Cam 1", "Cam 9"],  # Cam 9 has no counterpart on Backup1
}
PLAYOUT2 = {"name": "Playout2", "ip": "10.0.0.12", "outputs": ["Output 1"]}
BACKUP1 = {
    "name": "Backup1",
    "ip": "10.0.0.21",
    "outputs": ["Output 1", "Output 2"],
    "live_inputs": ["Cam 1"],
    "backup_for": ["10.0.0.11", "10.0.0.12"],
}
SPARE = {"name": "Spare", "ip": "10.0.0.30", "outputs": ["Output 1"]}  # backs up nobody
BACKUP2 = {
    "name": "Backup2",
    "ip": "10.0.0.22",
    "outputs": ["Output 1"],
    "backup_for": ["10.0.0.11"],
}


def make_show(*clients: dict[str, Any]) -> ShowFile:
    return ShowFile.model_validate(
        {"clients": list(clients or (PLAYOUT1, PLAYOUT2, BACKUP1, SPARE))}
    )


class Rig:
    """A BackupManager with client states we control and every emit and announce recorded."""

    def __init__(self, show: ShowFile, saved: SavedState, store: StateStore | None) -> None:
        self.show = show
        self.states = {c.name: ClientState.ONLINE for c in show.clients}
        self.emitted: list[tuple[str, dict[str, Any]]] = []
        self.announced: list[tuple[int, dict | None]] = []
        self.failed: dict[str, FailedCheck] = {}  # what the agents of FAILED clients said
        self.gpu_mismatch: dict[str, str] = {}
        self.backup = BackupManager(
            show,
            saved,
            store,
            lambda n: self.states[n],
            self.emit,
            self.announce,
            failed_of=self.failed.get,
            gpu_mismatch_of=self.gpu_mismatch.get,
        )

    def fail(self, name: str, check: str = "process mpv", message: str = "exited") -> None:
        self.states[name] = ClientState.FAILED
        self.failed[name] = FailedCheck(check=check, message=message)

    def recover(self, name: str) -> None:
        self.states[name] = ClientState.ONLINE
        del self.failed[name]

    def emit(self, kind: str, fields: dict[str, Any] | None = None, **more: Any) -> None:
        # BackupManager calls both emit(kind, {...}) and emit(kind, key=value, ...)
        self.emitted.append((kind, {**(fields or {}), **more}))

    def announce(self, epoch: int, event: dict | None) -> None:
        self.announced.append((epoch, event))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [fields for k, fields in self.emitted if k == kind]

    def kinds(self) -> list[str]:
        return [k for k, _ in self.emitted]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[StateStore]:
    store = StateStore(tmp_path / "state.sqlite")
    yield store
    await store.close()


@pytest.fixture
async def rig(store: StateStore) -> Rig:
    saved = await store.open()
    return Rig(make_show(), saved, store)


def assert_refused(rig: Rig, decision: Decision, reason: str, client: str) -> dict[str, Any]:
    """A refused takeover: no epoch, no placement change, nothing announced, backup.failed."""
    assert not decision.ok
    assert rig.backup.epoch == 0
    assert decision.epoch == 0
    assert rig.backup.placement == {"Playout1": "Playout1", "Playout2": "Playout2"}
    assert rig.announced == []
    assert "backup.activated" not in rig.kinds()
    (failed,) = rig.of("backup.failed")
    assert failed["reason"] == reason
    assert failed["client"] == client
    assert failed["message"] == decision.message
    return failed


# --- takeover ---


async def test_takeover_moves_the_placement_to_the_backup_and_bumps_the_epoch(rig: Rig):
    decision = await rig.backup.takeover("Playout1", "manual", by="operator")
    assert decision.ok and decision.epoch == 1
    assert rig.backup.epoch == 1
    assert rig.backup.placement == {"Playout1": "Backup1", "Playout2": "Playout2"}
    assert rig.backup.plays_on("Playout1") == "Backup1"
    assert rig.backup.carrying("Backup1") == "Playout1"


async def test_takeover_emits_backup_activated_with_only_same_named_outputs(rig: Rig):
    await rig.backup.takeover("Playout1", "osc", by="10.0.0.99")
    (activated,) = rig.of("backup.activated")
    assert activated["client"] == "Playout1"
    assert activated["backup"] == "Backup1"
    assert activated["outputs"] == ["Output 1", "Output 2"]
    assert activated["live_inputs"] == ["Cam 1"]
    assert activated["reason"] == "osc"
    assert activated["by"] == "10.0.0.99"
    assert activated["epoch"] == 1


async def test_takeover_lists_unmatched_names_and_raises_an_alarm_for_them(rig: Rig):
    await rig.backup.takeover("Playout1", "manual")
    (activated,) = rig.of("backup.activated")
    assert activated["unmatched"] == ["Output 3", "Cam 9"]
    (alarm,) = rig.of("alarm")
    assert alarm["client"] == "Playout1"
    assert "Output 3" in alarm["message"] and "Cam 9" in alarm["message"]
    assert "Backup1" in alarm["message"]
    assert rig.kinds() == ["backup.activated", "alarm"]


async def test_takeover_with_every_name_matched_raises_no_alarm(rig: Rig):
    await rig.backup.takeover("Playout2", "manual")
    (activated,) = rig.of("backup.activated")
    assert activated["outputs"] == ["Output 1"] and activated["unmatched"] == []
    assert rig.of("alarm") == []


async def test_announce_receives_the_new_epoch_and_the_event(rig: Rig):
    await rig.backup.takeover("Playout1", "web")
    ((epoch, event),) = rig.announced
    assert epoch == 1
    assert event == rig.of("backup.activated")[0]


async def test_an_async_announce_is_awaited_after_the_decision_is_on_disk(tmp_path: Path):
    store = StateStore(tmp_path / "state.sqlite")
    saved = await store.open()
    on_disk_when_announced: list[tuple[int, dict[str, str]]] = []

    async def announce(epoch: int, event: dict | None) -> None:
        await asyncio.sleep(0)
        with sqlite3.connect(store.path) as db:
            placement = dict(db.execute("SELECT client, plays_on FROM placement"))
            (disk_epoch,) = db.execute("SELECT value FROM settings WHERE key='epoch'").fetchone()
        on_disk_when_announced.append((int(disk_epoch), placement))

    show = make_show()
    manager = BackupManager(
        show, saved, store, lambda n: ClientState.ONLINE, lambda *a, **k: None, announce
    )
    try:
        assert (await manager.takeover("Playout1", "manual")).ok
    finally:
        await store.close()
    assert on_disk_when_announced == [(1, {"Playout1": "Backup1", "Playout2": "Playout2"})]


async def test_the_event_is_announced_before_it_is_emitted(store: StateStore):
    saved = await store.open()
    order: list[str] = []
    manager = BackupManager(
        make_show(),
        saved,
        store,
        lambda n: ClientState.ONLINE,
        lambda kind, *a, **k: order.append(kind),
        lambda epoch, event: order.append("announce"),
    )
    await manager.takeover("Playout2", "manual")
    assert order == ["announce", "backup.activated"]


# --- refused takeovers ---


@pytest.mark.parametrize(
    ("state", "refusal"), [(ClientState.OFFLINE, "backup offline"), (ClientState.DRY, "backup dry")]
)
async def test_takeover_is_refused_while_the_backup_is_not_online(
    rig: Rig, state: ClientState, refusal: str
):
    rig.states["Backup1"] = state
    decision = await rig.backup.takeover("Playout1", "manual")
    assert_refused(rig, decision, refusal, "Playout1")
    assert "Backup1" in decision.message and str(state) in decision.message
    (failed,) = rig.of("backup.failed")
    assert failed["refusal"] == failed["reason"] == refusal  # the code, named for what it is


async def test_takeover_is_refused_backup_busy_while_it_carries_another_playout(rig: Rig):
    assert (await rig.backup.takeover("Playout1", "manual")).ok
    rig.emitted.clear()
    decision = await rig.backup.takeover("Playout2", "manual")
    assert not decision.ok and decision.epoch == 1
    assert rig.backup.epoch == 1
    assert rig.backup.placement == {"Playout1": "Backup1", "Playout2": "Playout2"}
    (failed,) = rig.of("backup.failed")
    assert failed["reason"] == "backup busy" and failed["client"] == "Playout2"
    assert "Playout1" in decision.message
    # The operator who asked is answered (and it is logged): no alarm for everyone.
    assert rig.of("alarm") == []
    assert len(rig.announced) == 1


async def test_takeover_is_refused_names_mismatch_and_nothing_transfers(store: StateStore):
    saved = await store.open()
    wall = {"name": "Playout1", "ip": "10.0.0.11", "outputs": ["LED Wall"], "live_inputs": ["X"]}
    rig = Rig(make_show(wall, PLAYOUT2, BACKUP1), saved, store)
    decision = await rig.backup.takeover("Playout1", "manual")
    assert_refused(rig, decision, "names mismatch", "Playout1")
    assert "Backup1" in decision.message


async def test_takeover_is_refused_for_a_client_without_backup(rig: Rig):
    decision = await rig.backup.takeover("Spare", "manual")
    assert_refused(rig, decision, "no backup", "Spare")


async def test_takeover_of_a_backup_client_itself_is_refused_no_backup(rig: Rig):
    decision = await rig.backup.takeover("Backup1", "manual")
    assert_refused(rig, decision, "no backup", "Backup1")


async def test_takeover_of_an_unknown_client_names_the_known_clients(rig: Rig):
    decision = await rig.backup.takeover("Playout9", "osc")
    assert_refused(rig, decision, "unknown client", "Playout9")
    assert "Playout9" in decision.message
    for name in ("Playout1", "Playout2", "Backup1", "Spare"):
        assert name in decision.message


async def test_takeover_is_refused_when_already_taken_over(rig: Rig):
    assert (await rig.backup.takeover("Playout1", "manual")).ok
    rig.emitted.clear()
    decision = await rig.backup.takeover("Playout1", "manual")
    assert not decision.ok and decision.epoch == 1
    assert rig.backup.epoch == 1 and rig.backup.plays_on("Playout1") == "Backup1"
    (failed,) = rig.of("backup.failed")
    assert failed["reason"] == "already taken over"
    assert rig.of("alarm") == []


async def test_a_refused_takeover_is_not_written_to_disk(rig: Rig, store: StateStore):
    rig.states["Backup1"] = ClientState.OFFLINE
    await rig.backup.takeover("Playout1", "manual")
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT * FROM placement").fetchall() == []


async def test_with_two_backups_the_first_online_one_takes_over(store: StateStore):
    saved = await store.open()
    rig = Rig(make_show(PLAYOUT1, BACKUP1, BACKUP2), saved, store)
    rig.states["Backup1"] = ClientState.OFFLINE
    decision = await rig.backup.takeover("Playout1", "manual")
    assert decision.ok
    assert rig.backup.plays_on("Playout1") == "Backup2"
    assert rig.of("backup.activated")[0]["outputs"] == ["Output 1"]


async def test_why_not_takeover_explains_a_refusal_without_deciding(rig: Rig):
    assert rig.backup.why_not_takeover("Playout1") is None
    rig.states["Backup1"] = ClientState.OFFLINE
    assert "Backup1" in (rig.backup.why_not_takeover("Playout1") or "")
    assert "has no backup" in (rig.backup.why_not_takeover("Spare") or "")
    assert rig.emitted == [] and rig.backup.epoch == 0


# --- move to ---


async def test_move_to_defaults_to_home(rig: Rig):
    await rig.backup.takeover("Playout1", "manual")
    decision = await rig.backup.move_to("Playout1", None, "web", by="operator")
    assert decision.ok and decision.epoch == 2
    assert rig.backup.plays_on("Playout1") == "Playout1"
    assert rig.backup.carrying("Backup1") is None
    (moved,) = rig.of("backup.moved")
    assert moved["client"] == "Playout1"
    assert moved["from"] == "Backup1" and moved["to"] == "Playout1"
    assert moved["outputs"] == ["Output 1", "Output 2", "Output 3", "Cam 1", "Cam 9"]
    assert moved["reason"] == "web" and moved["by"] == "operator" and moved["epoch"] == 2


async def test_move_to_a_backup_from_home_is_a_takeover_onto_that_backup(rig: Rig):
    decision = await rig.backup.move_to("Playout1", "Backup1", "osc", by="osc udp 10.0.0.40:9")
    assert decision.ok and decision.epoch == 1
    assert decision.message == "Playout1 is on Backup1"
    assert rig.backup.plays_on("Playout1") == "Backup1"
    # The same event as a switch: on_backup and the router's mappings run.
    (activated,) = rig.of("backup.activated")
    assert activated["backup"] == "Backup1" and activated["reason"] == "osc"
    assert activated["outputs"] + activated["live_inputs"] == ["Output 1", "Output 2", "Cam 1"]
    assert rig.of("backup.moved") == []


async def test_move_between_two_backups(store: StateStore):
    saved = await store.open()
    rig = Rig(make_show(PLAYOUT1, BACKUP1, BACKUP2), saved, store)
    await rig.backup.takeover("Playout1", "manual")
    decision = await rig.backup.move_to("Playout1", "Backup2", "manual")
    assert decision.ok and rig.backup.epoch == 2
    (moved,) = rig.of("backup.moved")
    assert (moved["from"], moved["to"], moved["outputs"]) == ("Backup1", "Backup2", ["Output 1"])


async def test_every_successful_move_bumps_the_epoch_and_is_announced(rig: Rig):
    await rig.backup.move_to("Playout1", "Backup1", "manual")
    await rig.backup.move_to("Playout1", None, "manual")
    await rig.backup.move_to("Playout2", "Backup1", "manual")
    assert rig.backup.epoch == 3
    assert [epoch for epoch, _ in rig.announced] == [1, 2, 3]
    assert [e.get("to", e.get("backup")) for _, e in rig.announced] == [
        "Backup1",
        "Playout1",
        "Backup1",
    ]


def assert_move_refused(rig: Rig, decision: Decision, reason: str, epoch: int) -> None:
    assert not decision.ok
    assert rig.backup.epoch == epoch and decision.epoch == epoch
    (failed,) = rig.of("backup.failed")
    assert failed["reason"] == reason
    assert failed["action"] == "move"
    assert failed["message"] == decision.message
    assert rig.of("backup.moved") == []


async def test_move_home_is_refused_while_the_playout_is_offline(rig: Rig):
    await rig.backup.takeover("Playout1", "auto")
    rig.emitted.clear()
    rig.states["Playout1"] = ClientState.OFFLINE
    decision = await rig.backup.move_to("Playout1", None, "web")
    assert_move_refused(rig, decision, "target offline", epoch=1)
    assert rig.backup.plays_on("Playout1") == "Backup1"


async def test_move_to_a_client_that_is_not_its_backup_is_refused(rig: Rig):
    decision = await rig.backup.move_to("Playout1", "Spare", "osc")
    assert_move_refused(rig, decision, "not a backup", epoch=0)
    assert rig.backup.plays_on("Playout1") == "Playout1"


async def test_move_to_a_busy_backup_is_refused(rig: Rig):
    await rig.backup.takeover("Playout1", "manual")
    rig.emitted.clear()
    decision = await rig.backup.move_to("Playout2", "Backup1", "osc")
    assert_move_refused(rig, decision, "backup busy", epoch=1)
    assert "Playout1" in decision.message
    assert rig.backup.plays_on("Playout2") == "Playout2"


async def test_move_to_where_it_already_plays_is_refused(rig: Rig):
    decision = await rig.backup.move_to("Playout1", None, "osc")
    assert_move_refused(rig, decision, "already there", epoch=0)


async def test_move_to_an_offline_backup_is_refused(rig: Rig):
    rig.states["Backup1"] = ClientState.DRY
    decision = await rig.backup.move_to("Playout1", "Backup1", "osc")
    assert_move_refused(rig, decision, "target offline", epoch=0)


async def test_move_of_a_client_without_backup_is_refused(rig: Rig):
    decision = await rig.backup.move_to("Spare", "Backup1", "osc")
    assert_move_refused(rig, decision, "no backup", epoch=0)


async def test_move_to_an_unknown_target_is_refused(rig: Rig):
    decision = await rig.backup.move_to("Playout1", "Nowhere", "osc")
    assert_move_refused(rig, decision, "unknown client", epoch=0)
    assert "Nowhere" in decision.message


# --- automatic backup ---


def auto_show(backup_auto: bool, playout_auto: bool | None = None) -> ShowFile:
    playout = dict(PLAYOUT1)
    if playout_auto is not None:
        playout["auto_backup"] = playout_auto
    return make_show(playout, PLAYOUT2, {**BACKUP1, "auto_backup": backup_auto}, SPARE)


def test_auto_is_enabled_by_the_backups_auto_backup():
    on = BackupManager(auto_show(True), SavedState(), None, lambda n: ClientState.ONLINE, print)
    off = BackupManager(auto_show(False), SavedState(), None, lambda n: ClientState.ONLINE, print)
    assert on.auto_enabled("Playout1") and on.auto_enabled("Playout2")
    assert not off.auto_enabled("Playout1")


@pytest.mark.parametrize("backup_auto", [True, False])
def test_the_playouts_explicit_auto_backup_overrides_the_backups(backup_auto: bool):
    for playout_auto in (True, False):
        show = auto_show(backup_auto, playout_auto)
        manager = BackupManager(show, SavedState(), None, lambda n: ClientState.ONLINE, print)
        assert manager.auto_enabled("Playout1") is playout_auto
        assert manager.auto_enabled("Playout2") is backup_auto  # not set on Playout2


async def test_set_auto_overrides_the_show_and_is_an_event(store: StateStore):
    saved = await store.open()
    rig = Rig(auto_show(False, playout_auto=False), saved, store)
    decision = await rig.backup.set_auto("Playout1", True, "osc", by="console")
    assert decision.ok and "on" in decision.message
    assert rig.backup.auto_enabled("Playout1")
    assert rig.of("backup.auto") == [
        {"client": "Playout1", "on": True, "reason": "osc", "by": "console"}
    ]
    await rig.backup.set_auto("Playout1", False, "web")
    assert not rig.backup.auto_enabled("Playout1")
    assert rig.backup.epoch == 0  # switching automatic backup is not a placement decision


async def test_set_auto_is_refused_for_a_client_without_backup_or_unknown(rig: Rig):
    assert not (await rig.backup.set_auto("Spare", True, "osc")).ok
    assert not (await rig.backup.set_auto("Nobody", True, "osc")).ok
    assert rig.backup.auto_override == {}
    assert rig.emitted == []


def auto_rig(saved: SavedState, store: StateStore, backup_auto: bool) -> Rig:
    return Rig(auto_show(backup_auto), saved, store)


async def test_client_offline_takes_over_when_auto_is_enabled(store: StateStore):
    rig = auto_rig(await store.open(), store, backup_auto=True)
    rig.states["Playout1"] = ClientState.OFFLINE
    await rig.backup.client_offline("Playout1")
    assert rig.backup.plays_on("Playout1") == "Backup1" and rig.backup.epoch == 1
    (activated,) = rig.of("backup.activated")
    assert activated["reason"] == "auto" and activated["by"] == "detector"


async def test_client_offline_does_nothing_when_auto_is_off(store: StateStore):
    rig = auto_rig(await store.open(), store, backup_auto=False)
    await rig.backup.client_offline("Playout1")
    assert rig.backup.epoch == 0 and rig.emitted == [] and rig.announced == []


async def test_client_offline_follows_the_operators_auto_switch(store: StateStore):
    rig = auto_rig(await store.open(), store, backup_auto=False)
    await rig.backup.set_auto("Playout1", True, "web")
    await rig.backup.client_offline("Playout1")
    assert rig.backup.plays_on("Playout1") == "Backup1"


def real_mass_failure_guard() -> Guard:
    """The guard the real detector gives when three of four clients drop at once."""
    detector = Detector.for_clients(
        Timing(heartbeat_interval=0.1, offline_after=0.5, online_after=3.0, mass_failure_guard=0.5),
        ["Playout1", "Playout2", "Backup1", "Spare"],
    )
    for step in range(32):
        for name in detector.clients:
            detector.heard(name, step / 10)
    changes = []
    for tick in range(1, 400):
        now = 3.1 + tick / 200
        if tick % 20 == 0:
            detector.heard("Spare", now)
        changes += detector.check(now)
    offline = [c for c in changes if c.kind == "offline" and c.client == "Playout1"]
    assert offline and offline[0].guard is not None
    return offline[0].guard


async def test_mass_failure_guard_refuses_the_automatic_takeover(store: StateStore):
    rig = auto_rig(await store.open(), store, backup_auto=True)
    await rig.backup.client_offline("Playout1", real_mass_failure_guard())
    assert rig.backup.epoch == 0 and rig.backup.plays_on("Playout1") == "Playout1"
    assert rig.announced == [] and rig.of("backup.activated") == []
    (failed,) = rig.of("backup.failed")
    assert failed["reason"] == "mass failure guard"
    assert failed["client"] == "Playout1" and failed["trigger"] == "auto"


async def test_startup_guard_refuses_the_automatic_takeover(store: StateStore):
    rig = auto_rig(await store.open(), store, backup_auto=True)
    why = "startup guard: not seen online since the director started"
    await rig.backup.client_offline("Playout1", Guard("startup guard", why))
    assert rig.backup.epoch == 0 and rig.of("backup.activated") == []
    (failed,) = rig.of("backup.failed")
    assert failed["reason"] == "startup guard"
    assert why in failed["message"]


async def test_a_guarded_offline_without_auto_reports_nothing(store: StateStore):
    rig = auto_rig(await store.open(), store, backup_auto=False)
    await rig.backup.client_offline("Playout1", Guard("mass failure guard", "many at once"))
    assert rig.emitted == []


async def test_an_automatic_takeover_to_an_offline_backup_fails_with_the_reason(
    store: StateStore,
):
    rig = auto_rig(await store.open(), store, backup_auto=True)
    rig.states["Backup1"] = ClientState.OFFLINE
    await rig.backup.client_offline("Playout1")
    (failed,) = rig.of("backup.failed")
    assert failed["reason"] == "backup offline" and failed["trigger"] == "auto"
    assert rig.backup.epoch == 0


async def test_a_backup_going_offline_while_carrying_a_playout_raises_an_alarm(rig: Rig):
    await rig.backup.takeover("Playout1", "manual")
    rig.emitted.clear()
    rig.states["Backup1"] = ClientState.OFFLINE
    await rig.backup.client_offline("Backup1")
    (alarm,) = rig.of("alarm")
    assert alarm["client"] == "Backup1"
    assert "Playout1" in alarm["message"]
    assert rig.kinds() == ["alarm"]
    assert rig.backup.epoch == 1  # nothing is decided for it


async def test_an_idle_backup_going_offline_raises_no_alarm(rig: Rig):
    await rig.backup.client_offline("Backup1")
    assert rig.emitted == []


async def test_client_offline_after_a_takeover_does_not_take_over_again(store: StateStore):
    rig = auto_rig(await store.open(), store, backup_auto=True)
    await rig.backup.takeover("Playout1", "manual")
    rig.emitted.clear()
    await rig.backup.client_offline("Playout1")
    assert rig.emitted == [] and rig.backup.epoch == 1


async def test_client_offline_of_an_unknown_client_is_ignored(rig: Rig):
    await rig.backup.client_offline("Ghost")
    assert rig.emitted == []


# --- state that survives a restart ---


async def test_a_takeover_and_an_auto_switch_survive_a_restart(tmp_path: Path):
    path = tmp_path / "state.sqlite"
    first = StateStore(path)
    rig = Rig(make_show(), await first.open(), first)
    await rig.backup.takeover("Playout1", "manual")
    await rig.backup.set_auto("Playout2", True, "web")
    await first.close()

    second = StateStore(path)
    saved = await second.open()
    try:
        restarted = Rig(make_show(), saved, second)
    finally:
        await second.close()
    assert saved.epoch == 1
    assert restarted.backup.epoch == 1
    assert restarted.backup.placement == {"Playout1": "Backup1", "Playout2": "Playout2"}
    assert restarted.backup.carrying("Backup1") == "Playout1"
    assert restarted.backup.auto_override == {"Playout2": True}
    assert restarted.backup.auto_enabled("Playout2")


async def test_a_restored_takeover_still_refuses_a_second_takeover(tmp_path: Path):
    path = tmp_path / "state.sqlite"
    first = StateStore(path)
    rig = Rig(make_show(), await first.open(), first)
    await rig.backup.takeover("Playout1", "manual")
    await first.close()

    second = StateStore(path)
    try:
        restarted = Rig(make_show(), await second.open(), second)
        decision = await restarted.backup.takeover("Playout2", "manual")
        assert not decision.ok and restarted.of("backup.failed")[0]["reason"] == "backup busy"
        moved = await restarted.backup.move_to("Playout1", None, "manual")
        assert moved.ok and moved.epoch == 2
    finally:
        await second.close()


async def test_a_move_back_survives_a_restart(tmp_path: Path):
    path = tmp_path / "state.sqlite"
    first = StateStore(path)
    rig = Rig(make_show(), await first.open(), first)
    await rig.backup.takeover("Playout1", "manual")
    await rig.backup.move_to("Playout1", None, "manual")
    await first.close()

    second = StateStore(path)
    try:
        saved = await second.open()
    finally:
        await second.close()
    restarted = Rig(make_show(), saved, None)
    assert restarted.backup.epoch == 2
    assert restarted.backup.plays_on("Playout1") == "Playout1"


async def test_a_saved_placement_for_a_client_no_longer_in_the_show_is_dropped():
    saved = SavedState(epoch=4, placement={"Playout1": "Backup1", "Gone": "Backup1"})
    rig = Rig(make_show(), saved, None)
    assert rig.backup.placement == {"Playout1": "Backup1", "Playout2": "Playout2"}
    assert rig.backup.epoch == 4


async def test_a_fresh_state_file_is_empty(store: StateStore):
    saved = await store.open()
    assert saved == SavedState()


async def test_events_come_back_from_open_in_order_with_their_seq(tmp_path: Path):
    path = tmp_path / "state.sqlite"
    first = StateStore(path)
    await first.open()
    written = [
        Event("client.online", {"client": "Playout1", "ip": "10.0.0.11"}, time=100.0, seq=1),
        Event("backup.activated", {"client": "Playout1", "outputs": ["Output 1"]}, 101.5, 2),
        Event("client.offline", {"client": "Backup1"}, time=102.0, seq=3),
    ]
    for event in written:
        first.append(event)
    await first.close()

    second = StateStore(path)
    try:
        saved = await second.open()
    finally:
        await second.close()
    assert saved.events == written


async def test_open_returns_only_the_most_recent_events_oldest_first(tmp_path: Path):
    path = tmp_path / "state.sqlite"
    first = StateStore(path)
    await first.open()
    for n in range(1, 11):
        first.append(Event("x", {"n": n}, 1.0, n))
    await first.close()

    second = StateStore(path)
    try:
        saved = await second.open(recent_events=3)
    finally:
        await second.close()
    assert [e.seq for e in saved.events] == [8, 9, 10]
    assert [e.fields["n"] for e in saved.events] == [8, 9, 10]


# --- decisions are serialised ---


async def test_two_concurrent_takeovers_on_one_backup_one_wins_one_is_busy(rig: Rig):
    first, second = await asyncio.gather(
        rig.backup.takeover("Playout1", "osc"), rig.backup.takeover("Playout2", "web")
    )
    assert [first.ok, second.ok].count(True) == 1
    assert rig.backup.epoch == 1
    (activated,) = rig.of("backup.activated")
    (failed,) = rig.of("backup.failed")
    assert failed["reason"] == "backup busy"
    assert {activated["client"], failed["client"]} == {"Playout1", "Playout2"}
    assert rig.backup.carrying("Backup1") == activated["client"]


async def test_many_concurrent_takeovers_of_one_playout_decide_once(rig: Rig):
    decisions = await asyncio.gather(*(rig.backup.takeover("Playout1", "osc") for _ in range(20)))
    assert [d.ok for d in decisions].count(True) == 1
    assert rig.backup.epoch == 1 and len(rig.announced) == 1
    assert {f["reason"] for f in rig.of("backup.failed")} == {"already taken over"}


async def test_concurrent_takeover_and_move_back_leave_a_consistent_epoch(rig: Rig):
    await asyncio.gather(
        rig.backup.takeover("Playout1", "osc"), rig.backup.move_to("Playout1", None, "web")
    )
    # serialised: takeover first (epoch 1), then the move home (epoch 2)
    assert rig.backup.epoch == 2
    assert [epoch for epoch, _ in rig.announced] == [1, 2]
    assert rig.backup.plays_on("Playout1") == "Playout1"


async def test_concurrent_decisions_are_announced_and_emitted_in_epoch_order(store: StateStore):
    # An announce that yields (a network send) must not let a later decision overtake it.
    saved = await store.open()
    emitted: list[tuple[str, int]] = []
    announced: list[int] = []

    async def announce(epoch: int, event: dict | None) -> None:
        for _ in range(3):
            await asyncio.sleep(0)
        announced.append(epoch)

    def emit(kind: str, fields: dict | None = None, **more: object) -> None:
        if kind.startswith("backup."):
            emitted.append((kind, {**(fields or {}), **more}["epoch"]))

    manager = BackupManager(make_show(), saved, store, lambda n: ClientState.ONLINE, emit, announce)
    await asyncio.gather(
        manager.takeover("Playout1", "osc"),
        manager.move_to("Playout1", None, "web"),
        manager.takeover("Playout2", "osc"),
    )
    assert announced == [1, 2, 3]
    assert emitted == [("backup.activated", 1), ("backup.moved", 2), ("backup.activated", 3)]


# --- what each agent plays ---


async def test_plays_before_any_takeover(rig: Rig):
    assert rig.backup.plays("Playout1") == {
        "Playout1": ["Output 1", "Output 2", "Output 3", "Cam 1", "Cam 9"]
    }
    assert rig.backup.plays("Playout2") == {"Playout2": ["Output 1"]}
    assert rig.backup.plays("Backup1") == {}
    assert rig.backup.plays("Spare") == {"Spare": ["Output 1"]}
    assert rig.backup.plays("Unknown") == {}


async def test_plays_after_a_takeover(rig: Rig):
    await rig.backup.takeover("Playout1", "manual")
    assert rig.backup.plays("Playout1") == {}
    assert rig.backup.plays("Backup1") == {"Playout1": ["Output 1", "Output 2", "Cam 1"]}
    assert rig.backup.plays("Playout2") == {"Playout2": ["Output 1"]}


async def test_plays_after_a_move_home(rig: Rig):
    await rig.backup.takeover("Playout2", "manual")
    assert rig.backup.plays("Backup1") == {"Playout2": ["Output 1"]}
    assert rig.backup.plays("Playout2") == {}
    await rig.backup.move_to("Playout2", None, "manual")
    assert rig.backup.plays("Backup1") == {}
    assert rig.backup.plays("Playout2") == {"Playout2": ["Output 1"]}


async def test_plays_after_a_move_between_backups(store: StateStore):
    rig = Rig(make_show(PLAYOUT1, BACKUP1, BACKUP2), await store.open(), store)
    await rig.backup.takeover("Playout1", "manual")
    await rig.backup.move_to("Playout1", "Backup2", "manual")
    assert rig.backup.plays("Backup1") == {}
    assert rig.backup.plays("Backup2") == {"Playout1": ["Output 1"]}
    assert rig.backup.plays("Playout1") == {}


async def test_a_move_from_home_that_leaves_outputs_behind_raises_the_names_alarm(
    store: StateStore,
):
    saved = await store.open()
    rig = Rig(make_show(PLAYOUT1, BACKUP1, BACKUP2), saved, store)
    decision = await rig.backup.move_to("Playout1", "Backup2", "web")
    assert decision.ok
    (activated,) = rig.of("backup.activated")
    assert activated["outputs"] == ["Output 1"] and activated["unmatched"]
    (alarm,) = rig.of("alarm")
    assert alarm["alarm"] == "names mismatch"


async def test_an_automatic_takeover_refused_as_busy_goes_when_the_backup_is_freed(rig: Rig):
    rig.backup.auto_override["Playout1"] = True
    assert (await rig.backup.takeover("Playout2", "manual")).ok  # Backup1 carries Playout2
    rig.states["Playout1"] = ClientState.OFFLINE
    await rig.backup.client_offline("Playout1")
    assert [f["reason"] for f in rig.of("backup.failed")] == ["backup busy"]
    assert rig.backup.waiting == {"Playout1"}
    await rig.backup.retry_waiting()  # nothing freed yet: no second refusal
    assert len(rig.of("backup.failed")) == 1 and rig.backup.plays_on("Playout1") == "Playout1"
    assert (await rig.backup.move_to("Playout2", None, "manual")).ok  # Backup1 is free
    await rig.backup.retry_waiting()
    assert rig.backup.plays_on("Playout1") == "Backup1" and rig.backup.waiting == set()
    assert rig.of("backup.activated")[-1]["reason"] == "auto"


async def test_a_waiting_client_that_comes_back_is_not_taken_over(rig: Rig):
    rig.backup.auto_override["Playout1"] = True
    rig.states["Backup1"] = ClientState.OFFLINE
    rig.states["Playout1"] = ClientState.OFFLINE
    await rig.backup.client_offline("Playout1")
    assert rig.backup.waiting == {"Playout1"}
    rig.states["Playout1"] = ClientState.ONLINE  # it recovered before its backup did
    rig.states["Backup1"] = ClientState.ONLINE
    await rig.backup.retry_waiting()
    assert rig.backup.plays_on("Playout1") == "Playout1" and rig.backup.waiting == set()


# --- health: FAILED clients (their show stopped, their machine runs on) ---


async def test_a_failed_playout_is_taken_over_automatically_like_an_offline_one(
    store: StateStore,
):
    rig = auto_rig(await store.open(), store, backup_auto=True)
    rig.fail("Playout1")
    await rig.backup.client_failed("Playout1")
    assert rig.backup.plays_on("Playout1") == "Backup1" and rig.backup.epoch == 1
    (activated,) = rig.of("backup.activated")
    assert activated["reason"] == "auto" and activated["by"] == "detector"
    await rig.backup.client_failed("Playout1")  # judged again
    assert len(rig.of("backup.activated")) == 1 and rig.backup.epoch == 1


async def test_a_failed_playout_without_auto_is_not_taken_over(store: StateStore):
    rig = auto_rig(await store.open(), store, backup_auto=False)
    rig.fail("Playout1")
    await rig.backup.client_failed("Playout1")
    assert rig.emitted == [] and rig.backup.epoch == 0


async def test_a_playout_that_recovered_before_its_judgement_is_left_alone(store: StateStore):
    rig = auto_rig(await store.open(), store, backup_auto=True)
    rig.fail("Playout1")
    rig.recover("Playout1")
    await rig.backup.client_failed("Playout1")
    assert rig.emitted == [] and rig.backup.epoch == 0


async def test_the_guards_refuse_a_failed_playouts_takeover(store: StateStore):
    rig = auto_rig(await store.open(), store, backup_auto=True)
    rig.fail("Playout1")
    why = "many clients failed their checks at once"
    await rig.backup.client_failed("Playout1", Guard("mass failure guard", why))
    (failed,) = rig.of("backup.failed")
    assert failed["reason"] == "mass failure guard" and rig.backup.epoch == 0


async def test_a_takeover_onto_a_failed_backup_is_refused_with_the_checks_words(rig: Rig):
    rig.fail("Backup1", "process mpv", "exited with signal 9")
    decision = await rig.backup.takeover("Playout1", "manual")
    failed = assert_refused(rig, decision, "backup failed", "Playout1")
    assert decision.reason == "backup failed"
    assert "'process mpv'" in failed["message"] and "exited with signal 9" in failed["message"]
    assert rig.backup.why_not_takeover("Playout1") == decision.message


async def test_a_waiting_takeover_runs_when_the_failed_backup_recovers(store: StateStore):
    rig = auto_rig(await store.open(), store, backup_auto=True)
    rig.fail("Backup1")
    rig.fail("Playout1")
    await rig.backup.client_failed("Playout1")
    assert rig.of("backup.failed")[0]["reason"] == "backup failed"
    assert rig.backup.waiting == {"Playout1"}
    await rig.backup.retry_waiting()  # still failed: waits, no new refusal
    assert len(rig.of("backup.failed")) == 1 and rig.backup.waiting == {"Playout1"}
    rig.recover("Backup1")
    await rig.backup.retry_waiting()
    assert rig.backup.plays_on("Playout1") == "Backup1" and rig.backup.waiting == set()


async def test_a_waiting_failed_playout_that_recovers_stops_waiting(store: StateStore):
    rig = auto_rig(await store.open(), store, backup_auto=True)
    rig.fail("Backup1")
    rig.fail("Playout1")
    await rig.backup.client_failed("Playout1")
    rig.recover("Playout1")
    rig.recover("Backup1")
    await rig.backup.retry_waiting()
    assert rig.backup.plays_on("Playout1") == "Playout1" and rig.backup.waiting == set()


async def test_a_backup_that_fails_while_carrying_outputs_raises_backup_lost(rig: Rig):
    await rig.backup.takeover("Playout1", "manual")
    rig.emitted.clear()
    rig.fail("Backup1", "tcp 127.0.0.1:1400", "connection refused")
    await rig.backup.client_failed("Backup1")
    (alarm,) = rig.of("alarm")
    assert alarm["alarm"] == "backup lost" and alarm["client"] == "Backup1"
    assert "Playout1" in alarm["message"] and "connection refused" in alarm["message"]
    assert rig.kinds() == ["alarm"] and rig.backup.epoch == 1


async def test_a_failed_playout_that_recovers_does_not_move_back(store: StateStore):
    rig = auto_rig(await store.open(), store, backup_auto=True)
    rig.fail("Playout1")
    await rig.backup.client_failed("Playout1")
    rig.recover("Playout1")
    await rig.backup.retry_waiting()
    assert rig.backup.plays_on("Playout1") == "Backup1" and rig.backup.epoch == 1


async def test_outputs_never_move_to_a_failed_client(rig: Rig):
    await rig.backup.takeover("Playout1", "manual")
    rig.fail("Playout1", "figure fps", "fps 0.0 below 50")
    rig.emitted.clear()
    decision = await rig.backup.move_to("Playout1", None, "manual")
    assert not decision.ok and decision.reason == "target failed"
    assert "fps 0.0 below 50" in decision.message
    assert rig.backup.move_targets("Playout1") == []
    assert rig.backup.plays_on("Playout1") == "Backup1"


async def test_a_gpu_mismatch_blocks_a_takeover_onto_the_backup(rig: Rig):
    rig.gpu_mismatch["Backup1"] = (
        "Backup1's agent reports GPU 'RTX 4000', the show declares 'A6000'"
    )
    decision = await rig.backup.takeover("Playout1", "manual")
    failed = assert_refused(rig, decision, "gpu mismatch", "Playout1")
    assert "RTX 4000" in failed["message"]


async def test_a_gpu_mismatch_blocks_a_takeover_from_the_playout(rig: Rig):
    rig.gpu_mismatch["Playout1"] = (
        "Playout1's agent reports GPU 'RTX 4000', the show declares 'A6000'"
    )
    decision = await rig.backup.takeover("Playout1", "manual")
    assert_refused(rig, decision, "gpu mismatch", "Playout1")
    moved = await rig.backup.move_to("Playout1", "Backup1", "manual")
    assert not moved.ok and moved.reason == "gpu mismatch"
    assert (await rig.backup.takeover("Playout2", "manual")).ok  # other clients unaffected
