"""The OSC bridge: lighting and show consoles trigger takeovers and actions, and watch the show.

Every packet goes through one synchronous handler: it parses, checks access,
looks the address up in a dict, answers what it can at once and hands slow
work (a takeover, an action) to the loop as a task that answers when done.
Nothing here waits; a bundle time-tagged in the future is run now.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import struct
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pythonosc.osc_message import OscMessage

from pxcontrol.actions import TooManyArguments, arguments_from_list
from pxcontrol.app import ActionRecord
from pxcontrol.attempts import Attempts
from pxcontrol.budgets import Budget, Floods, Rate, power_of_two
from pxcontrol.events import Event
from pxcontrol.module import Backoff
from pxcontrol.osc_packets import Malformed, message_datagrams, parse_message, unsupported_type
from pxcontrol.osc_subscriptions import SavedSubscription, SubscriptionFile
from pxcontrol.osc_transport import OscServers, Peer, frame
from pxcontrol.show import FeedbackTarget
from pxcontrol.status import summarise_names
from pxcontrol.tasks import cancel_and_wait

if TYPE_CHECKING:
    from pxcontrol.control import ShowControl

log = logging.getLogger("pxcontrol.osc")

PREFIX = "/pxcontrol"
LEASE = 60.0  # seconds a subscription lasts without renewal
UNKNOWN = -1.0  # cpu or memory not reported (OSC has no "none" every console reads)
#: Reconnecting to a console's fixed TCP receiver, as modules reconnect to devices.
FEEDBACK_BACKOFF = Backoff(first=0.25, maximum=5.0)
ORIGINS_REMEMBERED = 256  # senders of commands whose host is known (for no-echo pushes)
# A status answer over UDP leaves in bursts: a console's default receive buffer (208 KiB on
# Linux) holds about 256 small datagrams, and 500 clients at once overflowed it.
STATUS_BURST = 64
STATUS_PAUSE = 0.01  # seconds between bursts: 6,400 messages a second, 500 clients in 80 ms
_NOT_IN_ADDRESS = re.compile(r"[\s#*,/?\[\]{}]")

# Per sender host. A console's fader sends 50 a second, a busy show a few hundred;
# a script gone wrong sends tens of thousands. Backup commands and the rest have a
# budget of their own, so a flood of actions never holds up a takeover or a ping.
# Actions (/pxcontrol/action and unknown addresses): [osc] action_rate, action_burst (2000/s,
# 500); commands (backup/*, ping, connect, status, (un)subscribe): command_rate, command_burst
# (500/s, 200).
REFUSALS = Rate(burst=20, per_second=50)  # "rate limited" answers; past this, no answer
FLOOD_QUIET = 5.0  # seconds without a refusal that end a flood episode (one alarm each)


def build(address: str, *args: Any) -> bytes:
    """An OSC message of plain types only (int, float, string): every console reads them.

    Encoded here rather than with python-osc's builder, which parses every message it
    builds again: replies are on the hot path.
    """
    tags = [","]
    data = []
    for arg in args:
        if isinstance(arg, bool | int) and not isinstance(arg, float):
            tags.append("i")
            data.append(struct.pack(">i", int(arg)))
        elif isinstance(arg, float):
            tags.append("f")
            data.append(struct.pack(">f", arg))
        else:
            tags.append("s")
            data.append(_osc_string("" if arg is None else str(arg)))
    return _osc_string(address) + _osc_string("".join(tags)) + b"".join(data)


def _osc_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return raw + b"\0" * (4 - len(raw) % 4)


def address_part(name: str) -> str:
    """A client name as one part of an OSC address ("Playout 1" → "Playout_1")."""
    return _NOT_IN_ADDRESS.sub("_", name)


def reply_address(address: str) -> str:
    """Where the answer to `address` goes: `/pxcontrol/reply` and the address, each part made
    plain as in a push, so a console's pattern (`/p?ng`) never comes back as a pattern,
    which receivers such as aiosc and osc4py3 drop."""
    parts = address.removeprefix("/").split("/")
    return f"{PREFIX}/reply/" + "/".join(address_part(part) or "_" for part in parts)


class CommandError(Exception):
    """A command that cannot be done; the message goes back to the console as it is."""


@dataclass
class Subscription:
    peer: Peer  # where pushes go
    expires: float | None  # None: lives with its TCP connection
    no_echo: bool
    via_port: bool  # subscribed naming a port: replies to that host go there too


class OscBridge:
    def __init__(self, director: ShowControl, clock: Callable[[], float] = time.monotonic) -> None:
        self.director = director
        self.servers = OscServers(self.handle_packet, self._connection_closed, self._subscribed)
        self.counts: Counter[str] = Counter()
        self.subscriptions: dict[tuple[str, str, int], Subscription] = {}
        self.unlocked: dict[str, str] = {}  # host → the passcode it unlocked with
        self._allowed_hosts: dict[tuple[str, int], bool] = {}
        self._clock = clock
        self._tasks: set[asyncio.Task[Any]] = set()
        self._feedback: list[Peer] = []
        # The name each sender of a command goes by in events (`by`, `source`) → its host:
        # a subscriber that asked for no echo is not sent back what its own host caused.
        self._origins: OrderedDict[str, str] = OrderedDict()
        self._unsubscribe: Callable[[], None] | None = None
        self._saved: SubscriptionFile | None = None  # UDP subscriptions on disk
        self.port = 0
        self._commands: dict[str, Callable[[OscMessage, Peer], None]] = {
            f"{PREFIX}/ping": self._ping,
            f"{PREFIX}/connect": self._connect,
            f"{PREFIX}/status": self._status,
            f"{PREFIX}/subscribe": self._subscribe,
            f"{PREFIX}/unsubscribe": self._unsubscribe_command,
            f"{PREFIX}/backup/switch": self._switch,
            f"{PREFIX}/backup/move": self._move,
            f"{PREFIX}/backup/auto": self._auto,
            f"{PREFIX}/alarm/acknowledge": self._acknowledge,
            f"{PREFIX}/action": self._action,
        }
        self._open = {f"{PREFIX}/ping", f"{PREFIX}/connect"}  # no passcode needed
        self._priority = set(self._commands) - {f"{PREFIX}/action"}  # on the commands budget
        self._actions_budget = Budget(Rate(500, 2000.0), clock)
        self._budget_settings: object = None  # the show's [osc] the budgets were set from
        self._commands_budget = Budget(Rate(200, 500.0), clock)
        self._refusals_budget = Budget(REFUSALS, clock)
        self.floods = Floods(FLOOD_QUIET, clock)
        self.passcodes = Attempts("passcode", log, clock)
        self._pong = build(f"{PREFIX}/pong")
        self._done: dict[str, bytes] = {}
        self._status_sending: set[tuple[str, str, int]] = set()  # paced answers under way
        self.status_pause: Callable[[], Awaitable[None]] = lambda: asyncio.sleep(STATUS_PAUSE)

    # --- lifecycle ---

    async def start(self, bind: str, port: int) -> int:
        self.port = await self.servers.start(bind, port)
        self._unsubscribe = self.director.app.events.listen(self.push)
        for target in self.director.show.osc.feedback:
            self._feedback.append(await self._feedback_peer(target))
        self._saved = SubscriptionFile(self.director.store.path.parent)
        self._take_back(await asyncio.to_thread(self._saved.load))
        return self.port

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        await cancel_and_wait(self._tasks)
        if self._saved is not None:
            await self._saved.close()
        await self.servers.stop()

    def _take_back(self, saved: list[SavedSubscription]) -> None:
        """The UDP subscriptions of the last run whose lease still runs: pushed to at once."""
        transport = self.servers.udp
        assert transport is not None
        wall, now = time.time(), self._clock()
        for sub in saved:
            if sub.ends <= wall:
                continue
            host, port = sub.host, sub.port
            target = Peer("udp", host, port, lambda p, a=(host, port): transport.sendto(p, a))
            expires = now + min(sub.ends - wall, LEASE)
            self.subscriptions[("udp", host, port)] = Subscription(
                target, expires, sub.no_echo, sub.via_port
            )
        if self.subscriptions:
            log.info("OSC subscriptions of the last run taken back: %d", len(self.subscriptions))

    def _keep_subscriptions(self) -> None:
        """Write the UDP subscriptions down (their lease ends as wall-clock times)."""
        if self._saved is None:
            return
        wall, now = time.time(), self._clock()
        self._saved.save(
            [
                SavedSubscription(
                    host=sub.peer.host,
                    port=sub.peer.port,
                    ends=wall + (sub.expires - now),
                    no_echo=sub.no_echo,
                    via_port=sub.via_port,
                )
                for sub in self.subscriptions.values()
                if sub.peer.protocol == "udp" and sub.expires is not None and sub.expires > now
            ]
        )

    # --- every packet ---

    def handle_packet(self, data: bytes, peer: Peer) -> None:
        self.counts["packets"] += 1
        if not self._allowed(peer):
            return
        if self._shed(data, peer):
            return
        try:
            datagrams = message_datagrams(data)
        except Malformed:
            self.counts["malformed"] += 1
            return
        for datagram in datagrams:  # a bundle runs whole or not at all
            unsupported = unsupported_type(datagram)
            if unsupported is not None:
                # python-osc would drop such an argument in silence and shift the rest.
                self.counts["unsupported_type"] += 1
                address, tag = unsupported
                self._reply(
                    peer,
                    address,
                    error=f"argument type {tag!r} is not supported: send int (i), float (f), "
                    "string (s) or true/false (T/F)",
                )
                return
        try:
            messages = [parse_message(datagram) for datagram in datagrams]
        except Malformed:
            self.counts["malformed"] += 1
            return
        for message in messages:
            self._handle(message, peer)

    def _shed(self, data: bytes, peer: Peer) -> bool:
        """A plain message from a host whose action budget is spent is refused before it is
        parsed: at tens of thousands a second, parsing what will be refused anyway is what
        would crowd out the same console's pings and takeovers. Commands (switch, move,
        ping …) and bundles always go the whole way."""
        if not data.startswith(b"/") or not self._actions_budget.spent(peer.host):
            return False
        end = data.find(b"\0")
        address = data[:end].decode("ascii", "replace") if end > 0 else ""
        if address in self._priority:
            return False
        self._rate_limited(peer, address, self._actions_budget)
        return True

    def _handle(self, message: OscMessage, peer: Peer) -> None:
        address = message.address
        command = self._commands.get(address)
        settings = self.director.show.osc
        if settings is not self._budget_settings:  # a reload may change the rates
            self._actions_budget.rate = Rate(settings.action_burst, settings.action_rate)
            self._commands_budget.rate = Rate(settings.command_burst, settings.command_rate)
            self._budget_settings = settings
        if address in self._priority:
            budget = self._commands_budget
        else:
            budget = self._actions_budget
        if not budget.take(peer.host):
            self._rate_limited(peer, address, budget)
            return
        if command is None:
            self.counts["unknown_address"] += 1
            self._reply(
                peer,
                address,
                error=f"unknown address {address}; see the {PREFIX}/ commands in docs/osc.md",
            )
            return
        if self._locked(peer) and address not in self._open:
            self.counts["locked"] += 1
            self._reply(peer, address, error=f"locked: send {PREFIX}/connect <passcode> first")
            return
        try:
            command(message, peer)
        except CommandError as exc:
            self.counts["refused"] += 1
            self._reply(peer, address, error=str(exc))
        except Exception as exc:  # a bug here must not take the bridge down for everyone
            log.exception("OSC %s from %s failed", address, peer.name)
            self._reply(peer, address, error=f"internal error: {exc}")

    def _allowed(self, peer: Peer) -> bool:
        allow = self.director.show.director.allow
        known = self._allowed_hosts.get((peer.host, id(allow)))
        if known is None:  # parsed once per host (and per version of the show's list)
            try:
                ip = ipaddress.ip_address(peer.host)
            except ValueError:
                ip = None
            known = ip is not None and any(ip in net for net in allow)
            if len(self._allowed_hosts) > 4096:
                self._allowed_hosts.clear()
            self._allowed_hosts[(peer.host, id(allow))] = known
        if known:
            return True
        self.counts["denied"] += 1
        count = self.counts["denied"]
        if power_of_two(count):  # a stranger cannot flood the log
            log.warning(
                "OSC from %s refused: not in director.allow (%d refused so far)", peer.host, count
            )
        return False

    def _rate_limited(self, peer: Peer, address: str, budget: Budget) -> None:
        """Counted; answered while the answers themselves stay within REFUSALS; one alarm
        per flood episode, a log line at powers of two of what the episode refused."""
        self.counts["rate_limited"] += 1
        host = peer.host
        episode, new = self.floods.refused(host)
        rate = budget.rate  # the show's, as of now: a reload replaces it
        what = "commands" if budget is self._commands_budget else "actions"
        if new:
            message = (
                f"OSC flood from {host}: more than {rate.per_second:g} {what}/s (burst "
                f"{rate.burst:g}); the excess is refused until it slows down"
            )
            log.warning("%s", message)
            self.director.app.emit(
                "alarm", client="", alarm="osc flood", host=host, message=message
            )
        elif power_of_two(episode.refused):
            log.warning(
                "OSC flood from %s: %d message(s) refused since it began %.1f s ago",
                host,
                episode.refused,
                episode.last - episode.began,
            )
        if self._refusals_budget.take(host):
            self._reply(
                peer,
                address,
                error=f"rate limited: more than {rate.per_second:g} {what}/s from {host}; "
                "slow down",
            )
        else:
            self.counts["rate_limited_unanswered"] += 1

    def _locked(self, peer: Peer) -> bool:
        passcode = self.director.show.director.passcode
        return bool(passcode) and self.unlocked.get(peer.host) != passcode  # a new one locks

    # --- answers ---

    def _reply(
        self, peer: Peer, address: str, ok: str | None = None, error: str | None = None
    ) -> None:
        if error is None and not ok and address in self._commands:
            packet = self._done.get(address)  # the most common answer, encoded once
            if packet is None:
                packet = self._done[address] = build(f"{PREFIX}/reply{address}", "ok", "")
        else:
            args = ("error", error) if error is not None else ("ok", ok or "")
            known = address in self._commands  # plain already; any other is the sender's text
            packet = build(f"{PREFIX}/reply{address}" if known else reply_address(address), *args)
        self._send_to(peer, packet)

    def _send_to(self, peer: Peer, packet: bytes) -> None:
        """To the sender; over UDP also a copy to the port its host subscribed with.

        A console that sends from a throwaway port (liblo's oscsend) listens on the port
        it subscribed with; every other sender on that host still gets its own answer.
        """
        peer.send(packet)
        if peer.protocol == "udp":
            for sub in self.subscriptions.values():
                if (
                    sub.via_port
                    and sub.peer.host == peer.host
                    and sub.peer.port != peer.port
                    and self._live(sub)
                ):
                    sub.peer.send(packet)

    def _later(self, peer: Peer, address: str, work: Awaitable[tuple[bool, str]]) -> None:
        async def run() -> None:
            try:
                ok, message = await work
            except Exception as exc:
                log.exception("OSC %s failed", address)
                ok, message = False, f"internal error: {exc}"
            self._reply(peer, address, ok=message if ok else None, error=None if ok else message)

        task = asyncio.get_running_loop().create_task(run(), name=f"osc {address}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- commands ---

    def _ping(self, message: OscMessage, peer: Peer) -> None:
        self._send_to(peer, self._pong)

    def _connect(self, message: OscMessage, peer: Peer) -> None:
        passcode = self.director.show.director.passcode
        given = message.params[0] if message.params else None
        if passcode:
            refusal = self.passcodes.refusal(peer.host)
            if refusal is not None:  # heard by nobody, the right passcode neither
                self.counts["passcode_waits"] += 1
                if power_of_two(self.passcodes.refused):
                    log.warning("OSC %s (%d refused so far)", refusal, self.passcodes.refused)
                raise CommandError(refusal)
            if str(given) != passcode:
                self.passcodes.failed(peer.host)
                raise CommandError("badpass")
            self.passcodes.succeeded(peer.host)
        self.unlocked[peer.host] = passcode or ""
        self._reply(peer, message.address, ok="connected")

    def _status(self, message: OscMessage, peer: Peer) -> None:
        """Every client, one client by name, or a page (offset, count), then the end message.

        Over UDP an answer longer than one burst is paced (STATUS_BURST messages, then
        STATUS_PAUSE) by a task, so a console's receive buffer keeps up and nothing here waits.
        """
        offset, count = self._status_range(message)
        rows = self._status_rows(offset, count)
        total = len(self.director.show.clients)
        packets = [build(f"{PREFIX}/status/client", *row) for row in rows]
        packets.append(build(f"{PREFIX}/status/director", *self._health_row()))
        packets.append(build(f"{PREFIX}/status/end", len(rows), total, offset))
        if peer.protocol == "tcp" or len(packets) <= STATUS_BURST:  # TCP has flow control
            for packet in packets:
                self._send_to(peer, packet)
            return
        key = (peer.protocol, peer.host, peer.port)
        if key in self._status_sending:
            raise CommandError(
                f"a status answer to {peer.host}:{peer.port} is still being sent; "
                f"ask again after its {PREFIX}/status/end"
            )
        self._status_sending.add(key)
        task = asyncio.get_running_loop().create_task(
            self._send_paced(peer, packets, key), name=f"osc status to {peer.name}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_paced(
        self, peer: Peer, packets: list[bytes], key: tuple[str, str, int]
    ) -> None:
        try:
            for start in range(0, len(packets), STATUS_BURST):
                if start:
                    await self.status_pause()
                for packet in packets[start : start + STATUS_BURST]:
                    self._send_to(peer, packet)
        finally:
            self._status_sending.discard(key)

    def _health_row(self) -> tuple[float | int | str, ...]:
        """The director's own health: loop lag (ms), age of the detector's last tick (ms,
        -1 before its first), events waiting to be written, stalls, restarts, events the
        log could not write since start; then its role (active or standby), its name, the
        director in charge ("" when none is), that one's address, and its term (only with
        standby directors: a show without them answers as it always did)."""
        health = self.director.health()
        age = health.detector_tick_age_ms
        return (
            float(health.loop_lag_ms),
            UNKNOWN if age is None else float(age),
            health.state_queue,
            health.stalls,
            health.restarts,
            health.events_shed,
            *(
                (health.role, health.name, health.in_charge, health.in_charge_address, health.term)
                if health.name
                else ()
            ),
        )

    def _status_range(self, message: OscMessage) -> tuple[int, int]:
        """(offset, count) in the show's order: none → all, a name → that client, two ints → a page."""
        params = message.params
        clients = self.director.show.clients
        if not params:
            return 0, len(clients)
        if len(params) == 1 and isinstance(params[0], str):
            name = params[0]
            index = next((i for i, c in enumerate(clients) if c.name == name), None)
            if index is None:
                raise self._no_client(name)
            return index, 1
        if len(params) == 2 and all(_is_int(p) for p in params):
            offset, count = params
            if offset < 0 or count < 1:
                raise CommandError(
                    f"{message.address} offset count: offset 0 or more, count 1 or more; "
                    f"got {offset} {count}"
                )
            return offset, count
        raise CommandError(
            f"{message.address} takes nothing (every client), a client name (s), or offset and "
            f"count (i i); got {' '.join(repr(p) for p in params)}"
        )

    def _status_rows(
        self, offset: int, count: int
    ) -> list[tuple[str, str, str, float, float, int, str, str, str, int]]:
        """name, state, where its outputs play, cpu, memory: the five arguments consoles read;
        then whether the newest decision for it is confirmed (1) or only announced (0); then,
        for a failed client, the check that failed and why ("" "" otherwise); then, for a
        backup, the client whose outputs it plays now (""), and whether an automatic
        takeover of this client is armed (1: automatic backup on, and a backup covers it).

        The rows are the status board's, kept up to date as events happen (the page shows
        the same); only the figures are read fresh.
        """
        board = self.director.board
        board.refresh()
        live = self.director.live
        rows = []
        for decl in self.director.show.clients[offset : offset + count]:
            row = board.rows[decl.name]
            seen = live.clients.get(decl.name)
            cpu = seen.cpu if seen is not None else None
            memory = seen.memory if seen is not None else None
            rows.append(
                (
                    row.name,
                    row.state,
                    row.plays_on,
                    UNKNOWN if cpu is None else float(cpu),
                    UNKNOWN if memory is None else float(memory),
                    int(row.confirmed),
                    row.failed_check or "",
                    row.failed_message or "",
                    row.carrying or "",
                    int(row.auto_backup and bool(row.backups)),
                )
            )
        return rows

    def _switch(self, message: OscMessage, peer: Peer) -> None:
        name = self._client_name(message)
        backup = self._backup()
        self._later(
            peer, message.address, _decided(backup.takeover(name, "osc", by=self._origin(peer)))
        )

    def _move(self, message: OscMessage, peer: Peer) -> None:
        name = self._client_name(message)
        target = message.params[1] if len(message.params) > 1 else None
        if target is not None and not isinstance(target, str):
            raise CommandError("the target must be a client name (a string)")
        if target is not None and self.director.show.client(target) is None:
            raise self._no_client(target)
        backup = self._backup()
        self._later(
            peer,
            message.address,
            _decided(backup.move_to(name, target, "osc", by=self._origin(peer))),
        )

    def _auto(self, message: OscMessage, peer: Peer) -> None:
        name = self._client_name(message)
        params = message.params
        value = params[1] if len(params) == 2 else None
        # Exactly 0 or 1 (or false/true): a fader's 0.4 or a stray -1 must not switch it.
        if not isinstance(value, bool | int | float) or value not in (0, 1):
            raise CommandError(f"{message.address} takes a client name and 0 or 1")
        on = bool(value)
        backup = self._backup()
        self._later(
            peer, message.address, _decided(backup.set_auto(name, on, "osc", by=self._origin(peer)))
        )

    def _acknowledge(self, message: OscMessage, peer: Peer) -> None:
        """The alarms up to an event (default: every one so far), for every operator."""
        params = message.params
        if len(params) > 1 or (params and not _is_int(params[0])) or (params and params[0] < 0):
            raise CommandError(
                f"{message.address} takes nothing, or the event number (i) to go up to"
            )
        seq = params[0] if params else None
        now = self.director.acknowledge_alarms(seq, self._origin(peer))
        self._reply(peer, message.address, ok=f"alarms up to event {now.seq} acknowledged")

    def _action(self, message: OscMessage, peer: Peer) -> None:
        params = message.params  # python-osc makes a new list on each access
        if not params or not isinstance(params[0], str):
            raise CommandError(f'{message.address} takes "Module.Action", then its arguments')
        ref, values = params[0], params[1:]
        try:
            _, spec = self.director.app.resolve(ref)
            args = arguments_from_list(spec, values)
        except (LookupError, TooManyArguments) as exc:
            raise CommandError(str(exc.args[0] if exc.args else exc)) from None

        address = message.address

        def answer(record: ActionRecord) -> None:  # from the action's own task, as it ends
            if record.ok:
                self._reply(peer, address, ok="" if record.result is None else str(record.result))
            else:
                self._reply(peer, address, error=record.error)

        self.director.app.start_action(ref, args, source=self._origin(peer), then=answer)

    def _origin(self, peer: Peer) -> str:
        """The name events give this sender as their cause; its host is remembered."""
        self._origins[peer.name] = peer.host
        self._origins.move_to_end(peer.name)
        while len(self._origins) > ORIGINS_REMEMBERED:
            self._origins.popitem(last=False)
        return peer.name

    def _client_name(self, message: OscMessage) -> str:
        if not message.params or not isinstance(message.params[0], str):
            raise CommandError(f"{message.address} takes a client name (a string) first")
        name = message.params[0]
        if self.director.show.client(name) is None:
            raise self._no_client(name)
        return name

    def _no_client(self, name: str) -> CommandError:
        """A name the show does not have; the first names it has (500 are no answer)."""
        known = summarise_names((c.name for c in self.director.show.clients), 10) or "none"
        return CommandError(f"no client is called {name!r} (clients: {known})")

    def _backup(self):
        if self.director.backup is None:
            raise CommandError("the director is still starting")
        return self.director.backup

    # --- subscriptions and pushes ---

    def _subscribe(self, message: OscMessage, peer: Peer) -> None:
        named, no_echo = _port_and_noecho(message, allow_noecho=True)
        if peer.protocol == "tcp":
            target, expires, via_port = peer, None, False
        else:
            port = peer.port if named is None else named
            transport = self.servers.udp
            assert transport is not None
            host = peer.host
            target = Peer("udp", host, port, lambda p: transport.sendto(p, (host, port)))
            expires, via_port = self._clock() + LEASE, named is not None
        key = (target.protocol, target.host, target.port)
        self.subscriptions[key] = Subscription(target, expires, no_echo, via_port)
        lease = "while connected" if expires is None else f"for {LEASE:g} s"
        self._reply(peer, message.address, ok=f"subscribed {target.host}:{target.port} {lease}")
        if expires is not None:
            self._keep_subscriptions()

    def _unsubscribe_command(self, message: OscMessage, peer: Peer) -> None:
        port, _ = _port_and_noecho(message, allow_noecho=False)
        gone = [
            key
            for key, sub in self.subscriptions.items()
            if sub.peer.host == peer.host and (port is None or sub.peer.port == port)
        ]  # with a port: that subscription only (two consoles on one machine)
        # Answer first: a console that subscribed with a port hears its answers there.
        self._reply(peer, message.address, ok=f"{len(gone)} subscription(s) ended")
        for key in gone:
            del self.subscriptions[key]
        if any(protocol == "udp" for protocol, _, _ in gone):
            self._keep_subscriptions()

    def _subscribed(self, peer: Peer) -> bool:
        return ("tcp", peer.host, peer.port) in self.subscriptions

    def _connection_closed(self, peer: Peer) -> None:
        self.subscriptions.pop(("tcp", peer.host, peer.port), None)

    def _live(self, sub: Subscription) -> bool:
        return sub.expires is None or sub.expires > self._clock()

    def push(self, event: Event) -> None:
        packets = pushes_for(event)
        if not packets:
            return
        cause = self._origins.get(str(event.fields.get("by") or event.fields.get("source") or ""))
        for key, sub in list(self.subscriptions.items()):
            if not self._live(sub):
                del self.subscriptions[key]
                continue
            if sub.no_echo and cause == sub.peer.host:
                continue  # the console that made the change knows already
            for packet in packets:
                sub.peer.send(packet)
        for peer in self._feedback:
            for packet in packets:
                peer.send(packet)

    async def _feedback_peer(self, target: FeedbackTarget) -> Peer:
        loop = asyncio.get_running_loop()
        if target.protocol == "udp":
            infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_DGRAM)
            address = infos[0][4]
            transport = self.servers.udp
            assert transport is not None
            return Peer("udp", target.host, target.port, lambda p: transport.sendto(p, address))
        link = _FeedbackLink(target)
        # Supervised: a fault in the link is an alarm, and the link connects again.
        task = self.director.supervisor.start(f"osc feedback {target.host}:{target.port}", link.run)
        self._tasks.add(task)
        return Peer("tcp", target.host, target.port, link.send)


