"""What one sender may ask of the OSC bridge: action floods and passcode guessing are bounded."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from pythonosc.osc_message import OscMessage

from pxcontrol.attempts import FREE, LONGEST, WAIT
from pxcontrol.director import Director
from pxcontrol.osc_bridge import FLOOD_QUIET, REFUSALS, OscBridge, build
from pxcontrol.osc_transport import Peer

from .conftest import async_wait_for
from .test_osc_bridge import Console, start


@pytest.fixture
async def director(tmp_path) -> AsyncIterator[Director]:
    director = await start(tmp_path)
    yield director
    await director.stop()


@pytest.fixture
def consoles(director: Director) -> Iterator[Callable[..., Console]]:
    made: list[Console] = []

    def make(source: str = "127.0.0.1") -> Console:
        made.append(Console(director.osc.port, source))
        return made[-1]

    yield make
    for c in made:
        c.close()


ACTION = "/pxcontrol/action"
REPLY = "/pxcontrol/reply/pxcontrol/action"


class Clock:
    def __init__(self) -> None:
        self.now = 1024.0

    def __call__(self) -> float:
        return self.now


class Heard:
    """A peer whose answers are collected, for the bridge called in-process."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.messages: list[OscMessage] = []
        self.peer = Peer("udp", host, 9000, lambda packet: self.messages.append(OscMessage(packet)))

    def at(self, address: str) -> list[list]:
        return [m.params for m in self.messages if m.address == address]


def alarms(director: Director) -> list[dict]:
    return [e.fields for e in director.app.events.of_kind("alarm")]


async def test_an_action_flood_is_refused_past_its_budget_and_takeovers_still_go(
    director: Director, caplog
):
    clock = Clock()
    bridge = OscBridge(director, clock)
    console, other = Heard(), Heard("127.0.0.2")
    wait = build(ACTION, "Show.Wait", 0)
    burst = director.show.osc.action_burst
    caplog.set_level(logging.WARNING, "pxcontrol.osc")

    for _ in range(burst + 100):  # all at the same instant
        bridge.handle_packet(wait, console.peer)
    refused = [p for p in console.at(REPLY) if p[0] == "error"]
    assert len(refused) == REFUSALS.burst  # answered while answers stay within their own budget
    assert refused[0][1] == "rate limited: more than 2000 actions/s from 127.0.0.1; slow down"
    assert bridge.counts["rate_limited"] == 100
    assert bridge.counts["rate_limited_unanswered"] == 100 - REFUSALS.burst
    # One alarm for the episode, naming the host as a field; the log at powers of two.
    assert [(a["alarm"], a["host"]) for a in alarms(director)] == [("osc flood", "127.0.0.1")]
    lines = [r.getMessage() for r in caplog.records if "flood" in r.getMessage()]
    assert len(lines) == 1 + 6  # the start, then 2, 4, 8, 16, 32, 64 refused
    assert "64 message(s) refused" in lines[-1]

    # The same host's backup commands and pings have a budget of their own.
    bridge.handle_packet(build("/pxcontrol/backup/auto", "Playout1", 1), console.peer)
    bridge.handle_packet(build("/pxcontrol/ping"), console.peer)
    assert console.at("/pxcontrol/pong") == [[]]
    await async_wait_for(lambda: console.at("/pxcontrol/reply/pxcontrol/backup/auto"))
    assert console.at("/pxcontrol/reply/pxcontrol/backup/auto")[0][0] == "ok"
    # Another host is not held up by this one.
    bridge.handle_packet(wait, other.peer)
    await async_wait_for(lambda: other.at(REPLY))
    assert other.at(REPLY) == [["ok", ""]]

    # The bucket refills at the sustained rate: 1/64 s later, 31 more go through.
    clock.now += 1 / 64
    before = bridge.counts["rate_limited"]
    for _ in range(32):
        bridge.handle_packet(wait, console.peer)
    assert bridge.counts["rate_limited"] == before + 1
    assert len(alarms(director)) == 1  # the same episode

    # Quiet for longer than FLOOD_QUIET, then a new flood: a new alarm.
    clock.now += FLOOD_QUIET + 1
    for _ in range(burst + 1):
        bridge.handle_packet(wait, console.peer)
    assert len(alarms(director)) == 2


async def test_a_ping_flood_is_bounded_too(director: Director):
    clock = Clock()
    bridge = OscBridge(director, clock)
    console = Heard()
    burst = director.show.osc.command_burst
    for _ in range(burst + 10):
        bridge.handle_packet(build("/pxcontrol/ping"), console.peer)
    assert len(console.at("/pxcontrol/pong")) == burst
    assert console.at("/pxcontrol/reply/pxcontrol/ping")[0] == [
        "error",
        "rate limited: more than 500 commands/s from 127.0.0.1; slow down",
    ]


async def test_the_action_rate_comes_from_the_show(tmp_path):
    director = await start(tmp_path, "[osc]\naction_rate = 10\naction_burst = 3")
    try:
        bridge = OscBridge(director, Clock())
        console = Heard()
        for _ in range(5):
            bridge.handle_packet(build(ACTION, "Show.Wait", 0), console.peer)
        assert bridge.counts["rate_limited"] == 2
        assert (
            console.at(REPLY)[0][1]
            == "rate limited: more than 10 actions/s from 127.0.0.1; slow down"
        )
    finally:
        await director.stop()


