"""The agent's heartbeats go out on schedule whatever its plugins return."""

from __future__ import annotations

import asyncio

import pytest

from pxcontrol import hookimpl
from pxcontrol.agent import Agent
from pxcontrol.heartbeat import HEARTBEAT, Heartbeat, decode
from pxcontrol.plugins import make_plugin_manager

from .conftest import async_wait_for


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


@pytest.mark.parametrize("plugin", [NotJson, Huge, Broken], ids=lambda p: p.__name__)
async def test_bad_plugin_figures_never_stop_or_bloat_the_heartbeat(plugin):
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
    assert last.extra in ({"fps": 59.94}, {})
    if plugin is Broken:
        assert last.extra == {"fps": 59.94}, "the good plugin's figures still travel"


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
