"""A real player as the media server: Debian's mpv with no screen, watched by the agent's
checks (its process, and its JSON IPC through the pxcontrol_mpv plugin kind)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pxcontrol_mpv
import pytest

from pxcontrol.checks.kinds import collect_check_kinds
from pxcontrol.checks.runner import Checks
from pxcontrol.plugins import make_plugin_manager
from pxcontrol.testing import Rig, wait_for

from .conftest import async_wait_for

MPV = shutil.which("mpv")


class Player:
    """mpv playing a generated picture, under a name no other process here has."""

    def __init__(self, folder: Path) -> None:
        self.name = f"mpv{os.getpid() % 100000}"  # under 16 characters: the kernel's comm
        binary = folder / self.name
        assert MPV is not None, "these tests need a real player: apt-get install mpv"
        shutil.copy(MPV, binary)
        self.socket = str(folder / "mpv.sock")
        self.proc = subprocess.Popen(
            [
                str(binary),
                "--vo=null",
                "--ao=null",
                "--really-quiet",
                f"--input-ipc-server={self.socket}",
                "av://lavfi:testsrc2=size=320x240:rate=25",
            ]
        )
        wait_for(self._plays, 10, "mpv to play")

    def _plays(self) -> bool:
        try:
            (position,) = asyncio.run(pxcontrol_mpv.ask(self.socket, "time-pos"))
        except (pxcontrol_mpv.MpvError, OSError):
            return False
        return bool(position)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def player(tmp_path: Path) -> Iterator[Player]:
    player = Player(tmp_path)
    yield player
    player.close()


SHOW = """
[director]
heartbeat_port = {heartbeat_port}

[[clients]]
name = "Playout1"
ip = "127.0.0.11"
checks = [{ process = "NAME" }, { mpv = "SOCKET", name = "player" }]
"""


def test_the_player_killed_fails_its_checks_at_the_agent(tmp_path: Path, player: Player):
    rig = Rig(tmp_path, SHOW.replace("NAME", player.name).replace("SOCKET", player.socket))
    try:
        rig.start_director()
        rig.start_clients(Playout1="127.0.0.11")
        agent = rig.agents["Playout1"]
        # Healthy: the agent's figures carry the player's position (from the mpv plugin).
        wait_for(lambda: not agent.of_kind("check.failed") and _found(agent, player), 10)
        player.proc.kill()
        killed = time.monotonic()
        exited = agent.wait_event("check.failed", check=f"process {player.name}")
        assert exited["message"].startswith(f"process {player.name!r} (pid {player.proc.pid})")
        frozen = agent.wait_event("check.failed", check="player")
        assert "cannot connect to" in frozen["message"] or "closed" in frozen["message"]
        print(  # figures, not assertions: see bench/ for the real measurement
            f"process check failed {1000 * (exited['_seen'] - killed):.0f} ms after the kill, "
            f"the mpv check {1000 * (frozen['_seen'] - killed):.0f} ms"
        )
    finally:
        rig.close()


def _found(agent, player: Player) -> bool:
    """The agent's process check has found the player and watches it (its log says so)."""
    found = f"process {player.name!r} found: pid {player.proc.pid}"
    return any(found in line for line in agent.output)


async def test_a_short_freeze_is_nothing_a_long_one_fails_and_recovers(player: Player):
    pm, _ = make_plugin_manager()
    changes: list[tuple[str, str, str]] = []
    checks = Checks(collect_check_kinds(pm), lambda *change: changes.append(change))
    timing = {"interval": 0.1, "fall": 3, "rise": 3, "timeout": 0.3}
    await checks.update(
        [{"process": player.name, **timing}, {"mpv": player.socket, "name": "player", **timing}]
    )
    mpv = checks.running[1]
    try:
        await async_wait_for(lambda: mpv.probes >= 3, what="the player probed")
        figures = await pxcontrol_mpv.agent_performance()
        assert figures["mpv_time_pos"] > 0 and figures["mpv_dropped_frames"] >= 0
        # Shorter than fall × time limit: a probe or two fail; nothing changes.
        player.proc.send_signal(signal.SIGSTOP)
        await asyncio.sleep(0.4)  # the freeze itself (past one probe time limit), not a wait
        player.proc.send_signal(signal.SIGCONT)
        seen = mpv.probes
        await async_wait_for(lambda: mpv.probes >= seen + 6, what="probes after the freeze")
        assert changes == []
        # Longer than fall: the player check fails (the process still runs), then recovers.
        player.proc.send_signal(signal.SIGSTOP)
        await async_wait_for(lambda: changes, 5, "the frozen player to fail")
        assert changes == [("player", "failed", "timed out after 0.3 s")]
        assert checks.failed is not None and checks.failed.check == "player"
        player.proc.send_signal(signal.SIGCONT)
        await async_wait_for(lambda: len(changes) == 2, 5, "the player to recover")
        assert changes[1][:2] == ("player", "recovered") and checks.failed is None
    finally:
        player.proc.send_signal(signal.SIGCONT)
        await checks.close()


FROZEN_SHOW = """
[director]
heartbeat_port = {heartbeat_port}

[detection]
heartbeat_interval = 0.05
offline_after = 0.4
online_after = 0.3

[[clients]]
name = "Playout1"
ip = "127.0.0.11"
outputs = ["Output 1"]
checks = [{ mpv = "SOCKET", name = "player", interval = 0.1, fall = 3, rise = 3, timeout = 0.3 }]

[[clients]]
name = "Backup1"
ip = "127.0.0.21"
outputs = ["Output 1"]
backup_for = ["127.0.0.11"]
auto_backup = true

[modules.Router]
type = "osc"
port = ROUTER

[[mappings]]
on = "backup.activated"
do = [{ action = "Router.Send", args = { address = "/router/salvo", args = ["{backup}"] } }]
"""


def test_a_frozen_player_is_taken_over_once_while_its_machine_runs_on(
    tmp_path: Path, player: Player, osc_receiver
):
    router = osc_receiver()
    show = FROZEN_SHOW.replace("SOCKET", player.socket).replace("ROUTER", str(router.port))
    rig = Rig(tmp_path, show)
    try:
        director = rig.start_director()
        rig.start_clients(Playout1="127.0.0.11", Backup1="127.0.0.21")
        agent = rig.agents["Playout1"]
        agent.wait_line(r"checks: player")  # the agent runs the show's check
        player.proc.send_signal(signal.SIGSTOP)  # the picture freezes; the machine runs on
        failed = director.wait_event("client.failed", client="Playout1")
        assert failed["check"] == "player" and "timed out after 0.3 s" in failed["message"]
        activated = director.wait_event("backup.activated", client="Playout1")
        assert activated["backup"] == "Backup1"
        wait_for(lambda: sum("/router/salvo" in x for x in router.lines) == 1, 5, "the salvo")
        player.proc.send_signal(signal.SIGCONT)
        director.wait_event("client.recovered", client="Playout1")
        # The agent never went offline, and nothing was taken over or sent twice.
        assert not director.of_kind("client.offline")
        assert len(director.of_kind("backup.activated")) == 1
        assert sum("/router/salvo" in x for x in router.lines) == 1
    finally:
        player.proc.send_signal(signal.SIGCONT)
        rig.close()
