"""The show file's structure: what `show.toml` may contain, with its defaults.

Every table forbids unknown keys, so a typo is an error that names the key
instead of a setting that silently never applies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    IPvAnyAddress,
    IPvAnyNetwork,
    PrivateAttr,
    StrictBool,
    StrictInt,
    model_validator,
)

from pxcontrol.checks.kind import DEFAULT_FALL, DEFAULT_INTERVAL, DEFAULT_RISE

IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
SHOW_MODULE = "Show"  # built into every show (pxcontrol.essential)
ACTION_REF = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)$")

# A show file says what it means: "7400" is not a port, "yes" is not a switch.
Port = Annotated[StrictInt, Field(ge=0, le=65535)]
Seconds = Annotated[float, Field(gt=0)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DirectorSettings(Strict):
    osc_port: Port = Field(7400, description="OSC bridge, UDP and TCP")
    http_port: Port = Field(7480, description="Live Systems web page")
    heartbeat_port: Port = Field(7401, description="agents report here")
    bind: IPvAnyAddress = Field(
        "127.0.0.1", description="nothing listens beyond loopback unless the show says so"
    )
    allow: list[IPvAnyNetwork] = Field(
        ["127.0.0.1"], description="addresses or networks that may send OSC commands"
    )
    secret: str | None = Field(None, description="shared secret: agents sign heartbeats (HMAC)")
    passcode: str | None = Field(
        None, description="OSC senders must send /pxcontrol/connect <passcode> first"
    )
    token: str | None = Field(
        None, description="the web page's access token; required when bind is not loopback"
    )
    action_timeout: Seconds = Field(5.0, description="time limit of an action that sets none")


class DetectionSettings(Strict):
    heartbeat_interval: Seconds = 0.1
    offline_after: Seconds = 0.5
    online_after: Seconds = 3.0
    mass_failure_guard: Annotated[float, Field(ge=0, le=1)] = 0.5
    check_interval: Seconds = Field(
        DEFAULT_INTERVAL, description="seconds between probes of each check"
    )
    check_fall: Annotated[StrictInt, Field(ge=1, le=1000)] = Field(
        DEFAULT_FALL, description="failures in a row that fail a check"
    )
    check_rise: Annotated[StrictInt, Field(ge=1, le=1000)] = Field(
        DEFAULT_RISE, description="successes in a row that recover a check"
    )

    @model_validator(mode="after")
    def _room_for_a_lost_heartbeat(self) -> DetectionSettings:
        if self.offline_after < 3 * self.heartbeat_interval - 1e-9:  # 0.3 vs 3 × 0.1
            raise ValueError(
                f"offline_after ({self.offline_after} s) must be at least 3 × heartbeat_interval "
                f"({self.heartbeat_interval} s), so one or two lost heartbeats never mark a "
                "client offline"
            )
        return self


def _action_ref(value: str) -> str:
    if not ACTION_REF.match(value):
        raise ValueError("write an action as ModuleName.ActionName, e.g. Log.Entry")
    return value


def _action_call_from_text(value: Any) -> Any:
    return {"action": value} if isinstance(value, str) else value


class ActionCall(Strict):
    """One action to run: `"Module.Action"` or `{ action = "...", args = {...}, timeout = 2 }`."""

    action: Annotated[str, AfterValidator(_action_ref)]
    args: dict[str, Any] = {}
    timeout: Seconds | None = None

    @property
    def module(self) -> str:
        return self.action.split(".", 1)[0]

    @property
    def action_name(self) -> str:
        return self.action.split(".", 1)[1]


ActionList = list[Annotated[ActionCall, BeforeValidator(_action_call_from_text)]]


class ClientDecl(Strict):
    name: Annotated[str, Field(min_length=1)]
    ip: IPvAnyAddress
    gpu: str | None = None
    outputs: list[str] = []
    live_inputs: list[str] = []
    backup_for: list[IPvAnyAddress] = Field(
        [], description="IP addresses of the playout clients this backup covers"
    )
    auto_backup: StrictBool = Field(
        False, description="take over automatically when a covered client goes offline"
    )
    on_backup: ActionList = Field([], description="actions to run when this backup takes over")
    checks: list[dict[str, Any]] = Field(
        [],
        description="probes of the show run by this client's agent, e.g. { process = "
        '"Pixera.exe" }; each kind checks its own keys (see pxcontrol.checks)',
    )

    @property
    def is_backup(self) -> bool:
        return bool(self.backup_for)


class ModuleDecl(BaseModel):
    """`type` names the module type; every other key is that type's settings, checked by it."""

    model_config = ConfigDict(extra="allow")
    type: str

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class MappingDecl(Strict):
    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\[\]]+$")] | None = Field(
        None, description="how traces, the log and the page call it (default mappings[N])"
    )
    on: Annotated[str, Field(min_length=1, description="event kind, `*` patterns allowed")]
    client: str | None = None
    backup: str | None = None
    reason: str | None = None
    do: Annotated[ActionList, Field(min_length=1)]
    parallel: StrictBool = False
    stop_on_error: StrictBool = False
    replay_on_recovery: StrictBool = Field(
        False,
        description="on backup.activated/backup.moved: if the director stopped before these "
        "actions were confirmed, run them again, once, when it restarts (safe for a router "
        "salvo, not for a cue)",
    )


