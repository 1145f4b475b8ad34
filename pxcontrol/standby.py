"""This director's part in a show with standby directors: its role, the refusal, the alarms.

`Standby` runs the election (pxcontrol.election) for one `[[directors]]` entry and
answers the rest of the director: is it in charge now (read from the clock at every
ask), what to say when it is not, who is. It turns role changes into events
(`director.active`, `director.standby`) and raises the alarm when no director has been
in charge for a whole lease (etcd's quorum lost), and says so when one is again; its
watch (pxcontrol.standby_watch) says when another director or an etcd member is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pxcontrol.election import Election, Holder, Role, Timing, tenure_clock
from pxcontrol.etcd import Etcd, EtcdError, EtcdUnavailable
from pxcontrol.show import DirectorDecl, ShowFile
from pxcontrol.standby_state import StateInEtcd
from pxcontrol.standby_watch import StandbyWatch
from pxcontrol.state import StateNotSaved

log = logging.getLogger("pxcontrol.standby")

#: `reason` of a decision or command refused because this director is not in charge.
STANDBY = "standby"


@dataclass(frozen=True)
class DirectorPorts:
    """Where one director listens: its [[directors]] entry over the show's [director]."""

    bind: str
    osc_port: int
    http_port: int
    heartbeat_port: int


def director_ports(show: ShowFile, name: str) -> DirectorPorts:
    decl = show.director_named(name)
    base = show.director
    if decl is None:
        raise LookupError(name)
    return DirectorPorts(
        bind=str(decl.bind if decl.bind is not None else base.bind),
        osc_port=decl.osc_port if decl.osc_port is not None else base.osc_port,
        http_port=decl.http_port if decl.http_port is not None else base.http_port,
        heartbeat_port=decl.heartbeat_port
        if decl.heartbeat_port is not None
        else base.heartbeat_port,
    )


def address_of(show: ShowFile, decl: DirectorDecl) -> str:
    """How a console reaches a director: its ip and OSC port."""
    return f"{decl.ip}:{director_ports(show, decl.name).osc_port}"


def which_director(show: ShowFile, name: str | None) -> str | None:
    """Why `run --as NAME` cannot run this show as given (None: it can)."""
    names = ", ".join(d.name for d in show.directors)
    if name is None:
        if show.directors:
            return (
                f"the show lists standby directors ({names}): say which one this is, "
                f"e.g. pxcontrol run SHOW --as {show.directors[0].name}"
            )
        return None
    if not show.directors:
        return (
            f"--as {name}: the show lists no [[directors]]; run it without --as, or list "
            "the directors and the etcd cluster (docs/standby.md)"
        )
    if show.director_named(name) is None:
        return f"--as {name}: the show lists no director called {name!r} (its directors: {names})"
    return None


class NotADirector(Exception):
    """`run --as NAME` names no [[directors]] entry: the message lists those there are."""


