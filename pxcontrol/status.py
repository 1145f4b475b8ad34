"""What an operator sees of a running show: one snapshot for OSC, the web page and the CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from pxcontrol.director import Director


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClientStatus(Strict):
    name: str
    ip: str
    role: Literal["playout", "backup"]
    state: Literal["online", "offline", "dry"]
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


class ModuleStatusView(Strict):
    name: str
    type: str
    status: str
    message: str


class ShowStatus(Strict):
    file: str
    epoch: int
    clients: list[ClientStatus]
    modules: list[ModuleStatusView]


def snapshot(director: Director) -> ShowStatus:
    backup = director.backup
    assert backup is not None
    live = director.live
    clients = []
    for decl in director.show.clients:
        seen = live.clients.get(decl.name)
        covered_by = [b.name for b in backup.backups_for(decl)]
        why = backup.why_not_takeover(decl.name) if covered_by else "no backup covers it"
        clients.append(
            ClientStatus(
                name=decl.name,
                ip=str(decl.ip),
                role="backup" if decl.is_backup else "playout",
                state=str(live.state(decl.name)),  # type: ignore[arg-type]
                late=live.late(decl.name),
                plays_on=backup.plays_on(decl.name),
                confirmed=live.confirmations.confirmed(decl.name),
                carrying=backup.carrying(decl.name),
                backups=covered_by,
                auto_backup=backup.auto_enabled(decl.name),
                can_switch=why is None,
                why_not_switch=why or "",
                move_targets=backup.move_targets(decl.name),
                outputs=list(decl.outputs),
                live_inputs=list(decl.live_inputs),
                gpu_name=decl.gpu,
                cpu=seen.cpu if seen else None,
                memory=seen.memory if seen else None,
                gpu=seen.gpu if seen else None,
                extra=seen.extra if seen else {},
                heard_at=seen.heard_at if seen else None,
            )
        )
    modules = [
        ModuleStatusView(
            name=m.name,
            type=director.show.all_modules[m.name].type,
            status=str(m.status),
            message=m.status_message,
        )
        for m in director.app.modules.values()
    ]
    return ShowStatus(
        file=str(director.loaded.path), epoch=backup.epoch, clients=clients, modules=modules
    )
