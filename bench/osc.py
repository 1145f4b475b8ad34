"""OSC bridge throughput, loss and latency, against a bare python-osc asyncio server in the same run.

    python bench/osc.py                          # everything, about 2 minutes
    python bench/osc.py --only saturation        # one part: latency, saturation or loss
    python bench/osc.py --only loss --rate 15000
    python bench/osc.py --rounds 5 --seconds 4 --rate 20000 --loss-seconds 3 --commands 2000

Two servers run side by side, each in its own process, on 127.0.0.1:

- the director: `python -m pxcontrol run SHOW --state DIR --json-events` on a
  temporary show with a drop-in no-op module (`Dev.Nothing`) and an `osc`
  module `Wire` that sends to a UDP socket this script listens on;
- a bare python-osc server (this file run with `--serve-bare PORT`):
  `AsyncIOOSCUDPServer` with a `Dispatcher` that maps `/pxcontrol/ping` and
  `/pxcontrol/action` to handlers answering what the bridge answers
  (`/pxcontrol/pong`; `/pxcontrol/reply/pxcontrol/action "ok" ""`).

Both are driven the same way, from one UDP socket in this process (receive
buffer 32 MiB) that sends and counts the replies (the exact bytes expected):

- saturation, twice: sending as fast as this process can (open loop: the
  server's socket overflows and the kernel drops the rest), then keeping
  --window messages in flight (closed loop: a reply lets the next one go, no
  drops). Replies per second are counted from 0.5 s in until the sending stops,
  for --seconds; rounds alternate the servers so a load change on the machine
  hits both; the median is reported, with the server's CPU per reply (psutil,
  the figure least disturbed by other load) and its kernel drops
  (/proc/net/udp);
- loss: --rate msg/s on a fixed schedule for --loss-seconds, then wait for the
  stragglers; sent vs answered, where the missing ones went (dropped by the
  kernel at the server's socket, at ours, or received and not answered), and
  how long after the last send the last answer came (the backlog);
- latency, one command at a time: `/pxcontrol/action "Wire.Send" "/x"` → the
  Wire module's datagram arriving at our socket; for reference ping → pong on
  both servers. Times are taken twice: by this process when recvmsg returns
  (time.perf_counter) and by the kernel as the datagram reaches our socket
  (SO_TIMESTAMPNS, against time.time_ns() just before sendto).

With two or more cores, both servers are pinned to the last core and this
process to the first (--no-pin leaves placement to the kernel): the servers
take turns, and on a small VM the cores are not equally fast.

Goals (issue 5): bridge/bare ≥ 1.0 for both addresses; zero loss at 20 k msg/s;
command → wire p99 ≤ 2 ms. A missed goal is printed, not raised.

Everything stays on 127.0.0.1. Every loop is bounded; both servers are killed
on exit, Ctrl-C or SIGTERM included.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ENV, NOOP, PYTHON, interrupt_on_term, quantiles
from failover import receive_buffer, udp_socket_stats

from pxcontrol.osc_bridge import build
from pxcontrol.testing import Rig, free_port

PING = "/pxcontrol/ping"
PONG = "/pxcontrol/pong"
ACTION = "/pxcontrol/action"
ACTION_REPLY = "/pxcontrol/reply/pxcontrol/action"
WIRE_ADDRESS = "/x"
BENCH_BUFFER = 32 * 1024 * 1024
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python does not name it


SHOW = """
[director]
heartbeat_port = {heartbeat_port}
osc_port = {osc_port}

# The bridge's own speed: the per-sender budgets (docs/osc.md) lifted out of the way.
[osc]
action_rate = 1e9
action_burst = 1000000000
command_rate = 1e9
command_burst = 1000000000

[modules.Dev]
type = "noop"

