"""Heartbeats for many simulated clients, each from a socket bound to its own loopback address.

    python bench/_heartbeat_sim.py --director 127.0.0.1:PORT --clients 500 --rate 10 --seconds 60

Client i is "C{i:03d}" at 127.0.(1 + i // 250).(1 + i % 250), as bench/failover.py
declares them. Sends are spread evenly over the period (client i at phase i/N)
on a fixed schedule. Packets are built by hand for speed and checked once against
pxcontrol.heartbeat.decode before the first send. Each client takes the director's
session from the welcome that answers it, as an agent does (docs/backup.md), so its
heartbeats count; until then they are dropped as `unwelcomed`. Prints one JSON line a second:
{"t": monotonic, "sent": total, "errors": n, "notices": n, "lag_max": s, "lag": s}
(lag_max: its worst lag behind schedule so far; lag: the worst in the last second).
Stops after --seconds, on SIGTERM or on SIGINT.

With --control, it reads commands from stdin, one a line: `stop C042` silences that client
(it sends no more heartbeats), `start C042` lets it send again; each is answered on stdout
with {"stopped": name, "t": wall clock} / {"started": ...} after the change took effect.
--wobble N makes each client's cpu figure wander by up to ±N points per heartbeat.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import signal
import socket
import sys
import threading
import time

from pxcontrol.heartbeat import HEARTBEAT, PLACEMENT, Heartbeat, Placement, WireError, decode


def osc_string(text: str) -> bytes:
    raw = text.encode()
    return raw + b"\0" * (4 - len(raw) % 4)


HEAD = osc_string(HEARTBEAT) + osc_string(",s")


def packet(
    name: str, boot: str, seq: int, interval: float, session: str = "", cpu: float = 12.5
) -> bytes:
    body = (
        f'{{"name":"{name}","boot":"{boot}","seq":{seq},"interval":{interval!r},'
        f'"epoch":0,"session":"{session}","cpu":{cpu:.1f},"memory":40.0,"extra":{{}}}}'
    )
    return HEAD + osc_string(body)


def welcomed(notice: bytes, boot: str, session: str) -> str:
    """The session a notice gives a client of this run, else the one it had."""
    try:
        placement = decode(notice, PLACEMENT, Placement, None)
    except WireError:
        return session
    return placement.session if placement.boot == boot and placement.session else session


def client_ip(i: int) -> str:
    return f"127.0.{1 + i // 250}.{1 + i % 250}"


def show_toml(
    clients: int,
    backup_every: int = 5,
    online_after: float = 3.0,
    auto: bool = False,
    offline_after: float = 0.5,
) -> str:
    """A show of `clients` clients as the simulator names and addresses them; every
    `backup_every`-th one backs up the ones before it (0: no backups). Ports are
    {heartbeat_port}, {osc_port}, {http_port} for pxcontrol.testing.Rig to fill in."""
    lines = [
        "[director]",
        "heartbeat_port = {heartbeat_port}",
        "osc_port = {osc_port}",
        "http_port = {http_port}",
        "",
        "[detection]",
        f"online_after = {online_after}",
        f"offline_after = {offline_after}",
        "",
    ]
    for i in range(clients):
        lines += ["[[clients]]", f'name = "C{i:03d}"', f'ip = "{client_ip(i)}"']
        lines.append('outputs = ["Output 1"]')
        if backup_every and i % backup_every == backup_every - 1:
            covered = ", ".join(f'"{client_ip(j)}"' for j in range(i - backup_every + 1, i))
            lines.append(f"backup_for = [{covered}]")
            lines.append(f"auto_backup = {'true' if auto else 'false'}")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--director", required=True, help="HOST:PORT")
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--rate", type=float, default=10.0, help="heartbeats per second per client")
    parser.add_argument("--seconds", type=float, default=60.0, help="stop after this long")
    parser.add_argument("--control", action="store_true", help="read stop/start NAME on stdin")
    parser.add_argument("--wobble", type=float, default=0.0, help="cpu wanders ±N per beat")
    args = parser.parse_args()
    host, _, port = args.director.rpartition(":")
    target = (host, int(port))
    interval = 1.0 / args.rate
    stop = False

    def finish(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)

    names = [f"C{i:03d}" for i in range(args.clients)]
    silent: set[int] = set()
    changes: list[tuple[str, int]] = []  # commands, applied by the sending loop
    lock = threading.Lock()

    def read_commands() -> None:
        for line in sys.stdin:
            verb, _, name = line.strip().partition(" ")
            if verb in ("stop", "start") and name in names:
                with lock:
                    changes.append((verb, names.index(name)))

    if args.control:
        threading.Thread(target=read_commands, daemon=True).start()
    cpu = [12.5] * args.clients
    boot = secrets.token_hex(8)
    check = decode(packet(names[0], boot, 1, interval, "s"), HEARTBEAT, Heartbeat, None)
    assert check.name == names[0] and check.seq == 1 and check.session == "s"
    sessions = [""] * args.clients
    socks = []
    try:
        for i in range(args.clients):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((client_ip(i), 0))
            s.setblocking(False)
            socks.append(s)
        seq = [0] * args.clients
        # Slots of ~2 ms over the period; each slot sends the clients whose phase falls in it.
        slots = max(1, min(args.clients, round(interval / 0.002)))
        per_slot = [list(range(k, args.clients, slots)) for k in range(slots)]
        step = interval / slots
        sent = errors = notices = 0
        lag_max = lag_second = 0.0
        start = time.monotonic()
        end = start + args.seconds
        next_report = start + 1.0
        next_drain = start + 0.05
        k = 0
        # Bounded: ends at --seconds (or a signal); at most rate × seconds rounds of slots.
        while not stop:
            due = start + k * step
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
                now = time.monotonic()
            if now >= end:
                break
            if k > slots:
                lag_second = max(lag_second, now - due)
                lag_max = max(lag_max, lag_second)
            if changes:
                with lock:
                    todo, changes[:] = list(changes), []
                for verb, i in todo:
                    (silent.add if verb == "stop" else silent.discard)(i)
                    said = "stopped" if verb == "stop" else "started"
                    print(json.dumps({said: names[i], "t": time.time()}), flush=True)
            for i in per_slot[k % slots]:
                if i in silent:
                    continue
                seq[i] += 1
                if args.wobble:
                    cpu[i] = min(
                        100.0, max(0.0, cpu[i] + random.uniform(-args.wobble, args.wobble))
                    )
                try:
                    socks[i].sendto(
                        packet(names[i], boot, seq[i], interval, sessions[i], cpu[i]), target
                    )
                    sent += 1
                except OSError:
                    errors += 1
            k += 1
            if now >= next_drain:  # often until every client is welcomed, then once a second
                next_drain = now + (0.05 if "" in sessions else 1.0)
                for i, s in enumerate(socks):  # take the session; no queue grows
                    try:
                        while True:
                            notices += 1
                            sessions[i] = welcomed(s.recv(65536), boot, sessions[i])
                    except OSError:
                        notices -= 1
            if now >= next_report:
                print(
                    json.dumps(
                        {
                            "t": time.monotonic(),
                            "sent": sent,
                            "errors": errors,
                            "notices": notices,
                            "lag_max": lag_max,
                            "lag": lag_second,
                        }
                    ),
                    flush=True,
                )
                next_report += 1.0
                lag_second = 0.0
    finally:
        for s in socks:
            s.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
