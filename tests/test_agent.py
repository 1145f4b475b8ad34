"""The agent: heartbeats on schedule whatever its plugins return; what the director and its
agents (real processes) tell each other when notices are lost, replayed or not confirmed."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from pxcontrol import hookimpl
from pxcontrol.agent import Agent
from pxcontrol.detection import ClientState
from pxcontrol.director import Director
from pxcontrol.events import Event
from pxcontrol.heartbeat import ACK, HEARTBEAT, PLACEMENT, Ack, Heartbeat, Placement, decode
from pxcontrol.loading import load_show
from pxcontrol.plugins import make_plugin_manager
from pxcontrol.testing import Process, free_port

from .conftest import async_wait_for, pxcontrol


class Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.beats: list[Heartbeat] = []

    def datagram_received(self, data, addr):
        self.beats.append(decode(data, HEARTBEAT, Heartbeat, None))


class Fps:
    @hookimpl
    def agent_performance(self):
        return {"fps": 59.94}


class NotJson:
    @hookimpl
    def agent_performance(self):
        return {"frame": object()}


class Huge:
    @hookimpl
    def agent_performance(self):
        return {"log": "x" * 5000}


class Broken:
    @hookimpl
    async def agent_performance(self):
        raise RuntimeError("capture card gone")


@pytest.mark.parametrize(
    ("plugin", "travels"),
    [
        (NotJson, {"fps": 59.94}),  # what cannot be JSON is dropped; the good figures travel
        (Huge, {}),  # too big for one datagram: the figures stay home, the heartbeat goes
        (Broken, {"fps": 59.94}),  # one plugin failing leaves the others' figures
    ],
    ids=lambda p: getattr(p, "__name__", ""),
)
async def test_bad_plugin_figures_never_stop_or_bloat_the_heartbeat(plugin, travels):
    loop = asyncio.get_running_loop()
    transport, director = await loop.create_datagram_endpoint(
        Collector, local_addr=("127.0.0.1", 0)
    )
    pm, _ = make_plugin_manager()
    pm.register(Fps(), name="fps")
    pm.register(plugin(), name="bad")
    agent = Agent("Playout1", transport.get_extra_info("sockname"), pm, interval=0.02)
    stop = asyncio.Event()
    running = loop.create_task(agent.run(stop))
    try:
        # Performance is read every 0.5 s: wait for heartbeats carrying a reading.
        await async_wait_for(
            lambda: sum(b.cpu is not None for b in director.beats) >= 5, what="heartbeats"
        )
    finally:
        stop.set()
        await running
        transport.close()
    seqs = [b.seq for b in director.beats]
    assert seqs == list(range(1, len(seqs) + 1)), "none missed"
    last = director.beats[-1]
    assert last.memory is not None
    assert last.extra == travels


async def test_an_agent_the_director_never_answers_says_so(caplog):
    pm, _ = make_plugin_manager()
    agent = Agent("Playout1", ("127.0.0.1", 9), pm)  # nothing listens there
    await asyncio.wait_for(_first_warning(agent, caplog), 5)
    (record,) = [r for r in caplog.records if "no answer from the director" in r.message]
    assert "127.0.0.1:9" in record.message and "'Playout1' a client of its show" in record.message


async def _first_warning(agent: Agent, caplog) -> None:
    task = asyncio.get_running_loop().create_task(agent._watch_director(after=0.05))
    await async_wait_for(lambda: "no answer from the director" in caplog.text)
    task.cancel()


async def test_an_agent_task_that_raises_is_a_local_event_and_starts_again(monkeypatch):
    loop = asyncio.get_running_loop()
    transport, director = await loop.create_datagram_endpoint(
        Collector, local_addr=("127.0.0.1", 0)
    )
    pm, _ = make_plugin_manager()
    agent = Agent("Playout1", transport.get_extra_info("sockname"), pm, interval=0.02)
    faults = iter([OSError("psutil: /proc vanished")])
    real = Agent._read_performance

    def read_once_broken(self):
        fault = next(faults, None)
        if fault is not None:
            raise fault
        return real(self)

    monkeypatch.setattr(Agent, "_read_performance", read_once_broken)
    stop = asyncio.Event()
    running = loop.create_task(agent.run(stop))
    try:
        await async_wait_for(lambda: agent.events.of_kind("agent.fault"), what="the fault")
        # Started again: a later reading travels in the heartbeats.
        await async_wait_for(
            lambda: any(b.cpu is not None for b in director.beats), what="a reading"
        )
    finally:
        stop.set()
        await running
        transport.close()
    (fault,) = agent.events.of_kind("agent.fault")
    assert fault.fields["task"] == "performance"
    assert "OSError: psutil: /proc vanished" in fault.fields["message"]
    assert agent.supervisor.gave_up is None


# --- a director in this process, agents as real processes, a relay on the wire ---

STAGE_SHOW = """
[director]
heartbeat_port = {port}
secret = "s3cret"