[modules.Wire]
type = "osc"
host = "127.0.0.1"
port = %(wire_port)d
"""


# --- the bare python-osc server (this file, run as a subprocess) ---


def serve_bare(port: int, lifetime: float) -> None:
    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import AsyncIOOSCUDPServer

    dispatcher = Dispatcher()
    dispatcher.map(PING, lambda address, *args: PONG)
    dispatcher.map(ACTION, lambda address, *args: (ACTION_REPLY, "ok", ""))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = AsyncIOOSCUDPServer(("127.0.0.1", port), dispatcher, loop)  # type: ignore[arg-type]
        transport, _ = await server.create_serve_endpoint()
        sock = transport.get_extra_info("socket")
        rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        print(json.dumps({"ready": port, "rcvbuf": rcvbuf}), flush=True)
        await asyncio.sleep(lifetime)  # bounded: the bench kills it long before

    asyncio.run(main())


# --- the servers under test ---


@dataclass
class Server:
    name: str
    port: int
    pid: int

    @property
    def target(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of process `pid` onto `cpus` (sched_setaffinity is per thread on Linux)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except (ProcessLookupError, PermissionError):
            continue


def knock(port: int, timeout: float) -> None:
    """Ping until a pong comes back: the server is up."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sock.sendto(build(PING), ("127.0.0.1", port))
            try:
                if sock.recv(2048) == build(PONG):
                    return
            except TimeoutError:
                continue
    raise AssertionError(f"no pong from 127.0.0.1:{port} within {timeout} s")


def start_bare(port: int) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [PYTHON, __file__, "--serve-bare", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
        start_new_session=True,  # Ctrl-C reaches the bench, which kills it
    )
    knock(port, 20)
    assert proc.stdout is not None
    ready = json.loads(proc.stdout.readline())  # printed before it served the knock
    return proc, ready["rcvbuf"]


# --- one socket that sends and counts ---


def bench_socket(timestamps: bool = False) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if option is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, BENCH_BUFFER)
                break
            except OSError:
                continue
    if timestamps:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    return sock


def port_of(sock: socket.socket) -> int:
    return sock.getsockname()[1]


def kernel_drops(port: int) -> int:
    stats = udp_socket_stats(port)
    return stats["drops"] if stats else 0


def settle(sock: socket.socket, quiet: float = 0.3, limit: float = 10.0) -> int:
    """Read until nothing has come for `quiet` s (at most `limit` s); returns how many came."""
    sock.settimeout(quiet)
    came = 0
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            sock.recv(65536)
            came += 1
        except TimeoutError:
            break
    sock.setblocking(False)
    return came


@dataclass
class Saturation:
    server: str
    sent: int
    seconds: float
    replies_per_s: float
    other: int
    cpu_share: float  # of one core, over the counting window
    cpu_us_per_reply: float
    server_drops: int
    bench_drops: int


def saturate(
    sock: socket.socket,
    server: Server,
    packet: bytes,
    expect: bytes,
    seconds: float,
    window: int | None,
) -> Saturation:
    """Replies per second, counted from 0.5 s in to the end of sending.

    window None: send as fast as we can (32 at a time, then read what came back).
    window N: keep N messages in flight; a reply lets the next one go. A message
    unanswered for 200 ms is written off, so a drop cannot stall the loop.
    """
    settle(sock)
    target = server.target
    proc = psutil.Process(server.pid)
    drops0, own0 = kernel_drops(server.port), kernel_drops(port_of(sock))
    sent = got = other = written_off = 0
    start = time.perf_counter()
    window_at = start + min(0.5, seconds / 4)
    end = start + seconds
    got_at_window = t_window = cpu_window = None
    last_reply = start
    recv = sock.recv
    sendto = sock.sendto
    while True:  # bounded by `end`
        now = time.perf_counter()
        if now >= end:
            break
        if t_window is None and now >= window_at:
            got_at_window, t_window = got, now
            times = proc.cpu_times()
            cpu_window = times.user + times.system
        if window is None:
            burst = 32
        else:
            if now - last_reply > 0.2:
                written_off += sent - got - other - written_off
                last_reply = now
            burst = window - (sent - got - other - written_off)
        for _ in range(burst):
            try:
                sendto(packet, target)
                sent += 1
            except BlockingIOError:
                break
        while True:
            try:
                data = recv(2048)
            except BlockingIOError:
                break
            last_reply = now
            if data == expect:
                got += 1
            else:
                other += 1
    t_end = time.perf_counter()
    times = proc.cpu_times()
    cpu = times.user + times.system - (cpu_window or 0.0)
    assert got_at_window is not None and t_window is not None
    answered = got - got_at_window
    result = Saturation(
        server=server.name,
        sent=sent,
        seconds=t_end - start,
        replies_per_s=answered / (t_end - t_window),
        other=other,
        cpu_share=cpu / (t_end - t_window),
        cpu_us_per_reply=1e6 * cpu / max(1, answered),
        server_drops=kernel_drops(server.port) - drops0,
        bench_drops=kernel_drops(port_of(sock)) - own0,
    )
    settle(sock)  # the server's backlog, before the next round
    return result


