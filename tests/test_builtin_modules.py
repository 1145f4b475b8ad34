"""The essential module types against real peers: liblo's oscdump, python-osc, sockets, HTTP."""

from __future__ import annotations

import asyncio
import http.server
import socketserver
import threading
from collections.abc import Iterator

import pytest
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_tcp_server import ThreadingOSCTCPServer

from pxcontrol.app import App
from pxcontrol.loading import load_show
from pxcontrol.module import ModuleStatus

from .conftest import async_wait_for, free_port, pxcontrol, wait_for


def test_pxcontrol_call_sends_osc_that_oscdump_receives(osc_receiver, write_show):
    dump = osc_receiver()
    port = dump.port
    show = write_show(f'[modules.Console]\ntype = "osc"\nhost = "127.0.0.1"\nport = {port}\n')
    result = pxcontrol(
        "call", "--show", str(show), "Console.Send", "/eos/cue/1/fire", 'args=[1, 2.5, "go", true]'
    )
    assert result.returncode == 0, result.stderr
    assert "ok Console.Send" in result.stdout
    dump.wait_line('/eos/cue/1/fire ifsT 1 2.500000 "go" #T')


def test_osc_over_tcp_with_length_prefix_framing_reaches_liblo(osc_receiver, write_show):
    dump = osc_receiver(tcp=True)
    show = write_show(
        f'[modules.Console]\ntype = "osc"\nport = {dump.port}\nprotocol = "tcp"\nframing = "length"\n'
    )
    result = pxcontrol("call", "--show", str(show), "Console.Send", "/go", "args=[7]")
    assert result.returncode == 0, result.stderr
    dump.wait_line("/go i 7")


OSC_EDGES_SHOW = """\
[modules.Console]
type = "osc"
port = 9000

[[mappings]]
on = "backup.activated"
do = [
  { action = "Console.Send", args = { address = "/house lights #2" } },
  { action = "Console.Send", args = { address = "/eos/chan/*", args = [1] } },
  { action = "Console.Send", args = { address = "/ok", args = [2147483647, 4294967296] } },
  { action = "Console.Send", args = { address = "/show/{client}/alarm", args = [-2147483648] } },
]
"""


def test_check_refuses_osc_addresses_and_ints_that_receivers_drop(write_show):
    """An address with a space, # or a pattern character, and an int beyond 32 bits (which
    python-osc would send as an int64 `h`), are refused at load with file, line and key."""
    result = pxcontrol("check", str(write_show(OSC_EDGES_SHOW)))
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout + result.stderr
    for expected in (
        ":8: error: mappings[0].do[0].args.address: '/house lights #2' is not an OSC address: "
        "it has a space, '#'",
        "e.g. '/house_lights_2'",
        ":9: error: mappings[0].do[1].args.address: '/eos/chan/*' is not an OSC address: "
        "it has '*'",
        ":10: error: mappings[0].do[2].args.args[1]: 4294967296 does not fit OSC's 32-bit int (i)",
        "3 error(s)",
    ):
        assert expected in out, out
    assert "2147483647 does not" not in out and "do[3]" not in out  # the limits, a placeholder


async def test_osc_send_refuses_at_call_time_what_check_would_and_sends_the_limits_as_i(
    osc_receiver, write_show
):
    """Values that only arrive at showtime (OSC, CLI, web, placeholders) are refused as the
    action runs; nothing goes out. The int32 limits still go out as `i` (oscdump shows it)."""
    dump = osc_receiver()
    app = await started(write_show(f'[modules.Console]\ntype = "osc"\nport = {dump.port}\n'))
    try:
        refused = [
            ("/house lights #2", [1], "'/house lights #2' is not an OSC address"),
            ("/a//b", [1], "an empty part"),
            ("/big", [4294967296], "args.0: 4294967296 does not fit OSC's 32-bit int (i)"),
            ("/big", [-2147483649], "-2147483649 does not fit"),
            ("/big", [1e39], "does not fit OSC's 32-bit float (f)"),
        ]
        for address, args, message in refused:
            record = await app.run_action("Console.Send", {"address": address, "args": args})
            assert not record.ok and message in str(record.error), record.error
        record = await app.run_action(
            "Console.Send", {"address": "/edge", "args": [2147483647, -2147483648]}
        )
        assert record.ok, record.error
        await asyncio.to_thread(dump.wait_line, "/edge ii 2147483647 -2147483648")
        assert not [line for line in dump.lines if "/big" in line or "/a" in line or "#2" in line]
    finally:
        await app.stop()


@pytest.fixture
def slip_server() -> Iterator[tuple[list, int]]:
    """python-osc's TCP server in OSC 1.1 (SLIP) mode, as Eos and osc.js speak it."""
    received: list = []
    dispatcher = Dispatcher()
    dispatcher.set_default_handler(lambda address, *args: received.append((address, *args)))
    server = ThreadingOSCTCPServer(("127.0.0.1", 0), dispatcher, mode="1.1")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield received, server.server_address[1]
    server.shutdown()
    server.server_close()


async def test_osc_over_tcp_with_slip_framing(slip_server, write_show):
    received, port = slip_server
    app = await started(
        write_show(f'[modules.Eos]\ntype = "osc"\nport = {port}\nprotocol = "tcp"\n')
    )
    try:
        record = await app.run_action("Eos.Send", {"address": "/eos/key/go_0", "args": [1.0]})
        assert record.ok, record.error
        await async_wait_for(lambda: ("/eos/key/go_0", 1.0) in received)
        assert app.modules["Eos"].status is ModuleStatus.OK
    finally:
        await app.stop()


async def started(show) -> App:
    app = App(load_show(show))
    await app.start()
    return app


