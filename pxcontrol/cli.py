"""The `pxcontrol` command."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from pxcontrol import __version__
from pxcontrol.actions import ActionSpec, TooManyArguments, arguments_from_list
from pxcontrol.app import App, action_log
from pxcontrol.catalog import Catalog
from pxcontrol.director import CannotListen, Director, run_director, stop_on_signals
from pxcontrol.events import Event
from pxcontrol.loader import DEMO_SHOW, resolve_show_path
from pxcontrol.loading import LoadedShow, PluginError, collect_module_types, load_show_within
from pxcontrol.output import Output
from pxcontrol.plugins import load_dropins, make_plugin_manager
from pxcontrol.problems import Problem, Severity, ShowInvalid
from pxcontrol.standby import which_director
from pxcontrol.state import StateInUse, StateUnusable

cli = typer.Typer(
    help="Show control for media-server rigs: client backup, takeover, device actions, OSC.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ShowArg = Annotated[
    Path | None,
    typer.Argument(
        metavar="SHOW",
        help="show folder (with show.toml) or file; default ./show.toml, else the demo",
    ),
]
ShowOpt = Annotated[
    Path | None,
    typer.Option("--show", "-s", help="show folder or file; default ./show.toml, else the demo"),
]


#: `pxcontrol run` ended because its own work kept failing (EX_SOFTWARE): restart it.
EXIT_FAULT = 70

#: Log lines for a file, a pipe, systemd or a Windows service: one unwrapped line, sortable time.
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
PLAIN_TIME = "%Y-%m-%dT%H:%M:%S"
FILE_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s"  # a show's timeline

LogFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--log-file",
        help="also append the log and every event to this file, one plain line each "
        "(for a service)",
        show_default=False,
    ),
]


def main() -> None:
    cli(prog_name="pxcontrol")


@cli.callback()
def _root(
    context: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
) -> None:
    if context.invoked_subcommand == "demo" and sys.platform == "win32":
        _error(
            "pxcontrol demo runs on Linux and macOS: it stops and kills its own processes "
            "with POSIX signals. On Windows, run the director and the agents themselves "
            "(pxcontrol run, pxcontrol agent: docs/running.md)"
        )
        raise typer.Exit(1)
    level = logging.DEBUG if verbose else logging.INFO
    if err.is_terminal:
        handler: logging.Handler = RichHandler(
            console=err, show_path=False, rich_tracebacks=True, log_time_format="[%H:%M:%S]"
        )
        logging.basicConfig(level=level, format="%(message)s", handlers=[handler])
    else:  # a file, a pipe, systemd: one unwrapped line per record, sortable time
        logging.basicConfig(level=level, format=PLAIN_FORMAT, datefmt=PLAIN_TIME)


@cli.command()
def version() -> None:
    """Print the version."""
    out.print(f"pxcontrol {__version__}")


@cli.command()
def check(show: ShowArg = None) -> None:
    """Check a show file and its modules folder; exit 1 listing every problem."""
    path = resolve_show_path(show)
    loaded = _load_or_exit(path)
    _print_problems(loaded.warnings)
    s = loaded.show
    summary = (
        f" {path}: {len(s.clients)} clients, {len(s.modules)} modules, {len(s.mappings)} mappings"
    )
    out.print(Text.assemble(("✓", "green"), summary))


@cli.command()
def run(
    show: ShowArg = None,
    state: Annotated[
        Path | None,
        typer.Option(help="folder for the state that survives a restart; default SHOW/.pxcontrol"),
    ] = None,
    json_events: Annotated[
        bool, typer.Option("--json-events", help="print every event as one JSON line")
    ] = False,
    heartbeat_port: Annotated[
        int | None, typer.Option(help="instead of the show's director.heartbeat_port")
    ] = None,
    osc_port: Annotated[int | None, typer.Option(help="instead of director.osc_port")] = None,
    http_port: Annotated[int | None, typer.Option(help="instead of director.http_port")] = None,
    log_file: LogFileOpt = None,
    as_name: Annotated[
        str | None,
        typer.Option("--as", metavar="NAME", help="which of the show's [[directors]] this is"),
    ] = None,
) -> None:
    """Run the director on a show until Ctrl-C (or a service manager's stop)."""
    path = resolve_show_path(show)
    if show is None and path == DEMO_SHOW:
        _warning(f"no show.toml in {Path.cwd()}: running the built-in demo show")
    loaded = _load_or_exit(path)
    _print_problems(loaded.warnings)
    refusal = which_director(loaded.show, as_name)
    if refusal is not None:
        _error(f"{path}: {refusal}")
        raise typer.Exit(2)
    outputs = _never_block()
    log_output = _log_to_file(log_file, outputs)

    async def main() -> Director:
        stop = asyncio.Event()
        stop_on_signals(stop)

        def started(director: Director) -> None:
            out.print(Text.assemble(("pxcontrol", "bold"), f" running {path} — Ctrl-C stops it"))
            asks = " (it asks for director.token)" if director.show.director.token else ""
            out.print(Text.assemble("Live Systems page: ", (director.web.url, "bold"), asks))

        show_event = _both(_print_json_event if json_events else _print_event, log_output)
        ports = {"heartbeat_port": heartbeat_port, "osc_port": osc_port, "http_port": http_port}
        director = await run_director(
            loaded,
            stop,
            state,
            on_started=started,
            on_event=show_event,
            ports=ports,
            as_name=as_name,
        )
        out.print("stopped: modules stopped, sockets closed")
        return director

    try:
        director = asyncio.run(main())
    except (CannotListen, StateInUse, StateUnusable) as exc:
        _error(str(exc))
        raise typer.Exit(1) from None
    finally:
        _close(outputs)
    if director.supervisor.gave_up is not None:
        # Past saving in this process: a service manager (systemd, a Windows service)
        # starts a fresh director on the same state.
        _error(f"the director stopped itself: {director.supervisor.gave_up.message}")
        raise typer.Exit(EXIT_FAULT)


@cli.command()
def agent(
    name: Annotated[str, typer.Option("--name", "-n", help="this client's name in the show")],
    director: Annotated[
        str, typer.Option("--director", "-d", help="the director's HOST[:PORT] (port 7401)")
    ],
    bind: Annotated[
        str | None,
        typer.Option(help="source address for heartbeats: the client's declared ip"),
    ] = None,
    secret_file: Annotated[
        Path | None, typer.Option(help="file holding the show's secret, to sign heartbeats")
    ] = None,
    interval: Annotated[
        float, typer.Option(help="seconds between heartbeats until the director sets it")
    ] = 0.1,
    json_events: Annotated[
        bool, typer.Option("--json-events", help="print every event as one JSON line")
    ] = False,
    log_file: LogFileOpt = None,
) -> None:
    """Run on a client: send heartbeats to the director, receive takeover and move-to notices."""
    from pxcontrol.agent import Agent, director_address, read_secret

    pm, problems = make_plugin_manager()
    for problem in problems:
        _warning(f"{problem.source}: {problem.message}")
    try:
        secret = read_secret(secret_file)
    except OSError as exc:
        _error(f"cannot read the secret file: {exc}")
        raise typer.Exit(1) from None
    target = director_address(director)
    outputs = _never_block()
    log_output = _log_to_file(log_file, outputs)

    async def main() -> Agent:
        stop = asyncio.Event()
        stop_on_signals(stop)
        client = Agent(name, target, pm, bind=bind, secret=secret, interval=interval)
        client.events.listen(_both(_print_json_event if json_events else _print_event, log_output))

        def ready(a: Agent) -> None:
            host, port = a.address
            text = f" {name} sending heartbeats from {host}:{port} to {target[0]}:{target[1]}"
            out.print(Text.assemble(("agent", "bold"), text, " — Ctrl-C stops it"))

        await client.run(stop, on_ready=ready)
        return client

    try:
        client = asyncio.run(main())
    except OSError as exc:
        _error(f"{exc} (is --bind an address of this machine?)")
        raise typer.Exit(1) from None
    finally:
        _close(outputs)
    if client.supervisor.gave_up is not None:
        _error(f"the agent stopped itself: {client.supervisor.gave_up.message}")
        raise typer.Exit(EXIT_FAULT)


@cli.command()
def demo(
    scripted: Annotated[
        bool,
        typer.Option(help="crash the playout's media server, then kill its agent; show each"),
    ] = False,
    osc_port: Annotated[
        int | None, typer.Option(help="the director's OSC port (default 7400, else a free one)")
    ] = None,
    http_port: Annotated[
        int | None,
        typer.Option(help="the Live Systems page's port (default 7480, else a free one)"),
    ] = None,
) -> None:
    """Run the demo show here: director, two agents, media servers, router emulator."""
    from pxcontrol.demo import run_demo

    run_demo(out, scripted, osc_port=osc_port, http_port=http_port)


@cli.command()
def modules(
    show: ShowOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON with each action's schema")] = False,
) -> None:
    """List module types and their actions, with parameters, types, defaults and descriptions."""
    catalog = _catalog(show)
    if as_json:
        data = {
            t.name: {
                "plugin": t.plugin,
                "description": t.description,
                "settings": t.cls.Settings.model_json_schema(),
                "actions": {n: a.schema() for n, a in t.actions.items()},
            }
            for t in catalog
        }
        print(json.dumps(data, indent=2))
        return
    for mtype in catalog:
        out.print(
            Text.assemble(
                (mtype.name, "bold cyan"), f"  {mtype.description}  ", (f"[{mtype.plugin}]", "dim")
            )
        )
        for spec in mtype.actions.values():
            out.print(Text.assemble("  ", (spec.name, "bold"), f"  {spec.description}"))
            out.print(_params_table(spec))


@cli.command(context_settings={"ignore_unknown_options": True})
def call(
    action: Annotated[
        str, typer.Argument(metavar="MODULE.ACTION", help="ModuleName.ActionName, e.g. Log.Entry")
    ],
    args: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="ARGUMENTS",
            help="key=value (values read as JSON where the type is not text), or in order",
        ),
    ] = None,
    show: ShowOpt = None,
    timeout: Annotated[float | None, typer.Option(help="seconds; default the action's")] = None,
) -> None:
    """Run one action with the show's module settings and print the result."""
    path = resolve_show_path(show)
    loaded = _load_or_exit(path)
    module = action.split(".", 1)[0]
    if module not in loaded.show.all_modules:
        known = ", ".join(loaded.show.all_modules) or "none"
        _error(f"{path} has no module {module!r} (modules: {known})")
        raise typer.Exit(1)

    async def main() -> int:
        app = App(loaded)
        action_log.setLevel(logging.ERROR)  # its failure is printed below, once
        await app.start(only={module})
        try:
            try:
                _, spec = app.resolve(action)
                values = arguments_from_list(spec, args or [])
            except (LookupError, TooManyArguments) as exc:
                _error(f"{exc}")
                return 1
            record = await app.run_action(action, values, timeout=timeout, source="cli")
        finally:
            await app.stop()
        if record.ok:
            result = "" if record.result is None else f" → {record.result!r}"
            out.print(
                Text.assemble(
                    ("ok", "green"), f" {action} in {record.duration * 1000:.1f} ms{result}"
                )
            )
            return 0
        _error(record.error, "failed: ")
        return 1

    raise typer.Exit(asyncio.run(main()))