class FeedbackTarget(Strict):
    """A console that always receives the status pushes, e.g. its fixed IP and OSC port."""

    host: str
    port: Annotated[StrictInt, Field(ge=1, le=65535)]
    protocol: Literal["udp", "tcp"] = "udp"
    framing: Literal["slip", "length"] = Field(
        "slip",
        description="TCP only: slip (OSC 1.1: osc.js, QLab) or length (OSC 1.0: liblo, Eos by default)",
    )


class OscSettings(Strict):
    feedback: list[FeedbackTarget] = Field([], description="permanent receivers of pushes")
    action_rate: Annotated[float, Field(gt=0)] = Field(
        2000.0,
        description="/pxcontrol/action messages a second one sender host may send, sustained",
    )
    action_burst: Annotated[int, Field(ge=1)] = Field(
        500, description="/pxcontrol/action messages one sender host may send at once"
    )
    command_rate: Annotated[float, Field(gt=0)] = Field(
        500.0, description="other commands (backup, ping, status …) a second per sender host"
    )
    command_burst: Annotated[int, Field(ge=1)] = Field(
        200, description="other commands one sender host may send at once"
    )


class DirectorDecl(Strict):
    """A director that may hold the show (only with standby directors): `run --as NAME`."""

    name: Annotated[str, Field(pattern=IDENTIFIER, description="as `pxcontrol run --as` names it")]
    ip: IPvAnyAddress = Field(description="where consoles, agents and pages reach this director")
    bind: IPvAnyAddress | None = Field(None, description="instead of director.bind")
    osc_port: Port | None = Field(None, description="instead of director.osc_port")
    http_port: Port | None = Field(None, description="instead of director.http_port")
    heartbeat_port: Port | None = Field(None, description="instead of director.heartbeat_port")


def _etcd_url(value: str) -> str:
    if not re.match(r"^https?://[^/:]+:\d+/?$", value):
        raise ValueError(
            f"write an etcd endpoint as http://HOST:PORT (its client URL, e.g. "
            f'"http://10.0.0.1:2379"), not {value!r}'
        )
    return value


def _whole_seconds(value: float) -> float:
    if value != int(value):
        raise ValueError(f"etcd counts leases in whole seconds: write {max(1, round(value))}")
    return value


class RedundancySettings(Strict):
    """The etcd cluster that elects the director in charge (with [[directors]])."""

    etcd: list[Annotated[str, AfterValidator(_etcd_url)]] = Field(
        [], description="client URLs of the etcd members; three or more survive one lost"
    )
    lease: Annotated[float, Field(ge=1, le=60), AfterValidator(_whole_seconds)] = Field(
        1.0, description="seconds; the active director is out of charge a quarter before"
    )
    key: Annotated[str, Field(pattern=r"^[A-Za-z0-9_./-]+$")] = Field(
        "pxcontrol/director", description="the etcd key of the election (one per show)"
    )


