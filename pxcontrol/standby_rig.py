"""Two directors of one show on a real etcd cluster, as real processes: for tests and benches.

Each director is `pxcontrol run SHOW --as NAME` with a state folder of its own, on
127.0.0.1 with ports of its own; the show's `Router` module sends OSC to a port the
caller listens on (an emulator, a capture), so anything a director commands is seen.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
from pathlib import Path

from pxcontrol.etcd_cluster import EtcdCluster
from pxcontrol.processes import Process, wait_for
from pxcontrol.testing import free_port

SHOW = """
[[directors]]
name = "DirA"
ip = "127.0.0.1"
osc_port = {a_osc}
http_port = {a_http}
heartbeat_port = {a_heartbeat}

[[directors]]
name = "DirB"
ip = "127.0.0.1"
osc_port = {b_osc}
http_port = {b_http}
heartbeat_port = {b_heartbeat}

[redundancy]
etcd = {etcd}
lease = {lease}
key = "{key}"

[modules.Router]
type = "osc"
port = {router}
"""

_keys = itertools.count(1)


class Directors:
    """A show with two directors, DirA and DirB, each a `pxcontrol run --as` process."""

    def __init__(
        self,
        folder: Path,
        cluster: EtcdCluster,
        router_port: int,
        lease: int = 1,
        extra: str = "",
    ) -> None:
        """`extra` is more of the show (clients, mappings), appended as written."""
        self.folder = folder
        self.cluster = cluster
        self.key = f"test/{os.getpid()}/{next(_keys)}/director"  # one election per show
        self.ports = {
            f"{who}_{key}": free_port(kind)
            for who in ("a", "b")
            for key, kind in (
                ("osc", socket.SOCK_DGRAM),
                ("http", socket.SOCK_STREAM),
                ("heartbeat", socket.SOCK_DGRAM),
            )
        }
        values = {
            **self.ports,
            "etcd": "[" + ", ".join(f'"{e}"' for e in cluster.endpoints) + "]",
            "lease": lease,
            "key": self.key,
            "router": router_port,
        }
        text = SHOW
        for key, value in values.items():
            text = text.replace("{" + key + "}", str(value))
        (folder / "show.toml").write_text(text + extra)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.running: dict[str, Process] = {}

    def start(self, name: str, timeout: float = 30.0) -> Process:
        """Start one director and wait until its show is loaded (in charge or not).

        A port picked free can be taken by someone else before the director binds it
        (another suite on the machine): then it gets new ports, at most twice.
        """
        for attempt in range(3):
            director = Process(
                [
                    "run", str(self.folder), "--as", name, "--state", str(self.folder / name),
                    "--json-events",
                ],
                self.env,
            )  # fmt: skip
            self.running[name] = director
            try:
                wait_for(
                    lambda d=director: d.of_kind("show.loaded") or d.proc.poll() is not None,
                    timeout,
                    f"show.loaded from {name}",
                )
            except AssertionError:
                director.kill()
                raise AssertionError(f"{name} did not start: {director.output[-8:]}") from None
            if director.of_kind("show.loaded"):
                return director
            director.wait_exit()
            if attempt < 2 and any("cannot listen on" in line for line in director.output):
                self._new_ports(name)
                continue
            raise AssertionError(f"{name} did not start: {director.output[-8:]}")
        raise AssertionError("unreachable")

    def _new_ports(self, name: str) -> None:
        """Pick this director's ports again and write them into the show file."""
        show = self.folder / "show.toml"
        text = show.read_text()
        who = name[-1].lower()
        for key, kind in (
            ("osc", socket.SOCK_DGRAM),
            ("http", socket.SOCK_STREAM),
            ("heartbeat", socket.SOCK_DGRAM),
        ):
            old, new = self.ports[f"{who}_{key}"], free_port(kind)
            text = text.replace(f"{key}_port = {old}\n", f"{key}_port = {new}\n", 1)
            self.ports[f"{who}_{key}"] = new
        show.write_text(text)

    def osc_port(self, name: str) -> int:
        return self.ports[f"{name[-1].lower()}_osc"]

    def heartbeat_port(self, name: str) -> int:
        return self.ports[f"{name[-1].lower()}_heartbeat"]

    def start_agent(self, client: str, ip: str, director: str) -> Process:
        """A client's agent, heartbeating to one director (agents know one director yet)."""
        agent = Process(
            [
                "agent", "--name", client, "--director",
                f"127.0.0.1:{self.heartbeat_port(director)}", "--bind", ip, "--json-events",
            ],
            self.env,
        )  # fmt: skip
        self.running[f"agent {client}"] = agent
        return agent

    def http_port(self, name: str) -> int:
        return self.ports[f"{name[-1].lower()}_http"]

    def send(self, name: str, address: str, types: str = "", *values: str) -> None:
        """An OSC command to one director, from liblo's oscsend (a peer we did not write)."""
        target = f"osc.udp://127.0.0.1:{self.osc_port(name)}"
        subprocess.run(["oscsend", target, address, types, *values], check=True, timeout=10)

    def close(self) -> None:
        for director in self.running.values():
            director.kill()
