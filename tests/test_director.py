"""The director in this process, its agents as real subprocesses: move to, forged heartbeats."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import AsyncIterator

import pytest

from pxcontrol.detection import ClientState
from pxcontrol.director import Director
from pxcontrol.heartbeat import HEARTBEAT, Heartbeat, encode
from pxcontrol.loading import load_show
from pxcontrol.testing import Process

from .conftest import async_wait_for, free_port

SHOW = """
[director]
heartbeat_port = {port}
secret = "s3cret"

[detection]
heartbeat_interval = 0.05
offline_after = 0.4
online_after = 0.6

[[clients]]
name = "Playout1"
ip = "127.0.0.11"
outputs = ["Output 1", "Output 2"]

[[clients]]
name = "Backup1"
ip = "127.0.0.21"
outputs = ["Output 1", "Output 2"]
backup_for = ["127.0.0.11"]
"""


class Show:
    def __init__(self, director: Director, port: int, folder) -> None:
        self.director = director
        self.port = port
        self.secret_file = folder / "secret"
        self.secret_file.write_text("s3cret\n")
        self.agents: dict[str, Process] = {}

    def agent(self, name: str, ip: str) -> Process:
        self.agents[name] = Process(
            [
                "agent",
                "--name",
                name,
                "--director",
                f"127.0.0.1:{self.port}",
                "--bind",
                ip,
                "--secret-file",
                str(self.secret_file),
                "--json-events",
            ]
        )
        return self.agents[name]

    def kinds(self, kind: str, **fields) -> list:
        return [
            e
            for e in self.director.app.events
            if e.kind == kind and all(e.fields.get(k) == v for k, v in fields.items())
        ]

    async def both_online(self) -> tuple[Process, Process]:
        """Agents for Playout1 and Backup1, both online at the director."""
        agents = self.agent("Playout1", "127.0.0.11"), self.agent("Backup1", "127.0.0.21")
        await self.state("Playout1", ClientState.ONLINE)
        await self.state("Backup1", ClientState.ONLINE)
        return agents

    async def state(self, name: str, state: ClientState) -> None:
        await async_wait_for(
            lambda: self.director.live.state(name) is state, what=f"{name} {state}"
        )


@pytest.fixture
async def show(tmp_path) -> AsyncIterator[Show]:
    port = free_port()
    (tmp_path / "show.toml").write_text(SHOW.replace("{port}", str(port)))
    director = Director(
        load_show(tmp_path / "show.toml"), tmp_path / "state", osc_port=0, http_port=0
    )
    await director.start()
    running = Show(director, port, tmp_path)
    yield running
    for agent in running.agents.values():
        agent.kill()
    await running.director.stop()  # a test may have replaced it


async def test_move_to_brings_the_outputs_home_only_when_home_is_online(show: Show):
    _, backup_agent = await show.both_online()
    backup = show.director.backup
    assert backup is not None

    decision = await backup.takeover("Playout1", "manual", by="test")
    assert decision.ok and decision.epoch == 1
    await async_wait_for(lambda: backup_agent.of_kind("backup.activated"))

    show.agents["Playout1"].kill()
    await show.state("Playout1", ClientState.OFFLINE)
    refused = await backup.move_to("Playout1", None, "manual")
    assert not refused.ok
    assert refused.message == "Playout1 is offline: move outputs only to a client that is online"
    assert show.kinds("backup.failed", reason="target offline")
    assert backup.plays_on("Playout1") == "Backup1" and backup.epoch == 1

    home = show.agent("Playout1", "127.0.0.11")  # the machine is back, a new agent run
    await show.state("Playout1", ClientState.ONLINE)
    decision = await backup.move_to("Playout1", None, "manual", by="test")
    assert decision.ok and decision.epoch == 2
    (moved,) = show.kinds("backup.moved")
    assert moved.fields["from"] == "Backup1" and moved.fields["to"] == "Playout1"
    notice = await async_wait_for(lambda: home.of_kind("backup.moved"))
    assert notice[0]["plays"] == {"Playout1": ["Output 1", "Output 2"]}
    backup_notice = await async_wait_for(lambda: backup_agent.of_kind("backup.moved"))
    assert backup_notice[0]["plays"] == {}


async def test_a_late_agent_catches_up_with_the_epoch_through_its_heartbeats(show: Show):
    """A notice lost on the way is sent again until the agent's heartbeat says it has it."""
    show.agent("Playout1", "127.0.0.11")
    await show.state("Playout1", ClientState.ONLINE)
    backup = show.director.backup
    assert backup is not None
    # Backup1's agent is not running yet: it cannot hear the takeover notice.
    show.director.live.detector.clients["Backup1"].state = ClientState.ONLINE
    assert (await backup.takeover("Playout1", "manual")).ok
    late = show.agent("Backup1", "127.0.0.21")
    # The repaired notice tells what the original would have: the takeover, with its fields.
    notice = await async_wait_for(lambda: late.of_kind("backup.activated"))
    assert notice[0]["epoch"] == 1 and notice[0]["client"] == "Playout1"
    assert notice[0]["plays"] == {"Playout1": ["Output 1", "Output 2"]}


