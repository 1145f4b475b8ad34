"""Failure behaviour across real processes: a director and agents on loopback, killed and paused.

The director and each agent are subprocesses; the test watches their JSON
event lines and awaits conditions. Timings are short but keep the show's
rule offline_after ≥ 3 × heartbeat_interval, so CI load does not fake failures.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Iterator

import pytest

from pxcontrol.testing import Rig, wait_for

from .conftest import OscDump

DETECTION = """
[director]
heartbeat_port = {heartbeat_port}

[detection]
heartbeat_interval = 0.05
offline_after = 0.4
online_after = 0.6
"""

PAIR = (
    DETECTION
    + """
[[clients]]
name = "Playout1"
ip = "127.0.0.11"
gpu = "Test GPU"
outputs = ["Output 1", "Output 2"]
live_inputs = ["Cam 1"]

[[clients]]
name = "Backup1"
ip = "127.0.0.21"
gpu = "Test GPU"
outputs = ["Output 1", "Output 2"]
live_inputs = ["Cam 1"]
backup_for = ["127.0.0.11"]
auto_backup = true

[modules.Log]
type = "log"

[modules.Router]
type = "osc"
port = {osc_port}

[[mappings]]
on = "backup.activated"
do = [
  { action = "Router.Send", args = { address = "/router/salvo", args = ["Backup1"] } },
  { action = "Log.Entry", args = { message = "takeover" } },
]
"""
)


@pytest.fixture
def router(osc_receiver) -> OscDump:
    """A real OSC receiver we did not write stands in for the video router."""
    return osc_receiver()


@pytest.fixture
def pair(tmp_path, router) -> Iterator[Rig]:
    rig = Rig(tmp_path, PAIR.replace("{osc_port}", str(router.port)))
    rig.start_director()
    rig.start_clients(Playout1="127.0.0.11", Backup1="127.0.0.21")
    yield rig
    rig.close()


def test_sigkill_of_the_playout_agent_takes_over_exactly_once(pair: Rig, router: OscDump):
    director = pair.director
    pair.agents["Playout1"].signal(signal.SIGKILL)
    activated = director.wait_event("backup.activated", client="Playout1")
    assert activated["backup"] == "Backup1"
    assert activated["reason"] == "auto"
    assert activated["outputs"] == ["Output 1", "Output 2"]
    assert activated["live_inputs"] == ["Cam 1"]
    done = director.wait_event("mapping.done", event_seq=activated["seq"])
    assert done["ok"] and [a["action"] for a in done["actions"]] == ["Router.Send", "Log.Entry"]
    router.wait_line('/router/salvo s "Backup1"')
    # The backup's agent was told, with what it now plays.
    notice = pair.agents["Backup1"].wait_event("backup.activated")
    assert notice["plays"] == {"Playout1": ["Output 1", "Output 2", "Cam 1"]}
    offline = director.wait_event("client.offline", client="Playout1")
    assert offline["automatic"] is True
    # Exactly once. Losing the backup too is a later event to look back from,
    # and the operator must hear that the outputs are now dark.
    pair.agents["Backup1"].signal(signal.SIGKILL)
    alarm = director.wait_event("alarm", client="Backup1")
    assert alarm["message"] == "backup Backup1 went offline while playing the outputs of Playout1"
    assert len(director.of_kind("backup.activated")) == 1
    assert len(director.of_kind("mapping.done")) == 1
    assert sum("/router/salvo" in line for line in router.lines) == 1


def test_a_pause_shorter_than_offline_after_changes_nothing(pair: Rig):
    playout = pair.agents["Playout1"]
    playout.signal(signal.SIGSTOP)
    time.sleep(0.15)  # the stimulus: a stall shorter than offline_after (0.4 s)
    playout.signal(signal.SIGCONT)
    # A later event to look back from: by the time the backup is declared
    # offline, a real failure of the playout would long have been too.
    pair.agents["Backup1"].signal(signal.SIGKILL)
    pair.director.wait_event("client.offline", client="Backup1")
    assert pair.director.of_kind("client.offline", client="Playout1") == []
    assert pair.director.of_kind("backup.activated") == []


def test_a_long_pause_takes_over_and_the_outputs_stay_on_the_backup_after(pair: Rig):
    playout = pair.agents["Playout1"]
    playout.signal(signal.SIGSTOP)
    activated = pair.director.wait_event("backup.activated", client="Playout1")
    playout.signal(signal.SIGCONT)
    pair.director.wait_event("client.online", after=activated["seq"], client="Playout1")
    # Never automatic back: the recovered client stays unused until someone moves it.
    assert pair.director.of_kind("backup.moved") == []
    assert len(pair.director.of_kind("client.online", client="Playout1")) == 2
    assert len(pair.director.of_kind("backup.activated")) == 1


def test_restarting_the_director_keeps_the_takeover_and_the_event_log(pair: Rig):
    pair.agents["Playout1"].signal(signal.SIGKILL)
    activated = pair.director.wait_event("backup.activated", client="Playout1")
    done = pair.director.wait_event("mapping.done", event_seq=activated["seq"])

    def on_disk(seq: int) -> bool:
        with sqlite3.connect(pair.state / "events.sqlite") as db:
            return db.execute("SELECT 1 FROM events WHERE seq = ?", (seq,)).fetchone() is not None

    wait_for(lambda: on_disk(done["seq"]), what="the trace on disk")
    pair.director.kill()  # SIGKILL: no chance to tidy up
    director = pair.start_director()
    loaded = director.wait_event("show.loaded")
    assert loaded["restored"] == "Playout1 on Backup1"
    assert loaded["epoch"] == 1
    assert loaded["seq"] > activated["seq"], "the event log continues its numbering"
    director.wait_event("client.online", client="Backup1")
    # Never re-run: no second takeover, no second round of actions.
    assert director.of_kind("backup.activated") == []
    db = sqlite3.connect(pair.state / "events.sqlite")
    kinds = [k for (k,) in db.execute("SELECT kind FROM events ORDER BY seq")]
    assert kinds.count("backup.activated") == 1
    assert "mapping.done" in kinds and "client.offline" in kinds
    # The backup's agent, hearing from the new director, keeps what it plays.
    assert pair.agents["Backup1"].of_kind("backup.activated")[-1]["epoch"] == 1


FOUR = (
    DETECTION
    + """