# --- commands to a running director, over its OSC bridge ---

DirectorOpt = Annotated[
    str | None,
    typer.Option(
        "--director",
        "-d",
        help="the director's OSC HOST[:PORT]; default: the show's bind and osc_port",
        show_default=False,
    ),
]
PasscodeOpt = Annotated[
    str | None,
    typer.Option(
        help="the OSC passcode; default: the show's director.passcode", show_default=False
    ),
]
backup_cli = typer.Typer(
    help="Take over, move back, switch automatic backup — on a running director."
)
cli.add_typer(backup_cli, name="backup")


def _ask(
    show: Path | None,
    director: str | None,
    passcode: str | None,
    work,
    protocol: Literal["udp", "tcp"] = "udp",
) -> Any:
    from pxcontrol.agent import director_address
    from pxcontrol.osc_client import DirectorLink, NoAnswer, Refused

    director, passcode = _director_of(show, director, passcode)
    host, port = director_address(director, default_port=7400)

    async def main() -> Any:
        async with DirectorLink(host, port, protocol=protocol) as link:
            if passcode is not None:
                ok, message = await link.command("/pxcontrol/connect", passcode)
                if not ok:
                    raise Refused(f"the director refused the passcode: {message}")
            return await work(link)

    try:
        return asyncio.run(main())
    except Refused as exc:
        _error(_for_the_command_line(str(exc)))
        raise typer.Exit(1) from None
    except NoAnswer as exc:
        _error(str(exc))
        raise typer.Exit(2) from None
    except OSError as exc:  # an address that does not resolve, no route
        _error(f"cannot reach the director at {director}: {exc.strerror or exc}")
        raise typer.Exit(2) from None