@dataclass
class Loss:
    server: str
    sent: int
    seconds: float
    answered: int
    other: int
    server_drops: int
    bench_drops: int
    worst_lag: float  # how far the sender fell behind its schedule
    tail: float  # last answer after the last send: the backlog the server had built

    @property
    def lost(self) -> int:
        return self.sent - self.answered


def paced(
    sock: socket.socket, server: Server, packet: bytes, expect: bytes, rate: float, seconds: float
) -> Loss:
    """`rate` msg/s on a fixed schedule for `seconds`, then wait for the stragglers."""
    settle(sock)
    target = server.target
    drops0, own0 = kernel_drops(server.port), kernel_drops(port_of(sock))
    total = int(rate * seconds)
    sent = got = other = 0
    worst_lag = 0.0
    start = time.perf_counter()

    last_answer = start

    def drain() -> None:
        nonlocal got, other, last_answer
        while True:
            try:
                data = sock.recv(2048)
            except BlockingIOError:
                return
            last_answer = time.perf_counter()
            if data == expect:
                got += 1
            else:
                other += 1

    hard_stop = start + seconds * 3 + 5
    while sent < total:  # bounded: `total` sends, or the hard stop
        now = time.perf_counter()
        if now > hard_stop:
            break
        due = min(total, int((now - start) * rate) + 1)
        if due > sent:
            worst_lag = max(worst_lag, (due - sent - 1) / rate)
        while sent < due:
            try:
                sock.sendto(packet, target)
                sent += 1
            except BlockingIOError:
                break
        drain()
        if sent < total and int((time.perf_counter() - start) * rate) + 1 <= sent:
            time.sleep(0.0002)
    sent_at = time.perf_counter()
    elapsed = sent_at - start
    wait_until = time.monotonic() + 5  # stragglers: until all came, or 0.5 s of silence
    last_got, last_change = got, time.monotonic()
    while got + other < sent and time.monotonic() < wait_until:
        time.sleep(0.0005)
        drain()
        if got != last_got:
            last_got, last_change = got, time.monotonic()
        elif time.monotonic() - last_change > 0.5:
            break
    return Loss(
        server=server.name,
        sent=sent,
        seconds=elapsed,
        answered=got,
        other=other,
        server_drops=kernel_drops(server.port) - drops0,
        bench_drops=kernel_drops(port_of(sock)) - own0,
        worst_lag=worst_lag,
        tail=max(0.0, last_answer - sent_at),
    )


# --- one command at a time ---


@dataclass
class Trips:
    label: str
    user: list[float] = field(default_factory=list)  # perf_counter: send → recvmsg returned
    kernel: list[float] = field(default_factory=list)  # time_ns before send → kernel stamp
    missed: int = 0
    preempted: int = 0  # the server's involuntary context switches during the series


def receive_stamped(sock: socket.socket) -> tuple[bytes, float, int | None]:
    data, ancillary, _, _ = sock.recvmsg(65536, socket.CMSG_SPACE(16))
    now = time.perf_counter()
    stamp = None
    for level, kind, value in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
            sec, nsec = struct.unpack("qq", value[:16])
            stamp = sec * 1_000_000_000 + nsec
    return data, now, stamp


def drain_all(*socks: socket.socket) -> None:
    for s in socks:
        s.setblocking(False)
        while True:
            try:
                s.recv(65536)
            except BlockingIOError:
                break


