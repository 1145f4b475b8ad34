"""The Videohub emulator against an independent client (bmdwire's videohubwire), then the
`videohub` module against the emulator: read-back, labels, salvos, locks, failures."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from collections import deque
from collections.abc import AsyncIterator

import pytest
from videohubwire import Videohub as WireClient
from videohubwire import VideohubError

from pxcontrol.app import App
from pxcontrol.loading import load_show
from pxcontrol.module import ModuleStatus
from pxcontrol.problems import ShowInvalid
from pxcontrol.testing import Rig
from pxcontrol_videohub.emulator import FRONT_PANEL, VideohubEmulator

from .conftest import REPO, async_wait_for, pxcontrol

CAMERAS = ["Cam 1", "Cam 2", "Playout1 Out 1", "Playout1 Out 2", "Backup1 Out 1", "Backup1 Out 2"]
SCREENS = ["LED Wall", "Projector", "Confidence", "Record"]


@pytest.fixture
async def hub() -> AsyncIterator[VideohubEmulator]:
    emulator = VideohubEmulator(12, 12, input_labels=CAMERAS, output_labels=SCREENS)
    async with emulator:
        yield emulator


def wire(hub: VideohubEmulator, source: str = "127.0.0.1", **kwargs) -> WireClient:
    """A videohubwire client, connecting from `source` (the router keeps locks per address)."""

    def connect(address, timeout):
        return socket.create_connection(address, timeout, source_address=(source, 0))

    return WireClient("127.0.0.1", hub.port, socket_factory=connect, **kwargs)


async def connected(client: WireClient) -> WireClient:
    await asyncio.to_thread(client.connect)
    return client


class Raw:
    """The protocol typed by hand, as `nc` would: send a block, read blocks back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.pushed: deque[str] = deque()  # updates that arrived while waiting for an answer

    @classmethod
    async def open(cls, hub: VideohubEmulator, source: str = "127.0.0.1") -> Raw:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", hub.port, local_addr=(source, 0)
        )
        raw = cls(reader, writer)
        while await raw.block() != "END PRELUDE:":
            pass
        return raw

    async def block(self) -> str:
        if self.pushed:
            return self.pushed.popleft()
        async with asyncio.timeout(5):
            return (await self.reader.readuntil(b"\n\n")).decode().strip("\n")

    async def ask(self, text: str) -> str:
        """Send a request; its ACK or NAK (the router answers in order)."""
        self.writer.write(text.encode())
        while True:
            async with asyncio.timeout(5):
                block = (await self.reader.readuntil(b"\n\n")).decode().strip("\n")
            if block in ("ACK", "NAK"):
                return block
            self.pushed.append(block)

    def close(self) -> None:
        self.writer.close()


# --- the emulator, driven by a client we did not write ---


async def test_videohubwire_reads_the_emulators_status_dump(hub):
    client = await connected(wire(hub))
    try:
        state = await asyncio.to_thread(client.state)
    finally:
        client.close()
    assert client.protocol_version == "2.8"
    assert state["device"]["video_inputs"] == 12 and state["device"]["video_outputs"] == 12
    assert state["device"]["model_name"] == hub.model
    assert [i["label"] for i in state["inputs"][:7]] == [*CAMERAS, "Input 7"]
    assert state["outputs"][0] == {"index": 0, "label": "LED Wall", "source": 0, "lock": "U"}
    assert [o["source"] for o in state["outputs"]] == hub.routing
    # videohubwire checks a route against the sizes the dump declared, before it sends
    with pytest.raises(VideohubError, match=r"outside this hub \(12x12\)"):
        await asyncio.to_thread(client.route, 0, 12)


