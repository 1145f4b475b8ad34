"""The agent's side of health: checks from the director's notice, an extra heartbeat when one
fails or recovers, and an agent that says so when the director stops answering mid-show."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from pathlib import Path

from pxcontrol.agent import Agent
from pxcontrol.heartbeat import HEARTBEAT, PLACEMENT, Heartbeat, Placement, decode, encode
from pxcontrol.plugins import make_plugin_manager
from pxcontrol.testing import Rig

from .conftest import async_wait_for


class FakeDirector(asyncio.DatagramProtocol):
    """A UDP socket that collects heartbeats and answers the first with a notice."""

    def __init__(self, notice: Placement) -> None:
        self.notice = notice
        self.beats: list[Heartbeat] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        beat = decode(data, HEARTBEAT, Heartbeat, None)
        self.beats.append(beat)
        if len(self.beats) == 1:
            answer = self.notice.model_copy(update={"boot": beat.boot, "seq": beat.seq})
            self.transport.sendto(encode(PLACEMENT, answer, None), addr)


async def test_a_failed_check_travels_at_once_in_an_extra_heartbeat(tmp_path: Path):
    name = f"pxp{os.getpid() % 100000}"  # unique here, and short enough for the kernel
    player = tmp_path / name
    shutil.copy(shutil.which("sleep") or "/bin/sleep", player)
    proc = await asyncio.create_subprocess_exec(str(player), "600")
    check = {"process": name, "interval": 0.05, "fall": 1, "rise": 1}
    # An hour between scheduled heartbeats: any heartbeat after the welcome is an extra one.
    notice = Placement(epoch=1, interval=3600, placement={}, session="s1", checks=[check])
    loop = asyncio.get_running_loop()
    transport, director = await loop.create_datagram_endpoint(
        lambda: FakeDirector(notice), local_addr=("127.0.0.1", 0)
    )
    pm, _ = make_plugin_manager()
    agent = Agent("Playout1", transport.get_extra_info("sockname"), pm)
    stop = asyncio.Event()
    running = loop.create_task(agent.run(stop))

    def in_session() -> list[Heartbeat]:  # not the agent's questions to the director
        return [b for b in director.beats if b.session == "s1"]

    try:
        await async_wait_for(lambda: agent.checks.running, what="the check from the notice")
        await async_wait_for(lambda: agent.checks.running[0].check.pid == proc.pid)
        # The heartbeat scheduled before the notice set the hour (0.1 s after the first) is
        # sent first: from then on every heartbeat is an extra one.
        await async_wait_for(
            lambda: agent.seq >= 2 and len(director.beats) == agent.seq,
            what="the last scheduled heartbeat, received",
        )
        before = len(in_session())
        proc.kill()
        await proc.wait()
        extra = lambda: in_session()[before:]  # noqa: E731
        await async_wait_for(extra, what="a heartbeat saying the check failed")
        failed = extra()[0].failed
        assert failed is not None and failed.check == f"process {name}"
        assert failed.message.startswith(f"process '{name}' (pid ")
        assert [e.kind for e in agent.events if e.kind.startswith("check.")] == ["check.failed"]
        proc = await asyncio.create_subprocess_exec(str(player), "600")
        await async_wait_for(lambda: len(extra()) == 2, what="a heartbeat saying recovered")
        assert extra()[1].failed is None
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        stop.set()
        await running
        transport.close()


SHOW = """
[director]
heartbeat_port = {heartbeat_port}

[[clients]]
name = "Playout1"
ip = "127.0.0.11"
"""


def test_an_agent_says_when_the_director_stops_answering_and_carries_on(tmp_path: Path):
    rig = Rig(tmp_path, SHOW)
    try:
        director = rig.start_director()
        rig.start_clients(Playout1="127.0.0.11")
        agent = rig.agents["Playout1"]
        director.signal(signal.SIGSTOP)
        stopped = time.monotonic()
        lost = agent.wait_event("agent.director_lost", timeout=5)
        assert lost["_seen"] - stopped < 2.0, "the agent says so within 2 s"
        assert any("has not answered" in line for line in agent.output)
        director.signal(signal.SIGCONT)
        # It carried on: the director, back, answers the heartbeats it still sends.
        agent.wait_event("agent.director_back")
        director.wait_event("alarm", alarm="director stalled")
        assert agent.proc.poll() is None and not director.of_kind("client.offline")
    finally:
        rig.close()


RELOAD_SHOW = """
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
CHECKS
"""


def test_checks_changed_in_the_show_reach_the_agent(tmp_path: Path):
    """The show is the one source of a client's checks: a saved edit that adds a failing
    check fails the client, and one that takes it out again recovers it (the reload sends
    the new list at once; the agent's own questions to the director would bring it too)."""
    import socket as sockets

    with sockets.socket() as probe:  # a port nothing listens on: the tcp check fails
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    failing = f'checks = [{{ tcp = "127.0.0.1:{closed}", interval = 0.05, fall = 1, rise = 1 }}]'
    rig = Rig(tmp_path, RELOAD_SHOW.replace("CHECKS", ""))
    try:
        director = rig.start_director()
        rig.start_clients(Playout1="127.0.0.11")
        show = tmp_path / "show.toml"
        show.write_text(
            show.read_text().replace(
                'outputs = ["Output 1"]\n', f'outputs = ["Output 1"]\n{failing}\n'
            )
        )
        failed = director.wait_event("client.failed", client="Playout1")
        assert failed["check"].startswith("tcp 127.0.0.1:")
        after = len(director.events)
        show.write_text(show.read_text().replace(failing, ""))  # the check is taken out
        director.wait_event("client.recovered", after=after, client="Playout1")
    finally:
        rig.close()
