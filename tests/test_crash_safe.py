"""A director that dies or restarts keeps its word: real director and agent processes, SIGKILL.

A takeover's mapped actions are recorded before they run and confirmed after;
a restart finds those never confirmed, says so, and runs them again once where
the show allows. A playout seen online before a restart and silent after it is
taken over, not left "dry".
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from pxcontrol.loading import load_show
from pxcontrol.problems import ShowInvalid
from pxcontrol.testing import Rig, wait_for

SHOW = """
[director]
heartbeat_port = {heartbeat_port}

[detection]
heartbeat_interval = 0.05
offline_after = 0.4
online_after = 0.6

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

[modules.Door]
type = "door"

[[mappings]]
on = "backup.activated"
do = [{ action = "Door.Mark", args = { path = "MARKS", text = "{backup}" }, timeout = 60 }]
"""

# A device whose action leaves a trace on disk as it starts, then hangs (a router that
# accepted the salvo and never answered): the director is killed while it waits.
DOOR = """
import asyncio
from pathlib import Path

from pxcontrol import Module, action, hookimpl


class Door(Module):
    @action
    async def mark(self, path: str, text: str) -> None:
        with open(path, "a") as marks:
            marks.write(text + "\\n")
        await asyncio.sleep(3600)


@hookimpl
def register_module_types(register):
    register(Door)
"""


def rig_for(folder: Path, replay: bool) -> Rig:
    show = SHOW.replace("MARKS", str(folder / "marks.txt"))
    if replay:
        show += "replay_on_recovery = true\n"
    return Rig(folder, show, modules={"door.py": DOOR})


@pytest.fixture
def rigs() -> Iterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for rig in made:
        rig.close()


def marks(rig: Rig) -> list[str]:
    path = rig.folder / "marks.txt"
    return path.read_text().splitlines() if path.exists() else []


def killed_mid_mapping(rig: Rig) -> dict:
    """A takeover whose mapping hangs, and the director SIGKILLed while it does."""
    rig.start_director()
    rig.start_clients(Playout1="127.0.0.11", Backup1="127.0.0.21")
    rig.agents["Playout1"].kill()
    activated = rig.director.wait_event("backup.activated", client="Playout1")
    wait_for(lambda: marks(rig) == ["Backup1"], what="the action to start")
    rig.director.kill()
    return activated


def intent_states(rig: Rig) -> list[str]:
    with sqlite3.connect(rig.state / "state.sqlite") as db:
        return [s for (s,) in db.execute("SELECT state FROM intents ORDER BY id")]


def test_actions_never_confirmed_are_an_alarm_after_a_restart_and_not_run_again(tmp_path, rigs):
    rig = rig_for(tmp_path, replay=False)
    rigs.append(rig)
    activated = killed_mid_mapping(rig)
    assert intent_states(rig) == ["running"]

    director = rig.start_director()
    alarm = director.wait_event("alarm", alarm="actions not confirmed")
    assert alarm["client"] == "Playout1" and alarm["backup"] == "Backup1"
    assert alarm["epoch"] == activated["epoch"] == 1
    assert alarm["mapping"] == "mappings[0]" and alarm["actions"] == ["Door.Mark"]
    assert alarm["replay"] is False
    assert "takeover of Playout1 by Backup1 (epoch 1)" in alarm["message"]
    assert "check them by hand" in alarm["message"]
    # The operator sees which call to check: the action with its arguments, filled in.
    assert "Door.Mark(path=" in alarm["message"] and "text='Backup1')" in alarm["message"]
    # A later event to look back from: the backup's agent is heard steadily again.
    director.wait_event("client.online", client="Backup1")
    assert marks(rig) == ["Backup1"]
    assert intent_states(rig) == ["reported"]
    assert director.of_kind("backup.activated") == []

    director.kill()  # a second restart: the takeover was reported, it is not again
    director = rig.start_director()
    director.wait_event("client.online", client="Backup1")
    assert director.of_kind("alarm", alarm="actions not confirmed") == []


def test_replay_on_recovery_runs_the_actions_again_once(tmp_path, rigs):
    rig = rig_for(tmp_path, replay=True)
    rigs.append(rig)
    killed_mid_mapping(rig)

    director = rig.start_director()
    alarm = director.wait_event("alarm", alarm="actions not confirmed")
    assert alarm["replay"] is True and "they run again now" in alarm["message"]
    wait_for(lambda: marks(rig) == ["Backup1", "Backup1"], what="the action to run again")
    wait_for(lambda: intent_states(rig) == ["replaying"], what="the replay on disk")

    # Killed again while the replay hangs: the next restart says so and never replays twice.
    director.kill()
    director = rig.start_director()
    again = director.wait_event("alarm", alarm="actions not confirmed")
    assert again["replay"] is False and "not a second time" in again["message"]
    director.wait_event("client.online", client="Backup1")
    assert marks(rig) == ["Backup1", "Backup1"]
    assert intent_states(rig) == ["reported"]


def test_a_finished_mapping_is_confirmed_and_a_restart_says_nothing(tmp_path, rigs):
    show = SHOW.replace("MARKS", str(tmp_path / "marks.txt"))
    rig = Rig(tmp_path, show.replace("timeout = 60", "timeout = 0.2"), {"door.py": DOOR})
    rigs.append(rig)
    rig.start_director()
    rig.start_clients(Playout1="127.0.0.11", Backup1="127.0.0.21")
    rig.agents["Playout1"].kill()
    activated = rig.director.wait_event("backup.activated", client="Playout1")
    done = rig.director.wait_event("mapping.done", event_seq=activated["seq"])
    assert done["ok"] is False  # cut off by its time limit: ended, with its outcome
    wait_for(lambda: intent_states(rig) == ["done"], what="the intent marked done")
    with sqlite3.connect(rig.state / "state.sqlite") as db:
        (results,) = db.execute("SELECT results FROM intents").fetchone()
    assert '"ok": false' in results and "timed out" in results
    rig.director.kill()
    director = rig.start_director()
    director.wait_event("client.online", client="Backup1")
    assert director.of_kind("alarm", alarm="actions not confirmed") == []


PAIR = """
[director]
heartbeat_port = {heartbeat_port}