async def test_videohubwire_routes_and_every_client_hears_the_change(hub):
    first, second = await connected(wire(hub)), await connected(wire(hub))
    try:
        await asyncio.to_thread(first.route, 1, 4)  # returns on ACK
        assert hub.routing[1] == 4
        state = await asyncio.to_thread(second.state)  # applies what the router pushed
        assert state["outputs"][1]["source"] == 4
        await asyncio.to_thread(second.set_output_label, 3, "Record Deck")
        assert hub.output_labels[3] == "Record Deck"
        assert (await asyncio.to_thread(first.state))["outputs"][3]["label"] == "Record Deck"
        hub.route(5, 2)  # from the front panel
        assert (await asyncio.to_thread(first.state))["outputs"][5]["source"] == 2
        await asyncio.to_thread(first.ping)
    finally:
        first.close()
        second.close()


async def test_a_locked_output_is_acknowledged_and_left_as_it_was(hub):
    """The hardware's trap: ACK, and nothing happens. videohubwire believes the ACK."""
    locker = await Raw.open(hub, source="127.0.0.2")
    try:
        assert await locker.ask("VIDEO OUTPUT LOCKS:\n2 O\n\n") == "ACK"
        assert await locker.block() == "VIDEO OUTPUT LOCKS:\n2 O"
        assert hub.lock_owners[2] == "127.0.0.2"
        client = await connected(wire(hub))
        try:
            state = await asyncio.to_thread(client.state)
            assert state["outputs"][2]["lock"] == "L"  # another address holds it
            await asyncio.to_thread(client.route, 2, 5)  # ACKed: no error
            assert client.routing[2] == 5  # videohubwire's optimistic copy...
        finally:
            client.close()
        assert hub.routing[2] == 2  # ...but the router did not change
        fresh = await connected(wire(hub))
        try:
            assert fresh.routing[2] == 2  # a fresh read-back says so
        finally:
            fresh.close()
        # The owner's own address routes straight through its lock.
        same_address = await connected(wire(hub, source="127.0.0.2"))
        try:
            assert same_address.locks[2] == "O"
            await asyncio.to_thread(same_address.route, 2, 5)
        finally:
            same_address.close()
        assert hub.routing[2] == 5
    finally:
        locker.close()


async def test_requests_typed_by_hand_get_ack_nak_and_status(hub):
    raw = await Raw.open(hub)
    other = await Raw.open(hub, source="127.0.0.2")
    try:
        assert await raw.ask("PING:\n\n") == "ACK"
        assert await raw.ask("VIDEO OUTPUT ROUTING:\n0 99\n\n") == "NAK"  # no input 100
        assert await raw.ask("VIDEO OUTPUT ROUTING:\n12 0\n\n") == "NAK"  # no output 13
        assert await raw.ask("VIDEO OUTPUT ROUTING:\nzero one\n\n") == "NAK"
        assert await raw.ask("VIDEO OUTPUT LOCKS:\n0 X\n\n") == "NAK"
        assert await raw.ask("TELEPORT:\n1 2\n\n") == "NAK"
        assert hub.routing[0] == 0
        # A salvo: one block, two routes, one ACK and one update to every client.
        assert await raw.ask("VIDEO OUTPUT ROUTING:\n0 4\n1 5\n\n") == "ACK"
        assert await raw.block() == "VIDEO OUTPUT ROUTING:\n0 4\n1 5"
        assert await other.block() == "VIDEO OUTPUT ROUTING:\n0 4\n1 5"
        # A bare header asks for the whole block again.
        assert await raw.ask("OUTPUT LABELS:\n\n") == "ACK"
        assert (await raw.block()).startswith("OUTPUT LABELS:\n0 LED Wall\n1 Projector\n")
        # \r\n line ends are accepted too.
        assert await raw.ask("PING:\r\n\r\n") == "ACK"
        # Locks are seen per address: O for the owner, L for everyone else; F forces.
        assert await raw.ask("VIDEO OUTPUT LOCKS:\n7 O\n\n") == "ACK"
        assert await raw.block() == "VIDEO OUTPUT LOCKS:\n7 O"
        assert await other.block() == "VIDEO OUTPUT LOCKS:\n7 L"
        assert await other.ask("VIDEO OUTPUT LOCKS:\n7 U\n\n") == "ACK"  # not theirs: no change
        assert hub.lock_owners[7] == "127.0.0.1"
        assert await other.ask("VIDEO OUTPUT LOCKS:\n7 F\n\n") == "ACK"
        assert await other.block() == "VIDEO OUTPUT LOCKS:\n7 U"
        assert hub.lock_owners[7] is None
    finally:
        raw.close()
        other.close()


