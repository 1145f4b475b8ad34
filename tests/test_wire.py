"""The agent ↔ director wire format, and how an agent treats the notices it hears."""

from __future__ import annotations

import asyncio
import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pythonosc.osc_message import OscMessage

from pxcontrol.agent import Agent
from pxcontrol.confirmations import Confirmations, confirm_within
from pxcontrol.detection import Timing
from pxcontrol.events import Event, EventLog
from pxcontrol.heartbeat import (
    ACK,
    HEARTBEAT,
    MAX_PACKET,
    PLACEMENT,
    Ack,
    Heartbeat,
    Placement,
    WireError,
    decode,
    encode,
    sign,
)
from pxcontrol.hookspecs import hookimpl
from pxcontrol.plugins import make_plugin_manager
from pxcontrol.replay import Runs

SECRET = b"show secret"
DIRECTOR = ("127.0.0.1", 7401)

BEAT = Heartbeat(
    name="Playout1",
    boot="0123abcd",
    seq=42,
    interval=0.1,
    epoch=3,
    cpu=12.5,
    memory=40.25,
    gpu={"name": "NVIDIA RTX A6000", "load": 17},
    extra={"fps": 59.94},
)
PLACED = Placement(
    epoch=2,
    interval=0.1,
    placement={"Playout1": "Backup1", "Playout2": "Playout2"},
    plays={"Playout1": ["Output 1", "Cam 1"]},
    event={"client": "Playout1", "backup": "Backup1", "reason": "manual", "epoch": 2},
)


def osc(address: str, *strings: str | bytes, tags: str | None = None) -> bytes:
    """An OSC message written by hand: address, type tags, string arguments, 4-byte padded."""

    def padded(raw: bytes) -> bytes:
        raw += b"\0"
        return raw + b"\0" * (-len(raw) % 4)

    raw_args = [s if isinstance(s, bytes) else s.encode() for s in strings]
    type_tags = "," + ("s" * len(raw_args) if tags is None else tags)
    return padded(address.encode()) + padded(type_tags.encode()) + b"".join(map(padded, raw_args))


def type_tags(packet: bytes) -> bytes:
    address_end = packet.index(b"\0")
    start = address_end + 1 + (-(address_end + 1) % 4)
    return packet[start : packet.index(b"\0", start)]


def reason_of(packet: bytes, model=Placement, secret: bytes | None = None, address=PLACEMENT):
    with pytest.raises(WireError) as raised:
        decode(packet, address, model, secret)
    return raised.value.reason


# --- round trips ---


@pytest.mark.parametrize("secret", [None, SECRET])
def test_a_heartbeat_round_trips(secret: bytes | None):
    assert decode(encode(HEARTBEAT, BEAT, secret), HEARTBEAT, Heartbeat, secret) == BEAT


@pytest.mark.parametrize("secret", [None, SECRET])
def test_a_placement_round_trips(secret: bytes | None):
    assert decode(encode(PLACEMENT, PLACED, secret), PLACEMENT, Placement, secret) == PLACED


def test_a_minimal_heartbeat_round_trips_with_its_defaults():
    beat = Heartbeat(name="A", boot="b", seq=0, interval=0.25)
    back = decode(encode(HEARTBEAT, beat, None), HEARTBEAT, Heartbeat, None)
    assert back == beat and back.epoch == 0 and back.cpu is None and back.extra == {}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=150, deadline=None)
@given(
    name=st.text(min_size=1, max_size=40),
    seq=st.integers(0, 2**62),
    interval=st.floats(min_value=1e-6, max_value=1e6),
    cpu=st.none() | finite,
    extra=st.dictionaries(st.text(max_size=10), json_values, max_size=4),
    secret=st.none() | st.binary(min_size=1, max_size=32),
)
def test_any_heartbeat_round_trips_exactly(name, seq, interval, cpu, extra, secret):
    beat = Heartbeat(name=name, boot="boot", seq=seq, interval=interval, cpu=cpu, extra=extra)
    assert decode(encode(HEARTBEAT, beat, secret), HEARTBEAT, Heartbeat, secret) == beat


# --- what is on the wire ---


def test_an_unsigned_packet_is_one_osc_string():
    packet = encode(HEARTBEAT, BEAT, None)
    assert type_tags(packet) == b",s"
    message = OscMessage(packet)
    assert message.address == HEARTBEAT
    assert json.loads(message.params[0]) == BEAT.model_dump(exclude_none=True)


