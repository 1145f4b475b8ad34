"""The OSC bridge against bad input, floods, strangers and stalled TCP peers (director in-process)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator

import aiosc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pythonosc import slip
from pythonosc.osc_bundle_builder import OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from pxcontrol.detection import ClientState
from pxcontrol.director import Director
from pxcontrol.loading import load_show
from pxcontrol.osc_bridge import build
from pxcontrol.osc_transport import Peer

from .conftest import async_wait_for

SHOW = """
[director]
allow = ["127.0.0.1", "127.0.0.2"]
{extra}

[[clients]]
name = "Playout1"
ip = "127.0.0.11"
outputs = ["Output 1"]

[[clients]]
name = "Backup1"
ip = "127.0.0.21"
outputs = ["Output 1"]
backup_for = ["127.0.0.11"]

[modules.Log]
type = "log"
"""


class Console:
    """A UDP console: sends packets, collects what comes back."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((source, 0))
        self.sock.setblocking(False)
        self.target = ("127.0.0.1", port)
        self.received: list[OscMessage] = []

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def send(self, packet: bytes) -> None:
        self.sock.sendto(packet, self.target)

    def command(self, address: str, *args) -> None:
        self.send(build(address, *args))

    def drain(self) -> list[OscMessage]:
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return self.received
            self.received.append(OscMessage(data))

    async def wait(self, address: str, timeout: float = 5.0) -> OscMessage:
        found = await async_wait_for(
            lambda: next((m for m in self.drain() if m.address == address), None),
            timeout,
            f"{address}; got {[m.address for m in self.received]}",
        )
        self.received.remove(found)
        return found

    def close(self) -> None:
        self.sock.close()


async def start(tmp_path, extra: str = "") -> Director:
    (tmp_path / "show.toml").write_text(SHOW.replace("{extra}", extra))
    director = Director(
        load_show(tmp_path / "show.toml"),
        tmp_path / "state",
        heartbeat_port=0,
        osc_port=0,
        http_port=0,
    )
    await director.start()
    return director


@pytest.fixture
async def director(tmp_path) -> AsyncIterator[Director]:
    director = await start(tmp_path)
    yield director
    await director.stop()


@pytest.fixture
def console(director: Director):
    made: list[Console] = []

    def make(source: str = "127.0.0.1") -> Console:
        made.append(Console(director.osc.port, source))
        return made[-1]

    yield make
    for c in made:
        c.close()


def _nested(depth: int) -> bytes:
    packet = build("/pxcontrol/ping")
    for _ in range(depth):
        packet = b"#bundle\0" + bytes(8) + len(packet).to_bytes(4, "big") + packet
    return packet


MALFORMED = [
    pytest.param(b"/pxcontrol/action\0\0\0,s\0\0", id="truncated"),
    pytest.param(b"/pxcontrol/action\0\0\0,i\0\0\0\0", id="int-without-its-bytes"),
    pytest.param(bytes(range(256)) * 3, id="garbage"),
    pytest.param(b"#bundle\0" + b"\xff" * 20, id="broken-bundle"),
    pytest.param(b"/x" + b"\x00" * 60000, id="oversized"),
    # python-osc's bundle parser loops for ever on a negative element size.
    pytest.param(b"#bundle\0" + bytes(8) + b"\xff\xff\xff\xfc", id="negative-bundle-size"),
    pytest.param(b"#bundle\0" + bytes(8) + (0).to_bytes(4, "big"), id="zero-bundle-size"),
    pytest.param(
        b"#bundle\0" + bytes(8) + (999).to_bytes(4, "big") + b"/x\0\0,\0\0\0",
        id="bundle-size-past-the-end",
    ),
    pytest.param(_nested(9), id="bundles-nested-too-deep"),
]


@pytest.mark.parametrize("packet", MALFORMED)
async def test_malformed_packets_are_dropped_and_counted_and_the_bridge_goes_on(
    director: Director, console, packet: bytes
):
    c = console()
    c.send(packet)
    c.command("/pxcontrol/ping")
    await c.wait("/pxcontrol/pong")
    assert director.osc.counts["malformed"] == 1


