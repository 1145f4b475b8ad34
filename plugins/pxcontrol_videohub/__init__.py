"""The `videohub` module type: a Blackmagic Videohub router, every change confirmed by read-back.

The Videohub Ethernet protocol (TCP 9990) is plain text in blocks: a header
line ending in `:`, `<index> <value>` lines, a blank line. The router sends its
whole state when a client connects, pushes every change (from any client or its
front panel) to every client, and answers each request block with `ACK` or
`NAK`. An `ACK` only says the request was understood: a route to an output that
another client has locked is acknowledged and not made. So a change counts as
done only when the router's own status shows it.

The protocol counts inputs and outputs from 0; this module, like the router's
front panel and software, counts from 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
from collections import deque
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from pxcontrol import Backoff, Module, ModuleStatus, action, hookimpl

PREAMBLE = "PROTOCOL PREAMBLE:"
DEVICE = "VIDEOHUB DEVICE:"
INPUT_LABELS = "INPUT LABELS:"
OUTPUT_LABELS = "OUTPUT LABELS:"
LOCKS = "VIDEO OUTPUT LOCKS:"
ROUTING = "VIDEO OUTPUT ROUTING:"
END_PRELUDE = "END PRELUDE:"

#: Lock letters as the router sends them, from the receiving client's point of view.
LOCK_STATES = {"O": "owned", "L": "locked", "U": "unlocked"}

# A router that never ends a block must not fill the director's memory.
MAX_BLOCK = 1 << 20

OutputRef = Annotated[
    Annotated[int, Field(ge=1)] | str,
    Field(description="output number as printed on the router (from 1), or its label"),
]
InputRef = Annotated[
    Annotated[int, Field(ge=1)] | str,
    Field(description="input number as printed on the router (from 1), or its label"),
]


class SalvoRoute(BaseModel):
    """One route of a salvo written as a table: `{ output = 1, input = "Cam 2" }`."""

    model_config = ConfigDict(extra="forbid")

    output: OutputRef
    input: InputRef


def _as_table(value: object) -> object:
    """`[output, input]` → `{output, input}`: a salvo may write its routes either way."""
    if isinstance(value, list | tuple):
        if len(value) != 2:
            raise ValueError(
                f"a route is [output, input] or {{ output = …, input = … }}; got {list(value)!r}"
            )
        return {"output": value[0], "input": value[1]}
    return value


_PORT_SCHEMA = {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string"}]}
RouteItem = Annotated[
    SalvoRoute,
    BeforeValidator(_as_table),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "array", "prefixItems": [_PORT_SCHEMA] * 2, "minItems": 2, "maxItems": 2},
                {
                    "type": "object",
                    "properties": {"output": _PORT_SCHEMA, "input": _PORT_SCHEMA},
                    "required": ["output", "input"],
                    "additionalProperties": False,
                },
            ]
        }
    ),
]


@dataclass(eq=False)
class _Request:
    """A request block sent to the router, waiting for its ACK or NAK (the router answers in order)."""

    future: asyncio.Future[bool]
    #: For a status request: the block that follows the ACK and completes the answer.
    answer: str | None = None


@dataclass(eq=False)
class _Watch:
    """Values a change waits to see in the router's status blocks of one kind."""

    header: str
    wanted: dict[int, str]
    seen: set[int] = field(default_factory=set)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def update(self, values: dict[int, str]) -> None:
        self.seen.update(i for i, value in values.items() if self.wanted.get(i) == value)
        if len(self.seen) == len(self.wanted):
            self.done.set()

    @property
    def missing(self) -> list[int]:
        return [i for i in self.wanted if i not in self.seen]