def test_a_signed_packet_is_two_osc_strings_the_json_and_its_hmac():
    packet = encode(PLACEMENT, PLACED, SECRET)
    assert type_tags(packet) == b",ss"
    body, signature = OscMessage(packet).params
    assert signature == sign(SECRET, body.encode())
    assert len(signature) == 64 and int(signature, 16) >= 0


def test_packets_are_padded_to_four_bytes_as_osc_requires():
    for packet in (encode(HEARTBEAT, BEAT, None), encode(PLACEMENT, PLACED, SECRET)):
        assert len(packet) % 4 == 0


def test_the_hand_written_osc_helper_matches_encode():
    body = BEAT.model_dump_json(exclude_none=True)
    assert osc(HEARTBEAT, body) == encode(HEARTBEAT, BEAT, None)


# --- what is refused, and why ---


def test_a_wrong_secret_is_a_bad_signature():
    packet = encode(HEARTBEAT, BEAT, b"another secret")
    assert reason_of(packet, Heartbeat, SECRET, HEARTBEAT) == "bad_signature"


def test_a_missing_signature_is_a_bad_signature_when_the_show_has_a_secret():
    packet = encode(HEARTBEAT, BEAT, None)
    assert reason_of(packet, Heartbeat, SECRET, HEARTBEAT) == "bad_signature"


def test_a_tampered_body_is_a_bad_signature():
    body = PLACED.model_dump_json(exclude_none=True)
    forged = body.replace('"epoch":2', '"epoch":9', 1)
    assert forged != body
    assert reason_of(osc(PLACEMENT, forged, sign(SECRET, body.encode())), secret=SECRET) == (
        "bad_signature"
    )


def test_a_non_string_signature_is_a_bad_signature():
    body = PLACED.model_dump_json()
    packet = osc(PLACEMENT, body.encode(), struct.pack(">i", 7), tags="si")
    assert reason_of(packet, secret=SECRET) == "bad_signature"


def test_a_signed_packet_is_accepted_without_a_secret():
    assert decode(encode(PLACEMENT, PLACED, SECRET), PLACEMENT, Placement, None) == PLACED


@pytest.mark.parametrize("cut", [1, 4, 9, 40, 80])
@pytest.mark.parametrize("secret", [None, SECRET])
def test_a_truncated_packet_is_malformed(cut: int, secret: bytes | None):
    packet = encode(PLACEMENT, PLACED, SECRET)
    assert reason_of(packet[:-cut], secret=secret) == "malformed"


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"\x00",
        b"garbage",
        b"\xff\xfe\xfd\xfc" * 8,
        b"/pxcontrol/placement\0\0\0\0",  # no arguments at all
        b"/pxcontrol/placement\0\0\0\0,s\0\0",  # a string tag without its string
        b"/pxcontrol/placement\0\0\0\0s\0\0\0",  # type tags without the comma
        b"/pxcontrol/placement\0\0\0\0,[\0\0",  # an array never closed
        b"/pxcontrol/placement\0\0\0\0,i\0\0\0\0\0\1",  # an int, not the JSON string
        b"#bundle\0" + b"\0" * 8,
    ],
)
def test_garbage_is_malformed(packet: bytes):
    assert reason_of(packet) == "malformed"


def test_the_wrong_osc_address_is_malformed():
    packet = encode(HEARTBEAT, BEAT, None)
    assert reason_of(packet, Heartbeat, None, PLACEMENT) == "malformed"


def test_a_body_that_is_not_json_is_malformed():
    assert reason_of(osc(PLACEMENT, "not json {")) == "malformed"


@pytest.mark.parametrize("body", ["[1, 2]", '"text"', "null", "{}", '{"epoch": -1}'])
def test_json_that_is_not_a_valid_placement_is_malformed(body: str):
    assert reason_of(osc(PLACEMENT, body)) == "malformed"


def test_json_with_an_unknown_key_is_malformed():
    body = json.dumps({**PLACED.model_dump(), "takeover_everything": True})
    assert reason_of(osc(PLACEMENT, body)) == "malformed"
    beat = json.dumps({**BEAT.model_dump(), "surprise": 1})
    assert reason_of(osc(HEARTBEAT, beat), Heartbeat, None, HEARTBEAT) == "malformed"