class _FeedbackLink:
    """A TCP connection to a console's fixed receiver, kept up; pushes while it is down are lost."""

    def __init__(self, target: FeedbackTarget) -> None:
        self.target = target
        self.writer: asyncio.StreamWriter | None = None

    def send(self, packet: bytes) -> None:
        if self.writer is not None and not self.writer.is_closing():
            self.writer.write(frame(packet, self.target.framing))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_delay = FEEDBACK_BACKOFF.delays()
        while True:
            began = loop.time()
            try:
                async with asyncio.timeout(2.0):
                    reader, self.writer = await asyncio.open_connection(
                        self.target.host, self.target.port
                    )
                while await reader.read(4096):
                    pass
            except OSError as exc:
                log.debug("OSC feedback %s:%s: %s", self.target.host, self.target.port, exc)
            except TimeoutError:
                pass
            finally:
                if self.writer is not None:
                    self.writer.close()
                    self.writer = None
            if loop.time() - began >= FEEDBACK_BACKOFF.healthy_after:
                next_delay = FEEDBACK_BACKOFF.delays()  # it was up a while: start again quick
            await asyncio.sleep(next_delay())


def _port_and_noecho(message: OscMessage, allow_noecho: bool) -> tuple[int | None, bool]:
    """The optional port (an int, or digits in a string, as some consoles send it) and
    "noecho" of /pxcontrol/subscribe and /pxcontrol/unsubscribe; anything else is refused."""
    port: int | None = None
    no_echo = False
    takes = '[port] and ["noecho"]' if allow_noecho else "[port]"
    for value in message.params:
        if allow_noecho and value == "noecho":
            no_echo = True
        elif port is None and isinstance(value, str) and value.isascii() and value.isdigit():
            port = int(value)
        elif port is None and isinstance(value, int) and not isinstance(value, bool):
            port = value
        else:
            raise CommandError(f"{message.address} takes {takes}; got {value!r}")
        if port is not None and not 0 < port < 65536:
            raise CommandError(f"{port} is not a port")
    return port, no_echo


