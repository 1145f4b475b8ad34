"""The `osc` module type: send OSC messages to a console, media server or any OSC receiver."""

from __future__ import annotations

import asyncio
import math
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError
from pythonosc.osc_message_builder import OscMessageBuilder

from pxcontrol import Module, ModuleStatus, action, hookimpl
from pxcontrol.connection import TcpConnection
from pxcontrol.osc_transport import frame

INT32 = (-(2**31), 2**31 - 1)
FLOAT32_MAX = 3.4028234663852886e38
# OSC 1.0 reserves these in an address: space and # everywhere, the rest are pattern
# characters (OSC 1.1 adds // for "any depth"). Control characters are not printable ASCII.
_NOT_IN_ADDRESS = re.compile(r"[\s#*,?\[\]{}\x00-\x1f\x7f]+")
_CHARACTER_NAMES = {" ": "a space", "\t": "a tab", "\n": "a line break", "\r": "a return"}


def _osc_value(value: int | float | str | bool) -> int | float | str | bool:
    """A value that goes out with the type the docs promise (i, f, s, T/F), or an error.

    python-osc would send an int beyond 32 bits as `h` (int64) and fail on a float beyond
    32 bits: many receivers drop an `h`, and changing the type quietly is worse.
    """
    if type(value) is int and not INT32[0] <= value <= INT32[1]:
        raise _refused(
            "osc_int_range",
            f"{value} does not fit OSC's 32-bit int (i), {INT32[0]} to {INT32[1]}: it would go "
            "out as an int64 (h), which many receivers drop; send a number in that "
            "range, or the value as a string if the receiver reads one",
        )
    if type(value) is float and math.isfinite(value) and abs(value) > FLOAT32_MAX:
        raise _refused(
            "osc_float_range",
            f"{value} does not fit OSC's 32-bit float (f), at most ±3.4e38; send a smaller number",
        )
    return value


def _osc_address(address: str) -> str:
    """An address every OSC receiver reads as a plain address, or an error saying what to change."""
    found = sorted(set("".join(_NOT_IN_ADDRESS.findall(address))))
    empty = "//" in address or (len(address) > 1 and address.endswith("/"))
    if not found and not empty:
        return address
    named = [_CHARACTER_NAMES.get(c, repr(c)) for c in found]
    if empty:
        named.append("an empty part (// or a / at the end)")
    fixed = _NOT_IN_ADDRESS.sub("_", address)
    fixed = re.sub("/{2,}", "/", fixed).rstrip("/") or "/"
    raise _refused(
        "osc_address",
        f"{address!r} is not an OSC address: it has {', '.join(named)}. OSC reserves space, "
        "#, *, ',', ?, [ ], { } and empty parts: receivers drop such a message or read it as "
        f"a pattern; write it without them, e.g. {fixed!r}, or as the receiver's manual has it",
    )


def _type_tag(value: int | float | str | bool) -> str:
    """The tag the docs promise, named here: python-osc would pick `h` for -2**31."""
    if isinstance(value, bool):
        return "T" if value else "F"
    return "i" if isinstance(value, int) else "f" if isinstance(value, float) else "s"


def _refused(kind: str, message: str) -> PydanticCustomError:
    # The text goes in as a value: braces in it are not a template.
    return PydanticCustomError(kind, "{message}", {"message": message})


OscValue = Annotated[int | float | str | bool, AfterValidator(_osc_value)]
OscAddress = Annotated[
    str,
    Field(pattern="^/", description="OSC address, e.g. /eos/cue/1/fire"),
    AfterValidator(_osc_address),
]


class Osc(Module):
    """Send OSC over UDP, or over TCP with OSC 1.1 (SLIP) or 1.0 (length-prefix) framing."""

    class Settings(Module.Settings):
        host: str = Field("127.0.0.1", description="receiver's address")
        port: Annotated[int, Field(ge=1, le=65535)] = Field(8000, description="receiver's port")
        protocol: Literal["udp", "tcp"] = "udp"
        framing: Literal["slip", "length"] = Field(
            "slip",
            description="TCP only: slip (OSC 1.1: osc.js, QLab) or length (OSC 1.0: liblo, Eos's default)",
        )
        timeout: Annotated[float, Field(gt=0)] = Field(2.0, description="seconds to connect")

    _udp: asyncio.DatagramTransport | None = None
    _tcp: TcpConnection | None = None

    async def start(self) -> None:
        if self.settings.protocol == "udp":
            loop = asyncio.get_running_loop()
            self._udp, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=(self.settings.host, self.settings.port)
            )
            self.set_status(ModuleStatus.OK)
        else:  # replies are not needed to send; reading notices a closed connection
            self._tcp = TcpConnection(
                self, self.settings.host, self.settings.port, timeout=self.settings.timeout
            )
            self._tcp.start()

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()

    @action
    async def send(
        self,
        address: OscAddress,
        args: Annotated[
            list[OscValue],
            Field(description="values: int (32-bit), float (32-bit), string, bool"),
        ] = [],  # noqa: B006
    ) -> None:
        """Send one OSC message."""
        builder = OscMessageBuilder(address)
        for value in args:
            builder.add_arg(value, _type_tag(value))
        packet = builder.build().dgram
        if self._udp is not None:
            self._udp.sendto(packet)
            return
        assert self._tcp is not None
        await self._tcp.send(frame(packet, self.settings.framing))


@hookimpl
def register_module_types(register):
    register(Osc)