# --- udp ---


class Echo(asyncio.DatagramProtocol):
    """A device that acknowledges commands, except `MUTE`."""

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        if data != b"MUTE":
            self.transport.sendto(b"ACK " + data, addr)


async def test_udp_send_with_an_expected_reply(write_show):
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        Echo, local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    app = await started(write_show(f'[modules.Dev]\ntype = "udp"\nport = {port}\ntimeout = 0.3\n'))
    try:
        record = await app.run_action("Dev.Send", {"data": "PLAY", "expect": "ACK"})
        assert record.ok and record.result == "ACK PLAY"
        record = await app.run_action("Dev.Send", {"data": "02 41", "hex": True, "expect": "41"})
        assert record.ok and record.result == "41 43 4b 20 02 41"
        record = await app.run_action("Dev.Send", {"data": "MUTE", "expect": "ACK"})
        assert record.error == (
            "Dev.Send failed: expected a reply containing 'ACK' within 0.3 s; no reply came"
        )
        record = await app.run_action("Dev.Send", {"data": "STOP", "expect": "NAK"})
        assert "last reply was 'ACK STOP'" in record.error
        record = await app.run_action("Dev.Send", {"data": "zz", "hex": True})
        assert "'zz' is not hex bytes" in record.error
    finally:
        await app.stop()
        transport.close()


# --- tcp ---


class Device:
    """A TCP device that answers `OK <command>`, and can drop its clients."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []
        self.commands: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        while data := await reader.read(1024):
            self.commands.append(data)
            writer.write(b"OK " + data)
            await writer.drain()
        writer.close()

    def drop_clients(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers.clear()


async def test_tcp_keeps_its_connection_and_reconnects_after_the_device_drops_it(write_show):
    device = Device()
    server = await asyncio.start_server(device.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    app = await started(write_show(f'[modules.Dev]\ntype = "tcp"\nport = {port}\ntimeout = 0.5\n'))
    module = app.modules["Dev"]
    try:
        await async_wait_for(lambda: module.status is ModuleStatus.OK)
        record = await app.run_action("Dev.Send", {"data": "PLAY\r\n", "expect": "OK PLAY"})
        assert record.ok and record.result == "OK PLAY\r\n"
        statuses = []
        app.events.listen(lambda e: statuses.append(e.fields.get("status")))
        device.drop_clients()
        await async_wait_for(lambda: "disconnected" in statuses, what="the drop to be seen")
        await async_wait_for(lambda: module.status is ModuleStatus.OK, what="the reconnect")
        record = await app.run_action("Dev.Send", {"data": "STOP", "expect": "OK STOP"})
        assert record.ok, record.error
        assert device.commands == [b"PLAY\r\n", b"STOP"]
    finally:
        await app.stop()
        server.close()


async def test_a_clean_stop_does_not_report_the_device_as_gone(write_show):
    device = Device()
    server = await asyncio.start_server(device.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    app = await started(write_show(f'[modules.Dev]\ntype = "tcp"\nport = {port}\n'))
    try:
        await async_wait_for(lambda: app.modules["Dev"].status is ModuleStatus.OK)
        before = max(e.seq for e in app.events)
    finally:
        await app.stop()
        server.close()
    said = [e.fields for e in app.events if e.kind == "module.status" and e.seq > before]
    assert said == [], "the show stopped; the device did not close anything"


async def test_tcp_reports_a_device_that_is_not_there(write_show):
    port = free_port(kind=1)  # SOCK_STREAM: nothing listens there
    app = await started(write_show(f'[modules.Dev]\ntype = "tcp"\nport = {port}\ntimeout = 0.3\n'))
    module = app.modules["Dev"]
    try:
        await async_wait_for(lambda: module.status is ModuleStatus.CONNECTION_FAILURE)
        assert "ConnectionRefusedError" in module.status_message
        record = await app.run_action("Dev.Send", {"data": "PLAY"})
        assert record.error.startswith(f"Dev.Send failed: not connected to 127.0.0.1:{port}")
    finally:
        await app.stop()


# --- http ---


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        status = 201 if self.path == "/cues" else 500
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b"got " + body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


async def test_http_request_and_expected_status(http_server, write_show):
    base = f"http://127.0.0.1:{http_server}"
    app = await started(write_show(f'[modules.Api]\ntype = "http"\nbase_url = "{base}"\n'))
    try:
        record = await app.run_action(
            "Api.Request", {"method": "POST", "path": "/cues", "body": '{"cue": 3}'}
        )
        assert record.ok and record.result == {"status": 201, "body": 'got {"cue": 3}'}
        record = await app.run_action(
            "Api.Request", {"method": "POST", "path": "/cues", "body": "x", "expect_status": 200}
        )
        assert "answered 201 (expected 200)" in record.error
        record = await app.run_action(
            "Api.Request", {"method": "POST", "path": "/broken", "body": "x"}
        )
        assert "answered 500 (expected success): got x" in record.error
    finally:
        await app.stop()


async def test_http_to_a_server_that_is_not_there(write_show):
    base = f"http://127.0.0.1:{free_port(kind=1)}"
    app = await started(write_show(f'[modules.Api]\ntype = "http"\nbase_url = "{base}"\n'))
    try:
        record = await app.run_action("Api.Request", {"path": "/"})
        assert record.error.startswith("Api.Request failed: GET /: ConnectError")
        assert app.modules["Api"].status is ModuleStatus.CONNECTION_FAILURE
    finally:
        await app.stop()


def test_wait_for_helper_fails_loudly():
    with pytest.raises(AssertionError, match="waiting for nothing"):
        wait_for(lambda: False, timeout=0.05, what="nothing")
