"""The agent: runs on each client, sends heartbeats with performance data, hears notices.

Heartbeats leave on a fixed schedule that nothing else can delay: performance
figures are gathered apart from it (in a thread) and the latest ones ride along.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pluggy
import psutil

from pxcontrol.checks.kinds import CheckKindError, CheckKinds, builtin_kinds, collect_check_kinds
from pxcontrol.checks.risefall import Change
from pxcontrol.checks.runner import Checks
from pxcontrol.events import EventLog
from pxcontrol.heartbeat import (
    ACK,
    HEARTBEAT,
    HEARTBEAT_BUDGET,
    PLACEMENT,
    Ack,
    Heartbeat,
    Placement,
    WireError,
    decode,
    encode,
)
from pxcontrol.observers import Observers, call_each
from pxcontrol.supervisor import Death, Supervisor

log = logging.getLogger("pxcontrol.agent")

PERFORMANCE_EVERY = 0.5  # seconds between performance readings
#: The director answers heartbeats only when it has news, so one heartbeat this often asks it
#: for a word (`ask`: the director acknowledges it with a few bytes) ...
DIRECTOR_ASK_EVERY = 0.5
#: ... and says the director is lost when no word came for this long.
DIRECTOR_LOST_AFTER = 1.5
DIRECTOR_LOST_TICK = 0.05  # the least sleep of that watch: never a busy loop


class Agent:
    def __init__(
        self,
        name: str,
        director: tuple[str, int],
        pm: pluggy.PluginManager,
        bind: str | None = None,
        secret: bytes | None = None,
        interval: float = 0.1,
    ) -> None:
        self.name = name
        self.director = director
        self.bind = bind
        self.secret = secret
        self.interval = interval
        self.pm = pm
        self.boot = secrets.token_hex(8)
        self.seq = 0
        self.epoch = 0
        self.session = ""  # the director session that welcomed this run (see replay.py)
        self._session_seq = -1  # the heartbeat that welcome answered
        self.placement: Placement | None = None
        self.events = EventLog()
        self.observers = Observers(lambda: pm)
        self.performance: dict[str, Any] = {}
        self.heard = False  # the director answered (it welcomes every agent run)
        self.dropped = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._director_ips = _addresses_of(director[0])
        self._gpu = _Gpu.find()
        self.checks = Checks(
            _check_kinds(pm), self._check_changed, lambda: self.performance.get("extra", {})
        )
        self._wanted_checks: list[dict[str, Any]] = []
        self._checks_changed = asyncio.Event()
        self.director_lost = False
        self._last_word: float | None = None  # loop time of the director's last word
        self._ask = False  # the next heartbeat asks the director for an acknowledgement
        self._acked_seq = -1  # the heartbeat the newest acknowledgement taken answered

    async def run(
        self, stop: asyncio.Event, on_ready: Callable[[Agent], None] | None = None
    ) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.director[0] else socket.AF_INET
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Notices(self), local_addr=(self.bind or "0.0.0.0", 0), family=family
        )
        # Nothing the agent runs may stop silently: a task that raises is logged with its
        # traceback, told as a local `agent.fault` event and started again; one that keeps
        # failing ends the agent (exit 70) so that its service manager starts a fresh one.
        given_up = asyncio.Event()
        self.supervisor = Supervisor(
            on_death=self._task_died, on_give_up=lambda death: given_up.set()
        )
        self.supervisor.start("heartbeats", self._send_heartbeats)
        self.supervisor.start("performance", self._measure)
        self.supervisor.start("director watch", self._watch_director)
        self.supervisor.start("director lost", self._watch_director_lost)
        self.supervisor.start("checks", self._run_checks)
        if on_ready is not None:
            on_ready(self)
        stopping = loop.create_task(stop.wait())
        failing = loop.create_task(given_up.wait())
        try:
            await asyncio.wait({stopping, failing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            failing.cancel()
            await self.supervisor.stop()
            await self.checks.close()
            await self.observers.close()
            self._transport.close()

    def _task_died(self, death: Death) -> None:
        self._observe("agent.fault", {"task": death.name, "message": death.message})

    @property
    def address(self) -> tuple[str, int]:
        assert self._transport is not None
        return self._transport.get_extra_info("sockname")[:2]

    def _send_beat(self) -> None:
        """One heartbeat, now."""
        self.seq += 1
        ask, self._ask = self._ask, False
        beat = Heartbeat(
            name=self.name,
            boot=self.boot,
            seq=self.seq,
            interval=self.interval,
            epoch=self.epoch,
            session=self.session,
            cpu=self.performance.get("cpu"),
            memory=self.performance.get("memory"),
            gpu=self.performance.get("gpu"),
            extra=self.performance.get("extra", {}),
            failed=self.checks.failed,
            ask=True if ask else None,
        )
        try:
            packet = encode(HEARTBEAT, beat, self.secret)
        except (TypeError, ValueError):  # never let figures stop the heartbeat
            packet = encode(HEARTBEAT, beat.model_copy(update={"extra": {}}), self.secret)
        if len(packet) > HEARTBEAT_BUDGET:
            # Plugin figures must never make the heartbeat itself too big to arrive.
            if self.seq % 100 == 1:
                log.warning("plugin figures make the heartbeat %d bytes: not sent", len(packet))
            packet = encode(HEARTBEAT, beat.model_copy(update={"extra": {}}), self.secret)
        try:
            assert self._transport is not None
            self._transport.sendto(packet, self.director)
        except OSError as exc:  # no route yet: keep the schedule, say so once in a while
            if self.seq % 50 == 1:
                log.warning("cannot reach the director at %s:%s: %s", *self.director, exc)

    async def _send_heartbeats(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            self._send_beat()
            # A fixed schedule, not a fixed pause: send time does not drift.
            due += self.interval
            delay = due - loop.time()
            if delay < -self.interval:  # we were stopped (SIGSTOP) or starved: start afresh
                due = loop.time()
                delay = 0
            await asyncio.sleep(max(0.0, delay))

    async def _watch_director(self, after: float = 5.0) -> None:
        """The person at the client must know when the director does not hear this agent."""
        await asyncio.sleep(after)
        while not self.heard:
            host, port = self.director
            log.warning(
                "no answer from the director at %s:%s after %g s. Is it running there, is that "
                "its heartbeat port (director.heartbeat_port), is %r a client of its show, and "
                "is --bind that client's ip? The director's log says why it drops heartbeats.",
                host,
                port,
                after,
                self.name,
            )
            await asyncio.sleep(60)

    async def _watch_director_lost(self) -> None:
        """A director that stops answering mid-show (stopped, crashed, cut off): say so at
        the client, and keep heartbeating, so it finds everything as it was when it is back.
        Wakes only when there is something to do: to ask, or when the silence is too long."""
        loop = asyncio.get_running_loop()
        asked = loop.time()
        while True:
            now = loop.time()
            if self._last_word is None:  # never heard yet: _watch_director speaks for that
                await asyncio.sleep(DIRECTOR_ASK_EVERY)
                continue
            if now - asked >= DIRECTOR_ASK_EVERY:
                self._ask = True  # the next scheduled heartbeat asks
                asked = now
            silent = now - self._last_word
            if silent > DIRECTOR_LOST_AFTER and not self.director_lost:
                self._director_silent(silent)
            wake = asked + DIRECTOR_ASK_EVERY
            if not self.director_lost:
                wake = min(wake, self._last_word + DIRECTOR_LOST_AFTER + DIRECTOR_LOST_TICK)
            await asyncio.sleep(max(DIRECTOR_LOST_TICK, wake - loop.time()))

    def _director_silent(self, silent: float) -> None:
        self.director_lost = True
        host, port = self.director
        log.warning(
            "the director at %s:%s has not answered for %.1f s: is it running? This "
            "agent carries on sending heartbeats; takeovers wait for the director",
            host,
            port,
            silent,
        )
        self._observe(
            "agent.director_lost", {"director": f"{host}:{port}", "silent": round(silent, 3)}
        )

    def _heard_director(self) -> None:
        self._last_word = asyncio.get_running_loop().time()
        if self.director_lost:
            self.director_lost = False
            host, port = self.director
            log.warning("the director at %s:%s answers again", host, port)
            self._observe("agent.director_back", {"director": f"{host}:{port}"})

    # --- checks ---

    async def _run_checks(self) -> None:
        """Run the checks the director's latest notice names; restart them when they change."""
        while True:
            await self._checks_changed.wait()
            self._checks_changed.clear()
            await self.checks.update(self._wanted_checks)

    def _check_changed(self, check: str, change: Change, message: str) -> None:
        fields = {"check": check, "message": message} if change == "failed" else {"check": check}
        self._observe(f"check.{change}", fields)
        self._send_beat()  # the director hears it now, not at the next scheduled heartbeat

    async def _measure(self) -> None:
        psutil.cpu_percent(None)  # the first reading only starts the measurement
        while True:
            await asyncio.sleep(PERFORMANCE_EVERY)
            figures = await asyncio.to_thread(self._read_performance)
            figures["extra"] = await self._plugin_figures()
            self.performance = figures

    def _read_performance(self) -> dict[str, Any]:
        figures: dict[str, Any] = {
            "cpu": psutil.cpu_percent(None),
            "memory": psutil.virtual_memory().percent,
        }
        if self._gpu is not None:
            figures["gpu"] = self._gpu.read()
        return figures

    async def _plugin_figures(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}

        def failed(impl: pluggy.HookImpl, exc: Exception) -> None:
            log.debug("plugin %s performance failed: %s", impl.plugin_name, exc)

        for plugin, result in call_each(self.pm.hook.agent_performance, failed):
            try:
                if inspect.isawaitable(result):
                    result = await asyncio.wait_for(result, PERFORMANCE_EVERY)
                json.dumps(result or {})  # what cannot travel is dropped here, not in the heartbeat
                extra.update(result or {})
            except Exception as exc:
                log.debug("plugin %s performance failed: %s", plugin, exc)
        return extra

    # --- notices from the director ---

    def datagram(self, packet: bytes, source: tuple[str, int]) -> None:
        if source[0] not in self._director_ips and self.director[0] not in ("0.0.0.0", "::"):
            return  # only the director decides where outputs play
        try:
            if packet.startswith(_ACK_PREFIX):
                self.acknowledged(decode(packet, ACK, Ack, self.secret))
            else:
                self.notice(decode(packet, PLACEMENT, Placement, self.secret))
        except WireError as error:
            self.dropped += 1
            if self.dropped & (self.dropped - 1) == 0:  # 1, 2, 4 …: never a flood
                log.warning(
                    "dropped a packet from %s (%d so far): %s. Is --director the director's "
                    "heartbeat port (director.heartbeat_port, 7401), and --secret-file its secret?",
                    source[0],
                    self.dropped,
                    error,
                )

    def acknowledged(self, ack: Ack) -> None:
        """The director heard a heartbeat that asked: it is there. An ack for another run,
        or for a heartbeat no newer than the last one acknowledged (a replay), says nothing."""
        if ack.boot != self.boot or not self._acked_seq < ack.seq <= self.seq:
            return
        self._acked_seq = ack.seq
        self._heard_director()

    def notice(self, placement: Placement) -> None:
        self.heard = True
        self._heard_director()
        self._take_session(placement)
        if placement.checks != self._wanted_checks:
            self._wanted_checks = placement.checks
            self._checks_changed.set()
        if abs(placement.interval - self.interval) > 1e-9:
            log.info("heartbeat interval set by the show: %g s", placement.interval)
            self.interval = placement.interval
        if placement.epoch <= self.epoch:
            return  # an older or repeated decision never undoes a newer one
        self.epoch = placement.epoch
        self.placement = placement
        if placement.event is not None:
            kind = "backup.moved" if "to" in placement.event else "backup.activated"
            self._observe(kind, {**placement.event, "plays": placement.plays})
        else:
            self._observe("agent.placement", {"epoch": placement.epoch, "plays": placement.plays})

    def _take_session(self, placement: Placement) -> None:
        """Heartbeats carry the session of the director's newest answer to this run: an
        answer to another run, or to an older heartbeat (a replayed notice), is no news."""
        if (
            placement.session
            and placement.boot == self.boot
            and placement.seq is not None
            and placement.seq >= self._session_seq
        ):
            self.session = placement.session
            self._session_seq = placement.seq

    def _observe(self, kind: str, fields: dict[str, Any]) -> None:
        self.observers.tell(self.events.add(kind, fields))