@dataclass
class _ClientIndex:
    clients: list[ClientDecl]
    count: int
    by_name: dict[str, ClientDecl]
    backups: dict[Any, list[ClientDecl]]

    @classmethod
    def of(cls, clients: list[ClientDecl]) -> _ClientIndex:
        by_name: dict[str, ClientDecl] = {}
        backups: dict[Any, list[ClientDecl]] = {}
        for client in clients:
            by_name.setdefault(client.name, client)  # the first, as a scan would find
            for ip in dict.fromkeys(client.backup_for):
                backups.setdefault(ip, []).append(client)
        return cls(clients, len(clients), by_name, backups)


class ShowFile(Strict):
    director: DirectorSettings = DirectorSettings()
    osc: OscSettings = OscSettings()
    detection: DetectionSettings = DetectionSettings()
    clients: list[ClientDecl] = []
    modules: dict[Annotated[str, Field(pattern=IDENTIFIER)], ModuleDecl] = {}
    mappings: list[MappingDecl] = []
    # When invalid list entries were left out (a show checked in one pass despite them):
    # "clients"/"mappings" → the place in the file of each entry kept.
    _in_file: dict[str, list[int]] = PrivateAttr(default_factory=dict)
    directors: list[DirectorDecl] = Field(
        [], description="only with standby directors; without it: one director, SQLite"
    )
    redundancy: RedundancySettings | None = None

    def director_named(self, name: str) -> DirectorDecl | None:
        return next((d for d in self.directors if d.name == name), None)

    def client(self, name: str) -> ClientDecl | None:
        return self._index().by_name.get(name)

    def in_file(self, key: str, index: int) -> int:
        """The place in the file of entry `index` of this list (`clients`, `mappings`):
        the same unless invalid entries before it were left out."""
        kept = self._in_file.get(key)
        return kept[index] if kept is not None and index < len(kept) else index

    def left_out(self, places: dict[str, list[int]]) -> ShowFile:
        """Say where in the file each kept entry of these lists was; returns self."""
        self._in_file = places
        return self

    def backups_of(self, ip: Any) -> list[ClientDecl]:
        """The clients whose backup_for lists this address, in the show's order."""
        return list(self._index().backups.get(ip, ()))

    def index_clients(self) -> None:
        """Build the lookups by name and by covered address now: a show loading in its own
        thread does, so the event loop does not on its first lookup after a reload."""
        self._index()

    def covered(self) -> list[ClientDecl]:
        """The clients that some backup covers, in the show's order."""
        backups = self._index().backups
        return [c for c in self.clients if c.ip in backups]

    @cached_property
    def _client_index(self) -> _ClientIndex:
        return _ClientIndex.of(self.clients)

    def _index(self) -> _ClientIndex:
        # Looked up per client by the checks, the backup manager and the status: a scan
        # each time made a 10,000-client show quadratic. Rebuilt if the list was replaced.
        index = self._client_index
        if index.clients is not self.clients or index.count != len(self.clients):
            del self.__dict__["_client_index"]
            index = self._client_index
        return index

    def checks_for(self, name: str) -> list[dict[str, Any]]:
        """A client's checks as its agent is told them: [detection]'s defaults filled in."""
        client = self.client(name)
        if client is None:
            return []
        detection = self.detection
        defaults = {
            "interval": detection.check_interval,
            "fall": detection.check_fall,
            "rise": detection.check_rise,
        }
        return [{**defaults, **check} for check in client.checks]

    @property
    def all_modules(self) -> dict[str, ModuleDecl]:
        """The declared modules and the built-in `Show` module every show has."""
        return {**self.modules, SHOW_MODULE: ModuleDecl(type="show")}