def test_json_with_an_unknown_key_is_malformed_even_when_correctly_signed():
    body = json.dumps({**PLACED.model_dump(), "takeover_everything": True})
    packet = osc(PLACEMENT, body, sign(SECRET, body.encode()))
    assert reason_of(packet, secret=SECRET) == "malformed"


def test_an_oversized_packet_is_malformed():
    packet = osc(PLACEMENT, "x" * MAX_PACKET)
    assert len(packet) > MAX_PACKET
    assert reason_of(packet) == "malformed"


def test_a_packet_of_exactly_max_size_is_still_read():
    body = PLACED.model_dump_json(exclude_none=True)
    packet = osc(PLACEMENT, body + " " * (MAX_PACKET - len(osc(PLACEMENT, body))))
    assert len(packet) == MAX_PACKET
    assert decode(packet, PLACEMENT, Placement, None) == PLACED


def test_deeply_nested_json_is_malformed_not_a_crash():
    # Fits in a packet, so an unsigned show must turn it into a counted drop like any other.
    body = "[" * 5000
    assert len(osc(PLACEMENT, body)) <= MAX_PACKET
    assert reason_of(osc(PLACEMENT, body)) == "malformed"


@settings(max_examples=500, deadline=None)
@given(packet=st.binary(max_size=300), secret=st.none() | st.just(SECRET))
def test_arbitrary_bytes_only_ever_raise_wire_error(packet: bytes, secret: bytes | None):
    try:
        decode(packet, PLACEMENT, Placement, secret)
    except WireError as error:
        assert error.reason in ("malformed", "bad_signature")


@settings(max_examples=300, deadline=None)
@given(
    tags=st.text(alphabet="sifdbhtTFNmr[]", max_size=6),
    tail=st.binary(max_size=64),
    secret=st.none() | st.just(SECRET),
)
def test_arbitrary_arguments_after_the_right_address_only_ever_raise_wire_error(
    tags: str, tail: bytes, secret: bytes | None
):
    packet = osc(PLACEMENT, tags=tags) + tail
    try:
        decode(packet, PLACEMENT, Placement, secret)
    except WireError as error:
        assert error.reason in ("malformed", "bad_signature")


@settings(max_examples=300, deadline=None)
@given(body=st.text(max_size=200) | json_values.map(json.dumps))
def test_arbitrary_bodies_only_ever_raise_wire_error(body: str):
    try:
        decode(osc(PLACEMENT, body.encode("utf-8", "surrogatepass")), PLACEMENT, Placement, None)
    except WireError as error:
        assert error.reason == "malformed"


# --- Agent.notice ---


def make_agent(secret: bytes | None = None, director: tuple[str, int] = DIRECTOR) -> Agent:
    pm, _ = make_plugin_manager()
    return Agent("Backup1", director, pm, secret=secret)


def notice(epoch: int, event: dict | None = None, interval: float = 0.1, **more) -> Placement:
    return Placement(
        epoch=epoch,
        interval=interval,
        placement=more.pop("placement", {"Playout1": "Backup1"}),
        plays=more.pop("plays", {"Playout1": ["Output 1", "Cam 1"]}),
        event=event,
    )


ACTIVATED = {"client": "Playout1", "backup": "Backup1", "outputs": ["Output 1"], "reason": "auto"}
MOVED = {"client": "Playout1", "from": "Backup1", "to": "Playout1", "outputs": ["Output 1"]}


async def test_a_newer_epoch_is_adopted_and_becomes_a_local_backup_activated_event():
    agent = make_agent()
    placed = notice(1, ACTIVATED)
    agent.datagram(encode(PLACEMENT, placed, None), DIRECTOR)
    assert agent.epoch == 1
    assert agent.placement == placed
    (event,) = list(agent.events)
    assert event.kind == "backup.activated"
    assert event.fields == {**ACTIVATED, "plays": {"Playout1": ["Output 1", "Cam 1"]}}


async def test_a_move_notice_becomes_a_local_backup_moved_event():
    agent = make_agent()
    agent.datagram(encode(PLACEMENT, notice(3, MOVED, plays={}), None), DIRECTOR)
    (event,) = list(agent.events)
    assert event.kind == "backup.moved"
    assert event.fields["to"] == "Playout1" and event.fields["plays"] == {}


