"""A real etcd cluster on loopback addresses, for tests and benchmarks of standby directors.

Each member is the Debian `etcd` binary (package `etcd-server`, 3.4) run directly, never
the system service, with its own data folder. Timings are tuned for loopback
(heartbeat 20 ms, election 200 ms) as docs/standby.md tunes them for a show LAN.
"""

from __future__ import annotations

import base64
import ctypes
import json
import shutil
import signal
import socket
import subprocess
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from pxcontrol.processes import wait_for

ETCD = "etcd"


def _die_with_parent() -> None:
    """In the child, before etcd runs (Linux): SIGKILL it when the test process dies, even
    by SIGKILL or os._exit, when no fixture teardown runs. Elsewhere: nothing."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


PR_SET_PDEATHSIG = 1


def _post(url: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"{url}{path}", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=1.0) as answer:
        return json.loads(answer.read())


def _free_tcp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class EtcdMember:
    name: str
    host: str
    client_port: int
    peer_port: int
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def client_url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self) -> bool:
        """The member answers and sees a leader (etcd's own /health says so)."""
        try:
            with urllib.request.urlopen(f"{self.client_url}/health", timeout=0.5) as answer:
                return json.loads(answer.read()).get("health") == "true"
        except (OSError, ValueError, urllib.error.URLError):
            return False


class EtcdCluster:
    """Three (or n) etcd members on 127.0.0.x; start, kill and restart single members."""

    def __init__(
        self, folder: Path, hosts: tuple[str, ...] = ("127.0.0.71", "127.0.0.72", "127.0.0.73")
    ) -> None:
        if shutil.which(ETCD) is None:
            raise RuntimeError("etcd is missing: apt-get install etcd-server")
        self.folder = folder
        self.token = f"pxcontrol-{uuid.uuid4().hex[:12]}"  # two clusters never take each other
        self.members = [
            EtcdMember(
                f"m{i + 1}", host, _free_tcp_port(host), _free_tcp_port(host), folder / f"m{i + 1}"
            )
            for i, host in enumerate(hosts)
        ]

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def start(self, timeout: float = 20.0) -> EtcdCluster:
        for member in self.members:
            self._launch(member, "new")
        self.wait_healthy(timeout=timeout)
        return self

    def _launch(self, member: EtcdMember, state: str) -> None:
        cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        member.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(member.data_dir.parent / f"{member.name}.log", "ab")
        member.proc = subprocess.Popen(
            [
                ETCD,
                "--name", member.name,
                "--data-dir", str(member.data_dir),
                "--listen-client-urls", member.client_url,
                "--advertise-client-urls", member.client_url,
                "--listen-peer-urls", member.peer_url,
                "--initial-advertise-peer-urls", member.peer_url,
                "--initial-cluster", cluster,
                "--initial-cluster-state", state,
                "--initial-cluster-token", self.token,
                "--heartbeat-interval", "20",
                "--election-timeout", "200",
                "--logger", "zap",
                "--log-level", "warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        log.close()

    def wait_healthy(self, members: list[EtcdMember] | None = None, timeout: float = 20.0) -> None:
        """Until every running member (or those given) answers and sees a leader."""
        waited = members if members is not None else [m for m in self.members if m.running]
        for member in waited:
            wait_for(
                lambda m=member: m.healthy() or not m.running,
                timeout,
                f"etcd member {member.name} at {member.client_url} to be healthy; "
                f"its log: {self.log_tail(member)}",
            )
            if not member.running:
                raise AssertionError(f"etcd member {member.name} exited: {self.log_tail(member)}")

    def log_tail(self, member: EtcdMember) -> str:
        path = member.data_dir.parent / f"{member.name}.log"
        return path.read_text(errors="replace")[-600:] if path.exists() else ""

    def leader(self) -> int:
        """The index of the member that leads now, as the running members report it."""
        for member in self.members:
            if not member.running:
                continue
            try:
                status = _post(member.client_url, "/v3/maintenance/status", {})
            except (OSError, ValueError):
                continue
            leader = status.get("leader")
            for index, other in enumerate(self.members):
                if (
                    other.running
                    and _post(other.client_url, "/v3/maintenance/status", {})
                    .get("header", {})
                    .get("member_id")
                    == leader
                ):
                    return index
        raise AssertionError("no running etcd member names a leader")

    def get(self, key: str) -> dict | None:
        """A key as the cluster has it (value decoded), from any member that answers."""
        for member in self.members:
            if not member.running:
                continue
            try:
                answer = _post(
                    member.client_url,
                    "/v3/kv/range",
                    {"key": base64.b64encode(key.encode()).decode()},
                )
            except (OSError, ValueError):
                continue
            kvs = answer.get("kvs") or []
            if not kvs:
                return None
            return {
                "value": base64.b64decode(kvs[0].get("value", "")).decode(),
                "create_revision": int(kvs[0].get("create_revision", 0)),
            }
        raise AssertionError("no etcd member answered")

    def kill(self, index: int) -> EtcdMember:
        """SIGKILL one member, as a machine that loses power."""
        member = self.members[index]
        if member.proc is not None and member.proc.poll() is None:
            member.proc.kill()
            member.proc.wait(10)
        return member

    def restart(self, index: int, timeout: float = 20.0) -> EtcdMember:
        """Start a killed member again on its data folder and wait until it rejoined."""
        member = self.members[index]
        self._launch(member, "existing")
        self.wait_healthy([member], timeout)
        return member

    def close(self) -> None:
        for member in self.members:
            if member.proc is not None and member.proc.poll() is None:
                member.proc.kill()
                member.proc.wait(10)

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