async def test_a_real_flood_over_udp_is_refused_and_a_takeover_request_still_answered(
    director: Director, consoles
):
    flood, operator, other = consoles(), consoles(), consoles("127.0.0.2")
    packet = build(ACTION, "Show.Wait", 0)
    stop = threading.Event()

    def blast() -> None:  # from another thread, as from another program on the console's host
        # About 8,000/s: above the budget, below what the director's socket can take
        # (a flood past that is lost by the kernel, whoever its victim is).
        while not stop.wait(0.01):
            for _ in range(80):
                flood.send(packet)
            flood.drain()
            flood.received.clear()

    thread = threading.Thread(target=blast, daemon=True)
    thread.start()
    try:
        await async_wait_for(lambda: director.osc.counts["rate_limited"] > 500, 10, "refusals")
        operator.command("/pxcontrol/backup/switch", "Playout1")  # from the flooding host
        reply = await operator.wait("/pxcontrol/reply/pxcontrol/backup/switch")
        assert reply.params == [
            "error",
            "backup Backup1 is dry (declared, never heard from): nothing can move",
        ]  # judged
        operator.command("/pxcontrol/ping")
        await operator.wait("/pxcontrol/pong")
        other.command(ACTION, "Show.Wait", 0)
        assert (await other.wait(REPLY)).params == ["ok", ""]
    finally:
        stop.set()
        thread.join()
    assert [a["host"] for a in alarms(director) if a["alarm"] == "osc flood"] == ["127.0.0.1"]
    assert director.osc.counts["rate_limited_unanswered"] > 0  # the refusals are bounded too


async def test_passcode_guessing_waits_longer_each_time_and_the_right_one_works_after(tmp_path):
    director = await start(tmp_path, 'passcode = "1234"')
    try:
        clock = Clock()
        bridge = OscBridge(director, clock)
        guesser = Heard()
        connect = "/pxcontrol/reply/pxcontrol/connect"

        def attempt(passcode: str) -> list:
            guesser.messages.clear()
            bridge.handle_packet(build("/pxcontrol/connect", passcode), guesser.peer)
            return guesser.at(connect)[0]

        for _ in range(FREE):
            assert attempt("0000") == ["error", "badpass"]
        refused = ["error", "too many wrong passcodes from 127.0.0.1: try again in 2 s"]
        assert attempt("1234") == refused  # the right one is not heard while it waits
        clock.now += WAIT - 0.5
        assert attempt("1234")[1] == "too many wrong passcodes from 127.0.0.1: try again in 1 s"
        assert bridge.passcodes.wait("127.0.0.2") == 0  # another host is not held up
        clock.now += 0.5
        assert attempt("0000") == ["error", "badpass"]  # a wrong one after the wait: 4 s now
        assert attempt("1234")[1].endswith("try again in 4 s")
        waits = []
        for _ in range(12):  # keep guessing, each time after the wait: it doubles to LONGEST
            clock.now += bridge.passcodes.wait("127.0.0.1")
            assert attempt("0000") == ["error", "badpass"]
            waits.append(bridge.passcodes.wait("127.0.0.1"))
        assert waits[:3] == [8.0, 16.0, 32.0] and waits[-1] == LONGEST
        clock.now += LONGEST
        assert attempt("1234") == ["ok", "connected"]
        assert attempt("0000") == ["error", "badpass"]  # a fresh record after the success
        assert bridge.passcodes.wait("127.0.0.1") == 0
        assert bridge.counts["passcode_waits"] == 3
    finally:
        await director.stop()


async def test_passcode_guessing_over_udp_is_refused_with_a_clear_error(tmp_path):
    director = await start(tmp_path, 'passcode = "1234"')
    c = Console(director.osc.port)
    try:
        for _ in range(FREE):
            c.command("/pxcontrol/connect", "9999")
            assert (await c.wait("/pxcontrol/reply/pxcontrol/connect")).params[1] == "badpass"
        c.command("/pxcontrol/connect", "1234")
        reply = await c.wait("/pxcontrol/reply/pxcontrol/connect")
        assert reply.params[1].startswith("too many wrong passcodes from 127.0.0.1: try again in")
    finally:
        c.close()
        await director.stop()


async def test_a_host_past_its_action_budget_is_refused_before_its_packets_are_parsed(
    director: Director,
):
    """At tens of thousands a second, parsing what will be refused anyway is what crowds out
    the same console's pings: past the budget an action is refused on its address alone."""
    clock = Clock()
    bridge = OscBridge(director, clock)
    console = Heard()
    burst = director.show.osc.action_burst
    for _ in range(burst):
        bridge.handle_packet(build(ACTION, "Show.Wait", 0), console.peer)
    # An action datagram whose arguments are garbage: parsed, it would count as malformed.
    garbage = build(ACTION)[:-4] + b",ii\0\0\0"
    bridge.handle_packet(garbage, console.peer)
    assert bridge.counts["malformed"] == 0 and bridge.counts["rate_limited"] == 1
    # Commands are never shed that way: a ping still gets its pong.
    bridge.handle_packet(build("/pxcontrol/ping"), console.peer)
    assert console.at("/pxcontrol/pong") == [[]]
    clock.now += 1.0  # the budget refills: actions are parsed and run again
    bridge.handle_packet(garbage, console.peer)
    assert bridge.counts["malformed"] == 1