class Videohub(Module):
    """A Blackmagic Videohub router: routes, salvos and locks, each confirmed by reading it back."""

    events = {
        "videohub.routed": "an output's source changed on the router, whoever changed it "
        "(fields: output, input, output_label, input_label; numbers from 1)",
        "videohub.lock": "an output's lock changed (fields: output, output_label, "
        "lock = owned, locked (by another client) or unlocked)",
    }

    class Settings(Module.Settings):
        host: str = Field(description="router's address")
        port: Annotated[int, Field(ge=1, le=65535)] = 9990
        connect_timeout: Annotated[float, Field(gt=0)] = Field(
            2.0, description="seconds to connect and receive the router's status dump"
        )
        confirm_timeout: Annotated[float, Field(gt=0)] = Field(
            1.0, description="seconds for the router to acknowledge a request and show the change"
        )
        keepalive: Annotated[float, Field(gt=0)] = Field(
            5.0,
            description="seconds between PINGs; a PING not acknowledged within confirm_timeout "
            "drops the connection",
        )

    async def start(self) -> None:
        # The router's state, 0-based as on the wire; kept across reconnects so that
        # what changed while the connection was down raises events.
        self.protocol_version = ""
        self.device: dict[str, str] = {}
        self.input_labels: dict[int, str] = {}
        self.output_labels: dict[int, str] = {}
        self.routing: dict[int, int] = {}
        self.locks: dict[int, str] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._ready = asyncio.Event()  # the status dump of this connection is in
        self._dumped: set[str] = set()
        self._requests: deque[_Request] = deque()
        self._answers: dict[str, list[_Request]] = {}  # ACKed status requests, by block
        self._watches: set[_Watch] = set()
        self._broken = ""
        self.spawn(self.maintain_connection(self._session, Backoff(first=0.25, maximum=5.0)))
        self.spawn(self._keepalive())

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.close()

    # --- actions ---

    @action
    async def route(self, output: OutputRef, input: InputRef) -> str:
        """Route an input to an output; done when the router's routing shows it."""
        return await self._make_routes([(output, input)])

    @action
    async def salvo(
        self,
        routes: Annotated[
            list[RouteItem],
            Field(
                min_length=1,
                description="routes as [output, input] pairs or {output, input} tables; "
                "numbers from 1 or labels",
            ),
        ],
    ) -> str:
        """Make several routes in one request to the router and confirm them together."""
        return await self._make_routes([(route.output, route.input) for route in routes])

    @action
    async def lock(self, output: OutputRef) -> str:
        """Lock an output: other clients and panels can no longer route it; this module still can."""
        await self._connected()
        index = self._resolve("output", output)
        missing = await self._change(
            LOCKS, {index: "O"}, {index: "O"}, f"locking {self._port('output', index)}"
        )
        if missing:
            raise RuntimeError(self._why_not_locked(index, "lock"))
        return f"{self._port('output', index)} locked"

    @action
    async def unlock(
        self,
        output: OutputRef,
        force: Annotated[
            bool, Field(description="also take off a lock that another client holds")
        ] = False,
    ) -> str:
        """Unlock an output that this module (or another client, with force) locked."""
        await self._connected()
        index = self._resolve("output", output)
        request = "F" if force else "U"
        what = f"unlocking {self._port('output', index)}"
        if await self._change(LOCKS, {index: request}, {index: "U"}, what):
            raise RuntimeError(self._why_not_locked(index, "unlock"))
        return f"{self._port('output', index)} unlocked"

    async def _make_routes(self, refs: list[tuple[int | str, int | str]]) -> str:
        await self._connected()
        wanted: dict[int, int] = {}
        for output_ref, input_ref in refs:
            output, source = self._resolve("output", output_ref), self._resolve("input", input_ref)
            if output in wanted:
                raise ValueError(f"output {output + 1} appears twice in the salvo")
            wanted[output] = source
        made = ", ".join(
            f"{self._port('output', o)} ← {self._port('input', i)}" for o, i in wanted.items()
        )
        lines = {output: str(source) for output, source in wanted.items()}
        what = f"the salvo {made}" if len(wanted) > 1 else f"the route {made}"
        missing = await self._change(ROUTING, lines, lines, what)
        if not missing:
            return made
        problems = "; ".join(self._why_not_routed(output, wanted[output]) for output in missing)
        if len(wanted) > 1:
            problems = f"{len(wanted) - len(missing)} of {len(wanted)} routes made; {problems}"
        raise RuntimeError(problems)

    # --- one change, confirmed ---

    async def _change(
        self, header: str, send: dict[int, str], expect: dict[int, str], what: str
    ) -> list[int]:
        """Send one request block and wait until the router's status shows `expect`.

        Returns the indexes the router did not change (empty: all confirmed). A NAK
        or no ACK at all raises. After the ACK, the block is read back: an index
        that is still different and locked by another client fails at once, as the
        router will never change it; any other waits for an update until the timeout.
        """
        timeout = self.settings.confirm_timeout
        deadline = asyncio.get_running_loop().time() + timeout
        block = header + "\n" + "".join(f"{i} {value}\n" for i, value in send.items()) + "\n"
        watch = _Watch(header, expect)
        self._watches.add(watch)  # before sending: the update may arrive with the ACK
        acknowledged = None
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    acknowledged = await self._request(block)
                    if acknowledged and not watch.done.is_set():
                        await self._request(header + "\n\n", answer=header)  # read back
            except TimeoutError:
                # A late ACK would be taken as the answer to the next request.
                self._abandon(f"no answer to {what} within {timeout:g} s")
                if acknowledged:
                    silence = f"acknowledged {what} but did not answer the read-back within"
                else:
                    silence = f"did not answer {what} within"
                raise TimeoutError(
                    f"the router {silence} {timeout:g} s{'' if acknowledged else ' (no ACK)'}; "
                    "the connection is dropped and opened again"
                ) from None
            if not acknowledged:
                raise RuntimeError(
                    f"the router refused {what} (NAK){self._why_refused(header, send)}"
                )
            if any(self.locks.get(i) != "L" for i in watch.missing):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(deadline):
                        await watch.done.wait()
            return watch.missing
        finally:
            self._watches.discard(watch)

    def _why_not_routed(self, output: int, source: int) -> str:
        now = self.routing.get(output)
        shows = f"it still shows {self._port('input', now)}" if now is not None else "no routing"
        if self.locks.get(output) == "L":
            return (
                f"{self._port('output', output)} is locked by another client: the router "
                f"acknowledged the route but did not make it ({shows})"
            )
        return (
            f"{self._port('output', output)}: the router acknowledged the route to "
            f"{self._port('input', source)} but did not confirm it within "
            f"{self.settings.confirm_timeout:g} s ({shows})"
        )

    def _why_not_locked(self, output: int, verb: str) -> str:
        if self.locks.get(output) == "L":
            return (
                f"{self._port('output', output)} is locked by another client: the router "
                f"acknowledged the {verb} but kept their lock; Unlock with force = true takes it off"
            )
        state = LOCK_STATES.get(self.locks.get(output, ""), "unknown")
        return (
            f"{self._port('output', output)}: the router acknowledged the {verb} but did not "
            f"confirm it within {self.settings.confirm_timeout:g} s (its lock shows {state})"
        )

    def _why_refused(self, header: str, send: dict[int, str]) -> str:
        """What the module knows that explains a NAK: a number beyond the router, or a lock
        another client holds (some Videohub Servers NAK a route to a locked output)."""
        size = self._size_note(header, send)
        if size:
            return size
        locked = [
            i for i, value in send.items() if self.locks.get(i) == "L" and value != "F"
        ]  # a forced unlock is not stopped by the lock it takes off
        if not locked:
            return ""
        ports = ", ".join(self._port("output", i) for i in locked)
        verb = "is" if len(locked) == 1 else "are"
        nothing = "; nothing was changed" if len(send) > 1 else ""
        return (
            f": {ports} {verb} locked by another client{nothing}; unlock it at its owner, "
            "or with Unlock and force = true"
        )

    def _size_note(self, header: str, send: dict[int, str]) -> str:
        outputs, inputs = self._count("output"), self._count("input")
        if any(i >= outputs for i in send):
            return f": the router has {outputs} outputs"
        if header == ROUTING and any(int(value) >= inputs for value in send.values()):
            return f": the router has {inputs} inputs"
        return ""

    # --- numbers and labels ---

    def _resolve(self, kind: str, ref: int | str) -> int:
        """The 0-based index for a number from 1, or for a label (case-insensitive)."""
        if isinstance(ref, int) or ref.strip().isdigit():
            number = int(ref)
            if number < 1:
                raise ValueError(f"{kind} numbers start at 1, as on the router; got {number}")
            return number - 1
        labels = self.input_labels if kind == "input" else self.output_labels
        wanted = ref.strip().casefold()
        found = [i for i, label in sorted(labels.items()) if label.strip().casefold() == wanted]
        if len(found) == 1:
            return found[0]
        if found:
            numbers = ", ".join(str(i + 1) for i in found)
            raise LookupError(
                f"{kind} label {ref!r} is ambiguous: {kind}s {numbers}; use the number"
            )
        by_label = {label.strip().casefold(): i for i, label in sorted(labels.items())}
        near = difflib.get_close_matches(wanted, list(by_label), n=3, cutoff=0.5)
        if near:
            hint = "near matches: " + ", ".join(
                f"{labels[by_label[n]]!r} ({kind} {by_label[n] + 1})" for n in near
            )
        else:
            hint = (
                f"the router has {len(labels)} {kind}s: "
                + ", ".join(repr(label) for _, label in sorted(labels.items())[:12])
                + (", …" if len(labels) > 12 else "")
            )
        raise LookupError(f"no {kind} labelled {ref!r} on the router; {hint}")

    def _port(self, kind: str, index: int | None) -> str:
        labels = self.input_labels if kind == "input" else self.output_labels
        if index is None:
            return f"no {kind}"
        name, label = f"{kind} {index + 1}", labels.get(index, "").strip()
        # The factory label ("Output 3") says nothing the number does not.
        return f"{name} ({label})" if label and label.casefold() != name else name

    def _count(self, kind: str) -> int:
        labels = self.input_labels if kind == "input" else self.output_labels
        text = self.device.get(f"video {kind}s", "")
        return int(text) if text.isdigit() else len(labels)

    # --- the connection ---

    async def _session(self) -> None:
        """One connection: the status dump, then the router's updates until it drops."""
        host, port = self.settings.host, self.settings.port
        async with asyncio.timeout(self.settings.connect_timeout):
            reader, writer = await asyncio.open_connection(host, port)
        self._writer, self._broken = writer, ""
        self._dumped.clear()
        try:
            await self._receive(reader)
        finally:
            self._ready.clear()
            self._writer = None
            lost = ConnectionError("the connection to the router was lost")
            for request in [*self._requests, *(r for rs in self._answers.values() for r in rs)]:
                if not request.future.done():
                    request.future.set_exception(lost)
            self._requests.clear()
            self._answers.clear()
            writer.close()
        if self._broken:
            raise ConnectionError(self._broken)

    async def _receive(self, reader: asyncio.StreamReader) -> None:
        dump_by = asyncio.get_running_loop().time() + self.settings.connect_timeout
        buffer = b""
        while True:
            if self._ready.is_set():
                chunk = await reader.read(65536)
            else:
                try:
                    async with asyncio.timeout_at(dump_by):
                        chunk = await reader.read(65536)
                except TimeoutError:
                    raise ConnectionError(
                        f"no status dump from {self.settings.host}:{self.settings.port} within "
                        f"{self.settings.connect_timeout:g} s: is it a Videohub?"
                    ) from None
            if not chunk:
                return
            # Blocks end with a blank line; the dump may arrive in any number of reads.
            *blocks, buffer = (buffer + chunk).replace(b"\r\n", b"\n").split(b"\n\n")
            if len(buffer) > MAX_BLOCK:
                raise ConnectionError("the router sent a block that never ends")
            was_ready = self._ready.is_set()
            for block in blocks:
                text = block.decode("utf-8", "replace").strip("\n")
                if text:
                    self._apply(text)
            if self._ready.is_set() and not was_ready:
                self.set_status(ModuleStatus.OK, self._describe())

    def _apply(self, text: str) -> None:
        """Take one block from the router into the module's state."""
        header, *lines = text.split("\n")
        header = header.strip()
        if header in ("ACK", "NAK"):
            self._answered(header == "ACK")
            return
        values = _indexed(lines)
        if header == PREAMBLE:
            self.protocol_version = _fields(lines).get("version", "")
        elif header == DEVICE:
            self.device.update(_fields(lines))
            self._check_router_present()
        elif header == INPUT_LABELS:
            self.input_labels.update(values)
        elif header == OUTPUT_LABELS:
            self.output_labels.update(values)
        elif header == LOCKS:
            self._update_locks(values)
        elif header == ROUTING:
            self._update_routing(values)
        elif header != END_PRELUDE:
            self.log.debug("ignoring the router's %r block", header)
        self._dumped.add(header)
        if END_PRELUDE in self._dumped or {DEVICE, ROUTING} <= self._dumped:
            # Older firmware ends the dump without END PRELUDE; device and routing suffice.
            self._ready.set()
        for watch in self._watches:
            if watch.header == header:
                watch.update(values)
        for request in self._answers.pop(header, []):
            if not request.future.done():
                request.future.set_result(True)

    def _check_router_present(self) -> None:
        """A Videohub Server (a computer or a Videohub with the router on USB) answers even
        with no router attached, and then sends no routing: say so, and try again later."""
        present = self.device.get("device present", "true").lower()
        if present == "true":
            return
        where = f"{self.settings.host}:{self.settings.port}"
        if present == "needs_update":
            raise ConnectionError(
                f"the Videohub Server at {where} reports that its router needs a firmware "
                "update (Device present: needs_update): update it with Blackmagic Videohub Setup"
            )
        raise ConnectionError(
            f"the Videohub Server at {where} reports no router attached (Device present: "
            f"{present}): connect the router to it and power it on; the module keeps trying"
        )

    def _answered(self, acknowledged: bool) -> None:
        if not self._requests:
            self.log.debug("the router sent an ACK or NAK nobody asked for")
            return
        request = self._requests.popleft()
        if acknowledged and request.answer is not None:
            self._answers.setdefault(request.answer, []).append(request)  # done with its block
        elif not request.future.done():
            request.future.set_result(acknowledged)

    def _update_routing(self, values: dict[int, str]) -> None:
        for output, text in values.items():
            if not text.isdigit():
                continue
            before, self.routing[output] = self.routing.get(output), int(text)
            if before is not None and before != int(text):
                self.emit(
                    "videohub.routed",
                    output=output + 1,
                    input=int(text) + 1,
                    output_label=self.output_labels.get(output, ""),
                    input_label=self.input_labels.get(int(text), ""),
                )

    def _update_locks(self, values: dict[int, str]) -> None:
        for output, letter in values.items():
            before, self.locks[output] = self.locks.get(output), letter
            if before is not None and before != letter:
                self.emit(
                    "videohub.lock",
                    output=output + 1,
                    output_label=self.output_labels.get(output, ""),
                    lock=LOCK_STATES.get(letter, letter),
                )

    async def _request(self, block: str, answer: str | None = None) -> bool:
        """Send a block; True on ACK (and, for a status request, once its answer is in)."""
        writer = self._writer
        if writer is None or not self._ready.is_set():
            raise ConnectionError("the connection to the router was lost")
        request = _Request(asyncio.get_running_loop().create_future(), answer)
        self._requests.append(request)
        writer.write(block.encode())
        with contextlib.suppress(ConnectionError):
            await writer.drain()  # a lost connection fails the request in _session()
        return await request.future

    async def _connected(self) -> None:
        where = f"{self.settings.host}:{self.settings.port}"
        await self.wait_connected(self._ready, self.settings.connect_timeout, where)

    def _abandon(self, reason: str) -> None:
        """Drop the connection; the session reports `reason` and maintain_connection reconnects."""
        if self._writer is not None and not self._broken:
            self._broken = reason
            self._writer.transport.abort()

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.settings.keepalive)
            if not self._ready.is_set():
                continue
            try:
                async with asyncio.timeout(self.settings.confirm_timeout):
                    await self._request("PING:\n\n")
            except TimeoutError:
                self._abandon(
                    f"the router did not answer PING within {self.settings.confirm_timeout:g} s"
                )
            except ConnectionError:
                pass  # the session reports it and reconnects

    def _describe(self) -> str:
        model = self.device.get("model name", "Videohub")
        inputs, outputs = self._count("input"), self._count("output")
        return (
            f"{model}: {inputs} inputs, {outputs} outputs, protocol {self.protocol_version or '?'}"
        )


def _indexed(lines: list[str]) -> dict[int, str]:
    """`<index> <value>` lines; the value may hold spaces (labels). Other lines are skipped."""
    values = {}
    for line in lines:
        index, _, value = line.strip().partition(" ")
        if index.isdigit():
            values[int(index)] = value.strip()
    return values


def _fields(lines: list[str]) -> dict[str, str]:
    """`Key: value` lines, with keys in lower case."""
    found = {}
    for line in lines:
        key, sep, value = line.partition(":")
        if sep:
            found[key.strip().lower()] = value.strip()
    return found


@hookimpl
def register_module_types(register):
    register(Videohub)