class Standby:
    def __init__(
        self,
        show: ShowFile,
        name: str,
        emit: Callable[..., Any],
        clock: Callable[[], float] = tenure_clock,
    ) -> None:
        decl = show.director_named(name)
        if decl is None or show.redundancy is None:
            names = ", ".join(d.name for d in show.directors) or "none"
            raise NotADirector(
                f"the show lists no director called {name!r} (its [[directors]]: {names})"
            )
        redundancy = show.redundancy
        self.name = name
        self.address = address_of(show, decl)
        self.others = [d.name for d in show.directors if d.name != name]
        self._emit = emit
        self.timing = Timing.of(int(redundancy.lease))
        self.etcd = Etcd(redundancy.etcd, timeout=self.timing.lease / 2)
        self.election = Election(
            self.etcd,
            redundancy.key,
            Holder(name, self.address),
            self.timing,
            self._changed,
            clock,
        )
        self.watch = StandbyWatch(
            self.etcd,
            redundancy.key,
            name,
            self.address,
            self.others,
            self.timing.lease,
            emit,
        )
        self.state = StateInEtcd(self.etcd, name, self._charge, redundancy.key)
        # Set by the director: bring the show's state from etcd (or put its own there); and
        # what to do once in charge (the takeovers that waited for a director in charge).
        self.take_over_state: Callable[[], Awaitable[None]] | None = None
        self.in_charge_again: Callable[[], Awaitable[None]] | None = None
        self.ready_term = 0  # the term whose state is in hand: until then, nothing is decided
        self._taking: asyncio.Task[None] | None = None
        self._leaderless: asyncio.TimerHandle | None = None
        self.charged = asyncio.Event()  # set while this director is in charge, state in hand
        self.alarmed = False  # the "no director in charge" alarm is up

    # --- asked by the director ---

    def in_charge(self) -> bool:
        """Holding the lease, with the show's state in hand."""
        return self.election.in_charge() and self.ready_term == self.election.term

    @property
    def role(self) -> Role:
        return Role.ACTIVE if self.in_charge() else Role.STANDBY

    @property
    def term(self) -> int:
        holder = self.election.holder
        return holder.term if holder is not None else 0

    def in_charge_now(self) -> Holder | None:
        """The director in charge as this one knows it (itself included), None if none is."""
        if self.in_charge():
            return Holder(self.name, self.address, self.election.term)
        return self.election.other()

    def refusal(self) -> str | None:
        """None when this director may command; else what a console is answered."""
        if self.in_charge():
            return None
        if self.election.in_charge():
            return f"standby: {self.name} is taking charge (reading the show's state from etcd)"
        holder = self.election.other()
        if holder is not None:
            return f"standby: {holder.name} at {holder.address} is in charge"
        return (
            f"standby: {self.name} is not in charge and does not know which director is "
            "(it cannot reach a quorum of etcd, or is looking now)"
        )

    async def run(self) -> None:
        await self.election.run()

    async def look_around(self) -> None:
        """The other directors and the etcd members: alarms when one is lost or back."""
        await self.watch.run()

    async def close(self) -> None:
        if self._leaderless is not None:
            self._leaderless.cancel()
        if self._taking is not None:
            self._taking.cancel()
        await self.etcd.close()

    # --- told by the election ---

    def _changed(self, role: Role, holder: Holder | None, why: str) -> None:
        if role is Role.ACTIVE:
            self._taking = asyncio.get_running_loop().create_task(
                self._take_charge(self.election.term), name="take charge"
            )
        else:
            self.charged.clear()
            self._emit(
                "director.standby",
                director=self.name,
                active=holder.name if holder is not None else "",
                address=holder.address if holder is not None else "",
                term=holder.term if holder is not None else 0,
                why=why,
            )
        if holder is None:
            if self._leaderless is None:
                self._leaderless = asyncio.get_running_loop().call_later(
                    self.timing.lease, self._nobody_in_charge
                )
            return
        if self._leaderless is not None:
            self._leaderless.cancel()
            self._leaderless = None
        if self.alarmed:
            self.alarmed = False
            self._emit(
                "alarm",
                client="",
                alarm="director in charge again",
                message=f"{holder.name} at {holder.address} is in charge again (term "
                f"{holder.term}); this is {self.name}, {role}",
            )

    def _charge(self) -> tuple[int, float]:
        election = self.election
        return (election.term, election.tenure.left()) if election.in_charge() else (0, 0.0)

    async def _take_charge(self, term: int) -> None:
        """The lease is ours: the show's state first, then in charge (and say so)."""
        while self.election.in_charge() and self.election.term == term:
            try:
                if self.take_over_state is not None:
                    await self.take_over_state()
            except (EtcdUnavailable, EtcdError, StateNotSaved) as exc:
                log.warning("%s holds the lease but not yet the show's state: %s", self.name, exc)
                await asyncio.sleep(self.timing.poll_every)
                continue
            if not (self.election.in_charge() and self.election.term == term):
                return
            self.ready_term = term
            self.charged.set()
            self._emit("director.active", director=self.name, address=self.address, term=term)
            if self.in_charge_again is not None:
                await self.in_charge_again()
            return

    def _nobody_in_charge(self) -> None:
        self._leaderless = None
        if self.in_charge_now() is not None:
            return
        self.alarmed = True
        reach = "cannot reach a quorum of etcd" if not self.election.reachable else "sees none"
        self._emit(
            "alarm",
            client="",
            alarm="no director in charge",
            message=f"no director is in charge of the show: {self.name} {reach} "
            f"({', '.join(self.etcd.endpoints)}). Nothing is taken over and no action runs "
            "until etcd has a quorum again: bring its members back (docs/standby.md)",
        )
