"""Soak: a director and four agents over a lossy, jittery network of namespaces; count false takeovers.

    sudo python bench/soak.py                 # 10 minutes
    sudo python bench/soak.py --minutes 1     # a quick try
    sudo python bench/soak.py --cleanup       # remove namespaces left by a run that was SIGKILLed

Needs root, `ip` (iproute2) and `nft` (nftables), and /dev/net/tun.

Topology, all in network namespaces this script creates and deletes (names
pxsoak<pid>-*), nothing routed anywhere else:

    agent ns ×4 (10.77.0.11-13, .21) ─veth─┐
                                            br0 10.77.0.254   router ns "sw"   sd 10.77.1.254 ─veth─ director ns (10.77.1.1)
                                            └─ every packet between the two nets goes through
                                               TUN "jit", where bench/_jitter.py holds it 0–20 ms

Loss: nftables in each agent namespace drops 2 % of heartbeats (`numgen random
mod 100 < 2 drop`) and in the director namespace 2 % of what the director sends
back: 2 % each way. Named nft counters count what is sent, dropped and received.

The show: Playout1..3 and Backup1 (backup_for all three, auto_backup on),
default detection (interval 0.1 s, offline_after 0.5 s, online_after 3 s).
With checks (the default; `--no-checks` leaves them out) each client runs its
own media server, Debian's mpv playing a test picture with no screen, and its
agent watches it at the default check rates with a `process` check and an
`mpv` check (the player answers and its position moves). Nothing is ever failed
on purpose, so every backup.activated is a false takeover (there must be none)
and every client.offline or client.failed a false loss (printed apart: on a
machine that itself stalls longer than offline_after, clients are rightly
unheard, and the guards must keep that from becoming a takeover). Also printed: heartbeats sent,
received and lost, the largest gap between heartbeats per client as they reach
the director, client.late warnings.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ENV, PYTHON, PrefixedProcess, interrupt_on_term, started

from pxcontrol.processes import wait_for
from pxcontrol.show import DirectorSettings

PREFIX = "pxsoak"
DIRECTOR_IP = "10.77.1.1"
PORT = 7401
LOSS_PERCENT = 2
CLIENTS = {  # name: (address, namespace suffix)
    "Playout1": "10.77.0.11",
    "Playout2": "10.77.0.12",
    "Playout3": "10.77.0.13",
    "Backup1": "10.77.0.21",
}

SHOW = f"""
[director]
bind = "{DIRECTOR_IP}"
{{token}}heartbeat_port = {PORT}

[detection]   # the defaults, written out
heartbeat_interval = 0.1
offline_after = 0.5
online_after = 3.0
mass_failure_guard = 0.5

[[clients]]
name = "Playout1"
ip = "10.77.0.11"
outputs = ["Output 1", "Output 2"]

[[clients]]
name = "Playout2"
ip = "10.77.0.12"
outputs = ["Output 1", "Output 2"]

[[clients]]
name = "Playout3"
ip = "10.77.0.13"
outputs = ["Output 1", "Output 2"]

[[clients]]
name = "Backup1"
ip = "10.77.0.21"
outputs = ["Output 1", "Output 2"]
backup_for = ["10.77.0.11", "10.77.0.12", "10.77.0.13"]
auto_backup = true

[modules.Log]
type = "log"