async def test_videohubwire_reads_a_dump_that_arrives_in_pieces(hub):
    hub.split_dump, hub.split_pause = 7, 0.02
    client = await connected(wire(hub))
    try:
        assert client.routing == dict(enumerate(hub.routing))
        assert client.output_labels[0] == "LED Wall"
    finally:
        client.close()


INDEXED = {"INPUT LABELS:", "OUTPUT LABELS:", "VIDEO OUTPUT LOCKS:", "VIDEO OUTPUT ROUTING:"}
FIELDS = {"PROTOCOL PREAMBLE:", "VIDEOHUB DEVICE:", "CONFIGURATION:", "END PRELUDE:"}


def whole_blocks(stream: str) -> list[str]:
    """The blocks of a client's stream, each checked whole: a known header on its own line,
    then `<index> <value>` or `Key: value` lines (a pydeohub-style strict reader)."""
    assert stream.endswith("\n\n"), stream[-80:]
    blocks = stream.removesuffix("\n\n").split("\n\n")
    for block in blocks:
        header, *lines = block.split("\n")
        assert header in INDEXED | FIELDS | {"ACK", "NAK"}, f"not a block: {block[:80]!r}"
        for line in lines:
            index, _, value = line.partition(" ")
            if header in INDEXED:
                assert index.isdigit() and value, f"{header} has a broken line {line!r}"
            else:
                assert ": " in line, f"{header} has a broken line {line!r}"
    return blocks


async def test_changes_made_during_a_split_dump_wait_for_its_end(hub):
    """One client routes while another is still receiving its status dump in pieces: the
    second's stream stays whole blocks, the dump first, then the change."""
    changer = await connected(wire(hub))
    hub.split_dump, hub.split_pause = 3, 0.3  # from now on
    reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
    try:
        stream = (await asyncio.wait_for(reader.read(65536), 5)).decode()
        assert not stream.endswith("END PRELUDE:\n\n")  # the dump is under way
        for output in (1, 2, 3):
            await asyncio.to_thread(changer.route, output, 7)  # each returns on its ACK
        while stream.count("VIDEO OUTPUT ROUTING:") < 4:
            stream += (await asyncio.wait_for(reader.read(65536), 5)).decode()
    finally:
        changer.close()
        writer.close()
    blocks = whole_blocks(stream)
    headers = [block.split("\n")[0] for block in blocks]
    assert headers.index("END PRELUDE:") == 7, headers
    assert blocks[8:] == [f"VIDEO OUTPUT ROUTING:\n{output} 7" for output in (1, 2, 3)]


async def test_videohubwire_sees_the_failure_knobs(hub):
    client = await connected(wire(hub, read_timeout=0.3))
    try:
        hub.drop_connections()
        with pytest.raises(VideohubError, match="connection closed by hub"):
            await asyncio.to_thread(client.state)  # reads only: it sees the router hang up
    finally:
        client.close()
    hub.answering = False
    with pytest.raises(VideohubError, match="no state preamble"):
        await connected(wire(hub, read_timeout=0.3))


# --- the module against the emulator ---


async def started(write_show, hub: VideohubEmulator, extra: str = "", more: str = "") -> App:
    show = write_show(
        f'[modules.Router]\ntype = "videohub"\nhost = "127.0.0.1"\nport = {hub.port}\n{extra}\n{more}'
    )
    app = App(load_show(show))
    await app.start()
    return app


def kinds(app: App, kind: str) -> list[dict]:
    return [event.fields for event in app.events if event.kind == kind]


