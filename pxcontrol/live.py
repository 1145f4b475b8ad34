"""Live systems: heartbeats in from every agent, the detector driven by them, notices out.

Heartbeats are read, checked and judged in a thread of their own (arrivals.py),
with the time each one arrived: nothing on the event loop (a page's snapshot, an
OSC flood, a slow disk) can make a healthy client look silent. What the detector
decides is handed to the loop in order, where decisions are serialised, events
raised and notices sent.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pxcontrol.arrivals import ArrivalReader, Datagram
from pxcontrol.budgets import power_of_two
from pxcontrol.confirmations import Confirmations
from pxcontrol.detection import Change, ClientState, ClientWatch, Detector, Guard, Timing
from pxcontrol.heartbeat import (
    ACK,
    HEARTBEAT,
    PLACEMENT,
    Ack,
    FailedCheck,
    Heartbeat,
    Placement,
    WireError,
    decode,
    encode,
)
from pxcontrol.osc_transport import raise_receive_buffer
from pxcontrol.replay import Runs
from pxcontrol.rules import same_gpu
from pxcontrol.show import ClientDecl, ShowFile
from pxcontrol.status import summarise_names
from pxcontrol.supervisor import Supervisor

log = logging.getLogger("pxcontrol.live")

RECEIVE_BUFFER = 4 * 1024 * 1024  # a burst during a short stall must not be lost


@dataclass
class ClientLive:
    """What the director knows of one client's machine right now."""

    name: str
    ip: str
    address: tuple[str, int] | None = None  # where its agent sends from; notices go there
    boot: str | None = None
    seq: int = -1
    agent_epoch: int = 0
    agent_interval: float = 0.0
    cpu: float | None = None
    memory: float | None = None
    gpu: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    heard_at: float | None = None  # wall clock, for people
    gpu_declared: str | None = None  # the show's `gpu` for this client
    gpu_reported: str | None = None  # the GPU name its agent reports (NVML), if any
    gpu_alarmed: str | None = None  # the agent run (boot) whose GPU mismatch was raised

    @classmethod
    def of(cls, decl: ClientDecl) -> ClientLive:
        return cls(decl.name, str(decl.ip), gpu_declared=decl.gpu)

    @property
    def gpu_mismatch(self) -> str | None:
        """Why this machine's GPU is not the one the show declares, or None."""
        declared, reported = self.gpu_declared, self.gpu_reported
        if not declared or reported is None or same_gpu(declared, reported):
            return None
        return f"{self.name}'s agent reports GPU {reported!r}, the show declares {declared!r}"


