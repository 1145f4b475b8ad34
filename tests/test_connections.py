"""Bounded connections: idle or half-sent TCP connections cannot take the director's descriptors."""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import select
import socket
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from pxcontrol.attempts import FREE, WAIT, Attempts
from pxcontrol.director import Director
from pxcontrol.osc_bridge import build
from pxcontrol.processes import Process, wait_for
from pxcontrol.testing import Rig
from pxcontrol.web.access import COOKIE

from .conftest import async_wait_for
from .test_osc_bridge import Console, start
from .test_osc_limits import Clock

FLOOD = 1100  # idle connections, more than a default RLIMIT_NOFILE of 1024
FLOOD_HOSTS = [f"127.0.0.{100 + i}" for i in range(110)]  # 10 each: the bound in all is hit


@pytest.fixture
async def director(tmp_path) -> AsyncIterator[Director]:
    director = await start(tmp_path)
    yield director
    await director.stop()


def _connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    s = socket.socket()
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def _closed_now(sock: socket.socket) -> bool:
    """The other side closed (or reset) this connection, as far as it has arrived here."""
    sock.setblocking(False)
    try:
        data = sock.recv(4096)
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    return not data or data.startswith(b"HTTP/1.1 503")


async def _closed_by_peer(*socks: socket.socket) -> bool:
    """Every one of these is closed by the other side, within a few seconds (a close is on
    its way through the kernel when the director's counters change)."""
    waiting = set(socks)

    def all_closed() -> bool:
        waiting.difference_update({s for s in waiting if _closed_now(s)})
        return not waiting

    await async_wait_for(all_closed, 5, "the director to close the connections")
    return True


async def _all_closed(socks: list[socket.socket]) -> bool:
    return await _closed_by_peer(*socks)


async def test_osc_tcp_connections_are_bounded_per_host_and_in_all(director: Director):
    servers = director.osc.servers
    servers.total, servers.per_host_limit = 6, 4
    port = director.osc.port
    held = [await asyncio.to_thread(_connect, port) for _ in range(5)]
    try:
        await async_wait_for(lambda: servers.counts["tcp_refused"] == 1, what="a refusal")
        assert len(servers.connections) == 4  # per host
        others = [await asyncio.to_thread(_connect, port, "127.0.0.2") for _ in range(3)]
        held += others
        await async_wait_for(lambda: servers.counts["tcp_refused"] == 2, what="a refusal")
        assert len(servers.connections) == 6  # in all
        await async_wait_for(
            lambda: sum(_closed_now(s) for s in held) == 2, 5, "the two refused to be closed"
        )
        # Closing one makes room; the bridge still answers on an admitted one.
        held[0].close()
        await async_wait_for(lambda: len(servers.connections) == 5, what="the close")
        late = await asyncio.to_thread(_connect, port, "127.0.0.2")
        held.append(late)
        late.sendall(len(build("/pxcontrol/ping")).to_bytes(4, "big") + build("/pxcontrol/ping"))
        late.settimeout(5)
        answer = await asyncio.to_thread(late.recv, 4096)
        assert b"/pxcontrol/pong" in answer
    finally:
        for s in held:
            s.close()


async def test_osc_tcp_connections_that_send_nothing_or_half_a_frame_are_closed(director: Director):
    servers = director.osc.servers
    servers.first_packet = servers.incomplete = 0.3
    port = director.osc.port
    silent = await asyncio.to_thread(_connect, port)
    half = await asyncio.to_thread(_connect, port)
    half.sendall(b"\x00\x00\x00\x40/pxcontrol/pi")  # a length prefix of 64 and then stops
    working = await asyncio.to_thread(_connect, port)
    ping = build("/pxcontrol/ping")
    working.sendall(len(ping).to_bytes(4, "big") + ping)
    try:
        await async_wait_for(lambda: servers.counts["tcp_timed_out"] == 2, 5, "two timeouts")
        assert await _closed_by_peer(silent, half)
        # The one that sent a whole packet stays (its idle bound is IDLE, much longer).
        assert len(servers.connections) == 1
        assert not _closed_now(working)
    finally:
        for s in (silent, half, working):
            s.close()


