"""Heartbeats for many simulated clients, each from a socket bound to its own loopback address.

    python bench/_heartbeat_sim.py --director 127.0.0.1:PORT --clients 500 --rate 10 --seconds 60

Client i is "C{i:03d}" at 127.0.(1 + i // 250).(1 + i % 250), as bench/failover.py
declares them. Sends are spread evenly over the period (client i at phase i/N)
on a fixed schedule. Packets are built by hand for speed and checked once against
pxcontrol.heartbeat.decode before the first send. Each client takes the director's
session from the welcome that answers it, as an agent does (docs/backup.md), so its
heartbeats count; until then they are dropped as `unwelcomed`. Prints one JSON line a second:
{"t": monotonic, "sent": total, "errors": n, "notices": n, "lag_max": s}.
Stops after --seconds, on SIGTERM or on SIGINT.
"""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import socket
import sys
import time

from pxcontrol.heartbeat import HEARTBEAT, PLACEMENT, Heartbeat, Placement, WireError, decode


def osc_string(text: str) -> bytes:
    raw = text.encode()
    return raw + b"\0" * (4 - len(raw) % 4)


HEAD = osc_string(HEARTBEAT) + osc_string(",s")


def packet(name: str, boot: str, seq: int, interval: float, session: str = "") -> bytes:
    body = (
        f'{{"name":"{name}","boot":"{boot}","seq":{seq},"interval":{interval!r},'
        f'"epoch":0,"session":"{session}","cpu":12.5,"memory":40.0,"extra":{{}}}}'
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--director", required=True, help="HOST:PORT")
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--rate", type=float, default=10.0, help="heartbeats per second per client")
    parser.add_argument("--seconds", type=float, default=60.0, help="stop after this long")
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
        lag_max = 0.0
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
            lag_max = max(lag_max, now - due) if k > slots else lag_max
            for i in per_slot[k % slots]:
                seq[i] += 1
                try:
                    socks[i].sendto(packet(names[i], boot, seq[i], interval, sessions[i]), target)
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
                        }
                    ),
                    flush=True,
                )
                next_report += 1.0
    finally:
        for s in socks:
            s.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