def round_trips(
    commands: int,
    warmup: int,
    send: socket.socket,
    target: tuple[str, int],
    packet: bytes,
    legs: list[tuple[Trips, socket.socket, bytes]],
    server_pid: int,
) -> None:
    """Send `packet`, then wait for each leg's datagram in turn (its socket, its exact bytes)."""
    server = psutil.Process(server_pid)
    gc.collect()
    gc.disable()
    switches = None
    try:
        for i in range(warmup + commands):  # bounded
            drain_all(send, *(s for _, s, _ in legs))
            for _, s, _ in legs:
                s.settimeout(1.0)
            sent_ns = time.time_ns()
            t0 = time.perf_counter()
            send.sendto(packet, target)
            for trips, sock, expect in legs:
                try:
                    while True:  # bounded by the socket timeout
                        data, t1, stamp = receive_stamped(sock)
                        if data == expect:
                            break
                except TimeoutError:
                    trips.missed += 1
                    time.sleep(0.1)
                    break
                if i == warmup - 1:  # warmup ≥ 10: the series starts here
                    switches = server.num_ctx_switches().involuntary
                if i >= warmup:
                    trips.user.append(t1 - t0)
                    if stamp is not None:
                        trips.kernel.append((stamp - sent_ns) / 1e9)
    finally:
        gc.enable()
    if switches is not None:
        for trips, _, _ in legs:
            trips.preempted = server.num_ctx_switches().involuntary - switches


# --- the run ---


def latency_line(trips: Trips, goal: float | None = None) -> list[str]:
    lines = []
    for name, samples in (("bench", trips.user), ("kernel", trips.kernel)):
        if not samples:
            continue
        q = quantiles(samples)
        text = "  ".join(f"{k} {q[k] * 1000:6.3f}" for k in ("p50", "p90", "p99", "max"))
        verdict = ""
        if goal is not None:
            verdict = f"   goal p99 ≤ {goal * 1000:.0f} ms: " + (
                "met" if q["p99"] <= goal else "MISSED"
            )
        lines.append(f"  {trips.label:<40} {name:<6} ms  {text}{verdict}")
    if trips.missed:
        lines.append(f"  {trips.label:<40} missed (no datagram within 1 s): {trips.missed}")
    lines.append(
        f"  {'':<40} (server preempted {trips.preempted} times during the series: "
        "involuntary context switches of its main thread)"
    )
    return lines


