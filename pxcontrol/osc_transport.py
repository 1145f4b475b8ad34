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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pxcontrol.datagrams import Address, DatagramSocket

log = logging.getLogger("pxcontrol.osc")

END, ESC, ESC_END, ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD
MAX_PACKET = 65_536  # a TCP frame longer than this is garbage, not a console
RECEIVE_BUFFER = 4 * 1024 * 1024
Framing = Literal["slip", "length"]


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


def slip_encode(packet: bytes) -> bytes:
    body = packet.replace(bytes([ESC]), bytes([ESC, ESC_ESC])).replace(
        bytes([END]), bytes([ESC, ESC_END])
    )
    return bytes([END]) + body + bytes([END])


def frame(packet: bytes, framing: Framing) -> bytes:
    return slip_encode(packet) if framing == "slip" else len(packet).to_bytes(4, "big") + packet


@dataclass
class SlipDecoder:
    buffer: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[bytes]:
        packets = []
        self.buffer += data
        while (end := self.buffer.find(END)) != -1:
            raw, self.buffer = bytes(self.buffer[:end]), self.buffer[end + 1 :]
            if raw:
                packets.append(raw.replace(bytes([ESC, ESC_END]), bytes([END])).replace(
                    bytes([ESC, ESC_ESC]), bytes([ESC])
                ))  # fmt: skip
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
    def __init__(self, handle: Handler, on_close: Callable[[Peer], None]) -> None:
        self.handle = handle
        self.on_close = on_close
        self.decoder: SlipDecoder | LengthDecoder | None = None
        self.framing: Framing = "slip"
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = Peer("tcp", host, port, self._send)

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
        for packet in packets:
            self.handle(packet, self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None:
            self.on_close(self.peer)
        self.transport = None


class OscServers:
    """A UDP socket and a TCP listener on the same port; every packet goes to `handle`."""

    def __init__(self, handle: Handler, on_close: Callable[[Peer], None]) -> None:
        self.handle = handle
        self.on_close = on_close
        self.udp: DatagramSocket | None = None
        self.tcp: asyncio.Server | None = None
        self.connections: set[_TcpConnection] = set()
        self.receive_buffer = 0

    def _connection(self) -> _TcpConnection:
        connection = _TcpConnection(self.handle, self._closed)
        self.connections.add(connection)
        return connection

    def _closed(self, peer: Peer) -> None:
        self.connections = {c for c in self.connections if c.peer is not peer}
        self.on_close(peer)

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
            return chosen
        raise OSError("no port free for both UDP and TCP")

    async def stop(self) -> None:
        if self.udp is not None:
            self.udp.close()
        if self.tcp is not None:
            self.tcp.close()
            for connection in list(self.connections):
                if connection.transport is not None:
                    connection.transport.close()
            await self.tcp.wait_closed()