def _director_of(
    show: Path | None, director: str | None, passcode: str | None
) -> tuple[str, str | None]:
    """Where the director listens for OSC and its passcode: as given, else from the show.

    The show is the one `pxcontrol run` would start: --show, else ./show.toml, else
    the demo. Only its [director] table is read; a bind to every interface is
    reached on loopback.
    """
    from ipaddress import ip_address

    from pydantic import ValidationError

    from pxcontrol.address import read_address
    from pxcontrol.director import default_state_dir
    from pxcontrol.loader import read_show
    from pxcontrol.show import DirectorSettings

    if director is not None and passcode is not None:
        return director, passcode
    path = resolve_show_path(show)
    try:
        settings = DirectorSettings.model_validate(read_show(path).data.get("director", {}))
    except (ShowInvalid, ValidationError):
        if director is not None:  # told where: a passcode, if needed, is asked for by name
            return director, passcode
        # Mid-edit: the address the running director wrote beside its state when it started.
        known = read_address(default_state_dir(path))
        if known is not None:
            _warning(
                f"cannot read [director] of {path} (mid-edit? 'pxcontrol check {path}' says "
                f"why): talking to the director that runs it, at {known.osc}"
            )
            return known.osc, passcode if passcode is not None else known.passcode
        _error(
            f"cannot read [director] of {path}: run 'pxcontrol check {path}', or give "
            "--director HOST:PORT (the director's osc_port)"
        )
        raise typer.Exit(1) from None
    if director is None:
        if path == DEMO_SHOW:
            _warning(
                "no show.toml here: talking to the built-in demo's director; "
                "give --show or --director for another show"
            )
        host = ip_address(str(settings.bind))
        if host.is_unspecified:  # 0.0.0.0 or ::: this machine answers on loopback
            host = ip_address("::1" if host.version == 6 else "127.0.0.1")
        director = (
            f"[{host}]:{settings.osc_port}" if host.version == 6 else f"{host}:{settings.osc_port}"
        )
    return director, passcode if passcode is not None else settings.passcode