async def test_routes_by_number_and_by_label_are_read_back(hub, write_show):
    app = await started(write_show, hub)
    router = app.modules["Router"]
    try:
        await async_wait_for(lambda: router.status is ModuleStatus.OK, what="the dump")
        assert router.status_message.endswith("12 inputs, 12 outputs, protocol 2.8")
        record = await app.run_action("Router.Route", {"output": 2, "input": 5})
        assert record.ok, record.error
        assert record.result == "output 2 (Projector) ← input 5 (Backup1 Out 1)"
        assert hub.routing[1] == 4 and router.routing[1] == 4
        record = await app.run_action(
            "Router.Route", {"output": "led WALL", "input": "  backup1 out 2 "}
        )
        assert record.ok, record.error
        assert hub.routing[0] == 5
        # From the command line, numbers arrive as text.
        record = await app.run_action("Router.Route", {"output": "3", "input": "6"})
        assert record.ok and hub.routing[2] == 5
        assert {"output": 1, "input": 6, "output_label": "LED Wall"}.items() <= kinds(
            app, "videohub.routed"
        )[1].items()
    finally:
        await app.stop()


async def test_an_unknown_label_lists_near_matches(hub, write_show):
    app = await started(write_show, hub)
    try:
        record = await app.run_action(
            "Router.Route", {"output": "LED Wal", "input": "Backup Out 1"}
        )
        assert record.error == (
            "Router.Route failed: no output labelled 'LED Wal' on the router; "
            "near matches: 'LED Wall' (output 1)"
        )
        record = await app.run_action("Router.Route", {"output": 1, "input": "Backup Out 1"})
        assert "no input labelled 'Backup Out 1' on the router; near matches: 'Backup1 Out 1'" in (
            record.error
        )
        hub.set_label("input", 7, "Cam 1")
        await async_wait_for(lambda: app.modules["Router"].input_labels[7] == "Cam 1")
        record = await app.run_action("Router.Route", {"output": 1, "input": "cam 1"})
        assert "input label 'cam 1' is ambiguous: inputs 1, 8; use the number" in record.error
    finally:
        await app.stop()


async def test_salvo_makes_routes_in_one_block_and_confirms_them_together(hub, write_show):
    app = await started(write_show, hub)
    try:
        record = await app.run_action(
            "Router.Salvo",
            {"routes": [[1, "Backup1 Out 1"], {"output": "Projector", "input": 6}, ["Record", 1]]},
        )
        assert record.ok, record.error
        assert hub.routing[:4] == [4, 5, 2, 0]
        assert record.result == (
            "output 1 (LED Wall) ← input 5 (Backup1 Out 1), "
            "output 2 (Projector) ← input 6 (Backup1 Out 2), output 4 (Record) ← input 1 (Cam 1)"
        )
        record = await app.run_action("Router.Salvo", {"routes": [[1, 2], [1, 3]]})
        assert record.error == "Router.Salvo failed: output 1 appears twice in the salvo"
        record = await app.run_action("Router.Salvo", {"routes": []})
        assert "wrong arguments" in record.error
    finally:
        await app.stop()


async def test_a_route_refused_by_a_lock_fails_at_once_and_says_so(hub, write_show):
    app = await started(write_show, hub, "confirm_timeout = 5")
    router = app.modules["Router"]
    try:
        await async_wait_for(lambda: router.status is ModuleStatus.OK)
        hub.lock(1)  # someone at the front panel
        await async_wait_for(lambda: router.locks[1] == "L")
        assert kinds(app, "videohub.lock")[-1] == {
            "module": "Router", "output": 2, "output_label": "Projector", "lock": "locked",
        }  # fmt: skip
        record = await app.run_action("Router.Route", {"output": 2, "input": 5})
        assert record.error == (
            "Router.Route failed: output 2 (Projector) is locked by another client: the router "
            "acknowledged the route but did not make it (it still shows input 2 (Cam 2))"
        )
        assert record.duration < 2.5, "the read-back shows the lock: no wait for the timeout"
        record = await app.run_action("Router.Salvo", {"routes": [[1, 5], [2, 5]]})
        assert record.error.startswith(
            "Router.Salvo failed: 1 of 2 routes made; output 2 (Projector) is locked"
        )
        assert hub.routing[:2] == [4, 1]
    finally:
        await app.stop()


