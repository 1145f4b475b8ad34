"""Observers are called as pluggy calls hooks (only the arguments they name), each apart,
async ones as kept tasks with one time limit — on the director and on the agent alike."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pxcontrol import hookimpl, observers
from pxcontrol.agent import Agent
from pxcontrol.app import App
from pxcontrol.events import EventLog
from pxcontrol.loading import load_show
from pxcontrol.observers import Observers
from pxcontrol.plugins import make_plugin_manager

from .conftest import async_wait_for

NO_ARGUMENTS = """
from pxcontrol import hookimpl

SEEN = []

@hookimpl
def observe_event():
    SEEN.append(1)
"""


async def test_a_dropin_observer_that_names_no_argument_hears_every_event(write_show, caplog):
    path = write_show('[modules.Log]\ntype = "log"\n', {"counter.py": NO_ARGUMENTS})
    app = App(load_show(path))
    (counter,) = [p for n, p in app.pm.list_name_plugin() if n.endswith("counter.py")]
    with caplog.at_level(logging.ERROR):
        app.emit("show.test")
        app.emit("show.test")
    assert counter.SEEN == [1, 1]
    assert not [r for r in caplog.records if "failed observing" in r.getMessage()]


class Raises:
    @hookimpl(tryfirst=True)
    def observe_event(self, event):
        raise RuntimeError("a plugin's bug")


class Hangs:
    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = False

    @hookimpl
    async def observe_event(self, event):
        self.started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled = True
            raise


class Hears:
    def __init__(self) -> None:
        self.kinds: list[str] = []

    @hookimpl(trylast=True)
    def observe_event(self, event):
        self.kinds.append(event.kind)


@pytest.fixture
def short_limit(monkeypatch):
    monkeypatch.setattr(observers, "OBSERVER_TIMEOUT", 0.2)


async def test_one_observer_raising_or_hanging_keeps_no_other_from_hearing(short_limit, caplog):
    pm, _ = make_plugin_manager()
    hangs, hears = Hangs(), Hears()
    for plugin in (Raises(), hangs, hears):
        pm.register(plugin)
    told = Observers(lambda: pm)
    events = EventLog()
    told.tell(events.add("client.offline", {}))
    assert hears.kinds == ["client.offline"]  # after the one that raised (tryfirst)
    assert "failed observing client.offline" in caplog.text
    (task,) = told.tasks  # the hanging one is kept while it runs ...
    await hangs.started.wait()
    await async_wait_for(lambda: not told.tasks, what="the hanging observer cut off")
    assert hangs.cancelled and task.done()  # ... and cut off at the time limit
    assert "took longer than 0.2 s observing client.offline" in caplog.text


async def test_the_agent_calls_its_observers_the_same_way(short_limit, caplog):
    pm, _ = make_plugin_manager()
    hangs, hears = Hangs(), Hears()
    pm.register(hangs)
    pm.register(hears)
    agent = Agent("Playout1", ("127.0.0.1", 9), pm)
    agent._observe("agent.director_lost", {"director": "127.0.0.1:9"})
    assert hears.kinds == ["agent.director_lost"]
    assert len(agent.observers.tasks) == 1  # kept, not dropped (a task nobody holds may vanish)
    await async_wait_for(lambda: hangs.cancelled, what="the agent's observer cut off")