def _answer(result: tuple[bool, str]) -> None:
    ok, message = result
    if ok:
        out.print(Text.assemble(("ok", "green"), f" {message}"))
        return
    _error(_for_the_command_line(message))
    raise typer.Exit(1)


def _for_the_command_line(message: str) -> str:
    """The bridge's answer, with the command line's way out where it has its own."""
    if message.startswith("locked"):
        return "locked: the show sets director.passcode; give it with --passcode"
    return message


@cli.command()
def status(
    show: ShowOpt = None,
    director: DirectorOpt = None,
    passcode: PasscodeOpt = None,
    client: Annotated[
        str | None,
        typer.Option("--client", "-c", metavar="NAME", help="only this client", show_default=False),
    ] = None,
    udp: Annotated[
        bool, typer.Option("--udp", help="ask over UDP only (where TCP to the director is blocked)")
    ] = False,
) -> None:
    """Show every client of a running director: state, where its outputs play, CPU, memory.

    Asks over TCP, else over UDP; exits 1 when rows are missing from the answer, 2 when
    the director does not answer.
    """
    from pxcontrol.osc_client import Incomplete

    async def answer_of(link):
        try:
            return link, await link.status(client), None
        except Incomplete as exc:
            return link, None, exc

    link, answer, incomplete = _ask(
        show, director, passcode, answer_of, protocol="udp" if udp else "tcp"
    )
    rows = incomplete.rows if incomplete is not None else answer.rows
    where = f"{link.host}:{link.port}" + (" (UDP)" if link.protocol == "udp" else "")
    table = Table(title=f"director {where}")
    for column in ("client", "state", "outputs play on", "carries", "auto", "cpu %", "memory %"):
        table.add_column(column)
    colours = {"online": "green", "offline": "red", "failed": "bold red", "dry": "dim"}
    for name, state, plays_on, cpu, memory, *more in rows:
        # Appended after the failed check: what a backup carries, and whether automatic
        # takeover is armed (a director from before them leaves the cells empty).
        carries = str(more[3]) if len(more) >= 5 else ""
        armed = "" if len(more) < 5 else ("on" if more[4] else "–")
        plays = Text(str(plays_on), style="" if plays_on == name else "magenta")
        if more and not more[0]:  # `confirmed`, appended after the first five
            plays.append(f" (announced, not yet confirmed by {plays_on})", style="bold yellow")
        shown = Text(str(state), style=colours.get(str(state), ""))
        if len(more) >= 3 and more[1]:  # the failed check and why, appended after `confirmed`
            shown.append(f" ({more[1]}: {more[2]})" if more[2] else f" ({more[1]})", style="red")
        table.add_row(
            Text(str(name)),
            shown,
            plays,
            Text(carries, style="magenta"),
            Text(armed, style="green" if armed == "on" else "dim"),
            "–" if cpu < 0 else f"{cpu:.0f}",
            "–" if memory < 0 else f"{memory:.0f}",
        )
    out.print(table)
    if answer is not None and answer.director is not None:
        out.print(_director_health(answer.director))
    if incomplete is not None:
        _error(f"{incomplete}; {_what_to_do(link, udp)}", label="")
        raise typer.Exit(1)