async def test_a_route_nakked_because_of_a_lock_says_it_is_locked(hub, write_show):
    """Some Videohub Servers NAK a route to a locked output instead of ACKing it: the
    module knows the locks from the router's status, so the error names the lock."""
    hub.nak_locked_routes = True
    app = await started(write_show, hub)
    router = app.modules["Router"]
    try:
        await async_wait_for(lambda: router.status is ModuleStatus.OK)
        hub.lock(1)  # someone at the front panel
        await async_wait_for(lambda: router.locks[1] == "L")
        record = await app.run_action("Router.Route", {"output": 2, "input": 5})
        assert record.error == (
            "Router.Route failed: the router refused the route output 2 (Projector) ← input 5 "
            "(Backup1 Out 1) (NAK): output 2 (Projector) is locked by another client; unlock it "
            "at its owner, or with Unlock and force = true"
        )
        record = await app.run_action("Router.Salvo", {"routes": [[1, 5], [2, 5]]})
        assert record.error.endswith(
            "(NAK): output 2 (Projector) is locked by another client; nothing was changed; "
            "unlock it at its owner, or with Unlock and force = true"
        )
        assert hub.routing[:2] == [0, 1]
        assert (await app.run_action("Router.Route", {"output": 1, "input": 5})).ok  # not locked
    finally:
        await app.stop()


async def test_a_videohub_server_with_no_router_says_so(hub, write_show):
    """A Videohub Server answers with `Device present: false` and no routing when no router
    is attached: the module says that, at once, and not "is it a Videohub?"."""
    hub.device_present = False
    raw = await asyncio.open_connection("127.0.0.1", hub.port)
    dump = (await asyncio.wait_for(raw[0].readuntil(b"Device present: false\n\n"), 5)).decode()
    assert dump.startswith("PROTOCOL PREAMBLE:\nVersion: 2.8\n\nVIDEOHUB DEVICE:\n")
    raw[1].write(b"VIDEO OUTPUT ROUTING:\n0 1\n\n")
    assert await asyncio.wait_for(raw[0].readuntil(b"\n\n"), 5) == b"NAK\n\n"
    raw[1].close()
    app = await started(write_show, hub, "connect_timeout = 0.5")
    router = app.modules["Router"]
    try:
        await async_wait_for(lambda: router.status is ModuleStatus.CONNECTION_FAILURE)
        assert router.status_message == (
            f"ConnectionError: the Videohub Server at 127.0.0.1:{hub.port} reports no router "
            "attached (Device present: false): connect the router to it and power it on; the "
            "module keeps trying"
        )
        record = await app.run_action("Router.Route", {"output": 1, "input": 2})
        assert "reports no router attached" in record.error, record.error
        hub.device_present = True  # the router is plugged in
        await async_wait_for(lambda: router.status is ModuleStatus.OK, what="the router")
        assert (await app.run_action("Router.Route", {"output": 1, "input": 2})).ok
    finally:
        await app.stop()


