"""Alarms the election alone does not raise: another director lost or back, an etcd member
lost or back.

Each director keeps a presence key, `<election key>/present/<name>`, under a lease of
twice the election's, renewed every half lease: a director whose key is gone has stopped,
or lost its network (or etcd). Each director also asks every etcd member, itself, how it
is: a member that does not answer is lost for the show even while the others keep a
quorum, and the show then survives no further loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from pxcontrol.etcd import Etcd, EtcdError, EtcdUnavailable

log = logging.getLogger("pxcontrol.standby")


class StandbyWatch:
    def __init__(
        self,
        etcd: Etcd,
        election_key: str,
        name: str,
        address: str,
        others: list[str],
        lease: int,
        emit: Callable[..., Any],
    ) -> None:
        self.etcd = etcd
        self.prefix = f"{election_key}/present/"
        self.name = name
        self.address = address
        self.others = others
        self.lease = lease
        self._emit = emit
        self.present: set[str] | None = None  # the directors etcd has a presence key of
        self.lost: set[str] = set()  # directors said lost and not yet back
        self.members_down: set[str] = set()
        self._presence = 0

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._keep_present())
                group.create_task(self._look())
        finally:
            if self._presence:  # stopping: the others hear of it now, not two leases later
                with contextlib.suppress(EtcdUnavailable, EtcdError, asyncio.CancelledError):
                    await asyncio.shield(self.etcd.revoke(self._presence, timeout=self.lease / 2))

    async def _keep_present(self) -> None:
        budget = self.lease / 2
        while True:
            try:
                if not self._presence or await self.etcd.keepalive(self._presence, budget) <= 0:
                    self._presence = await self.etcd.grant(2 * self.lease, budget)
                    await self.etcd.put(
                        self.prefix + self.name, self.address, self._presence, budget
                    )
            except (EtcdUnavailable, EtcdError) as exc:
                log.debug("presence of %s not renewed: %s", self.name, exc)
            await asyncio.sleep(self.lease / 2)

    async def _look(self) -> None:
        while True:
            await self._look_at_members()
            await self._look_at_directors()
            await asyncio.sleep(self.lease)

    async def _look_at_members(self) -> None:
        async def answers(endpoint: str) -> bool:
            try:
                await self.etcd.member_status(endpoint, self.lease / 2)
            except EtcdUnavailable:
                return False
            return True

        endpoints = self.etcd.endpoints
        up = await asyncio.gather(*(answers(e) for e in endpoints))
        for endpoint, answered in zip(endpoints, up, strict=True):
            if not answered and endpoint not in self.members_down:
                self.members_down.add(endpoint)
                left = len(endpoints) - len(self.members_down)
                self._emit(
                    "alarm",
                    client="",
                    alarm="etcd member lost",
                    message=f"etcd member {endpoint} does not answer {self.name}: {left} of "
                    f"{len(endpoints)} answer. "
                    + (
                        "The show goes on, and survives no further loss: bring it back"
                        if 2 * left > len(endpoints)
                        else "Without a majority no director is in charge: bring it back"
                    ),
                    endpoint=endpoint,
                )
            elif answered and endpoint in self.members_down:
                self.members_down.discard(endpoint)
                self._emit(
                    "alarm",
                    client="",
                    alarm="etcd member back",
                    message=f"etcd member {endpoint} answers {self.name} again",
                    endpoint=endpoint,
                )

    async def _look_at_directors(self) -> None:
        try:
            keys = await self.etcd.get_prefix(self.prefix, self.lease / 2)
        except (EtcdUnavailable, EtcdError):
            return  # no quorum: "no director in charge" says it
        present = {kv.key.removeprefix(self.prefix) for kv in keys}
        before, self.present = self.present, present
        for other in self.others:
            seen_before = before is not None and other in before
            if other not in present and seen_before and other not in self.lost:
                self.lost.add(other)
                self._emit(
                    "alarm",
                    client="",
                    alarm="director lost",
                    message=f"director {other} is no longer heard by etcd: it stopped, or "
                    "lost its network. Until it is back, the show has one director fewer",
                    director=other,
                )
            elif other in present and other in self.lost:
                self.lost.discard(other)
                self._emit(
                    "alarm",
                    client="",
                    alarm="director back",
                    message=f"director {other} is heard by etcd again",
                    director=other,
                )