def rate_part(
    bare: Server,
    bridge: Server,
    parts: set[str],
    rounds: int,
    seconds: float,
    window: int,
    rate: float,
    loss_seconds: float,
) -> None:
    kinds = {
        "ping": (build(PING), build(PONG)),
        "action Dev.Nothing": (build(ACTION, "Dev.Nothing"), build(ACTION_REPLY, "ok", "")),
    }
    sock = bench_socket()
    sock.setblocking(False)
    try:
        # Both servers answer each packet with the same bytes, or the counting is unfair.
        for name, (packet, expect) in kinds.items():
            for server in (bare, bridge):
                sock.sendto(packet, server.target)
                sock.settimeout(2)
                answer = sock.recv(2048)
                sock.setblocking(False)
                if answer != expect:
                    print(f"  NOTE {server.name} answers {name} with {answer!r}, not {expect!r}")
        modes = [("as fast as we can", None), (f"{window} in flight", window)]
        if "saturation" not in parts:
            modes = []
        for mode, limit in modes:
            print(
                f"\n== saturation, sending {mode}: {rounds} rounds × {seconds:g} s per server and "
                "address, servers alternating; replies per second"
            )
            for name, (packet, expect) in kinds.items():
                results: dict[str, list[Saturation]] = {bare.name: [], bridge.name: []}
                for r in range(rounds):
                    order = (bare, bridge) if r % 2 == 0 else (bridge, bare)
                    for server in order:
                        results[server.name].append(
                            saturate(sock, server, packet, expect, seconds, limit)
                        )
                medians, cpu = {}, {}
                for server in (bare, bridge):
                    runs = results[server.name]
                    medians[server.name] = statistics.median(x.replies_per_s for x in runs)
                    cpu[server.name] = statistics.median(x.cpu_us_per_reply for x in runs)
                    each = " ".join(f"{x.replies_per_s:7,.0f}" for x in runs)
                    share = statistics.median(x.cpu_share for x in runs)
                    sent = statistics.median(x.sent / x.seconds for x in runs)
                    print(
                        f"  {name:<19} {server.name:<6} median {medians[server.name]:7,.0f}/s  "
                        f"(rounds {each})  server CPU {100 * share:3.0f} % of a core, "
                        f"{cpu[server.name]:5.1f} µs/reply; sent {sent:,.0f}/s; kernel drops at "
                        f"the server {sum(x.server_drops for x in runs):,}, at the bench "
                        f"{sum(x.bench_drops for x in runs)}; other replies "
                        f"{sum(x.other for x in runs)}"
                    )
                ratio = medians[bridge.name] / medians[bare.name]
                verdict = "met" if ratio >= 1.0 else "MISSED"
                print(
                    f"  {name:<19} ratio bridge / bare {ratio:5.2f} (goal ≥ 1.0: {verdict}); "
                    f"CPU per reply bare / bridge {cpu[bare.name] / cpu[bridge.name]:5.2f}"
                )

        if "loss" not in parts:
            return
        print(f"\n== loss at a fixed {rate:,.0f} msg/s for {loss_seconds:g} s")
        for name, (packet, expect) in kinds.items():
            for server in (bare, bridge):
                x = paced(sock, server, packet, expect, rate, loss_seconds)
                lost = x.lost
                goal = ""
                if server is bridge:
                    goal = "   goal zero loss: " + ("met" if lost == 0 else "MISSED")
                print(
                    f"  {name:<20} {server.name:<7} sent {x.sent:6,} in {x.seconds:.2f} s "
                    f"({x.sent / x.seconds:,.0f}/s), answered {x.answered:6,}, lost {lost:6,} "
                    f"({100 * lost / max(1, x.sent):.2f} %) — kernel drops at the server "
                    f"{x.server_drops:,}, at the bench {x.bench_drops}; other replies {x.other}; "
                    f"last answer {x.tail * 1000:.1f} ms after the last send; sender's worst lag "
                    f"{x.worst_lag * 1000:.1f} ms{goal}"
                )
    finally:
        sock.close()