[detection]
heartbeat_interval = 0.05
offline_after = 0.4
online_after = 0.6

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
"""


def test_a_playout_seen_before_a_restart_and_silent_after_it_is_taken_over(tmp_path, rigs):
    rig = Rig(tmp_path, PAIR)
    rigs.append(rig)
    rig.start_director()
    rig.start_clients(Playout1="127.0.0.11", Backup1="127.0.0.21")
    assert rig.director.stop() == 0
    rig.agents["Playout1"].kill()  # dies while no director watches

    director = rig.start_director()
    offline = director.wait_event("client.offline", client="Playout1")
    assert offline["automatic"] is True and offline["why_not"] == ""
    activated = director.wait_event("backup.activated", client="Playout1")
    assert activated["backup"] == "Backup1" and activated["reason"] == "auto"


def test_a_client_never_seen_stays_under_the_startup_guard(tmp_path, rigs):
    rig = Rig(tmp_path, PAIR)
    rigs.append(rig)
    rig.start_director()
    rig.start_clients(Backup1="127.0.0.21")  # Playout1 was never seen online
    assert rig.director.stop() == 0
    director = rig.start_director()
    director.wait_event("client.online", client="Backup1")
    assert director.of_kind("client.offline", client="Playout1") == []
    assert director.of_kind("backup.activated") == []


def test_replay_on_recovery_outside_a_takeover_is_refused_at_load(tmp_path):
    (tmp_path / "show.toml").write_text(
        '[modules.Log]\ntype = "log"\n\n[[mappings]]\non = "client.online"\n'
        'do = ["Log.Entry"]\nreplay_on_recovery = true\n'
    )
    with pytest.raises(ShowInvalid) as refused:
        load_show(tmp_path / "show.toml")
    (problem,) = refused.value.problems
    assert problem.line == 7 and "mappings[0].replay_on_recovery" in str(problem)
    assert "applies to mappings on a takeover" in problem.message
    (tmp_path / "show.toml").write_text(
        (tmp_path / "show.toml").read_text().replace("client.online", "backup.*")
    )
    assert load_show(tmp_path / "show.toml").show.mappings[0].replay_on_recovery
