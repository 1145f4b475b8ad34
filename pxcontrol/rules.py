"""The rules a show must keep beyond its structure: module types, actions, clients, backups.

Checked when the show loads, before anything runs, so a typo never waits for
showtime (an action is resolved and its arguments validated even while the
device is switched off).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from pxcontrol.catalog import Catalog
from pxcontrol.checks.kind import CheckContext
from pxcontrol.checks.kinds import CheckKinds
from pxcontrol.events import KINDS, SAMPLES, TAKEOVER_KINDS, fields_of
from pxcontrol.loader import Reporter, report_errors, report_validation_error
from pxcontrol.placeholders import fill, names_in
from pxcontrol.problems import did_you_mean
from pxcontrol.show import SHOW_MODULE, ActionCall, ClientDecl, ShowFile
from pxcontrol.standby_rules import check_standby

_NO_CONTEXT = CheckContext()  # a check made only to learn its default name


def check_show(show: ShowFile, catalog: Catalog, report: Reporter, data: dict[str, Any]) -> None:
    """Check `show` (the valid part of the file) against the rules; `data` is the whole file.

    Entries that failed validation are already reported and missing from `show`;
    references to them are not reported again.
    """
    written = _Written.of(data)
    _check_modules(show, catalog, report, data)
    module_kinds = {
        kind: text
        for decl in show.all_modules.values()
        if (mtype := catalog.get(decl.type)) is not None
        for kind, text in mtype.cls.events.items()
    }
    kinds = {**KINDS, **module_kinds}
    activated = fields_of("backup.activated")
    for i, client in enumerate(show.clients):
        for j, call in enumerate(client.on_backup):
            path = ("clients", show.in_file("clients", i), "on_backup", j)
            check_action_call(call, path, show, catalog, report, written, activated)
    named: dict[str, int] = {}
    for i, mapping in enumerate(show.mappings):
        if mapping.name is not None:
            if mapping.name in named or mapping.name.endswith(".on_backup"):
                report.error(
                    ("mappings", show.in_file("mappings", i), "name"),
                    f"another mapping is called {mapping.name!r}"
                    if mapping.name in named
                    else f"{mapping.name!r} is how a client's on_backup is called",
                    "give each mapping a name of its own",
                )
            named.setdefault(mapping.name, i)
        if not any(fnmatch.fnmatchcase(kind, mapping.on) for kind in kinds):
            report.error(
                ("mappings", show.in_file("mappings", i), "on"),
                f"no event is called {mapping.on!r}",
                did_you_mean(mapping.on, kinds) or "events: " + ", ".join(kinds),
            )
        for key in ("client", "backup"):
            name = getattr(mapping, key)
            if name is not None and show.client(name) is None and name not in written.clients:
                report.error(
                    ("mappings", show.in_file("mappings", i), key),
                    f"no client is called {name!r}",
                    did_you_mean(name, [c.name for c in show.clients]),
                )
        if mapping.replay_on_recovery and not any(
            fnmatch.fnmatchcase(kind, mapping.on) for kind in TAKEOVER_KINDS
        ):
            report.error(
                ("mappings", show.in_file("mappings", i), "replay_on_recovery"),
                f"replay_on_recovery applies to mappings on a takeover ({', '.join(TAKEOVER_KINDS)}),"
                f" not on {mapping.on!r}",
                "remove it, or map the takeover event",
            )
        fields = fields_of(mapping.on, module_kinds)
        for j, call in enumerate(mapping.do):
            path = ("mappings", show.in_file("mappings", i), "do", j)
            check_action_call(call, path, show, catalog, report, written, fields)
    _check_clients(show, report, written)
    check_client_checks(show, catalog.check_kinds, report, data)
    check_standby(show, report, data)
    if not show.director.bind.is_loopback and not show.director.token:
        report.error(
            ("director", "bind"),
            f"the director listens on {show.director.bind}, beyond this machine, but the "
            "show sets no token: anyone on the network could press its buttons",
            'set director.token = "…" (the web page asks for it), or bind = "127.0.0.1"',
        )


@dataclass(frozen=True)
class _Written:
    """Names and addresses as written in the file, valid or not."""

    clients: frozenset[str]
    ips: frozenset[str]
    modules: frozenset[str]

    @classmethod
    def of(cls, data: dict[str, Any]) -> _Written:
        clients = [c for c in data.get("clients", []) if isinstance(c, dict)]
        modules = data.get("modules", {})
        return cls(
            clients=frozenset(str(c.get("name")) for c in clients),
            ips=frozenset(str(c.get("ip")) for c in clients),
            modules=frozenset(modules) if isinstance(modules, dict) else frozenset(),
        )


def _check_modules(show: ShowFile, catalog: Catalog, report: Reporter, data: dict) -> None:
    if SHOW_MODULE in show.modules:
        report.error(
            ("modules", SHOW_MODULE),
            f"{SHOW_MODULE!r} is the built-in module every show has (Show.Wait …)",
            "give your module another name",
        )
    for name, decl in show.modules.items():
        mtype = catalog.get(decl.type)
        if mtype is None:
            known = [t.name for t in catalog]
            hint = did_you_mean(decl.type, known)
            hint = (hint + " " if hint else "") + "module types: " + ", ".join(known)
            report.error(("modules", name, "type"), f"unknown module type {decl.type!r}", hint)
            continue
        try:
            mtype.cls.Settings.model_validate(decl.settings)
        except ValidationError as exc:
            raw = data.get("modules", {}).get(name, {})
            report_validation_error(report, exc, raw, mtype.cls.Settings, ("modules", name))


def check_action_call(
    call: ActionCall,
    path: tuple,
    show: ShowFile,
    catalog: Catalog,
    report: Reporter,
    written: _Written | None = None,
    fields: tuple[str, ...] = (),
) -> None:
    """Check that an action resolves and that its arguments fit, with event fields in
    `fields` available as placeholders (validated with a sample value of each)."""
    module = call.module
    decl = show.all_modules.get(module)
    if decl is None and written is not None and module in written.modules:
        return  # the module's own entry is invalid and already reported
    if decl is None:
        report.error(
            path,
            f"{call.action}: there is no module {module!r} in this show",
            did_you_mean(module, show.modules)
            or f'declare it: [modules.{module}] with type = "..."',
        )
        return
    mtype = catalog.get(decl.type)
    if mtype is None:
        return  # already reported at the module
    spec = mtype.actions.get(call.action_name)
    if spec is None:
        hint = did_you_mean(call.action_name, mtype.actions)
        listed = ", ".join(f"{module}.{a}" for a in mtype.actions) or "none"
        report.error(
            path,
            f"{call.action}: module {module!r} (type {decl.type!r}) has no action "
            f"{call.action_name!r}",
            (hint + " " if hint else "") + f"its actions: {listed}",
        )
        return
    unknown = sorted(names_in(call.args) - set(fields))
    for name in unknown:
        hint = did_you_mean(name, fields)
        listed = ", ".join(f"{{{f}}}" for f in fields)
        report.error(
            (*path, "args"),
            f"{call.action}: {{{name}}} is not a field of this event",
            (hint + " " if hint else "") + f"fields here: {listed}",
        )
    if unknown:
        return
    samples = {f: SAMPLES.get(f, "") for f in fields}
    try:
        spec.params.model_validate(fill(call.args, samples))
    except ValidationError as exc:
        for item in exc.errors(include_url=False):
            param = item["loc"][0] if item["loc"] else None
            given = call.args.get(param) if isinstance(param, str) else None
            if isinstance(given, str) and names_in(given):
                # Say it in the show's words: what the placeholder gives, what the action takes.
                value = fill(given, samples)
                report.error(
                    (*path, "args", param),
                    f"{given!r} gives {type(value).__name__} {value!r} here: {item['msg'].lower()}",
                )
                continue
            report_errors(report, [item], call.args, spec.params, (*path, "args"))


def _check_clients(show: ShowFile, report: Reporter, written: _Written) -> None:
    seen_names: dict[str, int] = {}
    seen_ips: dict[str, int] = {}
    for i, client in enumerate(show.clients):
        if client.name in seen_names:
            report.error(
                ("clients", show.in_file("clients", i), "name"),
                f"two clients are called {client.name!r} (#{seen_names[client.name] + 1} too)",
                "client names must be unique: mappings, OSC and the web page use them",
            )
        seen_names.setdefault(client.name, i)
        ip = str(client.ip)
        if ip in seen_ips:
            report.error(
                ("clients", show.in_file("clients", i), "ip"),
                f"{ip} is also the address of client {show.clients[seen_ips[ip]].name!r}",
                "each client is one machine with its own address; backups find clients by it",
            )
        seen_ips.setdefault(ip, i)
    by_ip: dict[str, ClientDecl] = {}
    for client in show.clients:
        by_ip.setdefault(str(client.ip), client)  # a duplicate address is reported above
    for i, backup in enumerate(show.clients):
        for j, address in enumerate(backup.backup_for):
            target = by_ip.get(str(address))
            path = ("clients", show.in_file("clients", i), "backup_for", j)
            if target is None and str(address) in written.ips:
                continue  # that client's entry is invalid and already reported
            if target is None:
                report.error(
                    path,
                    f"{address} is not the address of any client in this show",
                    "declare the playout client (it may be a dry client) or fix the address; "
                    "clients: " + _some_clients(show.clients),
                )
            elif target is backup:
                report.error(path, f"{backup.name} cannot be its own backup")
            else:
                _check_pair(target, backup, ("clients", show.in_file("clients", i)), report)


#: Clients listed in a hint; a 10,000-client show would repeat them all in every error.
HINT_CLIENTS = 12


def _some_clients(clients: list[ClientDecl]) -> str:
    shown = ", ".join(f"{c.name} {c.ip}" for c in clients[:HINT_CLIENTS])
    more = len(clients) - HINT_CLIENTS
    return shown + (f" and {more} more" if more > 0 else "")


def _gpu(name: str) -> str:
    """A GPU name as compared: case and spacing are how it was typed, not another GPU."""
    return " ".join(name.lower().split())


def same_gpu(a: str, b: str) -> bool:
    """Do two GPU names name the same GPU (as the show's GPU rule compares them)?"""
    return _gpu(a) == _gpu(b)


def _check_pair(playout: ClientDecl, backup: ClientDecl, path: tuple, report: Reporter) -> None:
    if playout.gpu and backup.gpu and not same_gpu(playout.gpu, backup.gpu):
        report.error(
            (*path, "gpu"),
            f"GPU {backup.gpu!r} differs from {playout.name}'s {playout.gpu!r}",
            "a backup must have the same GPU as the clients it covers; fix the name or the pairing",
        )
    for key, label in (("outputs", "outputs"), ("live_inputs", "live inputs")):
        missing = [n for n in getattr(playout, key) if n not in getattr(backup, key)]
        if missing:
            report.warning(
                (*path, key),
                f"{playout.name}'s {label} {', '.join(map(repr, missing))} have no same-named "
                f"counterpart on {backup.name}: they will not transfer at takeover",
                f"add them to {backup.name}'s {key} or rename them to match",
            )
    if not playout.outputs and not playout.live_inputs:
        report.warning(
            ("clients",),
            f"{playout.name} declares no outputs or live inputs: a takeover would move nothing",
        )


def check_client_checks(
    show: ShowFile, kinds: CheckKinds, report: Reporter, data: dict[str, Any]
) -> None:
    """Each check names one kind this installation knows, with settings that kind accepts."""
    for i, client in enumerate(show.clients):
        names: dict[str, int] = {}
        for j, declaration in enumerate(client.checks):
            path = ("clients", show.in_file("clients", i), "checks", j)
            found = kinds.kind_of(declaration)
            if not found:
                keys = ", ".join(map(repr, declaration)) or "no keys"
                hints = [h for k in declaration if (h := did_you_mean(str(k), list(kinds)))]
                report.error(
                    path,
                    f"a check names no check kind ({keys})",
                    (hints[0] + " " if hints else "")
                    + "check kinds: "
                    + ", ".join(kinds)
                    + " (plugins add more: docs/hooks.md#register_check_kinds)",
                )
                continue
            if len(found) > 1:
                report.error(
                    (*path, found[1]),
                    f"a check names two kinds ({', '.join(found)})",
                    "write each kind as a check of its own: checks = [{ ... }, { ... }]",
                )
                continue
            kind = kinds.kinds[found[0]]
            try:
                settings = kind.cls.Settings.model_validate(declaration)
            except ValidationError as exc:
                report_validation_error(report, exc, declaration, kind.cls.Settings, path)
                continue
            name = settings.name or kind.cls(settings, _NO_CONTEXT).describe()
            if name in names:
                report.error(
                    (*path, "name") if settings.name else path,
                    f"two checks of {client.name} are called {name!r} (#{names[name] + 1} too)",
                    'give one a name of its own: name = "..."',
                )
            names.setdefault(name, j)