async def test_forged_replayed_and_malformed_heartbeats_never_keep_a_dead_client_alive(show: Show):
    agent = show.agent("Playout1", "127.0.0.11")
    await show.state("Playout1", ClientState.ONLINE)
    live = show.director.live
    real = live.clients["Playout1"]
    boot, seq = real.boot, real.seq
    assert boot is not None

    def beat(seq: int, boot: str = boot) -> Heartbeat:  # as captured from this director session
        return Heartbeat(
            name="Playout1", boot=boot, seq=seq, interval=0.05, session=live.runs.session
        )

    forged = {
        "bad_signature": (encode(HEARTBEAT, beat(10**6), b"wrong secret"), "127.0.0.11"),
        "replay": (encode(HEARTBEAT, beat(seq), b"s3cret"), "127.0.0.11"),
        "wrong_source": (encode(HEARTBEAT, beat(10**6 + 1), b"s3cret"), "127.0.0.99"),
        "malformed": (b"\x00garbage" * 10, "127.0.0.11"),
        "unknown_client": (
            encode(HEARTBEAT, Heartbeat(name="Nobody", boot="x", seq=1, interval=0.05), b"s3cret"),
            "127.0.0.11",
        ),
    }
    agent.signal(signal.SIGKILL)
    senders = {}
    for _, source in forged.values():
        if source not in senders:
            senders[source] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            senders[source].bind((source, 0))

    async def spray() -> None:
        while True:
            for packet, source in forged.values():
                senders[source].sendto(packet, ("127.0.0.1", show.port))
            await asyncio.sleep(0.01)

    sprayer = asyncio.get_running_loop().create_task(spray())
    try:
        await show.state("Playout1", ClientState.OFFLINE)
    finally:
        sprayer.cancel()
        for sender in senders.values():
            sender.close()
    for reason in forged:
        assert live.drops[reason] > 0, f"{reason} was counted"
    assert real.boot == boot and seq <= real.seq < 10**6, "nothing forged was taken for the agent"


def test_the_test_rig_picks_other_ports_when_one_was_taken_before_the_director_bound_it(
    tmp_path,
):
    from pxcontrol.testing import Rig

    rig = Rig(tmp_path, "[director]\nheartbeat_port = {heartbeat_port}\n")
    taken = rig.osc_port
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("127.0.0.1", taken))  # someone else got there first
    try:
        director = rig.start_director()
        loaded = director.of_kind("show.loaded")[0]
        assert rig.osc_port != taken and loaded["osc_port"] == rig.osc_port
        assert loaded["heartbeat_port"] == rig.heartbeat_port
        assert f"osc_port = {rig.osc_port}" in (tmp_path / "show.toml").read_text()
    finally:
        squatter.close()
        rig.close()