def _director_health(row: tuple[Any, ...]) -> Text:
    """One line: is the director itself judging?"""
    lag, tick, queue, stalls, restarts, *rest = row
    ticked = "not yet" if tick < 0 else f"{tick:.0f} ms ago"
    text = Text.assemble(
        ("director: ", "bold"),
        f"loop lag {lag:.1f} ms, detector ticked {ticked}, {queue} event(s) waiting to be written",
    )
    if stalls:
        text.append(f", stalled {stalls} time(s)", style="yellow")
    if restarts:
        text.append(f", {restarts} fault(s) restarted", style="yellow")
    shed = rest[0] if rest else 0  # from a bridge that sends it
    if shed:
        text.append(f", {shed} event(s) not logged since start", style="red")
    if len(rest) >= 6 and rest[2]:  # role, name, in charge, its address, term: standby directors
        role, name, in_charge, address, term = rest[1:6]
        if role == "active":
            text.append(f"\n{name}: active, in charge (term {term})", style="bold green")
        elif in_charge:
            text.append(
                f"\n{name}: standby — {in_charge} at {address} is in charge (term {term})",
                style="bold yellow",
            )
        else:
            text.append(f"\n{name}: standby — no director is in charge", style="bold red")
    return text


def _what_to_do(link, udp_asked: bool) -> str:
    """The way out of an incomplete status answer, for the transport it came over."""
    if link.protocol == "tcp":
        return "the director cut its answer short: run it again, and see the director's log"
    if udp_asked:
        return "the rest was lost on the way (UDP): run it again, or leave out --udp (TCP loses nothing)"
    return (
        f"the rest was lost on the way over UDP ({link.fallback}): run it again, or let TCP "
        f"through to {link.host}:{link.port} so that the answer comes over TCP"
    )


@backup_cli.command("switch")
def backup_switch(
    client: Annotated[
        str, typer.Argument(metavar="CLIENT", help="the playout client to take over")
    ],
    show: ShowOpt = None,
    director: DirectorOpt = None,
    passcode: PasscodeOpt = None,
) -> None:
    """Take over a playout client now: its outputs move to its backup."""
    _answer(
        _ask(
            show, director, passcode, lambda link: link.command("/pxcontrol/backup/switch", client)
        )
    )


