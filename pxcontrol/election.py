"""Which director is in charge: an etcd lease held on one key, renewed, and given up in time.

One director holds the key `pxcontrol/<show>/director` with a lease; the others stand
by and try to create the key whenever it is gone. The holder renews the lease; if it
cannot renew it stops commanding `margin` seconds BEFORE the lease could expire, by its
own clock, measured from when it sent the last renewal that etcd accepted (etcd counts
the lease from when it received it, which is later). A router cannot be fenced from the
outside, so a deposed director fences itself: `in_charge()` reads the clock at every
call, so a director that wakes from a pause is out of charge before any of its tasks runs.

The term of a tenure is the etcd revision at which its key was created: it grows with
every new holder, and is what decisions will carry with the placement epoch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from pxcontrol.etcd import Etcd, EtcdError, EtcdUnavailable, KeyValue

log = logging.getLogger("pxcontrol.election")


def _boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


#: The clock of a tenure. Linux's monotonic clock stops while the machine is suspended (a
#: laptop lid, a paused VM): a director that resumed would think its lease still ran.
#: CLOCK_BOOTTIME counts the suspended time too. Elsewhere, the monotonic clock.
tenure_clock: Callable[[], float] = _boottime if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic


class Role(StrEnum):
    ACTIVE = "active"  # this director holds the lease and commands
    STANDBY = "standby"  # another one does, or none can (etcd unreachable)


@dataclass(frozen=True)
class Holder:
    """A director as the election key names it."""

    name: str
    address: str
    term: int = 0

    def as_value(self) -> str:
        return json.dumps({"name": self.name, "address": self.address})

    @classmethod
    def of(cls, kv: KeyValue) -> Holder:
        try:
            value = json.loads(kv.value)
            return cls(str(value["name"]), str(value["address"]), kv.create_revision)
        except (ValueError, KeyError, TypeError):
            return cls(kv.value or "?", "?", kv.create_revision)


class Tenure:
    """The holder's own deadline: in charge until `sent + ttl - margin` of the last renewal."""

    def __init__(self, margin: float, clock: Callable[[], float] = tenure_clock) -> None:
        self.margin = margin
        self.clock = clock
        self.deadline = -math.inf

    def renewed(self, sent_at: float, ttl: float) -> None:
        """etcd accepted a grant or renewal sent at `sent_at` for `ttl` seconds."""
        self.deadline = max(self.deadline, sent_at + ttl - self.margin)

    def end(self) -> None:
        self.deadline = -math.inf

    def in_charge(self) -> bool:
        return self.clock() < self.deadline

    def left(self) -> float:
        """Seconds of charge left (negative once out of charge)."""
        return self.deadline - self.clock()


@dataclass(frozen=True)
class Timing:
    """An election's timing, all from the lease (whole seconds: etcd counts leases so)."""

    lease: int
    margin: float  # out of charge this long before the lease could expire
    renew_every: float  # the holder renews this often
    poll_every: float  # a standby looks for a free key this often

    @classmethod
    def of(cls, lease: int) -> Timing:
        return cls(lease=lease, margin=lease / 4, renew_every=lease / 5, poll_every=lease / 10)


