"""Failed clients across real processes: a real director, heartbeats that carry `failed`.

The agent's checks are built elsewhere; here a small sender plays each agent on
its own loopback address, as bench/_heartbeat_sim.py does: it takes the
director's session from the welcome that answers it and follows the epochs it is
told, and the test sets what its checks say. It sends an extra heartbeat at once
when its health changes, as an agent does.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from pxcontrol.testing import Rig, wait_for

from .conftest import OscDump, pxcontrol
from .heartbeat_sender import Sender

WIDE = {**os.environ, "COLUMNS": "200"}  # the table's cells unwrapped

SHOW = """
[director]
heartbeat_port = {heartbeat_port}
allow = ["127.0.0.1"]

[detection]
heartbeat_interval = 0.05
offline_after = 0.4
online_after = 0.3

[modules.Router]
type = "osc"
port = {router_port}

[[mappings]]
on = "backup.activated"
do = [{ action = "Router.Send", args = { address = "/router/salvo", args = ["{backup}"] } }]
"""

PAIR = """
[[clients]]
name = "Playout1"
ip = "127.0.0.11"
gpu = "Test GPU"
outputs = ["Output 1"]

[[clients]]
name = "Backup1"
ip = "127.0.0.21"
gpu = "test  gpu"
outputs = ["Output 1"]
backup_for = ["127.0.0.11"]
auto_backup = true
"""


@pytest.fixture
def router(osc_receiver) -> OscDump:
    """A real OSC receiver we did not write stands in for the video router."""
    return osc_receiver()


@pytest.fixture
def health_rig(tmp_path, router) -> Iterator[Callable[..., tuple[Rig, dict[str, Sender]]]]:
    made: list[tuple[Rig, dict[str, Sender]]] = []

    def make(
        clients: str, senders: dict[str, str], gpus: dict[str, str] | None = None
    ) -> tuple[Rig, dict[str, Sender]]:
        show = SHOW.replace("{router_port}", str(router.port)) + clients
        rig = Rig(tmp_path, show)
        rig.start_director()
        running = {
            name: Sender(name, ip, rig.heartbeat_port, (gpus or {}).get(name, "Test GPU"))
            for name, ip in senders.items()
        }
        made.append((rig, running))
        assert rig.director is not None
        for name in senders:
            rig.director.wait_event("client.online", client=name)
        return rig, running

    yield make
    for rig, running in made:
        for sender in running.values():
            sender.stop()
        rig.close()


def oscsend(rig: Rig, address: str, types: str = "", *values: str) -> None:
    target = f"osc.udp://127.0.0.1:{rig.osc_port}"
    subprocess.run(["oscsend", target, address, types, *values], check=True, timeout=10)


def salvos(router: OscDump) -> int:
    return sum("/router/salvo" in line for line in router.lines)


def test_a_failed_playout_is_taken_over_once_and_its_router_action_runs_once(
    health_rig, router: OscDump, osc_receiver
):
    rig, senders = health_rig(PAIR, {"Playout1": "127.0.0.11", "Backup1": "127.0.0.21"})
    director = rig.director
    console = osc_receiver()
    oscsend(rig, "/pxcontrol/subscribe", "i", str(console.port))
    console.wait_line("/pxcontrol/reply/pxcontrol/subscribe")

    senders["Playout1"].fail("process mpv", "exited with signal 9")
    failed = director.wait_event("client.failed", client="Playout1")
    assert (failed["ip"], failed["check"], failed["message"]) == (
        "127.0.0.11",
        "process mpv",
        "exited with signal 9",
    )
    console.wait_line('/pxcontrol/client/Playout1/state s "failed"')
    activated = director.wait_event("backup.activated", client="Playout1")
    assert activated["backup"] == "Backup1" and activated["reason"] == "auto"
    assert activated["seq"] > failed["seq"]
    router.wait_line('/router/salvo s "Backup1"')
    director.wait_event("backup.confirmed", client="Playout1", plays_on="Backup1")

    # It plays again: it stays on the backup (fail over fast, return slowly), once.
    senders["Playout1"].recover()
    director.wait_event("client.recovered", client="Playout1")
    console.wait_line('/pxcontrol/client/Playout1/state s "online"')
    oscsend(rig, "/pxcontrol/status", "s", "Playout1")
    console.wait_line(
        '/pxcontrol/status/client sssffisssi "Playout1" "online" "Backup1" 10.000000 20.000000 1 "" ""'
    )
    # A later event to look back from: the backup's loss, long after any second decision.
    senders["Backup1"].fail("process mpv", "exited with signal 6")
    alarm = director.wait_event("alarm", client="Backup1", alarm="backup lost")
    assert alarm["message"] == (
        "backup Backup1 failed its check 'process mpv': exited with signal 6 while playing "
        "the outputs of Playout1"
    )
    assert len(director.of_kind("backup.activated")) == 1
    assert director.of_kind("backup.moved") == []
    assert len(director.of_kind("mapping.done")) == 1
    assert salvos(router) == 1


def test_a_failed_backup_refuses_with_the_checks_words_until_it_recovers(
    health_rig, router: OscDump, osc_receiver
):
    rig, senders = health_rig(PAIR, {"Playout1": "127.0.0.11", "Backup1": "127.0.0.21"})
    director = rig.director
    console = osc_receiver()
    senders["Backup1"].fail("tcp 127.0.0.1:1400", "connection refused")
    director.wait_event("client.failed", client="Backup1")
    oscsend(rig, "/pxcontrol/subscribe", "i", str(console.port))
    console.wait_line("/pxcontrol/reply/pxcontrol/subscribe")
    oscsend(rig, "/pxcontrol/status", "s", "Backup1")
    console.wait_line(
        '/pxcontrol/status/client sssffisssi "Backup1" "failed" "Backup1" 10.000000 20.000000 1 '
        '"tcp 127.0.0.1:1400" "connection refused"'
    )
    status = pxcontrol(
        "status", "--client", "Backup1", "--director", f"127.0.0.1:{rig.osc_port}", env=WIDE
    )
    assert status.returncode == 0, status.stderr
    assert "failed (tcp 127.0.0.1:1400: connection refused)" in status.stdout, status.stdout
    # The stimulus: a second failure well apart from the first (failed_together is 25 ms);
    # two of two clients failing together would be a mass failure.
    time.sleep(0.1)
    senders["Playout1"].fail("process mpv", "exited with signal 9")  # wanted: taken over
    refused = director.wait_event("backup.failed", client="Playout1")
    assert refused["reason"] == "backup failed" and refused["trigger"] == "auto"
    assert refused["message"] == (
        "backup Backup1 failed its check 'tcp 127.0.0.1:1400': connection refused; nothing can move"
    )
    console.wait_line('/pxcontrol/backup/Playout1/failed ss "backup failed"')
    assert director.of_kind("backup.activated") == []

    # The waiting takeover runs as soon as the backup is healthy again.
    senders["Backup1"].recover()
    director.wait_event("client.recovered", client="Backup1")
    activated = director.wait_event("backup.activated", client="Playout1")
    assert activated["by"] == "detector: a backup is ready again"
    router.wait_line("/router/salvo")
    assert len(director.of_kind("backup.failed", client="Playout1")) == 1


def test_a_flapping_playout_is_taken_over_once(health_rig, router: OscDump):
    rig, senders = health_rig(PAIR, {"Playout1": "127.0.0.11", "Backup1": "127.0.0.21"})
    director = rig.director
    playout = senders["Playout1"]
    for flap in range(6):  # the stimulus: a show that fails and plays again, 60 ms each
        playout.fail("figure fps", f"fps 0 below 50 (flap {flap})")
        time.sleep(0.06)
        playout.recover()
        time.sleep(0.06)
    wait_for(lambda: len(director.of_kind("client.recovered", client="Playout1")) == 6)
    director.wait_event("backup.activated", client="Playout1")
    # Look back from the backup's loss: no second takeover, no move back, one salvo.
    senders["Backup1"].stop()
    director.wait_event("alarm", client="Backup1", alarm="backup lost")
    assert len(director.of_kind("backup.activated")) == 1
    assert director.of_kind("backup.moved") == []
    assert salvos(router) == 1


FOUR = """
[[clients]]
name = "Backup1"
ip = "127.0.0.21"
outputs = ["Output 1"]
backup_for = ["127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"]
auto_backup = true
""" + "".join(
    f"""
