"""Supervised work: a death is logged, reported and restarted; one that keeps dying gives up."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from pxcontrol.supervisor import Death, Supervisor

from .conftest import async_wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_task_that_raises_is_logged_reported_and_started_again(caplog):
    deaths: list[Death] = []
    supervisor = Supervisor(on_death=deaths.append, first_delay=0)
    runs = 0
    finished = asyncio.Event()

    async def work() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("boom")
        finished.set()

    with caplog.at_level(logging.ERROR, "pxcontrol.supervisor"):
        supervisor.start("detector", work)
        await asyncio.wait_for(finished.wait(), 5)
    assert runs == 2
    (death,) = deaths
    assert death.name == "detector" and not death.giving_up
    assert "RuntimeError: boom" in death.message and "started again" in death.message
    assert "Traceback" in caplog.text and "boom" in caplog.text  # the traceback is logged
    assert supervisor.restarts == 1
    await supervisor.stop()


async def test_a_task_that_keeps_dying_gives_up_once_within_the_window():
    clock = Clock()
    gave_up: list[Death] = []
    supervisor = Supervisor(
        on_give_up=gave_up.append, clock=clock, give_up_after=3, window=60, first_delay=0
    )

    async def work() -> None:
        clock.now += 1
        raise OSError("disk gone")

    supervisor.start("state writer", work)
    await async_wait_for(lambda: gave_up, what="the supervisor to give up")
    (death,) = gave_up
    assert death.giving_up and death.deaths == 3
    assert "failed 3 times within 60 s" in death.message
    assert supervisor.gave_up is death
    await supervisor.stop()


async def test_deaths_spread_beyond_the_window_never_give_up():
    clock = Clock()
    gave_up: list[Death] = []
    deaths: list[Death] = []
    supervisor = Supervisor(
        on_death=deaths.append,
        on_give_up=gave_up.append,
        clock=clock,
        give_up_after=3,
        first_delay=0,
    )

    async def work() -> None:
        clock.now += 61  # one death a minute: a flaky device, not a broken director
        if len(deaths) < 6:
            raise OSError("again")

    supervisor.start("bridge", work)
    await async_wait_for(lambda: len(deaths) == 6, what="six deaths")
    assert not gave_up and all(d.deaths == 1 for d in deaths)
    await supervisor.stop()


async def test_a_thread_that_raises_is_reported_on_the_loop_and_started_again():
    deaths: list[Death] = []
    supervisor = Supervisor(on_death=deaths.append, first_delay=0)
    runs = 0
    threads: set[str] = set()
    finished = threading.Event()

    def work() -> None:
        nonlocal runs
        runs += 1
        threads.add(threading.current_thread().name)
        if runs < 3:
            raise ValueError(f"bad packet {runs}")
        finished.set()

    supervisor.start_thread("heartbeat reader", work, asyncio.get_running_loop())
    await async_wait_for(finished.is_set, what="the third run")
    assert [d.error.args[0] for d in deaths] == ["bad packet 1", "bad packet 2"]
    assert threads == {"heartbeat reader"}
    await supervisor.stop()


async def test_cancelled_work_is_not_a_death():
    deaths: list[Death] = []
    supervisor = Supervisor(on_death=deaths.append, first_delay=0)
    started = asyncio.Event()

    async def work() -> None:
        started.set()
        await asyncio.sleep(3600)

    task = supervisor.start("web page", work)
    await started.wait()
    await supervisor.stop()
    assert task.cancelled() and not deaths
    with pytest.raises(asyncio.CancelledError):
        await task