[detection]
heartbeat_interval = 0.05
offline_after = {offline_after}
online_after = 0.3

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


class _Side(asyncio.DatagramProtocol):
    def __init__(self, received: Callable[[bytes, tuple[str, int]], None]) -> None:
        self.received = received

    def datagram_received(self, data, addr):
        self.received(data, addr)


class Relay:
    """A UDP hop between one agent and the director, where a capture or a loss happens on a
    show network: it records the agent's heartbeats as they travel and can lose the first
    notice that carries a decision."""

    def __init__(self, director_port: int, client_ip: str, lose_first_decision: bool) -> None:
        self.director = ("127.0.0.1", director_port)
        self.client_ip = client_ip
        self.lose_first_decision = lose_first_decision
        self.heartbeats: list[bytes] = []
        self.lost: list[Placement] = []
        self.acks: list[bytes] = []
        self._agent: tuple[str, int] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._to_agent, _ = await loop.create_datagram_endpoint(
            lambda: _Side(self._from_agent), local_addr=("127.0.0.1", 0)
        )
        self._to_director, _ = await loop.create_datagram_endpoint(
            lambda: _Side(self._from_director), local_addr=(self.client_ip, 0)
        )

    @property
    def port(self) -> int:
        return self._to_agent.get_extra_info("sockname")[1]

    def _from_agent(self, packet: bytes, source: tuple[str, int]) -> None:
        self._agent = source
        self.heartbeats.append(packet)
        self._to_director.sendto(packet, self.director)

    def _from_director(self, packet: bytes, source: tuple[str, int]) -> None:
        if packet.startswith(ACK.encode() + b"\0"):
            self.acks.append(packet)
            if self._agent is not None:
                self._to_agent.sendto(packet, self._agent)
            return
        notice = decode(packet, PLACEMENT, Placement, None)
        if self.lose_first_decision and notice.event is not None and not self.lost:
            self.lost.append(notice)
            return
        if self._agent is not None:
            self._to_agent.sendto(packet, self._agent)

    def close(self) -> None:
        self._to_agent.close()
        self._to_director.close()


class Stage:
    """The director (in this process) with its show, and the agents and relays of a test."""

    def __init__(self, folder: Path, offline_after: float) -> None:
        self.folder = folder
        self.port = free_port()
        (folder / "show.toml").write_text(
            STAGE_SHOW.format(port=self.port, offline_after=offline_after)
        )
        self.secret_file = folder / "secret"
        self.secret_file.write_text("s3cret\n")
        self.director = self._director()
        self.agents: list[Process] = []
        self.relays: list[Relay] = []

    def _director(self) -> Director:
        show = load_show(self.folder / "show.toml")
        return Director(show, self.folder / "state", osc_port=0, http_port=0)

    async def restart_director(self) -> None:
        await self.director.stop()
        self.director = self._director()
        await self.director.start()

    async def relay(self, client_ip: str, lose_first_decision: bool = False) -> Relay:
        relay = Relay(self.port, client_ip, lose_first_decision)
        await relay.start()
        self.relays.append(relay)
        return relay

    def agent(self, name: str, ip: str, port: int | None = None) -> Process:
        agent = Process(
            [
                "agent",
                "--name",
                name,
                "--director",
                f"127.0.0.1:{port or self.port}",
                "--bind",
                ip,
                "--secret-file",
                str(self.secret_file),
                "--json-events",
            ]
        )
        self.agents.append(agent)
        return agent

    def kinds(self, kind: str, **fields) -> list[Event]:
        return [
            e
            for e in self.director.app.events
            if e.kind == kind and all(e.fields.get(k) == v for k, v in fields.items())
        ]

    async def online(self, *names: str) -> None:
        for name in names:
            await async_wait_for(
                lambda name=name: self.director.live.state(name) is ClientState.ONLINE,
                what=f"{name} online",
            )

    def confirmed(self, name: str) -> bool:
        return next(c.confirmed for c in self.director.status().clients if c.name == name)


