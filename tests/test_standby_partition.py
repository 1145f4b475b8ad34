"""The director in charge cut from etcd, not from its consoles: nftables in a network namespace.

DirA runs in a namespace of its own, linked to this machine by a veth pair; the three
etcd members, DirB, the console and the router (liblo's oscdump) are on this machine's
side of it. An nftables rule inside DirA's namespace then drops what it sends to etcd's
client ports, and only that: its consoles and the router still reach it and it them.
Needs root, `ip` (iproute2) and `nft` (nftables).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pxcontrol.etcd_cluster import EtcdCluster
from pxcontrol.processes import Process
from pxcontrol.testing import free_port

from .conftest import OscDump

NET = "10.251.{n}"


def sh(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


class Namespaced(Process):
    """A pxcontrol process started inside a network namespace (`ip netns exec` execs it)."""

    def __init__(self, namespace: str, args: list[str], env: dict[str, str]) -> None:
        self.args = args
        self.events = []
        self.output = []
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", namespace, sys.executable, "-m", "pxcontrol", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()


class Link:
    """A namespace for DirA and the veth pair to it: host .1, DirA .2."""

    def __init__(self) -> None:
        if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nft"):
            raise RuntimeError("needs root, iproute2 and nftables (scripts/test installs them)")
        n = os.getpid() % 200 + 20
        self.namespace = f"pxsb{os.getpid()}"
        self.host_if, self.ns_if = f"pxsbh{n}", f"pxsbn{n}"
        self.host = NET.format(n=n) + ".1"
        self.inside = NET.format(n=n) + ".2"
        sh("ip", "netns", "add", self.namespace)
        try:
            sh("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            sh("ip", "link", "set", self.ns_if, "netns", self.namespace)
            sh("ip", "addr", "add", f"{self.host}/24", "dev", self.host_if)
            sh("ip", "link", "set", self.host_if, "up")
            inside = ("ip", "netns", "exec", self.namespace)
            sh(*inside, "ip", "addr", "add", f"{self.inside}/24", "dev", self.ns_if)
            sh(*inside, "ip", "link", "set", self.ns_if, "up")
            sh(*inside, "ip", "link", "set", "lo", "up")
        except Exception:
            self.delete()
            raise

    def cut(self, ports: list[int]) -> None:
        """Inside the namespace: drop every packet to these TCP ports of the host."""
        listed = ", ".join(str(p) for p in ports)
        rules = (
            "table inet pxsb {\n  chain out {\n    type filter hook output priority 0;\n"
            f"    ip daddr {self.host} tcp dport {{ {listed} }} drop\n  }}\n}}\n"
        )
        sh("ip", "netns", "exec", self.namespace, "nft", "-f", "-", stdin=rules)

    def delete(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True, timeout=30)


SHOW = """
[director]
allow = ["127.0.0.1", "{net}.0/24"]
token = "partition-test"

[[directors]]
name = "DirA"
ip = "{inside}"
bind = "{inside}"
osc_port = {a_osc}
http_port = {a_http}
heartbeat_port = {a_heartbeat}

[[directors]]
name = "DirB"
ip = "{host}"
bind = "{host}"
osc_port = {b_osc}
http_port = {b_http}
heartbeat_port = {b_heartbeat}

[redundancy]
etcd = {etcd}
lease = 1

[modules.Router]
type = "osc"
host = "{host}"
port = {router}
"""


@pytest.fixture
def link() -> Iterator[Link]:
    made = Link()
    yield made
    made.delete()


def oscsend(host: str, port: int, *args: str) -> None:
    subprocess.run(["oscsend", f"osc.udp://{host}:{port}", *args], check=True, timeout=10)


def test_cut_from_etcd_but_not_from_its_consoles_the_active_steps_down_for_the_standby(
    tmp_path: Path, link: Link, osc_receiver
):
    cluster = EtcdCluster(tmp_path / "etcd", (link.host, link.host, link.host))
    router: OscDump = osc_receiver()
    console: OscDump = osc_receiver()
    ports = {
        f"{who}_{key}": free_port(kind, host)
        for who, host in (("a", "127.0.0.1"), ("b", link.host))
        for key, kind in (
            ("osc", socket.SOCK_DGRAM),
            ("http", socket.SOCK_STREAM),
            ("heartbeat", socket.SOCK_DGRAM),
        )
    }
    text = SHOW
    for key, value in {
        **ports,
        "net": link.host.rsplit(".", 1)[0],
        "inside": link.inside,
        "host": link.host,
        "etcd": "[" + ", ".join(f'"{e}"' for e in cluster.endpoints) + "]",
        "router": router.port,
    }.items():
        text = text.replace("{" + key + "}", str(value))
    (tmp_path / "show.toml").write_text(text)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    running: list[Process] = []
    try:
        cluster.start()
        a = Namespaced(link.namespace, _run(tmp_path, "DirA"), env)
        running.append(a)
        a.wait_event("director.active", director="DirA", timeout=30)
        b = Process(_run(tmp_path, "DirB"), env)
        running.append(b)
        b.wait_event("director.standby", director="DirB", active="DirA", timeout=30)
        oscsend(link.inside, ports["a_osc"], "/pxcontrol/action", "ss", "Router.Send", "/a/before")
        router.wait_line("/a/before")  # DirA reaches the router across the link

        link.cut([m.client_port for m in cluster.members])
        stepped = a.wait_event("director.standby", director="DirA")
        assert "could not be renewed in time" in stepped["why"]
        b.wait_event("director.active", director="DirB")
        # DirA still hears its console, and refuses.
        oscsend(link.inside, ports["a_osc"], "/pxcontrol/subscribe", "i", str(console.port))
        oscsend(link.inside, ports["a_osc"], "/pxcontrol/action", "ss", "Router.Send", "/a/after")
        console.wait_line('/pxcontrol/reply/pxcontrol/action ss "error" "standby: DirA is not')
        # A later command to look back from: DirB's reaches the router, DirA's never did.
        oscsend(link.host, ports["b_osc"], "/pxcontrol/action", "ss", "Router.Send", "/b/now")
        router.wait_line("/b/now")
        assert not any("/a/after" in line for line in router.lines)
    finally:
        for process in running:
            process.proc.send_signal(signal.SIGKILL)
            process.proc.wait(10)
        cluster.close()


def _run(folder: Path, name: str) -> list[str]:
    return ["run", str(folder), "--as", name, "--state", str(folder / name), "--json-events"]
