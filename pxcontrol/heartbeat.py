"""The wire format between agents and the director: heartbeats up, placement notices and
acknowledgements down.

Both are one OSC message with a JSON string and, when the show has a secret, an
HMAC-SHA256 of exactly those bytes as a second string. Strings only: every OSC
tool can read them, and signing the JSON bytes avoids float32 round-trip traps.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pythonosc.osc_message import OscMessage, ParseError
from pythonosc.osc_message_builder import OscMessageBuilder

HEARTBEAT = "/pxcontrol/heartbeat"
PLACEMENT = "/pxcontrol/placement"
ACK = "/pxcontrol/ack"
MAX_PACKET = 60_000  # under UDP's limit; a heartbeat itself stays far below (HEARTBEAT_BUDGET)
HEARTBEAT_BUDGET = 1400  # one unfragmented datagram on any show network

M = TypeVar("M", bound=BaseModel)


class FailedCheck(BaseModel):
    """The client's first failed check (in the show's order) and why it failed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    check: str = Field(max_length=200, description="the check's name")
    message: str = Field(max_length=300, description="why it failed, for people")


class Heartbeat(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    boot: str = Field(min_length=1, max_length=64, description="new at every agent start")
    seq: int = Field(ge=0)
    interval: float = Field(gt=0, description="the agent's current send interval")
    epoch: int = Field(0, ge=0, description="newest placement epoch the agent has")
    session: str = Field(
        "", max_length=64, description="the director session that welcomed this run; '' before"
    )
    cpu: float | None = None
    memory: float | None = None
    gpu: dict[str, Any] | None = None
    extra: dict[str, Any] = {}
    failed: FailedCheck | None = Field(
        None, description="a failed check; None while every check is healthy (or none runs)"
    )
    ask: Literal[True] | None = Field(
        None, description="answer with an Ack: the agent wants to know the director is there"
    )


class Ack(BaseModel):
    """The director's word that it heard one heartbeat that asked for it (`ask`).

    An agent takes an ack only for its own run and for a heartbeat newer than the one the
    last ack it took answered: a replayed ack is no proof that the director is there.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    session: str = Field(max_length=64)
    boot: str = Field(min_length=1, max_length=64)
    seq: int = Field(ge=0)


class Placement(BaseModel):
    """What the director tells an agent: where outputs play now, as of an epoch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epoch: int = Field(ge=0)
    interval: float = Field(gt=0, description="the show's heartbeat interval")
    # playout clients whose outputs play away from home now → the client they play on
    placement: dict[str, str]
    # the outputs and live inputs this agent plays for others: playout client → names
    plays: dict[str, list[str]] = {}
    event: dict[str, Any] | None = None  # the change that made this epoch
    # The director's session (new at each director start) and the heartbeat this notice
    # answers: an agent takes the session only from an answer to its own run, newest first.
    session: str = Field("", max_length=64)
    boot: str | None = Field(None, max_length=64)
    seq: int | None = Field(None, ge=0)
    # The client's checks as the show declares them (one kind key each, plus name,
    # interval, fall, rise, timeout), with the [detection] defaults filled in.
    checks: list[dict[str, Any]] = []


class WireError(ValueError):
    """Why a packet was dropped; `reason` is the counter it goes to."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def encode(address: str, model: BaseModel, secret: bytes | None) -> bytes:
    body = model.model_dump_json(exclude_none=True)
    builder = OscMessageBuilder(address)
    builder.add_arg(body, OscMessageBuilder.ARG_TYPE_STRING)
    if secret is not None:
        builder.add_arg(sign(secret, body.encode()), OscMessageBuilder.ARG_TYPE_STRING)
    return builder.build().dgram


def decode(packet: bytes, address: str, model: type[M], secret: bytes | None) -> M:
    """The model in a packet, or WireError saying why the packet must be dropped."""
    if len(packet) > MAX_PACKET:
        raise WireError("malformed", f"packet of {len(packet)} bytes is too large")
    try:
        message = OscMessage(packet)
        params = message.params
    except (ParseError, IndexError, ValueError, TypeError) as exc:
        raise WireError("malformed", f"not an OSC message: {exc}") from None
    if message.address != address:
        raise WireError("malformed", f"unexpected address {message.address!r}")
    if not params or not isinstance(params[0], str):
        raise WireError("malformed", "missing JSON body")
    body = params[0]
    if secret is not None:
        signature = params[1] if len(params) > 1 and isinstance(params[1], str) else ""
        if not hmac.compare_digest(signature, sign(secret, body.encode())):
            raise WireError("bad_signature", "signature does not match the show's secret")
    try:
        return model.model_validate(json.loads(body))
    except (ValueError, ValidationError, RecursionError) as exc:
        raise WireError("malformed", f"invalid body: {exc}") from None


def sign(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()
