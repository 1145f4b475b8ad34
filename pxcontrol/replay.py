"""Which run of each client's agent the director follows: replays and second agents refused.

A signed heartbeat can be captured and sent again; a second agent can report
with a client's name from its machine. What the director checks, in order:

- **the session**: a random nonce the director draws at every start and sends in
  its placement notices, each answering one heartbeat of one agent run. An agent
  puts the session it was given in every heartbeat. A heartbeat without this
  director's session (the first of a new agent run, one sent before a director
  restart, or a replay of either) is never heard: it earns a welcome (at most one
  per source address per half heartbeat interval) and is dropped as `unwelcomed`.
- **the run**: every agent start draws a new run id (`boot`). Runs followed earlier
  are remembered with their last sequence number; their old heartbeats are replays.
- **the sequence**: within a run, a heartbeat must be newer than the last one heard.
- **one voice per client**: a new run is followed only when the run followed now
  has been silent for two heartbeat intervals (a restarted agent comes after a
  silence). A run that appears while the followed one sends is a second agent: one
  alarm, and its heartbeats are dropped as long as the followed run is heard within
  `offline_after`. If a run that lost its place to a newer one is heard again (a
  newer sequence number than it had), it was alive all along: it is followed again
  and the newer one is the second agent.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from pxcontrol.detection import Timing
from pxcontrol.heartbeat import Heartbeat, Placement, WireError

RUNS_REMEMBERED = 256  # per client, per director session
SOURCES_REMEMBERED = 32  # per client: addresses welcomed recently

Welcome = Callable[[str, tuple[str, int], Heartbeat], None]


@dataclass
class _Client:
    """What the director knows of one client's agent runs in this session."""

    boot: str | None = None  # the run followed now
    seq: int = -1
    heard: float | None = None  # monotonic time of its last heartbeat
    earlier: OrderedDict[str, int] = field(default_factory=OrderedDict)  # run → last seq
    second: OrderedDict[str, None] = field(default_factory=OrderedDict)  # alarmed runs
    welcomed: dict[tuple[str, int], float] = field(default_factory=dict)


class Runs:
    def __init__(
        self,
        emit: Callable[..., object],
        welcome: Welcome,
        clock: Callable[[], float] = time.monotonic,
        session: str | None = None,
    ) -> None:
        self.session = session or secrets.token_hex(8)
        self._emit = emit
        self._welcome = welcome
        self._clock = clock
        self._clients: dict[str, _Client] = {}

    def admit(self, beat: Heartbeat, source: tuple[str, int], timing: Timing) -> None:
        """Return when `beat` is the voice of the run followed; else WireError saying why."""
        client = self._clients.get(beat.name)
        if client is None:  # every heartbeat comes here: make one only for a new name
            client = self._clients[beat.name] = _Client()
        now = self._clock()
        if beat.session != self.session:
            self._answer(client, beat, source, now, timing.heartbeat_interval)
            if beat.session:
                raise WireError(
                    "unwelcomed",
                    f"{beat.name} heartbeat carries another director session (sent before "
                    "this director started, or a replay): not heard, welcomed again",
                )
            raise WireError(
                "unwelcomed",
                f"{beat.name}'s agent run {beat.boot} is not welcomed yet: not heard, welcomed now",
            )
        if beat.boot == client.boot:
            if beat.seq <= client.seq:
                raise WireError(
                    "replay", f"{beat.name} sequence {beat.seq} is not newer than {client.seq}"
                )
        elif beat.boot in client.second and self._heard_within(client, now, timing.offline_after):
            raise WireError("second_agent", f"a second agent reports as {beat.name}")
        elif beat.boot in client.earlier:
            if beat.seq <= client.earlier[beat.boot]:
                raise WireError("replay", f"{beat.name} heartbeat from an earlier run of its agent")
            # That run lost its place yet still sends: it never stopped. The one heard
            # first is the client's voice again; the one that displaced it is a second.
            if client.boot is not None and self._heard_within(client, now, timing.offline_after):
                self._alarm(client, beat.name, client.boot, source)
            self._follow(client, beat.boot)
        elif self._heard_within(client, now, 2 * timing.heartbeat_interval):
            self._alarm(client, beat.name, beat.boot, source)
            raise WireError("second_agent", f"a second agent reports as {beat.name}")
        else:
            self._follow(client, beat.boot)
        client.seq = beat.seq
        client.heard = now

    def stamp(self, notice: Placement, name: str, answering: Heartbeat | None = None) -> Placement:
        """`notice` with this session, answering `answering` (else the run followed now)."""
        if answering is not None:
            boot, seq = answering.boot, answering.seq
        else:
            client = self._clients.get(name)
            boot, seq = (client.boot, client.seq) if client and client.boot else (None, None)
        return notice.model_copy(update={"session": self.session, "boot": boot, "seq": seq})

    def followed(self, name: str) -> str | None:
        """The run id of the agent run followed for this client, if any."""
        client = self._clients.get(name)
        return client.boot if client else None

    def _follow(self, client: _Client, boot: str) -> None:
        if client.boot is not None:
            client.earlier[client.boot] = client.seq
            client.earlier.move_to_end(client.boot)
            while len(client.earlier) > RUNS_REMEMBERED:
                client.earlier.popitem(last=False)
        client.earlier.pop(boot, None)
        client.boot = boot

    def _heard_within(self, client: _Client, now: float, seconds: float) -> bool:
        return client.heard is not None and now - client.heard < seconds

    def _answer(
        self,
        client: _Client,
        beat: Heartbeat,
        source: tuple[str, int],
        now: float,
        interval: float,
    ) -> None:
        """Welcome the run that sent `beat` (one round trip), without letting a flood of
        replays turn into a flood of notices."""
        last = client.welcomed.get(source)
        if last is not None and now - last < interval / 2:
            return
        if len(client.welcomed) >= SOURCES_REMEMBERED:
            client.welcomed.clear()
        client.welcomed[source] = now
        self._welcome(beat.name, source, beat)

    def _alarm(self, client: _Client, name: str, boot: str, source: tuple[str, int]) -> None:
        if boot in client.second:
            return
        client.second[boot] = None
        while len(client.second) > RUNS_REMEMBERED:
            client.second.popitem(last=False)
        self._emit(
            "alarm",
            client=name,
            alarm="second agent",
            message=f"a second agent reports as {name} from {source[0]}: its heartbeats are "
            "ignored while the first one runs; stop one of them",
        )
