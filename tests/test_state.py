"""The show's state has one director at a time."""

from __future__ import annotations

import pytest

from pxcontrol.state import StateInUse, StateStore


async def test_a_second_director_on_the_same_state_is_refused(tmp_path):
    first = StateStore(tmp_path / "state.sqlite")
    await first.open()
    second = StateStore(tmp_path / "state.sqlite")
    with pytest.raises(StateInUse, match=r"another director \(pid \d+\) is running this show"):
        await second.open()
    await second.close()
    await first.close()
    third = StateStore(tmp_path / "state.sqlite")
    await third.open()  # free again once the first has stopped
    await third.close()