[[clients]]
name = "Playout1"
ip = "127.0.0.11"
outputs = ["Output 1"]

[[clients]]
name = "Playout2"
ip = "127.0.0.12"
outputs = ["Output 1"]

[[clients]]
name = "Playout3"
ip = "127.0.0.13"
outputs = ["Output 1"]

[[clients]]
name = "Backup1"
ip = "127.0.0.21"
outputs = ["Output 1"]
backup_for = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
auto_backup = true
"""
)


@pytest.fixture
def four(tmp_path) -> Iterator[Rig]:
    rig = Rig(tmp_path, FOUR)
    rig.start_director()
    rig.start_clients(
        Playout1="127.0.0.11", Playout2="127.0.0.12", Playout3="127.0.0.13", Backup1="127.0.0.21"
    )
    yield rig
    rig.close()


def test_all_playouts_silenced_at_once_trip_the_mass_failure_guard(four: Rig):
    for name in ("Playout1", "Playout2", "Playout3"):
        four.agents[name].signal(signal.SIGSTOP)  # a switch port dies: all at once
    director = four.director
    alarm = director.wait_event("alarm", alarm="mass failure")
    assert alarm["message"].startswith("3 clients lost within ")
    for name in ("Playout1", "Playout2", "Playout3"):
        failed = director.wait_event("backup.failed", client=name)
        assert failed["reason"] == "mass failure guard"
        assert director.wait_event("client.offline", client=name)["automatic"] is False
    assert director.of_kind("backup.activated") == []
    assert len(director.of_kind("alarm", alarm="mass failure")) == 1


def test_one_backup_for_two_playouts_takes_the_first_and_refuses_the_second(four: Rig):
    director = four.director
    four.agents["Playout1"].signal(signal.SIGKILL)
    first = director.wait_event("backup.activated")
    assert first["client"] == "Playout1"
    four.agents["Playout2"].signal(signal.SIGKILL)
    failed = director.wait_event("backup.failed", client="Playout2")
    assert failed["reason"] == "backup busy"
    assert "Backup1 already plays the outputs of Playout1" in failed["message"]
    alarm = director.wait_event("alarm", client="Playout2")
    assert alarm["message"] == failed["message"]
    assert len(director.of_kind("backup.activated")) == 1


def test_a_flapping_agent_is_taken_over_at_most_once(pair: Rig):
    playout = pair.agents["Playout1"]
    director = pair.director
    playout.signal(signal.SIGSTOP)
    director.wait_event("client.offline", client="Playout1")
    for _ in range(3):  # on shorter than online_after (0.6 s), off long enough to go offline
        playout.signal(signal.SIGCONT)
        time.sleep(0.25)  # the stimulus: a short burst of heartbeats ...
        playout.signal(signal.SIGSTOP)
        time.sleep(0.8)  # ... then a silence twice offline_after (0.4 s)
    # Without the online_after hysteresis each burst would bring it online and each
    # silence offline again: client.online and client.offline three more times.
    assert not director.of_kind("client.online", after=director.of_kind("client.offline")[0]["seq"])
    playout.signal(signal.SIGCONT)
    last_online = director.wait_event(
        "client.online", after=director.of_kind("backup.activated")[0]["seq"], client="Playout1"
    )
    assert len(director.of_kind("backup.activated")) == 1
    assert len(director.of_kind("client.offline", client="Playout1")) == 1, "no oscillation"
    assert last_online["client"] == "Playout1"


def test_backup_offline_when_the_playout_fails_is_refused(pair: Rig):
    director = pair.director
    pair.agents["Backup1"].signal(signal.SIGKILL)
    director.wait_event("client.offline", client="Backup1")
    pair.agents["Playout1"].signal(signal.SIGKILL)
    failed = director.wait_event("backup.failed", client="Playout1")
    assert failed["reason"] == "backup offline"
    assert failed["message"] == "backup Backup1 is offline: nothing can move"
    assert director.of_kind("backup.activated") == []


def test_offline_says_automatic_only_when_a_backup_takes_over(pair: Rig):
    pair.agents["Backup1"].signal(signal.SIGKILL)  # a backup has no backup of its own
    offline = pair.director.wait_event("client.offline", client="Backup1")
    assert offline["automatic"] is False and offline["why_not"] == ""
