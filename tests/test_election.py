"""Electing the director in charge: a leased etcd key, renewed, and given up before it can expire.

The tenure's arithmetic is tested on a clock the test turns; the election itself runs
against a real three-member etcd on loopback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import pytest

from pxcontrol.election import Election, Holder, Role, Tenure, Timing
from pxcontrol.etcd import Etcd
from pxcontrol.etcd_cluster import EtcdCluster
from pxcontrol.standby_state import StateInEtcd
from pxcontrol.state import StateNotSaved

from .conftest import async_wait_for
from .etcd_fixtures import etcd

__all__ = ["etcd"]


class TurnedClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_tenure_ends_a_margin_before_the_lease_counted_from_when_the_renewal_was_sent():
    clock = TurnedClock()
    tenure = Tenure(margin=0.25, clock=clock)
    assert not tenure.in_charge()
    tenure.renewed(sent_at=100.0, ttl=1)
    clock.now = 100.7499
    assert tenure.in_charge()
    clock.now = 100.75
    assert not tenure.in_charge()  # etcd keeps the lease until 101.0 at the earliest
    # A renewal whose answer came late counts from when it was sent, never from now.
    tenure.renewed(sent_at=100.5, ttl=1)
    assert tenure.in_charge() and tenure.left() == 0.5
    # An older renewal answered after a newer one never shortens the tenure.
    tenure.renewed(sent_at=100.2, ttl=1)
    assert tenure.deadline == 101.25
    tenure.end()
    assert not tenure.in_charge()


class JumpingClock:
    """The real clock, plus the jumps a test makes (a process that wakes from a pause)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


class Seen:
    """Every role change one director was told of, with when."""

    def __init__(self) -> None:
        self.changes: list[tuple[float, Role, Holder | None, str]] = []

    def __call__(self, role: Role, holder: Holder | None, why: str) -> None:
        self.changes.append((time.monotonic(), role, holder, why))


@asynccontextmanager
async def running(
    cluster: EtcdCluster, name: str, key: str, clock: Callable[[], float] = time.monotonic
) -> AsyncIterator[tuple[Election, Seen]]:
    seen = Seen()
    client = Etcd(cluster.endpoints, timeout=0.5)
    election = Election(
        client, key, Holder(name, f"10.0.0.{len(name)}"), Timing.of(1), seen, clock=clock
    )
    task = asyncio.create_task(election.run())
    try:
        yield election, seen
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()


async def test_one_takes_charge_the_other_stands_by_naming_it_and_its_term(etcd: EtcdCluster):
    async with running(etcd, "DirA", "show1/director") as (a, seen_a):
        await async_wait_for(a.in_charge, 10, "DirA in charge")
        async with running(etcd, "DirB", "show1/director") as (b, seen_b):
            await async_wait_for(lambda: b.holder is not None, 10, "DirB to see the holder")
            assert not b.in_charge() and b.role is Role.STANDBY
            assert b.other() == Holder("DirA", "10.0.0.4", a.term)
            assert a.term > 0
            held = await a.etcd.get("show1/director")
            assert held is not None and held.create_revision == a.term
            assert seen_a.changes[-1][1:3] == (Role.ACTIVE, Holder("DirA", "10.0.0.4", a.term))
            assert seen_b.changes[-1][1:3] == (Role.STANDBY, Holder("DirA", "10.0.0.4", a.term))
        # DirA stays in charge all along: renewals keep it.
        assert a.in_charge()
        assert [c[1] for c in seen_a.changes] == [Role.ACTIVE]


async def test_a_clean_stop_hands_over_at_once_with_a_newer_term(etcd: EtcdCluster):
    async with AsyncExitStack() as stack:
        a, _ = await stack.enter_async_context(running(etcd, "DirA", "show2/director"))
        await async_wait_for(a.in_charge, 10, "DirA in charge")
        first, lease = a.term, a.lease
        async with running(etcd, "DirB", "show2/director") as (b, _):
            await async_wait_for(lambda: b.holder is not None, 10, "DirB to see DirA")
            await stack.aclose()  # DirA stops, and revokes its lease on the way out
            # Revoked, not left to expire: renewing it now finds it gone.
            assert await b.etcd.keepalive(lease) == 0
            await async_wait_for(b.in_charge, 10, "DirB in charge")
            assert b.term > first