@pytest.fixture
async def make_stage(tmp_path) -> AsyncIterator[Callable[..., Awaitable[Stage]]]:
    made: list[Stage] = []

    async def make(offline_after: float = 0.4) -> Stage:
        stage = Stage(tmp_path, offline_after)
        await stage.director.start()
        made.append(stage)
        return stage

    yield make
    for stage in made:
        for agent in stage.agents:
            agent.kill()
        for relay in stage.relays:
            relay.close()
        await stage.director.stop()


async def test_a_signed_heartbeat_run_captured_on_the_wire_is_never_heard_after_a_director_restart(
    make_stage,
):
    stage = await make_stage()
    relay = await stage.relay("127.0.0.11")
    agent = stage.agent("Playout1", "127.0.0.11", port=relay.port)
    await stage.online("Playout1")
    enough = len(relay.heartbeats) + 10  # more than online_after's worth of them
    await async_wait_for(lambda: len(relay.heartbeats) >= enough, what="heartbeats to capture")
    captured = list(relay.heartbeats)
    agent.kill()
    await stage.restart_director()
    restored = max(e.seq for e in stage.director.app.events)  # the event log survives

    live = stage.director.live
    replayer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    replayer.bind(("127.0.0.11", 0))  # the client's own address, as a capture would be sent
    try:
        for packet in captured:  # at the agent's own pace, longer than online_after
            replayer.sendto(packet, ("127.0.0.1", stage.port))
            await asyncio.sleep(0.05)
        await async_wait_for(
            lambda: live.heartbeats + sum(live.drops.values()) >= len(captured),
            what="the director to read the replay",
        )
    finally:
        replayer.close()
    assert live.heartbeats == 0
    assert live.drops["unwelcomed"] == len(captured)
    # Seen online before the restart and never heard since: offline (not fooled into online).
    assert live.state("Playout1") is ClientState.OFFLINE
    assert not [e for e in stage.kinds("client.online") if e.seq > restored]


async def test_a_second_agent_with_the_clients_name_and_address_cannot_displace_the_first(
    make_stage,
):
    stage = await make_stage(offline_after=1.0)
    first = stage.agent("Playout1", "127.0.0.11")
    await stage.online("Playout1")
    live = stage.director.live
    followed = live.clients["Playout1"].boot
    stage.agent("Playout1", "127.0.0.11")  # started again by mistake, or by someone else
    await async_wait_for(lambda: stage.kinds("alarm", alarm="second agent"), what="the alarm")

    # The first one stalls for longer than two heartbeats, well short of offline_after,
    # while the second keeps sending.
    first.signal(signal.SIGSTOP)
    refused = live.drops["second_agent"]

    def read() -> int:
        return live.heartbeats + sum(live.drops.values())

    before = read()
    try:
        await async_wait_for(
            lambda: read() >= before + 8, what="8 heartbeats of the second while the first stops"
        )
    finally:
        first.signal(signal.SIGCONT)
    heard = live.heartbeats
    await async_wait_for(lambda: live.heartbeats >= heard + 10, what="the first agent again")
    assert live.clients["Playout1"].boot == followed, "the first agent is still followed"
    assert live.state("Playout1") is ClientState.ONLINE
    assert live.drops["second_agent"] > refused + 8 and live.drops["replay"] == 0
    assert len(stage.kinds("alarm", alarm="second agent")) == 1
    assert not stage.kinds("client.offline")