[[mappings]]
on = "backup.activated"
do = [{{ action = "Log.Entry", args = {{ message = "takeover during the soak", level = "warning" }} }}]
"""


def sh(*cmd: str, stdin: str | None = None, check: bool = True) -> str:
    result = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed: {result.stderr.strip() or result.stdout.strip()}"
        )
    return result.stdout


class Network:
    """The namespaces, links, routes and nft rules of one soak; delete() removes all of it."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.namespaces: list[str] = []
        self.director = f"{tag}-dir"
        self.router = f"{tag}-sw"
        self.agents = {name: f"{tag}-{name.lower()}" for name in CLIENTS}

    def ns(self, name: str) -> str:
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def build(self) -> None:
        sw, d = self.ns(self.router), self.ns(self.director)
        for sysctl in (
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
            "net.ipv4.conf.all.send_redirects=0",
            "net.ipv4.conf.default.send_redirects=0",
        ):
            sh("ip", "netns", "exec", sw, "sysctl", "-q", "-w", sysctl)
        sh("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", sw, "addr", "add", "10.77.0.254/24", "dev", "br0")
        sh("ip", "-n", sw, "link", "set", "br0", "up")
        for i, (name, ip) in enumerate(CLIENTS.items()):
            a = self.ns(self.agents[name])
            port = f"s{i}"
            sh(
                "ip",
                "link",
                "add",
                port,
                "netns",
                sw,
                "type",
                "veth",
                "peer",
                "name",
                "e0",
                "netns",
                a,
            )
            sh("ip", "-n", sw, "link", "set", port, "master", "br0", "up")
            sh("ip", "-n", a, "addr", "add", f"{ip}/24", "dev", "e0")
            sh("ip", "-n", a, "link", "set", "e0", "up")
            sh("ip", "-n", a, "route", "add", "10.77.1.0/24", "via", "10.77.0.254")
            sh("ip", "netns", "exec", a, "nft", "-f", "-", stdin=AGENT_RULES)
        sh("ip", "link", "add", "sd", "netns", sw, "type", "veth", "peer", "name", "d0", "netns", d)
        sh("ip", "-n", sw, "addr", "add", "10.77.1.254/24", "dev", "sd")
        sh("ip", "-n", sw, "link", "set", "sd", "up")
        sh("ip", "-n", d, "addr", "add", f"{DIRECTOR_IP}/24", "dev", "d0")
        sh("ip", "-n", d, "link", "set", "d0", "up")
        sh("ip", "-n", d, "route", "add", "10.77.0.0/24", "via", "10.77.1.254")
        sh("ip", "netns", "exec", d, "nft", "-f", "-", stdin=director_rules())
        # The jitter wire: whatever arrives from either net goes into jit; what comes out of
        # jit is forwarded for real.
        sh("ip", "-n", sw, "tuntap", "add", "dev", "jit", "mode", "tun")
        sh("ip", "-n", sw, "addr", "add", "10.77.2.1/32", "dev", "jit")
        sh("ip", "-n", sw, "link", "set", "jit", "up")
        for dev in ("br0", "sd", "jit"):
            sh("ip", "netns", "exec", sw, "sysctl", "-q", "-w", f"net.ipv4.conf.{dev}.rp_filter=0")
        sh("ip", "-n", sw, "route", "add", "10.77.0.0/24", "dev", "br0", "table", "200")
        sh("ip", "-n", sw, "route", "add", "10.77.1.0/24", "dev", "sd", "table", "200")
        sh("ip", "-n", sw, "route", "add", "default", "dev", "jit", "table", "201")
        sh("ip", "-n", sw, "rule", "add", "pref", "100", "iif", "jit", "lookup", "200")
        sh("ip", "-n", sw, "rule", "add", "pref", "110", "iif", "br0", "lookup", "201")
        sh("ip", "-n", sw, "rule", "add", "pref", "111", "iif", "sd", "lookup", "201")

    def counters(self, namespace: str) -> dict[str, int]:
        out = sh("ip", "netns", "exec", namespace, "nft", "-j", "list", "counters", check=False)
        figures = {}
        try:
            for item in json.loads(out or "{}").get("nftables", []):
                if "counter" in item:
                    figures[item["counter"]["name"]] = item["counter"]["packets"]
        except ValueError:
            pass
        return figures

    def delete(self) -> None:
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        self.namespaces.clear()


AGENT_RULES = f"""
table inet pxsoak {{
  counter heartbeats_sent {{}}
  counter heartbeats_dropped {{}}
  counter notices_received {{}}
  chain out {{
    type filter hook output priority 0; policy accept;
    ip daddr {DIRECTOR_IP} udp dport {PORT} counter name heartbeats_sent
    ip daddr {DIRECTOR_IP} udp dport {PORT} numgen random mod 100 < {LOSS_PERCENT} counter name heartbeats_dropped drop
  }}
  chain in {{
    type filter hook input priority 0; policy accept;
    ip saddr {DIRECTOR_IP} udp sport {PORT} counter name notices_received
  }}
}}
"""