@backup_cli.command("move")
def backup_move(
    client: Annotated[
        str, typer.Argument(metavar="CLIENT", help="the playout client whose outputs move")
    ],
    target: Annotated[
        str | None,
        typer.Argument(metavar="TARGET", help="where to; default back to the client itself"),
    ] = None,
    show: ShowOpt = None,
    director: DirectorOpt = None,
    passcode: PasscodeOpt = None,
) -> None:
    """Move a client's outputs from where they play now (normally back home)."""
    args = (client,) if target is None else (client, target)
    _answer(
        _ask(show, director, passcode, lambda link: link.command("/pxcontrol/backup/move", *args))
    )


@backup_cli.command("auto")
def backup_auto(
    client: Annotated[str, typer.Argument(metavar="CLIENT", help="the playout client")],
    on: Annotated[str, typer.Argument(metavar="on|off", help="on or off")],
    show: ShowOpt = None,
    director: DirectorOpt = None,
    passcode: PasscodeOpt = None,
) -> None:
    """Switch automatic backup on or off for a client (overrides the show until changed)."""
    if on not in ("on", "off"):
        _error(f"say on or off, not {on!r}")
        raise typer.Exit(1)
    value = int(on == "on")
    _answer(
        _ask(
            show,
            director,
            passcode,
            lambda link: link.command("/pxcontrol/backup/auto", client, value),
        )
    )


alarms_cli = typer.Typer(help="The director's alarms, acknowledged once for every operator.")
cli.add_typer(alarms_cli, name="alarms")


@alarms_cli.command("acknowledge")
def alarms_acknowledge(
    up_to: Annotated[
        int | None,
        typer.Argument(
            metavar="EVENT", help="acknowledge up to this event number; default: every one so far"
        ),
    ] = None,
    show: ShowOpt = None,
    director: DirectorOpt = None,
    passcode: PasscodeOpt = None,
) -> None:
    """Acknowledge the alarms for every operator: no page shows them any more, and the
    director says who did it (alarm.acknowledged)."""
    args = () if up_to is None else (up_to,)
    _answer(
        _ask(
            show,
            director,
            passcode,
            lambda link: link.command("/pxcontrol/alarm/acknowledge", *args),
        )
    )


# --- helpers ---


def _error(text: str, label: str = "error: ") -> None:
    err.print(Text.assemble((label, "red"), text))  # Text: user text is never markup


def _warning(text: str) -> None:
    err.print(Text.assemble(("warning: ", "yellow"), text))


def _load_or_exit(path: Path) -> LoadedShow:
    try:
        return load_show_within(path)
    except ShowInvalid as exc:
        _print_problems(exc.problems)
        errors = sum(p.severity is Severity.ERROR for p in exc.problems)
        err.print(Text.assemble(("✗", "red"), f" {path}: {errors} error(s); nothing was started"))
        raise typer.Exit(1) from None


def _print_problems(problems: list[Problem]) -> None:
    for problem in problems:
        style = "red" if problem.severity is Severity.ERROR else "yellow"
        err.print(Text(str(problem), style=style))


def _catalog(show: Path | None) -> Catalog:
    pm, problems = make_plugin_manager()
    path = resolve_show_path(show)
    if path != DEMO_SHOW:  # the show named, or ./show.toml: its drop-in modules too
        problems += load_dropins(pm, path.parent / "modules")
    for problem in problems:
        _warning(f"{problem.source}: {problem.message}")
    try:
        return collect_module_types(pm)
    except PluginError as exc:
        _error(f"{exc}")
        raise typer.Exit(1) from None