async def test_lock_and_unlock(hub, write_show):
    app = await started(write_show, hub)
    router = app.modules["Router"]
    other = await Raw.open(hub, source="127.0.0.2")
    try:
        record = await app.run_action("Router.Lock", {"output": "Record"})
        assert record.ok and record.result == "output 4 (Record) locked", record.error
        assert hub.lock_owners[3] == "127.0.0.1" and router.locks[3] == "O"
        # Another client cannot route it; this module still can.
        assert await other.ask("VIDEO OUTPUT ROUTING:\n3 9\n\n") == "ACK"
        assert hub.routing[3] == 3
        assert (await app.run_action("Router.Route", {"output": 4, "input": 9})).ok
        assert hub.routing[3] == 8
        assert (await app.run_action("Router.Unlock", {"output": 4})).ok
        assert hub.lock_owners[3] is None and router.locks[3] == "U"
        # A lock held elsewhere: Lock and Unlock say so; force takes it off.
        hub.lock(5, owner="127.0.0.2")
        record = await app.run_action("Router.Lock", {"output": 6})
        assert "output 6 is locked by another client: the router acknowledged the lock" in (
            record.error
        )
        record = await app.run_action("Router.Unlock", {"output": 6})
        assert "Unlock with force = true takes it off" in record.error
        assert (await app.run_action("Router.Unlock", {"output": 6, "force": True})).ok
        assert hub.lock_owners[5] is None
    finally:
        other.close()
        await app.stop()


async def test_a_nak_is_an_error_that_says_why(hub, write_show):
    app = await started(write_show, hub)
    try:
        record = await app.run_action("Router.Route", {"output": 1, "input": 13})
        assert record.error == (
            "Router.Route failed: the router refused the route output 1 (LED Wall) ← input 13 "
            "(NAK): the router has 12 inputs"
        )
        record = await app.run_action("Router.Lock", {"output": 40})
        assert record.error.endswith("(NAK): the router has 12 outputs")
        record = await app.run_action("Router.Route", {"output": 0, "input": 1})
        assert record.error.startswith("wrong arguments for Router.Route: output")
        assert hub.routing[0] == 0
    finally:
        await app.stop()


async def test_changes_made_elsewhere_reach_the_modules_state(hub, write_show):
    app = await started(write_show, hub)
    router = app.modules["Router"]
    other = await Raw.open(hub, source="127.0.0.2")
    try:
        await async_wait_for(lambda: router.status is ModuleStatus.OK)
        hub.route(2, 7)
        await async_wait_for(lambda: router.routing[2] == 7)
        assert await other.ask("VIDEO OUTPUT ROUTING:\n3 6\n\n") == "ACK"
        assert await other.ask("INPUT LABELS:\n11 Spare Cam\n\n") == "ACK"
        await async_wait_for(
            lambda: router.routing[3] == 6 and router.input_labels[11] == "Spare Cam"
        )
        assert [(e["output"], e["input"]) for e in kinds(app, "videohub.routed")] == [
            (3, 8),
            (4, 7),
        ]
        assert (await app.run_action("Router.Route", {"output": 1, "input": "spare cam"})).ok
        assert hub.routing[0] == 11
    finally:
        other.close()
        await app.stop()


async def test_the_router_dropping_the_connection_mid_show(hub, write_show):
    app = await started(write_show, hub)
    router = app.modules["Router"]
    try:
        await async_wait_for(lambda: router.status is ModuleStatus.OK)
        hub.drop_connections()
        hub.route(0, 3)  # while the module is away
        await async_wait_for(lambda: router.status is ModuleStatus.OK and router.routing[0] == 3)
        statuses = [e["status"] for e in kinds(app, "module.status")]
        assert statuses[-3:] == ["disconnected", "connecting", "ok"]
        assert kinds(app, "module.status")[-3]["message"] == "connection closed by the device"
        # What changed while it was away is an event too.
        assert kinds(app, "videohub.routed")[-1]["output"] == 1
        record = await app.run_action("Router.Route", {"output": 1, "input": 2})
        assert record.ok, record.error
        assert hub.routing[0] == 1
    finally:
        await app.stop()