async def test_unsupported_argument_types_are_answered_not_shifted(director: Director, console):
    c = console()
    # liblo's oscsend 'S' (symbol): python-osc would drop it and shift the arguments after it.
    c.send(b"/pxcontrol/backup/switch\0\0\0\0,S\0\0Playout1\0\0\0\0")
    reply = await c.wait("/pxcontrol/reply/pxcontrol/backup/switch")
    assert reply.params[0] == "error" and "argument type 'S' is not supported" in reply.params[1]
    assert director.backup.plays_on("Playout1") == "Playout1"


async def aiosc_console(director: Director, handlers: dict) -> aiosc.OSCProtocol:
    """aiosc (a small asyncio OSC library we did not write) as a console: its handlers
    are OSC patterns, and it drops a message whose address holds pattern characters."""
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(
        lambda: aiosc.OSCProtocol(handlers),
        local_addr=("127.0.0.1", 0),
        remote_addr=("127.0.0.1", director.osc.port),
    )
    return protocol


async def test_the_answer_to_a_pattern_comes_back_on_a_plain_address(director: Director):
    heard: list[tuple] = []
    console = await aiosc_console(
        director,
        {"/pxcontrol/reply/pxcontrol/*": lambda _, path, *args: heard.append((path, *args))},
    )
    try:
        console.send("/pxcontrol/p?ng")
        console.send("/pxcontrol/go{a,b} [1-2]")
        await async_wait_for(lambda: len(heard) == 2, what="two replies")
        assert heard[0][:2] == ("/pxcontrol/reply/pxcontrol/p_ng", "error")
        assert "unknown address /pxcontrol/p?ng" in heard[0][2]  # the text says what came
        assert heard[1][:2] == ("/pxcontrol/reply/pxcontrol/go_a_b___1-2_", "error")
    finally:
        console.close()


async def test_an_impulse_is_no_value(director: Director):
    """OSC 1.1's `I` (a button press, liblo's infinitum) carries nothing: it is skipped,
    where python-osc alone would drop it and shift the arguments after it."""
    heard: list[tuple] = []

    def hear(_, path, *args):
        heard.append((path, *args))

    console = await aiosc_console(
        director, {"/pxcontrol/pong": hear, "/pxcontrol/reply/pxcontrol/*": hear}
    )
    try:
        console.send("/pxcontrol/ping", aiosc.Impulse)
        await async_wait_for(lambda: ("/pxcontrol/pong",) in heard, what="the pong")
        console.send("/pxcontrol/action", "Log.Entry", aiosc.Impulse, "message=pressed", "info")
        await async_wait_for(lambda: len(heard) == 2, what="the action's reply")
        assert heard[1] == ("/pxcontrol/reply/pxcontrol/action", "ok", "pressed")
        assert director.osc.counts["unsupported_type"] == 0
    finally:
        console.close()


async def test_a_flood_from_one_sender_does_not_silence_the_others(director: Director, console):
    flood, other = console(), console("127.0.0.2")  # another host: each has its own budget
    ping, garbage = build("/pxcontrol/ping"), b"\x00garbage"
    stop = threading.Event()

    def blast() -> None:  # from another thread, as from another machine
        while not stop.is_set():
            for _ in range(100):
                flood.send(garbage)
                flood.send(ping)

    thread = threading.Thread(target=blast, daemon=True)
    thread.start()
    try:
        # A console retries its ping as consoles do; it must be answered during the flood.
        async def answered() -> bool:
            other.command("/pxcontrol/ping")
            await asyncio.sleep(0.05)
            return any(m.address == "/pxcontrol/pong" for m in other.drain())

        for _ in range(100):
            if await answered():
                break
        else:
            raise AssertionError("never answered during the flood")
    finally:
        stop.set()
        thread.join()
    assert director.osc.counts["malformed"] > 100, "the flood reached the bridge"


async def test_a_stranger_gets_no_action_and_no_answer(director: Director, console):
    stranger = console("127.0.0.5")  # loopback, but not in director.allow
    stranger.command("/pxcontrol/backup/auto", "Playout1", 0)
    friend = console()
    friend.command("/pxcontrol/ping")
    await friend.wait("/pxcontrol/pong")
    assert stranger.drain() == []
    assert director.osc.counts["denied"] == 1
    assert director.backup.auto_override == {}