def pushes_for(event: Event) -> list[bytes]:
    """What subscribers hear of an event: plain types, never arrays."""
    f = event.fields
    kind = event.kind
    client = address_part(str(f.get("client", "")))
    if kind in ("client.online", "client.offline"):
        # Offline supersedes late, online ends it: a console's "late" lamp goes out either way.
        return [
            build(f"{PREFIX}/client/{client}/state", kind.split(".")[1]),
            build(f"{PREFIX}/client/{client}/late", 0),
        ]
    if kind == "client.failed":
        return [build(f"{PREFIX}/client/{client}/state", "failed")]
    if kind == "client.recovered":
        return [build(f"{PREFIX}/client/{client}/state", "online")]
    if kind == "client.late":
        return [build(f"{PREFIX}/client/{client}/late", int(bool(f.get("late"))))]
    if kind == "backup.activated":
        return [build(f"{PREFIX}/backup/{client}/active", 1, str(f.get("backup", "")))]
    if kind == "backup.moved":
        away = f.get("to") != f.get("client")
        return [build(f"{PREFIX}/backup/{client}/active", int(away), str(f.get("to", "")))]
    if kind == "backup.failed":
        return [
            build(f"{PREFIX}/backup/{client}/failed", str(f.get("reason")), str(f.get("message")))
        ]
    if kind == "backup.auto":
        return [build(f"{PREFIX}/backup/{client}/auto", int(bool(f.get("on"))))]
    if kind == "action.failed":
        return [build(f"{PREFIX}/action/failed", str(f.get("action")), str(f.get("message")))]
    if kind == "alarm":
        return [build(f"{PREFIX}/alarm", str(f.get("alarm", "")), str(f.get("message", "")))]
    if kind == "alarm.acknowledged":
        return [build(f"{PREFIX}/alarm/acknowledged", int(f.get("up_to", 0)), str(f.get("by", "")))]
    if kind in ("show.reloaded", "show.error"):
        return [build(f"{PREFIX}/show/{kind.split('.')[1]}", str(f.get("message", "")))]
    if kind == "director.active":
        director = str(f.get("director", ""))
        address, term = str(f.get("address", "")), int(f.get("term", 0))
        return [build(f"{PREFIX}/director/role", "active", director, director, address, term)]
    if kind == "director.standby":
        director, active = str(f.get("director", "")), str(f.get("active", ""))
        address, term = str(f.get("address", "")), int(f.get("term", 0))
        return [build(f"{PREFIX}/director/role", "standby", director, active, address, term)]
    if kind == "module.status":
        module = address_part(str(f.get("module", "")))
        return [
            build(f"{PREFIX}/module/{module}/status", str(f.get("status")), str(f.get("message")))
        ]
    return []


async def _decided(decision: Awaitable[Any]) -> tuple[bool, str]:
    result = await decision
    return result.ok, result.message


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