async def test_a_router_that_never_answers(hub, write_show):
    app = await started(write_show, hub, "confirm_timeout = 0.3\nconnect_timeout = 0.3")
    router = app.modules["Router"]
    try:
        await async_wait_for(lambda: router.status is ModuleStatus.OK)
        hub.answering = False
        record = await app.run_action("Router.Route", {"output": 1, "input": 2})
        assert record.error == (
            "Router.Route failed: the router did not answer the route output 1 (LED Wall) ← "
            "input 2 (Cam 2) within 0.3 s (no ACK); the connection is dropped and opened again"
        )
        # It connects again, and gets no status dump either.
        await async_wait_for(
            lambda: "no status dump" in router.status_message, what="the reconnect to fail"
        )
        assert router.status is ModuleStatus.CONNECTION_FAILURE
        assert router.status_message == (
            f"ConnectionError: no status dump from 127.0.0.1:{hub.port} within 0.3 s: "
            "is it a Videohub?"
        )
        record = await app.run_action("Router.Route", {"output": 1, "input": 2})
        assert record.error.startswith("Router.Route failed: not connected to 127.0.0.1:")
        hub.answering = True
        await async_wait_for(lambda: router.status is ModuleStatus.OK, what="the router back")
        assert (await app.run_action("Router.Route", {"output": 1, "input": 2})).ok
    finally:
        await app.stop()


async def test_an_unanswered_keepalive_drops_the_connection(hub, write_show):
    app = await started(write_show, hub, "keepalive = 0.1\nconfirm_timeout = 0.2")
    router = app.modules["Router"]
    try:
        await async_wait_for(lambda: router.status is ModuleStatus.OK)
        hub.answering = False
        await async_wait_for(lambda: router.status is ModuleStatus.CONNECTION_FAILURE)
        messages = [e["message"] for e in kinds(app, "module.status")]
        assert "ConnectionError: the router did not answer PING within 0.2 s" in messages
    finally:
        await app.stop()


async def test_a_status_dump_split_across_reads(hub, write_show):
    hub.split_dump, hub.split_pause = 9, 0.05
    app = await started(write_show, hub)
    router = app.modules["Router"]
    try:
        # Called at once: it waits for the whole dump, labels included.
        record = await app.run_action(
            "Router.Route", {"output": "record", "input": "backup1 out 2"}
        )
        assert record.ok, record.error
        assert hub.routing[3] == 5
        assert router.output_labels == dict(enumerate(hub.output_labels))
        assert router.locks == dict.fromkeys(range(12), "U")
        assert router.device["model name"] == hub.model
    finally:
        await app.stop()


async def test_front_panel_lock_is_not_ours(hub, write_show):
    hub.lock(0, FRONT_PANEL)
    app = await started(write_show, hub)
    router = app.modules["Router"]
    try:
        await async_wait_for(lambda: router.status is ModuleStatus.OK)
        assert router.locks[0] == "L"
        assert not kinds(app, "videohub.lock"), "the dump itself raises no events"
    finally:
        await app.stop()


def test_the_show_is_checked_at_load(write_show):
    with pytest.raises(ShowInvalid) as problems:
        load_show(
            write_show(
                '[modules.Router]\ntype = "videohub"\nhost = "10.0.0.50"\nconfrim_timeout = 1\n'
                '[[mappings]]\non = "videohub.routed"\n'
                'do = [{ action = "Router.Salvo", args = { routes = [[1]] } }]\n'
            )
        )
    text = "\n".join(str(p) for p in problems.value.problems)
    assert "confrim_timeout" in text
    assert "routes[0]: a route is [output, input] or { output = …, input = … }; got [1]" in text
    loaded = load_show(
        write_show(
            '[modules.Router]\ntype = "videohub"\nhost = "10.0.0.50"\n'
            '[[mappings]]\non = "videohub.routed"\n'
            'do = [{ action = "Router.Salvo", args = { routes = [[1, "Cam 5"], '
            '{ output = "LED Wall", input = 6 }] } }]\n'
        )
    )
    assert loaded.show.all_modules["Router"].type == "videohub"