async def test_a_tcp_peer_that_sends_half_a_frame_holds_up_nobody(director: Director, console):
    _, stalled = await asyncio.open_connection("127.0.0.1", director.osc.port)
    stalled.write((100).to_bytes(4, "big") + b"/pxcontrol/pi")  # then nothing more
    await stalled.drain()
    reader, writer = await asyncio.open_connection("127.0.0.1", director.osc.port)
    writer.write(slip.encode(build("/pxcontrol/ping")))
    await writer.drain()
    answer = await asyncio.wait_for(reader.readuntil(b"\xc0\xc0"[:1] * 1), 5)
    answer += await asyncio.wait_for(reader.readuntil(b"\xc0"), 5)
    assert b"/pxcontrol/pong" in answer
    udp = console()
    udp.command("/pxcontrol/ping")
    await udp.wait("/pxcontrol/pong")
    writer.close()
    stalled.close()


async def test_an_absurd_length_prefix_closes_that_connection_only(director: Director):
    reader, writer = await asyncio.open_connection("127.0.0.1", director.osc.port)
    writer.write((2**31).to_bytes(4, "big"))
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b"", "closed by the bridge"


async def test_a_future_bundle_runs_now_and_never_sleeps(director: Director, console):
    c = console()
    bundle = OscBundleBuilder(time.time() + 3600)
    bundle.add_content(OscMessageBuilder("/pxcontrol/ping").build())
    c.send(bundle.build().dgram)
    await c.wait("/pxcontrol/pong", timeout=2)


async def test_arguments_of_every_osc_type_fill_an_action(director: Director, console):
    c = console()
    builder = OscMessageBuilder("/pxcontrol/action")
    for value in ("Log.Entry", "level=warning", "message=T is true"):
        builder.add_arg(value)
    c.send(builder.build().dgram)
    reply = await c.wait("/pxcontrol/reply/pxcontrol/action")
    assert reply.params == ["ok", "T is true"]
    assert director.app.events.of_kind("log.entry")[-1].fields["level"] == "warning"
    builder = OscMessageBuilder("/pxcontrol/backup/auto")
    builder.add_arg("Playout1")
    builder.add_arg(True)  # OSC 'T'
    c.send(builder.build().dgram)
    reply = await c.wait("/pxcontrol/reply/pxcontrol/backup/auto")
    assert reply.params == ["ok", "automatic backup for Playout1 is on"]


async def test_passcode_unlocks_commands_per_sender(tmp_path):
    director = await start(tmp_path, 'passcode = "1234"')
    c = Console(director.osc.port)
    try:
        c.command("/pxcontrol/backup/auto", "Playout1", 1)
        reply = await c.wait("/pxcontrol/reply/pxcontrol/backup/auto")
        assert reply.params == ["error", "locked: send /pxcontrol/connect <passcode> first"]
        c.command("/pxcontrol/ping")
        await c.wait("/pxcontrol/pong")  # ping needs no passcode
        c.command("/pxcontrol/connect", "4321")
        assert (await c.wait("/pxcontrol/reply/pxcontrol/connect")).params == ["error", "badpass"]
        c.command("/pxcontrol/connect", "1234")
        assert (await c.wait("/pxcontrol/reply/pxcontrol/connect")).params == ["ok", "connected"]
        c.command("/pxcontrol/backup/auto", "Playout1", 1)
        assert (await c.wait("/pxcontrol/reply/pxcontrol/backup/auto")).params[0] == "ok"
        # A new passcode in the show (a reload) locks everyone who knew the old one.
        (tmp_path / "show.toml").write_text(SHOW.replace("{extra}", 'passcode = "5678"'))
        assert await director.reload()
        c.command("/pxcontrol/backup/auto", "Playout1", 0)
        reply = await c.wait("/pxcontrol/reply/pxcontrol/backup/auto")
        assert reply.params == ["error", "locked: send /pxcontrol/connect <passcode> first"]
    finally:
        c.close()
        await director.stop()


@pytest.mark.parametrize(
    ("value", "answer"),
    [
        (1, ["ok", "automatic backup for Playout1 is on"]),
        (0.0, ["ok", "automatic backup for Playout1 is off"]),
        (False, ["ok", "automatic backup for Playout1 is off"]),
        (0.4, ["error", "/pxcontrol/backup/auto takes a client name and 0 or 1"]),
        (-1, ["error", "/pxcontrol/backup/auto takes a client name and 0 or 1"]),
        (5, ["error", "/pxcontrol/backup/auto takes a client name and 0 or 1"]),
        ("on", ["error", "/pxcontrol/backup/auto takes a client name and 0 or 1"]),
    ],
)
async def test_automatic_backup_is_switched_by_exactly_0_or_1(
    director: Director, console, value, answer
):
    c = console()
    builder = OscMessageBuilder("/pxcontrol/backup/auto")
    builder.add_arg("Playout1")
    builder.add_arg(value)
    c.send(builder.build().dgram)
    assert (await c.wait("/pxcontrol/reply/pxcontrol/backup/auto")).params == answer
    assert director.backup.auto_override.get("Playout1") == (
        None if answer[0] == "error" else bool(value)
    )


