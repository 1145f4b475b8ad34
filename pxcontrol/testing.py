"""Real processes for tests and benchmarks: a director and agents on loopback, watched from outside."""

from __future__ import annotations

import os
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
        self.director = Process(
            ["run", str(self.folder), "--state", str(self.state), "--json-events"], self.env
        )
        self.director.wait_event("show.loaded", timeout=30)
        return self.director

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
