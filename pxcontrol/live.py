"""Live systems: heartbeats in from every agent, the detector driven by them, notices out.

The heartbeat path is the hot path of the director: one datagram handler that
checks and records, with everything slow (decisions, disk, actions) handed to
the loop as tasks.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pxcontrol.datagrams import DatagramSocket
from pxcontrol.detection import Change, ClientState, ClientWatch, Detector, Timing
from pxcontrol.heartbeat import (
    HEARTBEAT,
    PLACEMENT,
    Heartbeat,
    Placement,
    WireError,
    decode,
    encode,
)
from pxcontrol.osc_transport import raise_receive_buffer
from pxcontrol.show import ShowFile

log = logging.getLogger("pxcontrol.live")

RECEIVE_BUFFER = 4 * 1024 * 1024  # a burst during a short stall must not be lost
BOOTS_REMEMBERED = 16


@dataclass
class ClientLive:
    """What the director knows of one client's machine right now."""

    name: str
    ip: str
    address: tuple[str, int] | None = None  # where its agent sends from; notices go there
    boot: str | None = None
    seq: int = -1
    old_boots: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=BOOTS_REMEMBERED)
    )
    agent_epoch: int = 0
    agent_interval: float = 0.0
    cpu: float | None = None
    memory: float | None = None
    gpu: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    heard_at: float | None = None  # wall clock, for people
    second_agents: set[str] = field(default_factory=set)  # runs refused: one alarm each