async def test_a_port_sent_as_text_is_taken_and_anything_else_is_refused(
    director: Director, console
):
    sender, listening = console(), console()
    sender.command("/pxcontrol/subscribe", str(listening.port), "noecho")
    reply = await listening.wait("/pxcontrol/reply/pxcontrol/subscribe")
    assert reply.params == ["ok", f"subscribed 127.0.0.1:{listening.port} for 60 s"]
    sender.command("/pxcontrol/subscribe", "noEcho")
    reply = await listening.wait("/pxcontrol/reply/pxcontrol/subscribe")  # its copy
    assert reply.params == [
        "error",
        "/pxcontrol/subscribe takes [port] and [\"noecho\"]; got 'noEcho'",
    ]
    sender.command("/pxcontrol/unsubscribe", "noecho")
    reply = await listening.wait("/pxcontrol/reply/pxcontrol/unsubscribe")
    assert reply.params == ["error", "/pxcontrol/unsubscribe takes [port]; got 'noecho'"]
    assert len(director.osc.subscriptions) == 1


async def test_a_tcp_subscription_lives_with_its_connection_and_says_so(director: Director):
    reader, writer = await asyncio.open_connection("127.0.0.1", director.osc.port)
    try:
        writer.write(slip.encode(build("/pxcontrol/subscribe")))
        await writer.drain()
        frame = await asyncio.wait_for(reader.readuntil(b"\xc0"), 5)
        if frame == b"\xc0":  # the leading END of the frame
            frame = await asyncio.wait_for(reader.readuntil(b"\xc0"), 5)
        reply = OscMessage(frame[:-1])
        assert reply.params[0] == "ok" and reply.params[1].endswith(" while connected")
        assert len(director.osc.subscriptions) == 1
    finally:
        writer.close()
    await async_wait_for(lambda: not director.osc.subscriptions, 5, "the subscription to end")


async def test_no_echo_to_the_console_that_made_the_change(director: Director, console):
    for name in ("Playout1", "Backup1"):
        director.live.detector.clients[name].state = ClientState.ONLINE
    quiet, other = console(), console("127.0.0.2")
    quiet.command("/pxcontrol/subscribe", "noecho")
    await quiet.wait("/pxcontrol/reply/pxcontrol/subscribe")
    quiet.command("/pxcontrol/backup/switch", "Playout1")
    await quiet.wait("/pxcontrol/reply/pxcontrol/backup/switch")
    other.command("/pxcontrol/backup/move", "Playout1")
    await other.wait("/pxcontrol/reply/pxcontrol/backup/move")
    moved = await quiet.wait("/pxcontrol/backup/Playout1/active")
    assert moved.params == [0, "Playout1"], "the other console's change is pushed"
    assert not [m for m in quiet.drain() if m.params == [1, "Backup1"]], "its own is not"


async def test_a_subscription_lapses_without_renewal(director: Director, console):
    now = [1000.0]
    director.osc._clock = lambda: now[0]
    c = console()
    c.command("/pxcontrol/subscribe")
    await c.wait("/pxcontrol/reply/pxcontrol/subscribe")
    director.app.emit("client.online", client="Playout1", ip="127.0.0.11")
    await c.wait("/pxcontrol/client/Playout1/state")
    assert (await c.wait("/pxcontrol/client/Playout1/late")).params == [0]
    now[0] += 61
    director.app.emit("client.offline", client="Playout1", ip="127.0.0.11")
    c.command("/pxcontrol/ping")
    await c.wait("/pxcontrol/pong")
    assert not [m for m in c.drain() if m.address.startswith("/pxcontrol/client/")]
    assert director.osc.subscriptions == {}


def _bundle(elements: list[tuple[int, bytes]]) -> bytes:
    """A bundle whose element sizes are whatever the fuzzer says, not what follows them."""
    return (
        b"#bundle\0"
        + bytes(8)
        + b"".join(size.to_bytes(4, "big", signed=True) + body for size, body in elements)
    )


