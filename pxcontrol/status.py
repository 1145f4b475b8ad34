"""What an operator sees of a running show: one snapshot for OSC, the web page and the CLI.

The snapshot is kept, not rebuilt: `StatusBoard` holds one `ClientStatus` per
client and recomputes a row only when something about that client changed —
an event that names it or a client it shares a backup with, or a new show.
Each row is encoded to JSON once per change and shared by every page.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from pxcontrol.events import Event

if TYPE_CHECKING:
    from pxcontrol.control import ShowControl
    from pxcontrol.show import ClientDecl, ShowFile


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClientStatus(Strict):
    name: str
    ip: str
    role: Literal["playout", "backup"]
    state: Literal["online", "offline", "dry", "failed"]
    late: bool
    plays_on: str  # where this client's outputs play now (itself unless taken over)
    # False while the newest takeover or move of its outputs is announced but the client
    # that plays them now (plays_on) has not yet confirmed it in a heartbeat
    confirmed: bool
    carrying: str | None  # for a backup: the playout client whose outputs it plays now
    backups: list[str]  # the backups that cover this client
    auto_backup: bool
    can_switch: bool
    why_not_switch: str  # "" when a takeover would go ahead now
    move_targets: list[str]  # clients its outputs may move to now (online, free)
    outputs: list[str]
    live_inputs: list[str]
    gpu_name: str | None
    cpu: float | None
    memory: float | None
    gpu: dict[str, Any] | None
    extra: dict[str, Any]
    heard_at: float | None
    # while state is "failed": the check that failed and the agent's words for why
    failed_check: str | None = None
    failed_message: str | None = None


class ModuleStatusView(Strict):
    name: str
    type: str
    status: str
    message: str


class DirectorHealth(Strict):
    """The director's own health: is it judging?"""

    loop_lag_ms: float  # the event loop's worst lag within the last 10 s
    detector_tick_age_ms: float | None  # since the detector last looked at the clock
    state_queue: int  # events waiting to be written
    events_shed: int  # events the log had to drop (the disk could not keep up)
    stalls: int  # times the director found itself stopped (a pause, a clock jump)
    heartbeats: int
    kernel_stamps: bool  # heartbeats stamped by the kernel as they arrive
    restarts: int  # failed background work started again
    output_lost: int  # lines its terminal or log pipe did not take (unread, or gone)
    # With standby directors ([[directors]]); a show without them has one, always active.
    role: str = "active"  # "active" (in charge) or "standby"
    name: str = ""  # this director's name in [[directors]]
    in_charge: str = ""  # the director in charge as this one knows it; "" when none is
    in_charge_address: str = ""
    term: int = 0  # the term of the one in charge (etcd revision of its election key)
    others: list[str] = []  # the other directors the show lists


class ShowStatus(Strict):
    file: str
    epoch: int
    clients: list[ClientStatus]
    modules: list[ModuleStatusView]
    director: DirectorHealth


#: Figures that change with every heartbeat: a row is not "changed" by them alone.
FIGURES = frozenset({"cpu", "memory", "gpu", "extra", "heard_at"})

#: The performance push sends a client's figure only when it moved this far from the value
#: last sent (percentage points for cpu, memory and GPU load; frames per second for the frame
#: rate), or when it crossed the page's 90 % mark, or became known or unknown.
FIGURE_STEP = {"cpu": 2.0, "memory": 2.0, "gpu": 2.0, "fps": 1.0}
HOT = 90.0  # the page marks a figure at or above this


def client_status(director: ShowControl, decl: ClientDecl, backups: list[str]) -> ClientStatus:
    """One client's row now. `backups`: the names of the backups that cover it."""
    backup = director.backup
    assert backup is not None
    live = director.live
    seen = live.clients.get(decl.name)
    why = backup.why_not_takeover(decl.name) if backups else "no backup covers it"
    failed = live.failed(decl.name)
    return ClientStatus.model_construct(  # every field set here, from typed sources
        name=decl.name,
        ip=str(decl.ip),
        role="backup" if decl.is_backup else "playout",
        state=str(live.state(decl.name)),
        late=live.late(decl.name),
        plays_on=backup.plays_on(decl.name),
        confirmed=live.confirmations.confirmed(decl.name),
        carrying=backup.carrying(decl.name),
        backups=backups,
        auto_backup=backup.auto_enabled(decl.name),
        can_switch=why is None,
        why_not_switch=why or "",
        move_targets=backup.move_targets(decl.name) if backups else [],
        outputs=list(decl.outputs),
        live_inputs=list(decl.live_inputs),
        gpu_name=decl.gpu,
        cpu=seen.cpu if seen else None,
        memory=seen.memory if seen else None,
        gpu=seen.gpu if seen else None,
        extra=seen.extra if seen else {},
        heard_at=seen.heard_at if seen else None,
        failed_check=failed.check if failed else None,
        failed_message=failed.message if failed else None,
    )