async def test_web_connections_are_bounded_and_half_sent_requests_time_out(director: Director):
    gate = director.web.gate
    gate.total, gate.per_host, gate.request_timeout = 6, 4, 0.3
    port = director.web.port
    held = [await asyncio.to_thread(_connect, port) for _ in range(5)]
    held[0].sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
    try:
        await async_wait_for(lambda: gate.counts["refused"] == 1, what="a refusal")
        await async_wait_for(lambda: gate.counts["timed_out"] == 4, 5, "four timeouts")
        assert await _all_closed(held)
        # A whole request is answered as before.
        fresh = await asyncio.to_thread(_connect, port)
        held.append(fresh)
        fresh.sendall(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        fresh.settimeout(5)
        assert (await asyncio.to_thread(fresh.recv, 4096)).startswith(b"HTTP/1.1 200")
    finally:
        for s in held:
            s.close()


# --- a real flood against a real director with a default descriptor limit ---

SHOW = """
[director]
allow = ["127.0.0.1"]

[[clients]]
name = "Playout1"
ip = "127.0.0.11"
outputs = ["Output 1"]

[modules.Router]
type = "tcp"
host = "127.0.0.1"
port = {router_port}
"""


class Router:
    """A TCP device the director's `tcp` module keeps a connection to."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.received = bytearray()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            self.received += data

    def drop(self, conn: socket.socket) -> None:
        conn.shutdown(socket.SHUT_RDWR)  # a FIN now, though a thread waits in recv()
        conn.close()

    def close(self) -> None:
        self.server.close()
        for c in self.connections:
            if c.fileno() != -1:
                self.drop(c)


def _flood(port: int) -> list[socket.socket]:
    """FLOOD connections at once that then send nothing, from FLOOD_HOSTS."""
    socks = []
    for i in range(FLOOD):
        s = socket.socket()
        s.setblocking(False)
        s.bind((FLOOD_HOSTS[i % len(FLOOD_HOSTS)], 0))
        s.connect_ex(("127.0.0.1", port))  # EINPROGRESS: the kernel goes on with it
        socks.append(s)
    return socks


def _settled(s: socket.socket) -> bool:
    """The connect has ended: made, refused or reset, not still under way."""
    poll = select.poll()
    poll.register(s, select.POLLOUT)
    return bool(poll.poll(0))


def _refused(s: socket.socket) -> bool:
    """The director closed this connection: a reset, or its 503 answer and a close."""
    try:
        data = s.recv(4096)
    except BlockingIOError:
        return False  # open, or never made
    except OSError:
        return True  # reset
    return not data or data.startswith(b"HTTP/1.1 503")


def _descriptors(director: Process) -> int:
    return len(os.listdir(f"/proc/{director.proc.pid}/fd"))


SLACK = 16  # descriptors the director may open for other things while the flood goes on


def test_a_flood_of_idle_connections_leaves_the_director_its_descriptors(tmp_path: Path):
    router = Router()
    rig = Rig(tmp_path, SHOW.replace("{router_port}", str(router.port)))
    director = _director_with_1024_descriptors(rig)
    floods: list[socket.socket] = []
    try:
        loaded = director.wait_event("show.loaded", 30)
        wait_for(lambda: router.connections, 10, "the Router module to connect")
        base = _descriptors(director)
        for held, port in ((128, loaded["osc_port"]), (256, loaded["web_port"])):
            socks = _flood(port)
            floods += socks
            wait_for(lambda s=socks: sum(map(_settled, s)) > FLOOD // 2, 10, "the connects")
            # The director holds no more than its bounds (OSC, then OSC and web), give or
            # take the few files it opens meanwhile (the event log's journal, a module's
            # reconnect): far from the 1,100 the flood offers ...
            wait_for(
                lambda h=held: _descriptors(director) <= base + h + SLACK,
                10,
                f"the director to hold at most {held} connections (+{SLACK})",
            )
            # ... and closed the rest: the peer sees a reset, or the page's 503 and a close.
            wait_for(lambda s=socks: sum(map(_refused, s)) >= 100, 10, "100 closed by the director")
        director.wait_line(r"OSC TCP connection from 127\.0\.0\.\d+ refused")
        director.wait_line(r"web connection from 127\.0\.0\.\d+ refused")

        # The director still answers over UDP.
        console = Console(loaded["osc_port"])
        console.command("/pxcontrol/ping")
        asyncio.run(console.wait("/pxcontrol/pong"))
        console.close()
        # And its module can still open a connection: the router drops it, it reconnects.
        before = len(router.connections)
        router.drop(router.connections[0])
        wait_for(lambda: len(router.connections) > before, 15, "the Router module to reconnect")
        assert not [line for line in director.output if "Too many open files" in line], "\n".join(
            director.output[-80:]
        )
    finally:
        for s in floods:
            s.close()
        director.kill()
        router.close()


def _director_with_1024_descriptors(rig: Rig) -> Process:
    """A director under the common default limit (systemd, most shells); this process
    then takes room for both floods at once."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        director = Process(
            ["run", str(rig.folder), "--state", str(rig.state), "--json-events"], rig.env
        )
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(2 * FLOOD + 500, hard)), hard))
    return director


# --- wrong tokens on the page ---


async def test_token_guessing_waits_longer_each_time_and_the_right_one_works_after(tmp_path):
    director = await start(tmp_path, 'token = "sesame"')
    clock = Clock()
    director.web.access.attempts = Attempts("token", logging.getLogger("pxcontrol.web"), clock)
    url = f"http://127.0.0.1:{director.web.port}/api/status"

    async def get(token: str | None = None, cookie: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        cookies = {COOKIE: cookie} if cookie else {}
        async with httpx.AsyncClient(cookies=cookies, timeout=5) as client:
            return await client.get(url, headers=headers)

    try:
        for _ in range(FREE):
            assert (await get("guess")).status_code == 403
        refused = await get("sesame")  # the right one is not heard while the host waits
        assert refused.status_code == 429
        assert refused.json()["message"] == "too many wrong tokens from 127.0.0.1: try again in 2 s"
        assert (await get(cookie=director.web.access.session)).status_code == 200  # a session
        clock.now += WAIT
        assert (await get("guess")).status_code == 403
        assert (await get("sesame")).json()["message"].endswith("try again in 4 s")
        clock.now += 4
        assert (await get("sesame")).status_code == 200
        assert (await get("guess")).status_code == 403  # a fresh count after the right one
    finally:
        await director.stop()