ELEMENT_SIZES = st.integers(-8, 64) | st.integers(-(2**31), 2**31 - 1)
ELEMENT_BODIES = st.binary(max_size=24) | st.builds(
    lambda b: b"/pxcontrol/" + b, st.binary(max_size=24)
)
BUNDLES = st.recursive(
    st.builds(_bundle, st.lists(st.tuples(ELEMENT_SIZES, ELEMENT_BODIES), max_size=3)),
    lambda inner: st.builds(_bundle, st.lists(st.tuples(ELEMENT_SIZES, inner), max_size=3)),
    max_leaves=4,
)


@settings(max_examples=300, deadline=None)
@given(
    packet=st.binary(max_size=200) | st.builds(lambda b: b"/pxcontrol/" + b, st.binary(max_size=60))
)
def test_fuzz_no_packet_breaks_the_handler(packet: bytes):
    _handle_fuzzed(packet)


@settings(max_examples=300, deadline=None)
@given(packet=BUNDLES)
def test_fuzz_no_bundle_breaks_the_handler(packet: bytes):
    """Bundles with element sizes of every kind: negative, zero, past the end, nested."""
    _handle_fuzzed(packet)


def _handle_fuzzed(packet: bytes) -> None:
    sent: list[bytes] = []
    bridge = _FUZZ_BRIDGE
    bridge.handle_packet(packet, Peer("udp", "127.0.0.1", 9, sent.append))
    for reply in sent:
        OscMessage(reply)  # whatever it answers is well-formed OSC


class _FakeDirector:
    """Just enough director for the packet handler; commands that need more are refused."""

    def __init__(self) -> None:
        from pxcontrol.show import ShowFile

        self.show = ShowFile.model_validate(
            {"clients": [{"name": "Playout1", "ip": "10.0.0.11", "outputs": ["Output 1"]}]}
        )
        self.backup = None


def _make_fuzz_bridge():
    from pxcontrol.osc_bridge import OscBridge

    class FuzzBridge(OscBridge):
        def _later(self, peer, address, work):  # no loop here: close the coroutine, answer
            work.close()
            self._reply(peer, address, ok="queued")

    bridge = FuzzBridge.__new__(FuzzBridge)
    OscBridge.__init__(bridge, _FakeDirector())  # type: ignore[arg-type]
    return bridge


_FUZZ_BRIDGE = _make_fuzz_bridge()


async def test_a_console_that_subscribed_with_a_port_does_not_take_others_answers(
    director: Director, console
):
    listening, sender, cli = console(), console(), console()
    sender.command("/pxcontrol/subscribe", listening.port)
    await listening.wait("/pxcontrol/reply/pxcontrol/subscribe")
    cli.command("/pxcontrol/ping")
    await cli.wait("/pxcontrol/pong")  # the command line on the same host hears its answer
    sender.command("/pxcontrol/ping")
    await listening.wait("/pxcontrol/pong")  # the console hears at the port it named


async def test_unsubscribe_with_a_port_ends_only_that_consoles_subscription(
    director: Director, console
):
    first, second, sender = console(), console(), console()
    for c in (first, second):
        sender.command("/pxcontrol/subscribe", c.port)
        await c.wait("/pxcontrol/reply/pxcontrol/subscribe")
    sender.command("/pxcontrol/unsubscribe", first.port)
    answer = await first.wait("/pxcontrol/reply/pxcontrol/unsubscribe")
    assert answer.params == ["ok", "1 subscription(s) ended"]
    await sender.wait("/pxcontrol/reply/pxcontrol/unsubscribe")  # its own copy
    director.app.emit("client.online", client="Playout1", ip="127.0.0.11")
    await second.wait("/pxcontrol/client/Playout1/state")  # still subscribed
    sender.command("/pxcontrol/ping")
    await sender.wait("/pxcontrol/pong")
    assert not [m for m in first.drain() if m.address.startswith("/pxcontrol/client/")]
    sender.command("/pxcontrol/unsubscribe", 0)
    assert (await sender.wait("/pxcontrol/reply/pxcontrol/unsubscribe")).params == [
        "error",
        "0 is not a port",
    ]
    sender.command("/pxcontrol/unsubscribe")  # no port: every subscription of this host
    await async_wait_for(lambda: not director.osc.subscriptions, 5, "no subscription left")


# --- status: one client, a page, and a long answer paced over UDP ---


