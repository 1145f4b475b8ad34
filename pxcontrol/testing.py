"""Real processes for tests and benchmarks: a director and agents on loopback, watched from outside."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

from pxcontrol.processes import Process, wait_for

__all__ = ["Process", "Rig", "free_port", "wait_for"]


def free_port(kind: int = socket.SOCK_DGRAM, host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Rig:
    """A show folder, its director and its agents, all real processes on 127.0.0.x."""

    def __init__(self, folder: Path, show: str, modules: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.heartbeat_port = free_port()
        self.osc_port = free_port()
        show = show.replace("{heartbeat_port}", str(self.heartbeat_port))
        show = show.replace("{osc_port}", str(self.osc_port))
        if "osc_port" not in show and "[director]" in show:
            # Never the default 7400: a director the user runs may have it.
            show = show.replace("[director]", f"[director]\nosc_port = {self.osc_port}", 1)
        self.http_port = free_port(socket.SOCK_STREAM)  # the page's address survives a restart
        show = show.replace("{http_port}", str(self.http_port))
        if "http_port" not in show and "[director]" in show:
            show = show.replace("[director]", f"[director]\nhttp_port = {self.http_port}", 1)
        (folder / "show.toml").write_text(show)
        if modules:
            (folder / "modules").mkdir(exist_ok=True)
            for name, source in modules.items():
                (folder / "modules" / name).write_text(source)
        self.state = folder / "state"
        self.director: Process | None = None
        self.agents: dict[str, Process] = {}
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def start_director(self) -> Process:
        """Start the director and wait for its show to load.

        A port picked free can be taken by someone else before the director binds it
        (another test suite on the machine): then new ports are picked and it is
        started again, at most twice.
        """
        for attempt in range(3):
            director = self._launch_director()
            if director.of_kind("show.loaded"):
                self.director = director
                return director
            if attempt < 2 and any("cannot listen on" in line for line in director.output):
                self._new_ports()
                continue
            raise AssertionError(f"the director did not start: {director.output[-8:]}")
        raise AssertionError("unreachable")

    def _launch_director(self) -> Process:
        """One start: the director once its show is loaded, or once it has exited."""
        director = Process(
            ["run", str(self.folder), "--state", str(self.state), "--json-events"], self.env
        )
        try:
            wait_for(
                lambda: director.of_kind("show.loaded") or director.proc.poll() is not None,
                30,
                "show.loaded from run",
            )
        except AssertionError as exc:
            director.kill()  # never leave a director behind that the test cannot stop
            raise AssertionError(f"{exc}; its output: {director.output[-12:]}") from None
        if not director.of_kind("show.loaded"):
            director.wait_exit()
        return director

    def _new_ports(self) -> None:
        """Pick the director's ports again and write them into the show file."""
        show_file = self.folder / "show.toml"
        text = show_file.read_text()
        for key, kind in (
            ("heartbeat_port", socket.SOCK_DGRAM),
            ("osc_port", socket.SOCK_DGRAM),
            ("http_port", socket.SOCK_STREAM),
        ):
            new = free_port(kind)
            pattern = rf"(?m)^({key}\s*=\s*){getattr(self, key)}\b"
            text, found = re.subn(pattern, rf"\g<1>{new}", text)
            if found:
                setattr(self, key, new)
        show_file.write_text(text)

    def start_agent(self, name: str, ip: str, *extra: str) -> Process:
        agent = Process(
            [
                "agent",
                "--name",
                name,
                "--director",
                f"127.0.0.1:{self.heartbeat_port}",
                "--bind",
                ip,
                "--json-events",
                *extra,
            ],
            self.env,
        )
        self.agents[name] = agent
        return agent

    def start_clients(self, **ips: str) -> None:
        """Start an agent per client (`Playout1="127.0.0.11"`) and wait until each is online."""
        assert self.director is not None, "start_director() first"
        for name, ip in ips.items():
            self.start_agent(name, ip)
        for name in ips:
            self.director.wait_event("client.online", client=name)

    def close(self) -> None:
        for agent in self.agents.values():
            agent.kill()
        if self.director is not None:
            self.director.kill()