[[clients]]
name = "Playout{i}"
ip = "127.0.0.1{i}"
outputs = ["Output 1"]
"""
    for i in range(1, 5)
)


def test_three_of_four_players_failing_at_once_is_a_mass_failure_and_no_takeover(
    health_rig, router: OscDump
):
    ips = {f"Playout{i}": f"127.0.0.1{i}" for i in range(1, 5)} | {"Backup1": "127.0.0.21"}
    rig, senders = health_rig(FOUR, ips)
    director = rig.director
    for i in (1, 2, 3):
        senders[f"Playout{i}"].fail("process mpv", "exited with signal 9")
    alarm = director.wait_event("alarm", alarm="mass failure")
    assert "3 clients failed their checks" in alarm["message"]
    for i in (1, 2, 3):
        refused = director.wait_event("backup.failed", client=f"Playout{i}")
        assert refused["reason"] == "mass failure guard"
    assert director.of_kind("backup.activated") == []
    assert salvos(router) == 0


def test_a_gpu_that_is_not_the_shows_is_an_alarm_once_and_blocks_a_takeover(
    health_rig, osc_receiver
):
    rig, senders = health_rig(
        PAIR,
        {"Playout1": "127.0.0.11", "Backup1": "127.0.0.21"},
        gpus={"Backup1": "NVIDIA RTX 4000"},
    )
    director = rig.director
    alarm = director.wait_event("alarm", client="Backup1", alarm="gpu mismatch")
    assert "'NVIDIA RTX 4000'" in alarm["message"] and "'test  gpu'" in alarm["message"]
    senders["Playout1"].fail("process mpv", "exited with signal 9")
    refused = director.wait_event("backup.failed", client="Playout1")
    assert refused["reason"] == "gpu mismatch"
    assert director.of_kind("backup.activated") == []
    assert len(director.of_kind("alarm", alarm="gpu mismatch")) == 1  # once per agent run