_ACK_PREFIX = ACK.encode() + b"\0"


class _Notices(asyncio.DatagramProtocol):
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def datagram_received(self, data: bytes, addr: tuple[str, Any]) -> None:
        try:
            self.agent.datagram(data, (addr[0], addr[1]))
        except Exception:
            log.exception("notice handling failed")

    def error_received(self, exc: Exception) -> None:
        pass  # the director is not up yet: heartbeats keep going


class _Gpu:
    """NVIDIA GPU figures through NVML, where the driver and nvidia-ml-py are present."""

    def __init__(self, nvml: Any, handle: Any) -> None:
        self.nvml, self.handle = nvml, handle
        name = nvml.nvmlDeviceGetName(handle)
        self.name = name.decode() if isinstance(name, bytes) else str(name)

    @classmethod
    def find(cls) -> _Gpu | None:
        try:
            import pynvml  # type: ignore[import-not-found]

            pynvml.nvmlInit()
            return cls(pynvml, pynvml.nvmlDeviceGetHandleByIndex(0))
        except Exception:  # no package, no driver, no GPU: absent is fine
            return None

    def read(self) -> dict[str, Any]:
        try:
            rates = self.nvml.nvmlDeviceGetUtilizationRates(self.handle)
            memory = self.nvml.nvmlDeviceGetMemoryInfo(self.handle)
            return {
                "name": self.name,
                "load": rates.gpu,
                "memory": 100 * memory.used / memory.total,
            }
        except Exception:
            return {"name": self.name}


def _check_kinds(pm: pluggy.PluginManager) -> CheckKinds:
    try:
        return collect_check_kinds(pm)
    except CheckKindError as exc:
        log.error("%s; this agent runs the built-in check kinds only", exc)
        kinds = CheckKinds()
        for cls in builtin_kinds():
            kinds.register(cls, "pxcontrol")
        return kinds


def _addresses_of(host: str) -> set[str]:
    """The director's addresses: notices are accepted only from these."""
    try:
        return {host} | {
            info[4][0] for info in socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
        }
    except OSError:
        return {host}


def read_secret(path: Path | None) -> bytes | None:
    if path is None:
        return None
    return path.read_text().strip().encode()


def director_address(text: str, default_port: int = 7401) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or "]" in port or (":" in host and not host.startswith("[")):
        return text.strip("[]"), default_port
    return host.strip("[]"), int(port)