class LiveSystems:
    def __init__(
        self,
        show: ShowFile,
        emit: Callable[..., object],
        on_offline: Callable[[str, Guard | None], Awaitable[None]],
        secret: bytes | None = None,
        clock: Callable[[], float] = time.monotonic,
        auto_for: Callable[[str], bool] = lambda name: False,
        on_failed: Callable[[str, Guard | None], Awaitable[None]] | None = None,
    ) -> None:
        d = show.detection
        self.timing = Timing(
            d.heartbeat_interval, d.offline_after, d.online_after, d.mass_failure_guard
        )
        self.detector = Detector.for_clients(self.timing, [c.name for c in show.clients])
        self.clients = {c.name: ClientLive.of(c) for c in show.clients}
        self.drops: collections.Counter[str] = collections.Counter()
        self.heartbeats = 0
        self._emit = emit
        self._on_offline = on_offline
        self._on_failed = on_failed
        self._secret = secret
        self._clock = clock
        self._auto_for = auto_for
        self._socket: socket.socket | None = None
        self._reader: ArrivalReader | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # The reading thread and the loop both touch the detector: one at a time.
        self._lock = threading.Lock()
        # (client, guard, failed): offline and failed clients, in the detector's order
        self._decisions: asyncio.Queue[tuple[str, Guard | None, bool]] = asyncio.Queue()
        self.notices_dropped = 0  # placement notices the kernel would not take at once
        self.stalls = 0  # times the director itself was found stopped
        self._stalled_at: float | None = None  # when the reading thread last found one
        self._swept_at: float | None = None  # when the detector last looked at every silence
        # What a batch of heartbeats decided, for the loop: filled by the reading thread.
        self._effects: list[tuple[Callable[..., object], tuple[Any, ...]]] = []
        # Replays and second agents (replay.py), judged in the reading thread: what they
        # raise or send is done on the loop.
        self.runs = Runs(self._emit_later, self._welcome_later, clock)
        self.confirmations = Confirmations(emit, lambda: self.timing.heartbeat_interval, clock)
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
        names = {c.name for c in show.clients}
        with self._lock:
            self.detector.timing = self.timing
            for client in show.clients:
                if client.name in self.clients:
                    self.clients[client.name].ip = str(client.ip)
                    self.clients[client.name].gpu_declared = client.gpu
                else:
                    self.clients[client.name] = ClientLive.of(client)
                    self.detector.clients[client.name] = ClientWatch(client.name)
            for name in [n for n in self.clients if n not in names]:
                del self.clients[name]
                self.detector.forget(name)

    def remember_seen(self, names: Iterable[str], now: float | None = None) -> None:
        """Clients seen online before the director (re)started: their silence counts from
        `now` (default: this moment), so one that stays silent goes offline and may be
        taken over; the startup guard is for clients never seen."""
        at = self._clock() if now is None else now
        with self._lock:  # the reading thread judges these clients too
            for name in names:
                watch = self.detector.clients.get(name)
                if watch is not None and watch.last_heard is None:
                    watch.seen_online = True
                    watch.seen_healthy = True  # as far as we know: it played before
                    watch.remembered = True  # heard again in time: online at once
                    watch.last_heard = at

    def state(self, name: str) -> ClientState:
        watch = self.detector.clients.get(name)
        return watch.state if watch else ClientState.DRY

    def late(self, name: str) -> bool:
        watch = self.detector.clients.get(name)
        return bool(watch and watch.late)

    def failed(self, name: str) -> FailedCheck | None:
        """The check that failed on a FAILED client, as its agent reported it; else None."""
        watch = self.detector.clients.get(name)
        if watch is None or watch.state is not ClientState.FAILED:
            return None
        return watch.failed  # type: ignore[return-value]  # what _datagram gave it

    def gpu_mismatch(self, name: str) -> str | None:
        """Why the GPU a client's agent reports differs from the show's, or None."""
        client = self.clients.get(name)
        return None if client is None else client.gpu_mismatch

    # --- lifecycle ---

    async def start(
        self,
        bind: str,
        port: int,
        placement: Callable[[str], Placement],
        epoch: int,
        supervisor: Supervisor,
    ) -> None:
        self._placement = placement
        self._epoch = epoch
        self._loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            raise_receive_buffer(sock, RECEIVE_BUFFER)  # past the system's cap where we may
            sock.bind((bind, port))
        except OSError:
            sock.close()
            raise
        self._socket = sock
        self._reader = ArrivalReader(sock, self._batch, self._every, self._clock)
        self._thread = supervisor.start_thread("heartbeat reader", self._reader.run, self._loop)
        supervisor.start("offline decisions", self._decide)

    def _every(self) -> float:
        """How long the reading thread may wait for heartbeats: until the next sweep is due,
        or a failed client's takeover is to be judged, whichever comes first."""
        every = self.detector.check_every
        now = self._clock()
        swept = self._swept_at
        wait = every if swept is None else min(every, max(0.0, swept + every - now))
        if self.detector.undecided:
            due = self.detector.due_in(now)  # a failed client's takeover, judged on time
            if due is not None:
                wait = min(wait, due)
        return wait

    @property
    def port(self) -> int:
        assert self._socket is not None
        return self._socket.getsockname()[1]

    @property
    def kernel_stamps(self) -> bool:
        """Are heartbeats stamped by the kernel as they arrive (else by the reading thread)?"""
        reader = self._reader
        if reader is None or not reader.stamped:
            return False
        return reader.kernel_stamped > 0 or self.heartbeats == 0  # asked for, and given

    def stalled_within(self, seconds: float) -> bool:
        """Did the detector find the director stopped within the last `seconds`?"""
        at = self._stalled_at
        return at is not None and self._clock() - at <= seconds

    def tick_age(self) -> float | None:
        """Seconds since the detector last looked at the clock (None before it started)."""
        last = self._reader.last_tick if self._reader is not None else None
        return None if last is None else max(0.0, self._clock() - last)

    async def stop(self) -> None:
        for task in self._pending:
            task.cancel()
        if self._reader is not None:
            self._reader.stop()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 1.0)
        self.confirmations.close()
        if self._socket is not None:
            self._socket.close()

    # --- heartbeats in (the reading thread) ---

    def _batch(self, batch: list[Datagram], now: float) -> None:
        """Judge what arrived, then the silence of everyone; hand the outcome to the loop."""
        with self._lock:
            effects = self._effects = []
            for packet, source, arrived in batch:
                self._datagram(packet, (source[0], source[1]), arrived)
            # Every client's silence is looked at once per tick of the detector, not after
            # every batch: at 500 clients × 10 Hz a batch is often one heartbeat, and sweeping
            # 500 clients after each one tripled the director's CPU for heartbeats.
            swept = self._swept_at
            if (
                swept is None
                or not 0 <= now - swept < self.detector.check_every
                or self.detector.due_in(now) == 0  # a failed client's takeover is due now
            ):
                self._swept_at = now
                changes = self.detector.check(now)
            else:
                changes = []
        if changes:
            if any(c.kind == "stalled" for c in changes):
                self._stalled_at = now
            effects.append((self._apply, (changes,)))
        if effects and self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(_run_all, effects)
            except RuntimeError:  # the loop closed: the director is ending
                pass

    def _later(self, function: Callable[..., object], *args: Any) -> None:
        """Do this on the loop, after the batch (from the reading thread)."""
        self._effects.append((function, args))

    def _emit_later(self, kind: str, /, **fields: Any) -> None:
        self._later(functools.partial(self._emit, kind, **fields))

    def _welcome_later(self, name: str, source: tuple[str, int], beat: Heartbeat) -> None:
        self._later(self._welcome, name, source, beat)

    def _datagram(self, packet: bytes, source: tuple[str, int], arrived: float) -> None:
        effects = self._effects
        try:
            beat = decode(packet, HEARTBEAT, Heartbeat, self._secret)
            new_run = beat.name in self.clients and self.clients[beat.name].boot != beat.boot
            client = self._accept(beat, source)
        except WireError as error:
            self._drop(error.reason, f"{source[0]}:{source[1]}: {error}")
            return
        self.heartbeats += 1
        client.address = source
        client.agent_epoch = beat.epoch
        client.agent_interval = beat.interval
        client.cpu, client.memory, client.gpu = beat.cpu, beat.memory, beat.gpu
        client.extra = beat.extra
        client.heard_at = time.time()
        if beat.gpu is not None:
            self._gpu(client, beat)
        changes = self.detector.heard(beat.name, arrived)
        changes += self.detector.health(beat.name, beat.failed, arrived)
        if changes:
            effects.append((self._apply, (changes,)))
        if self.confirmations.waiting:  # a takeover announced, not yet confirmed
            effects.append((self.confirmations.heard, (beat.name, beat.epoch)))
        if beat.epoch > self._epoch and self.on_newer_epoch is not None:
            effects.append((self._newer_epoch, (beat.name, beat.epoch)))
        if beat.ask:
            effects.append((self._ack, (source, beat)))
        if (
            new_run
            or beat.epoch < self._epoch
            or abs(beat.interval - self.timing.heartbeat_interval) > 1e-9
        ):
            # A new agent run is welcomed with the placement (it knows then it is heard);
            # heartbeats are the acks: repeat until it has the newest epoch.
            effects.append((self._send_placement, (client,)))

    def _gpu(self, client: ClientLive, beat: Heartbeat) -> None:
        """The GPU its agent reports, against the show's: a difference is an alarm, once per
        agent run (Pixera takes over only between equal GPU names)."""
        assert beat.gpu is not None
        name = beat.gpu.get("name")
        client.gpu_reported = name if isinstance(name, str) and name.strip() else None
        mismatch = client.gpu_mismatch
        if mismatch is not None and client.gpu_alarmed != beat.boot:
            client.gpu_alarmed = beat.boot
            self._emit_later(
                "alarm",
                client=client.name,
                alarm="gpu mismatch",
                message=f"{mismatch}: no takeover onto or from {client.name} until the show's "
                "gpu names the GPU it has (or the machine has the GPU the show names)",
            )

    def _accept(self, beat: Heartbeat, source: tuple[str, int]) -> ClientLive:
        client = self.clients.get(beat.name)
        if client is None:
            raise WireError("unknown_client", f"no client {beat.name!r} in the show")
        if source[0] != client.ip:
            raise WireError(
                "wrong_source",
                f"{beat.name} is declared at {client.ip}, heartbeat came from {source[0]}",
            )
        self.runs.admit(beat, source, self.timing)  # replayed, unwelcomed, second agent
        client.boot, client.seq = beat.boot, beat.seq
        return client

    def _drop(self, reason: str, message: str) -> None:
        self.drops[reason] += 1
        count = self.drops[reason]
        if power_of_two(count):  # a flood cannot flood the log
            # Every agent's first heartbeats, and its questions to a director it has not
            # heard lately, are unwelcomed: routine, so not a warning. The rest are.
            level = logging.INFO if reason == "unwelcomed" else logging.WARNING
            log.log(level, "dropped heartbeat (%s, %d so far): %s", reason, count, message)

    # --- on the loop: what the detector decided ---

    def _alarm(self, client: str, alarm: str, message: str) -> None:
        self._emit("alarm", client=client, alarm=alarm, message=message)

    def _apply(self, changes: list[Change]) -> None:
        for change in changes:
            if change.kind == "stalled":
                self._stalled(change)
                continue
            client = self.clients.get(change.client)
            if client is None:
                continue  # removed by a reload since
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
                self._decisions.put_nowait((change.client, change.guard, False))
            elif change.kind == "failed":
                self._emit(
                    "client.failed",
                    client=change.client,
                    ip=client.ip,
                    check=change.check,
                    message=change.message,
                )
            elif change.kind == "recovered":
                self._emit("client.recovered", client=change.client, ip=client.ip)
            elif change.kind == "failed_decision":
                self._decisions.put_nowait((change.client, change.guard, True))
            elif change.kind in ("late", "on_time"):
                self._emit(
                    "client.late", client=change.client, ip=client.ip, late=change.kind == "late"
                )
            elif change.kind == "mass_failure":
                names = summarise_names(change.clients)
                message = (
                    f"{len(change.clients)} clients failed their checks within "
                    f"{change.seconds:.3f} s ({names}): no automatic takeover; look for a "
                    "cause they share (a show file, a network share, a command sent to all)"
                    if change.by_checks
                    else f"{len(change.clients)} clients lost within {change.seconds:.2f} s "
                    f"({names}): no automatic takeover; check the director's own network"
                )
                self._emit("alarm", client=change.client, alarm="mass failure", message=message)

    def _stalled(self, change: Change) -> None:
        """The director itself was stopped (or its clock jumped): say so, loudly if it was
        long enough to have looked like an offline client."""
        self.stalls += 1
        gap = change.seconds
        if 0 <= gap <= self.timing.offline_after:
            log.warning("the director was stopped for %.2f s; clients are judged from now", gap)
            return
        what = (
            f"was stopped for {gap:.1f} s (a pause, a suspended VM or laptop, SIGSTOP?)"
            if gap > 0
            else f"found its clock {-gap:.1f} s back"
        )
        self._emit(
            "alarm",
            client="",
            alarm="director stalled",
            message=f"the director {what}: longer than offline_after "
            f"({self.timing.offline_after:g} s). No client was declared offline for the "
            "silence this caused; each is judged by the heartbeats that arrive from now on",
        )

    async def _decide(self) -> None:
        """Offline and failed decisions one at a time, in the order the detector made them."""
        while True:
            name, guard, failed = await self._decisions.get()
            try:
                if not failed:
                    await self._on_offline(name, guard)
                elif self._on_failed is not None:
                    await self._on_failed(name, guard)
            except Exception:
                log.exception("deciding on %s %s failed", name, "failed" if failed else "offline")

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
        self.confirmations.announced(epoch, event)
        for client in self.clients.values():
            if client.address is not None:
                self._send_placement(client, event)

    def tell(self, names: list[str]) -> None:
        """Send these clients' agents their placement again now (their checks changed)."""
        for name in names:
            client = self.clients.get(name)
            if client is not None:
                self._send_placement(client)

    def _send_placement(self, client: ClientLive, event: dict | None = None) -> None:
        if client.address is not None:
            self._send_notice(client.name, client.address, event)

    def _welcome(self, name: str, source: tuple[str, int], beat: Heartbeat) -> None:
        """Answer a heartbeat of a run this director has not welcomed: the notice carries
        the session that its next heartbeats must show to be heard."""
        self._send_notice(name, source, None, answering=beat)

    def _send_notice(
        self,
        name: str,
        to: tuple[str, int],
        event: dict | None,
        answering: Heartbeat | None = None,
    ) -> None:
        if self._socket is None or self._placement is None:
            return
        if name not in self.clients:
            return  # removed by a reload since
        notice = self.runs.stamp(self._placement(name), name, answering)
        event = event or self.confirmations.event_of(notice.epoch)  # a repair tells the same
        if event is not None:
            notice = notice.model_copy(update={"event": event})
        self._send(encode(PLACEMENT, notice, self._secret), to)

    def _ack(self, to: tuple[str, int], beat: Heartbeat) -> None:
        """Acknowledge a heartbeat that asked (the agent's proof that its director is there).
        Sent from the loop, not the reading thread: a director whose loop is stuck is not
        there for its agents either."""
        ack = Ack(session=self.runs.session, boot=beat.boot, seq=beat.seq)
        self._send(encode(ACK, ack, self._secret), to)

    def _send(self, packet: bytes, to: tuple[str, int]) -> None:
        if self._socket is None:
            return
        try:
            # Never blocks: the socket is non-blocking, and the reader thread shares it.
            self._socket.sendto(packet, to)
        except (BlockingIOError, InterruptedError):
            self.notices_dropped += 1  # heartbeats are the acks: it is sent again
        except OSError as exc:  # unreachable: UDP's way of losing a datagram
            log.debug("packet to %s:%s: %s", to[0], to[1], exc)


def _run_all(effects: list[tuple[Callable[..., None], tuple[Any, ...]]]) -> None:
    """What one batch of heartbeats decided, in order, on the loop."""
    for function, args in effects:
        try:
            function(*args)
        except Exception:
            log.exception("handling heartbeats failed in %s", getattr(function, "__name__", "?"))