class Election:
    """Campaign for charge of the show, hold it while etcd renews it, stand by otherwise.

    `changed(role, holder)` is called on the loop whenever this director's role or the
    known holder changes; holder None means no director is known to be in charge.
    """

    def __init__(
        self,
        etcd: Etcd,
        key: str,
        me: Holder,
        timing: Timing,
        changed: Callable[[Role, Holder | None, str], None],
        clock: Callable[[], float] = tenure_clock,
    ) -> None:
        self.etcd = etcd
        self.key = key
        self.me = me
        self.timing = timing
        self.tenure = Tenure(timing.margin, clock)
        self.clock = clock
        self._changed = changed
        self.lease = 0
        self.term = 0
        self.holder: Holder | None = None  # who is in charge, as last seen
        self.reachable = True  # etcd answered the last call
        self._told: tuple[Role, Holder | None] | None = None

    # --- what the director asks ---

    def in_charge(self) -> bool:
        return self.lease != 0 and self.tenure.in_charge()

    @property
    def role(self) -> Role:
        return Role.ACTIVE if self.in_charge() else Role.STANDBY

    def other(self) -> Holder | None:
        """The director in charge when it is not this one."""
        holder = self.holder
        return None if holder is None or holder.name == self.me.name else holder

    # --- the loop ---

    async def run(self) -> None:
        try:
            while True:
                if self.lease:
                    await self._hold()
                else:
                    await self._campaign()
        finally:
            await self._resign()

    async def _campaign(self) -> None:
        """One look at the key; take it when it is free. Then wait a poll."""
        budget = self.timing.poll_every * 3
        try:
            held = await self.etcd.get(self.key, timeout=budget)
            if held is None:
                await self._try_create(budget)
            else:
                self.holder = Holder.of(held)
            self.reachable = True
        except EtcdUnavailable as exc:
            self._unreachable(exc)
        except EtcdError as exc:
            log.warning("etcd refused the election: %s", exc)
        self._tell()
        if not self.lease:
            await asyncio.sleep(self.timing.poll_every)

    async def _try_create(self, budget: float) -> None:
        sent = self.clock()
        lease = await self.etcd.grant(self.timing.lease, timeout=budget)
        try:
            created = await self.etcd.create(self.key, self.me.as_value(), lease, timeout=budget)
        except BaseException:
            await self._forget(lease)
            raise
        if not created.ok:
            await self._forget(lease)
            self.holder = Holder.of(created.held) if created.held is not None else None
            return
        self.lease = lease
        self.term = created.revision
        self.tenure.renewed(sent, self.timing.lease)
        self.holder = Holder(self.me.name, self.me.address, self.term)

    async def _hold(self) -> None:
        """Renew the lease at its pace; out of charge the moment it cannot be renewed in time."""
        await asyncio.sleep(max(0.0, min(self.timing.renew_every, self.tenure.left())))
        if not self.tenure.in_charge():
            await self._step_down("the lease could not be renewed in time")
            return
        sent = self.clock()
        try:
            ttl = await self.etcd.keepalive(self.lease, timeout=max(0.01, self.tenure.left()))
        except EtcdUnavailable as exc:
            self._unreachable(exc)
            if not self.tenure.in_charge():
                await self._step_down(f"the lease could not be renewed in time: {exc}")
            return
        except EtcdError as exc:
            await self._step_down(f"etcd refused to renew the lease: {exc}")
            return
        self.reachable = True
        if ttl <= 0:
            await self._step_down("the lease expired")
            return
        self.tenure.renewed(sent, ttl)

    async def _step_down(self, why: str) -> None:
        log.warning("%s is no longer in charge: %s", self.me.name, why)
        self.tenure.end()
        lease, self.lease, self.term = self.lease, 0, 0
        self.holder = None
        self._tell(why)
        await self._forget(lease)  # its key goes with it: any director may take charge now

    async def _forget(self, lease: int) -> None:
        with contextlib.suppress(EtcdUnavailable, EtcdError):
            await self.etcd.revoke(lease, timeout=self.timing.poll_every * 3)

    async def _resign(self) -> None:
        """Stopping: out of charge now, and the key freed for the standby at once."""
        if not self.lease:
            return
        self.tenure.end()
        lease, self.lease = self.lease, 0
        with contextlib.suppress(EtcdUnavailable, EtcdError, asyncio.CancelledError):
            await asyncio.shield(self.etcd.revoke(lease, timeout=self.timing.poll_every * 3))

    def _unreachable(self, exc: Exception) -> None:
        if self.reachable:
            log.warning("etcd unreachable: %s", exc)
        self.reachable = False
        if not self.lease:
            self.holder = None  # nobody is known to be in charge

    def _tell(self, why: str = "") -> None:
        now = (self.role, self.holder)
        if now != self._told:
            self._told = now
            self._changed(self.role, self.holder, why)