def page_figures(cpu: float | None, memory: float | None, gpu: Any, extra: Any) -> dict:
    """The four figures the page draws, from what an agent reports."""
    load = gpu.get("load") if isinstance(gpu, dict) else None
    fps = None
    if isinstance(extra, dict):
        fps = next(
            (extra[k] for k in ("fps", "frame_rate", "framerate") if isinstance(extra.get(k), int | float)),
            None,
        )  # fmt: skip
    return {"cpu": cpu, "memory": memory, "gpu": load, "fps": fps}


def moved_beyond_step(old: dict, new: dict) -> bool:
    for key, step in FIGURE_STEP.items():
        a, b = old.get(key), new.get(key)
        if (a is None) != (b is None):
            return True
        if a is None or b is None:
            continue
        if abs(b - a) >= step or (a >= HOT) != (b >= HOT):
            return True
    return False


class Topology:
    """Who covers whom in one show: the backups of each client, and which clients share a
    backup (their rows depend on each other's state and placement)."""

    def __init__(self, show: ShowFile) -> None:
        self.show = show
        self.order = [c.name for c in show.clients]
        self.decls = {c.name: c for c in show.clients}
        by_ip = {c.ip: c.name for c in show.clients}
        self.backups: dict[str, list[str]] = {name: [] for name in self.order}
        for c in show.clients:
            for ip in c.backup_for:
                if ip in by_ip:
                    self.backups[by_ip[ip]].append(c.name)
        # Clients joined by covering: a takeover of one changes what its backup can do
        # for every other client that backup covers.
        parent = {name: name for name in self.order}

        def root(name: str) -> str:
            while parent[name] != name:
                parent[name] = parent[parent[name]]
                name = parent[name]
            return name

        for name, backups in self.backups.items():
            for b in backups:
                parent[root(b)] = root(name)
        groups: dict[str, list[str]] = {}
        for name in self.order:
            groups.setdefault(root(name), []).append(name)
        self.linked = {name: groups[root(name)] for name in self.order}


