"""Time limits on one loop timer: each job expires once, at its own limit, and only if not done."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pxcontrol.deadlines import Deadlines

from .conftest import async_wait_for


async def test_jobs_expire_in_the_order_of_their_deadlines_not_the_order_they_came():
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    began = loop.time()
    expired: list[tuple[str, float]] = []
    all_done = asyncio.Event()

    def expire(name: str) -> None:
        expired.append((name, loop.time() - began))
        if len(expired) == 3:
            all_done.set()

    deadlines.add("late", 0.3, lambda: expire("late"))
    deadlines.add("early", 0.05, lambda: expire("early"))  # re-arms the one timer earlier
    deadlines.add("middle", 0.15, lambda: expire("middle"))
    await asyncio.wait_for(all_done.wait(), 5)
    assert [name for name, _ in expired] == ["early", "middle", "late"]
    for (_, at), limit in zip(expired, (0.05, 0.15, 0.3), strict=True):
        assert at >= limit, "never before its limit"
    assert len(deadlines) == 0


async def test_a_discarded_job_never_expires_and_the_others_still_do():
    deadlines = Deadlines()
    expired: list[str] = []
    deadlines.add("done in time", 0.05, lambda: expired.append("done in time"))
    deadlines.add("hangs", 0.1, lambda: expired.append("hangs"))
    deadlines.discard("done in time")
    deadlines.discard("never added")  # harmless
    await async_wait_for(lambda: expired, 5)
    assert expired == ["hangs"]


async def test_a_failing_callback_is_logged_and_does_not_stop_the_others(caplog):
    deadlines = Deadlines()
    expired: list[str] = []

    def broken() -> None:
        raise RuntimeError("a bug in a caller")

    deadlines.add("broken", 0.05, broken)
    deadlines.add("fine", 0.05, lambda: expired.append("fine"))
    with caplog.at_level(logging.ERROR, logger="pxcontrol"):
        await async_wait_for(lambda: expired, 5)
    assert expired == ["fine"]
    assert "a time-limit callback failed" in caplog.text


async def test_clear_forgets_every_job():
    deadlines = Deadlines()
    expired: list[str] = []
    deadlines.add("a", 0.05, lambda: expired.append("a"))
    deadlines.clear()
    deadlines.add("b", 0.1, lambda: expired.append("b"))  # usable again after clear
    await async_wait_for(lambda: expired, 5)
    assert expired == ["b"]


@pytest.mark.parametrize("count", [1, 500])
async def test_many_jobs_with_one_limit_all_expire(count: int):
    deadlines = Deadlines()
    expired: set[int] = set()
    for i in range(count):
        deadlines.add(i, 0.05, lambda i=i: expired.add(i))
    await async_wait_for(lambda: len(expired) == count, 5)
    assert len(deadlines) == 0