async def test_status_answers_one_client_by_name_and_a_page(director: Director, console):
    c = console()
    c.command("/pxcontrol/status", "Backup1")
    row = await c.wait("/pxcontrol/status/client")
    assert row.params == ["Backup1", "dry", "Backup1", -1.0, -1.0, 1, "", "", "", 0]
    # count in this answer (as before), then the show's total and where the answer starts
    assert (await c.wait("/pxcontrol/status/end")).params == [1, 2, 1]
    c.command("/pxcontrol/status", 0, 1)
    assert (await c.wait("/pxcontrol/status/client")).params[0] == "Playout1"
    assert (await c.wait("/pxcontrol/status/end")).params == [1, 2, 0]
    c.command("/pxcontrol/status", 5, 10)  # past the end: an empty page, not an error
    assert (await c.wait("/pxcontrol/status/end")).params == [0, 2, 5]
    c.command("/pxcontrol/status")
    assert (await c.wait("/pxcontrol/status/end")).params == [2, 2, 0]
    assert [m.params[0] for m in c.drain() if m.address == "/pxcontrol/status/client"] == [
        "Playout1",
        "Backup1",
    ]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("Playout9",), "no client is called 'Playout9' (clients: Playout1, Backup1)"),
        ((-1, 5), "offset 0 or more, count 1 or more; got -1 5"),
        ((0, 0), "offset 0 or more, count 1 or more; got 0 0"),
        ((0.5, 2), "takes nothing (every client), a client name (s), or offset and count (i i)"),
        ((3,), "takes nothing (every client), a client name (s), or offset and count (i i)"),
    ],
)
async def test_a_wrong_status_request_is_answered_with_what_it_takes(
    director: Director, console, args, says
):
    c = console()
    c.command("/pxcontrol/status", *args)
    reply = await c.wait("/pxcontrol/reply/pxcontrol/status")
    assert reply.params[0] == "error" and says in reply.params[1], reply.params


def _many_clients(count: int) -> str:
    return "".join(
        f'[[clients]]\nname = "Client{i:03}"\nip = "127.0.{1 + i // 250}.{1 + i % 250}"\n\n'
        for i in range(count)
    )


async def test_a_long_status_over_udp_leaves_in_bursts_without_holding_up_the_loop(tmp_path):
    from pxcontrol.osc_bridge import STATUS_BURST

    (tmp_path / "show.toml").write_text('[director]\nallow = ["127.0.0.1"]\n' + _many_clients(200))
    director = Director(
        load_show(tmp_path / "show.toml"),
        tmp_path / "state",
        heartbeat_port=0,
        osc_port=0,
        http_port=0,
    )
    await director.start()
    pauses: asyncio.Queue[None] = asyncio.Queue()
    waiting = 0

    async def pause() -> None:  # the test decides when each pause ends
        nonlocal waiting
        waiting += 1
        await pauses.get()

    director.osc.status_pause = pause
    c, other = Console(director.osc.port), Console(director.osc.port)
    try:
        c.command("/pxcontrol/status")
        await async_wait_for(lambda: waiting == 1, 5, "the first pause")
        await async_wait_for(lambda: len(c.drain()) >= STATUS_BURST, 5, "the first burst")
        assert len(c.drain()) == STATUS_BURST
        other.command("/pxcontrol/ping")  # the loop serves others while the answer waits
        await other.wait("/pxcontrol/pong")
        c.command("/pxcontrol/status")  # a second long answer to the same sender waits its turn
        refused = await c.wait("/pxcontrol/reply/pxcontrol/status")
        assert "is still being sent; ask again after its /pxcontrol/status/end" in refused.params[1]
        for burst in (2, 3):  # 201 messages: bursts of 64, 64, 64, 9
            pauses.put_nowait(None)
            await async_wait_for(lambda b=burst: waiting == b, 5, f"pause {burst}")
        pauses.put_nowait(None)
        end = await c.wait("/pxcontrol/status/end")
        assert end.params == [200, 200, 0]
        rows = [m.params[0] for m in c.received if m.address == "/pxcontrol/status/client"]
        assert rows == [f"Client{i:03}" for i in range(200)]
        c.command("/pxcontrol/status", 190, 50)  # short: at once, no pause
        assert (await c.wait("/pxcontrol/status/end")).params == [10, 200, 190]
        assert waiting == 3
    finally:
        c.close()
        other.close()
        await director.stop()