def director_rules() -> str:
    counters = "\n".join(f"  counter heartbeats_in_{n} {{}}" for n in CLIENTS)
    rules = "\n".join(
        f"    ip saddr {ip} udp dport {PORT} counter name heartbeats_in_{n}"
        for n, ip in CLIENTS.items()
    )
    return f"""
table inet pxsoak {{
{counters}
  counter notices_sent {{}}
  counter notices_dropped {{}}
  chain in {{
    type filter hook input priority 0; policy accept;
{rules}
  }}
  chain out {{
    type filter hook output priority 0; policy accept;
    udp sport {PORT} counter name notices_sent
    udp sport {PORT} numgen random mod 100 < {LOSS_PERCENT} counter name notices_dropped drop
  }}
}}
"""


def stale_namespaces() -> list[str]:
    """Namespaces of earlier soaks whose script is gone (name pxsoak<pid>-…)."""
    stale = []
    for line in sh("ip", "netns", "list", check=False).splitlines():
        name = line.split()[0] if line.strip() else ""
        if not name.startswith(PREFIX):
            continue
        pid = name[len(PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            stale.append(name)
    return stale


def check_tools() -> None:
    missing = [t for t in ("ip", "nft") if shutil.which(t) is None]
    if missing:
        raise SystemExit(f"missing: {' '.join(missing)} — apt-get install -y iproute2 nftables")
    if os.geteuid() != 0:
        raise SystemExit("the soak creates network namespaces: run it as root")
    if not Path("/dev/net/tun").exists():
        raise SystemExit("/dev/net/tun is missing (modprobe tun)")


class Soak:
    def __init__(self, minutes: float, max_delay: float, checks: bool) -> None:
        self.minutes = minutes
        self.max_delay = max_delay
        self.checks = checks
        self.players: list[subprocess.Popen[bytes]] = []
        self.net = Network(f"{PREFIX}{os.getpid()}")
        self.folder = Path(tempfile.mkdtemp(prefix="pxsoak-"))
        self.director: PrefixedProcess | None = None
        self.agents: dict[str, PrefixedProcess] = {}
        self.jitter: subprocess.Popen[str] | None = None
        self.jitter_lines: list[dict] = []
        self.closed = False

    def start(self) -> None:
        self.net.build()
        self.jitter = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.net.router,
                PYTHON,
                str(Path(__file__).with_name("_jitter.py")),
                "--tun",
                "jit",
                "--max-delay",
                str(self.max_delay),
                "--port",
                str(PORT),
                "--seconds",
                str(self.minutes * 60 + 300),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=ENV,
            start_new_session=True,
        )
        threading.Thread(target=self._read_jitter, daemon=True).start()
        # Newer shows must set a web-page token when bind is not loopback; older ones reject the key.
        token = (
            f'token = "{secrets.token_hex(16)}"\n'
            if "token" in DirectorSettings.model_fields
            else ""
        )
        show = SHOW.replace("{token}", token)
        if self.checks:
            for name in CLIENTS:
                show = show.replace(
                    f'name = "{name}"\n', f'name = "{name}"\n{self._player(name)}\n'
                )
        (self.folder / "show.toml").write_text(show)
        self.director = PrefixedProcess(
            ["ip", "netns", "exec", self.net.director],
            ["run", str(self.folder), "--state", str(self.folder / "state"), "--json-events"],
            ENV,
        )
        started(self.director, 60)
        for name, ip in CLIENTS.items():
            self.agents[name] = PrefixedProcess(
                ["ip", "netns", "exec", self.net.agents[name]],
                [
                    "agent",
                    "--name",
                    name,
                    "--director",
                    f"{DIRECTOR_IP}:{PORT}",
                    "--bind",
                    ip,
                    "--json-events",
                ],
                ENV,
            )
        for name in CLIENTS:
            self.director.wait_event("client.online", timeout=60, client=name)
            if self.checks:  # the agent runs the show's checks (it logs them when they start)
                self.agents[name].wait_line(r"checks: process .*, player", timeout=30)

    def _player(self, name: str) -> str:
        """Start the client's media server (mpv, under a name of its own); its checks."""
        mpv = shutil.which("mpv")
        if mpv is None:
            raise SystemExit("the soak with checks needs mpv: apt-get install mpv (or --no-checks)")
        binary = self.folder / f"mpv-{name}"
        shutil.copy(mpv, binary)
        sock = self.folder / f"{name}.sock"
        self.players.append(
            subprocess.Popen(
                [
                    str(binary), "--vo=null", "--ao=null", "--really-quiet",
                    f"--input-ipc-server={sock}", "av://lavfi:testsrc2=size=320x240:rate=25",
                ],
                stdin=subprocess.DEVNULL,
            )
        )  # fmt: skip
        return f'checks = [{{ process = "{binary}" }}, {{ mpv = "{sock}", name = "player" }}]'

    def _read_jitter(self) -> None:
        assert self.jitter is not None and self.jitter.stdout is not None
        for line in self.jitter.stdout:
            if line.startswith("{"):
                self.jitter_lines.append(json.loads(line))

    def totals(self) -> dict[str, int]:
        figures: dict[str, int] = {}
        for name in CLIENTS:
            for key, value in self.net.counters(self.net.agents[name]).items():
                figures[f"{name}.{key}"] = value
        for key, value in self.net.counters(self.net.director).items():
            figures[f"director.{key}"] = value
        return figures

    def trouble(self) -> dict[str, int]:
        assert self.director is not None
        d = self.director
        return {
            "client.offline": len(d.of_kind("client.offline")),
            "client.failed": len(d.of_kind("client.failed")),
            "backup.activated": len(d.of_kind("backup.activated")),
            "backup.failed": len(d.of_kind("backup.failed")),
            "alarm": len(d.of_kind("alarm")),
            "late": len([e for e in d.of_kind("client.late") if e.get("late")]),
        }

    def run(self) -> None:
        assert self.director is not None and self.jitter is not None
        print(f"all {len(CLIENTS)} clients online; soaking for {self.minutes:g} min", flush=True)
        self.jitter.send_signal(signal.SIGUSR1)  # gaps from now on
        before, t0 = self.totals(), time.monotonic()
        trouble0 = self.trouble()
        end = t0 + self.minutes * 60
        next_progress = t0 + 30
        while True:  # bounded: ends at the deadline
            now = time.monotonic()
            if now >= end:
                break
            if self.director.proc.poll() is not None or any(
                a.proc.poll() is not None for a in self.agents.values()
            ):
                raise RuntimeError("a pxcontrol process ended during the soak")
            if now >= next_progress:
                t = self.trouble()
                print(
                    f"  {now - t0:6.0f} s: offline {t['client.offline']}, takeovers "
                    f"{t['backup.activated']}, late {t['late']}",
                    flush=True,
                )
                next_progress += 30
            time.sleep(min(1.0, max(0.0, end - now)))
        after, t1 = self.totals(), time.monotonic()
        trouble1 = self.trouble()
        self.jitter.send_signal(signal.SIGTERM)
        try:
            self.jitter.wait(10)
        except subprocess.TimeoutExpired:
            pass
        wait_for(lambda: any(x.get("final") for x in self.jitter_lines), 5, "the jitter figures")
        self.report(before, after, t1 - t0, trouble0, trouble1)

    def report(self, before, after, seconds, trouble0, trouble1) -> None:
        assert self.director is not None
        delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        jitter = next(x for x in self.jitter_lines if x.get("final"))
        print(
            f"\n== soak: {seconds / 60:.1f} min, 2 % loss each way, jitter 0–{self.max_delay * 1000:.0f} ms"
        )
        print(
            f"{'client':10s} {'sent':>7s} {'dropped':>7s} {'received':>8s} {'lost %':>7s} "
            f"{'max gap in→dir':>15s} {'late':>5s}"
        )
        sent_all = recv_all = 0
        for name, ip in CLIENTS.items():
            sent = delta.get(f"{name}.heartbeats_sent", 0)
            dropped = delta.get(f"{name}.heartbeats_dropped", 0)
            received = delta.get(f"director.heartbeats_in_{name}", 0)
            sent_all += sent
            recv_all += received
            gap = jitter["max_gap_out"].get(ip)
            late = len(
                [e for e in self.director.of_kind("client.late", client=name) if e.get("late")]
            )
            print(
                f"{name:10s} {sent:7d} {dropped:7d} {received:8d} "
                f"{100 * (sent - received) / max(1, sent):6.2f}% "
                f"{'' if gap is None else f'{gap * 1000:12.0f} ms':>15s} {late:5d}"
            )
        print(
            f"{'all':10s} {sent_all:7d} {'':7s} {recv_all:8d} "
            f"{100 * (sent_all - recv_all) / max(1, sent_all):6.2f}%  "
            f"({sent_all / seconds:.1f} heartbeats/s sent)"
        )
        notices_sent = delta.get("director.notices_sent", 0)
        notices_dropped = delta.get("director.notices_dropped", 0)
        print(f"notices director→agents: {notices_sent} sent, {notices_dropped} dropped")
        gaps_in = {k: round(v * 1000) for k, v in jitter["max_gap_in"].items()}
        print(
            f"max gap entering the jitter wire (after the agents' loss), ms: {gaps_in}; "
            f"max hold {jitter['delay_max'] * 1000:.1f} ms, worst lateness of the wire "
            f"{jitter['late_max'] * 1000:.1f} ms"
        )
        t = {k: trouble1[k] - trouble0[k] for k in trouble1}
        false_takeovers = t["backup.activated"]
        false_losses = t["client.offline"] + t["client.failed"]
        checks = "process and mpv checks on every client" if self.checks else "no checks"
        print(
            f"{checks}; late warnings: {t['late']}; client.offline: {t['client.offline']}; "
            f"client.failed: {t['client.failed']}; "
            f"backup.activated: {t['backup.activated']}; backup.failed: {t['backup.failed']}; "
            f"alarms: {t['alarm']}"
        )
        if jitter["late_max"] > 0.5:  # offline_after: the machine itself stopped, wire and all
            print(
                f"the machine itself stalled: the emulated network was {jitter['late_max'] * 1000:.0f}"
                " ms late once (longer than offline_after); a loss then is the machine's, and the"
                " guards (director stalled, mass failure) must keep it from becoming a takeover"
            )
        print(
            f"FALSE TAKEOVERS: {false_takeovers}  ({'ok' if false_takeovers == 0 else 'MUST BE ZERO'})"
            f"; clients falsely declared offline or failed: {false_losses}"
        )
        for e in self.director.events:
            if e["kind"] in (
                "client.offline", "client.failed", "backup.activated", "client.late", "alarm"
            ):  # fmt: skip
                print(f"  event: {json.dumps({k: v for k, v in e.items() if k != '_seen'})}")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for agent in self.agents.values():
            agent.kill()
        for player in self.players:
            player.kill()
        if self.director is not None:
            self.director.kill()
        if self.jitter is not None and self.jitter.poll() is None:
            self.jitter.kill()
            self.jitter.wait(10)
        self.net.delete()
        shutil.rmtree(self.folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="soak length (0.1..1440)")
    parser.add_argument("--max-delay", type=float, default=0.02, help="jitter: hold 0..this s")
    parser.add_argument("--cleanup", action="store_true", help="only remove stale namespaces")
    parser.add_argument("--no-checks", action="store_true", help="no media servers, no checks")
    args = parser.parse_args()
    if not 0.1 <= args.minutes <= 1440 or not 0 <= args.max_delay <= 1:
        parser.error("--minutes 0.1..1440, --max-delay 0..1")
    check_tools()
    stale = stale_namespaces()
    for name in stale:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
    if stale:
        print(f"removed stale namespaces: {' '.join(stale)}")
    if args.cleanup:
        return
    interrupt_on_term()
    print(
        f"pxcontrol soak — {time.strftime('%Y-%m-%d %H:%M')} — {platform.node()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}",
        flush=True,
    )
    soak = Soak(args.minutes, args.max_delay, checks=not args.no_checks)
    atexit.register(soak.close)
    try:
        soak.start()
        soak.run()
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
    except Exception:
        if soak.director is not None:
            print(
                "director's last output:\n  " + "\n  ".join(soak.director.output[-15:]),
                file=sys.stderr,
            )
        raise
    finally:
        soak.close()
        print(
            f"cleaned up: processes stopped, namespaces {soak.net.tag}-* deleted", file=sys.stderr
        )


if __name__ == "__main__":
    main()