async def test_a_placement_without_an_event_becomes_agent_placement():
    agent = make_agent()
    agent.datagram(encode(PLACEMENT, notice(5), None), DIRECTOR)
    (event,) = list(agent.events)
    assert event.kind == "agent.placement"
    assert event.fields == {"epoch": 5, "plays": {"Playout1": ["Output 1", "Cam 1"]}}


async def test_an_older_epoch_never_undoes_a_newer_decision():
    agent = make_agent()
    newer = notice(2, MOVED, placement={"Playout1": "Playout1"}, plays={})
    agent.datagram(encode(PLACEMENT, newer, None), DIRECTOR)
    agent.datagram(encode(PLACEMENT, notice(1, ACTIVATED), None), DIRECTOR)  # arrives late
    assert agent.epoch == 2
    assert agent.placement == newer
    assert [e.kind for e in agent.events] == ["backup.moved"]


async def test_a_repeated_epoch_is_ignored():
    agent = make_agent()
    packet = encode(PLACEMENT, notice(1, ACTIVATED), None)
    agent.datagram(packet, DIRECTOR)
    agent.datagram(packet, DIRECTOR)
    other_same_epoch = notice(1, MOVED, placement={"Playout1": "Playout1"})
    agent.datagram(encode(PLACEMENT, other_same_epoch, None), DIRECTOR)
    assert len(agent.events) == 1
    assert agent.placement is not None and agent.placement.placement == {"Playout1": "Backup1"}


async def test_epoch_zero_is_not_news_to_a_fresh_agent():
    agent = make_agent()
    agent.datagram(encode(PLACEMENT, notice(0), None), DIRECTOR)
    assert agent.epoch == 0 and agent.placement is None and len(agent.events) == 0


async def test_the_interval_in_a_placement_is_adopted():
    agent = make_agent()
    assert agent.interval == 0.1
    agent.datagram(encode(PLACEMENT, notice(1, interval=0.05), None), DIRECTOR)
    assert agent.interval == 0.05


async def test_the_interval_is_adopted_from_a_repeated_epoch_too():
    # The director resends the current placement to an agent whose interval is wrong.
    agent = make_agent()
    agent.datagram(encode(PLACEMENT, notice(1), None), DIRECTOR)
    agent.datagram(encode(PLACEMENT, notice(1, interval=0.2), None), DIRECTOR)
    assert agent.interval == 0.2
    assert agent.epoch == 1 and len(agent.events) == 1


async def test_a_notice_from_another_address_is_ignored():
    agent = make_agent()
    agent.datagram(encode(PLACEMENT, notice(1, ACTIVATED, interval=0.3), None), ("127.0.0.2", 7401))
    assert agent.epoch == 0 and agent.placement is None
    assert agent.interval == 0.1 and len(agent.events) == 0


async def test_a_notice_from_another_port_of_the_director_host_is_accepted():
    agent = make_agent()
    agent.datagram(encode(PLACEMENT, notice(1, ACTIVATED), None), ("127.0.0.1", 50123))
    assert agent.epoch == 1


async def test_a_director_on_the_any_address_is_heard_from_anywhere():
    agent = make_agent(director=("0.0.0.0", 7401))
    agent.datagram(encode(PLACEMENT, notice(1, ACTIVATED), None), ("10.1.2.3", 7401))
    assert agent.epoch == 1


async def test_a_director_named_by_host_name_is_heard():
    # `pxcontrol agent --director localhost`: the notices come from 127.0.0.1.
    agent = make_agent(director=("localhost", 7401))
    agent.datagram(encode(PLACEMENT, notice(1, ACTIVATED), None), ("127.0.0.1", 7401))
    assert agent.epoch == 1


async def test_a_notice_with_a_bad_signature_is_ignored_when_the_agent_has_a_secret():
    agent = make_agent(secret=SECRET)
    agent.datagram(encode(PLACEMENT, notice(1, ACTIVATED, interval=0.3), b"wrong"), DIRECTOR)
    agent.datagram(encode(PLACEMENT, notice(2, ACTIVATED, interval=0.3), None), DIRECTOR)
    assert agent.epoch == 0 and len(agent.events) == 0 and agent.interval == 0.1
    agent.datagram(encode(PLACEMENT, notice(3, ACTIVATED), SECRET), DIRECTOR)
    assert agent.epoch == 3


async def test_a_malformed_notice_is_ignored_without_raising():
    agent = make_agent()
    for packet in (b"garbage", osc(PLACEMENT, "{not json"), encode(HEARTBEAT, BEAT, None)):
        agent.datagram(packet, DIRECTOR)
    assert agent.epoch == 0 and len(agent.events) == 0