async def test_a_director_whose_clock_passed_its_deadline_is_out_of_charge_before_any_await(
    etcd: EtcdCluster,
):
    """A director that wakes from a pause: its clock jumped. Nothing of it runs in between,
    yet it is out of charge the instant it asks, and then gives its lease up."""
    clock = JumpingClock()
    async with running(etcd, "DirA", "show3/director", clock) as (a, seen):
        await async_wait_for(a.in_charge, 10, "DirA in charge")
        clock.offset += 0.75  # lease - margin: past the deadline of any renewal sent before
        assert not a.in_charge()
        assert a.role is Role.STANDBY
        stepped_down = await async_wait_for(
            lambda: [c for c in seen.changes if c[1] is Role.STANDBY], 5, "DirA to step down"
        )
        assert "could not be renewed in time" in stepped_down[0][3]


async def test_cut_from_etcd_the_holder_is_out_of_charge_before_the_standby_takes_it(
    etcd: EtcdCluster,
):
    async with running(etcd, "DirA", "show4/director") as (a, seen_a):
        await async_wait_for(a.in_charge, 10, "DirA in charge")
        async with running(etcd, "DirB", "show4/director") as (b, seen_b):
            await async_wait_for(lambda: b.holder is not None, 10, "DirB to see DirA")
            a.etcd.endpoints = ["http://127.0.0.1:9"]  # refused: DirA can no longer renew
            await async_wait_for(b.in_charge, 10, "DirB in charge")
            out_a = next(t for t, role, _, _ in seen_a.changes if role is Role.STANDBY)
            in_b = next(t for t, role, _, _ in seen_b.changes if role is Role.ACTIVE)
            # DirA's own deadline passed before DirB even held the key.
            assert a.tenure.deadline == -float("inf")  # it ended
            assert out_a < in_b
            assert b.term > 0 and b.other() is None


async def test_the_shared_state_refuses_a_director_whose_key_is_gone_whatever_its_clock(
    etcd: EtcdCluster,
):
    """etcd fences the state: a director that still believes itself in charge (its clock
    lagged, it woke late) cannot overwrite what the director now in charge wrote."""
    clients: list[Etcd] = []
    try:
        await _fenced_state(etcd, clients)
    finally:
        for client in clients:
            await client.close()


async def _fenced_state(etcd: EtcdCluster, clients: list[Etcd]) -> None:
    async with AsyncExitStack() as stack:
        a, _ = await stack.enter_async_context(running(etcd, "DirA", "show5/director"))
        await async_wait_for(a.in_charge, 10, "DirA in charge")
        term_a = a.term
        own = Etcd(etcd.endpoints)  # DirA's connection, kept after its election ends
        clients.append(own)
        believes = StateInEtcd(own, "DirA", lambda: (term_a, 10.0), "show5/director")
        await believes.save(1, {"Playout1": "Backup1"}, {})
        async with running(etcd, "DirB", "show5/director") as (b, _):
            await stack.aclose()  # DirA is gone; what it believed is not
            await async_wait_for(b.in_charge, 10, "DirB in charge")
            now = StateInEtcd(b.etcd, "DirB", lambda: (b.term, b.tenure.left()), "show5/director")
            first = await now.load(timeout=1.0)
            assert first is not None and (first.epoch, first.by) == (1, "DirA")
            await now.save(2, {"Playout1": "Playout1"}, {"Playout1": False})
            with pytest.raises(StateNotSaved, match=f"its election key of term {term_a} is gone"):
                await believes.save(3, {"Playout1": "Backup1"}, {})
            kept = await now.load(timeout=1.0)
            assert kept is not None
            assert (kept.epoch, kept.placement, kept.by) == (2, {"Playout1": "Playout1"}, "DirB")
