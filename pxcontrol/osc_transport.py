"""OSC over UDP and TCP on one port number, both TCP framings, for consoles of every make.

TCP framing is detected per connection from its first byte: OSC 1.1 SLIP (osc.js,
TouchOSC, QLab; Eos when set to it) starts with the SLIP END byte 0xC0 (or, from
senders that leave out the leading END, straight with the packet: '/' or '#');
OSC 1.0 length-prefix framing (liblo; Eos's default) starts with the high byte of
a 32-bit length, which is 0 for any sane packet. Replies go back in the framing the
connection used.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pythonosc import slip

from pxcontrol.budgets import power_of_two
from pxcontrol.datagrams import Address, DatagramSocket

log = logging.getLogger("pxcontrol.osc")

END = slip.END[0]  # a SLIP stream (OSC 1.1) starts with END, or with the packet itself
MAX_PACKET = 65_536  # a TCP frame longer than this is garbage, not a console
RECEIVE_BUFFER = 4 * 1024 * 1024
Framing = Literal["slip", "length"]

# TCP connections are file descriptors, and the director's router module needs some
# too: a bound in all and per host; connections that send nothing are closed.
TCP_TOTAL = 128  # OSC TCP connections open at once
TCP_PER_HOST = 16  # from one sender host
FIRST_PACKET = 10.0  # seconds: a new connection must send a whole OSC packet by then
INCOMPLETE = 10.0  # seconds: a frame begun must be whole by then
IDLE = 600.0  # seconds without a packet: closed, unless it holds a subscription
SWEEP = 1.0  # seconds between looks at every connection's timers
BACKLOG = 64  # connections accepted at each wake-up before they are judged


def raise_receive_buffer(sock: socket.socket, size: int = RECEIVE_BUFFER) -> int:
    """Room for a burst of datagrams during a short stall; the kernel's default holds ~256.

    SO_RCVBUFFORCE passes the system's cap when we are allowed to (root); else
    SO_RCVBUF gets what the cap allows. Returns the size the kernel granted.
    """
    for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if option is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
            break
        except OSError:
            continue
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def frame(packet: bytes, framing: Framing) -> bytes:
    """One OSC packet for a TCP stream: SLIP (OSC 1.1, python-osc's) or length-prefixed (1.0)."""
    return slip.encode(packet) if framing == "slip" else len(packet).to_bytes(4, "big") + packet


@dataclass
class SlipDecoder:
    buffer: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[bytes]:
        packets = []
        self.buffer += data
        while (end := self.buffer.find(END)) != -1:
            raw, self.buffer = bytes(self.buffer[:end]), self.buffer[end + 1 :]
            if raw:
                packets.append(slip.decode(raw))  # a bad escape is a ValueError: closed
        if len(self.buffer) > MAX_PACKET:
            raise ValueError("SLIP frame longer than 64 KiB")
        return packets


@dataclass
class LengthDecoder:
    buffer: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[bytes]:
        packets = []
        self.buffer += data
        while len(self.buffer) >= 4:
            size = int.from_bytes(self.buffer[:4], "big")
            if size > MAX_PACKET:
                raise ValueError(f"length prefix {size} is larger than 64 KiB")
            if len(self.buffer) < 4 + size:
                break
            packets.append(bytes(self.buffer[4 : 4 + size]))
            del self.buffer[: 4 + size]
        return packets


@dataclass(frozen=True)
class Peer:
    """Who sent a packet, and how to answer them."""

    protocol: Literal["udp", "tcp"]
    host: str
    port: int
    send: Callable[[bytes], None]  # an OSC packet, framed as this peer needs

    @property
    def name(self) -> str:
        return f"osc {self.protocol} {self.host}:{self.port}"


Handler = Callable[[bytes, Peer], None]


class _UdpPeers:
    """The Peer for each sender address, made once: a console sends from the same port."""

    LIMIT = 4096  # a flood from spoofed ports must not grow this without bound

    def __init__(self, handle: Handler) -> None:
        self.handle = handle
        self.socket: DatagramSocket | None = None
        self.peers: dict[Address, Peer] = {}

    def received(self, data: bytes, address: Address) -> None:
        peer = self.peers.get(address)
        if peer is None:
            peer = self._peer(address)
        self.handle(data, peer)

    def _peer(self, address: Address) -> Peer:
        assert self.socket is not None
        sendto = self.socket.sendto
        peer = Peer("udp", address[0], address[1], lambda packet: sendto(packet, address))
        if len(self.peers) >= self.LIMIT:
            self.peers.clear()
        self.peers[address] = peer
        return peer


class _TcpConnection(asyncio.Protocol):
    def __init__(self, servers: OscServers) -> None:
        self.servers = servers
        self.handle = servers.handle
        self.decoder: SlipDecoder | LengthDecoder | None = None
        self.framing: Framing = "slip"
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.admitted = False
        self.opened = self.last_packet = self.partial_since = 0.0
        self.packets = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = Peer("tcp", host, port, self._send)
        self.opened = self.servers.clock()
        self.admitted = self.servers.admit(self)
        if not self.admitted:
            transport.abort()  # the descriptor is free at once

    def _send(self, packet: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame(packet, self.framing))

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None and self.transport is not None
        if self.decoder is None:
            if data[0] in (END, ord("/"), ord("#")):
                self.decoder, self.framing = SlipDecoder(), "slip"
            else:
                self.decoder, self.framing = LengthDecoder(), "length"
        try:
            packets = self.decoder.feed(data)
        except ValueError as exc:
            log.warning("OSC TCP %s:%s: %s; closing", self.peer.host, self.peer.port, exc)
            self.transport.close()
            return
        now = self.servers.clock()
        if packets:
            self.last_packet = now
            self.packets += len(packets)
        if not self.decoder.buffer:
            self.partial_since = 0.0
        elif packets or not self.partial_since:
            self.partial_since = now  # a new frame has begun
        for packet in packets:
            self.handle(packet, self.peer)

    def overdue(self, now: float) -> str | None:
        """Why this connection should be closed now, or None."""
        if not self.packets and now - self.opened > self.servers.first_packet:
            return f"no OSC packet within {self.servers.first_packet:g} s of connecting"
        if self.partial_since and now - self.partial_since > self.servers.incomplete:
            return f"a frame begun did not end within {self.servers.incomplete:g} s"
        if self.packets and now - self.last_packet > self.servers.idle:
            assert self.peer is not None
            if not self.servers.keep_open(self.peer):
                return f"no OSC packet for {self.servers.idle:g} s and no subscription"
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.admitted:
            self.servers.closed(self)
        self.transport = None


class OscServers:
    """A UDP socket and a TCP listener on the same port; every packet goes to `handle`.

    TCP connections are bounded (TCP_TOTAL, TCP_PER_HOST: one past the bound is
    closed as it comes) and timed (FIRST_PACKET, INCOMPLETE, IDLE); each refusal
    and each close is counted in `counts` and logged at powers of two.
    """

    def __init__(
        self,
        handle: Handler,
        on_close: Callable[[Peer], None],
        keep_open: Callable[[Peer], bool] = lambda peer: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.handle = handle
        self.on_close = on_close
        self.keep_open = keep_open  # an idle connection that must stay (it holds a subscription)
        self.clock = clock
        self.udp: DatagramSocket | None = None
        self.tcp: asyncio.Server | None = None
        self.connections: set[_TcpConnection] = set()
        self.per_host: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.receive_buffer = 0
        self.total, self.per_host_limit = TCP_TOTAL, TCP_PER_HOST
        self.first_packet, self.incomplete, self.idle = FIRST_PACKET, INCOMPLETE, IDLE
        self._sweeper: asyncio.Task[None] | None = None

    def _connection(self) -> _TcpConnection:
        return _TcpConnection(self)

    def admit(self, connection: _TcpConnection) -> bool:
        assert connection.peer is not None
        host = connection.peer.host
        if len(self.connections) >= self.total or self.per_host[host] >= self.per_host_limit:
            self.counts["tcp_refused"] += 1
            count = self.counts["tcp_refused"]
            if power_of_two(count):
                log.warning(
                    "OSC TCP connection from %s refused: %d open from that host (at most %d), "
                    "%d in all (at most %d); %d refused so far",
                    host,
                    self.per_host[host],
                    self.per_host_limit,
                    len(self.connections),
                    self.total,
                    count,
                )
            return False
        self.connections.add(connection)
        self.per_host[host] += 1
        return True

    def closed(self, connection: _TcpConnection) -> None:
        assert connection.peer is not None
        self.connections.discard(connection)
        host = connection.peer.host
        self.per_host[host] -= 1
        if self.per_host[host] <= 0:
            del self.per_host[host]
        self.on_close(connection.peer)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP)
            try:
                self.sweep()
            except Exception:  # one bad connection must not end the timers of all
                log.exception("closing overdue OSC TCP connections failed")

    def sweep(self) -> None:
        """Close every connection that overstayed a timer."""
        now = self.clock()
        for connection in list(self.connections):
            why = connection.overdue(now)
            if why is None or connection.transport is None:
                continue
            assert connection.peer is not None
            self.counts["tcp_timed_out"] += 1
            count = self.counts["tcp_timed_out"]
            level = logging.WARNING if power_of_two(count) else logging.DEBUG
            log.log(
                level,
                "OSC TCP %s:%s closed: %s (%d closed so far)",
                connection.peer.host,
                connection.peer.port,
                why,
                count,
            )
            connection.transport.abort()

    async def start(self, bind: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        for _ in range(20):  # port 0: find one number free for both UDP and TCP
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.bind((bind, port))
            chosen = sock.getsockname()[1]
            try:
                self.tcp = await loop.create_server(
                    self._connection,
                    bind,
                    chosen,
                    family=family,
                    reuse_address=True,
                    backlog=BACKLOG,
                )
            except OSError:
                sock.close()
                if port:
                    raise
                continue
            self.receive_buffer = raise_receive_buffer(sock)
            peers = _UdpPeers(self.handle)
            self.udp = peers.socket = DatagramSocket(sock, peers.received)
            self.udp.start()
            self._sweeper = loop.create_task(self._sweep(), name="osc tcp timers")
            return chosen
        raise OSError("no port free for both UDP and TCP")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.udp is not None:
            self.udp.close()
        if self.tcp is not None:
            self.tcp.close()
            for connection in list(self.connections):
                if connection.transport is not None:
                    connection.transport.close()
            await self.tcp.wait_closed()
