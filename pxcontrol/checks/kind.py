"""What a check kind is: a settings model with its kind's key, and a probe."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt

Seconds = Annotated[float, Field(gt=0)]
Count = Annotated[StrictInt, Field(ge=1, le=1000)]

#: A probe's time limit when the check sets none: min(this, 5 × interval).
TIMEOUT_CAP = 1.0
#: The show's `[detection]` defaults (`check_interval`, `check_fall`, `check_rise`), used
#: too when a declaration reaches an agent without them. Twice a second: a frozen show is
#: noticed within about a second, and five checks cost the show machine a fraction of a
#: percent of one core (bench/agent_checks.py). A process exit is noticed at once anyway.
DEFAULT_INTERVAL, DEFAULT_FALL, DEFAULT_RISE = 0.5, 2, 5


class CheckFailed(Exception):
    """A probe found the show unhealthy; the message says what, in the show's words."""


class CheckSettings(BaseModel):
    """The keys every check may carry; a kind adds its own key (e.g. `tcp`) and options."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=100)] | None = Field(
        None, description="how operators see this check (default: its kind and value)"
    )
    interval: Seconds | None = Field(None, description="seconds between probes")
    fall: Count | None = Field(None, description="failures in a row that fail the check")
    rise: Count | None = Field(None, description="successes in a row that recover it")
    timeout: Seconds | None = Field(None, description="time limit of one probe")


@dataclass
class CheckContext:
    """What the agent gives a check: its figures, and a way to fail at once."""

    #: The agent's latest `agent_performance` figures.
    figures: Callable[[], dict[str, Any]] = dict
    #: Call when the watched thing ended for certain (a process exited): the check fails
    #: now, without waiting for `fall` probes — an exit is not a slow answer.
    ended: Callable[[str], None] = field(default=lambda message: None)


class Check:
    """A check kind. Subclasses set `kind` (the key a show writes), `Settings` with a field
    of that name, and `probe()`, which returns when healthy and raises CheckFailed when not.

    A probe is cut off at its time limit (cancelled; that counts as a failure, "timed
    out"), so it may simply await.
    """

    kind: ClassVar[str] = ""
    Settings: ClassVar[type[CheckSettings]] = CheckSettings
    #: A kind whose probe has a natural length (a command) sets its own default limit.
    default_timeout: ClassVar[float | None] = None

    def __init__(self, settings: CheckSettings, context: CheckContext) -> None:
        self.settings = settings
        self.context = context

    @property
    def target(self) -> Any:
        return getattr(self.settings, self.kind)

    def describe(self) -> str:
        """The check's default name: its kind and what it watches."""
        target = self.target
        if isinstance(target, list):
            target = " ".join(map(str, target))
        return f"{self.kind} {target}"

    async def probe(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """Let go of what the check holds (sockets, watchers); called when it stops."""


def _host_port(value: Any) -> tuple[str, int]:
    if not isinstance(value, str):
        raise ValueError('write the address as "host:port", e.g. "127.0.0.1:1400"')
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError('write the address as "host:port", e.g. "127.0.0.1:1400"')
    return host.strip("[]"), int(port)


def address_text(value: Any) -> str:
    """`host:port` as written, after checking it can be split (see `split_address`)."""
    _host_port(value)
    return str(value)


def split_address(value: str) -> tuple[str, int]:
    return _host_port(value)
