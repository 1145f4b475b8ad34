"""`pxcontrol demo`: the built-in demo show with a director and two agents, on this machine.

Everything is a real process on loopback: the director, a playout agent on
127.0.0.11 and a backup agent on 127.0.0.21, each client's media server (Debian's
mpv playing a test picture with no screen; a stand-in process where mpv is not
installed), watched by the agents' checks. The timeline is read from the
director's own event stream.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from pxcontrol.loader import DEMO_SHOW
from pxcontrol.osc_client import DirectorLink
from pxcontrol.processes import Process, wait_for
from pxcontrol.testing import free_port

PLAYOUT, PLAYOUT_IP = "Playout1", "127.0.0.11"
BACKUP, BACKUP_IP = "Backup1", "127.0.0.21"
STYLE = {
    "client.offline": "bold red",
    "client.failed": "bold red",
    "client.recovered": "green",
    "client.late": "yellow",
    "client.online": "green",
    "backup.activated": "bold magenta",
    "backup.failed": "bold red",
    "alarm": "bold red",
    "action.failed": "red",
}


class Player:
    """A client's media server: mpv playing a generated picture with no screen (its JSON IPC
    socket is the application's control port), or, without mpv, a stand-in process. A copy
    of the program under a name of its own, so the `process` check watches only this one."""

    def __init__(self, folder: Path, client: str) -> None:
        mpv = shutil.which("mpv")
        program = mpv or shutil.which("sleep") or "/bin/sleep"
        self.binary = folder / f"{'mpv' if mpv else 'player'}-{client}"  # ≤ 15: the kernel's name
        shutil.copy(program, self.binary)
        self.socket = folder / f"{client}.sock" if mpv else None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def what(self) -> str:
        if self.socket is None:
            return "a stand-in player (mpv is not installed: apt-get install mpv)"
        return "mpv playing a test picture"

    def checks(self) -> str:
        """The client's checks, as the show declares them."""
        checks = [f'{{ process = "{self.binary}", name = "player process" }}']
        if self.socket is not None:
            checks.append(f'{{ mpv = "{self.socket}", name = "player" }}')
        return f"checks = [{', '.join(checks)}]"

    def start(self) -> None:
        if self.socket is None:
            args = [str(self.binary), "100000"]
        else:
            args = [
                str(self.binary), "--vo=null", "--ao=null", "--really-quiet",
                f"--input-ipc-server={self.socket}", "av://lavfi:testsrc2=size=320x240:rate=25",
            ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Demo:
    def __init__(
        self,
        console: Console,
        folder: Path,
        osc_port: int | None = None,
        http_port: int | None = None,
    ) -> None:
        self.console = console
        self.folder = folder
        # The demo's own heartbeat port, so it runs beside anything else on this machine.
        text = DEMO_SHOW.read_text().replace(
            "heartbeat_port = 7401", f"heartbeat_port = {free_port()}"
        )
        if osc_port is None and not _free(7400):  # a director runs here: take another port
            osc_port = free_port()
        if osc_port is not None:
            text = text.replace("osc_port = 7400", f"osc_port = {osc_port}")
        if http_port is None and not _free(7480, socket.SOCK_STREAM):  # the same for the page
            http_port = free_port(socket.SOCK_STREAM)
        if http_port is not None:
            text = text.replace("http_port = 7480", f"http_port = {http_port}")
        self.players = {name: Player(folder, name) for name in (PLAYOUT, BACKUP)}
        for name, player in self.players.items():  # each client's show is watched
            text = text.replace(f'name = "{name}"\n', f'name = "{name}"\n{player.checks()}\n', 1)
        (folder / "show.toml").write_text(text)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.started = time.monotonic()
        self.printed = 0
        self.director: Process | None = None
        self.router: Process | None = None
        self.agents: dict[str, Process] = {}
        self.told = 0  # takeover notices of the backup's agent shown so far

    def start_router(self) -> None:
        """The Videohub emulator stands in for the show's video router."""
        self.router = Process(
            [
                "--port", "0",
                "--input-labels", "Playout1 Out 1,Playout1 Out 2,Backup1 Out 1,Backup1 Out 2",
                "--output-labels", "LED Wall,Projector",
            ],
            self.env,
            module="pxcontrol_videohub.emulator",
        )  # fmt: skip
        port = int(self.router.wait_line(r"listening on 127\.0\.0\.1:(\d+)").group(1))
        show = self.folder / "show.toml"
        show.write_text(show.read_text().replace("port = 9990", f"port = {port}"))
        self.say(f"video router: the Videohub emulator on 127.0.0.1:{port}")

    def start(self) -> None:
        self.start_router()
        for player in self.players.values():
            player.start()
        self.say(f"media servers: {self.players[PLAYOUT].what} on each client")
        self.director = Process(
            ["run", str(self.folder), "--state", str(self.folder / "state"), "--json-events"],
            self.env,
        )
        try:
            loaded = self.director.wait_event("show.loaded", timeout=30)
        except AssertionError:
            raise SystemExit(
                "the director did not start:\n  " + "\n  ".join(self.director.output[-10:])
            ) from None
        port = loaded["heartbeat_port"]
        for name, ip in ((PLAYOUT, PLAYOUT_IP), (BACKUP, BACKUP_IP)):
            self.agents[name] = self.agent(name, ip, port)
        self.say(
            f"director on 127.0.0.1 (heartbeats :{port}); agents {PLAYOUT} on {PLAYOUT_IP} "
            f"and {BACKUP} on {BACKUP_IP}, pids {self.agents[PLAYOUT].proc.pid} and "
            f"{self.agents[BACKUP].proc.pid}"
        )
        self.say(f"Live Systems page: http://127.0.0.1:{loaded['web_port']}/", "bold")
        self.show_until("client.online", client=BACKUP)
        self.show_until("client.online", client=PLAYOUT)

    def agent(self, name: str, ip: str, port: int) -> Process:
        args = ["agent", "--name", name, "--director", f"127.0.0.1:{port}", "--bind", ip]
        return Process([*args, "--json-events"], self.env)

    def scripted(self) -> None:
        """The application crashes (the machine runs on), then the machine goes: each is
        taken over; the outputs come back by hand."""
        assert self.director is not None
        self.say(
            f"killing {PLAYOUT}'s media server (SIGKILL): the application crashes, its machine "
            "and agent run on; times below count from the kill",
            "bold",
        )
        self.started = time.monotonic()
        self.players[PLAYOUT].kill()
        activated = self.taken_over()
        self.say(f"restarting {PLAYOUT}'s media server", "bold")
        self.players[PLAYOUT].start()
        self.show_until("client.recovered", after=activated["seq"], client=PLAYOUT)
        self.say(
            f"{PLAYOUT}'s show plays again, but its outputs stay on {BACKUP} until an operator "
            "moves them back: fail over fast, return by hand"
        )
        moved = self.move_back()

        self.say(
            f"now the machine: killing {PLAYOUT}'s agent (SIGKILL), its heartbeats stop; "
            "times below count from the kill",
            "bold",
        )
        self.started = time.monotonic()
        self.agents[PLAYOUT].signal(signal.SIGKILL)
        activated = self.taken_over(after=moved["seq"])
        self.say(f"restarting {PLAYOUT}'s agent, as after a reboot", "bold")
        port = self.director.of_kind("show.loaded")[0]["heartbeat_port"]
        self.agents[PLAYOUT] = self.agent(PLAYOUT, PLAYOUT_IP, port)
        self.show_until("client.online", after=activated["seq"], client=PLAYOUT)
        self.say(f"{PLAYOUT} is back; its outputs stay on {BACKUP} until moved back")
        self.move_back()

    def taken_over(self, after: int = 0) -> dict[str, Any]:
        """Show the takeover of the playout and what it ran; return its event."""
        activated = self.show_until("backup.activated", after=after, client=PLAYOUT)
        for mapping in ("mappings[0]", "mappings[1]", f"{BACKUP}.on_backup"):
            self.show_until("mapping.done", event_seq=activated["seq"], mapping=mapping)
        backup = self.agents[BACKUP]
        told = len(wait_for(lambda: backup.of_kind("backup.activated")[self.told :], 10))
        notice = backup.of_kind("backup.activated")[self.told]
        self.told += told
        plays = "; ".join(
            f"{playout}'s {', '.join(names)}" for playout, names in notice["plays"].items()
        )
        self.say(f"{BACKUP}'s agent was told: it now plays {plays or 'nothing'}")
        return activated

    def move_back(self) -> dict[str, Any]:
        assert self.director is not None
        osc_port = self.director.of_kind("show.loaded")[0]["osc_port"]
        self.say(
            f"the operator moves them back: pxcontrol backup move {PLAYOUT} "
            f"--director 127.0.0.1:{osc_port}",
            "bold",
        )
        before = self.director.events[-1]["seq"]
        ok, message = asyncio.run(_ask_move(osc_port))
        self.say(("ok: " if ok else "refused: ") + message)
        moved = self.show_until("backup.moved", after=before, client=PLAYOUT)
        self.show_until("mapping.done", event_seq=moved["seq"], mapping="mappings[2]")
        return moved

    def interactive(self) -> None:
        assert self.director is not None
        at = f"127.0.0.1:{self.director.of_kind('show.loaded')[0]['osc_port']}"
        player = self.players[PLAYOUT].proc
        assert player is not None
        self.say(
            f"try it: kill -9 {player.pid}   ({PLAYOUT}'s media server: the application "
            f"crashes) or kill -9 {self.agents[PLAYOUT].proc.pid}   ({PLAYOUT}'s agent: the "
            "machine is gone), and watch the takeover here or on the page; Ctrl-C ends the demo",
            "bold",
        )
        self.say(
            f"or drive it as an operator: pxcontrol status --director {at}   ·   "
            f"pxcontrol backup switch|move {PLAYOUT} --director {at}"
        )
        while self.director.proc.poll() is None:
            self.show_new()
            time.sleep(0.05)

    def show_until(self, kind: str, timeout: float = 15.0, **fields: Any) -> dict[str, Any]:
        assert self.director is not None
        found = wait_for(
            lambda: self.show_new() or self.director.of_kind(kind, **fields),
            timeout,
            f"{kind} {fields}",
        )
        self.show_new()
        return found[0]

    def show_new(self) -> None:
        assert self.director is not None
        events = self.director.events
        while self.printed < len(events):
            self.print_event(events[self.printed])
            self.printed += 1

    def print_event(self, event: dict[str, Any]) -> None:
        kind = event["kind"]
        if kind == "mapping.done":
            for action in event["actions"]:
                result = "ok" if action["ok"] else f"FAILED: {action['error']}"
                self.line(
                    event,
                    f"  action {action['action']}: {result} ({action['duration'] * 1000:.1f} ms)",
                    "cyan",
                )
            return
        if kind == "module.status":
            return
        # `trigger` and `refusal` repeat `reason` (the contract's name) under their own names.
        skip = {
            "seq",
            "time",
            "kind",
            "_seen",
            "ip",
            "unmatched",
            "epoch",
            "by",
            "trigger",
            "refusal",
        }
        detail = " ".join(
            f"{k}={v}" for k, v in event.items() if k not in skip and v not in ("", [])
        )
        self.line(event, f"{kind:<17} {detail}", STYLE.get(kind, ""))

    def line(self, event: dict[str, Any], text: str, style: str) -> None:
        elapsed = event["_seen"] - self.started
        self.console.print(Text.assemble((f"{elapsed:+8.3f} s  ", "dim"), (text, style)))

    def say(self, text: str, style: str = "dim") -> None:
        self.console.print(Text(f"           {text}", style=style))

    def stop(self) -> None:
        for agent in self.agents.values():
            agent.kill()
        for player in self.players.values():
            player.kill()
        if self.router is not None:
            self.router.kill()
        if self.director is not None:
            self.director.stop()
            self.show_new()


async def _ask_move(osc_port: int) -> tuple[bool, str]:
    async with DirectorLink("127.0.0.1", osc_port) as link:
        return await link.command("/pxcontrol/backup/move", PLAYOUT)


def _free(port: int, kind: int = socket.SOCK_DGRAM) -> bool:
    try:
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM ends the demo like Ctrl-C: every process stopped


def run_demo(
    console: Console, scripted: bool, osc_port: int | None = None, http_port: int | None = None
) -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="pxcontrol-demo-") as folder:
        demo = Demo(console, Path(folder), osc_port, http_port)
        try:
            demo.start()
            if scripted:
                demo.scripted()
            else:
                demo.interactive()
        except KeyboardInterrupt:
            pass
        finally:
            demo.stop()
        console.print("demo over: every process stopped")