async def test_an_agent_that_lost_the_takeover_notice_raises_the_same_event_from_the_repair(
    make_stage,
):
    stage = await make_stage()
    relay = await stage.relay("127.0.0.21", lose_first_decision=True)
    stage.agent("Playout1", "127.0.0.11")
    backup_agent = stage.agent("Backup1", "127.0.0.21", port=relay.port)
    await stage.online("Playout1", "Backup1")

    assert (await stage.director.backup.takeover("Playout1", "manual", by="test")).ok
    (original,) = stage.kinds("backup.activated")
    told = await async_wait_for(lambda: backup_agent.of_kind("backup.activated"), 5)
    (lost,) = relay.lost
    assert lost.event == original.fields, "the original notice was lost on the way"
    assert {key: told[0][key] for key in original.fields} == original.fields
    assert told[0]["plays"] == {"Playout1": ["Output 1", "Output 2"]}
    assert not backup_agent.of_kind("agent.placement")


async def test_a_takeover_is_unconfirmed_while_the_backup_agent_is_stopped(make_stage):
    stage = await make_stage(offline_after=5.0)
    stage.agent("Playout1", "127.0.0.11")
    backup_agent = stage.agent("Backup1", "127.0.0.21")
    await stage.online("Playout1", "Backup1")
    assert stage.confirmed("Playout1")

    backup_agent.signal(signal.SIGSTOP)
    try:
        assert (await stage.director.backup.takeover("Playout1", "manual")).ok
        assert not stage.confirmed("Playout1")
        (alarm,) = await async_wait_for(lambda: stage.kinds("alarm", alarm="not confirmed"), 5)
        assert alarm.fields["client"] == "Playout1"
        assert "announced to Backup1 (epoch 1)" in alarm.fields["message"]
        at = f"127.0.0.1:{stage.director.osc.port}"
        env = {**os.environ, "COLUMNS": "200"}
        table = await asyncio.to_thread(pxcontrol, "status", "--director", at, env=env)
        assert table.returncode == 0, table.stderr
        assert "Backup1 (announced, not yet confirmed by Backup1)" in table.stdout
        assert not stage.kinds("backup.confirmed")
    finally:
        backup_agent.signal(signal.SIGCONT)
    (confirmed,) = await async_wait_for(lambda: stage.kinds("backup.confirmed"), 5)
    assert confirmed.fields["client"] == "Playout1" and confirmed.fields["plays_on"] == "Backup1"
    assert confirmed.fields["epoch"] == 1 and confirmed.fields["alarmed"] is True
    assert stage.confirmed("Playout1")


async def test_an_agent_knows_its_director_is_there_from_small_acks_not_from_dropped_asks(
    make_stage,
):
    stage = await make_stage()
    relay = await stage.relay("127.0.0.11")
    agent = stage.agent("Playout1", "127.0.0.11", port=relay.port)
    await stage.online("Playout1")
    live = stage.director.live
    unwelcomed = live.drops["unwelcomed"]  # the first heartbeats of a run, before its welcome
    await async_wait_for(lambda: len(relay.acks) >= 4, what="four acknowledgements")
    # Each ack answers one heartbeat of this run that asked, and is a few bytes.
    asked = {
        (beat.boot, beat.seq)
        for beat in (decode(p, HEARTBEAT, Heartbeat, b"s3cret") for p in relay.heartbeats)
        if beat.ask
    }
    for packet in relay.acks:
        ack = decode(packet, ACK, Ack, b"s3cret")
        assert (ack.boot, ack.seq) in asked and ack.session == live.runs.session
        assert len(packet) < 200
    # Asking costs the director nothing it counts as a drop, and the agent is content.
    assert live.drops["unwelcomed"] == unwelcomed
    assert not agent.of_kind("agent.director_lost")