def latency_part(bare: Server, bridge: Server, wire: socket.socket, commands: int) -> None:
    warmup = min(200, commands)
    print(f"\n== latency: {commands} sequential commands each (after {warmup} warm-up), ms")
    send = bench_socket(timestamps=True)
    ok = build(ACTION_REPLY, "ok", "")
    try:
        bare_ping = Trips("bare python-osc: ping → pong")
        round_trips(
            commands, warmup, send, bare.target, build(PING), [(bare_ping, send, build(PONG))],
            bare.pid,
        )  # fmt: skip
        bridge_ping = Trips("bridge: ping → pong")
        round_trips(
            commands, warmup, send, bridge.target, build(PING), [(bridge_ping, send, build(PONG))],
            bridge.pid,
        )  # fmt: skip
        to_wire = Trips('bridge: action "Wire.Send" "/x" → wire')
        reply = Trips('bridge: action "Wire.Send" "/x" → reply')
        round_trips(
            commands, warmup, send, bridge.target, build(ACTION, "Wire.Send", WIRE_ADDRESS),
            [(to_wire, wire, build(WIRE_ADDRESS)), (reply, send, ok)], bridge.pid,
        )  # fmt: skip
        nothing = Trips('bridge: action "Dev.Nothing" → reply')
        round_trips(
            commands, warmup, send, bridge.target, build(ACTION, "Dev.Nothing"),
            [(nothing, send, ok)], bridge.pid,
        )  # fmt: skip
        for lines in (
            latency_line(to_wire, goal=0.002),
            latency_line(reply),
            latency_line(nothing),
            latency_line(bridge_ping),
            latency_line(bare_ping),
        ):
            print("\n".join(lines))
    finally:
        send.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", choices=["latency", "saturation", "loss"], help="run one part only"
    )
    parser.add_argument("--rounds", type=int, default=3, help="saturation rounds per server")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per saturation round")
    parser.add_argument(
        "--window", type=int, default=128, help="closed-loop saturation: messages in flight"
    )
    parser.add_argument("--rate", type=float, default=20000.0, help="loss part: msg/s")
    parser.add_argument("--loss-seconds", type=float, default=3.0, help="loss part: seconds")
    parser.add_argument("--commands", type=int, default=2000, help="latency part: commands")
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="leave CPU placement to the kernel (default: servers on one core, bench on another)",
    )
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare is not None:
        serve_bare(args.serve_bare, lifetime=3600)
        return
    if (
        not 1 <= args.rounds <= 50
        or not 1 <= args.seconds <= 60
        or not 1 <= args.rate <= 1_000_000
        or not 1 <= args.loss_seconds <= 60
        or not 10 <= args.commands <= 100_000
        or not 1 <= args.window <= 10_000
    ):
        parser.error(
            "--rounds 1..50, --seconds 1..60, --rate 1..1e6, --loss-seconds 1..60, "
            "--commands 10..100000, --window 1..10000"
        )
    interrupt_on_term()
    from importlib.metadata import version

    print(
        f"pxcontrol OSC benchmark — {time.strftime('%Y-%m-%d %H:%M')} — {platform.node()}, "
        f"{psutil.cpu_count()} cores, Python {platform.python_version()}, python-osc "
        f"{version('python-osc')}, load {psutil.getloadavg()[0]:.2f}"
    )
    wire = bench_socket(timestamps=True)  # the "device" the Wire module sends to
    bare_proc: subprocess.Popen[str] | None = None
    with tempfile.TemporaryDirectory(prefix="pxbench-osc-") as folder:
        rig = Rig(Path(folder), SHOW % {"wire_port": port_of(wire)}, modules={"noop.py": NOOP})
        rig.env.pop("PXCONTROL_LOAD_PLUGINS", None)  # the osc module type is a plugin
        try:
            bare_port = free_port()
            bare_proc, bare_rcvbuf = start_bare(bare_port)
            director = rig.start_director()
            knock(rig.osc_port, 20)
            bare = Server("bare", bare_port, bare_proc.pid)
            bridge = Server("bridge", rig.osc_port, director.proc.pid)
            cpus = sorted(os.sched_getaffinity(0))
            if args.pin and len(cpus) >= 2:
                # Both servers on the same core, this process on another: on a small VM the
                # cores are not equal (host load, steal), and the servers take turns anyway.
                pin(bare.pid, {cpus[-1]})
                pin(bridge.pid, {cpus[-1]})
                pin(os.getpid(), {cpus[0]})
                print(f"pinned: both servers to CPU {cpus[-1]}, this process to CPU {cpus[0]}")
            print(
                f"bridge: pxcontrol run on 127.0.0.1:{bridge.port} (pid {bridge.pid}, receive "
                f"buffer {receive_buffer(bridge.port)}); bare: AsyncIOOSCUDPServer on "
                f"127.0.0.1:{bare.port} (pid {bare.pid}, SO_RCVBUF {bare_rcvbuf // 1024} KiB, "
                f"{receive_buffer(bare.port)})"
            )
            if args.only in (None, "latency"):
                latency_part(bare, bridge, wire, args.commands)
            parts = {"saturation", "loss"} if args.only is None else {args.only}
            if parts & {"saturation", "loss"}:
                rate_part(
                    bare,
                    bridge,
                    parts,
                    args.rounds,
                    args.seconds,
                    args.window,
                    args.rate,
                    args.loss_seconds,
                )
            said = [
                line
                for line in director.output
                if not line.startswith("{")
                and not line.startswith(("pxcontrol running", "Live Systems page"))
            ]
            if said:
                print("\ndirector output besides its events:\n  " + "\n  ".join(said[-20:]))
            print(
                f"\nload at the end {psutil.getloadavg()[0]:.2f} (1-min average; this run's own "
                "processes count: 2 busy during saturation)"
            )
            failed = director.of_kind("action.failed")
            if failed:
                print(f"action.failed events: {len(failed)}, first: {failed[0]}")
        except KeyboardInterrupt:
            print("\ninterrupted: processes stopped", file=sys.stderr)
            sys.exit(130)
        finally:
            if bare_proc is not None and bare_proc.poll() is None:
                bare_proc.kill()
                bare_proc.wait(10)
            rig.close()
            wire.close()


if __name__ == "__main__":
    main()