async def test_a_director_on_fresh_state_catches_up_with_the_agents_epoch(show: Show, tmp_path):
    _, backup_agent = await show.both_online()
    first = show.director.backup
    assert (await first.takeover("Playout1", "manual")).ok
    assert (await first.move_to("Playout1", None, "manual")).ok  # the agents now follow epoch 2
    await async_wait_for(lambda: backup_agent.of_kind("backup.moved"), what="the move")
    await show.director.stop()

    # The spare laptop: the same show, a state folder that knows nothing.
    show.director = Director(
        load_show(tmp_path / "show.toml"), tmp_path / "fresh", osc_port=0, http_port=0
    )
    await show.director.start()
    await show.state("Playout1", ClientState.ONLINE)
    await show.state("Backup1", ClientState.ONLINE)
    await async_wait_for(lambda: show.kinds("alarm", alarm="newer epoch"), what="the alarm")
    assert (
        "follows epoch 2, newer than this director's 0"
        in (show.kinds("alarm", alarm="newer epoch")[0].fields["message"])
    )
    await async_wait_for(lambda: show.director.backup.epoch == 2, what="the catch-up")
    decision = await show.director.backup.takeover("Playout1", "manual")
    assert decision.ok and decision.epoch == 3
    # The agents follow it: before the catch-up they ignored the director's epoch 1.
    await async_wait_for(
        lambda: [e for e in backup_agent.of_kind("backup.activated") if e.get("epoch") == 3],
        what="the backup agent taking over at epoch 3",
    )


async def test_a_second_agent_with_the_same_name_is_an_alarm_not_a_takeover(show: Show):
    show.director.backup.auto_override["Playout1"] = True
    await show.both_online()
    second = Process(
        [
            "agent",
            "--name",
            "Playout1",
            "--director",
            f"127.0.0.1:{show.port}",
            "--bind",
            "127.0.0.11",
            "--secret-file",
            str(show.secret_file),
        ]
    )
    try:
        await async_wait_for(lambda: show.kinds("alarm", alarm="second agent"), what="the alarm")
    finally:
        second.kill()  # the intruder goes away; the first agent was never silent
    heard = show.director.live.heartbeats
    await async_wait_for(lambda: show.director.live.heartbeats > heard + 20, what="more beats")
    assert show.director.live.state("Playout1") is ClientState.ONLINE
    assert not show.kinds("client.offline") and not show.kinds("backup.activated")
    assert len(show.kinds("alarm", alarm="second agent")) == 1


async def test_a_restored_takeover_onto_a_backup_nobody_hears_is_an_alarm(show: Show, tmp_path):
    await show.both_online()
    assert (await show.director.backup.takeover("Playout1", "manual")).ok
    await show.director.stop()
    show.agents["Backup1"].kill()  # the backup died with the director

    show.director = Director(
        load_show(tmp_path / "show.toml"), tmp_path / "state", osc_port=0, http_port=0
    )
    await show.director.start()
    assert show.kinds("show.loaded")[-1].fields["restored"] == "Playout1 on Backup1"
    # Backup1 was seen online before the restart: its silence since is a loss, said once.
    (alarm,) = await async_wait_for(lambda: show.kinds("alarm", alarm="backup lost"), 5)
    assert alarm.fields["message"] == (
        "backup Backup1 went offline while playing the outputs of Playout1"
    )
    await show.state("Playout1", ClientState.ONLINE)  # it was not the lost one
    check = show.director._restored_check
    assert check is not None
    await async_wait_for(check.done, 10, "the check of restored takeovers")
    assert len(show.kinds("alarm", alarm="backup lost")) == 1


async def test_an_automatic_takeover_that_found_no_backup_happens_when_one_is_back(show: Show):
    show.director.backup.auto_override["Playout1"] = True
    await show.both_online()
    show.agents["Backup1"].kill()
    await show.state("Backup1", ClientState.OFFLINE)
    show.agents["Playout1"].kill()  # and now the playout: its outputs are dark
    await async_wait_for(
        lambda: show.kinds("backup.failed", client="Playout1", reason="backup offline"),
        what="the refused automatic takeover",
    )
    assert show.director.backup.plays_on("Playout1") == "Playout1"
    backup_agent = show.agent("Backup1", "127.0.0.21")  # the backup machine is back
    (activated,) = await async_wait_for(
        lambda: show.kinds("backup.activated", client="Playout1"), 10, "the late takeover"
    )
    assert activated.fields["reason"] == "auto"
    assert activated.fields["by"] == "detector: a backup is ready again"
    await async_wait_for(lambda: backup_agent.of_kind("backup.activated"), what="the agent")
    assert len(show.kinds("backup.failed", client="Playout1")) == 1