def _params_table(spec: ActionSpec) -> Table:
    table = Table(box=None, padding=(0, 2), show_header=False, pad_edge=False)
    table.add_column(style="green")
    table.add_column(style="magenta")
    table.add_column(style="dim")
    table.add_column()
    for name, field in spec.params.model_fields.items():
        default = "required" if field.is_required() else f"= {field.default!r}"
        cells = (f"    {name}", type_text(field.annotation), default, field.description or "")
        table.add_row(*(Text(cell) for cell in cells))  # "[output, input]" is text, not markup
    if not spec.params.model_fields:
        table.add_row("    (no parameters)", "", "", "")
    return table


def type_text(annotation: Any) -> str:
    """`list[int | float | str | bool]`, `'GET' | 'POST'`: as a show programmer reads a type."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_text(args[0])
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_text(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', origin)}[{', '.join(type_text(a) for a in args)}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def _never_block() -> list[Output]:
    """From here on, stdout and stderr (events, messages, the log) are written by threads:
    a paused terminal or an unread pipe loses lines, counted, but never stops the loop."""
    try:
        fds = sys.stdout.fileno(), sys.stderr.fileno()
    except (OSError, ValueError):  # captured in-process (a test's CliRunner): nothing to block
        return []
    outputs = [Output(fds[0], name="stdout"), Output(fds[1], name="stderr")]
    sys.stdout.flush()
    sys.stderr.flush()
    out.file, err.file = outputs
    for handler in logging.getLogger().handlers:
        if isinstance(handler, RichHandler):
            handler.console.file = outputs[1]
        elif isinstance(handler, logging.StreamHandler):
            handler.setStream(outputs[1])  # type: ignore[arg-type]
    return outputs


def _log_to_file(path: Path | None, outputs: list[Output]) -> Output | None:
    """With --log-file: the log and the events also go to that file, written by a thread of
    its own like the terminal (a slow disk never stops the loop); appended, never truncated,
    so a service manager's restarts and logrotate's copytruncate keep one history."""
    if path is None:
        return None
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        _error(f"cannot open the log file {path}: {exc.strerror or exc}; give another --log-file")
        _close(outputs)
        raise typer.Exit(1) from None
    output = Output(fd, name="log file")
    handler = logging.StreamHandler(output)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter(FILE_FORMAT, PLAIN_TIME))
    handler.set_name("log file")
    logging.getLogger().addHandler(handler)
    outputs.append(output)
    return output


def _both(show: Callable[[Event], None], log_output: Output | None) -> Callable[[Event], None]:
    """Print the event; with --log-file, write it there too as one plain line."""
    if log_output is None:
        return show

    def both(event: Event) -> None:
        show(event)
        at = (
            time.strftime(PLAIN_TIME, time.localtime(event.time))
            + f".{int(event.time % 1 * 1000):03d}"
        )
        fields = " ".join(f"{k}={v}" for k, v in event.fields.items())
        log_output.write(f"{at} EVENT {event.kind} {fields}\n")

    return both


def _close(outputs: list[Output]) -> None:
    """Write what waits, a second at most each: a reader that never comes must not hang the exit."""
    if not outputs:
        return
    for output in outputs:
        output.close(1.0)
        if output.name == "log file":
            _stop_logging_to(output)
    out.file = err.file = None  # type: ignore[assignment]  # back to sys.stdout and sys.stderr
    for handler in logging.getLogger().handlers:
        if isinstance(handler, RichHandler):
            handler.console.file = None  # type: ignore[assignment]
        elif isinstance(handler, logging.StreamHandler):
            handler.setStream(sys.stderr)


def _stop_logging_to(output: Output) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == "log file":
            root.removeHandler(handler)
    try:
        os.close(output.fd)
    except OSError:
        pass


def _print_json_event(event: Event) -> None:
    out.file.write(json.dumps(event.as_dict(), default=str) + "\n")


def _print_event(event: Event) -> None:
    fields = " ".join(f"{k}={v}" for k, v in event.fields.items())
    style = "red" if event.kind in ("action.failed", "backup.failed", "alarm") else "cyan"
    at = (
        time.strftime("%H:%M:%S", time.localtime(event.time)) + f".{int(event.time % 1 * 1000):03d}"
    )
    out.print(Text.assemble((f"{at} ", "dim"), (f"{event.kind:<18}", style), fields))


if __name__ == "__main__":
    sys.exit(main())