class StatusBoard:
    """The operator's view of the show, kept up to date one client at a time.

    Events mark rows stale (the clients they name, and the clients linked to those
    by a backup); `refresh()` recomputes the stale rows and reports those whose
    content changed. Performance figures are not part of a row's change: they are
    read fresh by `status()` and pushed to pages by `figures_moved()`.
    """

    def __init__(self, director: ShowControl) -> None:
        self.director = director
        self.rows: dict[str, ClientStatus] = {}
        self.encoded: dict[str, str] = {}  # the row as JSON, shared by every page
        self._keys: dict[str, str] = {}  # the row without its figures: what a change is
        self._topology: Topology | None = None
        self._stale: set[str] = set()
        self._sweep = 0
        self._unsent: set[str] = set()  # changed since the pages' feed last took them
        self.sent_figures: dict[str, dict] = {}  # what pages were last told of each client
        self.on_stale: Callable[[], None] | None = None

    # --- what makes rows stale ---

    def listen(self, event: Event) -> None:
        """Events name the clients they change: their rows are recomputed at the next refresh."""
        fields = event.fields
        names = [fields.get(key) for key in ("client", "backup", "from", "to")]
        self.touch(*(n for n in names if isinstance(n, str)))

    def touch(self, *names: str) -> None:
        """These clients' rows may have changed (with everything that shares a backup with
        them): call this for a change that raised no event."""
        topology = self._topology
        if topology is None:
            return
        for name in names:
            self._stale.update(topology.linked.get(name, ()))
        if names and self.on_stale is not None:
            self.on_stale()

    def touch_all(self) -> None:
        self._stale.update(self.rows)
        if self.on_stale is not None:
            self.on_stale()

    def sweep(self, count: int) -> None:
        """Revisit the next `count` rows in show order: a change that neither raised an event
        nor was touched still reaches the pages within one round."""
        topology = self._topology
        if topology is None or not topology.order:
            return
        order = topology.order
        for _ in range(min(count, len(order))):
            self._sweep = (self._sweep + 1) % len(order)
            self._stale.add(order[self._sweep])

    # --- reading ---

    def refresh(self) -> list[str]:
        """Recompute the stale rows; the names of those whose content changed, in show order."""
        show = self.director.show
        if self._topology is None or self._topology.show is not show:
            self._retopologise(show)
        topology = self._topology
        assert topology is not None
        if not self._stale:
            return []
        stale, self._stale = self._stale, set()
        changed = []
        for name in topology.order:
            if name not in stale:
                continue
            row = client_status(self.director, topology.decls[name], topology.backups[name])
            data = row.model_dump(mode="json")
            key = json.dumps({k: v for k, v in data.items() if k not in FIGURES})
            self.rows[name] = row
            if self._keys.get(name) != key:
                self._keys[name] = key
                self.encoded[name] = json.dumps(data)
                changed.append(name)
        self._unsent.update(changed)
        return changed

    def take_changed(self) -> set[str]:
        """The rows that changed since the last call, whoever refreshed them (the feed
        calls this; OSC and the CLI refresh too, and must not hide a change from pages)."""
        self.refresh()
        changed, self._unsent = self._unsent, set()
        return changed

    def _retopologise(self, show: ShowFile) -> None:
        self._topology = Topology(show)
        names = set(self._topology.order)
        for gone in [n for n in self.rows if n not in names]:
            for table in (self.rows, self.encoded, self._keys, self.sent_figures):
                table.pop(gone, None)
        self._stale = set(self._topology.order)

    def names(self) -> Sequence[str]:
        self.refresh()
        assert self._topology is not None
        return self._topology.order

    def client(self, name: str) -> ClientStatus | None:
        """One client's status now, figures included."""
        self.refresh()
        row = self.rows.get(name)
        return None if row is None else self._with_figures(row)

    def status(self) -> ShowStatus:
        """The whole show now, assembled from the kept rows with fresh figures."""
        clients = [self._with_figures(self.rows[n]) for n in self.names()]
        return ShowStatus.model_construct(
            file=str(self.director.loaded.path),
            epoch=self.epoch,
            clients=clients,
            modules=self.modules(),
            director=self.director.health(),
        )

    @property
    def epoch(self) -> int:
        backup = self.director.backup
        return backup.epoch if backup is not None else 0

    def modules(self) -> list[ModuleStatusView]:
        director = self.director
        declared = director.show.all_modules
        return [
            ModuleStatusView(
                name=m.name,
                type=declared[m.name].type if m.name in declared else "",
                status=str(m.status),
                message=m.status_message,
            )
            for m in director.app.modules.values()
        ]

    def _with_figures(self, row: ClientStatus) -> ClientStatus:
        seen = self.director.live.clients.get(row.name)
        if seen is None:
            return row
        return row.model_copy(
            update={
                "cpu": seen.cpu,
                "memory": seen.memory,
                "gpu": seen.gpu,
                "extra": seen.extra,
                "heard_at": seen.heard_at,
            }
        )

    # --- performance figures for pages ---

    def figures_now(self) -> dict[str, dict]:
        """Every client's figures as pages were last told them (a page that connects starts
        from these, so the pushes that follow apply to what it has)."""
        return dict(self.sent_figures)

    def figures_moved(self) -> dict[str, dict]:
        """The clients whose figures moved beyond FIGURE_STEP since pages were last told."""
        moved = {}
        for name, seen in self.director.live.clients.items():
            now = page_figures(seen.cpu, seen.memory, seen.gpu, seen.extra)
            before = self.sent_figures.get(name)
            if before is None or moved_beyond_step(before, now):
                self.sent_figures[name] = now
                moved[name] = now
        return moved


def summarise_names(names: Iterable[str], limit: int = 8) -> str:
    """A list of client names short enough to read in an alarm: the first `limit`, then how
    many more ("A, B, C and 34 more"). Plain ASCII: alarms and replies travel over OSC, and
    some consoles' libraries read nothing else."""
    names = list(names)
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[:limit])} and {len(names) - limit} more"