async def test_an_observe_event_plugin_sees_the_agents_event():
    seen: list[Event] = []

    class Watcher:
        @hookimpl
        def observe_event(self, event: Event) -> None:
            seen.append(event)

    agent = make_agent()
    agent.pm.register(Watcher())
    agent.datagram(encode(PLACEMENT, notice(1, ACTIVATED), None), DIRECTOR)
    assert [e.kind for e in seen] == ["backup.activated"]
    assert seen == list(agent.events)


async def test_an_async_observe_event_plugin_is_run():
    seen = asyncio.Event()
    kinds: list[str] = []

    class AsyncWatcher:
        @hookimpl
        async def observe_event(self, event: Event) -> None:
            kinds.append(event.kind)
            seen.set()

    agent = make_agent()
    agent.pm.register(AsyncWatcher())
    agent.datagram(encode(PLACEMENT, notice(1, MOVED), None), DIRECTOR)
    await asyncio.wait_for(seen.wait(), 5)
    assert kinds == ["backup.moved"]


async def test_a_failing_observe_event_plugin_does_not_stop_the_others():
    seen: list[str] = []

    class Broken:
        @hookimpl
        def observe_event(self, event: Event) -> None:
            raise RuntimeError("plugin bug")

    class Watcher:
        @hookimpl
        def observe_event(self, event: Event) -> None:
            seen.append(event.kind)

    agent = make_agent()
    agent.pm.register(Watcher())
    agent.pm.register(Broken())  # pluggy calls the last registered first
    agent.datagram(encode(PLACEMENT, notice(1, ACTIVATED), None), DIRECTOR)
    assert seen == ["backup.activated"] and agent.epoch == 1


# --- the session: Agent.notice takes it only from an answer to its own run ---


def welcome(agent: Agent, seq: int, session: str = "s1", boot: str | None = None) -> bytes:
    answer = notice(0).model_copy(
        update={"session": session, "boot": boot or agent.boot, "seq": seq}
    )
    return encode(PLACEMENT, answer, None)


async def test_an_agent_takes_the_session_of_a_welcome_that_answers_its_run():
    agent = make_agent()
    assert agent.session == ""
    agent.datagram(welcome(agent, 3), DIRECTOR)
    assert agent.session == "s1"


async def test_an_agent_ignores_the_session_of_an_answer_to_another_run():
    agent = make_agent()
    agent.datagram(welcome(agent, 3, boot="another run"), DIRECTOR)
    assert agent.session == ""


async def test_a_replayed_welcome_answering_an_older_heartbeat_does_not_bring_its_session_back():
    agent = make_agent()
    old = welcome(agent, 3, "before the restart")
    agent.datagram(old, DIRECTOR)
    agent.datagram(welcome(agent, 40, "after the restart"), DIRECTOR)
    agent.datagram(old, DIRECTOR)  # captured and sent again
    assert agent.session == "after the restart"


# --- Runs: which agent run the director follows (an exact clock) ---


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


TIMING = Timing(heartbeat_interval=0.1, offline_after=0.5, online_after=3.0, mass_failure_guard=0.5)
SOURCE = ("127.0.0.11", 50001)


