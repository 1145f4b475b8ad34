"""A Blackmagic Videohub stand-in for the demo show and the tests.

It speaks the Videohub Ethernet protocol (2.8) on TCP the way the hardware
does: the status dump on connect, routing, labels and output locks, ACK or
NAK for every request, every change pushed to every connected client, and a
route to an output that another client has locked acknowledged and then not
made. Locks belong to the client's IP address, as on the hardware: a second
connection from the same address owns the same locks.

Run it on its own::

    python -m pxcontrol_videohub.emulator --port 9990 --inputs 12 --outputs 12

or in-process (tests)::

    async with VideohubEmulator(inputs=12, outputs=12) as hub:
        ...  # hub.port, hub.routing, hub.route(...), hub.drop_connections()

Numbers in this class are the protocol's: 0-based. The router's front panel,
its software and the `videohub` module count from 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger("pxcontrol_videohub.emulator")

PROTOCOL_VERSION = "2.8"
FRONT_PANEL = "front panel"

ROUTING = "VIDEO OUTPUT ROUTING:"
LOCKS = "VIDEO OUTPUT LOCKS:"
INPUT_LABELS = "INPUT LABELS:"
OUTPUT_LABELS = "OUTPUT LABELS:"
PREAMBLE = "PROTOCOL PREAMBLE:"
DEVICE = "VIDEOHUB DEVICE:"


@dataclass(eq=False)
class _Client:
    writer: asyncio.StreamWriter
    address: str  # the peer's IP address: the hardware keeps locks per address
    #: While the status dump is being written (in pieces), what else is for this client
    #: waits here: a client's stream is whole blocks, and the dump comes first.
    held: list[str] | None = None

    def send(self, text: str) -> None:
        if self.held is not None:
            self.held.append(text)
        elif not self.writer.is_closing():
            self.writer.write(text.encode())


class VideohubEmulator:
    """An emulated Videohub router on `host:port` (port 0 picks a free one)."""

    def __init__(
        self,
        inputs: int = 12,
        outputs: int = 12,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        model: str | None = None,
        input_labels: Sequence[str] = (),
        output_labels: Sequence[str] = (),
    ) -> None:
        if inputs < 1 or outputs < 1:
            raise ValueError("a router needs at least one input and one output")
        self.host = host
        self.port = port
        self.model = model or f"Smart Videohub {inputs}x{outputs} (pxcontrol emulator)"
        self.input_labels = [_label(input_labels, n, "Input") for n in range(inputs)]
        self.output_labels = [_label(output_labels, n, "Output") for n in range(outputs)]
        self.routing = [n % inputs for n in range(outputs)]
        #: Who holds each output's lock: an IP address, FRONT_PANEL, or None.
        self.lock_owners: list[str | None] = [None] * outputs
        #: Failure knob: False reads and ignores everything (no dump, no ACK, no pushes).
        self.answering = True
        #: Failure knob: write the dump in this many pieces, `split_pause` seconds apart.
        self.split_dump = 1
        self.split_pause = 0.05
        #: Failure knob: False is a Videohub Server with no router attached. A client that
        #: connects gets the preamble and `Device present: false`, nothing more, and every
        #: request but PING is NAKed.
        self.device_present = True
        #: Firmware knob: True NAKs a route block that includes an output another client
        #: locked (and changes nothing), as some Videohub Servers do; the default ACKs it
        #: and leaves the output as it was, as the routers do.
        self.nak_locked_routes = False
        self._clients: set[_Client] = set()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def inputs(self) -> int:
        return len(self.input_labels)

    @property
    def outputs(self) -> int:
        return len(self.output_labels)

    @property
    def clients(self) -> list[str]:
        """The address of every connected client."""
        return [client.address for client in self._clients]

    # --- lifecycle ---

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.drop_connections()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=1.0)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> VideohubEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- what happens at the router itself (front panel, failures) ---

    def drop_connections(self) -> None:
        """Cut every client off at once, as a router that reboots or loses its link does."""
        for client in list(self._clients):
            client.writer.transport.abort()
        self._clients.clear()

    def route(self, output: int, input: int) -> None:
        """Route from the front panel (locks do not stop the panel); every client hears it."""
        self.routing[output] = input
        log.info("%s %d %d from the front panel", ROUTING, output, input)
        self._push(ROUTING, lambda _: [f"{output} {input}"])

    def lock(self, output: int, owner: str = FRONT_PANEL) -> None:
        """Lock an output for `owner` (an address, or the front panel): others cannot route it."""
        self.lock_owners[output] = owner
        self._push_locks([output])

    def unlock(self, output: int) -> None:
        self.lock_owners[output] = None
        self._push_locks([output])

    def set_label(self, kind: str, index: int, label: str) -> None:
        """Rename an input (`kind="input"`) or an output (`kind="output"`)."""
        labels, header = self._labels(kind)
        labels[index] = label
        self._push(header, lambda _: [f"{index} {label}"])

    def dump(self, address: str) -> str:
        """The status dump a client at `address` gets when it connects."""
        if not self.device_present:
            return self._block(PREAMBLE, address) + self._block(DEVICE, address)
        return "".join(
            [
                self._block(PREAMBLE, address),
                self._block(DEVICE, address),
                self._block(INPUT_LABELS, address),
                self._block(OUTPUT_LABELS, address),
                self._block(LOCKS, address),
                self._block(ROUTING, address),
                "CONFIGURATION:\nTake Mode: false\n\n",
                "END PRELUDE:\n\n",
            ]
        )

    # --- the protocol ---

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = _Client(writer, writer.get_extra_info("peername")[0])
        self._clients.add(client)
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            if self.answering:
                await self._send_dump(client)
            buffer = b""
            while data := await reader.read(65536):
                if not self.answering:
                    buffer = b""
                    continue
                buffer = (buffer + data).replace(b"\r\n", b"\n")
                while b"\n\n" in buffer:
                    raw, buffer = buffer.split(b"\n\n", 1)
                    text = raw.decode("utf-8", "replace").strip("\n")
                    if text.strip():
                        self._handle(client, text)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._clients.discard(client)
            self._handlers.discard(handler)
            writer.close()

    async def _send_dump(self, client: _Client) -> None:
        data = self.dump(client.address).encode()
        pieces = max(1, self.split_dump)
        size = -(-len(data) // pieces)
        client.held = []  # changes after this snapshot follow it, never split it
        try:
            for start in range(0, len(data), size):
                if start:
                    await asyncio.sleep(self.split_pause)  # so the client reads each piece alone
                client.writer.write(data[start : start + size])
                await client.writer.drain()
        finally:
            held, client.held = client.held, None
            if held:
                client.send("".join(held))

    def _handle(self, client: _Client, text: str) -> None:
        header, *lines = (line.strip() for line in text.split("\n"))
        body = [line for line in lines if line]
        if header == "PING:" and not body:
            client.send("ACK\n\n")
        elif not self.device_present and not body and header in (PREAMBLE, DEVICE):
            client.send("ACK\n\n" + self._block(header, client.address))
        elif not self.device_present:
            self._nak(client, header, body)  # no router to read or change
        elif not body and header in (PREAMBLE, DEVICE, INPUT_LABELS, OUTPUT_LABELS, LOCKS, ROUTING):
            client.send("ACK\n\n" + self._block(header, client.address))  # a status request
        elif header == ROUTING:
            self._set_routing(client, body)
        elif header == LOCKS:
            self._set_locks(client, body)
        elif header in (INPUT_LABELS, OUTPUT_LABELS):
            self._set_labels(client, header, body)
        else:
            self._nak(client, header, body)

    def _set_routing(self, client: _Client, body: list[str]) -> None:
        routes = _indexed(body, self.outputs, lambda v: v.isdigit() and int(v) < self.inputs)
        if routes is None:
            self._nak(client, ROUTING, body)
            return
        locked = [o for o, _ in routes if self.lock_owners[o] not in (None, client.address)]
        if locked and self.nak_locked_routes:
            log.info("%s %s from %s: locked, NAK", ROUTING, locked, client.address)
            client.send("NAK\n\n")
            return
        client.send("ACK\n\n")
        made = []
        for output, value in routes:
            if output in locked:
                # The hardware acknowledges this and changes nothing: only reading the
                # routing back shows that the route did not happen.
                log.info(
                    "%s %d %s from %s: locked, ignored", ROUTING, output, value, client.address
                )
                continue
            self.routing[output] = int(value)
            made.append(f"{output} {int(value)}")
            log.info("%s %d %s from %s", ROUTING, output, value, client.address)
        if made:
            self._push(ROUTING, lambda _: made)

    def _set_locks(self, client: _Client, body: list[str]) -> None:
        requests = _indexed(body, self.outputs, lambda v: v in ("O", "U", "F"))
        if requests is None:
            self._nak(client, LOCKS, body)
            return
        client.send("ACK\n\n")
        changed = []
        for output, value in requests:
            owner = self.lock_owners[output]
            if value == "F" or owner in (None, client.address):  # F forces an unlock
                self.lock_owners[output] = client.address if value == "O" else None
                changed.append(output)
                log.info("%s %d %s from %s", LOCKS, output, value, client.address)
            else:
                log.info(
                    "%s %d %s from %s: held by %s", LOCKS, output, value, client.address, owner
                )
        self._push_locks(changed)

    def _set_labels(self, client: _Client, header: str, body: list[str]) -> None:
        labels, _ = self._labels("input" if header == INPUT_LABELS else "output")
        changes = _indexed(body, len(labels), lambda v: True)
        if changes is None:
            self._nak(client, header, body)
            return
        client.send("ACK\n\n")
        for index, label in changes:
            labels[index] = label
        self._push(header, lambda _: [f"{index} {label}" for index, label in changes])

    # --- what clients are sent ---

    def _nak(self, client: _Client, header: str, body: list[str]) -> None:
        log.info("NAK to %s: %s %s", client.address, header, "; ".join(body))
        client.send("NAK\n\n")

    def _push(self, header: str, lines_for: Callable[[str], list[str]]) -> None:
        if not self.answering:
            return
        for client in list(self._clients):
            lines = lines_for(client.address)
            if lines:
                client.send(header + "\n" + "".join(f"{line}\n" for line in lines) + "\n")

    def _push_locks(self, outputs: list[int]) -> None:
        self._push(LOCKS, lambda address: [f"{o} {self._lock_letter(o, address)}" for o in outputs])

    def _lock_letter(self, output: int, address: str) -> str:
        owner = self.lock_owners[output]
        return "U" if owner is None else "O" if owner == address else "L"

    def _block(self, header: str, address: str) -> str:
        if header == PREAMBLE:
            lines = [f"Version: {PROTOCOL_VERSION}"]
        elif header == DEVICE and not self.device_present:
            lines = ["Device present: false"]
        elif header == DEVICE:
            lines = [
                "Device present: true",
                f"Model name: {self.model}",
                f"Friendly name: {self.model}",
                "Unique ID: 7C2E0DEC0DE0",
                f"Video inputs: {self.inputs}",
                "Video processing units: 0",
                f"Video outputs: {self.outputs}",
                "Video monitoring outputs: 0",
                "Serial ports: 0",
            ]
        elif header == INPUT_LABELS:
            lines = [f"{n} {label}" for n, label in enumerate(self.input_labels)]
        elif header == OUTPUT_LABELS:
            lines = [f"{n} {label}" for n, label in enumerate(self.output_labels)]
        elif header == LOCKS:
            lines = [f"{n} {self._lock_letter(n, address)}" for n in range(self.outputs)]
        else:
            lines = [f"{n} {source}" for n, source in enumerate(self.routing)]
        return header + "\n" + "".join(f"{line}\n" for line in lines) + "\n"

    def _labels(self, kind: str) -> tuple[list[str], str]:
        if kind == "input":
            return self.input_labels, INPUT_LABELS
        if kind == "output":
            return self.output_labels, OUTPUT_LABELS
        raise ValueError(f"kind must be 'input' or 'output', not {kind!r}")


def _indexed(
    body: list[str], count: int, valid: Callable[[str], bool]
) -> list[tuple[int, str]] | None:
    """`<index> <value>` lines, or None when any line is malformed or out of range."""
    items = []
    for line in body:
        index, _, value = line.partition(" ")
        value = value.strip()
        if not index.isdigit() or int(index) >= count or not valid(value):
            return None
        items.append((int(index), value))
    return items or None


def _label(given: Sequence[str], index: int, word: str) -> str:
    return given[index] if index < len(given) and given[index] else f"{word} {index + 1}"


async def _main(args: argparse.Namespace) -> None:
    hub = VideohubEmulator(
        args.inputs,
        args.outputs,
        host=args.host,
        port=args.port,
        input_labels=_split(args.input_labels),
        output_labels=_split(args.output_labels),
    )
    hub.split_dump = args.split_dump
    hub.device_present = not args.no_router
    hub.nak_locked_routes = args.nak_locked_routes
    async with hub:
        print(
            f"Videohub emulator: {hub.inputs} inputs, {hub.outputs} outputs, "
            f"listening on {hub.host}:{hub.port}"
            + ("" if hub.device_present else " as a Videohub Server with no router attached"),
            flush=True,
        )
        await asyncio.Event().wait()  # until Ctrl-C or SIGTERM


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",")] if text else []


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pxcontrol_videohub.emulator",
        description="A Blackmagic Videohub stand-in (Videohub Ethernet protocol 2.8 over TCP).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=9990, help="TCP port (0: any free one)")
    parser.add_argument("--inputs", type=int, default=12)
    parser.add_argument("--outputs", type=int, default=12)
    parser.add_argument("--input-labels", default="", help="comma-separated, from input 1 on")
    parser.add_argument("--output-labels", default="", help="comma-separated, from output 1 on")
    parser.add_argument(
        "--split-dump", type=int, default=1, help="send the status dump in this many pieces"
    )
    parser.add_argument(
        "--no-router",
        action="store_true",
        help="be a Videohub Server with no router attached (Device present: false)",
    )
    parser.add_argument(
        "--nak-locked-routes",
        action="store_true",
        help="NAK a route to an output another client locked, instead of ACK and no change",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(message)s", force=True
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