def test_the_emulator_on_its_own_and_pxcontrol_call(write_show):
    """As the demo runs it: the emulator as a command, the module from `pxcontrol call`."""
    emulator = subprocess.Popen(
        [sys.executable, "-m", "pxcontrol_videohub.emulator", "--port", "0", "--inputs", "4",
         "--outputs", "2", "--output-labels", "LED Wall,Projector"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert emulator.stdout is not None
        ready = emulator.stdout.readline()
        assert ready.startswith("Videohub emulator: 4 inputs, 2 outputs, listening on 127.0.0.1:")
        port = int(ready.rsplit(":", 1)[1])
        show = write_show(
            f'[modules.Router]\ntype = "videohub"\nhost = "127.0.0.1"\nport = {port}\n'
        )
        result = pxcontrol("call", "--show", str(show), "Router.Salvo", '[["led wall", 3], [2, 4]]')
        assert result.returncode == 0, result.stderr
        assert "ok Router.Salvo" in result.stdout
        assert "output 1 (LED Wall) ← input 3, output 2 (Projector) ← input 4" in result.stdout
        assert "VIDEO OUTPUT ROUTING: 0 2 from 127.0.0.1" in emulator.stdout.readline()
        result = pxcontrol("call", "--show", str(show), "Router.Route", "1", "5")
        assert result.returncode == 1
        assert "the router refused the route output 1 (LED Wall) ← input 5 (NAK)" in result.stderr
    finally:
        emulator.terminate()
        emulator.wait(5)


def test_the_show_in_the_docs_passes_check(tmp_path):
    page = (REPO / "docs" / "modules" / "videohub.md").read_text()
    show = page.split("## A show", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "show.toml").write_text(show)
    loaded = load_show(tmp_path / "show.toml")
    assert [m.on for m in loaded.show.mappings] == [
        "backup.activated", "backup.moved", "videohub.routed",
    ]  # fmt: skip


TAKEOVER = """
[director]
heartbeat_port = {heartbeat_port}

[detection]
heartbeat_interval = 0.05
offline_after = 0.4
online_after = 0.6

[[clients]]
name = "Playout1"
ip = "127.0.0.11"
outputs = ["Output 1", "Output 2"]

[[clients]]
name = "Backup1"
ip = "127.0.0.21"
outputs = ["Output 1", "Output 2"]
backup_for = ["127.0.0.11"]
auto_backup = true

[modules.Router]
type = "videohub"
host = "127.0.0.1"
port = {router_port}
confirm_timeout = 5  # generous: CI's two cores may be busy with other processes

[[mappings]]
on = "backup.activated"
client = "Playout1"
do = [
  { action = "Router.Salvo", args = { routes = [["LED Wall", "Backup1 Out 1"], ["Projector", "Backup1 Out 2"]] } },
]
"""


def test_a_takeover_switches_the_router_to_the_backup(tmp_path):
    """End to end: director, two agents and the emulator, all real processes."""
    emulator = subprocess.Popen(
        [sys.executable, "-m", "pxcontrol_videohub.emulator", "--port", "0", "--inputs", "4",
         "--outputs", "2", "--output-labels", "LED Wall,Projector", "--input-labels",
         "Playout1 Out 1,Playout1 Out 2,Backup1 Out 1,Backup1 Out 2"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    rig = None
    try:
        assert emulator.stdout is not None
        port = int(emulator.stdout.readline().rsplit(":", 1)[1])
        rig = Rig(tmp_path, TAKEOVER.replace("{router_port}", str(port)))
        director = rig.start_director()
        director.wait_event("module.status", module="Router", status="ok")
        rig.start_clients(Playout1="127.0.0.11", Backup1="127.0.0.21")
        rig.agents["Playout1"].signal(signal.SIGKILL)
        activated = director.wait_event("backup.activated", client="Playout1")
        done = director.wait_event("mapping.done", event_seq=activated["seq"])
        assert done["ok"], done
        # Read back by a client we did not write, on a connection of its own.
        with WireClient("127.0.0.1", port) as check:
            assert check.routing == {0: 2, 1: 3}
        routed = {(e["output"], e["input_label"]) for e in director.of_kind("videohub.routed")}
        assert routed == {(1, "Backup1 Out 1"), (2, "Backup1 Out 2")}
    finally:
        if rig is not None:
            rig.close()
        emulator.terminate()
        emulator.wait(5)