class Director:
    """What Runs talks to: the director's alarms and the welcomes it sends."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.alarms: list[dict] = []
        self.welcomes: list[tuple[tuple[str, int], Heartbeat]] = []
        self.runs = Runs(self.emit, self.welcome, self.clock, session="S")

    def emit(self, kind: str, **fields) -> None:
        assert kind == "alarm"
        self.alarms.append(fields)

    def welcome(self, name: str, source: tuple[str, int], beat: Heartbeat) -> None:
        self.welcomes.append((source, beat))

    def refusal(self, beat: Heartbeat, source: tuple[str, int] = SOURCE) -> str | None:
        try:
            self.runs.admit(beat, source, TIMING)
        except WireError as error:
            return error.reason
        return None

    def at(self, now: float, beat: Heartbeat, source: tuple[str, int] = SOURCE) -> str | None:
        self.clock.now = now
        return self.refusal(beat, source)


def hb(boot: str, seq: int, session: str = "S") -> Heartbeat:
    return Heartbeat(name="Playout1", boot=boot, seq=seq, interval=0.1, session=session)


def test_a_heartbeat_without_this_directors_session_is_not_heard_but_welcomed():
    d = Director()
    assert d.refusal(hb("A", 1, session="")) == "unwelcomed"
    assert d.refusal(hb("A", 2, session="earlier director")) == "unwelcomed"
    assert d.runs.followed("Playout1") is None
    # One welcome per source address per half interval: a flood of replays is not a
    # flood of notices, and the agent's next heartbeat is answered again.
    assert [beat.seq for _, beat in d.welcomes] == [1]
    assert d.at(100.04, hb("A", 3, session="")) == "unwelcomed"
    assert [beat.seq for _, beat in d.welcomes] == [1]
    assert d.at(100.06, hb("A", 3, session="")) == "unwelcomed"
    assert [beat.seq for _, beat in d.welcomes] == [1, 3]
    assert d.at(100.07, hb("A", 4, session=""), ("127.0.0.11", 50002)) == "unwelcomed"
    assert d.welcomes[-1] == (("127.0.0.11", 50002), hb("A", 4, session=""))
    assert d.at(100.1, hb("A", 5)) is None
    assert d.runs.followed("Playout1") == "A"


def test_within_a_run_only_newer_heartbeats_are_heard():
    d = Director()
    assert d.refusal(hb("A", 5)) is None
    assert d.refusal(hb("A", 5)) == "replay"
    assert d.refusal(hb("A", 4)) == "replay"
    assert d.refusal(hb("A", 6)) is None


def test_an_agent_restarted_after_a_silence_is_followed_and_its_old_run_is_a_replay():
    d = Director()
    assert d.at(100.0, hb("A", 7)) is None
    assert d.at(100.2, hb("B", 1)) is None  # two intervals of silence: a restart
    assert d.runs.followed("Playout1") == "B"
    assert d.at(100.25, hb("A", 7)) == "replay"
    assert d.at(100.3, hb("A", 6)) == "replay"
    assert d.alarms == []


def test_a_second_agent_cannot_displace_the_first_while_the_first_is_heard():
    d = Director()
    assert d.at(100.0, hb("A", 1)) is None
    assert d.at(100.05, hb("X", 1)) == "second_agent"
    # The first one pauses longer than two intervals but less than offline_after:
    assert d.at(100.4, hb("X", 8)) == "second_agent"
    assert d.at(100.45, hb("A", 2)) is None
    assert d.runs.followed("Playout1") == "A"
    assert [a["alarm"] for a in d.alarms] == ["second agent"]
    # Once the first has been silent for offline_after it is gone: the second is followed.
    assert d.at(100.95, hb("X", 20)) is None
    assert d.runs.followed("Playout1") == "X"


def test_a_run_that_lost_its_place_and_is_heard_again_takes_it_back():
    d = Director()
    assert d.at(100.0, hb("A", 1)) is None
    assert d.at(100.25, hb("X", 1)) is None  # looked like a restart of A's agent
    assert d.at(100.3, hb("A", 2)) is None  # but A never stopped: it is followed again
    assert d.runs.followed("Playout1") == "A"
    assert [a["alarm"] for a in d.alarms] == ["second agent"]
    assert d.at(100.35, hb("X", 2)) == "second_agent"
    assert d.at(100.4, hb("A", 2)) == "replay"
    assert len(d.alarms) == 1


def test_notices_carry_the_session_and_the_heartbeat_they_answer():
    d = Director()
    assert d.refusal(hb("A", 9)) is None
    stamped = d.runs.stamp(notice(1), "Playout1")
    assert (stamped.session, stamped.boot, stamped.seq) == ("S", "A", 9)
    answer = d.runs.stamp(notice(1), "Playout1", answering=hb("B", 2, session=""))
    assert (answer.session, answer.boot, answer.seq) == ("S", "B", 2)
    nobody = d.runs.stamp(notice(1), "Backup1")
    assert (nobody.session, nobody.boot, nobody.seq) == ("S", None, None)


def test_every_director_start_draws_a_new_session():
    sessions = {Runs(print, print).session for _ in range(20)}
    assert len(sessions) == 20 and all(len(s) == 16 for s in sessions)


# --- Confirmations: announced, then confirmed by the client that plays now ---


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def __call__(self, kind: str, **fields) -> None:
        self.events.append((kind, fields))


def confirmations() -> tuple[Confirmations, Recorder, Clock]:
    emit, clock = Recorder(), Clock()
    return Confirmations(emit, lambda: 0.1, clock), emit, clock


def test_a_takeover_is_unconfirmed_until_the_backup_heartbeat_carries_its_epoch():
    c, emit, clock = confirmations()
    c.announced(4, {**ACTIVATED, "epoch": 4})
    assert not c.confirmed("Playout1") and c.confirmed("Backup1")
    c.heard("Backup1", 3)  # still on the epoch before
    c.heard("Playout1", 4)  # not the one that plays now
    assert not c.confirmed("Playout1")
    clock.now += 0.02
    c.heard("Backup1", 4)
    assert c.confirmed("Playout1")
    assert emit.events == [
        (
            "backup.confirmed",
            {
                "client": "Playout1",
                "plays_on": "Backup1",
                "epoch": 4,
                "after": 0.02,
                "alarmed": False,
            },
        )
    ]


def test_not_confirmed_within_the_bound_is_one_alarm_and_the_later_confirmation_ends_it():
    c, emit, clock = confirmations()
    assert confirm_within(0.1) == 1.0 and confirm_within(0.5) == 2.5
    c.announced(1, {**ACTIVATED, "epoch": 1})
    clock.now += 0.999
    c.check()
    assert emit.events == []
    clock.now += 0.001
    c.check()
    c.check()
    ((kind, alarm),) = emit.events
    assert kind == "alarm" and alarm["alarm"] == "not confirmed" and alarm["client"] == "Playout1"
    assert "announced to Backup1 (epoch 1)" in alarm["message"]
    c.heard("Backup1", 1)
    assert emit.events[-1][0] == "backup.confirmed" and emit.events[-1][1]["alarmed"] is True


def test_a_move_is_confirmed_by_the_client_it_moved_to():
    c, _, _ = confirmations()
    c.announced(2, {**MOVED, "epoch": 2})
    c.heard("Backup1", 2)
    assert not c.confirmed("Playout1")
    c.heard("Playout1", 2)
    assert c.confirmed("Playout1")


def test_the_newest_decisions_event_is_kept_for_repaired_notices_of_its_epoch():
    c, _, _ = confirmations()
    assert c.event_of(0) is None
    c.announced(1, {**ACTIVATED, "epoch": 1})
    c.announced(2, {**MOVED, "epoch": 2})
    assert c.event_of(2) == {**MOVED, "epoch": 2}
    assert c.event_of(1) is None  # an agent that missed both hears the newest
    c.announced(3, None)  # a catch-up, not a decision
    assert c.event_of(3) is None and c.event_of(2) is not None


def test_after_a_restart_the_saved_decision_of_the_current_epoch_is_repeated_and_confirmed():
    log = EventLog()
    log.add("backup.activated", {**ACTIVATED, "epoch": 1})
    log.add("backup.moved", {**MOVED, "epoch": 2})
    log.add("client.online", {"client": "Playout1", "ip": "127.0.0.11"})
    c, _, _ = confirmations()
    c.restore(log, 2)
    assert c.event_of(2) == {**MOVED, "epoch": 2} and not c.confirmed("Playout1")
    other, _, _ = confirmations()
    other.restore(log, 3)  # the saved log does not have the current epoch's decision
    assert other.event_of(3) is None and other.confirmed("Playout1")


async def test_an_agent_takes_an_ack_only_for_its_own_run_and_a_newer_heartbeat():
    agent = make_agent(secret=b"k")
    agent.seq = 10
    asyncio.get_running_loop()  # _heard_director stamps loop time

    def ack(seq: int, boot: str | None = None) -> bytes:
        return encode(ACK, Ack(session="s", boot=boot or agent.boot, seq=seq), b"k")

    agent.datagram(ack(4, boot="another run"), DIRECTOR)
    agent.datagram(ack(11), DIRECTOR)  # a heartbeat not yet sent
    agent.datagram(encode(ACK, Ack(session="s", boot=agent.boot, seq=4), b"wrong"), DIRECTOR)
    assert agent._last_word is None and agent.dropped == 1
    agent.datagram(ack(4), DIRECTOR)
    heard = agent._last_word
    assert heard is not None
    agent._last_word = None
    agent.datagram(ack(4), DIRECTOR)  # the same ack again: a replay
    agent.datagram(ack(3), DIRECTOR)  # an older one
    assert agent._last_word is None
    agent.datagram(ack(9), DIRECTOR)
    assert agent._last_word is not None