class LiveSystems:
    def __init__(
        self,
        show: ShowFile,
        emit: Callable[..., object],
        on_offline: Callable[[str, bool, str], Awaitable[None]],
        secret: bytes | None = None,
        clock: Callable[[], float] = time.monotonic,
        auto_for: Callable[[str], bool] = lambda name: False,
    ) -> None:
        d = show.detection
        self.timing = Timing(
            d.heartbeat_interval, d.offline_after, d.online_after, d.mass_failure_guard
        )
        self.detector = Detector.for_clients(self.timing, [c.name for c in show.clients])
        self.clients = {c.name: ClientLive(c.name, str(c.ip)) for c in show.clients}
        self.drops: collections.Counter[str] = collections.Counter()
        self.heartbeats = 0
        self._emit = emit
        self._on_offline = on_offline
        self._secret = secret
        self._clock = clock
        self._auto_for = auto_for
        self._socket: DatagramSocket | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._decisions: asyncio.Queue[tuple[str, bool, str]] = asyncio.Queue()
        self._decider: asyncio.Task[None] | None = None
        self.on_newer_epoch: Callable[[int], Awaitable[None]] | None = None
        self._newest_seen = 0
        self._pending: set[asyncio.Task[None]] = set()
        self._placement: Callable[[str], Placement] | None = None
        self._epoch = 0

    def update(self, show: ShowFile) -> None:
        """Take a reloaded show: new timing at once, new clients watched, removed ones dropped.

        What the detector knows of clients that stay (their state, their run of
        heartbeats, the startup guard) is kept: a reload never makes a client
        look new or dead.
        """
        d = show.detection
        self.timing = Timing(
            d.heartbeat_interval, d.offline_after, d.online_after, d.mass_failure_guard
        )
        self.detector.timing = self.timing
        names = {c.name for c in show.clients}
        for client in show.clients:
            if client.name in self.clients:
                self.clients[client.name].ip = str(client.ip)
            else:
                self.clients[client.name] = ClientLive(client.name, str(client.ip))
                self.detector.clients[client.name] = ClientWatch(client.name)
        for name in [n for n in self.clients if n not in names]:
            del self.clients[name]
            self.detector.clients.pop(name, None)

    def remember_seen(self, names: Iterable[str], now: float | None = None) -> None:
        """Clients seen online before the director (re)started: their silence counts from
        `now` (default: this moment), so one that stays silent goes offline and may be
        taken over; the startup guard is for clients never seen."""
        at = self._clock() if now is None else now
        for name in names:
            watch = self.detector.clients.get(name)
            if watch is not None and watch.last_heard is None:
                watch.seen_online = True
                watch.last_heard = at

    def state(self, name: str) -> ClientState:
        watch = self.detector.clients.get(name)
        return watch.state if watch else ClientState.DRY

    def late(self, name: str) -> bool:
        watch = self.detector.clients.get(name)
        return bool(watch and watch.late)

    # --- lifecycle ---

    async def start(
        self, bind: str, port: int, placement: Callable[[str], Placement], epoch: int
    ) -> None:
        self._placement = placement
        self._epoch = epoch
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, socket.SOCK_DGRAM)
        raise_receive_buffer(sock, RECEIVE_BUFFER)  # past the system's cap where we may
        sock.bind((bind, port))
        self._socket = DatagramSocket(sock, self.datagram)  # a bad packet is logged, not fatal
        self._socket.start()
        self._watcher = loop.create_task(self._watch(), name="detector")
        self._decider = loop.create_task(self._decide(), name="offline decisions")

    @property
    def port(self) -> int:
        assert self._socket is not None
        return self._socket.sock.getsockname()[1]

    async def stop(self) -> None:
        for task in (self._watcher, self._decider, *self._pending):
            if task is not None:
                task.cancel()
        if self._socket is not None:
            self._socket.close()

    # --- heartbeats in ---

    def datagram(self, packet: bytes, source: tuple[str, int]) -> None:
        try:
            beat = decode(packet, HEARTBEAT, Heartbeat, self._secret)
            new_run = beat.name in self.clients and self.clients[beat.name].boot != beat.boot
            client = self._accept(beat, source)
        except WireError as error:
            self._drop(error.reason, f"{source[0]}:{source[1]}: {error}")
            return
        now = self._clock()
        self.heartbeats += 1
        client.address = source
        client.agent_epoch = beat.epoch
        client.agent_interval = beat.interval
        client.cpu, client.memory, client.gpu = beat.cpu, beat.memory, beat.gpu
        client.extra = beat.extra
        client.heard_at = time.time()
        self._apply(self.detector.heard(beat.name, now))
        if beat.epoch > self._epoch and self.on_newer_epoch is not None:
            self._newer_epoch(beat.name, beat.epoch)
        if (
            new_run
            or beat.epoch < self._epoch
            or abs(beat.interval - self.timing.heartbeat_interval) > 1e-9
        ):
            # A new agent run is welcomed with the placement (it knows then it is heard);
            # heartbeats are the acks: repeat until it has the newest epoch.
            self._send_placement(client)

    def _accept(self, beat: Heartbeat, source: tuple[str, int]) -> ClientLive:
        client = self.clients.get(beat.name)
        if client is None:
            raise WireError("unknown_client", f"no client {beat.name!r} in the show")
        if source[0] != client.ip:
            raise WireError(
                "wrong_source",
                f"{beat.name} is declared at {client.ip}, heartbeat came from {source[0]}",
            )
        if beat.boot == client.boot:
            if beat.seq <= client.seq:
                raise WireError(
                    "replay", f"{beat.name} sequence {beat.seq} is not newer than {client.seq}"
                )
        elif beat.boot in client.old_boots:
            raise WireError("replay", f"{beat.name} heartbeat from an earlier run of its agent")
        elif self._current_run_alive(beat.name, client):
            # Two agents with one name on that machine: the one heard first stays the
            # client's voice; a restarted agent comes after a silence, never alongside.
            if beat.boot not in client.second_agents:
                client.second_agents.add(beat.boot)
                self._emit(
                    "alarm",
                    client=beat.name,
                    alarm="second agent",
                    message=f"a second agent reports as {beat.name} from {source[0]}: its "
                    "heartbeats are ignored while the first one runs; stop one of them",
                )
            raise WireError("second_agent", f"a second agent reports as {beat.name}")
        else:
            if client.boot is not None:
                client.old_boots.append(client.boot)
            client.boot = beat.boot
        client.seq = beat.seq
        return client

    def _current_run_alive(self, name: str, client: ClientLive) -> bool:
        """The run we follow was heard within two heartbeat intervals."""
        last = self.detector.clients[name].last_heard
        return (
            client.boot is not None
            and last is not None
            and self._clock() - last < 2 * self.timing.heartbeat_interval
        )

    def _drop(self, reason: str, message: str) -> None:
        self.drops[reason] += 1
        count = self.drops[reason]
        if count & (count - 1) == 0:  # 1, 2, 4, 8 …: a flood cannot flood the log
            log.warning("dropped heartbeat (%s, %d so far): %s", reason, count, message)

    # --- the detector's clock ---

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.detector.check_every)
            self._apply(self.detector.check(self._clock()))

    def _apply(self, changes: list[Change]) -> None:
        for change in changes:
            client = self.clients[change.client]
            if change.kind == "online":
                self._emit("client.online", client=change.client, ip=client.ip)
            elif change.kind == "offline":
                # `automatic`: a backup will take over now; `why_not` when the show wanted one.
                wanted = self._auto_for(change.client)
                self._emit(
                    "client.offline",
                    client=change.client,
                    ip=client.ip,
                    automatic=wanted and change.eligible,
                    why_not=change.why_not if wanted else "",
                )
                self._decisions.put_nowait((change.client, change.eligible, change.why_not))
            elif change.kind in ("late", "on_time"):
                self._emit(
                    "client.late", client=change.client, ip=client.ip, late=change.kind == "late"
                )
            elif change.kind == "mass_failure":
                self._emit(
                    "alarm",
                    client=change.client,
                    alarm="mass failure",
                    message=f"{len(change.clients)} clients dropped at once "
                    f"({', '.join(change.clients)}): no automatic takeover; check the "
                    "director's own network",
                )

    async def _decide(self) -> None:
        """Offline decisions one at a time, in the order the detector made them."""
        while True:
            name, eligible, why_not = await self._decisions.get()
            try:
                await self._on_offline(name, eligible, why_not)
            except Exception:
                log.exception("deciding on %s offline failed", name)

    def _newer_epoch(self, name: str, epoch: int) -> None:
        """An agent follows a newer decision than any of ours: this director started on
        other state (a fresh --state folder, another machine). Catch up, so that our
        next decision outranks it, and say so; what plays is not changed by this."""
        if epoch <= self._newest_seen:
            return
        self._newest_seen = epoch
        self._emit(
            "alarm",
            client=name,
            alarm="newer epoch",
            message=f"{name}'s agent follows epoch {epoch}, newer than this director's "
            f"{self._epoch}: the director started on other state (another --state folder?). "
            "Check where outputs play; the next switch or move is followed again",
        )
        assert self.on_newer_epoch is not None
        task = asyncio.get_running_loop().create_task(self.on_newer_epoch(epoch))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    # --- notices out ---

    async def announce(self, epoch: int, event: dict | None = None) -> None:
        """Tell every agent we have heard from where outputs play as of `epoch`."""
        self._epoch = epoch
        for client in self.clients.values():
            if client.address is not None:
                self._send_placement(client, event)

    def _send_placement(self, client: ClientLive, event: dict | None = None) -> None:
        if self._socket is None or self._placement is None or client.address is None:
            return
        notice = self._placement(client.name)
        if event is not None:
            notice = notice.model_copy(update={"event": event})
        self._socket.sendto(encode(PLACEMENT, notice, self._secret), client.address)
